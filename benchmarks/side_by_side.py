"""This pipeline against a voice loop built the usual way, on the same learner audio, in one process.

Learner utterances (``SPECS``: 32 sentences of about 1 to 8 s a learner of the
arithmetic lesson might say, spoken by piper at four speaking rates and by
four espeak-ng voices, generated with :func:`voice_tutor.bench.make_utterances`)
are laid on one timeline with 2.2 s of silence between them, and then:

(a) **this pipeline**: a real :class:`~voice_tutor.session.Session` with the
    offline lesson tutor, fed the recording in real time (``FileSource``),
    replies to an unpaced WAV sink: Silero VAD per 32 ms frame, a speculative
    trimmed-window Whisper pass at a 160 ms pause, the turn ended by what the
    words say (320 ms when they sound finished), sentence-by-sentence piper.
    Latencies come from the session's events.

(b) **the baseline**, built the usual way from the same libraries: the same
    Silero VAD frames and thresholds, the turn ends after 800 ms of silence;
    ``WhisperModel.transcribe`` on the whole utterance (the standard 30 s
    window; faster-whisper's defaults, beam 5, and again with beam 1); the same
    offline tutor's reply; the whole reply synthesized by piper before playback.
    Its latency is the endpointing wait (from the last voiced frame to the
    800 ms timeout, in audio time) plus the measured time of transcription,
    reply and synthesis, each utterance processed alone once it has ended
    (no queueing behind the previous one: this favours the baseline).

Both measure from the end of the learner's speech (the last frame the VAD
calls voiced) to the first tutor audio sample.  Also reported: the word error
rate of what each path heard (this pipeline's final transcripts, the
baseline's transcripts) and, on each utterance clip alone, of the fast path
(``SpeechRecognizer.transcribe_turn``) against faster-whisper's standard
``transcribe()`` (beam 5), all scored with :func:`voice_tutor.bench.word_errors`.

    .venv/bin/python benchmarks/side_by_side.py [--beams 5,1] [--limit N] [--device cpu|cuda] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_tutor import bench
from voice_tutor.config import Config, TurnTakingConfig, with_overrides
from voice_tutor.session import SpeechModels

BASELINE_SILENCE_MS = 800
_TEXTS = [
    "I think it's twelve.",
    "I think it is nine.",
    "Is it seventeen?",
    "Is the answer eleven?",
    "Can you give me a hint, please?",
    "The answer is twelve.",
    "Fifteen minus six is nine.",
    "I don't know.",
    "Eight plus nine makes seventeen.",
    "Could you repeat the question please?",
    "I believe the answer is fourteen.",
    "Seven plus five equals twelve.",
    "Thirteen take away four is nine.",
    "Six and seven make thirteen.",
    "I counted on my fingers and got eleven.",
    "Is the answer eighteen or nineteen?",
    "I added seven and three to make ten, then two more makes twelve.",
    "First I take away five to get to ten, and then one more, so nine.",
    "Could you please explain how to make ten one more time?",
    "I am not sure, but I think the difference is eight.",
    "Eight plus eight is sixteen, so eight plus nine must be seventeen.",
    "I don't understand what the word difference means in this question.",
    "My answer is fifteen because nine plus six is fifteen, and I checked it twice by counting on.",
    "Well, I started at eight, counted up two to get to ten, then added the other seven and ended up at seventeen.",
    "Twenty minus seven is thirteen.",
    "That makes fourteen.",
    "The sum of four and nine is thirteen.",
    "I think you need to count back from fifteen by six, which gives you nine, and that is my answer.",
    "Okay, so the answer is ten.",
    "Five plus five plus two is twelve.",
    "It must be nineteen.",
    "Seven and eight together make fifteen, because seven and three make ten and five more is fifteen.",
]
_VOICES = [
    ("piper", 1.0), ("espeak", "en-us"), ("piper", 0.85), ("espeak", "en-gb"),
    ("piper", 1.15), ("espeak", "en-gb-x-rp"), ("piper", 1.3), ("espeak", "en-gb-scotland"),
]
SPECS = [(engine, setting, text) for (engine, setting), text in zip(
    (_VOICES[i % len(_VOICES)] for i in range(len(_TEXTS))), _TEXTS, strict=True)]
"""(engine, setting, text) for :func:`voice_tutor.bench.make_utterances`."""


@dataclass
class BaselineTurn:
    text: str
    endpoint_wait_ms: float
    stt_ms: float
    reply_ms: float
    tts_ms: float

    @property
    def first_audio_ms(self) -> float:
        return self.endpoint_wait_ms + self.stt_ms + self.reply_ms + self.tts_ms


def segment(audio: np.ndarray, silence_ms: int = BASELINE_SILENCE_MS,
            turns: TurnTakingConfig | None = None) -> list[tuple[np.ndarray, float]]:
    """Utterances the usual way: the Silero VAD frame by frame, a turn ends after ``silence_ms`` of silence.

    Returns (utterance audio up to the timeout, wait in ms from the end of the
    last voiced frame to the timeout) for each.  Thresholds, minimum speech and
    pre-roll are this project's (``TurnTakingConfig``), so both paths hear the
    same speech; only the end of turn differs.
    """
    from voice_tutor.audio.turns import FRAME_MS, Transition, TurnDetector
    from voice_tutor.audio.vad import FRAME_SAMPLES, StreamingVad

    base = turns or TurnTakingConfig()
    config = TurnTakingConfig(
        speech_threshold=base.speech_threshold, silence_threshold=base.silence_threshold,
        min_speech_ms=base.min_speech_ms, pause_ms=silence_ms, end_of_turn_ms=silence_ms,
        unfinished_end_of_turn_ms=silence_ms, continuing_end_of_turn_ms=silence_ms, pre_roll_ms=base.pre_roll_ms,
    )
    vad, detector = StreamingVad(), TurnDetector(config)
    pre_roll_frames = max(1, round(config.pre_roll_ms / FRAME_MS))  # as the listener keeps them
    frames = [audio[i : i + FRAME_SAMPLES] for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
    found, start, last_voiced = [], 0, 0
    for index, frame in enumerate(frames):
        transition = detector.feed(vad(frame))
        if transition is Transition.STARTED:
            start = max(0, index - pre_roll_frames)
        if detector.voiced:
            last_voiced = index
        if transition is Transition.PAUSED:
            found.append((np.concatenate(frames[start : index + 1]), (index - last_voiced) * FRAME_MS))
            detector.end_turn()
    return found


def run_baseline(models: SpeechModels, config: Config, recording: np.ndarray, beam_size: int,
                 voice=None) -> list[BaselineTurn]:
    """The usual loop on the recording: 800 ms timeout, ``transcribe()``, tutor, whole-reply piper."""
    from piper import PiperVoice, SynthesisConfig

    from voice_tutor.dialogue.base import DialogueContext
    from voice_tutor.dialogue.lesson_tutor import LessonTutor
    from voice_tutor.learning.lessons import find_lesson, load_lesson
    from voice_tutor.speech.tts import resolve_voice

    voice = voice or PiperVoice.load(resolve_voice(config.tts.voice))
    synthesis = SynthesisConfig(length_scale=config.tts.length_scale)
    tutor = LessonTutor(load_lesson(find_lesson(config.dialogue.lesson, config.dialogue.lessons_dir)))
    context = DialogueContext("baseline", config.dialogue.learner_name or "friend")

    async def say(stream) -> str:
        return "".join([piece async for piece in stream])

    asyncio.run(say(tutor.opening(context)))
    turns = []
    whisper = models.recognizer.whisper
    for audio, waited_ms in segment(recording, turns=config.turns):
        started = time.perf_counter()
        segments, _info = whisper.transcribe(audio, language=config.stt.language, beam_size=beam_size)
        text = " ".join(s.text.strip() for s in segments).strip()
        stt_done = time.perf_counter()
        reply = asyncio.run(say(tutor.respond(text, context))) if text else ""
        reply_done = time.perf_counter()
        if reply:
            audio_out = [chunk.audio_float_array for chunk in voice.synthesize(reply, synthesis)]
            np.concatenate(audio_out)
        tts_done = time.perf_counter()
        turns.append(BaselineTurn(text, waited_ms, (stt_done - started) * 1000, (reply_done - stt_done) * 1000,
                                  (tts_done - reply_done) * 1000))
    return turns


def _wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate of everything heard against everything said (robust to split or merged turns)."""
    words = sum(bench.word_count(r) for r in references)
    return round(bench.word_errors(" ".join(references), " ".join(hypotheses)) / max(1, words), 4)


