"""Start and stop a real ``voice-tutor serve`` process for the browser tests."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO_ROOT, cli_env

LINK = re.compile(r"\s+(learner|teacher|observer|kiosk|dashboard):\s+(\S+)")


def start_serve(data_home: Path, secret: str, *options: str) -> tuple[subprocess.Popen, dict[str, str]]:
    """``python -m xr_bridge.serve`` on a free port with ``options``; its printed links by role."""
    process = subprocess.Popen(
        [sys.executable, "-m", "xr_bridge.serve", "--port", "0", "--secret", secret, *options],
        cwd=REPO_ROOT, env=cli_env(data_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put("")], daemon=True).start()
    links: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while "observer" not in links:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = ""
        if not line:
            raise AssertionError(f"voice-tutor serve did not print its links: {stop_serve(process)}")
        if match := LINK.match(line):
            links[match[1]] = match[2]
    return process, links


def stop_serve(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    errors = process.stderr.read() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    return errors
