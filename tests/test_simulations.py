"""The bridge's simulations against known physics, and their real-time runner."""

from __future__ import annotations

import asyncio
import itertools
import math

import numpy as np
import pytest

from xr_bridge import protocol
from xr_bridge.simulations import MODELS, Pendulum, Projectile, SimulationRunner, create

DT = 1.0 / 240.0


def crossing_times(sim: Pendulum, duration: float, dt: float = DT) -> np.ndarray:
    """Times θ crosses zero going up, linearly interpolated within the step."""
    times = []
    prev_t, prev_theta = sim.t, sim.state()["theta"]
    while sim.t < duration:
        sim.step(dt)
        theta = sim.state()["theta"]
        if prev_theta < 0.0 <= theta:
            times.append(prev_t + dt * (-prev_theta) / (theta - prev_theta))
        prev_t, prev_theta = sim.t, theta
    return np.array(times)


def exact_period(length: float, g: float, amplitude: float) -> float:
    """T = 2π√(L/g) / AGM(1, cos(θ0/2)), the exact large-amplitude period."""
    a, b = 1.0, math.cos(amplitude / 2.0)
    for _ in range(30):
        a, b = (a + b) / 2.0, math.sqrt(a * b)
    return 2.0 * math.pi * math.sqrt(length / g) / a


@pytest.mark.parametrize(("length", "g"), [(1.0, 9.81), (2.5, 9.81), (0.5, 1.62)])
def test_small_angle_period_matches_2pi_sqrt_l_over_g(length: float, g: float) -> None:
    sim = Pendulum({"length": length, "gravity": g, "angle": 0.05})
    expected = 2.0 * math.pi * math.sqrt(length / g)
    periods = np.diff(crossing_times(sim, 6 * expected))
    assert len(periods) >= 4
    assert periods.mean() == pytest.approx(expected, rel=0.01)


def test_large_angle_period_matches_the_exact_solution() -> None:
    sim = Pendulum({"length": 1.0, "angle": 2.0})
    expected = exact_period(1.0, 9.81, 2.0)
    assert expected > 1.25 * 2.0 * math.pi * math.sqrt(1.0 / 9.81)  # well outside the small-angle regime
    assert np.diff(crossing_times(sim, 5 * expected)).mean() == pytest.approx(expected, rel=1e-4)


def test_undamped_energy_is_conserved_and_damping_decays_as_exp_minus_bt_over_2() -> None:
    sim = Pendulum({"angle": 0.5})
    start = sim.energy()
    for _ in range(2400):
        sim.step(DT)
    assert sim.energy() == pytest.approx(start, rel=1e-6)

    b = 0.4
    sim = Pendulum({"angle": 0.02, "damping": b})
    for _ in range(int(5.0 / DT)):
        sim.step(DT)
    # For small angles the energy goes as amplitude², i.e. e^{-b t}.
    assert sim.energy() / (9.81 * (1 - math.cos(0.02))) == pytest.approx(math.exp(-b * sim.t), rel=0.02)


def test_pendulum_parameters_change_while_running() -> None:
    sim = Pendulum({"angle": 0.05})
    for _ in range(100):
        sim.step(DT)
    sim.set_param("length", 4.0)
    sim.set_param("angle", 0.05)  # release from rest again
    assert sim.state()["omega"] == 0.0
    t0 = sim.t
    periods = np.diff(crossing_times(sim, t0 + 5 * 4.02))
    assert periods.mean() == pytest.approx(2 * math.pi * math.sqrt(4.0 / 9.81), rel=0.01)
    state = sim.state()
    assert math.hypot(state["x"], state["y"]) == pytest.approx(4.0)


