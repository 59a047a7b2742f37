"""End of the learner's speech → first tutor audio, measured from the sound, beside the session's own figure.

Learner clips from several voices (:func:`learner_clips`: real human recordings
that Debian packages ship, flite's voices built from recordings of CMU Arctic
speakers, espeak-ng, piper) are laid on one timeline with silence between them
and played **in real time** into real sessions with the offline tutor, exactly
as ``voice-tutor talk --input learner.wav --output tutor.wav`` does
(``FileSource`` paced like a microphone, the tutor's voice to a real-time
``WavFileSink`` whose file is a timeline aligned with the input).  Then, from
the two files alone:

- end of speech: the end of the clip's last 10 ms window within 35 dB of its
  loudest (:func:`voice_tutor.audio.levels.speech_end_s`);
- first tutor audio: the first 10 ms window of the output timeline above
  -50 dBFS after it (:func:`voice_tutor.audio.levels.first_sound_s`).

Beside it, the session's own ``latency_ms["first_audio"]`` for the same turn,
and where the two disagree: the session's end-of-speech stamp against the
sound's end, and its first-audio event against the first audible sample of
the output.  Replies are uncached by default (``--phrase-cache on`` reports the
cached case).  An utterance answered as more than one turn is a **fragment**:
the tutor replied to part of it.  An utterance whose end the tutor was still
talking over (its reply to the previous one not yet cut) is left out and counted.

    .venv/bin/python benchmarks/latency_from_audio.py [--sessions 1,20] [--utterances N]
        [--phrase-cache off|on] [--gap S] [--json]

Everything here runs in real time; there is no compressed clock to mix in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import soxr

from voice_tutor import bench
from voice_tutor.audio.levels import first_sound_s, speech_end_s, window_levels_db
from voice_tutor.config import Config, with_overrides
from voice_tutor.events import FinalTranscript, TurnCompleted, TutorSpeechStarted
from voice_tutor.session import Session, SpeechModels

SAMPLE_RATE = 16_000
GAP_S = 3.0
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
"""alsa-utils' speaker-test voice prompts: one woman's recorded voice ("Front, center.")."""
CODEC2_RAW = Path("/usr/share/codec2/raw")
"""codec2-examples' test speech: recordings of several men and women (8 kHz, 16-bit raw)."""
CODEC2_CLIPS = ["hts1a", "hts2a", "forig", "morig", "big_dog", "cross", "mmt1", "kristoff"]
TEXTS = [
    "Twelve.", "I think it is nine.", "Is it eleven?", "Can you give me a hint, please?",
    "Fifteen minus six is nine.", "I don't know.", "Eight plus nine makes seventeen.",
    "Could you repeat the question please?", "Seven plus five equals twelve.", "That makes fourteen.",
]
SYNTHETIC_VOICES = [
    ("flite", "slt"), ("flite", "awb"), ("flite", "rms"), ("flite", "kal16"),
    ("espeak", "en-us"), ("espeak", "en-gb-scotland"), ("piper", 1.0), ("piper", 1.25),
]
"""flite's slt/awb/rms are statistical voices trained on CMU Arctic speakers' recordings, kal16 a diphone
concatenation of one speaker's recorded diphones: the closest to human speech after the recordings."""


@dataclass(frozen=True)
class Clip:
    voice: str
    text: str | None
    audio: np.ndarray
    human: bool


def _flite(voice: str, text: str) -> np.ndarray | None:
    if not shutil.which("flite"):
        return None
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", wav.name], check=True, capture_output=True)
        audio, rate = soundfile.read(wav.name, dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, SAMPLE_RATE).astype(np.float32)


