"""Shared fixtures for the voice-loop tests: real models loaded once, real learner audio, the real CLI.

The speech models are loaded once per test session (``SpeechModels.load``,
the same call ``voice-tutor talk`` makes).  Learner speech comes from piper
(the bundled voice, at several speaking rates) and from the espeak-ng command;
every generated file goes under pytest's temporary directories.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import LearnerVoice, Placed, build_recording, espeak, write_wav

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
LLM_SERVER_SCRIPT = TESTS_DIR / "llm_server.py"


# --- models ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def speech_models():
    """The recognizer and synthesizer (plus their worker threads), loaded and warmed once."""
    from voice_tutor.config import Config
    from voice_tutor.session import SpeechModels

    models = SpeechModels.load(Config())
    yield models
    models.close()


@pytest.fixture(scope="session")
def recognizer(speech_models):
    return speech_models.recognizer


@pytest.fixture(scope="session")
def synthesizer(speech_models):
    return speech_models.synthesizer


# --- learner audio ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="session")
def learner_voice() -> LearnerVoice:
    return LearnerVoice()


@pytest.fixture(scope="session")
def say(learner_voice) -> Callable[..., np.ndarray]:
    """``say(text, length_scale=1.0)``: the learner's words by piper, 16 kHz mono (cached)."""
    cache: dict[tuple[str, float], np.ndarray] = {}

    def speak(text: str, length_scale: float = 1.0) -> np.ndarray:
        key = (text, length_scale)
        if key not in cache:
            cache[key] = learner_voice.speak(text, length_scale)
        return cache[key]

    return speak


@pytest.fixture(scope="session")
def espeak_say(audio_dir) -> Callable[..., np.ndarray]:
    """``espeak_say(sentence, speed=None)``: the learner's words by espeak-ng, 16 kHz mono."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    workdir = audio_dir / "espeak"
    workdir.mkdir(exist_ok=True)

    def speak(text: str, speed: int | None = None) -> np.ndarray:
        return espeak(text, workdir, speed=speed)

    return speak


@pytest.fixture
def recording(tmp_path) -> Callable[..., tuple[Path, list[Placed]]]:
    """``recording(parts, name=..., tail_s=...)``: write ``(silence before, speech)`` pairs as a 16 kHz WAV."""

    def make(parts: list[tuple[float, np.ndarray]], name: str = "learner.wav", tail_s: float = 0.5):
        audio, placed = build_recording(parts, tail_s=tail_s)
        return write_wav(tmp_path / name, audio), placed

    return make


# --- the command line ------------------------------------------------------------------------


def _cli_command() -> list[str]:
    script = Path(sys.executable).with_name("voice-tutor")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "voice_tutor.cli"]


def cli_env(data_home: Path | None = None) -> dict[str, str]:
    """The environment minus anything that would point the tutor at an online LLM.

    ``data_home`` keeps any learner database the command writes out of the user's own.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_TUTOR_", "OPENAI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    if data_home is not None:
        env["XDG_DATA_HOME"] = str(data_home)
    return env


@pytest.fixture(scope="session")
def run_cli(tmp_path_factory) -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli(*args, timeout=120, cwd=None)``: run ``voice-tutor`` as a real subprocess."""
    data_home = tmp_path_factory.mktemp("xdg-data")

    def run(*args: str | Path, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*_cli_command(), *map(str, args)],
            capture_output=True, text=True, timeout=timeout, env=cli_env(data_home), cwd=cwd or REPO_ROOT,
        )

    return run


def error_lines(stderr: str) -> list[str]:
    """Stderr minus the '· progress' lines the CLI prints while loading."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("·")]


# --- the OpenAI-compatible test server --------------------------------------------------------


@dataclass
class RunningLLMServer:
    url: str
    log: Path
    process: subprocess.Popen

    def records(self, event: str) -> list[dict]:
        """What the server logged of one kind: "request", "stream_end", ..."""
        import json

        if not self.log.exists():
            return []
        records = [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]
        return [r for r in records if r["event"] == event]

    def requests(self) -> list[dict]:
        return self.records("request")

    def completion_bodies(self) -> list[dict]:
        return [r["body"] for r in self.requests() if r["path"] == "/v1/chat/completions"]


def start_llm_server(workdir: Path, *flags: str) -> RunningLLMServer:
    """Start tests/llm_server.py on a free loopback port (serving model ``tutor-test``); call ``stop`` after."""
    workdir.mkdir(parents=True, exist_ok=True)
    log, errors = workdir / "requests.jsonl", workdir / "server.err"
    with errors.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(LLM_SERVER_SCRIPT), "--port", "0", "--log", str(log), *flags],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    ready, _, _ = select.select([process.stdout], [], [], 15)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        stop_llm_server(process)
        raise RuntimeError(f"llm_server.py did not start: {line!r} {errors.read_text()}")
    return RunningLLMServer(f"http://127.0.0.1:{int(line.split()[1])}/v1", log, process)


def stop_llm_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()


@pytest.fixture
def start_llm(tmp_path) -> Iterator[Callable[..., RunningLLMServer]]:
    """``start_llm(*flags)``: tests/llm_server.py with those flags, as often as a test needs; all stopped after."""
    started: list[RunningLLMServer] = []

    def start(*flags: str) -> RunningLLMServer:
        server = start_llm_server(tmp_path / f"llm{len(started)}", *flags)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_llm_server(server.process)


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory) -> Iterator[RunningLLMServer]:
    """tests/llm_server.py on a free loopback port, serving model ``tutor-test``."""
    server = start_llm_server(tmp_path_factory.mktemp("llm"), "--token-delay-ms", "5")
    try:
        yield server
    finally:
        stop_llm_server(server.process)
