"""The listening stage: learner audio in, speech and transcript events out.

VAD runs on every 32 ms frame; a pause starts a speculative transcription of
the utterance so far, which is usually ready by the time the silence is long
enough to end the turn.  Partial transcripts are produced while the learner
speaks.  All model calls run in executors; the loop only keeps time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor

import numpy as np

from voice_tutor.audio.sources import CapturedFrame
from voice_tutor.audio.turns import FRAME_MS, Transition, TurnDetector
from voice_tutor.audio.vad import SAMPLE_RATE, StreamingVad
from voice_tutor.config import TurnTakingConfig
from voice_tutor.events import Event, FinalTranscript, PartialTranscript, SpeechPaused, SpeechStarted
from voice_tutor.speech.stt import SpeechRecognizer, Transcript

log = logging.getLogger(__name__)


class Listener:
    def __init__(
        self,
        session_id: str,
        recognizer: SpeechRecognizer,
        config: TurnTakingConfig,
        publish: Callable[[Event], None],
        stt_executor: Executor,
        vad: StreamingVad | None = None,
        hotwords: str | None = None,
        language: str | None = None,
    ):
        self.session_id = session_id
        self._recognizer = recognizer
        self._config = config
        self._publish = publish
        self._stt_executor = stt_executor
        self._vad = vad or StreamingVad()
        self.hotwords = hotwords
        self.language = language
        self._detector = TurnDetector(config)
        self._pre_roll: deque[np.ndarray] = deque(maxlen=max(1, round(config.pre_roll_ms / FRAME_MS)))
        self._utterance: list[np.ndarray] = []
        self._utterance_id = 0
        self._last_voiced_at = 0.0
        self._candidate: asyncio.Task[Transcript] | None = None
        self._partial: asyncio.Task[None] | None = None
        self._ms_since_partial = 0.0

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
        if self._detector.in_speech:
            await self._finish_turn()

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
        if detector.voiced:
            self._last_voiced_at = frame.captured_at
        if transition is Transition.RESUMED:
            self._drop_candidate()
        elif transition is Transition.PAUSED:
            self._publish(SpeechPaused(session_id=self.session_id, utterance_id=self._utterance_id,
                                       last_voiced_at=self._last_voiced_at))
            self._candidate = self._transcribe_soon(self._utterance_audio())
        if detector.voiced:
            self._maybe_partial()
        too_long = len(self._utterance) * FRAME_MS >= self._config.max_utterance_s * 1000
        if self._candidate is not None and detector.silence_ms >= self._config.end_of_turn_ms:
            transcript = await self._candidate
            if detector.turn_is_over(transcript.text):
                await self._finish_turn(transcript)
        elif too_long:
            await self._finish_turn()

    def _utterance_audio(self) -> np.ndarray:
        return np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)

    def _transcribe_soon(self, audio: np.ndarray) -> asyncio.Task[Transcript]:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._stt_executor, self._recognizer.transcribe_turn, audio, self.hotwords, self.language
        )
        return asyncio.ensure_future(future)

    def _drop_candidate(self) -> None:
        if self._candidate is not None:
            self._candidate.cancel()
            self._candidate = None

    def _maybe_partial(self) -> None:
        self._ms_since_partial += FRAME_MS
        busy = self._partial is not None and not self._partial.done()
        if busy or self._ms_since_partial < self._config.partial_interval_ms:
            return
        self._ms_since_partial = 0.0
        utterance_id = self._utterance_id
        audio = self._utterance_audio()

        async def publish_partial() -> None:
            transcript = await self._transcribe_soon(audio)
            if transcript.text and utterance_id == self._utterance_id and self._detector.in_speech:
                self._publish(PartialTranscript(session_id=self.session_id, utterance_id=utterance_id,
                                                text=transcript.text))

        self._partial = asyncio.create_task(publish_partial())

    async def _finish_turn(self, transcript: Transcript | None = None) -> None:
        if transcript is None:
            self._drop_candidate()
            transcript = await self._transcribe_soon(self._utterance_audio())
        self._candidate = None
        self._detector.end_turn()
        audio = self._utterance_audio()
        duration = len(audio) / SAMPLE_RATE
        self._utterance = []
        self._pre_roll.clear()
        if not transcript.text:
            log.info("utterance %d held no words; ignored", self._utterance_id)
            return
        self._publish(FinalTranscript(
            session_id=self.session_id,
            utterance_id=self._utterance_id,
            text=transcript.text,
            language=transcript.language,
            audio_duration_s=duration,
            last_voiced_at=self._last_voiced_at,
            stt_ms=transcript.elapsed_ms,
            audio=audio,
        ))
