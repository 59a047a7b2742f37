"""``voice-tutor bench``: latency, speed and memory of the voice loop on this machine.

A fixed set of learner utterances is synthesized (piper at several speaking
rates, and espeak-ng when installed), played in real time into one real
session running the offline tutor, and the latencies are read from the
session's own events.  The models are then timed alone.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile
import soxr

from rapidfuzz.distance import Levenshtein

from voice_tutor.config import Config, TextToSpeechConfig
from voice_tutor.dialogue.answers import normalize
from voice_tutor.session import Session, SpeechModels

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
GAP_S = 2.2
TTS_SENTENCES = ["That's right!", "Not quite.", "Here's a hint: Seven needs three more to make ten."]


def _espeak(text: str) -> np.ndarray | None:
    if not shutil.which("espeak-ng"):
        return None
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-w", wav.name, text], check=True, capture_output=True)
        audio, rate = soundfile.read(wav.name, dtype="float32")
    return soxr.resample(audio, rate, 16_000).astype(np.float32)


def make_utterances() -> list[tuple[str, np.ndarray]]:
    """(text, 16 kHz audio) for each benchmark utterance.

    Run in a child process, so the extra voices it loads do not count in the
    session's peak memory.
    """
    from voice_tutor.speech.tts import SpeechSynthesizer

    voices: dict[float, SpeechSynthesizer] = {}
    made = []
    for engine, rate, text in UTTERANCES:
        if engine == "espeak":
            audio = _espeak(text)
            if audio is None:
                continue
        else:
            if rate not in voices:
                voices[rate] = SpeechSynthesizer(TextToSpeechConfig(length_scale=rate))
            voice = voices[rate]
            audio = soxr.resample(voice.synthesize(text), voice.sample_rate, 16_000).astype(np.float32)
        made.append((text, audio))
    return made


def word_errors(reference: str, hypothesis: str) -> int:
    """Word-level edit distance after normalizing numbers and punctuation."""
    return Levenshtein.distance(normalize(reference).split(), normalize(hypothesis).split())


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def _session_latencies(models: SpeechModels, config: Config, recording: Path, workdir: Path):
    from voice_tutor.audio.sinks import WavFileSink
    from voice_tutor.audio.sources import FileSource
    from voice_tutor.dialogue.lesson_tutor import LessonTutor
    from voice_tutor.learning.lessons import find_lesson, load_lesson

    lesson = load_lesson(find_lesson(config.dialogue.lesson, config.dialogue.lessons_dir))
    source = FileSource(recording, realtime=True)
    # Replies are written without real-time pacing so every utterance is a fresh turn, not a barge-in.
    sink = WavFileSink(workdir / "tutor.wav", models.synthesizer.sample_rate, realtime=False)
    session = Session(models, LessonTutor(lesson), source, sink, config)
    return await session.run()


def run_bench(config: Config) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        utterances = child.submit(make_utterances).result()
    started = time.perf_counter()
    models = SpeechModels.load(config)
    load_s = time.perf_counter() - started
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "stt": models.recognizer.description,
        "tts": models.synthesizer.description,
        "utterances": len(utterances),
        "model_load_s": round(load_s, 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        gap = np.zeros(int(GAP_S * 16_000), np.float32)
        recording = workdir / "learner.wav"
        soundfile.write(recording, np.concatenate([gap] + [x for _, a in utterances for x in (a, gap)]), 16_000)
        turns = asyncio.run(_session_latencies(models, config, recording, workdir))
    results["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    finals = [t.latency_ms["final_transcript"] for t in turns if "final_transcript" in t.latency_ms]
    audio = [t.latency_ms["first_audio"] for t in turns if "first_audio" in t.latency_ms]
    results["turns"] = len(turns)
    results["end_of_speech_to_final_transcript_ms"] = {"p50": _percentile(finals, 50), "p95": _percentile(finals, 95)}
    results["end_of_speech_to_first_audio_ms"] = {"p50": _percentile(audio, 50), "p95": _percentile(audio, 95)}

    fast, standard = [], []
    fast_errors = standard_errors = words = 0
    for text, clip in utterances:
        duration = len(clip) / 16_000
        turn = models.recognizer.transcribe_turn(clip)
        fast.append(turn.elapsed_ms / 1000 / duration)
        t0 = time.perf_counter()
        segments, _info = models.recognizer.whisper.transcribe(clip, language=config.stt.language, beam_size=1)
        full_text = " ".join(segment.text for segment in segments)
        standard.append((time.perf_counter() - t0) / duration)
        fast_errors += word_errors(text, turn.text)
        standard_errors += word_errors(text, full_text)
        words += len(normalize(text).split())
    results["stt_real_time_factor"] = {"turn_window_p50": float(np.median(fast)),
                                       "full_window_p50": float(np.median(standard))}
    results["stt_word_error_rate"] = {"turn_window": fast_errors / words, "full_window": standard_errors / words}
    tts_first = []
    for sentence in TTS_SENTENCES * 3:
        models.synthesizer.synthesize(sentence)
        tts_first.append(models.synthesizer.last_elapsed_ms)
    results["tts_first_sentence_ms"] = {"p50": _percentile(tts_first, 50), "p95": _percentile(tts_first, 95)}
    models.close()
    return results


def format_table(results: dict) -> str:
    def ms(pair):
        return f"{pair['p50']:.0f} ms", f"{pair['p95']:.0f} ms"

    rows = [
        ("end of speech → final transcript", *ms(results["end_of_speech_to_final_transcript_ms"])),
        ("end of speech → first tutor audio", *ms(results["end_of_speech_to_first_audio_ms"])),
        ("TTS first sentence", *ms(results["tts_first_sentence_ms"])),
    ]
    lines = [
        f"machine: {results['machine']}",
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
    return "\n".join(lines)


def main(config: Config, as_json: bool) -> int:
    results = run_bench(config)
    print(json.dumps(results, indent=2) if as_json else format_table(results))
    return 0
