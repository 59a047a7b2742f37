"""The replying stage: a learner turn in, the tutor's voice out.

The dialogue streams text; complete sentences go to piper one at a time (in a
thread) and on to the player while later sentences are still being written,
so the first sentence plays while the rest is generated.  Cancelling a reply
(barge-in) cancels the dialogue stream and any synthesis in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor

from voice_tutor.audio.player import EndOfReply
from voice_tutor.dialogue.base import DialogueContext, Tutor
from voice_tutor.events import Event, SessionNotice, TutorAudio, TutorReplyDone, TutorText
from voice_tutor.speech.sentences import SentenceChunker
from voice_tutor.speech.tts import SpeechSynthesizer

log = logging.getLogger(__name__)


class Responder:
    def __init__(
        self,
        session_id: str,
        tutor: Tutor,
        synthesizer: SpeechSynthesizer,
        context: DialogueContext,
        audio_out: asyncio.Queue,
        publish: Callable[[Event], None],
        tts_executor: Executor,
        speech_speed: float = 1.0,
    ):
        self.session_id = session_id
        self.tutor = tutor
        self._synthesizer = synthesizer
        self.context = context
        self._audio_out = audio_out
        self._publish = publish
        self._tts_executor = tts_executor
        self._speech_speed = speech_speed
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def greet(self) -> asyncio.Task[None]:
        return self._start(0, self.tutor.opening(self.context))

    def answer(self, turn_id: int, learner_text: str) -> asyncio.Task[None]:
        return self._start(turn_id, self.tutor.respond(learner_text, self.context))

    def say(self, turn_id: int, text: str) -> asyncio.Task[None]:
        """Speak fixed words (a teacher's message) as a turn of their own."""
        return self._start(turn_id, _words(text))

    def cancel(self) -> None:
        if self.busy:
            self._task.cancel()

    def _start(self, turn_id: int, stream: AsyncIterator[str]) -> asyncio.Task[None]:
        self.cancel()
        self._task = asyncio.create_task(self._reply(turn_id, stream), name=f"reply-{turn_id}")
        return self._task

    async def _reply(self, turn_id: int, stream: AsyncIterator[str]) -> None:
        chunker = SentenceChunker()
        parts: list[str] = []
        try:
            async for piece in stream:
                parts.append(piece)
                self._publish(TutorText(session_id=self.session_id, turn_id=turn_id, text=piece))
                for sentence in chunker.push(piece):
                    await self._speak(turn_id, sentence)
        except Exception as error:  # a broken backend must not leave the learner in silence
            log.exception("dialogue failed")
            self._publish(SessionNotice(session_id=self.session_id, level="error",
                                        message=f"the tutor could not answer: {error}"))
            chunker.flush()  # half a sentence from a broken backend is not worth saying
            apology = " Sorry, I lost my train of thought. Could you say that again?"
            parts.append(apology)
            self._publish(TutorText(session_id=self.session_id, turn_id=turn_id, text=apology))
            for sentence in chunker.push(apology):
                await self._speak(turn_id, sentence)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        for sentence in chunker.flush():
            await self._speak(turn_id, sentence)
        self._publish(TutorReplyDone(session_id=self.session_id, turn_id=turn_id, text="".join(parts).strip()))
        await self._audio_out.put(EndOfReply(turn_id))

    async def _speak(self, turn_id: int, sentence: str) -> None:
        loop = asyncio.get_running_loop()
        samples = await loop.run_in_executor(
            self._tts_executor, self._synthesizer.synthesize, sentence, self._speech_speed
        )
        if len(samples):
            await self._audio_out.put(TutorAudio(
                session_id=self.session_id, turn_id=turn_id, text=sentence,
                samples=samples, sample_rate=self._synthesizer.sample_rate,
            ))


async def _words(text: str) -> AsyncIterator[str]:
    yield text
