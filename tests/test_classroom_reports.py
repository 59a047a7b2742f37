"""Classes, ratings, surveys, progress reports, analytics and the training export, on a real SQLite file."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from voice_tutor.classroom import analytics
from voice_tutor.classroom.reports import build_report
from voice_tutor.classroom.training_export import export_training
from voice_tutor.learning.lessons import load_lesson
from voice_tutor.learning.mastery import DEFAULT_PARAMS, update
from voice_tutor.store import SURVEY_QUESTIONS, ClassNotFound, NotFound, Store

ROOT = Path(__file__).resolve().parents[1]
LESSONS = {"arithmetic": load_lesson(ROOT / "assets" / "lessons" / "arithmetic.toml")}
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
QUESTIONS = [("add-7-5", "addition", "12", "11"), ("sub-15-6", "subtraction", "9", "10"),
             ("add-8-9", "addition", "17", "18"), ("word-sum", "addition", "sum", "difference")]
# Per learner: how many questions each session reaches, and which answers are right.
PLAN = {
    "Ada Lovelace": [(4, [True, True, True, True]), (4, [True, True, True, True])],
    "Ben Okafor": [(2, [False, True]), (4, [True, False, True, True])],
    "Chloé Martin": [(1, [False]), (3, [False, True, False])],
}


def seed(store: Store) -> dict[str, list[int]]:
    """Three learners in class 5B, two sessions each, written through the Store API at fixed times."""
    store.create_class("5B", "Ms Rivera", at=T0)
    sessions: dict[str, list[int]] = {}
    for n, (name, plan) in enumerate(PLAN.items()):
        store.ensure_learner(name, at=T0)
        p = {"arithmetic/addition": DEFAULT_PARAMS.prior, "arithmetic/subtraction": DEFAULT_PARAMS.prior}
        for day, (reached, results) in enumerate(plan):
            start = T0 + timedelta(days=7 * day, minutes=15 * n)
            clock = start
            session = store.start_session(name, "arithmetic", at=start)
            sessions.setdefault(name, []).append(session)
            store.add_turn(session, "tutor", f"Hello {name.split()[0]}! What is seven plus five?",
                           ended_at=clock + timedelta(seconds=5))
            for i in range(reached):
                qid, skill, right, wrong = QUESTIONS[i]
                correct = results[i]
                clock += timedelta(minutes=2)
                store.add_turn(session, "learner", right if correct else wrong, ended_at=clock)
                key = f"arithmetic/{skill}"
                p[key] = update(p[key], correct, DEFAULT_PARAMS)
                store.record_answer(name, key, qid, correct, p[key], at=clock + timedelta(seconds=1))
                if name == "Ben Okafor" and i == 0:
                    store.add_turn(session, "learner", "Why do we carry the one?", ended_at=clock + timedelta(seconds=20))
                store.add_turn(session, "tutor", "Yes, well done!" if correct else "Not quite, try again.",
                               ended_at=clock + timedelta(seconds=30 + 3 * n),
                               latency_ms={"final_transcript": 300.0 + 10 * i, "first_audio": 420.0 + 15 * n})
            if reached == len(QUESTIONS):
                card_due = NOW - timedelta(days=1) if name == "Ada Lovelace" else NOW + timedelta(days=3)
                store.set_review(name, "arithmetic/addition", '{"card": 1}', card_due)
            store.end_session(session, at=clock + timedelta(minutes=1))
    store.add_to_class("5B", list(PLAN))
    return sessions


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "tutor.db") as opened:
        yield opened


def test_classes_ratings_by_position_and_surveys(store):
    sessions = seed(store)
    room = store.get_class("5B")
    assert room.teacher == "Ms Rivera" and room.members == tuple(sorted(PLAN))
    store.create_class("6C")
    assert [r.name for r in store.list_classes()] == ["5B", "6C"]
    store.remove_from_class("5B", ["Ben Okafor"])
    assert "Ben Okafor" not in store.get_class("5B").members
    with pytest.raises(ClassNotFound):
        store.add_to_class("7A", ["Ada Lovelace"])

    ada = sessions["Ada Lovelace"][0]
    rating = store.rate_turn(ada, 2, 1, "clear")
    turn = store.session_turns(ada)[2]
    assert turn.role == "tutor"
    assert store.read("SELECT turn_id, rating FROM ratings WHERE id = ?", (rating,))[0][:] == (turn.id, 1)
    with pytest.raises(NotFound):
        store.rate_turn(ada, 99, 1)
    with pytest.raises(ValueError):
        store.rate_turn(ada, 2, 5)

    survey = store.add_survey(ada, {"helpful": 5, "clear": 4, "pace": 3}, "More pictures please")
    (answers, comment), = store.read("SELECT answers, comment FROM surveys WHERE id = ?", (survey,))
    assert json.loads(answers) == {"helpful": 5, "clear": 4, "pace": 3} and comment == "More pictures please"
    assert set(SURVEY_QUESTIONS) >= {"helpful", "clear", "pace", "enjoyed"}
    for bad in ({"helpful": 6}, {"helpful": True}, {"mood": 3}):
        with pytest.raises(ValueError):
            store.add_survey(ada, bad)
    with pytest.raises(NotFound):
        store.add_survey(12345, {"helpful": 3})
    assert store.export_learner("Ada Lovelace")["sessions"][0]["turns"][2]["ratings"][0]["rating"] == 1


def test_analytics_from_the_seeded_store(store):
    seed(store)
    learners = list(PLAN)
    history = analytics.mastery_history(store, learners)
    assert len(history) == sum(reached for plan in PLAN.values() for reached, _ in plan)
    # The replay matches what the sessions stored, answer for answer.
    last = {(r["learner"], r["skill"]): r["p_known"] for r in history}
    for row in analytics.current_mastery(store, learners):
        assert last[(row["learner"], row["skill"])] == pytest.approx(row["p_known"], abs=1e-4)
    gaps = analytics.knowledge_gaps(store, learners)
    assert gaps[0]["learner"] == "Chloé Martin" and [g["p_known"] for g in gaps] == sorted(g["p_known"] for g in gaps)
    assert ("Ada Lovelace", "arithmetic/addition") not in {(g["learner"], g["skill"]) for g in gaps}

    minutes = {r["learner"]: r["minutes"] for r in analytics.time_on_task_totals(analytics.time_on_task(store, learners))}
    assert minutes["Ada Lovelace"] == pytest.approx(2 * (4 * 2 + 1), abs=0.01)  # 4 answers 2 min apart + 1 min
    assert minutes["Chloé Martin"] == pytest.approx((1 * 2 + 1) + (3 * 2 + 1), abs=0.01)

    due = analytics.reviews_due(store, learners, NOW)
    assert [(r["learner"], r["skill"]) for r in due] == [("Ada Lovelace", "arithmetic/addition")]

    accuracy = {r["question"]: r for r in analytics.question_accuracy(store, learners)}
    assert accuracy["add-7-5"]["attempts"] == 6 and accuracy["add-7-5"]["correct"] == 3
    assert accuracy["word-sum"]["accuracy"] == 1.0

    asked = analytics.common_questions(store, learners)
    assert asked[0] == {"lesson": "arithmetic", "question": "why do we carry the one", "count": 2}
    wrong = analytics.misconceptions(store, learners, LESSONS)
    assert {(m["question"], m["answer"]) for m in wrong} >= {("add-7-5", "11"), ("sub-15-6", "10")}
    assert all(m["misconception"] for m in wrong)

    drops = {(r["last_question"]): r["sessions"] for r in analytics.drop_off(store, learners, LESSONS)}
    # Ben's first session stopped after sub-15-6, Chloé's after add-7-5 and add-8-9; Ada finished both.
    assert drops == {"sub-15-6": 1, "add-7-5": 1, "add-8-9": 1}

    latency = analytics.turn_latency(store, learners)
    assert {r["stage"] for r in latency} == {"final_transcript", "first_audio"}
    assert len([r for r in latency if r["stage"] == "first_audio"]) == len(history)


def _is_real_png(path: Path) -> None:
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert float(np.ptp(pixels[..., :3])) > 0.5, f"{path.name} is blank"


def _pdf_pages(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    return data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") + data.count(b"/Type /Page>")


def test_class_report_writes_csv_plots_html_and_pdf(store, tmp_path):
    seed(store)
    out = tmp_path / "report"
    report = build_report(store, "5B", out, lessons=LESSONS, now=NOW)
    assert report.title == "Class 5B (teacher: Ms Rivera)" and report.learners == sorted(PLAN)
    names = {p.name for p in report.files}
    assert {"report.html", "report.pdf", "mastery.csv", "mastery_history.csv", "knowledge_gaps.csv",
            "time_on_task.csv", "reviews_due.csv", "question_accuracy.csv", "latency.csv", "drop_off.csv",
            "common_questions.csv", "misconceptions.csv", "class_mastery.png", "latency.png"} <= names
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == len(PLAN) + 4  # one mastery plot per learner, class map, time, accuracy, latency
    for png in pngs:
        _is_real_png(png)
    assert _pdf_pages(out / "report.pdf") == 1 + len(pngs)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(pngs)
    for name in PLAN:
        assert name in page
        for table in ("mastery", "time_on_task", "mastery_history"):
            with (out / f"{table}.csv").open(encoding="utf-8") as handle:
                assert name in {row["learner"] for row in csv.DictReader(handle)}
    with (out / "time_on_task.csv").open(encoding="utf-8") as handle:
        assert {r["learner"]: float(r["minutes"]) for r in csv.DictReader(handle)}["Ada Lovelace"] == 18.0


def test_learner_report_from_the_command_line(store, tmp_path):
    seed(store)
    store.close()
    out = tmp_path / "ben"
    result = subprocess.run(
        [sys.executable, "-m", "voice_tutor.cli", "report", "Ben Okafor", "--db", str(tmp_path / "tutor.db"),
         "--out", str(out), "--format", "csv,pdf"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "report.pdf").is_file() and not (out / "report.html").exists()
    assert _pdf_pages(out / "report.pdf") >= 3
    with (out / "mastery.csv").open(encoding="utf-8") as handle:
        assert {row["learner"] for row in csv.DictReader(handle)} == {"Ben Okafor"}
    bad = subprocess.run(
        [sys.executable, "-m", "voice_tutor.cli", "report", "Nobody", "--db", str(tmp_path / "tutor.db"),
         "--out", str(out)], capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "voice-tutor: error: no learner named 'Nobody'"


def test_class_commands(tmp_path):
    db = str(tmp_path / "tutor.db")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "voice_tutor.cli", *args, "--db", db],
                              capture_output=True, text=True, timeout=60)

    assert cli("class", "create", "5B", "--teacher", "Ms Rivera").returncode == 0
    assert cli("class", "add", "5B", "Ada", "Ben").returncode == 0
    listed = cli("class", "list", "--json")
    assert json.loads(listed.stdout) == [{"name": "5B", "teacher": "Ms Rivera", "learners": ["Ada", "Ben"]}]
    missing = cli("class", "add", "7A", "Cy")
    assert missing.returncode == 2 and "no class named '7A'" in missing.stderr
    with Store.open(db) as store:
        assert "Cy" not in {learner.name for learner in store.list_learners()}


def test_training_export_is_openai_chat_jsonl_without_personal_data(store, tmp_path):
    sessions = seed(store)
    ada, ben = sessions["Ada Lovelace"][0], sessions["Ben Okafor"][1]
    store.rate_turn(ada, 2, 1)  # "Yes, well done!"
    store.rate_turn(ben, 2, -1)
    store.add_turn(ben, "learner", "my email is ben.okafor@example.org and I'm Ben, call 555-123-4567")
    store.add_turn(ben, "tutor", "Thanks Ben Okafor! Let's keep your email private.")
    store.rate_turn(ben, len(store.session_turns(ben)) - 1, 1)

    out = tmp_path / "train.jsonl"
    assert export_training(store, out, min_rating=1) == 2
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for conversation in lines:
        messages = conversation["messages"]
        assert messages[0]["role"] == "system" and messages[-1]["role"] == "assistant"
        assert messages[-1]["weight"] == 1
        assert {m["role"] for m in messages} <= {"system", "user", "assistant"}
        assert all(isinstance(m["content"], str) and m["content"] for m in messages)
        for a, b in zip(messages[1:], messages[2:]):
            assert a["role"] != b["role"]
    text = out.read_text(encoding="utf-8")
    for secret in ("Ada", "Lovelace", "Ben", "Okafor", "ben.okafor@example.org", "555-123-4567"):
        assert secret not in text
    assert "[name]" in text and "[email]" in text
    # Ada's first conversation ends with the rated reply; Ben's thumbs-down turn is context only.
    first = lines[0]["messages"]
    assert first[-1]["content"] == "Yes, well done!" and len(first) == 4
    ben_weights = [m["weight"] for m in lines[1]["messages"] if m["role"] == "assistant"]
    assert ben_weights[-1] == 1 and 0 in ben_weights
    # min-rating 0 trains on every unrated or liked turn: every session qualifies.
    assert export_training(store, tmp_path / "all.jsonl", min_rating=0) == sum(map(len, sessions.values()))
    result = subprocess.run(
        [sys.executable, "-m", "voice_tutor.cli", "export", "training", "--min-rating", "1",
         "--db", str(store.path)], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and result.stdout == text
