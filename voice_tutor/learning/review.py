"""Spaced review of skills with FSRS (the ``fsrs`` package, v6).

Each (learner, skill) pair has one FSRS card.  After the learner answers a
question on the skill, :func:`rating_for` turns the answer into an FSRS
rating and :func:`review` reschedules the card; the card is stored as JSON
(:func:`card_to_json`) with its due date so the store can find due skills
without loading every card.

Rating mapping (how the tutor "grades" a spoken answer):

===============================================  ======
answer                                           rating
===============================================  ======
wrong                                            Again
right, but only after hints or a second attempt  Hard
right, first try, no hints                       Good
right, first try, no hints, skill already        Easy
mastered before this answer (BKT)
===============================================  ======

All datetimes are timezone-aware UTC; naive datetimes are refused because
FSRS intervals are computed from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from fsrs import Card, Rating, Scheduler

DEFAULT_SCHEDULER = Scheduler(enable_fuzzing=False)
"""FSRS defaults (90% desired retention) without fuzzing: a tutor has few skills
per learner, so spreading same-day reviews matters less than schedules that
are reproducible and explainable."""


def rating_for(
    correct: bool, *, hints_used: int = 0, first_try: bool = True, mastered: bool = False
) -> Rating:
    """The FSRS rating for one assessed answer (see the module's table)."""
    if not correct:
        return Rating.Again
    if hints_used > 0 or not first_try:
        return Rating.Hard
    return Rating.Easy if mastered else Rating.Good


def new_card(at: datetime) -> Card:
    """A card for a skill first met at ``at``, due immediately.

    The card id is derived from ``at`` rather than the clock (and fsrs's
    1 ms sleep) so cards are reproducible; the store keys cards by skill.
    """
    at = as_utc(at)
    return Card(card_id=int(at.timestamp() * 1000), due=at)


def review(
    card: Card, rating: Rating, at: datetime, scheduler: Scheduler = DEFAULT_SCHEDULER
) -> Card:
    """The card rescheduled after an answer rated ``rating`` at ``at``."""
    reviewed, _log = scheduler.review_card(card, rating, review_datetime=as_utc(at))
    return reviewed


def card_to_json(card: Card) -> str:
    return card.to_json()


def card_from_json(text: str) -> Card:
    return Card.from_json(text)


def due_skills(cards: Mapping[str, Card], now: datetime) -> list[str]:
    """Skills whose card is due at ``now``, most overdue first (ties by skill id)."""
    now = as_utc(now)
    due = [(card.due, skill) for skill, card in cards.items() if card.due <= now]
    return [skill for _due, skill in sorted(due)]


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC with ``timezone.utc`` itself as tzinfo, which fsrs insists on."""
    if moment.tzinfo is None:
        raise ValueError(f"datetime must be timezone-aware, not naive: {moment!r}")
    return moment.astimezone(timezone.utc)
