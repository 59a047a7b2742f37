"""``voice-tutor bench``: latency, speed and memory of the voice loop on this machine.

A fixed set of learner utterances is synthesized (piper at several speaking
rates, and espeak-ng when installed), played in real time into one real
session running the offline tutor, and the latencies are read from the
session's own events.  The models are then timed alone.

With ``sessions=N`` (``python -m voice_tutor.bench --sessions N``) the same
utterances are also played into N sessions at once, in one process, on the one
shared :class:`SpeechModels` (each session its own real-time file source and
unpaced WAV sink, starts staggered over one utterance period, utterance order
rotated), and the report adds per-stage p50/p95 over every turn, whether each
session kept up with real time (frame lag: the time from a frame's capture to
the listener taking it), event-loop lag, in-session STT speed, and the memory
of one session against N.

The building blocks (utterance generator, :func:`run_sessions`,
:func:`run_concurrent`, :func:`word_errors`) are what ``benchmarks/side_by_side.py``
and ``benchmarks/sessions_load.py`` use.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import soxr

from rapidfuzz.distance import Levenshtein

from voice_tutor.audio.turns import sounds_unfinished
from voice_tutor.config import Config, TextToSpeechConfig, TurnTakingConfig
from voice_tutor.dialogue.answers import normalize
from voice_tutor.session import Session, SpeechModels

SAMPLE_RATE = 16_000

UTTERANCES = [
    ("piper", 1.0, "Twelve."),
    ("piper", 1.15, "I think it is nine."),
    ("piper", 0.9, "Seventeen."),
    ("piper", 1.0, "Is it eleven?"),
    ("piper", 1.2, "Can you give me a hint, please?"),
    ("piper", 1.0, "The answer is the sum."),
    ("espeak", 1.0, "I believe the answer is twelve."),
    ("piper", 0.95, "Fifteen minus six is nine."),
    ("espeak", 1.0, "Could you repeat the question please?"),
    ("piper", 1.1, "Eight plus nine makes seventeen."),
    ("piper", 1.0, "I don't know."),
    ("espeak", 1.0, "The total is seventeen."),
]
"""(engine, setting, text): piper's setting is its length_scale; espeak's is 1.0 (en-us) or a voice name."""
GAP_S = 2.2
TTS_SENTENCES = ["That's right!", "Not quite.", "Here's a hint: Seven needs three more to make ten."]
MAX_FRAME_LAG_S = 1.0
"""A session whose listener ever takes a frame later than this after its capture has fallen behind real time."""


# --- learner utterances ----------------------------------------------------------------------------


def _espeak(text: str, voice: str = "en-us") -> np.ndarray | None:
    if not shutil.which("espeak-ng"):
        return None
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-v", voice, "-w", wav.name, text], check=True, capture_output=True)
        audio, rate = soundfile.read(wav.name, dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, SAMPLE_RATE).astype(np.float32)


def make_utterances(specs: list[tuple[str, float | str, str]] | None = None) -> list[tuple[str, np.ndarray]]:
    """(text, 16 kHz audio) for each utterance spec (default :data:`UTTERANCES`).

    Specs are ``("piper", length_scale, text)`` or ``("espeak", voice, text)``
    (voice ``1.0`` is en-us).  espeak-ng utterances are skipped when it is not
    installed.  Use :func:`generate_utterances` to run this in a child process.
    """
    from voice_tutor.speech.tts import SpeechSynthesizer

    voices: dict[float, SpeechSynthesizer] = {}
    made = []
    for engine, setting, text in UTTERANCES if specs is None else specs:
        if engine == "espeak":
            audio = _espeak(text, setting if isinstance(setting, str) else "en-us")
            if audio is None:
                continue
        elif engine == "piper":
            rate = float(setting)
            if rate not in voices:
                voices[rate] = SpeechSynthesizer(TextToSpeechConfig(length_scale=rate))
            voice = voices[rate]
            audio = soxr.resample(voice.synthesize(text), voice.sample_rate, SAMPLE_RATE).astype(np.float32)
        else:
            raise ValueError(f"unknown utterance engine {engine!r} (piper or espeak)")
        made.append((text, audio))
    return made


def generate_utterances(specs: list[tuple[str, float | str, str]] | None = None) -> list[tuple[str, np.ndarray]]:
    """:func:`make_utterances` in a child process, so the extra voices it loads do not count in our memory."""
    specs = UTTERANCES if specs is None else specs
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(make_utterances, specs).result()


def word_errors(reference: str, hypothesis: str) -> int:
    """Word-level edit distance after normalizing numbers and punctuation."""
    return Levenshtein.distance(normalize(reference).split(), normalize(hypothesis).split())


def word_count(text: str) -> int:
    return len(normalize(text).split())


def recording_audio(clips: list[np.ndarray], gap_s: float | None = None) -> np.ndarray:
    """The clips on one timeline: ``gap_s`` (default :data:`GAP_S`) of silence before each and after the last."""
    gap = np.zeros(int((GAP_S if gap_s is None else gap_s) * SAMPLE_RATE), np.float32)
    return np.concatenate([gap] + [x for clip in clips for x in (clip, gap)])


def write_recording(path: Path, clips: list[np.ndarray], gap_s: float | None = None) -> Path:
    """:func:`recording_audio` as a 16 kHz WAV file."""
    soundfile.write(path, recording_audio(clips, gap_s), SAMPLE_RATE)
    return path


# --- statistics --------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def distribution(values: list[float], digits: int = 1) -> dict:
    """p50, p95, max and count of some values (NaN when there are none)."""
    return {
        "p50": round(_percentile(values, 50), digits),
        "p95": round(_percentile(values, 95), digits),
        "max": round(max(values), digits) if values else float("nan"),
        "n": len(values),
    }


class RssSampler:
    """The process's resident memory, sampled every ``interval_s`` on a thread: ``peak_mb`` of a block."""

    def __init__(self, interval_s: float = 0.02):
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_mb = self.peak_mb = self.now_mb()

    def now_mb(self) -> float:
        return self._process.memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak_mb = max(self.peak_mb, self.now_mb())

    def __enter__(self) -> RssSampler:
        self.start_mb = self.peak_mb = self.now_mb()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, self.now_mb())


