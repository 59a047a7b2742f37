"""The listening stage: learner audio in, speech and transcript events out.

VAD runs on every 32 ms frame; a pause starts a speculative transcription of
the utterance so far (and a look at its final pitch: did the voice fall, or
stay up as if more is coming?), which is usually ready by the time the
silence is long enough to end the turn; the turn ends at the first frame (or
the moment the transcript arrives) when both hold.  Partial transcripts are produced while
the learner speaks, when the shared recognizer has nothing more urgent to do.
Model calls run on worker threads; the listener never waits for one while
frames arrive, so a busy recognizer delays a turn's end, not the audio.  Once
the silence is longer than any turn waits (or the utterance too long), the
turn is over whatever its words: it is closed at once and published when its
transcript is ready, so speech after it is the next turn, not more of this one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from voice_tutor.audio.levels import speech_end_s
from voice_tutor.audio.prosody import sounds_continuing
from voice_tutor.audio.sources import CapturedFrame
from voice_tutor.audio.turns import FRAME_MS, Transition, TurnDetector
from voice_tutor.audio.vad import SAMPLE_RATE, StreamingVad
from voice_tutor.config import TurnTakingConfig
from voice_tutor.events import Event, FinalTranscript, PartialTranscript, SpeechPaused, SpeechStarted
from voice_tutor.speech.scheduler import TranscriptionScheduler
from voice_tutor.speech.stt import SpeechRecognizer, Transcript

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _ClosedUtterance:
    """What was heard of a finished utterance, kept until its transcript is ready."""

    utterance_id: int
    audio: np.ndarray
    last_voiced_at: float


class Listener:
    def __init__(
        self,
        session_id: str,
        recognizer: SpeechRecognizer,
        config: TurnTakingConfig,
        publish: Callable[[Event], None],
        scheduler: TranscriptionScheduler,
        vad: StreamingVad | None = None,
        hotwords: str | None = None,
        language: str | None = None,
        wait_for_recognizer: bool = False,
    ):
        """``wait_for_recognizer``: frames come faster than real time (a file played unpaced), so
        time is the frames' own: wait for a transcript at the end of a turn as if it took no time."""
        self.session_id = session_id
        self._recognizer = recognizer
        self._config = config
        self._publish = publish
        self._scheduler = scheduler
        self._vad = vad or StreamingVad()
        self.hotwords = hotwords
        self.language = language
        self._wait_for_recognizer = wait_for_recognizer
        self._detector = TurnDetector(config)
        self._pre_roll: deque[np.ndarray] = deque(maxlen=max(1, round(config.pre_roll_ms / FRAME_MS)))
        self._utterance: list[np.ndarray] = []
        self._utterance_id = 0
        self._last_voiced_at = 0.0
        self._heard_until = 0.0
        self._candidate: asyncio.Future[Transcript] | None = None
        self._partial: asyncio.Future[Transcript] | None = None
        self._ms_since_partial = 0.0
        self._committed: set[asyncio.Future[Transcript]] = set()
        self._voice_continues: asyncio.Future[bool] | None = None
        """At the pause: the pitch stayed level or rose (worker thread; None until asked)."""
        self._longest_wait_ms = max(config.end_of_turn_ms, config.unfinished_end_of_turn_ms,
                                    config.continuing_end_of_turn_ms)

    @property
    def in_speech(self) -> bool:
        """Someone is mid-utterance (a typed turn now would talk over them)."""
        return self._detector.in_speech

    def next_utterance_id(self) -> int:
        """Reserve the next utterance id for a turn that did not come through the microphone."""
        self._utterance_id += 1
        return self._utterance_id

    async def run(self, frames: AsyncIterator[CapturedFrame]) -> None:
        loop = asyncio.get_running_loop()
        async for frame in frames:
            probability = await loop.run_in_executor(None, self._vad, frame.samples)
            await self._on_frame(frame, probability)
        if self._detector.in_speech:  # the audio ended mid-turn: on the transcript at the pause, or of all of it
            self._commit_turn(self._candidate or self._transcribe(self._utterance_audio()))
        if self._committed:  # closed turns still waiting for their transcripts
            await asyncio.gather(*self._committed, return_exceptions=True)

    async def _on_frame(self, frame: CapturedFrame, probability: float) -> None:
        detector = self._detector
        transition = detector.feed(probability)
        if transition is Transition.STARTED:
            self._utterance_id += 1
            self._utterance = list(self._pre_roll)
            self._ms_since_partial = 0.0
            self._publish(SpeechStarted(session_id=self.session_id, t=frame.captured_at, utterance_id=self._utterance_id))
        if not detector.in_speech:
            self._pre_roll.append(frame.samples)
            return
        self._utterance.append(frame.samples)
        self._heard_until = frame.captured_at
        if detector.voiced:
            self._last_voiced_at = frame.captured_at
        if transition is Transition.RESUMED:
            self._drop_candidate()
        elif transition is Transition.PAUSED:
            self._publish(SpeechPaused(session_id=self.session_id, utterance_id=self._utterance_id,
                                       last_voiced_at=self._last_voiced_at))
            audio = self._utterance_audio()
            self._voice_continues = asyncio.get_running_loop().run_in_executor(None, sounds_continuing, audio)
            self._candidate = self._transcribe_candidate(audio)
        if detector.voiced:
            self._maybe_partial()
        if self._candidate is not None:
            if self._wait_for_recognizer and detector.silence_ms >= self._config.end_of_turn_ms:
                await asyncio.wait([self._candidate, self._voice_continues])
            if self._candidate is not None and self._candidate.done():
                self._end_turn_if_over(self._candidate)
            elif self._candidate is not None and detector.silence_ms >= self._longest_wait_ms:
                self._commit_turn(self._candidate)  # a busy recognizer: the learner may speak again first
        elif len(self._utterance) * FRAME_MS >= self._config.max_utterance_s * 1000:
            self._commit_turn(self._transcribe(self._utterance_audio()))

    def _utterance_audio(self) -> np.ndarray:
        return np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)

    def _transcribe(self, audio: np.ndarray) -> asyncio.Future[Transcript]:
        return self._scheduler.run_urgent(
            partial(self._recognizer.transcribe_turn, audio, self.hotwords, self.language)
        )

    def _transcribe_candidate(self, audio: np.ndarray) -> asyncio.Future[Transcript]:
        """Transcribe at a pause; the turn ends as soon as it is ready and the silence long enough.

        Frames keep flowing meanwhile: a learner who resumes cancels it.
        """
        candidate = self._transcribe(audio)
        candidate.add_done_callback(self._end_turn_if_over)
        return candidate

    def _end_turn_if_over(self, candidate: asyncio.Future[Transcript]) -> None:
        if candidate is not self._candidate or candidate.cancelled():
            return
        if candidate.exception() is not None:
            log.error("speech recognition failed; the utterance is dropped", exc_info=candidate.exception())
            self._complete_turn(None)
            return
        transcript = candidate.result()
        if self._detector.turn_is_over(transcript.text, self._pitch_stayed_up()):
            self._complete_turn(transcript)

    def _pitch_stayed_up(self) -> bool:
        """The prosody at the pause, if known by now (the words alone decide otherwise)."""
        pitch = self._voice_continues
        if pitch is None or not pitch.done() or pitch.cancelled() or pitch.exception() is not None:
            return False
        return pitch.result()

    def _drop_candidate(self) -> None:
        self._voice_continues = None
        if self._candidate is not None:
            self._candidate.cancel()
            self._candidate = None

    def _maybe_partial(self) -> None:
        self._ms_since_partial += FRAME_MS
        busy = self._partial is not None and not self._partial.done()
        if busy or self._ms_since_partial < self._config.partial_interval_ms:
            return
        frames = list(self._utterance)  # joined on the worker, only if the partial runs at all
        job = self._scheduler.run_partial(
            lambda: self._recognizer.transcribe_turn(np.concatenate(frames), self.hotwords, self.language)
        )
        if job is None:
            return  # other sessions' turns are waiting for the recognizer: skip this one, try at the next frame
        self._ms_since_partial = 0.0
        utterance_id, heard_until = self._utterance_id, self._heard_until

        def publish_partial(done: asyncio.Future[Transcript]) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            text = done.result().text
            if text and utterance_id == self._utterance_id and self._detector.in_speech:
                self._publish(PartialTranscript(session_id=self.session_id, utterance_id=utterance_id, text=text,
                                                heard_until=heard_until))

        job.add_done_callback(publish_partial)
        self._partial = job

    def _commit_turn(self, pending: asyncio.Future[Transcript]) -> None:
        """The turn is over whatever its words: close it now, publish it when ``pending`` is ready."""
        closed = self._close_utterance()
        self._committed.add(pending)

        def publish(done: asyncio.Future[Transcript]) -> None:
            self._committed.discard(done)
            if done.cancelled():
                return
            if done.exception() is not None:
                log.error("speech recognition failed; the utterance is dropped", exc_info=done.exception())
                return
            self._publish_final(closed, done.result())

        pending.add_done_callback(publish)

    def _complete_turn(self, transcript: Transcript | None) -> None:
        self._publish_final(self._close_utterance(), transcript)

    def _close_utterance(self) -> _ClosedUtterance:
        """End the detector's turn and hand over what was heard: the next speech starts a new utterance."""
        self._candidate = self._voice_continues = None
        if self._partial is not None:
            self._partial.cancel()  # still queued: nobody will see it
        self._detector.end_turn()
        audio = self._utterance_audio()
        closed = _ClosedUtterance(self._utterance_id, audio, self._sound_ended_at(audio))
        self._utterance = []
        self._pre_roll.clear()
        return closed

    def _sound_ended_at(self, audio: np.ndarray) -> float:
        """When the learner's voice faded (:func:`speech_end_s`), never later than the VAD's last voiced frame.

        Silero's hysteresis holds on for a frame or two after the sound ends; every
        latency is measured from this stamp, so it is taken from the sound itself.
        """
        end = speech_end_s(audio, SAMPLE_RATE)
        if end is None:
            return self._last_voiced_at
        return min(self._last_voiced_at, self._heard_until - (len(audio) / SAMPLE_RATE - end))

    def _publish_final(self, utterance: _ClosedUtterance, transcript: Transcript | None) -> None:
        if transcript is None or not transcript.text:
            log.info("utterance %d held no words; ignored", utterance.utterance_id)
            return
        self._publish(FinalTranscript(
            session_id=self.session_id,
            utterance_id=utterance.utterance_id,
            text=transcript.text,
            language=transcript.language,
            confidence=transcript.confidence,
            audio_duration_s=len(utterance.audio) / SAMPLE_RATE,
            last_voiced_at=utterance.last_voiced_at,
            stt_ms=transcript.elapsed_ms,
            audio=utterance.audio,
        ))
