"""One learner's lesson, ready to run on any audio source and sink.

The microphone session (``voice-tutor talk``) and every room of the XR bridge
(``voice-tutor serve``) start lessons the same way: load the lesson, recall
the learner, build the tutor (offline, or an LLM that falls back to it,
always safety-filtered), run a :class:`Session`, and record its turns.

A remembered learner's feedback is stored with its turns (ratings on the page
or said aloud, the end-of-session survey); with ``[privacy] record_audio`` their
spoken turns are recorded too, and the tutor says so first.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

from voice_tutor.config import Config
from voice_tutor.events import Event, SafetyAlert, SessionNotice, TurnCompleted
from voice_tutor.learning.lessons import Lesson, find_lesson, load_lesson
from voice_tutor.learning.memory import LearnerMemory
from voice_tutor.session import Session, SpeechModels
from voice_tutor.store import Preferences, Store
from voice_tutor.store.recorder import TurnRecorder


RECORDING_NOTICE = "recording"
"""``SessionNotice.level`` of the notice that the learner's spoken turns are recorded (pages show it)."""


def load_configured_lesson(config: Config) -> Lesson:
    return load_lesson(find_lesson(config.dialogue.lesson, config.dialogue.lessons_dir))


def with_learner_pace(config: Config, preferences: Preferences | None) -> Config:
    """A learner who prefers a slow pace gets more time to think before the tutor answers."""
    if preferences is None or preferences.pace == "normal":
        return config
    factor = {"slow": 1.5, "fast": 0.8}[preferences.pace]
    turns = config.turns
    return dataclasses.replace(config, turns=dataclasses.replace(
        turns,
        end_of_turn_ms=round(turns.end_of_turn_ms * factor),
        unfinished_end_of_turn_ms=round(turns.unfinished_end_of_turn_ms * factor),
        continuing_end_of_turn_ms=round(turns.continuing_end_of_turn_ms * factor),
    ))


async def build_tutor(
    config: Config,
    lesson: Lesson,
    memory: LearnerMemory,
    publish: Callable[[Event], None],
    publish_simulation: Callable[[dict], None] | None = None,
):
    """The offline lesson tutor, or an LLM tutor that falls back to it; safety-filtered either way.

    A learner turn that rates the previous reply ("thumbs up") is acknowledged
    by :class:`~voice_tutor.dialogue.feedback.FeedbackTutor`, not answered.

    ``publish`` receives the events these wrappers produce (fallback notices,
    safety alerts), without a session id.  ``publish_simulation`` receives the
    simulation commands an LLM tutor's tools issue (scenes only).
    """
    from voice_tutor.dialogue.base import FallbackTutor
    from voice_tutor.dialogue.feedback import FeedbackTutor
    from voice_tutor.dialogue.lesson_tutor import LessonTutor
    from voice_tutor.dialogue.safety import SafeTutor

    offline = tutor = LessonTutor(lesson, memory)
    if config.llm.base_url:
        from voice_tutor.dialogue.llm import check_endpoint
        from voice_tutor.dialogue.tools import build_llm_tutor

        await check_endpoint(config.llm)
        tutor = FallbackTutor(
            build_llm_tutor(config, lesson, memory, offline, publish_simulation=publish_simulation),
            offline,
            lambda error: publish(SessionNotice(level="warning", message=f"{error}; the offline tutor answers instead")),
        )
    moderation_client = None
    if config.llm.base_url and config.llm.moderation:
        import openai

        moderation_client = openai.AsyncOpenAI(
            base_url=config.llm.base_url, api_key=config.llm.api_key or "not-needed", max_retries=0
        )
    return SafeTutor(FeedbackTutor(tutor), moderation_client=moderation_client, on_alert=lambda verdict: publish(SafetyAlert(
        direction=verdict.source, category=str(verdict.category), severity=verdict.severity,
        excerpt=verdict.redacted_text[:200],
    )))


@dataclasses.dataclass
class Tutoring:
    """A lesson for one learner: named learners are remembered in ``store``.

    ``recordings`` is the folder their spoken turns are recorded in, when
    ``[privacy] record_audio`` is on (None: nothing is recorded; an unnamed
    learner is never recorded, having no stored turns to link a recording to).
    """

    config: Config
    lesson: Lesson
    memory: LearnerMemory
    tutor: object
    store: Store | None
    _relay: list[Session] = dataclasses.field(default_factory=list)
    recordings: Path | None = None

    @classmethod
    async def open(
        cls,
        config: Config,
        learner_name: str | None = None,
        store: Store | None = None,
        publish_simulation: Callable[[dict], None] | None = None,
    ) -> Tutoring:
        lesson = load_configured_lesson(config)
        memory = await LearnerMemory.open(lesson, learner_name, store)
        relay: list[Session] = []

        def publish(event: Event) -> None:
            for session in relay:
                session.bus.publish(dataclasses.replace(event, session_id=session.id))

        tutor = await build_tutor(config, lesson, memory, publish, publish_simulation)
        store = store if memory.learner else None
        recordings = None
        if store is not None and config.privacy.record_audio:
            from voice_tutor.dialogue.base import PrefacedTutor
            from voice_tutor.store.recordings import NOTICE, recordings_dir

            recordings = recordings_dir(config.privacy.recordings_dir, store.path)
            tutor = PrefacedTutor(tutor, NOTICE)  # the learner hears it before anything is recorded
        return cls(config, lesson, memory, tutor, store, relay, recordings)

    @property
    def recording(self) -> bool:
        """Whether the learner's spoken turns are recorded (they are told when the session starts)."""
        return self.recordings is not None

    def session(self, models: SpeechModels, source, sink, **options) -> Session:
        """A session of this lesson on ``source``/``sink``, shaped by the learner's profile."""
        preferences = self.memory.learner.preferences if self.memory.learner else None
        vocabulary = " ".join(self.lesson.vocabulary)
        session = Session(
            models, self.tutor, source, sink, with_learner_pace(self.config, preferences),
            learner_name=self.memory.learner.name if self.memory.learner else None,
            hotwords=vocabulary if self.config.stt.lesson_hotwords and vocabulary else None,
            language=self.lesson.answer_language,
            speech_speed=preferences.voice_speed if preferences else 1.0,
            **options,
        )
        self._relay.append(session)
        return session

    async def run(self, session: Session) -> list[TurnCompleted]:
        """Run the session to its end, storing its turns and queuing its xAPI statements as they happen."""
        if self.store is None:
            return await session.run()
        if self.recording:
            from voice_tutor.events import SessionNotice
            from voice_tutor.store.recordings import NOTICE

            session.bus.publish(SessionNotice(session_id=session.id, level=RECORDING_NOTICE, message=NOTICE))
        from voice_tutor.classroom.privacy import TranscriptRedactor
        from voice_tutor.classroom.xapi import XapiRecorder

        learner = self.memory.learner.name
        redact = await asyncio.to_thread(
            TranscriptRedactor, self.store, enabled=self.config.privacy.redact_transcripts, extra_names=[learner]
        )
        recorder = TurnRecorder(self.store, learner, self.lesson.id, redact=redact, recordings=self.recordings)
        statements = XapiRecorder(self.store, learner, self.lesson.id, homepage=self.config.xapi.homepage)
        tasks = [asyncio.create_task(recorder.run(session.bus.subscribe())),
                 asyncio.create_task(statements.run(session.bus.subscribe()))]
        try:
            return await session.run()
        finally:
            for task in tasks:
                task.cancel()
            await recorder.close()
            await statements.close()
