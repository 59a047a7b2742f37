"""Learner feedback: ratings said aloud or clicked, surveys, on the wire and in the store.

The phrase matcher is pure; the wire messages are the real protocol; the
ratings and surveys go through the real turn recorder into a real SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from conftest import REPO_ROOT
from voice_tutor import events as ev
from voice_tutor.config import Config
from voice_tutor.dialogue.base import DialogueContext, Exchange
from voice_tutor.dialogue.feedback import ACKNOWLEDGEMENTS, spoken_rating
from voice_tutor.learning.memory import LearnerMemory
from voice_tutor.store import SURVEY_QUESTIONS, Store
from voice_tutor.store.recorder import TurnRecorder
from voice_tutor.tutoring import build_tutor, load_configured_lesson
from xr_bridge import protocol as p

UP = ["Thumbs up.", "thumbs up", "Thumbs-up!", "Thumb up", "That was helpful.", "That was really helpful!",
      "That's helpful", "That helped.", "That really helped me.", "Oh, that was very useful, thanks.",
      "Very helpful.", "Um, thumbs up.", "Yeah that helps", "Big thumbs up!"]  # fmt: skip
DOWN = ["Thumbs down.", "thumbs down", "That didn't help.", "That did not help me.", "That wasn’t helpful.",
        "That was not very helpful.", "Not helpful.", "Unhelpful", "No, that didn't help at all.",
        "That's not helpful.", "That was useless."]  # fmt: skip
NOT_RATINGS = ["up", "Up.", "Down", "twelve", "12", "It is twelve.", "Nine, I think.", "Fifteen minus six is nine",
               "helpful", "It helps plants grow.", "Light helps the plant make food.", "Thumbs",
               "Speed up", "Can you help me?", "I need help", "That was twelve, thumbs up is what I'd give it",
               "The answer helped the ball go up", "thumbs up and down", "", "   "]  # fmt: skip


@pytest.mark.parametrize("text", UP)
def test_praise_said_aloud_is_a_thumbs_up(text):
    assert spoken_rating(text) == 1


@pytest.mark.parametrize("text", DOWN)
def test_complaints_said_aloud_are_a_thumbs_down(text):
    assert spoken_rating(text) == -1


@pytest.mark.parametrize("text", NOT_RATINGS)
def test_lesson_answers_and_stray_words_are_not_ratings(text):
    assert spoken_rating(text) is None


async def test_a_rating_said_aloud_is_acknowledged_published_and_never_reaches_the_lesson():
    config = Config()
    lesson = load_configured_lesson(config)
    memory = await LearnerMemory.open(lesson, None, None)
    tutor = await build_tutor(config, lesson, memory, publish=lambda event: None)  # the real, safety-filtered tutor
    published: list[ev.Event] = []
    context = DialogueContext("s1", "Ada", publish=published.append)

    opening = "".join([piece async for piece in tutor.opening(context)])
    assert "seven plus five" in opening.lower()
    published.clear()  # the opening announced the answer it expects (ev.AnswerExpected)
    thanks = "".join([piece async for piece in tutor.respond("Thumbs up!", context)])
    assert thanks.strip() == ACKNOWLEDGEMENTS[1]
    # Nothing heard yet in this context: the rating is about "the reply before", whichever it was.
    assert published == [ev.TurnRated(session_id="s1", t=published[0].t, rating=1, turn_id=None, source="voice")]
    context.record(Exchange("Thumbs up!", thanks, thanks, False, turn_id=1))  # what the session records
    sorry = "".join([piece async for piece in tutor.respond("That didn't help.", context)])
    assert sorry.strip() == ACKNOWLEDGEMENTS[-1] and published[-1].rating == -1
    assert published[-1].turn_id == 1  # the reply it was said after, so the page can light its thumb
    # The question is still open: neither rating was taken for an answer.
    reply = "".join([piece async for piece in tutor.respond("twelve", context)])
    assert "well done" in reply.lower() and "next question" in reply.lower()
    assert sum(isinstance(event, ev.TurnRated) for event in published) == 2


# --- the wire --------------------------------------------------------------------------------------


def test_rate_turn_and_survey_are_validated_learner_actions():
    rated = p.parse_text('{"type": "rate_turn", "turn_id": 4, "rating": -1}')
    assert rated == p.RateTurn(turn_id=4, rating=-1)
    survey = p.parse_text('{"type": "survey", "answers": {"helpful": 5, "pace": 2}, "comment": "fun"}')
    assert survey == p.Survey(answers={"helpful": 5, "pace": 2}, comment="fun")
    assert p.parse_text('{"type": "survey"}') == p.Survey()  # every question may be skipped
    for bad in ['{"type": "rate_turn", "turn_id": 4, "rating": 0}',
                '{"type": "rate_turn", "turn_id": 4, "rating": 2}',
                '{"type": "rate_turn", "turn_id": 4, "rating": true}',
                '{"type": "rate_turn", "turn_id": -1, "rating": 1}',
                '{"type": "rate_turn", "turn_id": "4", "rating": 1}',
                '{"type": "survey", "answers": {"helpful": 6}}',
                '{"type": "survey", "answers": {"helpful": 0}}',
                '{"type": "survey", "answers": {"helpful": 4.5}}',
                '{"type": "survey", "answers": {"mood": 3}}',
                '{"type": "survey", "comment": "' + "x" * 2001 + '"}']:  # fmt: skip
        with pytest.raises(p.ProtocolError) as error:
            p.parse_text(bad)
        assert error.value.code == "bad_message"
    for message in (rated, survey):
        p.check_allowed("learner", message)
        for role in ("teacher", "observer"):
            with pytest.raises(p.ProtocolError) as error:
                p.check_allowed(role, message)
            assert error.value.code == "forbidden"


def test_the_survey_on_the_wire_and_on_the_page_asks_the_stores_questions():
    assert set(p.SurveyQuestion.__args__) == set(SURVEY_QUESTIONS)
    page = (REPO_ROOT / "assets" / "web" / "app.js").read_text()
    for key, question in SURVEY_QUESTIONS.items():
        assert re.search(rf"{key}: {re.escape(json.dumps(question))}", page), key


def test_ratings_and_surveys_stay_off_the_wire_as_events():
    # The learner's own rate_turn/survey messages are on the wire already.
    assert p.event_to_wire(ev.TurnRated(session_id="s", rating=1, turn_id=3, source="page")) is None
    assert p.event_to_wire(ev.TurnRated(session_id="s", rating=1, turn_id=None, source="voice")) is None
    assert p.event_to_wire(ev.SurveyAnswered(session_id="s", answers={"helpful": 4})) is None
    # Said aloud about a known reply: the room hears of it like a click (no sender), and pages light the thumb.
    spoken = p.event_to_wire(ev.TurnRated(session_id="s", rating=-1, turn_id=4, source="voice"))
    assert isinstance(spoken, p.RateTurn) and (spoken.turn_id, spoken.rating, spoken.sender) == (4, -1, None)
    assert p.parse_text(spoken.model_dump_json()) == spoken
    notice = p.event_to_wire(ev.SessionNotice(session_id="s", level=p.RECORDING, message="recorded"))
    assert isinstance(notice, p.Notice) and notice.level == "recording"


# --- the store ---------------------------------------------------------------------------------------


def test_a_changed_mind_leaves_the_latest_rating(tmp_path):
    with Store.open(tmp_path / "tutor.db") as store:
        store.ensure_learner("Ada")
        session = store.start_session("Ada", "arithmetic")
        reply = store.add_turn(session, "tutor", "Seven plus five is twelve.")
        store.set_rating(reply.id, 1)
        store.set_rating(reply.id, -1)
        assert [tuple(row) for row in store.read("SELECT turn_id, rating FROM ratings")] == [(reply.id, -1)]
        with pytest.raises(ValueError):
            store.set_rating(reply.id, 0)
        assert store.export_learner("Ada")["sessions"][0]["turns"][0]["ratings"][0]["rating"] == -1


def final(uid: int, text: str) -> ev.FinalTranscript:
    return ev.FinalTranscript(session_id="s", utterance_id=uid, text=text, language="en", audio_duration_s=1.0,
                              last_voiced_at=0.0, stt_ms=50.0)


def completed(uid: int, learner: str, tutor: str) -> ev.TurnCompleted:
    return ev.TurnCompleted(session_id="s", turn_id=uid, learner=learner, tutor=tutor, heard=tutor, cut=False,
                            latency_ms={"first_audio": 300.0})


async def record(store: Store, events: list[ev.Event]) -> int:
    """Run a real turn recorder over ``events`` as Tutoring.run does; the stored session's id."""
    queue: asyncio.Queue[ev.Event] = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)
    recorder = TurnRecorder(store, "Ada", "arithmetic")
    task = asyncio.create_task(recorder.run(queue))
    async with asyncio.timeout(10):
        while recorder.session_id is None:
            await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await recorder.close()
    return recorder.session_id