# --- sessions -----------------------------------------------------------------------------------------


class _FrameLagProbe:
    """Wraps a source: how late (after its capture) the listener took each frame."""

    def __init__(self, source):
        self.source = source
        self.lags_s: list[float] = []

    async def frames(self):
        async for frame in self.source.frames():
            self.lags_s.append(time.monotonic() - frame.captured_at)
            yield frame


@dataclass
class SessionRun:
    """What one benchmark session did: its turns, final transcripts and frame lags."""

    turns: list = field(default_factory=list)
    finals: list = field(default_factory=list)
    partials: list = field(default_factory=list)
    frame_lags_s: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    wall_s: float = 0.0

    @property
    def max_lag_s(self) -> float:
        return max(self.frame_lags_s, default=0.0)

    @property
    def kept_up(self) -> bool:
        return self.max_lag_s <= MAX_FRAME_LAG_S


async def _one_session(models: SpeechModels, config: Config, source, workdir: Path, name: str,
                       delay_s: float) -> SessionRun:
    from voice_tutor.audio.sinks import WavFileSink
    from voice_tutor.dialogue.lesson_tutor import LessonTutor
    from voice_tutor.events import FinalTranscript, PartialTranscript
    from voice_tutor.learning.lessons import find_lesson, load_lesson

    await asyncio.sleep(delay_s)
    lesson = load_lesson(find_lesson(config.dialogue.lesson, config.dialogue.lessons_dir))
    probe = _FrameLagProbe(source)
    # Replies are written without real-time pacing so every utterance is a fresh turn, not a barge-in.
    sink = WavFileSink(workdir / f"tutor-{name}.wav", models.synthesizer.sample_rate, realtime=False)
    session = Session(models, LessonTutor(lesson), probe, sink, config, session_id=name)
    events = session.bus.subscribe()
    run = SessionRun(audio_s=probe.source.duration_s + probe.source.tail_silence_s)

    def keep(event) -> None:
        if isinstance(event, FinalTranscript):
            run.finals.append(dataclasses.replace(event, audio=None))  # the bench's memory is not the session's
        elif isinstance(event, PartialTranscript):
            run.partials.append(event)

    async def collect() -> None:
        while True:
            keep(await events.get())

    collector = asyncio.create_task(collect())
    started = time.monotonic()
    try:
        run.turns = await session.run()
    finally:
        run.wall_s = time.monotonic() - started
        await asyncio.sleep(0)
        collector.cancel()
        while not events.empty():
            keep(events.get_nowait())
    run.frame_lags_s = probe.lags_s
    return run


