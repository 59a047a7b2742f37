"""A projectile launched from the origin over flat ground, without drag."""

from __future__ import annotations

import math

import numpy as np

from .base import Simulation


class Projectile(Simulation):
    """Parameters: launch ``speed`` (m/s), launch ``angle`` (rad above horizontal), ``gravity`` (m/s²).

    Setting ``speed`` or ``angle`` relaunches from the origin; ``gravity``
    applies mid-flight.  The update is exact for constant acceleration
    (position gains v·dt - g·dt²/2), and the landing point is solved within
    the step, so the range matches v² sin 2θ / g to rounding, not to dt.
    """

    model = "projectile"
    PARAMS = {
        "speed": (10.0, 0.0, 1000.0),
        "angle": (math.pi / 4, -math.pi / 2, math.pi / 2),
        "gravity": (9.81, 0.0, 100.0),
    }

    def _reset(self) -> None:
        speed, angle = self._params["speed"], self._params["angle"]
        self._pos = np.zeros(2)
        self._vel = np.array([speed * math.cos(angle), speed * math.sin(angle)])
        self.flight_time = 0.0
        self.landed = False

    def _changed(self, name: str) -> None:
        if name in ("speed", "angle"):
            self._reset()

    def _step(self, dt: float) -> None:
        if self.landed:
            return
        g = self._params["gravity"]
        accel = np.array([0.0, -g])
        pos = self._pos + self._vel * dt + 0.5 * accel * dt * dt
        if pos[1] < 0.0:
            # Land within the step: solve y0 + vy·τ - g·τ²/2 = 0 for the first τ in [0, dt].
            y0, vy = self._pos[1], self._vel[1]
            tau = (vy + math.sqrt(vy * vy + 2.0 * g * y0)) / g if g > 0 else -y0 / vy
            tau = min(max(tau, 0.0), dt)
            self._pos = self._pos + self._vel * tau + 0.5 * accel * tau * tau
            self._pos[1] = 0.0
            self._vel = self._vel + accel * tau
            self.flight_time += tau
            self.landed = True
            return
        self._pos = pos
        self._vel = self._vel + accel * dt
        self.flight_time += dt

    def state(self) -> dict[str, float]:
        return {
            "x": float(self._pos[0]),
            "y": float(self._pos[1]),
            "vx": float(self._vel[0]),
            "vy": float(self._vel[1]),
            "flight_time": self.flight_time,
            "landed": 1.0 if self.landed else 0.0,
        }
