"""Real learner audio for the voice-loop tests: piper and espeak-ng speech, multi-turn recordings.

Nothing here is mocked: learner speech is synthesized by the bundled piper
voice (with varied speaking rates) or by the espeak-ng command, resampled to
16 kHz mono (what a microphone source delivers), and laid out on a timeline
with the silences a test asks for.  Word error rates use jiwer on text
normalized the way the tutor itself normalizes answers.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import soundfile
import soxr

from voice_tutor.dialogue.answers import normalize

SAMPLE_RATE = 16_000


class LearnerVoice:
    """The bundled piper voice speaking as the learner, at any speaking rate.

    It is a separate ``PiperVoice`` from the tutor's synthesizer, loaded from
    the same bundled model file.
    """

    def __init__(self):
        from piper import PiperVoice

        from voice_tutor.speech.bundled import piper_joe_voice

        self._voice = PiperVoice.load(piper_joe_voice())
        self.sample_rate = self._voice.config.sample_rate

    def speak(self, text: str, length_scale: float = 1.0, natural: bool = False) -> np.ndarray:
        """16 kHz mono float32 speech of ``text``; ``length_scale`` > 1 is slower.

        Piper draws random noise for every utterance; by default it is switched
        off (``noise_scale`` = ``noise_w_scale`` = 0) so the same text always
        gives the same samples and the tests are reproducible.  ``natural``
        keeps the voice's own (random) variation.
        """
        from piper import SynthesisConfig

        noise = {} if natural else {"noise_scale": 0.0, "noise_w_scale": 0.0}
        synthesis = SynthesisConfig(length_scale=length_scale, **noise)
        chunks = [c.audio_float_array for c in self._voice.synthesize(text, synthesis)]
        audio = np.concatenate(chunks).astype(np.float32)
        return to_16k(audio, self.sample_rate)


def espeak(text: str, workdir: Path, voice: str = "en-us", speed: int | None = None) -> np.ndarray:
    """16 kHz mono float32 speech of ``text`` by the espeak-ng command (use whole sentences)."""
    path = Path(workdir) / f"espeak-{uuid.uuid4().hex[:8]}.wav"
    command = ["espeak-ng", "-v", voice, "-w", str(path)]
    if speed is not None:
        command += ["-s", str(speed)]
    subprocess.run([*command, text], check=True, capture_output=True, timeout=30)
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return to_16k(audio.mean(axis=1), rate)


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    return audio


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SAMPLE_RATE)), dtype=np.float32)


@dataclass(frozen=True)
class Placed:
    """Where a piece of speech lies on a recording's timeline (seconds)."""

    start: float
    end: float


def build_recording(parts: list[tuple[float, np.ndarray]], tail_s: float = 0.5) -> tuple[np.ndarray, list[Placed]]:
    """Join ``(silence before, speech)`` pairs into one recording; also return where each speech lies."""
    pieces: list[np.ndarray] = []
    placed: list[Placed] = []
    at = 0
    for gap_s, speech in parts:
        gap = silence(gap_s)
        pieces += [gap, speech]
        at += len(gap)
        placed.append(Placed(at / SAMPLE_RATE, (at + len(speech)) / SAMPLE_RATE))
        at += len(speech)
    pieces.append(silence(tail_s))
    return np.concatenate(pieces).astype(np.float32), placed


def write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    soundfile.write(path, audio, rate, subtype=subtype)
    return Path(path)


def rms(audio: np.ndarray) -> float:
    audio = np.asarray(audio, dtype=np.float64)
    return float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0


def wer_text(text: str) -> str:
    """Text as compared for word error rate: the tutor's own normalization, no stray punctuation."""
    text = normalize(text)
    text = re.sub(r"[^\w\s]", " ", text.replace("/", " over "))
    return " ".join(text.split())


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (total edits / total reference words) over normalized texts."""
    refs = [wer_text(r) for r in references]
    hyps = [wer_text(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


def heard_numbers(text: str) -> set:
    """The numbers in a transcript as a set ('12', 'twelve' and a doubled '12 12' all read {12})."""
    from voice_tutor.dialogue.answers import numbers_in

    return set(numbers_in(text))
