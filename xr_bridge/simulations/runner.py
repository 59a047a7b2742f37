"""Drive a simulation in real time and publish its state at a fixed rate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..protocol import SimState
from .base import Simulation

log = logging.getLogger(__name__)


class SimulationRunner:
    """Steps ``sim`` with a fixed ``dt`` to follow the wall clock; publishes a snapshot ``rate_hz`` times a second.

    Physics and publishing are decoupled (the classic fixed-step accumulator):
    the model always advances in steps of ``dt`` whatever the loop's jitter,
    and a stall longer than ``max_catch_up_s`` is skipped rather than replayed
    in a burst that would block the event loop.
    """

    def __init__(
        self,
        sim_id: str,
        sim: Simulation,
        publish: Callable[[SimState], Awaitable[object]],
        *,
        rate_hz: float = 30.0,
        dt: float = 1.0 / 240.0,
        max_catch_up_s: float = 0.25,
    ):
        if rate_hz <= 0 or dt <= 0:
            raise ValueError("rate_hz and dt must be positive")
        self.sim_id = sim_id
        self.sim = sim
        self.rate_hz = rate_hz
        self.dt = dt
        self._publish = publish
        self._max_catch_up_s = max_catch_up_s
        self._accumulated = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def advance(self, elapsed: float) -> int:
        """Step the model by ``elapsed`` seconds of wall time; returns the number of steps taken."""
        self._accumulated += min(max(elapsed, 0.0), self._max_catch_up_s)
        steps = int(self._accumulated / self.dt + 1e-9)
        for _ in range(steps):
            self.sim.step(self.dt)
        self._accumulated -= steps * self.dt
        return steps

    def snapshot(self) -> SimState:
        return self.sim.snapshot(self.sim_id, running=self.running)

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(), name=f"simulation {self.sim_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate_hz
        last = loop.time()
        next_tick = last + period
        try:
            await self._publish(self.snapshot())
            while True:
                await asyncio.sleep(max(0.0, next_tick - loop.time()))
                now = loop.time()
                self.advance(now - last)
                last = now
                await self._publish(self.snapshot())
                next_tick += period
                if next_tick < now:
                    next_tick = now + period
        except Exception:
            log.exception("simulation %s stopped: publishing its state failed", self.sim_id)