def _human_clips() -> list[Clip]:
    clips = []
    for path in sorted(ALSA_SOUNDS.glob("*.wav")):
        if path.stem == "Noise":
            continue
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        text = path.stem.replace("_", ", ").lower().capitalize() + "."
        clips.append(Clip("alsa-utils (woman)", text, soxr.resample(audio.mean(axis=1), rate, SAMPLE_RATE)
                          .astype(np.float32), True))
    for name in CODEC2_CLIPS:
        path = CODEC2_RAW / f"{name}.raw"
        if path.is_file():
            audio = np.fromfile(path, dtype="<i2").astype(np.float32) / 32768
            clips.append(Clip(f"codec2 {name}", None, soxr.resample(audio, 8000, SAMPLE_RATE).astype(np.float32),
                              True))
    return clips


def make_clips() -> list[Clip]:
    """Every available learner clip: the human recordings, then each synthetic voice saying every text."""
    clips = _human_clips()
    for engine, setting in SYNTHETIC_VOICES:
        for index, text in enumerate(TEXTS):
            if engine == "flite":
                audio = _flite(str(setting), text)
            else:
                made = bench.make_utterances([(engine, setting, text)])
                audio = made[0][1] if made else None
            if audio is not None:
                clips.append(Clip(f"{engine} {setting}", text, audio, False))
    return clips


def generate_clips() -> list[Clip]:
    """:func:`make_clips` in a child process (the extra voices it loads stay out of our memory)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(make_clips).result()


def pick(clips: list[Clip], count: int) -> list[Clip]:
    """``count`` clips, round-robin over the voices so every voice is in even a short run."""
    by_voice: dict[str, list[Clip]] = {}
    for clip in clips:
        by_voice.setdefault(clip.voice.split()[0] if clip.human else clip.voice, []).append(clip)
    picked, queues = [], [list(v) for v in by_voice.values()]
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


# --- one session, timed from the sound ----------------------------------------------------------------


@dataclass
class UtteranceResult:
    voice: str
    human: bool
    audio_ms: float | None = None
    """End of speech in the input → first audible output sample (None: no reply before the next clip)."""
    event_ms: float | None = None
    """The session's own first_audio latency for the (last) turn of this utterance."""
    vad_end_late_ms: float | None = None
    """The session's end-of-speech stamp − the sound's end."""
    output_late_ms: float | None = None
    """First audible output sample − the session's TutorSpeechStarted."""
    turns: int = 0
    overlapped: bool = False
    speech_end_s: float = 0.0
    first_sound_s: float | None = None
    turn_indices: list[int] = field(default_factory=list)


@dataclass
class SessionResult:
    utterances: list[UtteranceResult] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    """The session's final transcripts, in order."""


async def _run_one(models: SpeechModels, config: Config, clips: list[Clip], gap_s: float, workdir: Path,
                   name: str, delay_s: float) -> SessionResult:
    from voice_tutor.audio.sinks import WavFileSink
    from voice_tutor.audio.sources import FileSource
    from voice_tutor.dialogue.lesson_tutor import LessonTutor
    from voice_tutor.learning.lessons import find_lesson, load_lesson

    recording = workdir / f"learner-{name}.wav"
    bench.write_recording(recording, [clip.audio for clip in clips], gap_s)
    output = workdir / f"tutor-{name}.wav"
    await asyncio.sleep(delay_s)
    source = FileSource(recording, realtime=True)
    sink = WavFileSink(output, models.synthesizer.sample_rate, realtime=True,
                       timeline_start=lambda: source.started_at)
    lesson = load_lesson(find_lesson(config.dialogue.lesson, config.dialogue.lessons_dir))
    session = Session(models, LessonTutor(lesson), source, sink, config, session_id=name)
    events = session.bus.subscribe()
    seen: list = []

    async def collect() -> None:
        while True:
            seen.append(await events.get())

    collector = asyncio.create_task(collect())
    try:
        await session.run()
    finally:
        await asyncio.sleep(0)
        collector.cancel()
        while not events.empty():
            seen.append(events.get_nowait())
    return _score(clips, gap_s, source.started_at or 0.0, output, seen)


