"""End of speech → first tutor audio at the browser: a real ``voice-tutor serve``, headless Chromium's fake microphone.

One server process (``python -m xr_bridge.serve``: the real models, the offline
tutor) and one headless Chromium with ``--use-file-for-fake-audio-capture``
playing a learner recording (clips of several voices from
``benchmarks/latency_from_audio.py``, with silence between them) into N learner
pages at once, each its own room, hands-free (the page's default), their starts
staggered over one utterance period.  Each page logs when it sent every
microphone frame and when every tutor audio chunk arrived, with their levels
(``window.tutorPage.soundLog``); from those alone:

- end of speech: the last sent frame within 35 dB of the loudest frame of its burst;
- first tutor audio: the first chunk received after it above -50 dBFS, and when
  the page scheduled it to play (its jitter lead after a silence).

An utterance at whose end the page was still receiving the previous reply is
left out and counted.  The machine's load is printed: on 2 shared cores the
browser, the server and its sessions compete for them.

    .venv/bin/python benchmarks/browser_latency.py [--sessions 1,20] [--utterances 12] [--gap 3.5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_from_audio import generate_clips, pick  # noqa: E402

from voice_tutor import bench  # noqa: E402
from voice_tutor.audio.levels import SOUND_FLOOR_DBFS, SPEECH_RANGE_DB  # noqa: E402
from xr_bridge.auth import make_token  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
SECRET = "browser-latency-secret-0123456789"
LEAD_S = 10.0
"""Quiet before the first clip: the page starts, joins and hears the greeting."""
BURST_GAP_MS = 600.0
"""Sent frames further apart than this belong to different utterances (the page sends speech plus a tail)."""
LINK = re.compile(r"\s+learner:\s+(\S+)")


def microphone_file(path: Path, clips: list[np.ndarray], gap_s: float) -> tuple[Path, float]:
    """The clips with ``gap_s`` between them after :data:`LEAD_S` of quiet, at 48 kHz; and its duration."""
    parts = [np.zeros(int(LEAD_S * 16000), np.float32)]
    for clip in clips:
        parts += [clip, np.zeros(int(gap_s * 16000), np.float32)]
    audio = np.concatenate(parts)
    soundfile.write(path, soxr.resample(audio, 16000, 48000), 48000)
    return path, len(audio) / 16000


def start_server(data_home: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "XDG_DATA_HOME": str(data_home), "XDG_CACHE_HOME": os.environ.get(
        "XDG_CACHE_HOME", str(Path.home() / ".cache"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "xr_bridge.serve", "--port", "0", "--secret", SECRET, "--room", "r000",
         "--learner", "L000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if match := LINK.match(line):
            # Keep reading what it prints: a full pipe would stop the server mid-run.
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, match[1].split("?")[0]
        if time.monotonic() > deadline:
            break
    stop_server(process)
    raise RuntimeError("voice-tutor serve did not print its learner link")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def learner_url(base: str, index: int) -> str:
    from urllib.parse import urlencode

    room, name = f"r{index:03d}", f"L{index:03d}"
    token = make_token(SECRET.encode(), room=room, role="learner", name=name, ttl_s=3600)
    return f"{base}?{urlencode({'room': room, 'role': 'learner', 'name': name, 'token': token})}"


async def run_pages(base: str, microphone: Path, duration_s: float, sessions: int, period_s: float) -> list[dict]:
    """N pages at once (staggered over one period), each until its recording has played; their sound logs."""
    from playwright.async_api import async_playwright

    args = ["--no-sandbox", "--headless", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}%noloop",
            "--autoplay-policy=no-user-gesture-required", "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)

        async def one(index: int) -> dict:
            await asyncio.sleep(index * period_s / sessions)
            page = await browser.new_page()
            await page.goto(learner_url(base, index))
            await page.click("#start")
            await page.wait_for_function("window.tutorPage.joined !== null", timeout=60_000)
            await asyncio.sleep(duration_s + 4)
            log = await page.evaluate("window.tutorPage.soundLog")
            await page.close()
            return log

        try:  # a page that could not join (an overloaded machine) is counted, not fatal
            return list(await asyncio.gather(*(one(i) for i in range(sessions)), return_exceptions=True))
        finally:
            await browser.close()


def score(log: dict) -> list[dict]:
    """Per utterance (burst of sent frames): ms from its last loud frame to the first audible chunk received."""
    sent = np.array(log["sent"], dtype=float).reshape(-1, 2)
    received = log["received"]
    if not len(sent):
        return []
    bursts = np.split(sent, np.flatnonzero(np.diff(sent[:, 0]) > BURST_GAP_MS) + 1)
    floor = 10 ** (SOUND_FLOOR_DBFS / 20)
    results = []
    for index, burst in enumerate(bursts):
        loudest = burst[:, 1].max()
        if loudest < floor:
            continue
        end = burst[burst[:, 1] >= loudest * 10 ** (-SPEECH_RANGE_DB / 20), 0].max()
        until = bursts[index + 1][0, 0] if index + 1 < len(bursts) else float("inf")
        overlapped = any(end - 100 <= item[0] <= end and item[1] > floor for item in received)
        first = next((item for item in received if end < item[0] < until and item[1] > floor), None)
        results.append({
            "overlapped": overlapped,
            "received_ms": None if first is None else first[0] - end,
            "plays_ms": None if first is None or len(first) < 3 else first[0] - end + first[2],
        })
    return results


def summarize(per_page: list[list[dict]]) -> dict:
    items = [u for page in per_page for u in page]
    measured = [u for u in items if not u.get("overlapped")]
    return {
        "utterances": len(items),
        "overlapped": len(items) - len(measured),
        "unanswered": sum(1 for u in measured if u["received_ms"] is None),
        "first_audio_received_ms": bench.distribution([u["received_ms"] for u in measured if u["received_ms"] is not None]),
        "first_audio_plays_ms": bench.distribution([u["plays_ms"] for u in measured if u["plays_ms"] is not None]),
    }


def format_report(report: dict) -> str:
    lines = [f"machine: {report['machine']}; load average {report['load_average']} at start; real time, headless Chromium",
             f"voices: {', '.join(report['voices'])}"]
    for count, row in report["runs"].items():
        lines += ["", f"{count} page(s), {row['pages_failed']} of them failed to join: {row['utterances']} utterances "
                  f"({row['overlapped']} left out: tutor still talking; {row['unanswered']} unanswered), "
                  f"load average after {row['load_average_after']}",
                  f"{'last loud microphone frame sent →':46} {'p50':>8} {'p95':>8} {'n':>5}"]
        for label, key in [("first tutor audio chunk received", "first_audio_received_ms"),
                           ("…and scheduled to play (page's jitter lead)", "first_audio_plays_ms")]:
            d = row[key]
            lines.append(f"{label:46} {d['p50']:>6} ms {d['p95']:>5} ms {d['n']:>5}")
    lines += ["", f"reproduce: {report['command']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1", help="comma-separated page counts (e.g. 1,20)")
    parser.add_argument("--utterances", type=int, default=12)
    parser.add_argument("--gap", type=float, default=3.5, help="silence between utterances (s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        print("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    clips = pick(generate_clips(), args.utterances)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": round(os.getloadavg()[0], 2),
        "voices": sorted({c.voice.split()[0] if c.human else c.voice for c in clips}),
        "command": "python benchmarks/browser_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        microphone, duration_s = microphone_file(Path(tmp) / "learner.wav", [c.audio for c in clips], args.gap)
        period_s = (duration_s - LEAD_S) / max(1, len(clips))
        process, base = start_server(Path(tmp) / "xdg")
        try:
            for count in [int(n) for n in args.sessions.split(",")]:
                logs = asyncio.run(run_pages(base, microphone, duration_s, count, period_s))
                report["runs"][count] = summarize([score(log) for log in logs if isinstance(log, dict)])
                report["runs"][count]["pages_failed"] = sum(1 for log in logs if not isinstance(log, dict))
                report["runs"][count]["load_average_after"] = round(os.getloadavg()[0], 2)
        finally:
            stop_server(process)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
