"""The learner record is true: each answer keeps what happened, under the learner who gave it,
and xAPI (checked by a strict LRS process) reports the same."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from voice_tutor.classroom.settings import XapiConfig
from voice_tutor.classroom.xapi import EXTENSIONS, VERBS, XapiRecorder, XapiSender
from voice_tutor.config import Config
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.events import MasteryUpdated
from voice_tutor.store import AnswerFacts, Store
from voice_tutor.store.schema import MIGRATIONS
from voice_tutor.tutoring import Tutoring

sys.path.insert(0, str(Path(__file__).parent))
from test_classroom_xapi import Lrs, free_port  # noqa: E402  (the real LRS process the xAPI tests use)
from xapi_lrs_server import Invalid, validate  # noqa: E402


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "tutor.db") as opened:
        yield opened


@pytest.fixture
def lrs(tmp_path):
    server = Lrs(tmp_path / "lrs.jsonl", free_port())
    server.start()
    yield server
    server.stop()


class Conversation:
    """Learner turns typed into a Tutoring's shared tutor, as the session hands them over."""

    def __init__(self, tutoring: Tutoring, first: str):
        self.tutoring = tutoring
        self.events: asyncio.Queue = asyncio.Queue()
        self.context = DialogueContext("s1", first, publish=self.events.put_nowait)
        self.turn = 0

    async def opening(self) -> str:
        return "".join([piece async for piece in self.tutoring.tutor.opening(self.context)])

    async def say(self, learner: str, text: str) -> str:
        self.turn += 1
        self.context.learner_name, self.context.turn_id, self.context.learner_text = learner, self.turn, text
        return "".join([piece async for piece in self.tutoring.tutor.respond(text, self.context)])


async def test_a_right_answer_after_a_hint_is_recorded_and_reaches_a_strict_lrs_as_a_success_with_its_hints(
    store, lrs
):
    tutoring = await Tutoring.open(Config(), "Ada", store)
    talk = Conversation(tutoring, "Ada")
    recorder = XapiRecorder(store, "Ada", "arithmetic")
    task = asyncio.create_task(recorder.run(talk.events))
    assert "seven plus five" in (await talk.opening()).lower()
    assert "hint" in (await talk.say("Ada", "ten")).lower()
    assert "next question" in (await talk.say("Ada", "it is twelve")).lower()
    await asyncio.sleep(0.1)
    task.cancel()
    await recorder.close(outcome=tutoring.memory.outcome())

    (answer,) = store.answers("Ada", lesson_id="arithmetic")
    assert answer.question_id == "add-7-5" and answer.skill_id == "arithmetic/addition"
    facts = answer.facts
    assert (facts.verdict, facts.response, facts.first_try, facts.hints_used, facts.turn_key) == (
        "correct", "it is twelve", False, 1, 2)
    assert facts.mastery_after < facts.mastery_before  # BKT still learns that it was not right first time
    assert not facts.right_first_time

    config = XapiConfig(endpoint=f"http://127.0.0.1:{lrs.port}/xapi", username="lrs-key", password="lrs-secret")
    assert XapiSender(store, config).send_pending() == 3
    stored = lrs.get("/xapi/statements")["statements"]
    assert [s["verb"]["id"] for s in stored] == [VERBS["experienced"], VERBS["answered"], VERBS["suspended"]]
    answered = stored[1]
    assert answered["object"]["id"].endswith("/lessons/arithmetic/questions/add-7-5")
    result = answered["result"]
    assert result["success"] is True and result["response"] == "it is twelve"
    assert "score" not in result  # a mastery estimate is not a score
    assert result["extensions"][EXTENSIONS["hints-used"]] == 1
    assert result["extensions"][EXTENSIONS["first-try"]] is False
    assert result["extensions"][EXTENSIONS["verdict"]] == "correct"
    assert result["extensions"][EXTENSIONS["mastery-before"]] == pytest.approx(facts.mastery_before, abs=1e-4)
    assert result["extensions"][EXTENSIONS["mastery-after"]] == pytest.approx(facts.mastery_after, abs=1e-4)
    # Left with the next question asked and unanswered: resumable, so suspended, never completed.
    assert stored[2]["result"]["completion"] is False


async def test_a_revealed_answer_is_no_success_and_a_session_with_nothing_answered_is_terminated(store):
    tutoring = await Tutoring.open(Config(), "Ben", store)
    talk = Conversation(tutoring, "Ben")
    await talk.opening()
    assert tutoring.memory.outcome() == "terminated"  # asked, nothing answered
    for _ in range(4):  # wrong until every hint is used and the tutor explains
        reply = await talk.say("Ben", "three")
        if "next question" in reply.lower():
            break
    (answer,) = store.answers("Ben")
    assert answer.facts.verdict == "incorrect" and answer.facts.response == "three"
    assert answer.facts.hints_used >= 1 and answer.facts.first_try is False
    events = [talk.events.get_nowait() for _ in range(talk.events.qsize())]
    (event,) = [e for e in events if isinstance(e, MasteryUpdated)]
    assert (event.verdict, event.correct, event.learner, event.question_id) == ("incorrect", False, "Ben", "add-7-5")


