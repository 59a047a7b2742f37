"""A learner over several sessions, each a separate `voice-tutor talk` process on one real database file.

Session 1: Sam answers five questions of the arithmetic lesson aloud (piper
speech, real Whisper, the real offline tutor) and leaves.  The test then
reads the store: the assessments are the first-try outcomes, mastery is the
BKT value worked out by hand below, and the skill Sam mastered has an FSRS
card scheduled exactly as the ``fsrs`` package (called here directly)
schedules it.  Time passes (the card is moved two days into the past, as if
the session had been two days ago), and Sam comes back in a new process: the
tutor's opening names the due review and the gap, and its first question is
on the due skill.

Crash safety: a real-time session is killed with SIGKILL once the learner's
first turn is on disk; the file is intact, nothing stored before the kill is
lost, and the next session for that learner runs.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fsrs import Card, Rating, Scheduler

from audio_fixtures import build_recording, wer_text, write_wav
from voice_tutor.config import ASSETS_DIR
from voice_tutor.learning.lessons import load_lesson
from voice_tutor.store import Store

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
LESSON = load_lesson(ASSETS_DIR / "lessons" / "arithmetic.toml")
LEARNER = "Sam"
ADDITION, SUBTRACTION = "arithmetic/addition", "arithmetic/subtraction"
PRAISE = ("That's right!", "Yes, well done!", "Correct, nice work!", "Exactly right!")

# What Sam says, turn by turn.  The tutor asks (lesson order, frontier first):
# 7+5, 8+9, "what do we call the answer when we add", then 15-6 (addition is mastered by then).
# 'Ten.' for 15-6 is the slip the lesson anticipates (counting back from fifteen itself).
SESSION_1 = ["Twelve.", "Seventeen.", "The sum.", "Ten.", "Nine."]
# Two days later: the review of addition comes first (7+5 again), then subtraction, the gap.
SESSION_2 = ["Twelve.", "Nine."]
TIME_AWAY = timedelta(days=2)

# BKT by hand: prior .2, learn .15, slip .1, guess .2; after each first-try outcome
#   right: post = p*.9 / (p*.9 + (1-p)*.2)     wrong: post = p*.1 / (p*.1 + (1-p)*.8)
#   then   p'   = post + (1 - post) * .15
# addition, session 1: right, right, right
#   p0 = .2
#   p1 = .18/.34 + (.16/.34)*.15           = .204/.34           = 0.6
#   p2 = .54/.62 + (.08/.62)*.15           = .552/.62           = 27.6/31      ≈ 0.890323
#   p3 = (24.84 + .68*.15)/25.52  (in 31ths: known 27.6*.9 = 24.84, unknown 3.4*.2 = .68)
#                                          = 24.942/25.52       ≈ 0.977351
# subtraction, session 1: wrong ('Ten.'), then right after a hint: the first try counts, so wrong
#   p1 = (.02 + .64*.15)/.66               = .116/.66 = 5.8/33  ≈ 0.175758
# addition, session 2 (review): right.  p3 = 24.942/25.52, 1 - p3 = .578/25.52
#   known 24.942*.9 = 22.4478, unknown .578*.2 = .1156 (in 25.52ths)
#   p4 = (22.4478 + .1156*.15)/22.5634     = 22.46514/22.5634   ≈ 0.995645
# subtraction, session 2: right.  p1 = 5.8/33: known 5.8*.9 = 5.22, unknown 27.2*.2 = 5.44 (in 33rds)
#   p2 = (5.22 + 5.44*.15)/10.66           = 6.036/10.66        ≈ 0.566229
ADDITION_AFTER_1 = [0.6, 27.6 / 31, 24.942 / 25.52]
SUBTRACTION_AFTER_1 = 5.8 / 33
ADDITION_AFTER_2 = 22.46514 / 22.5634
SUBTRACTION_AFTER_2 = 6.036 / 10.66
SCHEDULER = Scheduler(enable_fuzzing=False)  # the tutor's documented FSRS settings: defaults, no fuzz


def _command() -> list[str]:
    script = Path(sys.executable).with_name("voice-tutor")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "voice_tutor.cli"]


def _env(data_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_TUTOR_", "OPENAI_"))}
    env.update(PYTHONUNBUFFERED="1", XDG_DATA_HOME=str(data_home))
    return env


def talk(db: Path, learner_wav: Path, *flags: str, name: str = LEARNER, timeout: float = 180):
    workdir = learner_wav.parent
    return subprocess.run(
        [*_command(), "talk", "--input", str(learner_wav), "--output", str(workdir / f"{learner_wav.stem}-tutor.wav"),
         "--name", name, "--db", str(db), *flags],
        capture_output=True, text=True, timeout=timeout, env=_env(workdir / "xdg"), cwd=REPO_ROOT,
    )


def recording(say, texts: list[str], path: Path, gap_s: float = 1.5, tail_s: float = 0.5) -> Path:
    audio, _ = build_recording([(1.0 if i == 0 else gap_s, say(text)) for i, text in enumerate(texts)],
                               tail_s=tail_s)
    return write_wav(path, audio)


def assessments_of(export: dict) -> list[tuple[str, str, bool, datetime]]:
    """(skill, question, first try right, when) of every graded answer in a store export, oldest first."""
    return [(a["skill_id"], a["question_id"], a["correct"], datetime.fromisoformat(a["at"]))
            for a in export["assessments"]]


def without_opening(turns: list[dict]) -> list[dict]:
    """A session's stored turns from the learner's first answer on.

    (Today the recorder does not store the tutor's opening; should it start
    to, the opening comes first and is not an answer to anything.)
    """
    return turns[1:] if turns and turns[0]["role"] == "tutor" else turns


def card_fields(card: Card) -> dict:
    """A card's schedule, without the id (fsrs derives it from the clock)."""
    data = card.to_dict()
    del data["card_id"]
    return data


