"""One learner's memory within one lesson: mastery, reviews, and what was asked.

It joins the pure learner model (BKT in ``mastery``, FSRS in ``review``,
decisions in ``planner``) to the store.  State is loaded once when a session
starts and kept in memory; every assessment is written through to the store
before the tutor moves on, so a crash never loses an acknowledged answer.
Skill ids are stored as ``lesson/skill`` so lessons cannot collide.

Each assessed answer is kept with what happened (:class:`~voice_tutor.store.AnswerFacts`:
the learner's words, the verdict, first try or not, hints used, mastery before
and after, the session and turn): the one record that ``learner show``,
reports, the dashboard and xAPI all read.  A memory also knows whether the
lesson's completion rule is met, which decides how a session ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from voice_tutor.events import MasteryUpdated
from voice_tutor.learning import review
from voice_tutor.learning.lessons import Lesson, Question
from voice_tutor.learning.mastery import DEFAULT_PARAMS, BKTParams, fit_params, is_mastered, update
from voice_tutor.learning.planner import LearnerState
from voice_tutor.store import AnswerFacts, Learner, Store


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MasteryChange:
    """What one assessed answer did to the learner model, and what happened (``facts``)."""

    skill_id: str
    correct: bool
    """BKT's observation: right at the first try, without hints."""
    before: float
    after: float
    mastered: bool
    next_review: datetime | None
    question_id: str = ""
    facts: AnswerFacts | None = None


def mastery_event(change: MasteryChange, context, skill_name: str) -> MasteryUpdated:
    """The :class:`MasteryUpdated` a tutor publishes for a recorded answer (``context``: its DialogueContext)."""
    facts = change.facts
    return MasteryUpdated(
        session_id=context.session_id,
        learner=context.learner_name,
        skill_id=change.skill_id,
        skill_name=skill_name,
        correct=change.correct,
        p_known=round(change.after, 4),
        mastered=change.mastered,
        question_id=change.question_id,
        verdict=facts.verdict if facts else "",
        response=facts.response if facts else None,
        first_try=facts.first_try if facts else None,
        hints_used=facts.hints_used if facts else 0,
        p_before=round(change.before, 4),
    )


