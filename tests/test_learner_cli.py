"""`voice-tutor learner ...`, `voice-tutor lessons` and `voice-tutor transcribe --lesson`, as real subprocesses.

Every command runs against a real SQLite file in a temporary directory (and
a temporary ``XDG_DATA_HOME``, so the default database is never the user's);
the learner history `learner show` reports is written through the real Store
API.  Only the `transcribe` test loads a speech model.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from audio_fixtures import write_wav
from voice_tutor.config import ASSETS_DIR
from voice_tutor.learning.lessons import load_lesson
from voice_tutor.store import Preferences, Store

REPO_ROOT = Path(__file__).resolve().parent.parent
LESSONS_DIR = ASSETS_DIR / "lessons"
NOW = datetime.now(UTC)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("voice-tutor")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "voice_tutor.cli"]


@pytest.fixture
def data_home(tmp_path) -> Path:
    return tmp_path / "xdg-data"


@pytest.fixture
def vt(data_home):
    """``vt(*args)``: run ``voice-tutor`` with no online LLM and a private XDG_DATA_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_TUTOR_", "OPENAI_"))}
    env["XDG_DATA_HOME"] = str(data_home)
    env["PYTHONUNBUFFERED"] = "1"

    def run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*_command(), *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=REPO_ROOT)

    return run


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "learners" / "tutor.db"


