"""This pipeline, a voice loop built the usual way, and Pipecat, on the same learner audio, measured from the sound.

Learner clips (by default the voices of ``benchmarks/latency_from_audio.py``:
human recordings from Debian packages, flite, espeak-ng, piper; or the given
utterances) are laid on one timeline with silence between them, and then:

(a) **this pipeline**: a real :class:`~voice_tutor.session.Session` with the
    offline lesson tutor, fed the recording in real time, its voice written to a
    real-time WAV timeline (what ``voice-tutor talk --input --output`` does).

(b) **the baseline**, built the usual way from the same libraries: the same
    Silero VAD frames and thresholds, the turn ends after 800 ms of silence;
    ``WhisperModel.transcribe`` on the whole utterance (the standard 30 s
    window; faster-whisper's defaults, beam 5, and again with beam 1); the same
    offline tutor's reply, **streamed by sentence** to the same piper voice with
    **the same phrase cache** as the pipeline: it plays its first sentence as
    soon as it is synthesized.  Its first audio is the wait from the end of the
    sound to the timeout, plus the measured transcription, reply and
    first-sentence synthesis, plus the silent lead-in piper puts before that
    sentence's first sound; each utterance processed alone once it has ended
    (no queueing behind the previous one: this favours the baseline).

(c) **Pipecat** (``--pipecat default,0.8``; ``benchmarks/pipecat_peer.py`` in
    its own virtual environment ``.venv-pipecat``): its standard pipeline with the
    same Whisper and piper model files and the same tutor, with its default stop
    settings (Silero VAD 0.2 s + the Smart Turn v3 model) and with 0.8 s, fed
    the same recording in real time; its voice laid on a timeline as a player
    would play it.

(a) and (c) are measured from the sound (:func:`latency_from_audio.score_from_sound`):
end of speech = the end of the clip's last 10 ms within 35 dB of its loudest,
first tutor audio = the first 10 ms of the timeline above -50 dBFS after it.
A clip answered as more than one turn is a **fragment** reply.  The phrase
cache is cleared before each system.  Also reported: the word error rate of what
each path heard, and, on each clip alone, the fast path
(``SpeechRecognizer.transcribe_turn``) against ``transcribe()`` (beam 5).

    .venv/bin/python benchmarks/side_by_side.py [--utterances 32] [--beams 5,1] [--pipecat default,0.8]
        [--device cpu|cuda] [--json]

Pipecat's environment (once): ``make .venv-pipecat``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency_from_audio  # noqa: E402
from latency_from_audio import Clip  # noqa: E402

from voice_tutor import bench  # noqa: E402
from voice_tutor.audio.levels import first_sound_s, speech_end_s  # noqa: E402
from voice_tutor.config import Config, TurnTakingConfig, with_overrides  # noqa: E402
from voice_tutor.session import SpeechModels  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PIPECAT_PYTHON = REPO / ".venv-pipecat" / "bin" / "python"

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
    """From the last voiced VAD frame to the timeout (the loop's own view)."""
    sound_wait_ms: float
    """From the end of the sound to the timeout (what the learner waits)."""
    stt_ms: float
    reply_ms: float
    tts_ms: float
    """Synthesis of the reply's first sentence (phrase cache as in the pipeline)."""
    lead_ms: float
    """Piper's silent lead-in before that sentence's first sound."""
    ended_at_s: float
    """Where on the recording the timeout fired."""

    @property
    def first_audio_ms(self) -> float:
        return self.sound_wait_ms + self.stt_ms + self.reply_ms + self.tts_ms + self.lead_ms


def segment(audio: np.ndarray, silence_ms: int = BASELINE_SILENCE_MS,
            turns: TurnTakingConfig | None = None, *, with_end: bool = False) -> list[tuple]:
    """Utterances the usual way: the Silero VAD frame by frame, a turn ends after ``silence_ms`` of silence.

    Returns (utterance audio up to the timeout, wait in ms from the end of the
    last voiced frame to the timeout) for each, and with ``with_end`` the
    timeout's time on the recording (s).  Thresholds, minimum speech and
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
            item = (np.concatenate(frames[start : index + 1]), (index - last_voiced) * FRAME_MS)
            found.append(item + ((index + 1) * FRAME_SAMPLES / bench.SAMPLE_RATE,) if with_end else item)
            detector.end_turn()
    return found


def run_baseline(models: SpeechModels, config: Config, recording: np.ndarray, beam_size: int) -> list[BaselineTurn]:
    """The usual loop on the recording: 800 ms timeout, ``transcribe()``, tutor, piper by sentence with the cache."""
    from voice_tutor.dialogue.base import DialogueContext
    from voice_tutor.dialogue.lesson_tutor import LessonTutor
    from voice_tutor.learning.lessons import find_lesson, load_lesson
    from voice_tutor.speech.sentences import SentenceChunker

    synthesizer = models.synthesizer
    tutor = LessonTutor(load_lesson(find_lesson(config.dialogue.lesson, config.dialogue.lessons_dir)))
    context = DialogueContext("baseline", config.dialogue.learner_name or "friend")

    async def say(stream) -> str:
        return "".join([piece async for piece in stream])

    asyncio.run(say(tutor.opening(context)))
    turns = []
    whisper = models.recognizer.whisper
    for audio, waited_ms, ended_at in segment(recording, turns=config.turns, with_end=True):
        sound_end = speech_end_s(audio, bench.SAMPLE_RATE)
        sound_wait_ms = (len(audio) / bench.SAMPLE_RATE - sound_end) * 1000 if sound_end is not None else waited_ms
        started = time.perf_counter()
        segments, _info = whisper.transcribe(audio, language=config.stt.language, beam_size=beam_size)
        text = " ".join(s.text.strip() for s in segments).strip()
        stt_done = time.perf_counter()
        reply = asyncio.run(say(tutor.respond(text, context))) if text else ""
        reply_done = time.perf_counter()
        lead_ms = 0.0
        chunker = SentenceChunker()
        sentences = chunker.push(reply) + chunker.flush() if reply else []
        if sentences:
            first = synthesizer.synthesize(sentences[0])
            onset = first_sound_s(first, synthesizer.sample_rate)
            lead_ms = (onset or 0.0) * 1000
        tts_done = time.perf_counter()
        turns.append(BaselineTurn(text, waited_ms, sound_wait_ms, (stt_done - started) * 1000,
                                  (reply_done - stt_done) * 1000, (tts_done - reply_done) * 1000, lead_ms, ended_at))
    return turns


def run_pipecat(clips: list[Clip], gap_s: float, stop: str, workdir: Path, python: Path = PIPECAT_PYTHON) -> dict:
    """Pipecat (``pipecat_peer.py`` in its own environment) on the clips' recording, scored from its timeline."""
    import soundfile

    from voice_tutor.speech.bundled import piper_joe_voice, whisper_base_dir

    if not python.is_file():
        raise RuntimeError(f"{python} is missing: make .venv-pipecat")
    recording, output, turns_file = workdir / "pipecat-in.wav", workdir / f"pipecat-{stop}.wav", workdir / "turns.json"
    bench.write_recording(recording, [clip.audio for clip in clips], gap_s)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([str(python), str(REPO / "benchmarks" / "pipecat_peer.py"), "--input", str(recording),
                    "--output", str(output), "--turns", str(turns_file), "--stop", stop,
                    "--whisper-model", str(whisper_base_dir()), "--voice", str(piper_joe_voice())],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tutor, rate = soundfile.read(output, dtype="float32")
    turn_times = json.loads(turns_file.read_text())["turns_s"]
    # Its reply to a turn cannot sound before the turn reached the tutor.
    return _sound_summary(latency_from_audio.score_from_sound(clips, gap_s, tutor, rate, turn_times, turn_times))


def _sound_summary(items) -> dict:
    measured = [u for u in items if not u.overlapped]
    return {
        "utterances": len(items),
        "overlapped": len(items) - len(measured),
        "unanswered": sum(1 for u in measured if u.audio_ms is None),
        "fragments": sum(1 for u in measured if u.turns > 1),
        "first_audio_ms": bench.distribution([u.audio_ms for u in measured if u.audio_ms is not None]),
    }


def _wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate of everything heard against everything said (robust to split or merged turns)."""
    words = sum(bench.word_count(r) for r in references)
    return round(bench.word_errors(" ".join(references), " ".join(hypotheses)) / max(1, words), 4)


def _clips(specs, utterances, count: int) -> list[Clip]:
    if utterances is not None:
        return [Clip("given", text, audio, False) for text, audio in utterances]
    if specs is not None:
        return [Clip("given", text, audio, False) for text, audio in bench.generate_utterances(specs)]
    return latency_from_audio.pick(latency_from_audio.generate_clips(), count)


def run_side_by_side(config: Config, specs=None, beams: tuple[int, ...] = (5, 1), utterances=None,
                     models: SpeechModels | None = None, clip_wer: bool = True, gap_s: float | None = None,
                     pipecat: tuple[str, ...] = (), count: int = 32, progress=lambda message: None) -> dict:
    """All paths on the same clips; see the module's docstring."""
    clips = _clips(specs, utterances, count)
    gap_s = latency_from_audio.GAP_S if gap_s is None else gap_s
    own_models = models is None
    if models is None:
        models = SpeechModels.load(config)
    with_text = [clip for clip in clips if clip.text]
    references = [clip.text for clip in with_text]
    durations = [len(clip.audio) / bench.SAMPLE_RATE for clip in clips]
    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "stt": models.recognizer.description,
        "tts": models.synthesizer.description,
        "utterances": len(clips),
        "voices": sorted({c.voice.split()[0] if c.human else c.voice for c in clips}),
        "utterance_s": {"min": round(min(durations), 2), "max": round(max(durations), 2),
                        "mean": round(float(np.mean(durations)), 2)},
        "baseline_silence_ms": BASELINE_SILENCE_MS,
    }
    only_text = len(with_text) == len(clips)  # WER of whole runs needs every clip's words
    try:
        progress(f"(a) this pipeline: one session, {len(clips)} utterances in real time…")
        models.synthesizer.clear_cache()
        [run] = latency_from_audio.run(config, clips, 1, gap_s, models)
        events = [u.event_ms for u in run.utterances if not u.overlapped and u.event_ms is not None]
        result["pipeline"] = {
            **_sound_summary(run.utterances),
            "turns": len(run.heard),
            "first_audio_events_ms": bench.distribution(events),
            "phrase_cache_hits": models.synthesizer.phrase_cache.hits,
            "heard": run.heard,
        }
        wer = {"pipeline_in_session": _wer(references, run.heard)} if only_text else {}
        recording = bench.recording_audio([clip.audio for clip in clips], gap_s)
        result["baseline"] = {}
        for beam in beams:
            progress(f"(b) baseline, beam {beam}…")
            models.synthesizer.clear_cache()
            turns = run_baseline(models, config, recording, beam)
            per_clip = [sum(1 for t in turns if a <= t.ended_at_s < b) for a, b in _clip_spans(clips, gap_s)]
            result["baseline"][f"beam_{beam}"] = {
                "turns": len(turns),
                "fragments": sum(1 for n in per_clip if n > 1),
                "first_audio_ms": bench.distribution([t.first_audio_ms for t in turns]),
                "endpoint_wait_ms": bench.distribution([t.endpoint_wait_ms for t in turns]),
                "sound_wait_ms": bench.distribution([t.sound_wait_ms for t in turns]),
                "stt_ms": bench.distribution([t.stt_ms for t in turns]),
                "tts_ms": bench.distribution([t.tts_ms for t in turns]),
                "lead_ms": bench.distribution([t.lead_ms for t in turns]),
                "heard": [t.text for t in turns],
            }
            if only_text:
                wer[f"baseline_in_pipeline_beam_{beam}"] = _wer(references, [t.text for t in turns])
        result["pipecat"] = {}
        for stop in pipecat:
            progress(f"(c) Pipecat, stop {stop}…")
            with tempfile.TemporaryDirectory() as tmp:
                result["pipecat"][stop] = run_pipecat(clips, gap_s, stop, Path(tmp))
        pipeline_p50 = result["pipeline"]["first_audio_ms"]["p50"]
        pipeline_p95 = result["pipeline"]["first_audio_ms"]["p95"]
        others = {**{name: side for name, side in result["baseline"].items()},
                  **{f"pipecat_{stop}": side for stop, side in result["pipecat"].items()}}
        result["ratio"] = {
            name: {"p50": round(side["first_audio_ms"]["p50"] / pipeline_p50, 2),
                   "p95": round(side["first_audio_ms"]["p95"] / pipeline_p95, 2)}
            for name, side in others.items()
        }
        if clip_wer:
            progress("word error rate on each clip: fast path and standard transcribe()…")
            fast, standard = [], []
            for clip in with_text:
                fast.append(models.recognizer.transcribe_turn(clip.audio).text)
                segments, _info = models.recognizer.whisper.transcribe(clip.audio, language=config.stt.language)
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


def _clip_spans(clips: list[Clip], gap_s: float) -> list[tuple[float, float]]:
    """(start, next clip's start) of each clip on the recording's timeline."""
    spans, position = [], gap_s
    for clip in clips:
        start = position
        position += len(clip.audio) / bench.SAMPLE_RATE + gap_s
        spans.append((start, position))
    return spans


def format_table(result: dict) -> str:
    def row(name: str, dist: dict, n: int, fragments: int | str = "") -> str:
        return f"{name:<66} {dist['p50']:>7.0f} {dist['p95']:>7.0f} {n:>5} {fragments!s:>9}"

    durations = result["utterances"], result["utterance_s"]
    pipeline = result["pipeline"]
    lines = [
        f"machine: {result['machine']} (load average {result['load_average_at_start']} at start)",
        f"speech: {result['stt']}; voice: {result['tts']}",
        f"{durations[0]} utterances of {durations[1]['min']:.1f}–{durations[1]['max']:.1f} s "
        f"(mean {durations[1]['mean']:.1f} s), voices: {', '.join(result['voices'])}; real time",
        "",
        f"{'end of learner speech → first tutor audio (ms)':<66} {'p50':>7} {'p95':>7} {'n':>5} {'fragments':>9}",
        row("this pipeline, from the sound", pipeline["first_audio_ms"], pipeline["first_audio_ms"]["n"],
            pipeline["fragments"]),
        row("  (its own latency_ms events, same turns)", pipeline["first_audio_events_ms"],
            pipeline["first_audio_events_ms"]["n"]),
    ]
    for name, side in result["baseline"].items():
        beam = name.split("_")[-1]
        lines.append(row(f"baseline, beam {beam} (800 ms, 30 s window, piper by sentence)",
                         side["first_audio_ms"], side["turns"], side["fragments"]))
        lines.append(
            f"{'':<4}of which wait / transcribe() / first sentence / lead-in, p50:"
            f" {side['sound_wait_ms']['p50']:.0f} / {side['stt_ms']['p50']:.0f} / {side['tts_ms']['p50']:.0f}"
            f" / {side['lead_ms']['p50']:.0f} ms"
        )
    for stop, side in result["pipecat"].items():
        label = "default: VAD 0.2 s + Smart Turn v3" if stop == "default" else f"VAD stop {stop} s"
        lines.append(row(f"Pipecat 1.14, {label}, from the sound", side["first_audio_ms"],
                         side["first_audio_ms"]["n"], side["fragments"]))
    lines.append("")
    for name, ratio in result["ratio"].items():
        lines.append(f"{name.replace('_', ' ')} / this pipeline: p50 {ratio['p50']:.2f}x, p95 {ratio['p95']:.2f}x")
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
    parser.add_argument("--utterances", type=int, default=32, help="clips, round-robin over the voices")
    parser.add_argument("--pipecat", default="", help="Pipecat stop settings to run: default,0.8 (needs .venv-pipecat)")
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
        config, beams=tuple(int(b) for b in args.beams.split(",") if b.strip()),
        pipecat=tuple(s for s in args.pipecat.split(",") if s.strip()), count=args.utterances,
        progress=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