@dataclass
class History:
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    after_first: dict
    after_second: dict
    card_after_first: Card
    moved_card: Card
    due_before_move: list
    due_after_move: list
    db: Path


@pytest.fixture(scope="module")
def history(tmp_path_factory, say) -> History:
    workdir = tmp_path_factory.mktemp("memory")
    db = workdir / "tutor.db"
    first = talk(db, recording(say, SESSION_1, workdir / "session1.wav"), "--fast", "--json")
    assert first.returncode == 0, first.stderr
    with Store.open(db) as store:
        after_first = store.export_learner(LEARNER)
        review = store.get_review(LEARNER, ADDITION)
        assert review is not None, after_first
        card = Card.from_json(review.card)
        due_before_move = store.due_reviews(LEARNER)
        # Two days pass: the card was last reviewed, and fell due, two days earlier than stored.
        moved = Card.from_dict({**card.to_dict(), "due": (card.due - TIME_AWAY).isoformat(),
                                "last_review": (card.last_review - TIME_AWAY).isoformat()})
        store.set_review(LEARNER, ADDITION, moved.to_json(), moved.due)
        due_after_move = store.due_reviews(LEARNER)
    second = talk(db, recording(say, SESSION_2, workdir / "session2.wav"), "--fast")
    assert second.returncode == 0, second.stderr
    with Store.open(db) as store:
        after_second = store.export_learner(LEARNER)
    return History(first, second, after_first, after_second, card, moved, due_before_move, due_after_move, db)


def test_first_session_turns_are_answered_and_stored(history):
    result = history.first
    assert "Traceback" not in result.stderr
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    assert [wer_text(t["learner"]).split()[0] for t in turns] == ["12", "17", "the", "10", "9"], turns
    replies = [t["tutor"] for t in turns]
    assert all(reply.startswith(PRAISE) for reply in replies[:3]) and replies[4].startswith(PRAISE)
    assert "You've mastered Adding within twenty!" in replies[2]
    slip = LESSON.questions[1].misconceptions[0].feedback  # sub-15-6, answered 10
    assert replies[3].startswith(f"Not quite. {slip}") and "Here's a hint:" in replies[3]
    # The lesson is done: its wrap-up, then (once) what comes next.
    assert LESSON.wrap_up in replies[4] and replies[4].endswith("Which would you like?")

    [session] = history.after_first["sessions"]
    assert session["lesson_id"] == "arithmetic" and session["ended_at"] is not None
    stored = without_opening(session["turns"])
    expected = [pair for t in turns for pair in (("learner", t["learner"]), ("tutor", t["tutor"]))]
    assert [(turn["role"], turn["text"]) for turn in stored] == expected
    assert [turn["index"] for turn in session["turns"]] == list(range(len(session["turns"])))


