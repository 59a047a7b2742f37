"""Acoustic echo cancellation: the tutor must not hear (and answer, or stop for) its own voice.

With a microphone and speakers in one room, the microphone picks up the tutor's
reply.  Without cancellation that echo looks like a learner talking over the
tutor: a barge-in cuts the reply, and Whisper transcribes the tutor's words as
the learner's.  The canceller is WebRTC's AEC3 (the ``AudioProcessingModule``
of the ``livekit`` package: a maintained binding with manylinux wheels), fed
with what the speaker is given to play as the far-end reference; it estimates
the room's delay and echo path itself.  The learner's own voice passes, so a
learner who talks over the tutor still cuts it.

Both streams are cut into the 10 ms frames AEC3 works on and meet it in the
order they happen in the room, by their time stamps (when a reference frame
is played, when a microphone frame was captured), not in the order the
session gets round to them: a busy session that takes its microphone frames
late and in bursts would otherwise feed AEC3 a render/capture interleaving
that no room has, and its delay estimate fails.  Both directions together cost
about 8 ms of CPU per second of audio here (0.1 ms per 10 ms frame), so they
run on the event loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator

import numpy as np
import soxr

from voice_tutor.audio.sources import CapturedFrame, Reframer
from voice_tutor.audio.vad import SAMPLE_RATE

APM_FRAME = SAMPLE_RATE // 100
"""AEC3 takes 10 ms frames."""
APM_FRAME_S = APM_FRAME / SAMPLE_RATE
REFERENCE_LEAD_S = 0.05
"""Reference frames reach AEC3 up to this long before they play (when the speaker has them that early):
its delay estimator loses an echo that follows the reference too closely (a speaker beside the
microphone, little output latency: at a 40 ms echo delay ERLE fell to ~5 dB without a lead)."""
MAX_PENDING_REFERENCE_S = 5.0
"""Reference audio kept for microphone frames still to come (bounds the queue when the microphone stalls)."""


_SILENCE = np.zeros(APM_FRAME, dtype=np.int16)


def _to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)


class EchoCanceller:
    """One echo canceller for one microphone and one speaker (16 kHz processing)."""

    def __init__(self, playback_rate: int, *, noise_suppression: bool = False):
        from livekit.rtc import AudioProcessingModule

        self._apm = AudioProcessingModule(echo_cancellation=True, high_pass_filter=True,
                                          noise_suppression=noise_suppression)
        self._playback_rate = playback_rate
        self._far_resampler = (soxr.ResampleStream(playback_rate, SAMPLE_RATE, 1, dtype="float32")
                               if playback_rate != SAMPLE_RATE else None)
        self._far = np.zeros(0, dtype=np.float32)
        self._far_next_at: float | None = None
        self._reference: deque[tuple[float, np.ndarray]] = deque(maxlen=int(MAX_PENDING_REFERENCE_S / APM_FRAME_S))
        """10 ms reference frames with the time each starts playing, not yet given to AEC3."""
        self._near = np.zeros(0, dtype=np.float32)
        self._render_clock: float | None = None
        """The speaker's timeline up to which AEC3 has been given render frames."""

    def played(self, samples: np.ndarray, at: float | None = None) -> None:
        """Audio (at ``playback_rate``) handed to the speaker, which starts playing at ``at`` (monotonic
        seconds; default: now, or right after the audio before it): the reference the echo is removed by."""
        samples = np.asarray(samples, dtype=np.float32)
        if self._far_resampler is not None:
            samples = self._far_resampler.resample_chunk(samples)
        now = time.monotonic() if at is None else at
        if self._far_next_at is None or self._far_next_at < now - APM_FRAME_S:  # the speaker had gone quiet
            self._far_next_at, self._far = now, np.zeros(0, dtype=np.float32)
        far = np.concatenate([self._far, samples])
        whole = len(far) - len(far) % APM_FRAME
        for start in range(0, whole, APM_FRAME):
            self._reference.append((self._far_next_at, _to_int16(far[start : start + APM_FRAME])))
            self._far_next_at += APM_FRAME_S
        self._far = far[whole:]

    def clean(self, samples: np.ndarray, captured_at: float | None = None) -> np.ndarray:
        """Microphone audio (16 kHz) whose last sample was captured at ``captured_at`` (default: now), less
        the echo; returned in whole 10 ms frames, the rest kept for the next call."""
        from livekit.rtc import AudioFrame

        near = np.concatenate([self._near, np.asarray(samples, dtype=np.float32)])
        end_at = time.monotonic() if captured_at is None else captured_at
        first_at = end_at - len(near) / SAMPLE_RATE
        whole = len(near) - len(near) % APM_FRAME
        cleaned = np.empty(whole, dtype=np.float32)
        for start in range(0, whole, APM_FRAME):
            self._render_until(first_at + start / SAMPLE_RATE)
            frame = AudioFrame(_to_int16(near[start : start + APM_FRAME]).tobytes(), SAMPLE_RATE, 1, APM_FRAME)
            self._apm.set_stream_delay_ms(0)  # AEC3 finds the room's delay itself
            self._apm.process_stream(frame)
            cleaned[start : start + APM_FRAME] = np.frombuffer(frame.data, dtype=np.int16) / 32768.0
        self._near = near[whole:]
        return cleaned

    def _render_until(self, moment: float) -> None:
        """Give AEC3 the speaker's output up to ``moment``, and what is already queued to play up to
        ``REFERENCE_LEAD_S`` after it; silence where nothing played.

        The render stream must be as continuous as a sound card's: with gaps in it (the tutor quiet
        between replies) AEC3 re-estimates the room's delay at every reply, and meanwhile the echo passes."""
        if self._render_clock is None:
            self._render_clock = moment
        while self._reference and self._reference[0][0] <= moment + REFERENCE_LEAD_S:
            at, pcm = self._reference.popleft()
            if at < self._render_clock - APM_FRAME_S / 2:
                continue  # its time was already given to silence: too late
            while self._render_clock + APM_FRAME_S / 2 < at:
                self._render(_SILENCE)
            self._render(pcm)
        while self._render_clock + APM_FRAME_S <= moment:
            self._render(_SILENCE)

    def _render(self, pcm: np.ndarray) -> None:
        from livekit.rtc import AudioFrame

        self._apm.process_reverse_stream(AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, APM_FRAME))
        self._render_clock += APM_FRAME_S