async def test_the_lesson_is_completed_only_when_its_completion_rule_is_met(store):
    store.ensure_learner("Cy")
    for skill in ("addition", "subtraction"):
        store.set_mastery("Cy", f"arithmetic/{skill}", 0.99)
    tutoring = await Tutoring.open(Config(), "Cy", store)
    assert tutoring.memory.lesson_completed() and tutoring.memory.outcome() == "completed"
    store.set_mastery("Cy", "arithmetic/subtraction", 0.5)
    again = await Tutoring.open(Config(), "Cy", store)
    assert not again.memory.lesson_completed() and again.memory.outcome() == "terminated"


async def test_a_shared_tutoring_asks_and_assesses_each_learner_and_stores_each_answer_under_its_learner(store):
    tutoring = await Tutoring.open(Config(), "Ada", store)
    talk = Conversation(tutoring, "Ada")
    await talk.opening()
    first_turn = await talk.say("Ben", "hello")  # Ben's first words: welcomed by name, asked his own question
    assert "ben" in first_turn.lower() and "seven plus five" in first_turn.lower()
    assert "next question" in (await talk.say("Ben", "twelve")).lower()
    assert "hint" in (await talk.say("Ada", "nine")).lower()  # Ada is still on her own question
    assert [a.question_id for a in store.answers("Ben")] == ["add-7-5"]
    assert store.answers("Ada") == []
    assert set(tutoring.seats) == {"Ada", "Ben"}
    assert tutoring.seats["Ben"].memory.learner.name == "Ben"


def test_a_schema_3_database_migrates_and_keeps_its_answers(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO learners (name, level, preferences, goals, created_at)"
               " VALUES ('Ada', 'beginner', '{}', '[]', '2025-01-01T00:00:00.000000+00:00')")
    db.execute("INSERT INTO assessments (learner_id, skill_id, question_id, correct, at)"
               " VALUES (1, 'arithmetic/addition', 'add-7-5', 1, '2025-01-01T00:00:00.000000+00:00')")
    db.commit()
    db.close()
    with Store.open(path) as store:
        (old,) = store.answers("Ada")
        assert old.question_id == "add-7-5" and old.facts is None
        session = store.start_session("Ada", "arithmetic")
        facts = AnswerFacts(verdict="revealed", response="tell me", first_try=True, hints_used=2,
                            mastery_before=0.4, mastery_after=0.3, session_id=session, turn_key=4)
        store.record_answer("Ada", "arithmetic/addition", "add-8-9", False, 0.3, facts=facts)
        assert [a.facts for a in store.answers("Ada", session_id=session)] == [facts]
        store.end_session(session, outcome="suspended")
        exported = store.export_learner("Ada")
        assert exported["schema_version"] == len(MIGRATIONS) == 4
        assert exported["sessions"][0]["outcome"] == "suspended"
        assert exported["assessments"][1]["verdict"] == "revealed"
        with pytest.raises(ValueError, match="verdict"):
            AnswerFacts(verdict="maybe", response=None, first_try=True, hints_used=0,
                        mastery_before=0.1, mastery_after=0.2)
        with pytest.raises(ValueError, match="outcome"):
            store.end_session(session, outcome="finished")


def test_answer_summary_counts_right_answers_first_tries_and_hints_and_purge_forgets_the_words(store):
    store.ensure_learner("Ada")
    session = store.start_session("Ada", "arithmetic", at=datetime.now(UTC) - timedelta(days=40))
    for verdict, first_try, hints in (("correct", True, 0), ("correct", False, 2), ("incorrect", False, 1)):
        facts = AnswerFacts(verdict=verdict, response=f"{verdict} words", first_try=first_try, hints_used=hints,
                            mastery_before=0.3, mastery_after=0.4, session_id=session)
        store.record_answer("Ada", "arithmetic/addition", "q", facts.right_first_time, 0.4, facts=facts)
    assert store.answer_summary(["Ada"]) == [{
        "learner": "Ada", "skill": "arithmetic/addition", "answers": 3, "correct": 2, "first_try_correct": 1,
        "correct_after_hints": 1, "hints_used": 3,
    }]
    store.purge_transcripts(datetime.now(UTC) - timedelta(days=30))
    answers = store.answers("Ada")
    assert len(answers) == 3 and all(a.facts.response is None for a in answers)
    assert [a.facts.verdict for a in answers] == ["correct", "correct", "incorrect"]


