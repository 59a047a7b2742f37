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


def room_impulse_response(delay_ms: float, rt60_s: float = 0.3, direct_to_reverberant_db: float = 6.0,
                          seed: int = 0) -> np.ndarray:
    """Speaker-to-microphone echo path: a delay, the direct sound, then reverberation (exponentially decaying
    noise, down 60 dB after ``rt60_s``) ``direct_to_reverberant_db`` below it in energy (a loudspeaker a
    short way from the microphone in a classroom); unit energy, so the echo is as loud as what was played."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, int(0.5 * SAMPLE_RATE)) / SAMPLE_RATE
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60_s)
    tail *= np.sqrt(10 ** (-direct_to_reverberant_db / 10) / np.sum(tail**2))
    response = np.concatenate([np.zeros(int(delay_ms * SAMPLE_RATE / 1000)), [1.0], tail])
    return (response / np.sqrt(np.sum(response**2))).astype(np.float32)


class SimulatedRoom:
    """A loudspeaker and a microphone in one room, in real time.

    ``speaker`` is a session sink: what it is given plays (like a sound card,
    no more than 60 ms ahead of the wall clock).  ``microphone`` is a session
    source: 32 ms frames at real-time pace, each the learner's recording plus
    what the speaker played at that moment through ``impulse_response``, times
    ``echo_gain``.  Bounded: the timeline is the recording plus ``tail_s``.
    """

    def __init__(self, learner: np.ndarray, playback_rate: int, impulse_response: np.ndarray, echo_gain: float,
                 tail_s: float = 8.0, noise_dbfs: float = -65.0, seed: int = 0):
        from voice_tutor.audio.vad import FRAME_SAMPLES

        self.frame = FRAME_SAMPLES
        self.learner = np.concatenate([learner, silence(tail_s)]).astype(np.float32)
        self.played = np.zeros(len(self.learner) + len(impulse_response), dtype=np.float32)
        """The speaker's output on the microphone's timeline (16 kHz)."""
        self.echo = np.zeros(len(self.learner), dtype=np.float32)
        """The echo the microphone picked up, sample for sample with the learner's recording."""
        self.response = impulse_response.astype(np.float32)
        self.echo_gain = echo_gain
        self.noise = np.random.default_rng(seed).standard_normal(len(self.learner)).astype(np.float32)
        self.noise *= 10 ** (noise_dbfs / 20)
        self.started: float | None = None
        self.speaker = _RoomSpeaker(self, playback_rate)
        self.microphone = _RoomMicrophone(self)

    def now_sample(self) -> int:
        import time

        return 0 if self.started is None else int((time.monotonic() - self.started) * SAMPLE_RATE)

    def echo_at(self, start: int, count: int) -> np.ndarray:
        """The echo in samples [start, start + count): the played audio convolved with the room."""
        length = len(self.response)
        before = max(0, start - length + 1)
        segment = self.played[before : start + count]
        size = 1 << int(np.ceil(np.log2(len(segment) + length)))
        full = np.fft.irfft(np.fft.rfft(segment, size) * np.fft.rfft(self.response, size), size)
        offset = start - before
        return (full[offset : offset + count] * self.echo_gain).astype(np.float32)


class _RoomSpeaker:
    def __init__(self, room: SimulatedRoom, sample_rate: int):
        self.room = room
        self.sample_rate = sample_rate
        self._resampler = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
        self._cursor = 0

    async def write(self, samples: np.ndarray) -> None:
        import asyncio

        room = self.room
        block = self._resampler.resample_chunk(np.asarray(samples, dtype=np.float32))
        self._cursor = max(self._cursor, room.now_sample())
        kept = block[: max(0, len(room.played) - self._cursor)]  # past the timeline's end: played, not recorded
        room.played[self._cursor : self._cursor + len(kept)] = kept
        self._cursor += len(block)
        ahead_s = (self._cursor - room.now_sample()) / SAMPLE_RATE - 0.06
        if ahead_s > 0:
            await asyncio.sleep(ahead_s)

    async def close(self) -> None:
        pass


class _RoomMicrophone:
    realtime = True

    def __init__(self, room: SimulatedRoom):
        self.room = room

    async def frames(self):
        import asyncio
        import time

        from voice_tutor.audio.sources import CapturedFrame

        room, frame = self.room, self.room.frame
        room.started = time.monotonic()
        for start in range(0, len(room.learner) - frame + 1, frame):
            captured_at = room.started + (start + frame) / SAMPLE_RATE
            delay = captured_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            echo = room.echo_at(start, frame)
            room.echo[start : start + frame] = echo
            heard = room.learner[start : start + frame] + echo + room.noise[start : start + frame]
            yield CapturedFrame(np.clip(heard, -1, 1).astype(np.float32), captured_at)
