"""The SQLite store on real files: migrations, durability, crashes, deletion, export."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from voice_tutor.store import (
    LearnerNotFound,
    NotFound,
    Preferences,
    Store,
    StoreError,
    default_path,
)
from voice_tutor.store import sqlite as store_sqlite
from voice_tutor.store.schema import MIGRATIONS

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
TABLES = {"learners", "sessions", "turns", "assessments", "mastery", "reviews", "ratings",
          "classes", "class_members", "surveys", "pseudonyms", "xapi_outbox"}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tutor.db"


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=True
    )


def populate(store: Store, name: str) -> None:
    """Give ``name`` a row in every table, with the name inside every free-text field."""
    store.ensure_learner(
        name,
        level="intermediate",
        preferences=Preferences(pace="slow", voice_speed=0.8, language="fr"),
        goals=[f"{name} wants fractions"],
        at=T0,
    )
    for day in range(2):
        start = T0 + timedelta(days=day)
        session = store.start_session(name, "arithmetic", at=start)
        question = store.add_turn(
            session, "tutor", f"{name}, what is 3 + 4?", started_at=start, ended_at=start
        )
        answer = store.add_turn(
            session,
            "learner",
            f"{name} says seven",
            started_at=start + timedelta(seconds=2),
            ended_at=start + timedelta(seconds=3),
            latency_ms={"stt": 120.0},
        )
        store.add_turn(
            session,
            "tutor",
            f"Right, {name}! Seven is correct, and now",
            heard=f"Right, {name}!",
            cut=True,
            ended_at=start + timedelta(seconds=4),
            latency_ms={"first_audio": 420.5},
        )
        store.add_rating(answer.id, 1, f"{name} liked it", at=start)
        store.add_rating(question.id, -1, at=start)
        store.record_assessment(name, "addition", f"{name}-q{day}", day == 1, at=start)
        store.end_session(session, at=start + timedelta(minutes=5))
    store.set_mastery(name, "addition", 0.42, at=T0)
    store.set_review(name, "addition", json.dumps({"owner": name}), T0 + timedelta(days=3))


def table_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in sorted(TABLES)}


# Schema and migrations


def test_migrates_an_empty_file_and_reopens_idempotently(db_path):
    db_path.parent.mkdir()
    db_path.touch()
    with Store.open(db_path) as store:
        store.ensure_learner("ada")
    for _ in range(2):
        with Store.open(db_path) as store:
            assert [learner.name for learner in store.list_learners()] == ["ada"]
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert tables == TABLES


def test_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "tutor.db"
    Store.open(path).close()
    assert path.is_file()


def test_connection_enforces_foreign_keys(db_path):
    with Store.open(db_path) as store:
        with pytest.raises(sqlite3.IntegrityError):
            with store._transaction(write=True) as db:
                db.execute(
                    "INSERT INTO sessions (learner_id, lesson_id, started_at) VALUES (99, 'x', 'y')"
                )


def test_refuses_a_database_from_a_newer_version(db_path):
    Store.open(db_path).close()
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer"):
        Store.open(db_path)


def test_a_failing_migration_leaves_the_file_as_it_was(db_path, monkeypatch):
    Store.open(db_path).close()
    broken = "CREATE TABLE half_done (a INTEGER); CREATE TABLE oops (;"
    monkeypatch.setattr(store_sqlite, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(sqlite3.OperationalError):
        Store.open(db_path)
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert (
            db.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
        )


def test_default_path_follows_xdg(monkeypatch, tmp_path):
    assert default_path({"XDG_DATA_HOME": "/data"}) == Path("/data/voice-tutor/tutor.db")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path({}) == tmp_path / ".local/share/voice-tutor/tutor.db"


# Learners


def test_ensure_learner_creates_once_and_update_changes_fields(db_path):
    with Store.open(db_path) as store:
        created = store.ensure_learner("ada", level="beginner", goals=["times tables"], at=T0)
        again = store.ensure_learner("ada", level="expert")
        assert again == created
        assert created.created_at == T0
        updated = store.update_learner(
            "ada", preferences=Preferences(pace="fast", voice_speed=1.25)
        )
        assert updated.preferences == Preferences(pace="fast", voice_speed=1.25, language="en")
        assert updated.goals == ("times tables",) and updated.level == "beginner"
    with Store.open(db_path) as store:
        assert store.get_learner("ada") == updated


@pytest.mark.parametrize(
    "bad", [{"pace": "warp"}, {"voice_speed": 5.0}, {"voice_speed": "1"}, {"language": ""}]
)
def test_preferences_are_validated(bad):
    with pytest.raises(ValueError):
        Preferences(**bad)


def test_preferences_reject_unknown_keys():
    assert Preferences.from_dict({"pace": "slow"}) == Preferences(pace="slow")
    with pytest.raises(ValueError, match="volume"):
        Preferences.from_dict({"volume": 11})


def test_unknown_learner_is_a_clear_error(db_path):
    with Store.open(db_path) as store:
        calls = [
            lambda: store.get_learner("nobody"),
            lambda: store.update_learner("nobody", level="x"),
            lambda: store.delete_learner("nobody"),
            lambda: store.export_learner("nobody"),
            lambda: store.start_session("nobody", "arithmetic"),
            lambda: store.record_assessment("nobody", "addition", "q1", True),
            lambda: store.get_mastery("nobody", "addition"),
            lambda: store.set_mastery("nobody", "addition", 0.5),
            lambda: store.get_review("nobody", "addition"),
            lambda: store.set_review("nobody", "addition", "{}", T0),
            lambda: store.due_reviews("nobody", T0),
        ]
        for call in calls:
            with pytest.raises(LearnerNotFound, match="no learner named 'nobody'"):
                call()
        with pytest.raises(LookupError):
            store.get_learner("nobody")


# Sessions, turns, ratings


def test_turns_get_consecutive_indices_and_keep_what_was_heard(db_path):
    with Store.open(db_path) as store:
        store.ensure_learner("ada")
        session = store.start_session("ada", "arithmetic", at=T0)
        first = store.add_turn(session, "tutor", "What is 3 + 4?", ended_at=T0)
        cut = store.add_turn(
            session,
            "tutor",
            "Seven, and then we",
            heard="Seven,",
            cut=True,
            started_at=T0,
            ended_at=T0 + timedelta(seconds=1),
            latency_ms={"first_audio": 380.0},
        )
        assert (first.index, cut.index) == (0, 1)
        assert first.started_at == first.ended_at == T0
        assert store.session_turns(session) == [first, cut]
        assert cut.heard == "Seven," and cut.cut and cut.latency_ms == {"first_audio": 380.0}


def test_turn_and_rating_arguments_are_checked(db_path):
    with Store.open(db_path) as store:
        store.ensure_learner("ada")
        session = store.start_session("ada", "arithmetic")
        turn = store.add_turn(session, "learner", "seven")
        with pytest.raises(ValueError, match="role"):
            store.add_turn(session, "narrator", "once upon a time")
        with pytest.raises(ValueError, match="naive"):
            store.add_turn(session, "learner", "eight", ended_at=datetime(2025, 1, 1))
        with pytest.raises(NotFound):
            store.add_turn(session + 1, "learner", "eight")
        with pytest.raises(NotFound):
            store.end_session(session + 1)
        with pytest.raises(ValueError, match=r"\+1 or -1"):
            store.add_rating(turn.id, 5)
        with pytest.raises(NotFound):
            store.add_rating(turn.id + 1, 1)
        assert [t.text for t in store.session_turns(session)] == ["seven"]


async def test_worker_threads_can_write_concurrently(db_path):
    with Store.open(db_path) as store:
        store.ensure_learner("ada")
        session = store.start_session("ada", "arithmetic")

        def write(worker: int) -> None:
            for n in range(10):
                store.add_turn(session, "learner", f"{worker}-{n}")

        await asyncio.gather(*(asyncio.to_thread(write, worker) for worker in range(8)))
        turns = store.session_turns(session)
    assert [t.index for t in turns] == list(range(80))
    assert {t.text for t in turns} == {f"{w}-{n}" for w in range(8) for n in range(10)}


# Learner model data


def test_assessments_come_back_as_ordered_sequences_per_learner(db_path):
    with Store.open(db_path) as store:
        for name in ("ada", "grace"):
            store.ensure_learner(name)
        store.record_assessment("ada", "addition", "q2", True, at=T0 + timedelta(minutes=1))
        store.record_assessment("ada", "addition", "q1", False, at=T0)
        store.record_assessment("grace", "addition", "q1", True, at=T0)
        store.record_assessment("grace", "subtraction", "q9", False, at=T0)
        assert store.assessment_sequences("addition") == {"ada": [False, True], "grace": [True]}
        assert store.assessment_sequences("division") == {}


def test_mastery_is_upserted(db_path):
    with Store.open(db_path) as store:
        store.ensure_learner("ada")
        assert store.get_mastery("ada", "addition") is None
        store.set_mastery("ada", "addition", 0.3)
        store.set_mastery("ada", "addition", 0.7)
        assert store.get_mastery("ada", "addition") == 0.7
        with pytest.raises(ValueError):
            store.set_mastery("ada", "addition", 1.5)


def test_due_reviews_are_ordered_by_due_date_across_time_zones(db_path):
    plus_two = timezone(timedelta(hours=2))
    with Store.open(db_path) as store:
        store.ensure_learner("ada")
        store.set_review("ada", "later", '{"n": 1}', T0 + timedelta(days=2))
        store.set_review("ada", "overdue", '{"n": 2}', T0 - timedelta(days=1))
        # 10:30 at UTC+2 is 08:30 UTC: due before T0 (09:00 UTC) although "10:30" > "09:00".
        store.set_review(
            "ada", "this-morning", '{"n": 3}', datetime(2025, 3, 1, 10, 30, tzinfo=plus_two)
        )
        store.set_review("ada", "later", '{"n": 4}', T0 + timedelta(days=3))
        due = store.due_reviews("ada", T0)
        assert [entry.skill_id for entry in due] == ["overdue", "this-morning"]
        assert due[1].due == datetime(2025, 3, 1, 8, 30, tzinfo=timezone.utc)
        assert store.get_review("ada", "later").card == '{"n": 4}'
        assert store.get_review("ada", "unseen") is None
        with pytest.raises(sqlite3.IntegrityError):
            store.set_review("ada", "broken", "not json", T0)


# Durability


def test_data_survives_into_a_new_process(db_path):
    with Store.open(db_path) as store:
        populate(store, "ada")
        expected = store.export_learner("ada")
    reader = """
