"""What a lesson rule's action, or an LLM tool, does to the scene: one path for both tutors.

Either tutor publishes a :class:`~voice_tutor.events.SimulationRequested` on the
session's bus (``DialogueContext.publish``); whoever shows the scene (the XR
bridge's voice room) runs it.  The scene's models and their parameter ranges
are handed in (:data:`SceneModels`) by whoever runs the scene, so the voice
core never imports the bridge; without a scene there is nothing to start and
the tutors say so instead of promising it.
"""

from __future__ import annotations

from collections.abc import Mapping

from voice_tutor.events import SimulationRequested
from voice_tutor.learning.lessons import Resource

SceneModels = Mapping[str, Mapping[str, tuple[float, float, float]]]
"""Model name -> parameter name -> (default, minimum, maximum): the simulations a scene can run."""


class SceneError(ValueError):
    """A simulation request the scene could not run (unknown model, parameter out of range)."""


def check_scene_parameters(scene: SceneModels, model: str, parameters: Mapping[str, float]) -> None:
    """Raise :class:`SceneError` unless the scene runs ``model`` with these parameters."""
    if model not in scene:
        raise SceneError(f"the scene has no simulation model {model!r} (it has: {', '.join(sorted(scene))})")
    ranges = scene[model]
    for name, value in parameters.items():
        if name not in ranges:
            raise SceneError(f"simulation {model!r} has no parameter {name!r}; it has {', '.join(sorted(ranges))}")
        _, low, high = ranges[name]
        if not low <= value <= high:
            raise SceneError(f"simulation {model!r} parameter {name!r} must be within [{low:g}, {high:g}], "
                             f"not {value:g}")


def start_simulation(resource: Resource, session_id: str,
                     parameters: Mapping[str, float] | None = None) -> SimulationRequested:
    """The request to start a lesson's scene simulation, with the lesson's starting values unless overridden."""
    if resource.simulation is None:
        raise SceneError(f"resource {resource.id!r} is not a simulation the scene runs")
    return SimulationRequested(session_id=session_id, action="start_simulation", sim_id=resource.id,
                               simulation=resource.simulation,
                               parameters={**resource.parameters, **(parameters or {})})


def set_simulation_parameter(resource: Resource, session_id: str, name: str, value: float) -> SimulationRequested:
    return SimulationRequested(session_id=session_id, action="set_sim_param", sim_id=resource.id,
                               simulation=resource.simulation or "", parameters={name: value})