def score_from_sound(clips: list[Clip], gap_s: float, tutor: np.ndarray, rate: int, turn_times_s: list[float],
                     reply_not_before_s: list[float | None] | None = None) -> list[UtteranceResult]:
    """Each clip's latency from the two timelines (clips laid out as :func:`voice_tutor.bench.recording_audio`).

    ``turn_times_s``: when each of the system's turns ended or reached its tutor,
    in seconds of the recording; the turns falling between a clip's start and the
    next clip's are that clip's (more than one: the tutor replied to a fragment).
    ``reply_not_before_s`` (per turn) only tells this turn's reply from a late
    reply to an earlier turn (an overloaded system): sound before it is not this
    reply's.  The latency itself is read from the sound.
    """
    results = []
    position = gap_s
    for index, clip in enumerate(clips):
        clip_start = position
        position += len(clip.audio) / SAMPLE_RATE + gap_s
        next_start = position if index + 1 < len(clips) else position + 10.0
        end = speech_end_s(clip.audio, SAMPLE_RATE)
        if end is None:
            continue
        item = UtteranceResult(clip.voice, clip.human, speech_end_s=clip_start + end)
        results.append(item)
        before = tutor[max(0, int((item.speech_end_s - 0.03) * rate)):int(item.speech_end_s * rate)]
        if len(before) and window_levels_db(before, rate).max(initial=-200) > -50:
            item.overlapped = True  # the tutor was still talking when the learner stopped
            continue
        item.turn_indices = [i for i, at in enumerate(turn_times_s) if clip_start <= at < next_start]
        item.turns = len(item.turn_indices)
        after = item.speech_end_s
        if item.turn_indices and reply_not_before_s is not None:
            not_before = reply_not_before_s[item.turn_indices[-1]]
            if not_before is None:
                continue  # this turn's reply never played
            after = max(after, not_before)
        first = first_sound_s(tutor, rate, after_s=after)
        if first is not None and first < next_start:
            item.first_sound_s = first
            item.audio_ms = round((first - item.speech_end_s) * 1000, 1)
    return results


def _score(clips: list[Clip], gap_s: float, origin: float, output: Path, seen: list) -> SessionResult:
    """Each clip's latency from the two timelines, beside the session's events for the same turn."""
    tutor, rate = soundfile.read(output, dtype="float32")
    finals = sorted((e for e in seen if isinstance(e, FinalTranscript)), key=lambda e: e.utterance_id)
    completed = {e.turn_id: e for e in seen if isinstance(e, TurnCompleted)}
    started = {e.turn_id: e.t for e in seen if isinstance(e, TutorSpeechStarted)}
    result = SessionResult(heard=[final.text for final in finals])
    # A reply's sound starts with its TutorSpeechStarted (within a block): anything 100 ms before is another's.
    not_before = [started[f.utterance_id] - origin - 0.1 if f.utterance_id in started else None for f in finals]
    result.utterances = score_from_sound(clips, gap_s, tutor, rate, [f.last_voiced_at - origin for f in finals],
                                         not_before)
    for item in result.utterances:
        if not item.turn_indices:
            continue
        last = finals[item.turn_indices[-1]]
        item.vad_end_late_ms = round((last.last_voiced_at - origin - item.speech_end_s) * 1000, 1)
        if last.utterance_id in completed and "first_audio" in completed[last.utterance_id].latency_ms:
            item.event_ms = completed[last.utterance_id].latency_ms["first_audio"]
        if last.utterance_id in started and item.first_sound_s is not None:
            item.output_late_ms = round((item.first_sound_s - (started[last.utterance_id] - origin)) * 1000, 1)
    return result


def run(config: Config, clips: list[Clip], sessions: int, gap_s: float, models: SpeechModels) -> list[SessionResult]:
    """``sessions`` sessions at once, session i playing the clips rotated by i, starts staggered over one period."""
    period = float(np.mean([len(c.audio) for c in clips])) / SAMPLE_RATE + gap_s
    with tempfile.TemporaryDirectory() as tmp:
        async def all_sessions():
            return await asyncio.gather(*(
                _run_one(models, config, clips[i % len(clips):] + clips[:i % len(clips)], gap_s, Path(tmp),
                         f"s{i:03d}", i * period / sessions)
                for i in range(sessions)
            ))
        return list(asyncio.run(all_sessions()))


