"""What every server-side simulation shares: bounded parameters, fixed-step time, snapshots."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from ..protocol import SimState


class Simulation(ABC):
    """A deterministic model advanced in fixed steps of ``dt`` seconds.

    Subclasses declare ``model`` and ``PARAMS`` (name -> (default, min, max))
    and implement :meth:`_step`, :meth:`state` and :meth:`_changed`.  Parameters
    are checked here, so a bad value from the wire never reaches the physics.
    All angles are in radians, lengths in metres, times in seconds.
    """

    model: ClassVar[str]
    PARAMS: ClassVar[dict[str, tuple[float, float, float]]]

    def __init__(self, params: Mapping[str, float] | None = None):
        self.t = 0.0
        self.steps = 0
        self._params = {name: default for name, (default, _, _) in self.PARAMS.items()}
        for name, value in (params or {}).items():
            self._params[name] = self._checked(name, value)
        self._reset()

    @property
    def params(self) -> dict[str, float]:
        return dict(self._params)

    def set_param(self, name: str, value: float) -> None:
        """Change a parameter while running; :class:`ValueError` if unknown or out of range."""
        self._params[name] = self._checked(name, value)
        self._changed(name)

    def _checked(self, name: str, value: float) -> float:
        if name not in self.PARAMS:
            raise ValueError(f"{self.model} has no parameter {name!r}; it has {sorted(self.PARAMS)}")
        _, low, high = self.PARAMS[name]
        value = float(value)
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"{self.model} parameter {name!r} must be within [{low}, {high}], got {value}")
        return value

    def step(self, dt: float) -> None:
        self._step(dt)
        self.t += dt
        self.steps += 1

    def snapshot(self, sim_id: str, *, running: bool = True) -> SimState:
        return SimState(
            sim_id=sim_id,
            model=self.model,
            t=self.t,
            step=self.steps,
            running=running,
            params=self.params,
            state=self.state(),
        )

    @abstractmethod
    def _reset(self) -> None:
        """Set the initial state from the parameters."""

    @abstractmethod
    def _changed(self, name: str) -> None:
        """React to a parameter set while running (reset, or keep going)."""

    @abstractmethod
    def _step(self, dt: float) -> None: ...

    @abstractmethod
    def state(self) -> dict[str, float]: ...