class EchoCancelledSource:
    """A microphone source whose frames have the echo of what ``canceller`` was told was played removed."""

    def __init__(self, source, canceller: EchoCanceller):
        self._source = source
        self._canceller = canceller
        self.realtime = True

    async def frames(self) -> AsyncIterator[CapturedFrame]:
        reframer = Reframer()
        async for frame in self._source.frames():
            for samples in reframer.push(self._canceller.clean(frame.samples, frame.captured_at)):
                yield CapturedFrame(samples, frame.captured_at)


class EchoReferenceSink:
    """A speaker sink that also hands every block it plays to the echo canceller.

    A block starts playing when the one before it ends (or now, after a pause);
    the device's own output latency is a constant offset AEC3 estimates.
    """

    def __init__(self, sink, canceller: EchoCanceller):
        self._sink = sink
        self._canceller = canceller
        self.sample_rate = sink.sample_rate

    async def write(self, samples: np.ndarray) -> None:
        self._canceller.played(samples)
        await self._sink.write(samples)

    async def close(self) -> None:
        await self._sink.close()


def with_echo_cancellation(source, sink) -> tuple[EchoCancelledSource, EchoReferenceSink]:
    """A microphone ``source`` and speaker ``sink`` in one room, wired through one echo canceller."""
    canceller = EchoCanceller(sink.sample_rate)
    return EchoCancelledSource(source, canceller), EchoReferenceSink(sink, canceller)