def test_the_lrs_refuses_what_xapi_1_0_3_refuses():
    good = {
        "id": "0b7f1d3e-8c1a-4c7e-9a4b-2f3e4d5c6b7a",
        "actor": {"objectType": "Agent", "account": {"homePage": "https://school.example", "name": "p-1"}},
        "verb": {"id": VERBS["answered"], "display": {"en-US": "answered"}},
        "object": {"objectType": "Activity", "id": "https://school.example/q/1"},
        "result": {"success": True, "response": "twelve", "extensions": {EXTENSIONS["hints-used"]: 1}},
        "context": {"registration": "0b7f1d3e-8c1a-4c7e-9a4b-2f3e4d5c6b7a", "language": "en-US"},
        "timestamp": "2025-01-01T00:00:00.000Z",
    }
    validate(good)
    bad = [
        {**good, "result": {"extensions": {"hints-used": 1}}},          # extension key not an IRI
        {**good, "result": {"score": {"scaled": 1.2}}},                  # scaled beyond [-1, 1]
        {**good, "result": {"score": {"raw": 5, "min": 0, "max": 3}}},   # raw beyond max
        {**good, "result": {"response": 12}},                            # response not a string
        {**good, "result": {"hints": 1}},                                # a property xAPI does not define
        {**good, "verb": {"id": VERBS["answered"], "display": {"en_US": "answered"}}},  # not a language tag
        {**good, "context": {"language": "en US"}},
        {**good, "object": {"id": "https://school.example/q/1", "definition": {"extensions": {"x": 1}}}},
        {**good, "timestamp": "2025-01-01T00:00:00"},                    # no time zone
    ]
    for statement in bad:
        with pytest.raises(Invalid):
            validate(statement)
    json.dumps(good)  # what was validated is plain JSON


def test_reports_read_the_same_facts_a_right_answer_after_hints_is_right_but_not_first_time(store, tmp_path):
    from voice_tutor.classroom import analytics
    from voice_tutor.classroom.reports import build_report

    store.ensure_learner("Ada")
    session = store.start_session("Ada", "arithmetic")
    for question, verdict, first_try, hints, after in (
        ("add-7-5", "correct", False, 1, 0.2), ("add-8-9", "correct", True, 0, 0.45),
        ("sub-15-6", "revealed", True, 2, 0.1),
    ):
        skill = "arithmetic/subtraction" if question.startswith("sub") else "arithmetic/addition"
        facts = AnswerFacts(verdict=verdict, response="words", first_try=first_try, hints_used=hints,
                            mastery_before=0.3, mastery_after=after, session_id=session)
        store.record_answer("Ada", skill, question, facts.right_first_time, after, facts=facts)
    history = analytics.mastery_history(store, ["Ada"])
    assert [(r["question"], r["correct"], r["first_try"], r["hints_used"], r["p_known"]) for r in history] == [
        ("add-7-5", True, False, 1, 0.2), ("add-8-9", True, True, 0, 0.45), ("sub-15-6", False, True, 2, 0.1)]
    accuracy = {r["question"]: r for r in analytics.question_accuracy(store, ["Ada"])}
    assert (accuracy["add-7-5"]["accuracy"], accuracy["add-7-5"]["first_try_rate"], accuracy["add-7-5"]["hints_used"]) \
        == (1.0, 0.0, 1)
    gaps = {g["skill"]: g for g in analytics.knowledge_gaps(store, ["Ada"])}
    assert (gaps["arithmetic/addition"]["accuracy"], gaps["arithmetic/addition"]["first_try_rate"]) == (1.0, 0.5)
    assert gaps["arithmetic/subtraction"]["hints_used"] == 2
    facts = {r["skill"]: r for r in analytics.answer_facts(store, ["Ada"])}
    assert facts["arithmetic/addition"]["first_try_rate"] == 0.5
    assert facts["arithmetic/addition"]["correct_after_hints"] == 1
    files = build_report(store, "Ada", tmp_path / "report", formats=("csv",)).files
    answers_csv = next(path for path in files if path.name == "answers.csv").read_text()
    assert "first_try_rate" in answers_csv and "hints_used" in answers_csv


async def test_without_a_store_each_learner_of_a_shared_session_still_has_their_own_question():
    tutoring = await Tutoring.open(Config(), "Ada", None)
    talk = Conversation(tutoring, "Ada")
    await talk.opening()
    assert "hint" in (await talk.say("Ada", "nine")).lower()  # Ada works on seven plus five
    welcome = await talk.say("Ben", "hi")
    assert "ben" in welcome.lower() and "seven plus five" in welcome.lower()  # Ben starts at the beginning
    assert "next question" in (await talk.say("Ada", "twelve")).lower()
    assert tutoring.seats["Ada"].memory.pending != tutoring.seats["Ben"].memory.pending
    assert not any(seat.remembered for seat in tutoring.seats.values())
