"""Turns that don't split: utterances with a mid-phrase pause, through the real listener.

    .venv/bin/python benchmarks/turn_taking.py [--voices all] [--json]

Each paused utterance is a phrase spoken whole ("Front, center.", "Seven, plus
five.", lists) by one voice, whose pause at the comma is then set to 300-700 ms
(the synthesized pause is cut out and replaced by silence, so the words keep the
continuing intonation the voice gave them).  Complete single-phrase turns
("Twelve.", "The leaves.") are the controls.  Voices: piper (the bundled voice,
two rates), espeak-ng (three variants) and flite's voices when installed.  No
real human recordings ship in any package this machine can install; flite's
voices are the closest substitute (statistical voices trained on CMU ARCTIC
recordings of real speakers), espeak-ng is formant synthesis.

Every utterance (preceded by 1 s of silence, followed by 3 s) runs through the
real Listener (Silero VAD, the end-of-turn decision, faster-whisper) on the audio
clock: frames are fed as fast as the listener takes them, and a transcript is
awaited as if it took no time, so the figures are about the decision, not this
machine's speed.  Reported together:

* one-turn rate: paused utterances answered as one turn;
* false cuts: paused utterances split into two or more turns;
* the latency cost of waiting: end of speech (the end of the last 10 ms window
  within 35 dB of the utterance's loudest) to the end-of-turn decision, p50/p95,
  for the controls and for the paused utterances.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voice_tutor.audio.sources import CapturedFrame  # noqa: E402
from voice_tutor.audio.vad import FRAME_SAMPLES, SAMPLE_RATE  # noqa: E402
from voice_tutor.config import Config  # noqa: E402
from voice_tutor.events import FinalTranscript  # noqa: E402
from voice_tutor.listener import Listener  # noqa: E402
from voice_tutor.session import SpeechModels  # noqa: E402

PAUSED = [
    "Front, center.", "Seven, plus five.", "Red, green, and blue.", "Twelve, no, thirteen.",
    "The roots, the stem, and the leaves.", "Nine, ten, eleven.", "Left, then right.",
    "Sunlight, water, and air.", "Force, mass, acceleration.", "Three quarters, I think.",
    "Fifteen, minus six.", "Chlorophyll, in the leaves.",
]
"""Phrases whose first comma becomes a 300-700 ms pause after a complete-sounding word."""
COMPLETE = ["Twelve.", "The leaves.", "Nine.", "Photosynthesis.", "I don't know.", "Gravity.",
            "Three quarters.", "Can you say that again?"]
"""Complete single-phrase turns: the latency the wait must not cost them."""
PAUSES_S = (0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class Voice:
    name: str
    engine: str
    setting: str

    def speak(self, text: str, piper_voice, workdir: Path) -> np.ndarray:
        if self.engine == "piper":
            from piper import SynthesisConfig

            synthesis = SynthesisConfig(length_scale=float(self.setting), noise_scale=0.0, noise_w_scale=0.0)
            audio = np.concatenate([c.audio_float_array for c in piper_voice.synthesize(text, synthesis)])
            return soxr.resample(audio, piper_voice.config.sample_rate, SAMPLE_RATE).astype(np.float32)
        path = workdir / "voice.wav"
        if self.engine == "espeak":
            command = ["espeak-ng", "-v", self.setting, "-w", str(path), text]
        else:
            command = ["flite", "-voice", self.setting, "-t", text, "-o", str(path)]
        subprocess.run(command, check=True, capture_output=True, timeout=30)
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return soxr.resample(audio.mean(axis=1), rate, SAMPLE_RATE).astype(np.float32)


def voices() -> list[Voice]:
    found = [Voice("piper joe", "piper", "1.0"), Voice("piper joe slow", "piper", "1.25")]
    if shutil.which("espeak-ng"):
        found += [Voice("espeak-ng en-us", "espeak", "en-us"), Voice("espeak-ng en-us+f3", "espeak", "en-us+f3"),
                  Voice("espeak-ng en-gb+m3", "espeak", "en-gb+m3")]
    if shutil.which("flite"):
        found += [Voice(f"flite {name}", "flite", name) for name in ("slt", "rms", "awb", "kal")]
    return found


def frames_db(audio: np.ndarray, window: int = SAMPLE_RATE // 100) -> np.ndarray:
    count = len(audio) // window
    power = np.mean(audio[: count * window].reshape(count, window).astype(np.float64) ** 2, axis=1)
    return 10 * np.log10(power + 1e-12)


def longest_inner_gap(audio: np.ndarray) -> tuple[int, int] | None:
    """Sample range of the longest quiet stretch (35 dB below the loudest 10 ms) between words."""
    window = SAMPLE_RATE // 100
    loud = frames_db(audio) > frames_db(audio).max() - 35
    voiced = np.flatnonzero(loud)
    best, run_start = None, None
    for index in range(voiced[0], voiced[-1] + 1):
        if not loud[index]:
            run_start = index if run_start is None else run_start
        elif run_start is not None:
            if best is None or index - run_start > best[1] - best[0]:
                best = (run_start, index)
            run_start = None
    return None if best is None else (best[0] * window, best[1] * window)


def end_of_speech_s(audio: np.ndarray) -> float:
    """The end of the last 10 ms window within 35 dB of the utterance's loudest (the issue's definition)."""
    db = frames_db(audio)
    return (np.flatnonzero(db > db.max() - 35)[-1] + 1) / 100


def with_pause(audio: np.ndarray, pause_s: float) -> np.ndarray | None:
    gap = longest_inner_gap(audio)
    if gap is None:
        return None
    return np.concatenate([audio[: gap[0]], np.zeros(int(pause_s * SAMPLE_RATE), np.float32), audio[gap[1] :]])


async def listen(models: SpeechModels, config: Config, audio: np.ndarray) -> list[tuple[str, float]]:
    """(transcript, audio-clock time of the end-of-turn decision) of every turn the listener hears."""
    clock = {"now": 0.0}
    turns: list[tuple[str, float]] = []

    def publish(event) -> None:
        if isinstance(event, FinalTranscript):
            turns.append((event.text, clock["now"]))

    listener = Listener("bench", models.recognizer, config.turns, publish, models.stt_scheduler,
                        language="en", wait_for_recognizer=True)

    async def frames():
        padded = np.concatenate([audio, np.zeros(-len(audio) % FRAME_SAMPLES, np.float32)])
        for start in range(0, len(padded), FRAME_SAMPLES):
            clock["now"] = (start + FRAME_SAMPLES) / SAMPLE_RATE
            yield CapturedFrame(padded[start : start + FRAME_SAMPLES], clock["now"])

    await listener.run(frames())
    return turns


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def run(args) -> dict:
    from piper import PiperVoice

    from voice_tutor.speech.bundled import piper_joe_voice

    config = Config()
    models = SpeechModels.load(config)
    piper_voice = PiperVoice.load(piper_joe_voice())
    lead, tail = np.zeros(SAMPLE_RATE, np.float32), np.zeros(3 * SAMPLE_RATE, np.float32)
    paused, complete, failures = [], [], []
    with tempfile.TemporaryDirectory() as workdir:
        for voice_index, voice in enumerate(voices()[: args.voices]):
            for phrase_index, text in enumerate(PAUSED[: args.phrases]):
                pause_s = PAUSES_S[(voice_index + phrase_index) % len(PAUSES_S)]
                spoken = with_pause(voice.speak(text, piper_voice, Path(workdir)), pause_s)
                if spoken is None:
                    continue
                audio = np.concatenate([lead, spoken, tail])
                turns = await listen(models, config, audio)
                end = end_of_speech_s(audio)
                waited = [(at - end) * 1000 for _text, at in turns[-1:]]
                paused.append({"voice": voice.name, "text": text, "pause_s": pause_s, "turns": len(turns),
                               "heard": [t for t, _ in turns], "decision_ms": waited[0] if waited else None})
                if len(turns) != 1:
                    failures.append(paused[-1])
            for text in COMPLETE[: args.phrases]:
                audio = np.concatenate([lead, voice.speak(text, piper_voice, Path(workdir)), tail])
                turns = await listen(models, config, audio)
                end = end_of_speech_s(audio)
                complete.append({"voice": voice.name, "text": text, "turns": len(turns),
                                 "decision_ms": (turns[0][1] - end) * 1000 if turns else None})
    models.close()
    one_turn = sum(1 for u in paused if u["turns"] == 1)
    split = sum(1 for u in paused if u["turns"] > 1)
    paused_wait = [u["decision_ms"] for u in paused if u["turns"] == 1]
    complete_wait = [u["decision_ms"] for u in complete if u["decision_ms"] is not None]
    return {
        "command": "benchmarks/turn_taking.py " + " ".join(sys.argv[1:]),
        "voices": [v.name for v in voices()[: args.voices]],
        "paused_utterances": len(paused),
        "one_turn_rate": round(one_turn / max(1, len(paused)), 4),
        "false_cut_rate": round(split / max(1, len(paused)), 4),
        "complete_turns": len(complete),
        "complete_answered_once_rate": round(sum(1 for u in complete if u["turns"] == 1) / max(1, len(complete)), 4),
        "end_of_speech_to_decision_ms": {
            "complete_p50": percentile(complete_wait, 50), "complete_p95": percentile(complete_wait, 95),
            "paused_p50": percentile(paused_wait, 50), "paused_p95": percentile(paused_wait, 95),
        },
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voices", type=int, default=99, help="use the first N voices (default: all found)")
    parser.add_argument("--phrases", type=int, default=99, help="use the first N phrases of each set")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    waits = results["end_of_speech_to_decision_ms"]
    print(f"voices: {', '.join(results['voices'])}")
    print(f"paused utterances: {results['paused_utterances']}: one turn {results['one_turn_rate']:.1%}, "
          f"split {results['false_cut_rate']:.1%}")
    print(f"complete turns: {results['complete_turns']}, answered once {results['complete_answered_once_rate']:.1%}")
    print(f"end of speech -> end-of-turn decision: complete p50 {waits['complete_p50']} ms / p95 "
          f"{waits['complete_p95']} ms; paused p50 {waits['paused_p50']} ms / p95 {waits['paused_p95']} ms")
    for failure in results["failures"]:
        print(f"  split: {failure['voice']}: {failure['text']!r} pause {failure['pause_s']} s -> {failure['heard']}")


if __name__ == "__main__":
    main()