async def _loop_lag(samples: list[float], interval_s: float = 0.01) -> None:
    """How late the event loop wakes a 10 ms sleeper: anything blocking the loop shows here."""
    while True:
        due = time.monotonic() + interval_s
        await asyncio.sleep(interval_s)
        samples.append(max(0.0, time.monotonic() - due))


async def run_sessions(models: SpeechModels, config: Config, recordings: list[Path], workdir: Path,
                       delays_s: list[float] | None = None) -> tuple[list[SessionRun], list[float]]:
    """Run one real session per recording at once (session i starts after ``delays_s[i]``).

    Returns each session's run and the event loop's wake-up lags (seconds).
    """
    from voice_tutor.audio.sources import FileSource

    delays_s = delays_s or [0.0] * len(recordings)
    # Decoded before the clock starts: reading the benchmark's files is not the sessions' work.
    sources = [FileSource(path, realtime=True) for path in recordings]
    loop_lags: list[float] = []
    watcher = asyncio.create_task(_loop_lag(loop_lags))
    try:
        runs = await asyncio.gather(*(
            _one_session(models, config, source, workdir, f"s{index:03d}", delay)
            for index, (source, delay) in enumerate(zip(sources, delays_s, strict=True))
        ))
    finally:
        watcher.cancel()
    return list(runs), loop_lags


def endpoint_to_final_ms(final, turns: TurnTakingConfig) -> float:
    """From the moment the silence was long enough to end the turn to the final transcript.

    The listener ends a turn after ``end_of_turn_ms`` of silence, or
    ``unfinished_end_of_turn_ms`` when the words trail off; with the
    speculative transcript already done, the final follows at once.
    """
    limit = turns.unfinished_end_of_turn_ms if sounds_unfinished(final.text) else turns.end_of_turn_ms
    return (final.t - final.last_voiced_at) * 1000 - limit


def summarize_runs(runs: list[SessionRun], loop_lags: list[float],
                   turn_config: TurnTakingConfig | None = None) -> dict:
    """Per-stage latency over every turn, real-time keeping, in-session STT speed."""
    turn_config = turn_config or TurnTakingConfig()
    turns = [turn for run in runs for turn in run.turns]
    stages = {}
    for stage in ("final_transcript", "first_text", "first_audio"):
        stages[stage] = distribution([t.latency_ms[stage] for t in turns if stage in t.latency_ms])
    lags = [lag * 1000 for run in runs for lag in run.frame_lags_s]
    finals = [final for run in runs for final in run.finals]
    partials = [partial for run in runs for partial in run.partials]
    stages["endpoint_to_final"] = distribution([endpoint_to_final_ms(f, turn_config) for f in finals])
    stages["partial_behind_speech"] = distribution([(p.t - p.heard_until) * 1000 for p in partials])
    rtf = [f.stt_ms / 1000 / f.audio_duration_s for f in finals if f.audio_duration_s > 0]
    kept_up = sum(run.kept_up for run in runs)
    return {
        "sessions": len(runs),
        "turns": len(turns),
        "turns_without_audio": sum("first_audio" not in t.latency_ms for t in turns),
        "replies_cut": sum(t.cut for t in turns),
        "latency_ms": stages,
        "frame_lag_ms": distribution(lags),
        "worst_session_frame_lag_ms": {
            "p95": round(max((_percentile(run.frame_lags_s, 95) * 1000 for run in runs), default=0.0), 1),
            "max": round(max((run.max_lag_s * 1000 for run in runs), default=0.0), 1),
        },
        "sessions_kept_up": kept_up,
        "all_kept_up": kept_up == len(runs),
        "max_frame_lag_limit_ms": MAX_FRAME_LAG_S * 1000,
        "event_loop_lag_ms": distribution([lag * 1000 for lag in loop_lags]),
        "stt_in_session": {
            "finals": len(finals),
            "ms": distribution([f.stt_ms for f in finals]),
            "real_time_factor_p50": round(_percentile(rtf, 50), 4),
        },
        "wall_over_audio": round(max((run.wall_s / run.audio_s for run in runs if run.audio_s), default=0.0), 3),
    }