def run_side_by_side(config: Config, specs=None, beams: tuple[int, ...] = (5, 1), utterances=None,
                     models: SpeechModels | None = None, clip_wer: bool = True, gap_s: float | None = None,
                     progress=lambda message: None) -> dict:
    """Both paths on the same utterances; see the module's docstring."""
    if utterances is None:
        utterances = bench.generate_utterances(SPECS if specs is None else specs)
    own_models = models is None
    if models is None:
        models = SpeechModels.load(config)
    references = [text for text, _ in utterances]
    durations = [len(audio) / bench.SAMPLE_RATE for _, audio in utterances]
    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "stt": models.recognizer.description,
        "tts": models.synthesizer.description,
        "utterances": len(utterances),
        "utterance_s": {"min": round(min(durations), 2), "max": round(max(durations), 2),
                        "mean": round(float(np.mean(durations)), 2)},
        "baseline_silence_ms": BASELINE_SILENCE_MS,
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            progress(f"(a) this pipeline: one session, {len(utterances)} utterances in real time…")
            report = bench.run_concurrent(models, config, utterances, 1, workdir, gap_s=gap_s)
            run = report["runs"][0]
        recording = bench.recording_audio([audio for _, audio in utterances], gap_s)
        first_audio = [t.latency_ms["first_audio"] for t in run.turns if "first_audio" in t.latency_ms]
        result["pipeline"] = {
            "turns": len(run.turns),
            "first_audio_ms": bench.distribution(first_audio),
            "final_transcript_ms": report["latency_ms"]["final_transcript"],
            "kept_up": report["all_kept_up"],
            "phrase_cache_hits": getattr(getattr(models.synthesizer, "phrase_cache", None), "hits", None),
            "heard": [f.text for f in run.finals],
        }
        wer = {"pipeline_in_session": _wer(references, [f.text for f in run.finals])}
        result["baseline"] = {}
        for beam in beams:
            progress(f"(b) baseline, beam {beam}…")
            turns = run_baseline(models, config, recording, beam)
            result["baseline"][f"beam_{beam}"] = {
                "turns": len(turns),
                "first_audio_ms": bench.distribution([t.first_audio_ms for t in turns]),
                "endpoint_wait_ms": bench.distribution([t.endpoint_wait_ms for t in turns]),
                "stt_ms": bench.distribution([t.stt_ms for t in turns]),
                "tts_ms": bench.distribution([t.tts_ms for t in turns]),
                "heard": [t.text for t in turns],
            }
            wer[f"baseline_in_pipeline_beam_{beam}"] = _wer(references, [t.text for t in turns])
        pipeline_p50 = result["pipeline"]["first_audio_ms"]["p50"]
        pipeline_p95 = result["pipeline"]["first_audio_ms"]["p95"]
        result["ratio"] = {
            name: {"p50": round(side["first_audio_ms"]["p50"] / pipeline_p50, 2),
                   "p95": round(side["first_audio_ms"]["p95"] / pipeline_p95, 2)}
            for name, side in result["baseline"].items()
        }
        if clip_wer:
            progress("word error rate on each clip: fast path and standard transcribe()…")
            fast, standard = [], []
            for _text, clip in utterances:
                fast.append(models.recognizer.transcribe_turn(clip).text)
                segments, _info = models.recognizer.whisper.transcribe(clip, language=config.stt.language)
                standard.append(" ".join(s.text.strip() for s in segments))
            wer["fast_path_per_clip"] = _wer(references, fast)
            wer["standard_transcribe_per_clip_beam_5"] = _wer(references, standard)
            per_clip = [bench.word_errors(r, f) - bench.word_errors(r, s)
                        for r, f, s in zip(references, fast, standard, strict=True)]
            wer["clips_fast_worse_better_same"] = [sum(d > 0 for d in per_clip), sum(d < 0 for d in per_clip),
                                                   sum(d == 0 for d in per_clip)]
        result["word_error_rate"] = wer
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if own_models:
            models.close()
    return result


