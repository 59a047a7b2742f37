"""One learner's memory within one lesson: mastery, reviews, and what was asked.

It joins the pure learner model (BKT in ``mastery``, FSRS in ``review``,
decisions in ``planner``) to the store.  State is loaded once when a session
starts and kept in memory; every assessment is written through to the store
before the tutor moves on, so a crash never loses an acknowledged answer.
Skill ids are stored as ``lesson/skill`` so lessons cannot collide.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from voice_tutor.learning import review
from voice_tutor.learning.lessons import Lesson, Question
from voice_tutor.learning.mastery import DEFAULT_PARAMS, BKTParams, fit_params, is_mastered, update
from voice_tutor.learning.planner import LearnerState
from voice_tutor.store import Learner, Store


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MasteryChange:
    """What one assessed answer did to the learner model."""

    skill_id: str
    correct: bool
    before: float
    after: float
    mastered: bool
    next_review: datetime | None


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
        self.returning = False

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

    async def assess(self, question: Question, correct: bool, *, hints_used: int, first_try: bool) -> MasteryChange:
        """Update mastery (BKT) and, for mastered skills, the review schedule (FSRS).

        Called once per question, when it is resolved; ``correct`` is whether
        the first attempt was right without hints.
        """
        self._solved.add(question.id)
        skill_id = question.skill or self.lesson.id
        params = self.params(skill_id)
        before = self._mastery.get(skill_id, params.prior)
        after = update(before, correct, params)
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
            await asyncio.to_thread(self._persist, question, skill_id, correct, after, card, now)
        return MasteryChange(skill_id, correct, before, after, is_mastered(after), card.due if card else None)

    def _persist(self, question, skill_id, correct, p_known, card, now) -> None:
        review_entry = (review.card_to_json(card), card.due) if card is not None else None
        self._store.record_answer(
            self.learner.name, self._key(skill_id), question.id, correct, p_known, review_entry, at=now
        )
