"""How many simultaneous sessions one process serves in real time, and at what latency.

One process loads the speech models once (:class:`~voice_tutor.session.SpeechModels`,
as ``voice-tutor serve`` does) and runs N real sessions at once on them, for
N = 1, 5, 10, 20, 30, … (``--counts``).  Every session plays the benchmark's
generated learner utterances (``voice_tutor.bench.UTTERANCES``: piper at several
speaking rates and espeak-ng) in real time from its own WAV file into the
offline lesson tutor, writing the tutor's voice to an unpaced WAV sink; their
starts are staggered over one utterance period and each session's utterances
are rotated, so turns end at different moments (see
:func:`voice_tutor.bench.run_concurrent`).

At each N it reports, over every turn of every session: end of speech → final
transcript, → first tutor audio (p50/p95/max); the frame lag (a frame's capture
→ the listener taking it; a session whose lag ever exceeds 1 s has fallen
behind real time); event-loop lag; STT time per final transcript; peak RSS and
the memory added per session against N = 1.  It stops after the first N at
which a session fell behind or p95 first-audio latency exceeded
``--max-p95-ms`` (1500); the largest N before that is "sustained".

Variants (for before/after measurements of the process's shared workers):
``--stt-workers K`` and ``--whisper-threads T`` (the ``[stt] workers`` and
``cpu_threads`` settings: K transcriptions at once, T CPU threads each),
``--tts-threads K``, ``--phrase-cache-mb 0`` (no cache of the tutor's phrases'
audio), ``--partial-ms MS`` (partial-transcript interval; a large value turns
partials off), ``--piper-spinning``: piper's onnxruntime session reopened with
its default busy-waiting worker threads (what this project did before; the
voice is reloaded in this process only).

    .venv/bin/python benchmarks/sessions_load.py [--counts 1,5,10,20,30] [--utterances 8]
        [--max-p95-ms 1500] [--stt-workers K] [--whisper-threads T] [--tts-threads K]
        [--phrase-cache-mb MB] [--partial-ms MS] [--piper-spinning]
        [--no-stop] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from voice_tutor import bench
from voice_tutor.config import Config, with_overrides
from voice_tutor.session import SpeechModels

DEFAULT_COUNTS = (1, 5, 10, 20, 30, 40)
MAX_P95_FIRST_AUDIO_MS = 1500.0


def configure(models: SpeechModels, tts_threads: int | None = None,
              phrase_cache_mb: float | None = None) -> SpeechModels:
    """The same models with other shared-worker settings (for before/after runs)."""
    if tts_threads is not None:
        models.tts_executor.shutdown(wait=True)
        models = dataclasses.replace(models, tts_executor=ThreadPoolExecutor(tts_threads, thread_name_prefix="tts"))
    if phrase_cache_mb is not None:
        cache = getattr(models.synthesizer, "phrase_cache", None)
        if cache is not None:
            cache.max_bytes = int(phrase_cache_mb * 2**20)
            cache.clear()
    return models


def use_spinning_piper(models: SpeechModels, config: Config) -> None:
    """The voice's onnxruntime session as piper opens it (workers spin between runs): the "before"."""
    from piper import PiperVoice

    from voice_tutor.speech.tts import resolve_voice

    models.synthesizer._voice.session = PiperVoice.load(resolve_voice(config.tts.voice)).session
    models.synthesizer.clear_cache()
    models.synthesizer.warm_up()


def executor_threads(executor) -> int:
    return getattr(executor, "_max_workers", 0)


def run_load(
    config: Config,
    counts: list[int],
    utterances: list[tuple[str, object]] | None = None,
    *,
    max_p95_ms: float = MAX_P95_FIRST_AUDIO_MS,
    stop: bool = True,
    tts_threads: int | None = None,
    phrase_cache_mb: float | None = None,
    piper_spinning: bool = False,
    models: SpeechModels | None = None,
    gap_s: float | None = None,
    progress=lambda message: None,
) -> dict:
    """Run :func:`voice_tutor.bench.run_concurrent` at each N in ``counts``; stop at the first N that fails."""
    if utterances is None:
        utterances = bench.generate_utterances()
    own_models = models is None
    if models is None:
        models = SpeechModels.load(config)
    if piper_spinning:
        use_spinning_piper(models, config)
    models = configure(models, tts_threads, phrase_cache_mb)
    cache = getattr(models.synthesizer, "phrase_cache", None)
    idle_mb = bench.RssSampler().now_mb()
    rows = []
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "stt": models.recognizer.description,
        "tts": models.synthesizer.description,
        "stt_workers": models.recognizer.workers,
        "tts_threads": executor_threads(models.tts_executor),
        "piper_spinning_threads": piper_spinning,
        "phrase_cache_mb": round(cache.max_bytes / 2**20, 1) if cache is not None else None,
        "partial_interval_ms": config.turns.partial_interval_ms,
        "utterances_per_session": len(utterances),
        "max_p95_first_audio_ms": max_p95_ms,
        "max_frame_lag_ms": bench.MAX_FRAME_LAG_S * 1000,
        "models_loaded_idle_mb": round(idle_mb, 1),
        "rows": rows,
    }
    peak_one = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in counts:
                progress(f"{n} sessions…")
                started = time.monotonic()
                report = bench.run_concurrent(models, config, utterances, n, Path(tmp), gap_s=gap_s)
                first_audio = report["latency_ms"]["first_audio"]
                peak = report["memory_mb"]["peak"]
                if n == 1:
                    peak_one = peak
                fast_enough = first_audio["n"] > 0 and first_audio["p95"] <= max_p95_ms
                row = {
                    "sessions": n,
                    "turns": report["turns"],
                    "latency_ms": report["latency_ms"],
                    "frame_lag_ms": report["frame_lag_ms"],
                    "event_loop_lag_ms": report["event_loop_lag_ms"],
                    "stt_ms": report["stt_in_session"]["ms"],
                    "sessions_kept_up": report["sessions_kept_up"],
                    "turns_without_audio": report["turns_without_audio"],
                    "replies_cut": report["replies_cut"],
                    "peak_rss_mb": peak,
                    "added_per_session_mb": (
                        round((peak - peak_one) / (n - 1), 1) if peak_one is not None and n > 1 else None
                    ),
                    "recordings_mb_per_session": report["memory_mb"]["recordings_per_session"],
                    "phrase_cache": {"hits": cache.hits, "misses": cache.misses} if cache is not None else None,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    "wall_s": round(time.monotonic() - started, 1),
                    "ok": report["all_kept_up"] and fast_enough,
                }
                rows.append(row)
                progress(format_row(row))
                if stop and not row["ok"]:
                    break
    finally:
        if own_models:
            models.close()
    passed = [row["sessions"] for row in rows if row["ok"]]
    # Sustained: the largest N such that it and every smaller N tried passed.
    sustained = 0
    for row in rows:
        if not row["ok"]:
            break
        sustained = row["sessions"]
    result["sustained_sessions"] = sustained
    result["passed"] = passed
    return result