def summarize(results: list[SessionResult]) -> dict:
    items = [u for r in results for u in r.utterances]
    measured = [u for u in items if not u.overlapped]
    audio = [u.audio_ms for u in measured if u.audio_ms is not None]
    events = [u.event_ms for u in measured if u.event_ms is not None]
    paired = [(u.audio_ms, u.event_ms) for u in measured if u.audio_ms is not None and u.event_ms is not None]
    human = [u.audio_ms for u in measured if u.human and u.audio_ms is not None]
    return {
        "utterances": len(items),
        "measured": len(measured),
        "overlapped": len(items) - len(measured),
        "unanswered": sum(1 for u in measured if u.audio_ms is None),
        "fragments": sum(1 for u in measured if u.turns > 1),
        "voices": sorted({u.voice.split()[0] if u.human else u.voice for u in items}),
        "from_audio_ms": bench.distribution(audio),
        "from_audio_human_ms": bench.distribution(human),
        "from_events_ms": bench.distribution(events),
        "gap_ms": bench.distribution([a - e for a, e in paired]),
        "vad_end_late_ms": bench.distribution([u.vad_end_late_ms for u in measured if u.vad_end_late_ms is not None]),
        "output_late_ms": bench.distribution([u.output_late_ms for u in measured if u.output_late_ms is not None]),
    }


def format_report(report: dict) -> str:
    lines = [
        f"machine: {report['machine']} (load average {report['load_average']} at start)",
        f"speech: {report['stt']}; voice: {report['tts']}; phrase cache {report['phrase_cache']}; real time",
    ]
    for count, row in report["runs"].items():
        lines += [
            "",
            f"{count} session(s): {row['utterances']} utterances from {len(row['voices'])} voices "
            f"({row['measured']} measured, {row['overlapped']} left out: tutor still talking; "
            f"{row['unanswered']} unanswered; {row['fragments']} answered as more than one turn)",
            f"{'end of speech → first tutor audio':44} {'p50':>8} {'p95':>8} {'n':>5}",
        ]
        for label, key in [("measured from the audio", "from_audio_ms"),
                           ("  of which human recordings", "from_audio_human_ms"),
                           ("the session's own latency_ms", "from_events_ms"),
                           ("gap (audio − events), per turn", "gap_ms"),
                           ("  session's end-of-speech stamp − sound's end", "vad_end_late_ms"),
                           ("  first audible output − its event", "output_late_ms")]:
            d = row[key]
            lines.append(f"{label:44} {d['p50']:>6} ms {d['p95']:>5} ms {d['n']:>5}")
    lines.append("")
    lines.append(f"reproduce: {report['command']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1", help="comma-separated session counts (e.g. 1,20)")
    parser.add_argument("--utterances", type=int, default=48, help="utterances per session (round-robin over voices)")
    parser.add_argument("--gap", type=float, default=GAP_S, help="silence between utterances (s)")
    parser.add_argument("--phrase-cache", choices=["off", "on"], default="off")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = with_overrides(Config(), stt={"device": args.device})
    clips = pick(generate_clips(), args.utterances)
    models = SpeechModels.load(config)
    if args.phrase_cache == "off":
        models.synthesizer.phrase_cache.max_bytes = 0
        models.synthesizer.clear_cache()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": round(os.getloadavg()[0], 2),
        "stt": models.recognizer.description, "tts": models.synthesizer.description,
        "phrase_cache": args.phrase_cache,
        "command": "python benchmarks/latency_from_audio.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "runs": {},
    }
    try:
        for count in [int(n) for n in args.sessions.split(",")]:
            started = time.monotonic()
            report["runs"][count] = summarize(run(config, clips, count, args.gap, models))
            report["runs"][count]["wall_s"] = round(time.monotonic() - started, 1)
    finally:
        models.close()
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
