"""Where learner audio comes from: a file, the microphone, or pushed PCM.

Every source yields :class:`CapturedFrame` objects: 512 samples of float32 mono
at 16 kHz (what the VAD and Whisper take), stamped with the monotonic time the
last sample was captured.  Decoding handles any rate, channel count and sample
format; resampling is done by soxr.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from voice_tutor.audio.vad import FRAME_SAMPLES, SAMPLE_RATE

log = logging.getLogger(__name__)


class AudioInputError(RuntimeError):
    """Audio that cannot be read or used (unreadable file, no microphone)."""


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    samples: np.ndarray
    captured_at: float


def to_mono_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mix down, clean and resample any numeric audio to 16 kHz mono float32."""
    audio = np.asarray(audio)
    if audio.dtype.kind in "iu":
        info = np.iinfo(audio.dtype)
        audio = (audio.astype(np.float64) - (info.max + info.min + 1) / 2) / ((info.max - info.min + 1) / 2)
    audio = audio.astype(np.float32, copy=False)
    if audio.ndim == 2:
        audio = audio.mean(axis=1, dtype=np.float32)
    elif audio.ndim != 1:
        raise AudioInputError(f"audio must be 1-D or 2-D (frames x channels), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        log.warning("audio holds NaN or infinite samples; they are replaced by silence")
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    audio = np.clip(audio, -1.0, 1.0)
    if sample_rate != SAMPLE_RATE and len(audio):
        audio = soxr.resample(audio, sample_rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def load_audio(path: str | Path) -> np.ndarray:
    """Read WAV/FLAC/OGG/MP3 (libsndfile), or anything PyAV decodes, as 16 kHz mono."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise AudioInputError(f"{path}: no such file")
    try:
        audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
        return to_mono_16k(audio, sample_rate)
    except soundfile.LibsndfileError as sndfile_error:
        reason = str(sndfile_error)
    try:
        from faster_whisper.audio import decode_audio

        return to_mono_16k(decode_audio(str(path), sampling_rate=SAMPLE_RATE), SAMPLE_RATE)
    except Exception as av_error:  # PyAV raises many unrelated types for bad files
        raise AudioInputError(f"{path}: cannot decode audio ({reason}; {av_error})") from av_error


class Reframer:
    """Cut a stream of arbitrary-size blocks into VAD-sized frames."""

    def __init__(self):
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        count = len(self._pending) // FRAME_SAMPLES
        frames = [self._pending[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(count)]
        self._pending = self._pending[count * FRAME_SAMPLES :]
        return frames


class FileSource:
    """A recording played into the session as a microphone would deliver it.

    ``realtime`` paces frames at the speed of speech; otherwise frames are fed
    as fast as the session takes them, waiting at ``gate`` (the session sets it
    while no reply is in flight) so turns do not pile up.  Trailing silence is
    added so the last turn is endpointed.
    """

    def __init__(self, path: str | Path, *, realtime: bool = True, tail_silence_s: float = 2.0):
        self.audio = load_audio(path)
        self.realtime = realtime
        self.tail_silence_s = tail_silence_s
        self.gate: asyncio.Event | None = None
        self.duration_s = len(self.audio) / SAMPLE_RATE
        self.started_at: float | None = None
        """Monotonic time of the recording's first sample, once it plays (a timeline's zero)."""

    async def frames(self) -> AsyncIterator[CapturedFrame]:
        tail = np.zeros(int(self.tail_silence_s * SAMPLE_RATE), dtype=np.float32)
        audio = np.concatenate([self.audio, tail])
        count = math.ceil(len(audio) / FRAME_SAMPLES)
        audio = np.pad(audio, (0, count * FRAME_SAMPLES - len(audio)))
        started = self.started_at = time.monotonic()
        for index in range(count):
            if self.realtime:
                # Stamped when a microphone would have captured it, even if the session pulls it late.
                captured_at = started + (index + 1) * FRAME_SAMPLES / SAMPLE_RATE
                delay = captured_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                if self.gate is not None:
                    await self.gate.wait()
                else:
                    await asyncio.sleep(0)
                captured_at = time.monotonic()
            yield CapturedFrame(audio[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES], captured_at)


class PcmSource:
    """Audio pushed by someone else (a websocket client), at any sample rate."""

    def __init__(self, sample_rate: int, max_blocks: int = 500):
        self.sample_rate = sample_rate
        self._queue: asyncio.Queue[tuple[np.ndarray, float] | None] = asyncio.Queue(max_blocks)
        self._resampler = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
        self._reframer = Reframer()

    def push(self, pcm: bytes | np.ndarray) -> bool:
        """Queue mono int16 little-endian bytes or float samples at ``sample_rate``.

        Returns False when the queue is full and the block was dropped.
        """
        if isinstance(pcm, bytes | bytearray | memoryview):
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        else:
            samples = np.asarray(pcm, dtype=np.float32).reshape(-1)
        try:
            self._queue.put_nowait((samples, time.monotonic()))
            return True
        except asyncio.QueueFull:
            log.warning("learner audio queue full; a block was dropped")
            return False

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[CapturedFrame]:
        while (item := await self._queue.get()) is not None:
            block, pushed_at = item
            resampled = self._resampler.resample_chunk(np.nan_to_num(np.clip(block, -1, 1)))
            for frame in self._reframer.push(resampled):
                yield CapturedFrame(frame, pushed_at)


class MicrophoneSource:
    """The default (or a named) input device through sounddevice."""

    def __init__(self, device: int | str | None = None):
        try:
            import sounddevice
        except OSError as exc:  # PortAudio missing
            raise AudioInputError(f"cannot use audio devices: {exc}") from exc
        self._sd = sounddevice
        self.device = device
        try:
            info = sounddevice.query_devices(device, kind="input")
        except (ValueError, sounddevice.PortAudioError) as exc:
            raise AudioInputError(f"no microphone available: {exc}") from exc
        self.sample_rate = int(info["default_samplerate"])
        self.name = info["name"]

    async def frames(self) -> AsyncIterator[CapturedFrame]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[np.ndarray, float]] = asyncio.Queue(maxsize=200)
        resampler = soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, 1, dtype="float32")
        reframer = Reframer()

        def on_audio(indata, _frames, _time, status):
            if status:
                log.debug("microphone status: %s", status)
            loop.call_soon_threadsafe(_offer, indata[:, 0].copy(), time.monotonic())

        def _offer(block, captured_at):
            if queue.full():
                queue.get_nowait()  # the loop fell behind: keep the newest audio
            queue.put_nowait((block, captured_at))

        try:
            stream = self._sd.InputStream(
                device=self.device, channels=1, samplerate=self.sample_rate,
                dtype="float32", blocksize=int(self.sample_rate * 0.02), callback=on_audio,
            )
        except self._sd.PortAudioError as exc:
            raise AudioInputError(f"cannot open microphone {self.name!r}: {exc}") from exc
        with stream:
            while True:
                block, captured_at = await queue.get()
                for frame in reframer.push(resampler.resample_chunk(block)):
                    yield CapturedFrame(frame, captured_at)
