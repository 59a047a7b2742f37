"""One learner conversation: the stages wired together, barge-in, metrics.

    source ─► Listener (VAD, turn-taking, STT) ─► Responder (dialogue, TTS) ─► Player ─► sink

The session is the only place that knows about more than one stage: it
reacts to their events (a final transcript starts a reply; speech during a
reply cuts it), keeps the dialogue context, and turns each learner turn's
events into a :class:`TurnCompleted` with its latencies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from voice_tutor.audio.player import Player
from voice_tutor.bus import EventBus
from voice_tutor.config import Config
from voice_tutor.dialogue.base import DialogueContext, Exchange, Tutor
from voice_tutor.events import (
    AnswerExpected,
    BargeIn,
    Event,
    FinalTranscript,
    LessonChanged,
    SpeechStarted,
    TurnCompleted,
    TutorSpeechEnded,
    TutorSpeechStarted,
    TutorText,
    now,
)
from voice_tutor.listener import Listener
from voice_tutor.responder import Responder
from voice_tutor.speech.scheduler import TranscriptionScheduler
from voice_tutor.speech.stt import SpeechRecognizer, hotwords_for
from voice_tutor.speech.tts import SpeechSynthesizer

log = logging.getLogger(__name__)


@dataclass
class SpeechModels:
    """The models and worker threads every session on this process shares."""

    recognizer: SpeechRecognizer
    synthesizer: SpeechSynthesizer
    stt_scheduler: TranscriptionScheduler
    tts_executor: ThreadPoolExecutor

    @classmethod
    def load(cls, config: Config, progress: Callable[[str], None] = lambda message: None) -> SpeechModels:
        import time

        started = time.perf_counter()
        progress("loading speech recognizer…")
        recognizer = SpeechRecognizer(config.stt)
        progress(f"speech recognizer ready: {recognizer.description}")
        progress("loading voice…")
        synthesizer = SpeechSynthesizer(config.tts)
        progress(f"voice ready: {synthesizer.description}")
        recognizer.warm_up()
        synthesizer.warm_up()
        progress(f"models warm in {time.perf_counter() - started:.1f} s")
        return cls(
            recognizer=recognizer,
            synthesizer=synthesizer,
            stt_scheduler=TranscriptionScheduler(recognizer.workers),
            tts_executor=ThreadPoolExecutor(synthesizer.workers, thread_name_prefix="tts"),
        )

    def close(self) -> None:
        self.stt_scheduler.close()
        self.tts_executor.shutdown(wait=False, cancel_futures=True)


_SPEAKERS_KEPT = 64
"""Utterances whose speaker a session remembers (a late transcript names an earlier one)."""


@dataclass
class _TurnTiming:
    learner: str
    speaker: str
    last_voiced_at: float
    final_at: float
    first_text_at: float | None = None
    first_audio_at: float | None = None
    reply: list[str] = field(default_factory=list)


class Session:
    def __init__(
        self,
        models: SpeechModels,
        tutor: Tutor,
        source,
        sink,
        config: Config,
        *,
        session_id: str | None = None,
        learner_name: str | None = None,
        hotwords: str | None = None,
        language: str | None = None,
        speech_speed: float = 1.0,
    ):
        self.id = session_id or uuid.uuid4().hex[:12]
        self.bus = EventBus()
        self.context = DialogueContext(self.id, learner_name or config.dialogue.learner_name or "friend")
        self.context.publish = self._on_event
        self.idle = asyncio.Event()
        self.turns: list[TurnCompleted] = []
        self._source = source
        self._sink = sink
        self._player = Player(self.id, sink, self._on_event)
        self._responder = Responder(
            self.id, tutor, models.synthesizer, self.context, self._player.queue, self._on_event,
            models.tts_executor, speech_speed=speech_speed,
        )
        self._listener = Listener(
            self.id, models.recognizer, config.turns, self._on_event, models.stt_scheduler,
            hotwords=hotwords, language=language, wait_for_recognizer=not getattr(source, "realtime", True),
        )
        self._lesson_hotwords = hotwords
        """The lesson's vocabulary that biases recognition (None: none; a new lesson brings its own)."""
        self._use_lesson_vocabulary = config.stt.lesson_hotwords
        self._expect_answers = config.stt.answer_hotwords
        self._active_turn: int | None = None
        self._timings: dict[int, _TurnTiming] = {}
        self._opening: list[str] = []
        self._teacher_messages: list[str] = []
        self._greeted = False
        self._speakers: dict[int, str] = {}
        """Utterance id -> the learner who spoke it (who was speaking when it started)."""
        self._next_speaker = self.context.learner_name
        if hasattr(source, "gate"):
            source.gate = self.idle

    async def run(self) -> list[TurnCompleted]:
        """Greet, then converse until the source ends and the last reply has played."""
        player = asyncio.create_task(self._player.run(), name="player")
        try:
            self._begin_turn(0)
            self._responder.greet()
            await self._listener.run(self._source.frames())
            await self.idle.wait()
        finally:
            self._responder.cancel()
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
            await self._sink.close()
        return self.turns

    @property
    def recognition_hotwords(self) -> str | None:
        """The words recognition is biased towards now: the lesson's vocabulary and the pending answers."""
        return self._listener.hotwords

    def submit_text(self, text: str, *, speaker: str | None = None) -> int | None:
        """A learner turn that was chosen or typed, not spoken (an answer picked in a scene).

        It cuts a reply in flight like speech does.  Refused (None) while a
        learner is mid-utterance; otherwise returns the turn's id.
        """
        if self._listener.in_speech or not text.strip():
            return None
        if speaker:
            self.set_speaker(speaker)
        utterance_id = self._listener.next_utterance_id()
        at = now()
        self._on_event(SpeechStarted(session_id=self.id, t=at, utterance_id=utterance_id))
        self._on_event(FinalTranscript(
            session_id=self.id, t=at, utterance_id=utterance_id, text=text.strip(),
            language=self._listener.language or "und", audio_duration_s=0.0, last_voiced_at=at, stt_ms=0.0,
        ))
        return utterance_id

    def set_speaker(self, learner: str) -> None:
        """Who speaks next (a shared room: whoever takes the floor); their turns are theirs.

        The utterances that start from now on are stamped with ``learner``
        (``FinalTranscript.speaker``, ``TurnCompleted.speaker``), and the tutor
        answers them as that learner (``DialogueContext.learner_name``).
        """
        self._next_speaker = self.context.learner_name = learner

    def add_hint(self, text: str) -> None:
        """A teacher's message or hint: the tutor says it as soon as nobody is talking."""
        if text.strip():
            self.say(f"Your teacher says: {text.strip()}")

    def say(self, text: str) -> None:
        """Fixed words the tutor says as soon as nobody is talking (a teacher's message, how to talk)."""
        if text.strip():
            self._teacher_messages.append(text.strip())
            self._say_teacher_message()

    def _say_teacher_message(self) -> None:
        busy = self._active_turn is not None or self._listener.in_speech
        if not self._teacher_messages or busy or not self._greeted:
            return
        turn_id = self._listener.next_utterance_id()
        self._begin_turn(turn_id)
        self._responder.say(turn_id, self._teacher_messages.pop(0))

    def _begin_turn(self, turn_id: int) -> None:
        self._active_turn = turn_id
        self.idle.clear()

    def _on_event(self, event: Event) -> None:
        match event:
            case SpeechStarted(utterance_id=uid):
                self._speakers[uid] = self._next_speaker
                while len(self._speakers) > _SPEAKERS_KEPT:
                    del self._speakers[next(iter(self._speakers))]
            case FinalTranscript(speaker=None, utterance_id=uid):
                event = dataclasses.replace(event, speaker=self._speakers.get(uid, self._next_speaker))
        self.bus.publish(event)
        match event:
            case SpeechStarted() if self._active_turn is not None:
                turn_id = self._active_turn
                self._responder.cancel()
                self._player.interrupt(turn_id)
                self.bus.publish(BargeIn(session_id=self.id, turn_id=turn_id))
            case AnswerExpected() if self._expect_answers:
                self._listener.hotwords = hotwords_for(self._lesson_hotwords, *event.words)
            case FinalTranscript():
                self.context.heard_confidence = event.confidence
                self._timings[event.utterance_id] = _TurnTiming(
                    event.text, event.speaker, event.last_voiced_at, event.t
                )
                self._begin_turn(event.utterance_id)
                # The reply is the speaker's, about this turn (a tutor reads these when it starts).
                self.context.learner_name = event.speaker
                self.context.turn_id, self.context.learner_text = event.utterance_id, event.text
                self._responder.answer(event.utterance_id, event.text)
            case TutorText(turn_id=0):
                self._opening.append(event.text)
            case TutorText() if timing := self._timings.get(event.turn_id):
                timing.reply.append(event.text)
                if timing.first_text_at is None:
                    timing.first_text_at = event.t
            case TutorSpeechStarted() if timing := self._timings.get(event.turn_id):
                timing.first_audio_at = event.t
            case TutorSpeechEnded():
                self._end_turn(event)
            case LessonChanged():  # the learner asked for another lesson: listen for its words and language
                self._lesson_hotwords = event.hotwords if self._use_lesson_vocabulary else None
                self._listener.hotwords = self._lesson_hotwords
                self._listener.language = event.language

    def _end_turn(self, ended: TutorSpeechEnded) -> None:
        timing = self._timings.pop(ended.turn_id, None)
        if ended.turn_id == 0:  # the opening: no learner words, but the tutor must know what was heard
            self._greeted = True
            self.context.record(Exchange("", "".join(self._opening).strip(), ended.heard, ended.cut, turn_id=0))
        if timing is not None:
            reply = "".join(timing.reply).strip()
            self.context.record(Exchange(timing.learner, reply, ended.heard, ended.cut, turn_id=ended.turn_id))
            completed = TurnCompleted(
                session_id=self.id,
                turn_id=ended.turn_id,
                learner=timing.learner,
                tutor=reply,
                heard=ended.heard,
                cut=ended.cut,
                latency_ms=_latencies(timing),
                speaker=timing.speaker,
            )
            self.turns.append(completed)
            self.bus.publish(completed)
        if ended.turn_id == self._active_turn:
            self._active_turn = None
            self.idle.set()
            self._say_teacher_message()


def _latencies(timing: _TurnTiming) -> dict[str, float]:
    """Milliseconds from the learner's last voiced sample to each milestone."""
    marks = {
        "final_transcript": timing.final_at,
        "first_text": timing.first_text_at,
        "first_audio": timing.first_audio_at,
    }
    return {name: round((at - timing.last_voiced_at) * 1000, 1) for name, at in marks.items() if at is not None}
