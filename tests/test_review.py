"""Spaced review: schedules exactly as fsrs does, and cards survive the store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fsrs import Card, Rating, Scheduler, State

from voice_tutor.learning.review import (
    DEFAULT_SCHEDULER,
    card_from_json,
    card_to_json,
    due_skills,
    new_card,
    rating_for,
    review,
)
from voice_tutor.store import Store

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("answer", "rating"),
    [
        ({"correct": False}, Rating.Again),
        ({"correct": False, "mastered": True}, Rating.Again),
        ({"correct": True, "hints_used": 2}, Rating.Hard),
        ({"correct": True, "first_try": False}, Rating.Hard),
        ({"correct": True, "hints_used": 1, "mastered": True}, Rating.Hard),
        ({"correct": True}, Rating.Good),
        ({"correct": True, "mastered": True}, Rating.Easy),
    ],
)
def test_answers_map_to_ratings(answer, rating):
    assert rating_for(**answer) is rating


@pytest.mark.parametrize(
    ("rating", "state", "interval"),
    [
        # The default learning steps are 1 and 10 minutes; Hard on the first step is their mean.
        (Rating.Again, State.Learning, timedelta(minutes=1)),
        (Rating.Hard, State.Learning, timedelta(minutes=5, seconds=30)),
        (Rating.Good, State.Learning, timedelta(minutes=10)),
        # Easy graduates at once with stability w[3] = 8.2956 days; at 90% retention
        # the interval equals the stability, rounded to whole days.
        (Rating.Easy, State.Review, timedelta(days=8)),
    ],
)
def test_first_review_of_a_new_card(rating, state, interval):
    card = review(new_card(T0), rating, T0)

    direct, _log = Scheduler(enable_fuzzing=False).review_card(
        Card(card_id=int(T0.timestamp() * 1000), due=T0), rating, review_datetime=T0
    )
    assert card.to_dict() == direct.to_dict()
    assert card.state is state
    assert card.due - T0 == interval
    assert card.stability == DEFAULT_SCHEDULER.parameters[rating - 1]
    assert card.last_review == T0


def test_a_review_history_matches_fsrs_called_directly():
    answers = [Rating.Good, Rating.Good, Rating.Good, Rating.Again, Rating.Good]
    scheduler = Scheduler(enable_fuzzing=False)
    ours = new_card(T0)
    theirs = Card(card_id=ours.card_id, due=T0)
    for rating in answers:
        at = ours.due  # the learner comes back exactly when due
        ours = review(ours, rating, at)
        theirs, _log = scheduler.review_card(theirs, rating, review_datetime=at)
        assert ours.to_dict() == theirs.to_dict()
    # Good, Good: graduates 10 minutes in with stability 2.3065 days -> due 2 days later.
    second = review(review(new_card(T0), Rating.Good, T0), Rating.Good, T0 + timedelta(minutes=10))
    assert second.state is State.Review
    assert second.due == datetime(2025, 3, 3, 9, 10, tzinfo=timezone.utc)
    # ...and the lapse (Again) sent the card to relearning before it recovered.
    assert ours.state is State.Review and ours.stability < 2


def test_datetimes_must_be_aware_and_are_kept_in_utc():
    paris = timezone(timedelta(hours=1))
    card = review(new_card(T0), Rating.Good, datetime(2025, 3, 1, 10, 0, tzinfo=paris))
    assert card.last_review == T0 and card.last_review.tzinfo is timezone.utc
    with pytest.raises(ValueError, match="naive"):
        review(card, Rating.Good, datetime(2025, 3, 2))
    with pytest.raises(ValueError, match="naive"):
        new_card(datetime(2025, 3, 2))


def test_cards_round_trip_through_json():
    card = review(review(new_card(T0), Rating.Good, T0), Rating.Hard, T0 + timedelta(minutes=10))
    restored = card_from_json(card_to_json(card))
    assert restored.to_dict() == card.to_dict()
    assert restored.due.tzinfo is timezone.utc
    # The restored card schedules exactly like the original.
    later = T0 + timedelta(days=3)
    assert (
        review(restored, Rating.Good, later).to_dict() == review(card, Rating.Good, later).to_dict()
    )


def test_due_skills_lists_due_cards_most_overdue_first():
    cards = {
        "subtraction": new_card(T0 - timedelta(hours=1)),
        "addition": new_card(T0 - timedelta(days=1)),
        "carrying": new_card(T0 - timedelta(hours=1)),
        "exactly-now": new_card(T0),
        "fractions": review(new_card(T0), Rating.Easy, T0),
    }
    assert due_skills(cards, T0) == ["addition", "carrying", "subtraction", "exactly-now"]
    assert due_skills(cards, T0 + timedelta(days=8)) == [
        "addition",
        "carrying",
        "subtraction",
        "exactly-now",
        "fractions",
    ]
    assert due_skills({}, T0) == []


def test_cards_kept_in_the_store_come_back_due(tmp_path):
    with Store.open(tmp_path / "tutor.db") as store:
        store.ensure_learner("ada")
        for skill, rating in [("addition", Rating.Again), ("subtraction", Rating.Easy)]:
            card = review(new_card(T0), rating, T0)
            store.set_review("ada", skill, card_to_json(card), card.due)

    with Store.open(tmp_path / "tutor.db") as store:
        due = store.due_reviews("ada", T0 + timedelta(minutes=1))
        assert [entry.skill_id for entry in due] == ["addition"]
        card = card_from_json(due[0].card)
        assert card.due == due[0].due == T0 + timedelta(minutes=1)
        cards = {
            entry.skill_id: card_from_json(entry.card)
            for entry in store.due_reviews("ada", T0 + timedelta(days=8))
        }
    assert due_skills(cards, T0 + timedelta(days=8)) == ["addition", "subtraction"]
