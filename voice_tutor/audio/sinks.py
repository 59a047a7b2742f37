"""Where the tutor's voice goes: the speaker, a WAV file, or pushed PCM.

A sink's ``write`` returns once the block is as good as played: the speaker
blocks while its buffer is full, the others are paced at real time (unless a
file is written as fast as possible).  That is what lets the player know how
much of a reply the learner heard when a barge-in cuts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import soxr

from voice_tutor.audio.sources import AudioInputError

_LEAD_S = 0.06
"""How far ahead of real time a paced sink may run (absorbs scheduling jitter)."""
PCM_LEAD_S = 0.15
"""How far ahead a network sink runs: the first 150 ms of a reply go out at once, so the page can
play its first chunk at once (its own lead is 40 ms) and still ride out the network's and a busy
server's jitter.  Cost: a barge-in's record of what was heard may run up to this far ahead."""


class AudioOutputError(AudioInputError):
    """No speaker, or an output file that cannot be written."""


class _RealtimePacer:
    """Sleep so that written audio does not run ahead of the wall clock."""

    def __init__(self, sample_rate: int, lead_s: float = _LEAD_S):
        self.sample_rate = sample_rate
        self.lead_s = lead_s
        self._base = 0.0
        self._written = 0

    async def after_write(self, samples: int) -> None:
        now = time.monotonic()
        if self._written == 0 or now > self._base + self._written / self.sample_rate:
            self._base, self._written = now, 0  # idle gap (or first write): restart the clock
        self._written += samples
        delay = self._base + self._written / self.sample_rate - self.lead_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class WavFileSink:
    """Writes the tutor's audio to a WAV file.

    With ``realtime`` the file is a timeline of the session: silence while the
    tutor is quiet, speech where it spoke, so it lines up with the learner's
    recording; ``timeline_start`` gives that recording's first sample's time
    (a :class:`FileSource`'s ``started_at``) so sample 0 of both files is the
    same instant (otherwise the timeline starts when the sink is opened).
    Without ``realtime``, replies are written back to back at once.
    """

    def __init__(self, path: str | Path, sample_rate: int, *, realtime: bool = True,
                 timeline_start: Callable[[], float | None] | None = None):
        import soundfile

        self.sample_rate = sample_rate
        self.realtime = realtime
        try:
            self._file = soundfile.SoundFile(path, "w", samplerate=sample_rate, channels=1, subtype="PCM_16")
        except (soundfile.LibsndfileError, OSError) as exc:
            raise AudioOutputError(f"cannot write {path}: {exc}") from exc
        self._pacer = _RealtimePacer(sample_rate)
        self._opened_at = time.monotonic()
        self._timeline_start = timeline_start
        self._frames_written = 0

    async def write(self, samples: np.ndarray) -> None:
        if self.realtime:
            start = (self._timeline_start and self._timeline_start()) or self._opened_at
            behind = int((time.monotonic() - start) * self.sample_rate) - self._frames_written
            if behind > 0:
                self._file.write(np.zeros(behind, dtype=np.float32))
                self._frames_written += behind
        self._file.write(samples)
        self._frames_written += len(samples)
        if self.realtime:
            await self._pacer.after_write(len(samples))

    async def close(self) -> None:
        self._file.close()


class PcmSink:
    """Hands int16 little-endian PCM to a callback (the websocket bridge), paced at real time."""

    def __init__(self, send: Callable[[bytes, int], Awaitable[None]], sample_rate: int, lead_s: float = PCM_LEAD_S):
        self.sample_rate = sample_rate
        self._send = send
        self._pacer = _RealtimePacer(sample_rate, lead_s)

    async def write(self, samples: np.ndarray) -> None:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        await self._send(pcm, self.sample_rate)
        await self._pacer.after_write(len(samples))

    async def close(self) -> None:
        pass


class SpeakerSink:
    """The default (or a named) output device through sounddevice."""

    def __init__(self, sample_rate: int, device: int | str | None = None):
        try:
            import sounddevice
        except OSError as exc:
            raise AudioOutputError(f"cannot use audio devices: {exc}") from exc
        self.sample_rate = sample_rate
        try:
            info = sounddevice.query_devices(device, kind="output")
        except (ValueError, sounddevice.PortAudioError) as exc:
            raise AudioOutputError(f"no speaker available: {exc}") from exc
        self._device_rate = sample_rate
        try:
            sounddevice.check_output_settings(device=device, samplerate=sample_rate, channels=1, dtype="float32")
        except sounddevice.PortAudioError:
            self._device_rate = int(info["default_samplerate"])
        self._resampler = (
            soxr.ResampleStream(sample_rate, self._device_rate, 1, dtype="float32")
            if self._device_rate != sample_rate
            else None
        )
        try:
            self._stream = sounddevice.OutputStream(
                device=device, samplerate=self._device_rate, channels=1, dtype="float32", latency="low"
            )
            self._stream.start()
        except sounddevice.PortAudioError as exc:
            raise AudioOutputError(f"cannot open speaker {info['name']!r}: {exc}") from exc

    async def write(self, samples: np.ndarray) -> None:
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        await asyncio.to_thread(self._stream.write, np.ascontiguousarray(samples, dtype=np.float32))

    async def close(self) -> None:
        self._stream.stop()
        self._stream.close()