async def test_ratings_land_on_the_turn_they_name_and_surveys_on_the_session(tmp_path):
    opening = "Hi Ada! What is seven plus five?"
    with Store.open(tmp_path / "tutor.db") as store:
        store.ensure_learner("Ada")
        session = await record(store, [
            ev.TutorSpeechEnded(session_id="s", turn_id=0, text=opening, heard=opening, cut=False),
            ev.TurnRated(session_id="s", rating=-1, turn_id=0, source="page"),
            final(1, "twelve"),
            ev.TurnRated(session_id="s", rating=1, turn_id=1, source="page"),  # clicked while it still played
            completed(1, "twelve", "Yes, well done! What is fifteen minus six?"),
            ev.TurnRated(session_id="s", rating=1, turn_id=0, source="page"),  # changed their mind
            final(2, "Thumbs down."),
            ev.TurnRated(session_id="s", rating=-1, turn_id=None, source="voice"),  # the reply before it
            completed(2, "Thumbs down.", ACKNOWLEDGEMENTS[-1]),
            ev.TurnRated(session_id="s", rating=1, turn_id=99, source="page"),  # a reply never stored
            ev.SurveyAnswered(session_id="s", answers={"helpful": 4, "enjoyed": 5}, comment="Fun!"),
        ])  # fmt: skip
        turns = store.export_learner("Ada")["sessions"][0]
        ratings = {turn["text"]: [r["rating"] for r in turn["ratings"]] for turn in turns["turns"]}
        assert ratings == {
            opening: [1],
            "twelve": [],
            "Yes, well done! What is fifteen minus six?": [-1],  # +1 clicked, then "thumbs down" said
            "Thumbs down.": [],
            ACKNOWLEDGEMENTS[-1]: [],
        }
        assert [(s["answers"], s["comment"]) for s in turns["surveys"]] == [({"helpful": 4, "enjoyed": 5}, "Fun!")]
        assert turns["id"] == session and turns["ended_at"] is not None