def one_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command failed with exactly one `voice-tutor: error:` line (besides progress lines)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("·")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("voice-tutor: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines
    return lines[0]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


# --- learner set / list ---------------------------------------------------------------------


def test_set_creates_a_learner_then_changes_only_what_is_given(vt, db):
    created = ok(vt("learner", "set", "Ada", "--db", db, "--level", "intermediate", "--pace", "slow",
                    "--voice-speed", "0.8", "--goal", "fractions", "--goal", "times tables"))
    assert created.stdout.startswith("created Ada:")
    updated = ok(vt("learner", "set", "Ada", "--db", db, "--language", "es"))
    assert updated.stdout.startswith("updated Ada:")

    with Store.open(db) as store:
        ada = store.get_learner("Ada")
    assert ada.level == "intermediate"
    assert ada.preferences == Preferences(pace="slow", voice_speed=0.8, language="es")
    assert ada.goals == ("fractions", "times tables")

    ok(vt("learner", "set", "Ada", "--db", db, "--goal", "decimals", "--pace", "normal"))
    with Store.open(db) as store:
        ada = store.get_learner("Ada")
    assert ada.goals == ("decimals",) and ada.preferences == Preferences(pace="normal", voice_speed=0.8,
                                                                         language="es")


@pytest.mark.parametrize(("option", "value", "problem"), [
    ("--voice-speed", "5", "voice_speed must be in [0.5, 2.0]"),
    ("--voice-speed", "nan", "voice_speed must be in [0.5, 2.0]"),
    ("--language", "english", "two-letter ISO 639-1 code"),
    ("--level", " ", "--level must not be empty"),
])
def test_set_refuses_bad_values_and_changes_nothing(vt, db, option, value, problem):
    ok(vt("learner", "set", "Ada", "--db", db, "--pace", "slow"))
    before = db.read_bytes()
    one_error(vt("learner", "set", "Ada", "--db", db, option, value), problem)
    one_error(vt("learner", "set", "Bob", "--db", db, option, value), problem)
    with Store.open(db) as store:
        assert [learner.name for learner in store.list_learners()] == ["Ada"]
        assert store.get_learner("Ada").preferences.pace == "slow"
    assert db.read_bytes() == before


def test_set_refuses_an_empty_name(vt, db):
    one_error(vt("learner", "set", "  ", "--db", db), "non-empty name")


def test_list_shows_level_sessions_and_last_seen(vt, db):
    with Store.open(db) as store:
        store.ensure_learner("Zoe", level="advanced", at=NOW - timedelta(days=9))
        store.ensure_learner("Ada", at=NOW - timedelta(days=9))
        for days_ago in (5, 2):
            session = store.start_session("Ada", "arithmetic", at=NOW - timedelta(days=days_ago))
            store.add_turn(session, "learner", "twelve", ended_at=NOW - timedelta(days=days_ago, minutes=-1))
        # A session cut short (no end) still counts, and its last turn is when Ada was last seen.
        cut = store.start_session("Ada", "fractions", at=NOW - timedelta(hours=3))
        store.add_turn(cut, "learner", "a half", ended_at=NOW - timedelta(hours=2))

    rows = json.loads(ok(vt("learner", "list", "--db", db, "--json")).stdout)
    assert [(r["name"], r["level"], r["sessions"]) for r in rows] == [("Ada", "beginner", 3), ("Zoe", "advanced", 0)]
    assert datetime.fromisoformat(rows[0]["last_seen"]) == NOW - timedelta(hours=2)
    assert rows[1]["last_seen"] is None

    table = ok(vt("learner", "list", "--db", db)).stdout.splitlines()
    assert table[0].split() == ["NAME", "LEVEL", "SESSIONS", "LAST", "SEEN"]
    assert table[1].split()[:3] == ["Ada", "beginner", "3"]
    assert (NOW - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M UTC") in table[1]
    assert table[2].split() == ["Zoe", "advanced", "0", "never"]


def test_list_without_a_database_creates_none(vt, db, data_home):
    result = ok(vt("learner", "list", "--db", db))
    assert result.stdout == "" and "no learners yet" in result.stderr
    assert json.loads(ok(vt("learner", "list", "--db", db, "--json")).stdout) == []
    ok(vt("learner", "list"))
    assert not db.exists() and not (data_home / "voice-tutor" / "tutor.db").exists()


def test_without_db_the_default_store_path_is_used(vt, data_home):
    ok(vt("learner", "set", "Ada"))
    default = data_home / "voice-tutor" / "tutor.db"
    assert default.is_file()
    assert [r["name"] for r in json.loads(ok(vt("learner", "list", "--json")).stdout)] == ["Ada"]


def test_learner_activity_counts_sessions_and_turns(db):
    """The one store method the CLI added: sessions per learner and their latest activity."""
    with Store.open(db) as store:
        store.ensure_learner("Ada")
        store.ensure_learner("Bob")
        first = store.start_session("Ada", "arithmetic", at=NOW - timedelta(days=1))
        store.end_session(first, at=NOW - timedelta(days=1, minutes=-10))
        second = store.start_session("Ada", "arithmetic", at=NOW - timedelta(hours=1))
        store.add_turn(second, "tutor", "hello", ended_at=NOW - timedelta(minutes=30))
        activity = store.learner_activity()
    assert activity == {"Ada": (2, NOW - timedelta(minutes=30)), "Bob": (0, None)}


# --- learner show / export / delete ----------------------------------------------------------


def populate(db: Path) -> None:
    """Ada's history, written as the tutor writes it: keys are lesson/skill, cards are fsrs JSON."""
    from fsrs import Card, Rating, Scheduler

    with Store.open(db) as store:
        store.ensure_learner("Ada", level="intermediate", goals=["fractions"], at=NOW - timedelta(days=10),
                             preferences=Preferences(pace="slow", voice_speed=1.25, language="en"))
        for days_ago in (10, 4, 1):
            start = NOW - timedelta(days=days_ago)
            session = store.start_session("Ada", "arithmetic", at=start)
            store.add_turn(session, "learner", "twelve", ended_at=start + timedelta(seconds=5))
            store.add_turn(session, "tutor", "That's right!", ended_at=start + timedelta(seconds=6))
            store.end_session(session, at=start + timedelta(minutes=3))
        for question, correct in [("add-7-5", True), ("add-8-9", True), ("word-sum", True)]:
            store.record_assessment("Ada", "arithmetic/addition", question, correct, at=NOW - timedelta(days=4))
        store.record_assessment("Ada", "arithmetic/subtraction", "sub-15-6", False, at=NOW - timedelta(days=4))
        store.set_mastery("Ada", "arithmetic/addition", 0.977)
        store.set_mastery("Ada", "arithmetic/subtraction", 0.176)
        store.set_mastery("Ada", "fractions/comparing-fractions", 0.96)
        store.set_mastery("Ada", "fractions/equivalent-fractions", 0.31)
        store.set_mastery("Ada", "retired-lesson/old-skill", 0.5)
        card, _ = Scheduler(enable_fuzzing=False).review_card(Card(), Rating.Good, NOW - timedelta(days=4))
        store.set_review("Ada", "arithmetic/addition", card.to_json(), NOW - timedelta(days=1))
        later, _ = Scheduler(enable_fuzzing=False).review_card(Card(), Rating.Easy, NOW)
        store.set_review("Ada", "fractions/comparing-fractions", later.to_json(), NOW + timedelta(days=8))


def test_show_reports_profile_mastery_reviews_gaps_and_sessions(vt, db):
    populate(db)
    summary = json.loads(ok(vt("learner", "show", "Ada", "--db", db, "--json")).stdout)
    assert summary["learner"]["name"] == "Ada" and summary["learner"]["goals"] == ["fractions"]
    assert summary["sessions_count"] == 3

    lessons = {entry["id"]: entry for entry in summary["lessons"]}
    assert set(lessons) == {"arithmetic", "fractions", "retired-lesson"}
    arithmetic = lessons["arithmetic"]
    assert arithmetic["title"] == "Adding and subtracting within twenty"
    assert [(s["id"], s["name"], s["p_known"], s["mastered"], s["answers"], s["correct"]) for s in arithmetic["skills"]] == [
        ("addition", "Adding within twenty", 0.977, True, 3, 3),
        ("subtraction", "Subtracting within twenty", 0.176, False, 1, 0),
    ]
    assert [g["name"] for g in arithmetic["gaps"]] == ["Subtracting within twenty"]
    # Fractions: skills in lesson order; the weak one is the gap, and the lesson's resources for it are offered.
    fractions = load_lesson(LESSONS_DIR / "fractions.toml")
    assert [s["id"] for s in lessons["fractions"]["skills"]] == ["equivalent-fractions", "comparing-fractions"]
    assert [g["id"] for g in lessons["fractions"]["gaps"]] == ["equivalent-fractions"]
    expected_resources = [r.title for r in fractions.resources_for("equivalent-fractions")][:3]
    assert [r["title"] for r in lessons["fractions"]["resources"]] == expected_resources
    # A lesson that is no longer installed: raw ids, and unmastered skills are still gaps.
    retired = lessons["retired-lesson"]
    assert retired["title"] is None and retired["skills"][0]["name"] is None
    assert [g["id"] for g in retired["gaps"]] == ["old-skill"]

    assert [(r["lesson"], r["skill"], r["name"], r["due_now"]) for r in summary["reviews"]] == [
        ("arithmetic", "addition", "Adding within twenty", True),
        ("fractions", "comparing-fractions", fractions.skill("comparing-fractions").name, False),
    ]
    assert [s["started_at"] for s in summary["recent_sessions"]] == sorted(
        (s["started_at"] for s in summary["recent_sessions"]), reverse=True)
    assert all(s["turns"] == 2 and s["ended_at"] for s in summary["recent_sessions"])

    text = ok(vt("learner", "show", "Ada", "--db", db)).stdout
    assert "pace slow, voice speed 1.25, language en" in text
    assert "Adding within twenty (addition)" in text and "mastered" in text
    review_line = next(line for line in text.splitlines() if "Adding within twenty" in line and "due" in line)
    assert (NOW - timedelta(days=1)).strftime("%Y-%m-%d %H:%M UTC") in review_line and "due now" in review_line
    gaps = text.split("Knowledge gaps", 1)[1].split("Recent sessions", 1)[0]
    assert "Subtracting within twenty (subtraction)" in gaps and "Adding within twenty" not in gaps
    assert "retired-lesson (lesson not found)" in text
    assert f"try: {expected_resources[0]}" in text


def test_export_prints_the_store_export_or_writes_a_file(vt, db, tmp_path):
    populate(db)
    printed = json.loads(ok(vt("learner", "export", "Ada", "--db", db)).stdout)
    target = tmp_path / "ada.json"
    ok(vt("learner", "export", "Ada", "--db", db, "-o", target))
    written = json.loads(target.read_text(encoding="utf-8"))
    with Store.open(db) as store:
        direct = store.export_learner("Ada")
    for data in (printed, written, direct):
        del data["exported_at"]
    assert printed == written == direct
    assert len(printed["sessions"]) == 3 and len(printed["assessments"]) == 4

    one_error(vt("learner", "export", "Ada", "--db", db, "-o", tmp_path / "missing-dir" / "ada.json"),
              "missing-dir", "No such file or directory")


def test_delete_needs_yes_then_forgets_everything(vt, db):
    populate(db)
    ok(vt("learner", "set", "Bob", "--db", db))
    one_error(vt("learner", "delete", "Ada", "--db", db), "--yes")
    with Store.open(db) as store:
        assert store.get_learner("Ada").name == "Ada"

    result = ok(vt("learner", "delete", "Ada", "--db", db, "--yes"))
    assert "deleted learner 'Ada' (3 sessions)" in result.stderr
    assert [r["name"] for r in json.loads(ok(vt("learner", "list", "--db", db, "--json")).stdout)] == ["Bob"]
    with sqlite3.connect(db) as raw:
        for table in ("sessions", "turns", "assessments", "mastery", "reviews"):
            assert raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    one_error(vt("learner", "show", "Ada", "--db", db), "no learner named 'Ada'")


@pytest.mark.parametrize("command", [["show"], ["export"], ["delete", "--yes"]])
def test_an_unknown_learner_is_one_clear_error(vt, db, command):
    ok(vt("learner", "set", "Bob", "--db", db))
    action, *flags = command
    one_error(vt("learner", action, "Nobody", *flags, "--db", db), "no learner named 'Nobody'")


@pytest.mark.parametrize("command", [["show"], ["export"], ["delete", "--yes"]])
def test_a_missing_database_is_an_error_and_is_not_created(vt, db, command):
    action, *flags = command
    one_error(vt("learner", action, "Ada", *flags, "--db", db), "no learner database at", str(db))
    assert not db.exists() and not db.parent.exists()


@pytest.mark.parametrize("command", [["list"], ["show", "Ada"], ["set", "Ada"]])
def test_a_file_that_is_not_a_database_is_an_error(vt, tmp_path, command):
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are my notes, not a database\n" * 200)
    one_error(vt("learner", *command, "--db", bogus), str(bogus), "not a database")
    assert bogus.read_text().startswith("these are my notes")


def test_a_database_from_a_newer_program_is_refused(vt, db):
    ok(vt("learner", "set", "Ada", "--db", db))
    with sqlite3.connect(db) as raw:
        raw.execute("PRAGMA user_version = 99")
    one_error(vt("learner", "show", "Ada", "--db", db), "newer than this program")


# --- lessons ---------------------------------------------------------------------------------


def test_lessons_lists_and_validates_the_bundled_lessons(vt):
    result = ok(vt("lessons"))
    rows = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    files = sorted(LESSONS_DIR.glob("*.toml"))
    assert rows == [load_lesson(path).id for path in files] and len(rows) >= 5

    listed = json.loads(ok(vt("lessons", "--json")).stdout)
    for row, path in zip(listed, files, strict=True):
        lesson = load_lesson(path)
        assert row == {
            "file": str(path), "valid": True, "error": None, "id": lesson.id, "title": lesson.title,
            "subject": lesson.subject, "level": lesson.level, "skills": len(lesson.skills),
            "questions": len(lesson.questions), "answer_language": lesson.answer_language,
        }
    arithmetic = next(line for line in result.stdout.splitlines() if line.startswith("arithmetic "))
    assert arithmetic.split()[-2:] == ["2", "4"] and "Adding and subtracting within twenty" in arithmetic


@pytest.fixture
def lesson_dir(tmp_path) -> Path:
    """One good lesson and four broken ones, each broken in one place."""
    folder = tmp_path / "lessons"
    folder.mkdir()
    good = (LESSONS_DIR / "arithmetic.toml").read_text(encoding="utf-8")

    def variant(name: str, old: str, new: str) -> None:
        assert good.count(old) == 1, old
        text = good.replace('id = "arithmetic"', f'id = "{name}"', 1).replace(old, new, 1)
        (folder / f"{name}.toml").write_text(text, encoding="utf-8")

    (folder / "arithmetic.toml").write_text(good, encoding="utf-8")
    (folder / "renamed.toml").write_text(good, encoding="utf-8")  # valid, but its id is 'arithmetic'
    variant("bad-answer", 'answers = ["12"]', 'answers = ["banana"]')
    variant("bad-skill", 'id = "sub-15-6"\nskill = "subtraction"', 'id = "sub-15-6"\nskill = "division"')
    (folder / "not-toml.toml").write_text('id = "not-toml"\ntitle = [\n', encoding="utf-8")
    (folder / "README.md").write_text("not a lesson\n", encoding="utf-8")
    return folder


def test_lessons_reports_each_broken_lesson_with_file_and_field(vt, lesson_dir):
    result = vt("lessons", "--dir", lesson_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["ID", "arithmetic"]
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("voice-tutor: error: "))
    assert len(errors) == 4, result.stderr
    bad_answer, bad_skill, not_toml, renamed = errors
    assert f"{lesson_dir / 'bad-answer.toml'}: questions.0.answers.0" in bad_answer and "'banana'" in bad_answer
    assert f"{lesson_dir / 'bad-skill.toml'}: questions.1.skill: unknown skill 'division'" in bad_skill
    assert f"{lesson_dir / 'not-toml.toml'}: not valid TOML" in not_toml
    assert f"{lesson_dir / 'renamed.toml'}: id: 'arithmetic' differs from the file name 'renamed'" in renamed
    assert "4 of 5 lessons invalid" in result.stderr

    listed = json.loads(vt("lessons", "--dir", lesson_dir, "--json").stdout)
    assert [(Path(r["file"]).name, r["valid"]) for r in listed] == [
        ("arithmetic.toml", True), ("bad-answer.toml", False), ("bad-skill.toml", False),
        ("not-toml.toml", False), ("renamed.toml", False),
    ]


def test_lessons_validates_files_given_by_path(vt, lesson_dir):
    ok(vt("lessons", lesson_dir / "arithmetic.toml", LESSONS_DIR / "fractions.toml"))
    # Outside a lessons directory a file may have any name, but two lessons may not share an id.
    ok(vt("lessons", lesson_dir / "renamed.toml"))
    twice = vt("lessons", lesson_dir / "arithmetic.toml", lesson_dir / "renamed.toml")
    assert twice.returncode == 1 and "Traceback" not in twice.stderr
    assert twice.stderr.splitlines() == [
        f"voice-tutor: error: {lesson_dir / 'renamed.toml'}: id: 'arithmetic' is also the id of "
        f"{lesson_dir / 'arithmetic.toml'}",
        "1 of 2 lessons invalid",
    ]
    result = vt("lessons", lesson_dir / "arithmetic.toml", lesson_dir / "bad-answer.toml", lesson_dir / "nope.toml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "bad-answer.toml: questions.0.answers.0" in result.stderr
    assert f"{lesson_dir / 'nope.toml'}: cannot read" in result.stderr


def test_lessons_in_a_missing_or_empty_directory_is_an_error(vt, tmp_path):
    one_error(vt("lessons", "--dir", tmp_path / "nowhere"), "no such directory")
    one_error(vt("lessons", "--dir", tmp_path), "no lesson files")


# --- transcribe --lesson ---------------------------------------------------------------------


@pytest.mark.slow
def test_transcribe_with_a_lesson_hears_its_vocabulary(vt, say, tmp_path):
    """Whisper base hears a plain 'Chlorophyll.' as 'Porofel'; with the photosynthesis lesson it hears the term."""
    audio = write_wav(tmp_path / "chlorophyll.wav", say("Chlorophyll."))

    plain = json.loads(ok(vt("transcribe", "--json", audio)).stdout)
    assert "chlorophyll" not in plain["text"].lower() and "lesson" not in plain

    biased = json.loads(ok(vt("transcribe", "--json", "--lesson", "photosynthesis", audio)).stdout)
    assert biased["lesson"] == "photosynthesis" and biased["language"] == "en"
    assert "chlorophyll" in biased["text"].lower()

    # The lesson's answer language is what is listened for; its file works as well as its id.
    spanish = json.loads(ok(vt("transcribe", "--json", "--lesson", LESSONS_DIR / "spanish-cafe.toml", audio)).stdout)
    assert spanish["lesson"] == "spanish-cafe" and spanish["language"] == "es"


def test_transcribe_with_an_unknown_lesson_fails_before_loading_a_model(vt, tmp_path):
    result = vt("transcribe", "--lesson", "astrology", tmp_path / "any.wav")
    one_error(result, "no lesson 'astrology'", "known: arithmetic")
    assert "loading speech recognizer" not in result.stderr