def format_row(row: dict) -> str:
    latency = row["latency_ms"]
    added = row["added_per_session_mb"]
    return (
        f"{row['sessions']:>4} {row['turns']:>6} "
        f"{latency['final_transcript']['p50']:>7.0f} {latency['final_transcript']['p95']:>7.0f} "
        f"{latency['first_audio']['p50']:>7.0f} {latency['first_audio']['p95']:>7.0f} "
        f"{latency['first_audio']['max']:>7.0f} "
        f"{row['frame_lag_ms']['p95']:>6.0f} {row['frame_lag_ms']['max']:>7.0f} "
        f"{row['stt_ms']['p50']:>6.0f} "
        f"{row['sessions_kept_up']:>3}/{row['sessions']:<3} "
        f"{row['peak_rss_mb']:>6.0f} {'' if added is None else f'{added:.1f}':>6} "
        f"{'yes' if row['ok'] else 'NO':>4}"
    )


HEADER = (
    "   N  turns  final transcript  first tutor audio        frame lag     STT   kept   peak  +MB/   ok\n"
    "                 p50     p95     p50     p95     max    p95     max    p50    up    RSS   sess\n"
    "                  ms      ms      ms      ms      ms     ms      ms     ms           MB"
)


def format_table(result: dict) -> str:
    lines = [
        f"machine: {result['machine']} (load average at start {result['load_average_at_start']})",
        f"speech: {result['stt']}; voice: {result['tts']}",
        f"workers: {result['stt_workers']} STT, {result['tts_threads']} TTS thread(s)"
        f"{' (piper threads spinning)' if result['piper_spinning_threads'] else ''}; "
        f"phrase cache {result['phrase_cache_mb']} MB; "
        f"partials every {result['partial_interval_ms']} ms of speech",
        f"each session: {result['utterances_per_session']} utterances in real time; "
        f"a row fails when a session falls behind (frame lag > {result['max_frame_lag_ms'] / 1000:.0f} s) "
        f"or p95 first audio > {result['max_p95_first_audio_ms']:.0f} ms",
        f"models loaded, idle: {result['models_loaded_idle_mb']:.0f} MB",
        "",
        HEADER,
        *(format_row(row) for row in result["rows"]),
        "",
        f"sustained in real time: {result['sustained_sessions']} sessions",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default=",".join(map(str, DEFAULT_COUNTS)), help="session counts to try, in order")
    parser.add_argument("--utterances", type=int, default=8, help="learner utterances per session (of 12)")
    parser.add_argument("--max-p95-ms", type=float, default=MAX_P95_FIRST_AUDIO_MS)
    parser.add_argument("--no-stop", action="store_true", help="try every count even after one fails")
    parser.add_argument("--stt-workers", type=int, help="[stt] workers: transcriptions at once (0: automatic)")
    parser.add_argument("--tts-threads", type=int)
    parser.add_argument("--phrase-cache-mb", type=float)
    parser.add_argument("--partial-ms", type=int, help="partial-transcript interval (ms of speech)")
    parser.add_argument("--piper-spinning", action="store_true",
                        help="piper's onnxruntime workers busy-wait between runs (the behaviour before)")
    parser.add_argument("--whisper-threads", type=int, help="[stt] cpu_threads per worker (0: cores shared out)")
    parser.add_argument("--beam-size", type=int, help="[stt] beam_size: beams per turn's decoding")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = with_overrides(
        Config(), stt={"device": args.device, "cpu_threads": args.whisper_threads, "workers": args.stt_workers,
                        "beam_size": args.beam_size},
        turns={"partial_interval_ms": args.partial_ms},
    )
    try:
        bench.check_device(config)
    except bench.NoGpu as error:
        print(f"sessions_load: {error}", file=sys.stderr)
        return 2
    utterances = bench.generate_utterances(bench.UTTERANCES[: args.utterances])
    result = run_load(
        config, [int(n) for n in args.counts.split(",") if n.strip()], utterances,
        max_p95_ms=args.max_p95_ms, stop=not args.no_stop,
        tts_threads=args.tts_threads, phrase_cache_mb=args.phrase_cache_mb,
        piper_spinning=args.piper_spinning,
        progress=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
