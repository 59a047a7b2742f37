"""Server-side simulations the tutor or a teacher can start in a room."""

from __future__ import annotations

from collections.abc import Mapping

from .base import Simulation
from .pendulum import Pendulum
from .projectile import Projectile
from .runner import SimulationRunner

MODELS: dict[str, type[Simulation]] = {cls.model: cls for cls in (Pendulum, Projectile)}


def create(model: str, params: Mapping[str, float] | None = None) -> Simulation:
    """A new simulation of ``model``; :class:`ValueError` for an unknown model or bad parameter."""
    if model not in MODELS:
        raise ValueError(f"unknown simulation model {model!r}; known: {sorted(MODELS)}")
    return MODELS[model](params)


__all__ = ["MODELS", "Pendulum", "Projectile", "Simulation", "SimulationRunner", "create", "scene_models"]


def scene_models() -> dict[str, dict[str, tuple[float, float, float]]]:
    """Each model's parameters as (default, min, max): what the tutors are told the scene runs."""
    return {name: dict(model.PARAMS) for name, model in MODELS.items()}