@pytest.mark.parametrize(("speed", "angle_deg", "g"), [(10.0, 45.0, 9.81), (25.0, 30.0, 9.81), (7.0, 70.0, 3.71)])
def test_projectile_range_and_flight_time(speed: float, angle_deg: float, g: float) -> None:
    angle = math.radians(angle_deg)
    sim = Projectile({"speed": speed, "angle": angle, "gravity": g})
    peak = 0.0
    while not sim.landed:
        sim.step(DT)
        peak = max(peak, sim.state()["y"])
    state = sim.state()
    assert state["x"] == pytest.approx(speed**2 * math.sin(2 * angle) / g, rel=1e-9)
    assert state["flight_time"] == pytest.approx(2 * speed * math.sin(angle) / g, rel=1e-9)
    assert peak == pytest.approx((speed * math.sin(angle)) ** 2 / (2 * g), rel=1e-3)
    x = state["x"]
    sim.step(DT)
    assert sim.state()["x"] == x  # stays where it landed


def test_projectile_relaunches_on_speed_or_angle_and_keeps_flying_on_gravity() -> None:
    sim = Projectile({"speed": 20.0, "angle": math.radians(60)})
    for _ in range(120):
        sim.step(DT)
    sim.set_param("speed", 10.0)
    sim.set_param("angle", math.radians(45))
    assert sim.state()["x"] == 0.0 and sim.state()["flight_time"] == 0.0
    # Half way up, gravity halves: the rest of the flight is analytic again.
    half = 10.0 * math.sin(math.radians(45)) / 9.81 / 2
    while sim.flight_time < half - 1e-9:
        sim.step(DT)
    state = sim.state()
    sim.set_param("gravity", 9.81 / 2)
    g2, vy, y = 9.81 / 2, state["vy"], state["y"]
    remaining = (vy + math.sqrt(vy * vy + 2 * g2 * y)) / g2
    while not sim.landed:
        sim.step(DT)
    assert sim.state()["x"] == pytest.approx(state["x"] + state["vx"] * remaining, rel=1e-9)


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("pendulum", {"length": 0.0}, "within"),
        ("pendulum", {"length": math.nan}, "within"),
        ("pendulum", {"mass": 1.0}, "no parameter"),
        ("projectile", {"gravity": -1.0}, "within"),
        ("rocket", {}, "unknown simulation model"),
    ],
)
def test_bad_models_and_parameters_are_refused(model: str, params: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create(model, params)


def test_snapshots_are_valid_protocol_messages() -> None:
    for model in MODELS:
        sim = create(model)
        sim.step(DT)
        snap = sim.snapshot("s1")
        assert protocol.parse_text(protocol.encode_text(snap)) == snap
        assert snap.model == model and snap.step == 1


async def test_runner_follows_the_wall_clock_and_publishes_at_its_rate() -> None:
    published: list[protocol.SimState] = []

    async def publish(state: protocol.SimState) -> None:
        published.append(state)

    runner = SimulationRunner("p", Pendulum(), publish, rate_hz=50.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    runner.start()
    await asyncio.sleep(0.3)
    runner.sim.set_param("length", 2.0)
    await asyncio.sleep(0.2)
    await runner.stop()
    elapsed = loop.time() - started

    assert not runner.running
    assert 18 <= len(published) <= 28  # 50 Hz for 0.5 s, plus the first snapshot
    assert all(a.t < b.t for a, b in itertools.pairwise(published[1:]))
    assert published[-1].t == pytest.approx(elapsed, abs=0.05)
    assert published[-1].step == round(published[-1].t / runner.dt)
    assert published[0].params["length"] == 1.0 and published[-1].params["length"] == 2.0


def test_runner_steps_in_fixed_increments_and_skips_long_stalls() -> None:
    async def publish(state: protocol.SimState) -> None:
        raise AssertionError("not started")

    runner = SimulationRunner("p", Projectile(), publish, dt=0.01, max_catch_up_s=0.25)
    assert runner.advance(0.025) == 2
    assert runner.advance(0.005) == 1  # the 5 ms left over plus these 5 ms
    assert runner.advance(10.0) == 25  # a ten-second stall is not replayed
    assert runner.sim.t == pytest.approx(0.28)