def run_concurrent(models: SpeechModels, config: Config, utterances: list[tuple[str, np.ndarray]], sessions: int,
                   workdir: Path, gap_s: float | None = None, stagger: bool = True) -> dict:
    """``sessions`` real sessions at once on the shared models, each playing every utterance in real time.

    Session i plays the utterances rotated by i and starts i/N of one mean
    utterance period (utterance plus gap) after the first, so turns end at
    different moments as they would in a classroom.  Reports
    :func:`summarize_runs` plus memory (RSS before, peak during) and the per-session runs' transcripts.
    """
    gap_s = GAP_S if gap_s is None else gap_s
    clips = [audio for _, audio in utterances]
    period = float(np.mean([len(c) for c in clips])) / SAMPLE_RATE + gap_s
    recordings = []
    for index in range(sessions):
        shift = index % len(clips)
        rotated = clips[shift:] + clips[:shift]
        recordings.append(write_recording(workdir / f"learner-{sessions}-{index:03d}.wav", rotated, gap_s))
    delays = [index * period / sessions if stagger else 0.0 for index in range(sessions)]
    with RssSampler() as memory:
        runs, loop_lags = asyncio.run(run_sessions(models, config, recordings, workdir, delays))
    report = summarize_runs(runs, loop_lags, config.turns)
    report["utterances_per_session"] = len(clips)
    report["stagger_s"] = round(delays[-1], 2) if delays else 0.0
    # Each FileSource holds its recording twice (decoded, and padded while it plays): the harness's share.
    recording_samples = sum(len(c) for c in clips) + int((len(clips) + 1) * gap_s * SAMPLE_RATE) + 2 * SAMPLE_RATE
    report["memory_mb"] = {"before": round(memory.start_mb, 1), "peak": round(memory.peak_mb, 1),
                           "recordings_per_session": round(2 * 4 * recording_samples / 2**20, 1)}
    report["runs"] = runs
    return report


def _public(report: dict) -> dict:
    return {key: value for key, value in report.items() if key != "runs"}


# --- the bench ---------------------------------------------------------------------------------------


def cuda_devices() -> int:
    import ctranslate2

    try:
        return ctranslate2.get_cuda_device_count()
    except Exception:  # a CUDA runtime that cannot start counts as none
        return 0


