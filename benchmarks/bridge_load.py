"""How many clients one bridge server holds, and how fast it fans events out to them.

A :class:`~xr_bridge.server.BridgeServer` runs in its own process (the server is one
asyncio loop: one core); N websocket clients, spread over M rooms, run as many
asyncio connections in one or more other processes.  Every room has one publisher
that emits a caption every ``1/rate`` seconds carrying its send time:

* ``--publisher tutor`` (default): the room's voice session publishes ``tutor_text``
  on the server's loop (``Room.publish``, the path every tutor event takes); the
  send time is the event's own ``t`` field (the server's ``time.monotonic()``);
* ``--publisher teacher``: a teacher client per room sends ``teacher_message`` over
  its websocket with the send time in the text (adds the inbound leg: parse,
  validation, role and rate checks).

Publishers start with random phases, so rooms do not fire in lockstep.  Fan-out
latency is receive time minus send time, both ``time.monotonic()``: on Linux that is
``CLOCK_MONOTONIC``, one clock for the whole machine (not per process), so
differences across processes on one machine are meaningful; the benchmark checks
it (the server's reading must fall between two of the parent's).  Events sent
during ``--warmup`` are delivered and counted but not timed.

Reported: latency p50/p95/p99/max, messages delivered per second, clients
connected, whether every client received every event of its room, and the CPU
and RSS of the server and client processes over the measured window.  With at
least two CPUs the server is pinned to CPU 0 and the clients to CPU 1
(``--no-pin`` to let the scheduler place them), so the result is the "2 cores"
figure on any machine.  Receivers read frames with ``json.loads`` rather than the
protocol module's full validation, to spend the client core on receiving; the
handshake uses the protocol module.

    .venv/bin/python benchmarks/bridge_load.py [--clients 1000] [--rooms 100] [--duration 20]
        [--rate 10] [--publisher tutor|teacher] [--compression deflate|none] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import resource
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import psutil  # noqa: E402

CONNECT_CONCURRENCY = 64
"""Handshakes in flight at once per client process (the server's accept queue stays short)."""


def raise_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (up to the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _commands() -> asyncio.Queue[list[str]]:
    """stdin lines, split, as an asyncio queue (EOF: ``["quit"]``)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[list[str]] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.split())
        loop.call_soon_threadsafe(lines.put_nowait, ["quit"])

    threading.Thread(target=read, daemon=True).start()
    return lines


# --- the server process ------------------------------------------------------------------------


async def serve_main(secret: bytes, profile: str | None = None) -> None:
    from xr_bridge import protocol as p
    from xr_bridge.server import BridgeServer, Room

    class Publisher:
        """The room's stand-in voice session: it publishes captions when told to."""

        def __init__(self, room: Room):
            self.room = room

        async def run(self, start: float, end: float, rate: float) -> int:
            period = 1.0 / rate
            due = start + random.random() * period
            sent = 0
            while due < end:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent += 1
                await self.room.publish(
                    p.TutorText(session_id=self.room.id, t=time.monotonic(), turn_id=sent, text=f"caption {sent}")
                )
                due += period
            return sent

        async def on_learner_audio(self, *_: object) -> None: ...
        async def on_learner_action(self, *_: object) -> None: ...
        async def on_teacher_message(self, *_: object) -> None: ...
        async def close(self) -> None: ...

    publishers: dict[str, Publisher] = {}

    def factory(room: Room) -> Publisher:
        publishers[room.id] = Publisher(room)
        return publishers[room.id]

    server = BridgeServer(secret, port=0, session_factory=factory)
    await server.start()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    commands = await _commands()
    _send({"event": "ready", "port": server.port, "pid": os.getpid()})
    running: dict[str, asyncio.Task[int]] = {}
    while True:
        command = await commands.get()
        match command:
            case ["clock"]:
                _send({"event": "clock", "t": time.monotonic()})
            case ["publish", start, end, rate]:
                if profiler is not None:
                    profiler.enable()  # the publishing window only, not the connections
                running = {
                    room_id: asyncio.create_task(pub.run(float(start), float(end), float(rate)))
                    for room_id, pub in publishers.items()
                }
                _send({"event": "publishing", "rooms": len(running)})
            case ["published"]:
                counts = {room_id: await task for room_id, task in running.items()}
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(profile)
                _send({"event": "published", "counts": counts})
            case ["members"]:
                _send({"event": "members", "members": sum(len(r.members) for r in server.rooms.values())})
            case ["quit"]:
                _send({"event": "bye"})
                os._exit(0)  # no goodbye to 1000 sockets: the clients are gone already


# --- the client processes -----------------------------------------------------------------------


@dataclass
class _Window:
    start: float = float("inf")
    end: float = float("-inf")


async def clients_main(
    url: str, secret: bytes, ids: list[int], rooms: int, teacher_rooms: list[int], compression: str
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from xr_bridge import auth, protocol as p

    raise_fd_limit(len(ids) + len(teacher_rooms) + 256)
    window = _Window()
    received = [0] * len(ids)
    latencies: list[float] = []
    closed: list[int | None] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    comp = None if compression == "none" else "deflate"

    async def join(room: str, role: p.Role, name: str):
        async with gate:
            ws = await connect(url, compression=comp, ping_interval=None, max_size=p.MAX_SERVER_TEXT_BYTES)
            await ws.send(p.encode_text(p.Hello(versions=[p.PROTOCOL_VERSION], client="bridge-load")))
            assert isinstance(p.parse_text(await ws.recv()), p.Welcome)
            token = auth.make_token(secret, room=room, role=role, name=name)
            await ws.send(p.encode_text(p.Join(token=token, role=role, name=name)))
            joined = p.parse_text(await ws.recv())
            if not isinstance(joined, p.Joined):
                raise RuntimeError(f"join refused: {joined}")
            p.parse_text(await ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES)  # room_state
            return ws

    async def receive(slot: int, ws) -> None:
        loads, monotonic = json.loads, time.monotonic
        try:
            async for frame in ws:
                now = monotonic()
                message = loads(frame)
                kind = message["type"]
                if kind == "tutor_text":
                    sent = message["t"]
                elif kind == "teacher_message":
                    sent = float(message["text"].split()[1])
                else:
                    continue
                received[slot] += 1
                if window.start <= sent < window.end:
                    latencies.append(now - sent)
        except ConnectionClosed as exc:
            closed.append(exc.rcvd.code if exc.rcvd else None)

    started = time.monotonic()
    results = await asyncio.gather(
        *(join(f"room-{i % rooms}", "observer", f"u{i}") for i in ids), return_exceptions=True
    )
    connections = [(slot, ws) for slot, ws in enumerate(results) if not isinstance(ws, BaseException)]
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    teachers = {r: await join(f"room-{r}", "teacher", f"teacher{r}") for r in teacher_rooms}
    readers = [asyncio.create_task(receive(slot, ws)) for slot, ws in connections]
    drains = [asyncio.create_task(_drain(ws)) for ws in teachers.values()]
    _send(
        {
            "event": "connected", "clients": len(connections), "failed": len(failures),
            "first_failure": failures[0] if failures else None, "seconds": time.monotonic() - started,
        }
    )  # fmt: skip

    async def teach(room: int, ws, start: float, end: float, rate: float) -> int:
        period, sent = 1.0 / rate, 0
        due = start + random.random() * period
        while due < end:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent += 1
            await ws.send(p.encode_text(p.TeacherMessage(text=f"{sent} {time.monotonic():.6f}")))
            due += period
        return sent

    commands = await _commands()
    teaching: dict[int, asyncio.Task[int]] = {}
    while True:
        match await commands.get():
            case ["go", start, measure, end, rate]:
                window.start, window.end = float(measure), float(end)
                teaching = {
                    r: asyncio.create_task(teach(r, ws, float(start), float(end), float(rate)))
                    for r, ws in teachers.items()
                }
                _send({"event": "going"})
            case ["report"]:
                published = {f"room-{r}": await task for r, task in teaching.items()}
                # Let the tail arrive: wait until counts stop changing (at most 10 s).
                last, quiet_since, deadline = -1, time.monotonic(), time.monotonic() + 10
                while time.monotonic() < deadline:
                    total = sum(received)
                    if total != last:
                        last, quiet_since = total, time.monotonic()
                    elif time.monotonic() - quiet_since > 0.5:
                        break
                    await asyncio.sleep(0.05)
                _send(
                    {
                        "event": "report", "published": published,
                        "received": {str(ids[slot]): received[slot] for slot, _ in connections},
                        "latencies": latencies, "closed": closed,
                    }
                )  # fmt: skip
            case ["quit"]:
                for task in readers + drains:
                    task.cancel()
                _send({"event": "bye"})
                os._exit(0)


async def _drain(ws) -> None:
    """A teacher reads what it is sent (its own messages come back), so it is never a slow consumer."""
    from websockets.exceptions import ConnectionClosed

    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass


# --- the orchestrating process ------------------------------------------------------------------


class _Child:
    """A child process speaking JSON lines on stdin/stdout."""

    def __init__(self, args: list[str], cpu: set[int] | None):
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )  # fmt: skip
        if cpu:
            os.sched_setaffinity(self.proc.pid, cpu)
        self.ps = psutil.Process(self.proc.pid)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def ask(self, command: str | None, expect: str, timeout: float = 60.0) -> dict:
        if command is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no {expect!r} from {self.proc.args[2:4]} in {timeout} s") from None
        if not line:
            raise RuntimeError(f"{self.proc.args[2:4]} exited ({self.proc.wait()}) before {expect!r}")
        reply = json.loads(line)
        if reply.get("event") != expect:
            raise RuntimeError(f"expected {expect!r}, got {reply}")
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit", "bye", timeout=5)
                self.proc.wait(5)
            except (RuntimeError, subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait()


def _run_delay_s(pid: int) -> float:
    """Seconds the process's threads were runnable but waiting for a CPU (Linux schedstat), or NaN."""
    total = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")
    return total


def _cpu_stat() -> list[int]:
    """The machine's jiffies: user, nice, system, idle, iowait, irq, softirq, steal (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            return [int(x) for x in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return [0] * 8


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_benchmark(
    clients: int = 1000,
    rooms: int = 100,
    duration_s: float = 20.0,
    rate_hz: float = 10.0,
    warmup_s: float = 2.0,
    client_processes: int = 1,
    publisher: str = "tutor",
    compression: str = "deflate",
    pin: bool = True,
    profile_server: str | None = None,
) -> dict:
    """Run one load test on loopback and return its measurements (see the module's docstring)."""
    if publisher not in ("tutor", "teacher") or compression not in ("deflate", "none"):
        raise ValueError("publisher is tutor|teacher, compression deflate|none")
    if clients < rooms:
        raise ValueError("need at least one client per room")
    secret = secrets.token_bytes(32)
    cpus = sorted(os.sched_getaffinity(0))
    pinned = pin and len(cpus) >= 2
    server_cpu, client_cpu = ({cpus[0]}, {cpus[1]}) if pinned else (None, None)
    children: list[_Child] = []
    try:
        profile = ["--profile-server", str(Path(profile_server).resolve())] if profile_server else []
        server = _Child(["--serve", "--secret", secret.hex(), *profile], server_cpu)
        children.append(server)
        ready = server.ask(None, "ready")
        url = f"ws://127.0.0.1:{ready['port']}/ws"

        before = time.monotonic()
        server_clock = server.ask("clock", "clock")["t"]
        after = time.monotonic()
        clock_ok = before <= server_clock <= after

        workers = []
        for w in range(client_processes):
            ids = [i for i in range(clients) if i % client_processes == w]
            teach = [r for r in range(rooms) if r % client_processes == w] if publisher == "teacher" else []
            args = ["--clients-worker", "--url", url, "--secret", secret.hex(), "--rooms", str(rooms),
                    "--ids", ",".join(map(str, ids)), "--teach", ",".join(map(str, teach)),
                    "--compression", compression]  # fmt: skip
            workers.append(_Child(args, client_cpu))
        children.extend(workers)
        connect_started = time.monotonic()
        connected = [w.ask(None, "connected", timeout=120) for w in workers]
        connect_s = time.monotonic() - connect_started
        members = server.ask("members", "members")["members"]
        rss_connected = server.ps.memory_info().rss

        start = time.monotonic() + 0.2
        measure, end = start + warmup_s, start + warmup_s + duration_s
        if publisher == "tutor":
            server.ask(f"publish {start} {end} {rate_hz}", "publishing")
        for w in workers:
            w.ask(f"go {start} {measure} {end} {rate_hz}", "going")
        time.sleep(max(0.0, measure - time.monotonic()))
        cpu_before = [c.ps.cpu_times() for c in children]
        wait_before = [_run_delay_s(c.proc.pid) for c in children]
        load_before = os.getloadavg()[0]
        stat_before = _cpu_stat()
        time.sleep(max(0.0, end - time.monotonic()))
        cpu_after = [c.ps.cpu_times() for c in children]
        wait_after = [_run_delay_s(c.proc.pid) for c in children]
        load_after = os.getloadavg()[0]
        stat_after = _cpu_stat()
        wall = duration_s
        rss_end = server.ps.memory_info().rss
        client_rss = sum(w.ps.memory_info().rss for w in workers)

        published: dict[str, int] = {}
        if publisher == "tutor":
            published = server.ask("published", "published", timeout=30)["counts"]
        reports = [w.ask("report", "report", timeout=60) for w in workers]
        for report in reports:
            published.update(report["published"])
        members_end = server.ask("members", "members")["members"]
    finally:
        for child in reversed(children):
            child.stop()

    received = {int(k): v for report in reports for k, v in report["received"].items()}
    complete = sum(1 for i, n in received.items() if n == published.get(f"room-{i % rooms}", -1))
    latencies = sorted(x for report in reports for x in report["latencies"])
    closed = [code for report in reports for code in report["closed"]]

    def cpu_percent(index: int) -> float:
        b, a = cpu_before[index], cpu_after[index]
        return 100.0 * ((a.user - b.user) + (a.system - b.system)) / wall

    def waited_percent(indexes: range) -> float:
        return round(100.0 * sum(wait_after[i] - wait_before[i] for i in indexes) / wall, 1)

    ticks = [a - b for a, b in zip(stat_after, stat_before)]
    total_ticks = sum(ticks) or 1
    machine_busy = 100.0 * (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / total_ticks * (os.cpu_count() or 1)
    ours = sum(cpu_percent(i) for i in range(len(children)))

    ms = [round(1000 * v, 2) for v in (_percentile(latencies, q) for q in (50, 95, 99, 100))]
    return {
        "clients": clients,
        "rooms": rooms,
        "rate_hz_per_room": rate_hz,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "publisher": publisher,
        "compression": compression,
        "client_processes": client_processes,
        "pinned": f"server on CPU {cpus[0]}, clients on CPU {cpus[1]}" if pinned else "no",
        "clock_check": {"ok": clock_ok, "server_minus_parent_ms": round(1000 * (server_clock - before), 3)},
        "clients_connected": sum(c["clients"] for c in connected),
        "connect_failures": sum(c["failed"] for c in connected),
        "first_connect_failure": next((c["first_failure"] for c in connected if c["first_failure"]), None),
        "connect_s": round(connect_s, 2),
        "server_members_after_connect": members,
        "server_members_at_end": members_end,
        "events_published": sum(published.values()),
        "clients_with_all_events": complete,
        "deliveries_timed": len(latencies),
        "messages_per_s": round(len(latencies) / wall, 1),
        "latency_ms": dict(zip(("p50", "p95", "p99", "max"), ms)),
        "connections_closed_during_run": len(closed),
        "server_cpu_percent": round(cpu_percent(0), 1),
        "client_cpu_percent": round(sum(cpu_percent(i) for i in range(1, len(children))), 1),
        "server_runqueue_wait_percent": waited_percent(range(1)),
        "client_runqueue_wait_percent": waited_percent(range(1, len(children))),
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "other_processes_cpu_percent": round(max(0.0, machine_busy - ours), 1),
        "steal_percent": round(100.0 * ticks[7] / total_ticks * (os.cpu_count() or 1), 1),
        "server_rss_mb": {"connected": round(rss_connected / 2**20, 1), "end": round(rss_end / 2**20, 1)},
        "client_rss_mb": round(client_rss / 2**20, 1),
        "cpus": os.cpu_count(),
    }


def format_table(result: dict) -> str:
    lat, rss, members = result["latency_ms"], result["server_rss_mb"], result["server_members_after_connect"]
    rows = [
        ("clients connected", f"{result['clients_connected']} of {result['clients']} in {result['rooms']} rooms "
                              f"({result['connect_s']} s to connect; server sees {members})"),
        ("publisher", f"{result['publisher']}, {result['rate_hz_per_room']:g} events/s per room, "
                      f"permessage-deflate {'on' if result['compression'] == 'deflate' else 'off'}"),
        ("measured", f"{result['duration_s']:g} s after {result['warmup_s']:g} s warm-up; {result['pinned']}"),
        ("events published", str(result["events_published"])),
        ("clients with every event", f"{result['clients_with_all_events']} of {result['clients_connected']}"),
        ("deliveries/s", f"{result['messages_per_s']:,.0f}"),
        ("fan-out latency p50", f"{lat['p50']:.2f} ms"),
        ("fan-out latency p95", f"{lat['p95']:.2f} ms"),
        ("fan-out latency p99", f"{lat['p99']:.2f} ms"),
        ("fan-out latency max", f"{lat['max']:.2f} ms"),
        ("server CPU", f"{result['server_cpu_percent']:.0f} % of one core"),
        ("server RSS", f"{rss['connected']} MB connected, {rss['end']} MB at end"),
        ("client CPU / RSS", f"{result['client_cpu_percent']:.0f} % / {result['client_rss_mb']} MB "
                             f"({result['client_processes']} process{'es' if result['client_processes'] > 1 else ''})"),
        ("waiting for a CPU", f"server {result['server_runqueue_wait_percent']} %, clients "
                              f"{result['client_runqueue_wait_percent']} % of the time (load average "
                              f"{result['load_average_1min'][0]} -> {result['load_average_1min'][1]})"),
        ("other processes", f"{result['other_processes_cpu_percent']:.0f} % CPU (of {100 * result['cpus']} %), "
                            f"steal {result['steal_percent']:.0f} %"),
        ("connections closed", str(result["connections_closed_during_run"])),
        ("clock check", "CLOCK_MONOTONIC shared across processes" if result["clock_check"]["ok"] else "FAILED"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second per room")
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--publisher", choices=("tutor", "teacher"), default="tutor")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate",
                        help="what clients offer: browsers offer permessage-deflate")  # fmt: skip
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and clients to CPUs 0 and 1")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--profile-server", metavar="PATH", help="cProfile the server while it publishes (tutor mode)")
    # internal: the child processes
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clients-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ids", default="", help=argparse.SUPPRESS)
    parser.add_argument("--teach", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve:
        raise_fd_limit(65536)
        asyncio.run(serve_main(bytes.fromhex(args.secret), args.profile_server))
        return 0
    if args.clients_worker:
        ids = [int(x) for x in args.ids.split(",") if x]
        teach = [int(x) for x in args.teach.split(",") if x]
        asyncio.run(clients_main(args.url, bytes.fromhex(args.secret), ids, args.rooms, teach, args.compression))
        return 0

    result = run_benchmark(
        clients=args.clients, rooms=args.rooms, duration_s=args.duration, rate_hz=args.rate,
        warmup_s=args.warmup, client_processes=args.client_processes, publisher=args.publisher,
        compression=args.compression, pin=not args.no_pin, profile_server=args.profile_server,
    )  # fmt: skip
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
