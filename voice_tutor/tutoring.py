"""A lesson for its learners, ready to run on any audio source and sink.

The microphone session (``voice-tutor talk``) and every room of the XR bridge
(``voice-tutor serve``) start lessons the same way: load the lesson, recall
the learner, build the tutor (offline, or an LLM that falls back to it,
always safety-filtered), run a :class:`Session`, and record its turns.

Several learners may share one session (a room of the bridge: two at a kiosk,
three in VR).  Each has a :class:`Seat`: their own memory (mastery, reviews),
their own tutor and so their own pending question, and, when remembered, their
own stored session, turns, recordings, answers and xAPI actor.  The session's
tutor is a :class:`SharedTutor`, which hands each learner turn to the seat of
the learner who spoke it (``DialogueContext.learner_name``, stamped by the
session from the floor).

A remembered learner's feedback is stored with its turns (ratings on the page
or said aloud, the end-of-session survey); with ``[privacy] record_audio`` their
spoken turns are recorded too, and the tutor says so first.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from voice_tutor.config import Config
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.dialogue.lesson_switch import LessonStack, LessonSwitcher, Progress
from voice_tutor.dialogue.rule_actions import SceneModels
from voice_tutor.events import Event, SafetyAlert, SessionNotice, TurnCompleted, TutorFallback
from voice_tutor.learning.catalogue import Catalogue
from voice_tutor.learning.lessons import Lesson, find_lesson, load_lesson
from voice_tutor.learning.mastery import MASTERY_THRESHOLD
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


def lesson_tutors(
    config: Config,
    lesson: Lesson,
    memory: LearnerMemory,
    publish: Callable[[Event], None],
    scene: SceneModels | None = None,
    context_tokens: int | None = None,
) -> LessonStack:
    """One lesson's tutors: the offline lesson tutor, and an LLM tutor falling back to it when configured.

    ``context_tokens`` is the endpoint's context window (configured or discovered once per session).
    """
    from voice_tutor.dialogue.base import CircuitBreaker, FallbackTutor
    from voice_tutor.dialogue.lesson_tutor import LessonTutor

    offline = tutor = LessonTutor(lesson, memory, scene=scene)
    if config.llm.base_url:
        from voice_tutor.dialogue.tools import build_llm_tutor

        llm = build_llm_tutor(config, lesson, memory, offline, scene=scene, context_tokens=context_tokens)
        tutor = FallbackTutor(
            llm,
            offline,
            lambda error: publish(TutorFallback(kind=error.kind, reason=str(error), backend=llm.name)),
            breaker=CircuitBreaker(llm.probe, failures_to_open=config.llm.breaker_failures,
                                   cooldown_s=config.llm.breaker_cooldown_s),
        )
    return LessonStack(lesson, memory, offline, tutor)


def learner_progress(store: Store, learner: str, catalogue: Catalogue) -> Progress:
    """Which lessons have skills due for review, and which the learner has mastered (blocking: the store)."""
    due: list[str] = []
    for entry in store.due_reviews(learner):
        lesson_id = entry.skill_id.partition("/")[0]
        if lesson_id not in due:
            due.append(lesson_id)
    done = frozenset(
        lesson.id for lesson in catalogue.lessons
        if all((store.get_mastery(learner, f"{lesson.id}/{skill.id}") or 0.0) >= MASTERY_THRESHOLD
               for skill in lesson.skills)
    )
    return Progress(tuple(due), done)


async def build_tutor(
    config: Config,
    lesson: Lesson,
    memory: LearnerMemory,
    publish: Callable[[Event], None],
    scene: SceneModels | None = None,
    *,
    store: Store | None = None,
    on_switch: Callable[[LessonStack], None] | None = None,
    catalogue: Catalogue | None = None,
):
    """The lesson's tutors behind a :class:`LessonSwitcher` (any lesson of the folder, by voice); safety-filtered.

    A learner turn that rates the previous reply ("thumbs up") is acknowledged
    by :class:`~voice_tutor.dialogue.feedback.FeedbackTutor`, not answered.

    ``publish`` receives the events these wrappers produce (fallback notices,
    safety alerts), without a session id.  ``scene`` names the simulations the
    learner's scene runs (scenes only).  ``store`` remembers the learner across
    lessons; ``on_switch`` is told when the learner moves to another lesson;
    ``catalogue`` is the lessons to switch between (default: the lessons folder's).
    """
    from voice_tutor.dialogue.feedback import FeedbackTutor
    from voice_tutor.dialogue.safety import SafeTutor

    if config.llm.base_url:
        from voice_tutor.dialogue.llm import check_endpoint, discover_context_tokens

        await check_endpoint(config.llm)
        context_tokens = config.llm.context_tokens or await discover_context_tokens(config.llm)
    else:
        context_tokens = None
    if catalogue is None:
        catalogue = await asyncio.to_thread(Catalogue.load, config.dialogue.lessons_dir)
    learner = memory.learner.name if memory.learner else None

    async def open_lesson(other: Lesson) -> LessonStack:
        other_memory = await LearnerMemory.open(other, learner, store)
        return lesson_tutors(config, other, other_memory, publish, scene, context_tokens)

    async def progress() -> Progress:
        if store is None or learner is None:
            return Progress()
        return await asyncio.to_thread(learner_progress, store, learner, catalogue)

    switcher = LessonSwitcher(catalogue, lesson_tutors(config, lesson, memory, publish, scene, context_tokens), open_lesson,
                              progress, on_switch)
    moderation_client = None
    if config.llm.base_url and config.llm.moderation:
        import openai

        moderation_client = openai.AsyncOpenAI(
            base_url=config.llm.base_url, api_key=config.llm.api_key or "not-needed", max_retries=0
        )
    return SafeTutor(FeedbackTutor(switcher), moderation_client=moderation_client, on_alert=lambda verdict: publish(SafetyAlert(
        direction=verdict.source, category=str(verdict.category), severity=verdict.severity,
        excerpt=verdict.redacted_text[:200],
    )))


MAX_SEATS = 32
"""Learners one session keeps a seat for (a room admits fewer; a bound all the same)."""


@dataclasses.dataclass
class Seat:
    """One learner of a session: their memory, their tutor (with their own question) and their record."""

    name: str | None
    """The name the session knows them by (None: not addressed yet)."""
    memory: LearnerMemory
    tutor: object
    greeted: bool = False
    """Whether the tutor has welcomed them (the first learner: by the session's opening)."""
    recorder: TurnRecorder | None = None
    statements: object = None
    """Their :class:`~voice_tutor.classroom.xapi.XapiRecorder`, while a session records them."""
    tasks: list[asyncio.Task] = dataclasses.field(default_factory=list)

    @property
    def remembered(self) -> bool:
        return self.memory.learner is not None


@dataclasses.dataclass
class Tutoring:
    """A lesson for the learners of one session: named learners are remembered in ``store``.

    ``recordings`` is the folder their spoken turns are recorded in, when
    ``[privacy] record_audio`` is on (None: nothing is recorded; an unnamed
    learner is never recorded, having no stored turns to link a recording to).
    The first learner's seat is opened with it; others join (:meth:`join`)
    or are seated the first time they speak.
    """

    config: Config
    lesson: Lesson
    store: Store | None
    seats: dict[str | None, Seat]
    _relay: list[Session] = dataclasses.field(default_factory=list)
    recordings: Path | None = None
    scene: SceneModels | None = None
    """The simulations the learners' scene runs (a room of the XR bridge), None without one."""
    _running: Session | None = None
    _joining: dict[str, asyncio.Future[Seat]] = dataclasses.field(default_factory=dict)
    catalogue: Catalogue | None = None
    """The lessons the learners may switch to (read once, off the event loop)."""

    @classmethod
    async def open(
        cls,
        config: Config,
        learner_name: str | None = None,
        store: Store | None = None,
        scene: SceneModels | None = None,
    ) -> Tutoring:
        """``scene``: the simulations the learner's scene runs (a room of the XR bridge), None without one."""
        lesson = load_configured_lesson(config)
        recordings = None
        if store is not None and config.privacy.record_audio:
            from voice_tutor.store.recordings import recordings_dir

            recordings = recordings_dir(config.privacy.recordings_dir, store.path)
        catalogue = await asyncio.to_thread(Catalogue.load, config.dialogue.lessons_dir)  # files: off the loop
        tutoring = cls(config, lesson, store, {}, [], recordings, scene, catalogue=catalogue)
        first = await tutoring._open_seat(learner_name or None)
        if tutoring.recordings is not None and first.remembered:
            from voice_tutor.dialogue.base import PrefacedTutor
            from voice_tutor.store.recordings import NOTICE

            first.tutor = PrefacedTutor(first.tutor, NOTICE)  # the learner hears it before anything is recorded
        first.greeted = True  # by the session's opening
        tutoring.seats[first.name] = first
        return tutoring

    async def _open_seat(self, name: str | None) -> Seat:
        memory = await LearnerMemory.open(self.lesson, name, self.store)

        def publish(event: Event) -> None:
            for session in self._relay:
                session.bus.publish(dataclasses.replace(event, session_id=session.id))

        seat = Seat(name, memory, None)

        def follow(stack: LessonStack) -> None:
            # The learner moved to another lesson: the room's lesson and their record follow (their
            # recorder starts the new lesson's stored session and hands its id to the new memory).
            stack.memory.session_id, stack.memory.redact = seat.memory.session_id, seat.memory.redact
            self.lesson, seat.memory = stack.lesson, stack.memory

        seat.tutor = await build_tutor(self.config, self.lesson, memory, publish, self.scene,
                                       store=self.store, on_switch=follow, catalogue=self.catalogue)
        return seat

    @property
    def first(self) -> Seat:
        """The seat of the learner the session was opened for (who is greeted)."""
        return next(iter(self.seats.values()))

    @property
    def memory(self) -> LearnerMemory:
        return self.first.memory

    @property
    def tutor(self) -> SharedTutor:
        return SharedTutor(self)

    @property
    def recording(self) -> bool:
        """Whether the learners' spoken turns are recorded (they are told when the session starts)."""
        return self.recordings is not None and any(seat.remembered for seat in self.seats.values())

    async def join(self, name: str) -> Seat:
        """The seat of learner ``name``, opened (their memory loaded, their record started) if new."""
        if (seat := self.seats.get(name)) is not None:
            return seat
        first = self.first
        if first.name is None and len(self.seats) == 1:  # opened for "whoever comes": it is theirs
            first.name = name
            self.seats = {name: first}
            return self.seats[name]
        if name in self._joining:
            return await asyncio.shield(self._joining[name])
        if len(self.seats) >= MAX_SEATS:
            raise RuntimeError(f"this session already has {MAX_SEATS} learners")
        future: asyncio.Future[Seat] = asyncio.get_running_loop().create_future()
        self._joining[name] = future
        try:
            seat = await self._open_seat(name)
            self.seats[name] = seat
            if self._running is not None:
                await self._start_record(seat, self._running)
            future.set_result(seat)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: a failed join is reported to the caller, not logged as lost
            raise
        finally:
            del self._joining[name]
        return seat

    async def leave(self, name: str) -> None:
        """Learner ``name`` left while others go on: their record ends (``suspended`` if mid-question).

        Their progress is stored, so if they come back they are seated again
        and carry on.  The last learner's record ends with the session.
        """
        seat = self.seats.get(name)
        if seat is None or len(self.seats) == 1:
            return
        del self.seats[name]
        await self._close_record(seat)

    def session(self, models: SpeechModels, source, sink, **options) -> Session:
        """A session of this lesson on ``source``/``sink``, shaped by the first learner's profile."""
        learner = self.first.memory.learner
        preferences = learner.preferences if learner else None
        vocabulary = " ".join(self.lesson.vocabulary)
        session = Session(
            models, self.tutor, source, sink, with_learner_pace(self.config, preferences),
            learner_name=learner.name if learner else self.first.name,
            hotwords=vocabulary if self.config.stt.lesson_hotwords and vocabulary else None,
            language=self.lesson.answer_language,
            speech_speed=preferences.voice_speed if preferences else 1.0,
            **options,
        )
        self._relay.append(session)
        return session

    async def run(self, session: Session) -> list[TurnCompleted]:
        """Run the session to its end, storing each remembered learner's turns and statements as they happen."""
        if self.recording:
            from voice_tutor.store.recordings import NOTICE

            session.bus.publish(SessionNotice(session_id=session.id, level=RECORDING_NOTICE, message=NOTICE))
        self._running = session
        try:
            for seat in list(self.seats.values()):
                await self._start_record(seat, session)
            return await session.run()
        finally:
            self._running = None
            for seat in list(self.seats.values()):
                await self._close_record(seat)

    async def _start_record(self, seat: Seat, session: Session) -> None:
        """Store this learner's part of ``session``: their session row, turns, answers and statements."""
        if self.store is None or not seat.remembered or seat.recorder is not None:
            return
        from voice_tutor.classroom.privacy import TranscriptRedactor
        from voice_tutor.classroom.xapi import XapiRecorder

        learner = seat.memory.learner.name
        redact = await asyncio.to_thread(
            TranscriptRedactor, self.store, enabled=self.config.privacy.redact_transcripts, extra_names=[learner]
        )
        session_id = await asyncio.to_thread(self.store.start_session, learner, self.lesson.id)
        seat.memory.session_id, seat.memory.redact = session_id, redact
        speaker = seat.name or learner
        seat.recorder = TurnRecorder(self.store, learner, self.lesson.id, redact=redact,
                                     recordings=self.recordings, speaker=speaker, session_id=session_id,
                                     opening=seat is self.first,
                                     on_new_session=lambda new_id: setattr(seat.memory, "session_id", new_id))
        seat.statements = XapiRecorder(self.store, learner, self.lesson.id, homepage=self.config.xapi.homepage,
                                       speaker=speaker)
        seat.tasks = [asyncio.create_task(seat.recorder.run(session.bus.subscribe())),
                      asyncio.create_task(seat.statements.run(session.bus.subscribe()))]

    async def _close_record(self, seat: Seat) -> None:
        if seat.recorder is None:
            return
        for task in seat.tasks:
            task.cancel()
        await asyncio.gather(*seat.tasks, return_exceptions=True)
        outcome = seat.memory.outcome()
        try:
            await seat.recorder.close(outcome=outcome)
        finally:
            await seat.statements.close(outcome=outcome)
        seat.recorder = seat.statements = None
        seat.tasks = []


class SharedTutor:
    """The session's tutor: each learner turn goes to the tutor of the learner who spoke it.

    The context is read when the reply starts (``Responder.answer`` calls
    :meth:`respond` at once), so a learner who takes the floor while another's
    reply is being worked out does not take that reply over.  A learner's
    first turn seats them: the tutor greets them and asks their own question.
    """

    def __init__(self, tutoring: Tutoring):
        self._tutoring = tutoring
        self.name = tutoring.first.tutor.name

    def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        return self._opening(dataclasses.replace(context))

    async def _opening(self, context: DialogueContext) -> AsyncIterator[str]:
        seat = await self._tutoring.join(context.learner_name)
        async for piece in seat.tutor.opening(context):
            yield piece

    def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        return self._respond(learner_text, dataclasses.replace(context))

    async def _respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        seat = await self._tutoring.join(context.learner_name)
        if not seat.greeted:
            seat.greeted = True
            greeting = self._tutoring.lesson.greeting.format(name=context.learner_name)
            if self._tutoring.recordings is not None and seat.remembered:
                from voice_tutor.store.recordings import NOTICE

                greeting = f"{NOTICE} {greeting}"
            yield greeting + " "
        async for piece in seat.tutor.respond(learner_text, context):
            yield piece