def test_assessments_are_the_first_try_outcomes(history):
    graded = assessments_of(history.after_second)
    assert [(skill, question, correct) for skill, question, correct, _ in graded] == [
        (ADDITION, "add-7-5", True),
        (ADDITION, "add-8-9", True),
        (ADDITION, "word-sum", True),
        (SUBTRACTION, "sub-15-6", False),  # right only after a wrong answer and a hint
        (ADDITION, "add-7-5", True),  # session 2: the review
        (SUBTRACTION, "sub-15-6", True),
    ]


def test_mastery_matches_hand_computed_bkt(history):
    first = {m["skill_id"]: m["p_known"] for m in history.after_first["mastery"]}
    assert first == {ADDITION: pytest.approx(ADDITION_AFTER_1[-1], abs=1e-12),
                     SUBTRACTION: pytest.approx(SUBTRACTION_AFTER_1, abs=1e-12)}
    second = {m["skill_id"]: m["p_known"] for m in history.after_second["mastery"]}
    assert second == {ADDITION: pytest.approx(ADDITION_AFTER_2, abs=1e-12),
                      SUBTRACTION: pytest.approx(SUBTRACTION_AFTER_2, abs=1e-12)}
    # Mastery (0.95) came with the third right answer, not before.
    assert ADDITION_AFTER_1[1] < 0.95 <= ADDITION_AFTER_1[2]


def test_the_mastered_skill_is_scheduled_as_fsrs_schedules_it(history):
    # The card starts when addition was mastered (the third answer) and is rated Good there:
    # right on the first try, no hints, not yet mastered before the answer.
    mastered_at = [at for skill, _, _, at in assessments_of(history.after_first) if skill == ADDITION][2]
    expected, _ = SCHEDULER.review_card(Card(due=mastered_at), Rating.Good, review_datetime=mastered_at)
    assert card_fields(history.card_after_first) == card_fields(expected)
    assert history.card_after_first.due == mastered_at + timedelta(minutes=10)  # fsrs's second learning step
    [review] = history.after_first["reviews"]
    assert review["skill_id"] == ADDITION and datetime.fromisoformat(review["due"]) == expected.due
    # Nothing is due straight after the session; two days later addition is.
    assert history.due_before_move == []
    assert [entry.skill_id for entry in history.due_after_move] == [ADDITION]


def test_the_returning_learner_is_greeted_with_the_due_review_and_the_gap(history):
    result = history.second
    assert "Traceback" not in result.stderr
    tutor_lines = [line.strip().removeprefix("tutor:").strip() for line in result.stdout.splitlines()
                   if line.strip().startswith("tutor:")]
    opening = tutor_lines[0]
    assert opening.startswith(LESSON.greeting.format(name=LEARNER)) and not opening.endswith("…")
    assert "time to review Adding within twenty" in opening
    assert "Subtracting within twenty still felt tricky" in opening
    # ... and the first question is on the due skill (addition), before the gap (subtraction).
    addition_prompts = [q.prompt for q in LESSON.questions_for("addition")]
    assert any(opening.endswith(prompt) for prompt in addition_prompts), opening
    graded = assessments_of(history.after_second)
    assert [(skill, question) for skill, question, _, _ in graded[4:]] == [(ADDITION, "add-7-5"),
                                                                         (SUBTRACTION, "sub-15-6")]
    second_session = history.after_second["sessions"][1]
    learner_said = [wer_text(t["text"]).split()[0] for t in second_session["turns"] if t["role"] == "learner"]
    assert learner_said == ["12", "9"]


def test_the_review_after_the_break_is_rescheduled_as_fsrs_does(history):
    reviewed_at = [at for skill, _, _, at in assessments_of(history.after_second) if skill == ADDITION][3]
    assert reviewed_at - history.moved_card.last_review >= TIME_AWAY
    # Right first time on a skill already mastered: Easy.
    expected, _ = SCHEDULER.review_card(history.moved_card, Rating.Easy, review_datetime=reviewed_at)
    [review] = history.after_second["reviews"]
    stored = Card.from_dict(review["card"])
    assert card_fields(stored) == card_fields(expected)
    assert datetime.fromisoformat(review["due"]) == expected.due > reviewed_at + timedelta(days=1)