class LearnerMemory:
    def __init__(
        self,
        lesson: Lesson,
        learner: Learner | None,
        store: Store | None,
        *,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.lesson = lesson
        self.learner = learner
        self._store = store
        self._clock = clock
        self._mastery: dict[str, float] = {}
        self._cards: dict[str, review.Card] = {}
        self._params: dict[str, BKTParams] = {}
        self._recent: deque[str] = deque(maxlen=max(3, len(lesson.questions) // 2))
        self._solved: set[str] = set()
        self._answered: set[str] = set()
        """Questions of this lesson the learner has answered, in any session (the completion rule reads it)."""
        self._pending: str | None = None
        self.answers_this_session = 0
        self.returning = False
        self.session_id: int | None = None
        """The stored session answers belong to (set by whoever starts it)."""
        self.redact: Callable[[str | None], str | None] = lambda text: text
        """Applied to the learner's words before they are kept (``[privacy] redact_transcripts``)."""

    @classmethod
    async def open(
        cls, lesson: Lesson, learner_name: str | None, store: Store | None,
        *, clock: Callable[[], datetime] = utc_now,
    ) -> LearnerMemory:
        """Load what the store knows of this learner (nothing to load without a store)."""
        if store is None or not learner_name:
            return cls(lesson, None, None, clock=clock)
        learner = await asyncio.to_thread(store.ensure_learner, learner_name)
        memory = cls(lesson, learner, store, clock=clock)
        await asyncio.to_thread(memory._load)
        return memory

    def _key(self, skill_id: str) -> str:
        return f"{self.lesson.id}/{skill_id}"

    def _load(self) -> None:
        name = self.learner.name
        for skill in self.lesson.skills:
            key = self._key(skill.id)
            p_known = self._store.get_mastery(name, key)
            if p_known is not None:
                self._mastery[skill.id] = p_known
                self.returning = True
            entry = self._store.get_review(name, key)
            if entry is not None:
                card = review.card_from_json(entry.card)
                card.due = review.as_utc(entry.due)  # the store's due column is the one truth
                self._cards[skill.id] = card
            fitted = fit_params(self._store.assessment_sequences(key))
            if fitted is not None:
                self._params[skill.id] = fitted
        self._answered = {answer.question_id for answer in self._store.answers(name, lesson_id=self.lesson.id)}

    def params(self, skill_id: str) -> BKTParams:
        """Fitted from every learner's answers when there are enough, else the defaults."""
        return self._params.get(skill_id, DEFAULT_PARAMS)

    @property
    def state(self) -> LearnerState:
        now = self._clock()
        return LearnerState(
            mastery=dict(self._mastery),
            due=review.due_skills(self._cards, now),
            prior=DEFAULT_PARAMS.prior,
            recent_questions=tuple(self._recent),
            solved=frozenset(self._solved),
        )

    def note_asked(self, question: Question) -> None:
        self._recent.append(question.id)
        self._pending = question.id

    @property
    def pending(self) -> str | None:
        """The question asked and not resolved yet (the learner is mid-lesson), if any."""
        return self._pending

    def lesson_completed(self) -> bool:
        """Whether the lesson's completion rule is met (``Lesson.completion``), across all sessions."""
        skills = {question.skill or self.lesson.id for question in self.lesson.questions}
        if self.lesson.completion == "all_questions":
            return {question.id for question in self.lesson.questions} <= self._answered
        return all(is_mastered(self._mastery.get(skill, self.params(skill).prior)) for skill in skills)

    def outcome(self) -> str:
        """How the session ends for this learner: ``completed`` (the rule is met), ``suspended``
        (they answered something and leave mid-question: the next session resumes), else ``terminated``."""
        if self.lesson_completed():
            return "completed"
        if self.answers_this_session and self._pending is not None:
            return "suspended"
        return "terminated"

    async def assess(self, question: Question, correct: bool, *, hints_used: int, first_try: bool) -> MasteryChange:
        """:meth:`record_answer` for callers that know only BKT's observation (right first time or not)."""
        return await self.record_answer(question, "correct" if correct else "incorrect",
                                        hints_used=hints_used, first_try=first_try)

    async def record_answer(
        self, question: Question, verdict: str, *, hints_used: int, first_try: bool,
        response: str | None = None, turn_key: int | None = None,
    ) -> MasteryChange:
        """Keep one resolved question with what happened; update mastery (BKT) and reviews (FSRS).

        Called once per question, when it is resolved.  ``verdict`` (one of
        ``store.VERDICTS``): the learner's answer was ``correct`` (even after
        hints), ``incorrect``, or the tutor ``revealed`` it.  ``response`` is
        the learner's words that resolved it and ``turn_key`` the session's
        id of that turn.  BKT counts only right-first-time as correct.
        """
        skill_id = question.skill or self.lesson.id
        params = self.params(skill_id)
        before = self._mastery.get(skill_id, params.prior)
        hints_used = max(int(hints_used), 0)
        correct = verdict == "correct" and first_try and hints_used == 0
        after = update(before, correct, params)
        facts = AnswerFacts(
            verdict=verdict, response=self.redact(response.strip()) if response and response.strip() else None,
            first_try=first_try, hints_used=hints_used, mastery_before=before, mastery_after=after,
            session_id=self.session_id, turn_key=turn_key,
        )  # raises on a bad verdict before anything changes
        self._solved.add(question.id)
        self._answered.add(question.id)
        if self._pending == question.id:
            self._pending = None
        self.answers_this_session += 1
        self._mastery[skill_id] = after
        now = self._clock()
        card = self._cards.get(skill_id)
        if card is None and is_mastered(after):
            card = review.new_card(now)
        if card is not None:
            rating = review.rating_for(correct, hints_used=hints_used, first_try=first_try, mastered=is_mastered(before))
            card = review.review(card, rating, now)
            self._cards[skill_id] = card
        if self._store is not None:
            await asyncio.to_thread(self._persist, question, skill_id, correct, after, card, now, facts)
        return MasteryChange(skill_id, correct, before, after, is_mastered(after), card.due if card else None,
                             question.id, facts)

    def _persist(self, question, skill_id, correct, p_known, card, now, facts) -> None:
        review_entry = (review.card_to_json(card), card.due) if card is not None else None
        self._store.record_answer(
            self.learner.name, self._key(skill_id), question.id, correct, p_known, review_entry, at=now, facts=facts
        )