def format_table(result: dict) -> str:
    def row(name: str, dist: dict, n: int) -> str:
        return f"{name:<58} {dist['p50']:>7.0f} {dist['p95']:>7.0f} {n:>5}"

    durations = result["utterance_s"]
    lines = [
        f"machine: {result['machine']} (load average {result['load_average_at_start']} at start)",
        f"speech: {result['stt']}; voice: {result['tts']}",
        f"{result['utterances']} utterances of {durations['min']:.1f}–{durations['max']:.1f} s "
        f"(mean {durations['mean']:.1f} s): piper at 4 rates, espeak-ng with 4 voices",
        "",
        f"{'end of learner speech → first tutor audio (ms)':<58} {'p50':>7} {'p95':>7} {'turns':>5}",
        row("this pipeline (real Session, real time)", result["pipeline"]["first_audio_ms"],
            result["pipeline"]["turns"]),
    ]
    for name, side in result["baseline"].items():
        beam = name.split("_")[-1]
        lines.append(row(f"baseline, beam {beam} (800 ms timeout, 30 s window, whole reply)",
                         side["first_audio_ms"], side["turns"]))
        lines.append(
            f"{'':<4}of which endpoint wait / transcribe() / piper, p50:"
            f" {side['endpoint_wait_ms']['p50']:.0f} / {side['stt_ms']['p50']:.0f} / {side['tts_ms']['p50']:.0f} ms"
        )
    lines.append("")
    for name, ratio in result["ratio"].items():
        beam = name.split("_")[-1]
        lines.append(f"baseline (beam {beam}) / this pipeline: p50 {ratio['p50']:.2f}x, p95 {ratio['p95']:.2f}x")
    lines += ["", "word error rate"]
    for name, value in result["word_error_rate"].items():
        if isinstance(value, list):
            label = "clips where the fast path is worse / better / same"
            lines.append(f"  {label:<52} {value[0]} / {value[1]} / {value[2]}")
        else:
            lines.append(f"  {name.replace('_', ' '):<52} {value:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beams", default="5,1", help="baseline beam sizes (5 is faster-whisper's default)")
    parser.add_argument("--limit", type=int, help="only the first N utterances (a quick look)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = with_overrides(Config(), stt={"device": args.device})
    try:
        bench.check_device(config)
    except bench.NoGpu as error:
        print(f"side_by_side: {error}", file=sys.stderr)
        return 2
    result = run_side_by_side(
        config, SPECS[: args.limit] if args.limit else SPECS,
        beams=tuple(int(b) for b in args.beams.split(",") if b.strip()),
        progress=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