import json, sys
from voice_tutor.store import Store
with Store.open(sys.argv[1]) as store:
    print(json.dumps(store.export_learner("ada")))
"""
    exported = json.loads(run_python(reader, str(db_path)).stdout)
    del exported["exported_at"], expected["exported_at"]
    assert exported == expected
    assert len(exported["sessions"]) == 2 and len(exported["assessments"]) == 2


def test_a_killed_writer_loses_no_acknowledged_turn(db_path):
    writer = """
import sys
from voice_tutor.store import Store
store = Store.open(sys.argv[1])
store.ensure_learner("ada")
session = store.start_session("ada", "arithmetic")
print("session", session, flush=True)
for n in range(100_000):
    store.add_turn(session, "learner", f"answer {n}", latency_ms={"stt": n})
    print(n, flush=True)
"""
    process = subprocess.Popen(
        [sys.executable, "-c", writer, str(db_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        session = int(process.stdout.readline().split()[1])
        acknowledged = [int(process.stdout.readline()) for _ in range(150)]
        process.send_signal(signal.SIGKILL)
        # Lines already in the pipe were printed after their commit too.
        acknowledged += [int(line) for line in process.stdout.read().split()]
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL

    with Store.open(db_path) as store:
        with store._transaction() as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        turns = store.session_turns(session)
    stored = [int(turn.text.removeprefix("answer ")) for turn in turns]
    assert stored[: len(acknowledged)] == acknowledged == list(range(len(acknowledged)))
    # At most the one turn committed but not yet printed when the kill came.
    assert len(stored) - len(acknowledged) in (0, 1)
    assert [turn.index for turn in turns] == stored


# Deletion and export


def test_delete_learner_removes_every_row_about_them(db_path):
    with Store.open(db_path) as store:
        populate(store, "grace-hopper")
        grace_before = store.export_learner("grace-hopper")
    counts_without_ada = table_counts(db_path)

    with Store.open(db_path) as store:
        populate(store, "ada-lovelace")
        assert table_counts(db_path) != counts_without_ada
        store.delete_learner("ada-lovelace")
        # secure_delete + checkpoint: the words are gone from the bytes on disk
        # (the WAL included) while the tutor keeps running.
        for file in db_path.parent.iterdir():
            assert b"ada-lovelace" not in file.read_bytes(), file.name
        with pytest.raises(LearnerNotFound):
            store.get_learner("ada-lovelace")
        grace_after = store.export_learner("grace-hopper")

    assert table_counts(db_path) == counts_without_ada
    del grace_before["exported_at"], grace_after["exported_at"]
    assert grace_after == grace_before
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        tables = [
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}"):
                assert not any("ada-lovelace" in str(cell) for cell in row), (table, row)


def test_export_is_complete_json(db_path):
    with Store.open(db_path) as store:
        populate(store, "ada")
        exported = store.export_learner("ada")
    assert json.loads(json.dumps(exported)) == exported

    counts = table_counts(db_path)
    turns = [turn for session in exported["sessions"] for turn in session["turns"]]
    assert len(exported["sessions"]) == counts["sessions"]
    assert len(turns) == counts["turns"]
    assert sum(len(turn["ratings"]) for turn in turns) == counts["ratings"]
    assert len(exported["assessments"]) == counts["assessments"]
    assert len(exported["mastery"]) == counts["mastery"]
    assert len(exported["reviews"]) == counts["reviews"]

    assert exported["format"] == "voice-tutor/learner-export"
    assert exported["schema_version"] == len(MIGRATIONS)
    assert exported["learner"] == {
        "name": "ada",
        "level": "intermediate",
        "preferences": {"pace": "slow", "voice_speed": 0.8, "language": "fr"},
        "goals": ["ada wants fractions"],
        "created_at": "2025-03-01T09:00:00.000000+00:00",
    }
    cut = turns[2]
    assert (cut["cut"], cut["heard"], cut["latency_ms"]) == (
        True,
        "Right, ada!",
        {"first_audio": 420.5},
    )
    assert turns[1]["ratings"] == [
        {"rating": 1, "comment": "ada liked it", "at": "2025-03-01T09:00:00.000000+00:00"}
    ]
    assert exported["sessions"][0]["ended_at"] == "2025-03-01T09:05:00.000000+00:00"
    assert exported["assessments"][1] == {
        "skill_id": "addition",
        "question_id": "ada-q1",
        "correct": True,
        "at": "2025-03-02T09:00:00.000000+00:00",
        # recorded without what happened (record_assessment): none of the per-answer facts
        "session_id": None, "turn_key": None, "response": None, "verdict": None, "first_try": None,
        "hints_used": None, "mastery_before": None, "mastery_after": None,
    }
    assert exported["mastery"] == [
        {"skill_id": "addition", "p_known": 0.42, "updated_at": "2025-03-01T09:00:00.000000+00:00"}
    ]
    assert exported["reviews"] == [
        {
            "skill_id": "addition",
            "card": {"owner": "ada"},
            "due": "2025-03-04T09:00:00.000000+00:00",
        }
    ]