def test_learner_show_reports_the_history(history):
    result = subprocess.run([*_command(), "learner", "show", LEARNER, "--db", str(history.db), "--json"],
                            capture_output=True, text=True, timeout=60, env=_env(history.db.parent / "xdg"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sessions_count"] == 2
    [lesson] = summary["lessons"]
    # "correct": the learner's answer was right (a right answer after a hint counts); right first time: no help.
    assert [(s["name"], s["mastered"], s["answers"], s["correct"], s["right_first_time"])
            for s in lesson["skills"]] == [
        ("Adding within twenty", True, 4, 4, 4), ("Subtracting within twenty", False, 2, 2, 1)]
    assert [g["name"] for g in lesson["gaps"]] == ["Subtracting within twenty"]
    assert [(r["name"], r["due_now"]) for r in summary["reviews"]] == [("Adding within twenty", False)]


# --- crash safety ----------------------------------------------------------------------------


def read_turns(db: Path, name: str) -> list[tuple]:
    """The learner's stored turns, read through a read-only connection (never blocks the writer)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as reader:
            return reader.execute(
                "SELECT turns.id, turns.session_id, turns.idx, turns.role, turns.text, turns.heard, turns.cut,"
                " turns.ended_at FROM turns JOIN sessions ON sessions.id = turns.session_id"
                " JOIN learners ON learners.id = sessions.learner_id WHERE learners.name = ? ORDER BY turns.id",
                (name,),
            ).fetchall()
    except sqlite3.OperationalError:  # not created or not migrated yet
        return []


def test_a_session_killed_mid_turn_loses_nothing_stored(tmp_path, say):
    db = tmp_path / "tutor.db"
    learner_wav = recording(say, ["Twelve.", "Seventeen.", "The sum.", "Ten.", "Nine."], tmp_path / "long.wav",
                            gap_s=2.5, tail_s=3.0)
    with (tmp_path / "out.txt").open("w") as out, (tmp_path / "err.txt").open("w") as err:
        process = subprocess.Popen(
            [*_command(), "talk", "--input", str(learner_wav), "--output", str(tmp_path / "tutor.wav"),
             "--name", "Kim", "--db", str(db)],
            stdout=out, stderr=err, env=_env(tmp_path / "xdg"), cwd=REPO_ROOT,
        )
        try:
            deadline = time.monotonic() + 90
            seen: list[tuple] = []
            while time.monotonic() < deadline and process.poll() is None:
                seen = read_turns(db, "Kim")
                if any(turn[3] == "learner" for turn in seen):
                    break
                time.sleep(0.02)
            alive = process.poll() is None
            process.send_signal(signal.SIGKILL)  # real time: the tutor is still answering the first turn
        finally:
            process.kill()
            process.wait()
    assert alive, (tmp_path / "err.txt").read_text()
    assert process.returncode == -signal.SIGKILL
    learner_turns = [turn for turn in seen if turn[3] == "learner"]
    assert learner_turns and wer_text(learner_turns[0][4]) == "12", seen

    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    after = read_turns(db, "Kim")
    assert after[: len(seen)] == seen  # every turn stored before the kill, unchanged
    assert after[-1][3] == "learner"  # the reply was still being spoken: the turn in flight is all that is lost
    assert [turn[2] for turn in after] == list(range(len(after)))
    with Store.open(db) as store:
        [killed] = store.export_learner("Kim")["sessions"]
        assert killed["ended_at"] is None  # it never got to end

    # Kim comes back: the next session runs on the same file and is stored after the first.
    again = talk(db, recording(say, ["Twelve."], tmp_path / "again.wav"), "--fast", "--json", name="Kim")
    assert again.returncode == 0, again.stderr
    [turn] = [json.loads(line) for line in again.stdout.splitlines()]
    assert wer_text(turn["learner"]) == "12" and turn["tutor"]
    with Store.open(db) as store:
        sessions = store.export_learner("Kim")["sessions"]
    assert [s["id"] for s in sessions] == [killed["id"], killed["id"] + 1]
    assert sessions[0]["turns"] == killed["turns"]
    assert sessions[1]["ended_at"] is not None
    assert [t["role"] for t in without_opening(sessions[1]["turns"])] == ["learner", "tutor"]
    assert read_turns(db, "Kim")[: len(after)] == after