def run_bench(config: Config, sessions: int | None = None, *, models: SpeechModels | None = None,
              utterances: list[tuple[str, np.ndarray]] | None = None) -> dict:
    """The bench's results (see the module's docstring); ``models`` and ``utterances`` default to fresh ones."""
    if utterances is None:
        utterances = generate_utterances(UTTERANCES)
    own_models = models is None
    started = time.perf_counter()
    if models is None:
        models = SpeechModels.load(config)
    load_s = time.perf_counter() - started
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "stt": models.recognizer.description,
        "tts": models.synthesizer.description,
        "utterances": len(utterances),
        "model_load_s": round(load_s, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        idle_mb = RssSampler().now_mb()
        single = run_concurrent(models, config, utterances, 1, workdir)
        turns = single["runs"][0].turns
        results["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if sessions is not None and sessions >= 1:
            many = single if sessions == 1 else run_concurrent(models, config, utterances, sessions, workdir)
            peak_one, peak_many = single["memory_mb"]["peak"], many["memory_mb"]["peak"]
            results["concurrent"] = {
                **_public(many),
                "memory_mb": {
                    "models_loaded_idle": round(idle_mb, 1),
                    "peak_one_session": peak_one,
                    "peak_n_sessions": peak_many,
                    "added_per_session": round((peak_many - peak_one) / (sessions - 1), 1) if sessions > 1 else None,
                    "first_session": round(peak_one - idle_mb, 1),
                    "recordings_per_session": many["memory_mb"]["recordings_per_session"],
                },
            }
    finals = [t.latency_ms["final_transcript"] for t in turns if "final_transcript" in t.latency_ms]
    audio = [t.latency_ms["first_audio"] for t in turns if "first_audio" in t.latency_ms]
    results["turns"] = len(turns)
    results["end_of_speech_to_final_transcript_ms"] = {"p50": _percentile(finals, 50), "p95": _percentile(finals, 95)}
    results["end_of_speech_to_first_audio_ms"] = {"p50": _percentile(audio, 50), "p95": _percentile(audio, 95)}
    results["frame_lag_ms"] = single["frame_lag_ms"]
    results["endpoint_to_final_transcript_ms"] = single["latency_ms"]["endpoint_to_final"]
    results["partial_behind_speech_ms"] = single["latency_ms"]["partial_behind_speech"]

    fast, standard = [], []
    fast_errors = standard_errors = words = 0
    for text, clip in utterances:
        duration = len(clip) / SAMPLE_RATE
        turn = models.recognizer.transcribe_turn(clip)
        fast.append(turn.elapsed_ms / 1000 / duration)
        t0 = time.perf_counter()
        segments, _info = models.recognizer.whisper.transcribe(clip, language=config.stt.language, beam_size=1)
        full_text = " ".join(segment.text for segment in segments)
        standard.append((time.perf_counter() - t0) / duration)
        fast_errors += word_errors(text, turn.text)
        standard_errors += word_errors(text, full_text)
        words += word_count(text)
    results["stt_real_time_factor"] = {"turn_window_p50": float(np.median(fast)),
                                       "full_window_p50": float(np.median(standard))}
    results["stt_word_error_rate"] = {"turn_window": fast_errors / words, "full_window": standard_errors / words}
    tts_first = []
    for sentence in TTS_SENTENCES * 3:
        _synthesize_uncached(models.synthesizer, sentence)
        tts_first.append(models.synthesizer.last_elapsed_ms)
    results["tts_first_sentence_ms"] = {"p50": _percentile(tts_first, 50), "p95": _percentile(tts_first, 95)}
    if own_models:
        models.close()
    return results


def _synthesize_uncached(synthesizer, text: str) -> np.ndarray:
    """Time piper itself, not a phrase cache in front of it (when the synthesizer has one)."""
    clear = getattr(synthesizer, "clear_cache", None)
    if clear is not None:
        clear()
    return synthesizer.synthesize(text)


def format_table(results: dict) -> str:
    def ms(pair):
        return f"{pair['p50']:.0f} ms", f"{pair['p95']:.0f} ms"

    rows = [
        ("end of speech → final transcript", *ms(results["end_of_speech_to_final_transcript_ms"])),
        ("end of speech → first tutor audio", *ms(results["end_of_speech_to_first_audio_ms"])),
        ("endpoint → final transcript", *ms(results["endpoint_to_final_transcript_ms"])),
        ("partial transcript behind speech", *ms(results["partial_behind_speech_ms"])),
        ("TTS first sentence", *ms(results["tts_first_sentence_ms"])),
    ]
    lines = [
        f"machine: {results['machine']}"
        + (f" (load average {results['load_average'][0]:.1f} at start)" if "load_average" in results else ""),
        f"speech: {results['stt']}; voice: {results['tts']}",
        f"{results['turns']} turns from {results['utterances']} utterances, played in real time",
        "",
        f"{'measure':<36} {'p50':>8} {'p95':>8}",
        *(f"{name:<36} {p50:>8} {p95:>8}" for name, p50, p95 in rows),
        "",
        f"STT real-time factor (turn window)  {results['stt_real_time_factor']['turn_window_p50']:.3f}",
        f"STT real-time factor (30 s window)  {results['stt_real_time_factor']['full_window_p50']:.3f}",
        f"STT word error rate (turn window)   {results['stt_word_error_rate']['turn_window']:.3f}",
        f"STT word error rate (30 s window)   {results['stt_word_error_rate']['full_window']:.3f}",
        f"model load and warm-up              {results['model_load_s']:.1f} s",
        f"peak memory of the session (RSS)    {results['peak_memory_mb']:.0f} MB",
    ]
    if "concurrent" in results:
        lines += ["", *format_concurrent(results["concurrent"])]
    return "\n".join(lines)


def format_concurrent(report: dict) -> list[str]:
    """The table of a :func:`run_concurrent` report (as :func:`run_bench` stores it)."""
    def row(name: str, dist: dict, unit: str = "ms") -> str:
        return f"{name:<36} {dist['p50']:>6.0f} {unit} {dist['p95']:>6.0f} {unit} {dist['max']:>6.0f} {unit}"

    latency = report["latency_ms"]
    memory = report["memory_mb"]
    stt = report["stt_in_session"]
    lines = [
        f"{report['sessions']} sessions at once on one set of models (starts staggered over "
        f"{report['stagger_s']:.1f} s): {report['turns']} turns, {report['utterances_per_session']} utterances each",
        "",
        f"{'measure':<36} {'p50':>9} {'p95':>9} {'max':>9}",
        row("end of speech → final transcript", latency["final_transcript"]),
        row("end of speech → first text", latency["first_text"]),
        row("end of speech → first tutor audio", latency["first_audio"]),
        row("endpoint → final transcript", latency["endpoint_to_final"]),
        row("partial transcript behind speech", latency["partial_behind_speech"]),
        row("frame lag (capture → listener)", report["frame_lag_ms"]),
        row("event-loop lag (10 ms timer)", report["event_loop_lag_ms"]),
        row("STT time per final transcript", stt["ms"]),
        "",
        f"sessions that kept up in real time  {report['sessions_kept_up']} of {report['sessions']} "
        f"(every frame taken within {report['max_frame_lag_limit_ms'] / 1000:.1f} s of capture; "
        f"worst session max lag {report['worst_session_frame_lag_ms']['max']:.0f} ms)",
        f"turns without tutor audio / cut     {report['turns_without_audio']} / {report['replies_cut']}",
        f"STT real-time factor in session     {stt['real_time_factor_p50']:.3f} (p50)",
    ]
    if "models_loaded_idle" in memory:
        lines += [
            f"memory: models loaded, idle         {memory['models_loaded_idle']:.0f} MB",
            f"memory: peak with one session       {memory['peak_one_session']:.0f} MB",
            f"{'memory: peak with %d sessions' % report['sessions']:<36}{memory['peak_n_sessions']:.0f} MB",
        ]
        if memory["added_per_session"] is not None:
            lines.append(f"memory added per further session    {memory['added_per_session']:.1f} MB "
                         f"(of which {memory['recordings_per_session']:.1f} MB is the bench's recording it plays)")
    else:
        lines.append(f"memory: before / peak               {memory['before']:.0f} MB / {memory['peak']:.0f} MB")
    return lines


class NoGpu(RuntimeError):
    """``--device cuda`` on a machine without a CUDA GPU."""


def check_device(config: Config) -> None:
    if config.stt.device == "cuda" and cuda_devices() == 0:
        raise NoGpu("no CUDA GPU is present on this machine (CTranslate2 sees 0 devices); "
                    "run the bench with --device cpu (or auto)")


def main(config: Config, as_json: bool, sessions: int | None = None) -> int:
    try:
        check_device(config)
    except NoGpu as error:
        print(f"voice-tutor bench: {error}", file=sys.stderr)
        return 2
    if sessions is not None and sessions < 1:
        print("voice-tutor bench: --sessions must be at least 1", file=sys.stderr)
        return 2
    results = run_bench(config, sessions)
    print(json.dumps(results, indent=2) if as_json else format_table(results))
    return 0


def _main(argv: list[str] | None = None) -> int:
    """``python -m voice_tutor.bench [--sessions N] [--device cpu|cuda|auto] [--json] [--config FILE]``."""
    from voice_tutor.config import load_config, with_overrides

    parser = argparse.ArgumentParser(prog="python -m voice_tutor.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, metavar="N", help="also run N sessions at once")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where Whisper runs (default auto)")
    parser.add_argument("--config", type=Path, help="a TOML configuration file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = with_overrides(load_config(args.config), stt={"device": args.device})
    return main(config, args.json, args.sessions)


if __name__ == "__main__":
    sys.exit(_main())
