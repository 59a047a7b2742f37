"""A tiny run of benchmarks/bridge_load.py: every client gets every event and latencies are reported.

No timing is asserted: this checks the benchmark works, not how fast the machine is.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bridge_load.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("bridge_load", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "publisher, processes", [("tutor", 1), ("teacher", 2)], ids=["tutor-publishes", "teacher-clients-publish"]
)
def test_a_small_load_run_delivers_every_event_and_reports_latency(publisher: str, processes: int) -> None:
    bench = load_benchmark()
    result = bench.run_benchmark(
        clients=20, rooms=2, duration_s=1.5, warmup_s=0.3, rate_hz=10,
        client_processes=processes, publisher=publisher, pin=False,
    )  # fmt: skip
    assert result["clients_connected"] == 20 and result["connect_failures"] == 0
    assert result["events_published"] >= 2 * 10  # two rooms, ~18 events each
    assert result["clients_with_all_events"] == 20
    assert result["connections_closed_during_run"] == 0
    assert result["deliveries_timed"] > 0 and result["messages_per_s"] > 0
    latency = result["latency_ms"]
    assert set(latency) == {"p50", "p95", "p99", "max"}
    assert all(math.isfinite(v) and v >= 0 for v in latency.values())
    assert latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert result["clock_check"]["ok"]
    assert result["server_rss_mb"]["end"] > 0
    table = bench.format_table(result)
    assert "fan-out latency p99" in table and "20 of 20" in table
