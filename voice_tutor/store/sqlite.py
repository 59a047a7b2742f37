"""The SQLite store: one file, safe across threads and processes and through crashes.

Durability: WAL journal with ``synchronous=FULL``, and every write is one
``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, so once a method returns its
write survives a killed process or a power cut, and a write cut short leaves
nothing behind.  ``IMMEDIATE`` takes the write lock up front, so two
processes never deadlock upgrading a read to a write (``busy_timeout`` then
makes the second one wait instead of failing).

Threads: one connection guarded by a lock, so the dialogue can call any
method through ``asyncio.to_thread`` from any worker thread.

Deletion: ``secure_delete`` zeroes freed content and ``delete_learner``
checkpoints the WAL, so a deleted learner's words do not linger in the file.
Recordings (WAV files a turn links to by ``audio_path``) are deleted with
their turns, files first: a deletion cut short leaves the rows, and running
it again finishes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from voice_tutor.store.records import (
    OUTCOMES,
    ROLES,
    SURVEY_QUESTIONS,
    ClassNotFound,
    Answer,
    AnswerFacts,
    ClassRoom,
    Learner,
    LearnerNotFound,
    NotFound,
    Preferences,
    ReviewEntry,
    Role,
    StoreError,
    Turn,
    XapiQueued,
)
from voice_tutor.store.schema import MIGRATIONS

EXPORT_FORMAT = "voice-tutor/learner-export"
EXPORT_VERSION = 1
BUSY_TIMEOUT_MS = 5000
"""How long a write waits for another process's transaction before failing."""


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/voice-tutor/tutor.db``, with XDG's default ``~/.local/share``."""
    environ = os.environ if environ is None else environ
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "voice-tutor" / "tutor.db"


class Store:
    """Learners, their sessions, turns, assessments, mastery, review cards and ratings.

    Learners are addressed by their unique name; sessions and turns by the
    integer ids the store returns.  Datetimes must be timezone-aware (they
    are kept in UTC); omitted ones mean "now".
    """

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        """Use :meth:`open`; this expects a connection already configured and migrated."""
        self._db = connection
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, path: str | Path | None = None) -> Store:
        """Open (creating it and its folder if needed) and migrate the database at ``path``."""
        path = Path(path) if path is not None else default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are the explicit BEGIN/COMMIT of _transaction.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA secure_delete = ON")
            _migrate(db)
        except BaseException:
            db.close()
            raise
        return cls(db, path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock: all of it commits, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    # Learners

    def ensure_learner(
        self,
        name: str,
        *,
        level: str = "beginner",
        preferences: Preferences | None = None,
        goals: tuple[str, ...] | list[str] = (),
        at: datetime | None = None,
    ) -> Learner:
        """The learner called ``name``, created with these values if new (else unchanged)."""
        if not name.strip():
            raise ValueError("a learner needs a non-empty name")
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT INTO learners (name, level, preferences, goals, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (
                    name,
                    level,
                    json.dumps((preferences or Preferences()).to_dict()),
                    json.dumps(list(goals)),
                    _iso(at),
                ),
            )
            return _learner(db, name)

    def update_learner(
        self,
        name: str,
        *,
        level: str | None = None,
        preferences: Preferences | None = None,
        goals: tuple[str, ...] | list[str] | None = None,
    ) -> Learner:
        """Change the given fields of an existing learner; None leaves a field as it is."""
        with self._transaction(write=True) as db:
            learner = _learner(db, name)
            db.execute(
                "UPDATE learners SET level = ?, preferences = ?, goals = ? WHERE id = ?",
                (
                    level if level is not None else learner.level,
                    json.dumps((preferences or learner.preferences).to_dict()),
                    json.dumps(list(goals if goals is not None else learner.goals)),
                    learner.id,
                ),
            )
            return _learner(db, name)

    def get_learner(self, name: str) -> Learner:
        with self._transaction() as db:
            return _learner(db, name)

    def list_learners(self) -> list[Learner]:
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM learners ORDER BY name").fetchall()
        return [_learner_from_row(row) for row in rows]

    def learner_activity(self) -> dict[str, tuple[int, datetime | None]]:
        """Per learner name: how many sessions they had and when they were last seen.

        Last seen is the latest session start, session end or stored turn (a
        session cut short by a crash has no end but may have turns); None for
        a learner who never had a session.
        """
        with self._transaction() as db:
            rows = db.execute(
                "SELECT learners.name, COUNT(sessions.id), MAX(MAX(sessions.started_at,"
                " COALESCE(sessions.ended_at, ''),"
                " COALESCE((SELECT MAX(turns.ended_at) FROM turns"
                " WHERE turns.session_id = sessions.id), '')))"
                " FROM learners LEFT JOIN sessions ON sessions.learner_id = learners.id"
                " GROUP BY learners.id ORDER BY learners.name"
            ).fetchall()
        return {
            name: (count, datetime.fromisoformat(last) if last else None)
            for name, count, last in rows
        }

    def delete_learner(self, name: str) -> list[str]:
        """Remove the learner, every row about them (sessions, turns, answers, ratings...) and their recordings.

        Returns the recordings' paths (deleted; those already gone included).
        """
        with self._transaction() as db:
            learner_id = _learner_id(db, name)
            paths = _audio_paths(db, "SELECT id FROM sessions WHERE learner_id = ?", (learner_id,))
        _delete_files(paths)
        with self._transaction(write=True) as db:
            learner_id = _learner_id(db, name)
            db.execute("DELETE FROM learners WHERE id = ?", (learner_id,))
        with self._lock:
            # Copy the zeroed pages into the main file and empty the WAL, which still
            # holds the old ones.  If another process keeps reading for longer than
            # the busy timeout this gives up; the next checkpoint finishes the job.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return paths

    # Sessions and turns

    def start_session(self, learner: str, lesson_id: str, *, at: datetime | None = None) -> int:
        """Open a session of ``learner`` on ``lesson_id``; returns its id."""
        with self._transaction(write=True) as db:
            cursor = db.execute(
                "INSERT INTO sessions (learner_id, lesson_id, started_at) VALUES (?, ?, ?)",
                (_learner_id(db, learner), lesson_id, _iso(at)),
            )
            return cursor.lastrowid

    def end_session(self, session_id: int, *, at: datetime | None = None, outcome: str | None = None) -> None:
        """Close the session; ``outcome`` (one of ``OUTCOMES``) says how the lesson stood when it ended."""
        if outcome is not None and outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        with self._transaction(write=True) as db:
            cursor = db.execute(
                "UPDATE sessions SET ended_at = ?, outcome = COALESCE(?, outcome) WHERE id = ?",
                (_iso(at), outcome, session_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no session {session_id}")

    def add_turn(
        self,
        session_id: int,
        role: Role,
        text: str,
        *,
        heard: str | None = None,
        cut: bool = False,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        latency_ms: Mapping[str, float] | None = None,
        audio_path: str | Path | None = None,
        turn_key: int | None = None,
    ) -> Turn:
        """Append a turn to the session (its index is the next one); durable on return.

        ``heard`` is what the learner actually heard of a tutor turn cut by
        barge-in (``cut=True``).  ``started_at`` defaults to ``ended_at``,
        which defaults to now.  ``audio_path`` links the turn's recording
        (kept as an absolute path; the file goes when the turn does).
        ``turn_key`` is the session's own id of the turn, which answers name.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        ended = _iso(ended_at)
        started = _iso(started_at) if started_at is not None else ended
        latency = json.dumps(dict(latency_ms or {}), allow_nan=False)
        audio = str(Path(audio_path).resolve()) if audio_path is not None else None
        with self._transaction(write=True) as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
                raise NotFound(f"no session {session_id}")
            cursor = db.execute(
                "INSERT INTO turns"
                " (session_id, idx, role, text, heard, cut, started_at, ended_at, latency_ms, audio_path, turn_key)"
                " SELECT ?, COALESCE(MAX(idx) + 1, 0), ?, ?, ?, ?, ?, ?, ?, ?, ?"
                " FROM turns WHERE session_id = ?",
                (session_id, role, text, heard, int(cut), started, ended, latency, audio, turn_key, session_id),
            )
            row = db.execute("SELECT * FROM turns WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return _turn_from_row(row)

    def session_turns(self, session_id: int) -> list[Turn]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM turns WHERE session_id = ? ORDER BY idx", (session_id,)
            ).fetchall()
        return [_turn_from_row(row) for row in rows]

    def add_rating(
        self, turn_id: int, rating: int, comment: str | None = None, *, at: datetime | None = None
    ) -> int:
        """Record a learner's thumbs up (+1) or down (-1) on a turn; returns the rating id."""
        if rating not in (1, -1):
            raise ValueError(f"rating must be +1 or -1, not {rating!r}")
        with self._transaction(write=True) as db:
            if db.execute("SELECT 1 FROM turns WHERE id = ?", (turn_id,)).fetchone() is None:
                raise NotFound(f"no turn {turn_id}")
            cursor = db.execute(
                "INSERT INTO ratings (turn_id, rating, comment, at) VALUES (?, ?, ?, ?)",
                (turn_id, rating, comment, _iso(at)),
            )
            return cursor.lastrowid

    def set_rating(self, turn_id: int, rating: int, comment: str | None = None, *, at: datetime | None = None) -> int:
        """The learner's thumbs up (+1) or down (-1) on a turn, replacing any earlier rating of it.

        A learner who changes their mind (up, then down) leaves one rating,
        the latest.  Returns the rating id.
        """
        if rating not in (1, -1):
            raise ValueError(f"rating must be +1 or -1, not {rating!r}")
        with self._transaction(write=True) as db:
            if db.execute("SELECT 1 FROM turns WHERE id = ?", (turn_id,)).fetchone() is None:
                raise NotFound(f"no turn {turn_id}")
            db.execute("DELETE FROM ratings WHERE turn_id = ?", (turn_id,))
            cursor = db.execute(
                "INSERT INTO ratings (turn_id, rating, comment, at) VALUES (?, ?, ?, ?)",
                (turn_id, rating, comment, _iso(at)),
            )
            return cursor.lastrowid

    # Assessments, mastery, review

    def record_assessment(
        self,
        learner: str,
        skill_id: str,
        question_id: str,
        correct: bool,
        *,
        at: datetime | None = None,
    ) -> int:
        """Keep one graded answer: the raw data BKT parameters are fitted from."""
        with self._transaction(write=True) as db:
            return _insert_assessment(db, _learner_id(db, learner), skill_id, question_id, correct, at)

    def record_answer(
        self,
        learner: str,
        skill_id: str,
        question_id: str,
        correct: bool,
        p_known: float,
        review: tuple[str, datetime] | None = None,
        *,
        at: datetime | None = None,
        facts: AnswerFacts | None = None,
    ) -> int:
        """One assessed answer and what it changed (mastery, review card), in one transaction; returns its id.

        Written together so a crash can never leave a skill mastered without
        its review card, which would drop it out of spaced review for good.
        ``facts`` is what happened (words, verdict, first try, hints, mastery
        before and after); ``correct`` is BKT's observation.
        """
        if not 0.0 <= p_known <= 1.0:
            raise ValueError(f"p_known must be in [0, 1], not {p_known}")
        with self._transaction(write=True) as db:
            learner_id = _learner_id(db, learner)
            answer_id = _insert_assessment(db, learner_id, skill_id, question_id, correct, at, facts)
            _upsert_mastery(db, learner_id, skill_id, p_known, at)
            if review is not None:
                _upsert_review(db, learner_id, skill_id, *review)
        return answer_id

    def answers(self, learner: str, *, lesson_id: str | None = None, session_id: int | None = None) -> list[Answer]:
        """The learner's assessed answers, oldest first (of one lesson's skills, or of one session)."""
        sql = f"SELECT {_ANSWER_COLUMNS} FROM assessments WHERE learner_id = ?"
        parameters: list = []
        if lesson_id is not None:
            sql += " AND substr(skill_id, 1, ?) = ?"
            parameters += [len(lesson_id) + 1, lesson_id + "/"]
        if session_id is not None:
            sql += " AND session_id = ?"
            parameters.append(session_id)
        with self._transaction() as db:
            rows = db.execute(sql + " ORDER BY at, id", (_learner_id(db, learner), *parameters)).fetchall()
        return [_answer_from_row(row) for row in rows]

    def answer_summary(self, learners: list[str] | tuple[str, ...]) -> list[dict]:
        """Per learner and skill: answers, right answers (hints or not), right first time (first try, no hint),
        right after hints, and hints used.

        Answers stored before the record kept these facts have only BKT's
        observation (right first time), which stands for both ``correct`` and
        ``first_try_correct``.
        """
        if not learners:
            return []
        marks = ", ".join("?" * len(learners))
        with self._transaction() as db:
            rows = db.execute(
                "SELECT learners.name, skill_id, COUNT(*),"
                " SUM(CASE WHEN verdict IS NULL THEN correct ELSE verdict = 'correct' END),"
                " SUM(CASE WHEN verdict IS NULL THEN correct ELSE verdict = 'correct' AND first_try AND hints_used = 0 END),"
                " SUM(CASE WHEN verdict IS NULL THEN correct ELSE verdict = 'correct' AND hints_used > 0 END),"
                " COALESCE(SUM(hints_used), 0)"
                " FROM assessments JOIN learners ON learners.id = assessments.learner_id"
                f" WHERE learners.name IN ({marks}) GROUP BY learners.name, skill_id ORDER BY learners.name, skill_id",
                tuple(learners),
            ).fetchall()
        return [
            {"learner": name, "skill": skill, "answers": count, "correct": right, "first_try_correct": first,
             "correct_after_hints": hinted, "hints_used": hints}
            for name, skill, count, right, first, hinted, hints in rows
        ]

    def assessment_sequences(self, skill_id: str) -> dict[str, list[bool]]:
        """Every learner's answers on ``skill_id``, oldest first: the input of ``fit_params``."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT learners.name, assessments.correct FROM assessments"
                " JOIN learners ON learners.id = assessments.learner_id"
                " WHERE assessments.skill_id = ?"
                " ORDER BY assessments.learner_id, assessments.at, assessments.id",
                (skill_id,),
            ).fetchall()
        sequences: dict[str, list[bool]] = {}
        for name, correct in rows:
            sequences.setdefault(name, []).append(bool(correct))
        return sequences

    def get_mastery(self, learner: str, skill_id: str) -> float | None:
        """The learner's p_known for the skill, or None if never assessed (use the prior)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT p_known FROM mastery WHERE learner_id = ? AND skill_id = ?",
                (_learner_id(db, learner), skill_id),
            ).fetchone()
        return None if row is None else row[0]

    def set_mastery(
        self, learner: str, skill_id: str, p_known: float, *, at: datetime | None = None
    ) -> None:
        if not 0.0 <= p_known <= 1.0:
            raise ValueError(f"p_known must be in [0, 1], not {p_known}")
        with self._transaction(write=True) as db:
            _upsert_mastery(db, _learner_id(db, learner), skill_id, p_known, at)

    def get_review(self, learner: str, skill_id: str) -> ReviewEntry | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT skill_id, card, due FROM reviews WHERE learner_id = ? AND skill_id = ?",
                (_learner_id(db, learner), skill_id),
            ).fetchone()
        return None if row is None else _review_from_row(row)

    def set_review(self, learner: str, skill_id: str, card: str, due: datetime) -> None:
        """Keep the skill's serialized review card and when it is next due."""
        with self._transaction(write=True) as db:
            _upsert_review(db, _learner_id(db, learner), skill_id, card, due)

    def due_reviews(self, learner: str, now: datetime | None = None) -> list[ReviewEntry]:
        """The learner's review cards due at ``now``, most overdue first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT skill_id, card, due FROM reviews WHERE learner_id = ? AND due <= ?"
                " ORDER BY due, skill_id",
                (_learner_id(db, learner), _iso(now)),
            ).fetchall()
        return [_review_from_row(row) for row in rows]

    # Ratings by position, surveys

    def rate_turn(
        self,
        session_id: int,
        index: int,
        rating: int,
        comment: str | None = None,
        *,
        at: datetime | None = None,
    ) -> int:
        """Thumbs up (+1) or down (-1) on the turn at ``index`` of the session; returns the rating id."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM turns WHERE session_id = ? AND idx = ?", (session_id, index)
            ).fetchone()
        if row is None:
            raise NotFound(f"no turn {index} in session {session_id}")
        return self.add_rating(row[0], rating, comment, at=at)

    def add_survey(
        self,
        session_id: int,
        answers: Mapping[str, int],
        comment: str | None = None,
        *,
        at: datetime | None = None,
    ) -> int:
        """Keep the end-of-session survey: each of ``SURVEY_QUESTIONS`` answered 1 to 5 (some may be skipped)."""
        unknown = sorted(set(answers) - set(SURVEY_QUESTIONS))
        if unknown:
            raise ValueError(f"unknown survey questions: {', '.join(unknown)}")
        for key, value in answers.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                raise ValueError(f"survey answer {key!r} must be an integer from 1 to 5, not {value!r}")
        with self._transaction(write=True) as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
                raise NotFound(f"no session {session_id}")
            cursor = db.execute(
                "INSERT INTO surveys (session_id, answers, comment, at) VALUES (?, ?, ?, ?)",
                (session_id, json.dumps(dict(answers)), comment, _iso(at)),
            )
            return cursor.lastrowid

    # Classes

    def create_class(self, name: str, teacher: str | None = None, *, at: datetime | None = None) -> ClassRoom:
        """The class called ``name``, created if new (an existing class gets ``teacher`` if given)."""
        if not name.strip():
            raise ValueError("a class needs a non-empty name")
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT INTO classes (name, teacher, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET teacher = COALESCE(excluded.teacher, classes.teacher)",
                (name, teacher, _iso(at)),
            )
            return _class(db, name)

    def add_to_class(self, name: str, learners: list[str] | tuple[str, ...]) -> ClassRoom:
        """Add existing learners to the class (already members stay once)."""
        with self._transaction(write=True) as db:
            class_id = _class(db, name).id
            for learner in learners:
                db.execute(
                    "INSERT INTO class_members (class_id, learner_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (class_id, _learner_id(db, learner)),
                )
            return _class(db, name)

    def remove_from_class(self, name: str, learners: list[str] | tuple[str, ...]) -> ClassRoom:
        with self._transaction(write=True) as db:
            class_id = _class(db, name).id
            for learner in learners:
                db.execute(
                    "DELETE FROM class_members WHERE class_id = ? AND learner_id = ?",
                    (class_id, _learner_id(db, learner)),
                )
            return _class(db, name)

    def get_class(self, name: str) -> ClassRoom:
        with self._transaction() as db:
            return _class(db, name)

    def list_classes(self) -> list[ClassRoom]:
        with self._transaction() as db:
            names = [row[0] for row in db.execute("SELECT name FROM classes ORDER BY name")]
            return [_class(db, name) for name in names]

    # Learning systems (xAPI): pseudonyms and the durable outbox

    def learner_pseudonym(self, name: str) -> str:
        """A stable random id for the learner, for systems that must not see the name."""
        with self._transaction(write=True) as db:
            learner_id = _learner_id(db, name)
            db.execute(
                "INSERT INTO pseudonyms (learner_id, pseudonym) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (learner_id, str(uuid.uuid4())),
            )
            return db.execute(
                "SELECT pseudonym FROM pseudonyms WHERE learner_id = ?", (learner_id,)
            ).fetchone()[0]

    def enqueue_xapi(self, learner: str | None, statements: list[dict]) -> list[str]:
        """Queue statements durably, in order; each gets its UUID ``id`` here if it has none."""
        ids = []
        with self._transaction(write=True) as db:
            learner_id = _learner_id(db, learner) if learner is not None else None
            for statement in statements:
                statement = dict(statement)
                statement.setdefault("id", str(uuid.uuid4()))
                db.execute(
                    "INSERT INTO xapi_outbox (statement_id, learner_id, statement, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (statement["id"], learner_id, json.dumps(statement, ensure_ascii=False), _iso(None)),
                )
                ids.append(statement["id"])
        return ids

    def pending_xapi(self, limit: int = 50) -> list[XapiQueued]:
        """The oldest undelivered statements, in enqueue order."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, statement_id, statement, attempts FROM xapi_outbox"
                " WHERE delivered_at IS NULL ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [XapiQueued(*row) for row in rows]

    def mark_xapi(self, ids: list[int], *, delivered: bool, error: str | None = None) -> None:
        """Mark outbox rows delivered, or count a failed attempt on them."""
        with self._transaction(write=True) as db:
            for row_id in ids:
                if delivered:
                    db.execute(
                        "UPDATE xapi_outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL"
                        " WHERE id = ?",
                        (_iso(None), row_id),
                    )
                else:
                    db.execute(
                        "UPDATE xapi_outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                        (error, row_id),
                    )

    def xapi_counts(self) -> dict[str, int]:
        with self._transaction() as db:
            pending, delivered = db.execute(
                "SELECT COUNT(*) FILTER (WHERE delivered_at IS NULL),"
                " COUNT(*) FILTER (WHERE delivered_at IS NOT NULL) FROM xapi_outbox"
            ).fetchone()
        return {"pending": pending, "delivered": delivered}

    # Retention

    def purge_transcripts(self, before: datetime) -> int:
        """Delete the turns (their ratings and recordings) of sessions started before ``before``; returns how many.

        Sessions, assessments and mastery stay; the words they held go (survey
        comments of those sessions, the learner's words of those answers).
        """
        cutoff = _iso(before)
        with self._transaction() as db:
            paths = _audio_paths(db, "SELECT id FROM sessions WHERE started_at < ?", (cutoff,))
        _delete_files(paths)
        with self._transaction(write=True) as db:
            count = db.execute(
                "DELETE FROM turns WHERE session_id IN (SELECT id FROM sessions WHERE started_at < ?)",
                (cutoff,),
            ).rowcount
            db.execute(
                "UPDATE surveys SET comment = NULL"
                " WHERE session_id IN (SELECT id FROM sessions WHERE started_at < ?)",
                (cutoff,),
            )
            db.execute(
                "UPDATE assessments SET response = NULL WHERE response IS NOT NULL AND (at < ?"
                " OR session_id IN (SELECT id FROM sessions WHERE started_at < ?))",
                (cutoff, cutoff),
            )
        self._checkpoint()
        return count

    def _checkpoint(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # Reading for reports

    def read(self, sql: str, parameters: tuple | Mapping = ()) -> list[sqlite3.Row]:
        """Rows of one read-only query from one snapshot (for reports and analytics)."""
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
            raise ValueError("Store.read runs SELECT queries only")
        with self._transaction() as db:
            return db.execute(sql, parameters).fetchall()

    # Export

    def export_learner(self, name: str) -> dict:
        """Everything the store holds about a learner, as JSON-ready data, from one snapshot."""
        with self._transaction() as db:
            learner = _learner(db, name)
            sessions = []
            for session_id, lesson_id, started_at, ended_at, outcome in db.execute(
                "SELECT id, lesson_id, started_at, ended_at, outcome FROM sessions"
                " WHERE learner_id = ? ORDER BY started_at, id",
                (learner.id,),
            ).fetchall():
                turns = []
                for row in db.execute(
                    "SELECT * FROM turns WHERE session_id = ? ORDER BY idx", (session_id,)
                ).fetchall():
                    ratings = db.execute(
                        "SELECT rating, comment, at FROM ratings WHERE turn_id = ? ORDER BY id",
                        (row["id"],),
                    ).fetchall()
                    turns.append(
                        {
                            **_turn_export(row),
                            "ratings": [
                                {"rating": r, "comment": c, "at": when} for r, c, when in ratings
                            ],
                        }
                    )
                surveys = [
                    {"answers": json.loads(answers), "comment": comment, "at": when}
                    for answers, comment, when in db.execute(
                        "SELECT answers, comment, at FROM surveys WHERE session_id = ? ORDER BY id",
                        (session_id,),
                    )
                ]
                sessions.append(
                    {
                        "id": session_id,
                        "lesson_id": lesson_id,
                        "started_at": started_at,
                        "ended_at": ended_at,
                        "outcome": outcome,
                        "turns": turns,
                        "surveys": surveys,
                    }
                )
            assessments = [
                _answer_export(row) for row in db.execute(
                    f"SELECT {_ANSWER_COLUMNS} FROM assessments WHERE learner_id = ? ORDER BY at, id", (learner.id,)
                )
            ]
            mastery = [
                {"skill_id": s, "p_known": p, "updated_at": when}
                for s, p, when in db.execute(
                    "SELECT skill_id, p_known, updated_at FROM mastery"
                    " WHERE learner_id = ? ORDER BY skill_id",
                    (learner.id,),
                )
            ]
            reviews = [
                {"skill_id": s, "card": json.loads(card), "due": due}
                for s, card, due in db.execute(
                    "SELECT skill_id, card, due FROM reviews"
                    " WHERE learner_id = ? ORDER BY skill_id",
                    (learner.id,),
                )
            ]
            classes = [
                name for (name,) in db.execute(
                    "SELECT classes.name FROM class_members JOIN classes ON classes.id = class_members.class_id"
                    " WHERE class_members.learner_id = ? ORDER BY classes.name",
                    (learner.id,),
                )
            ]
            pseudonym = db.execute(
                "SELECT pseudonym FROM pseudonyms WHERE learner_id = ?", (learner.id,)
            ).fetchone()
            statements = [
                {"statement": json.loads(text), "queued_at": queued, "delivered_at": delivered}
                for text, queued, delivered in db.execute(
                    "SELECT statement, created_at, delivered_at FROM xapi_outbox"
                    " WHERE learner_id = ? ORDER BY id",
                    (learner.id,),
                )
            ]
            recordings = [
                path for (path,) in db.execute(
                    "SELECT turns.audio_path FROM turns JOIN sessions ON sessions.id = turns.session_id"
                    " WHERE sessions.learner_id = ? AND turns.audio_path IS NOT NULL"
                    " ORDER BY sessions.started_at, sessions.id, turns.idx",
                    (learner.id,),
                )
            ]
            schema_version = db.execute("PRAGMA user_version").fetchone()[0]
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "schema_version": schema_version,
            "exported_at": _iso(None),
            "learner": {
                "name": learner.name,
                "level": learner.level,
                "preferences": learner.preferences.to_dict(),
                "goals": list(learner.goals),
                "created_at": _iso(learner.created_at),
            },
            "sessions": sessions,
            "assessments": assessments,
            "mastery": mastery,
            "reviews": reviews,
            "classes": classes,
            "xapi": {"pseudonym": pseudonym[0] if pseudonym else None, "statements": statements},
            "recordings": recordings,
        }


def _migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations this file lacks, all in one write transaction.

    The version is read inside the transaction, so two processes opening a
    new file at once migrate it once.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"database schema version {version} is newer than this program's "
                f"({len(MIGRATIONS)}); upgrade voice-tutor to open it"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (``executescript`` would commit mid-transaction)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                yield pending
            pending = ""


def _audio_paths(db: sqlite3.Connection, sessions_sql: str, parameters: tuple) -> list[str]:
    """The recordings linked from the turns of the sessions ``sessions_sql`` selects."""
    return [
        path for (path,) in db.execute(
            f"SELECT audio_path FROM turns WHERE audio_path IS NOT NULL AND session_id IN ({sessions_sql})",
            parameters,
        )
    ]


def _delete_files(paths: list[str]) -> None:
    """Delete recordings (gone already is fine) and the folders they leave empty; StoreError if one stays."""
    failed = []
    for path in map(Path, paths):
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            failed.append(f"{path}: {error.strerror or error}")
            continue
        with contextlib.suppress(OSError):  # a session's folder, once its last recording is gone
            path.parent.rmdir()
    if failed:
        raise StoreError(f"could not delete {len(failed)} recordings ({'; '.join(failed[:3])}); nothing else was deleted")


def _insert_assessment(db, learner_id: int, skill_id: str, question_id: str, correct: bool, at,
                       facts: AnswerFacts | None = None) -> int:
    detail = (None,) * 8 if facts is None else (
        facts.session_id, facts.turn_key, facts.response, facts.verdict, int(facts.first_try), facts.hints_used,
        float(facts.mastery_before), float(facts.mastery_after),
    )
    return db.execute(
        "INSERT INTO assessments (learner_id, skill_id, question_id, correct, at, session_id, turn_key, response,"
        " verdict, first_try, hints_used, mastery_before, mastery_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (learner_id, skill_id, question_id, int(bool(correct)), _iso(at), *detail),
    ).lastrowid


_ANSWER_COLUMNS = (
    "id, skill_id, question_id, correct, at, session_id, turn_key, response, verdict, first_try, hints_used,"
    " mastery_before, mastery_after"
)


def _answer_from_row(row: sqlite3.Row) -> Answer:
    facts = None
    if row["verdict"] is not None:
        facts = AnswerFacts(
            verdict=row["verdict"], response=row["response"], first_try=bool(row["first_try"]),
            hints_used=row["hints_used"], mastery_before=row["mastery_before"], mastery_after=row["mastery_after"],
            session_id=row["session_id"], turn_key=row["turn_key"],
        )
    return Answer(id=row["id"], skill_id=row["skill_id"], question_id=row["question_id"],
                  at=datetime.fromisoformat(row["at"]), facts=facts, correct=bool(row["correct"]))


def _answer_export(row: sqlite3.Row) -> dict:
    """An answer as exported: the BKT observation, and what happened (None where it was not kept)."""
    return {
        "skill_id": row["skill_id"], "question_id": row["question_id"], "correct": bool(row["correct"]),
        "at": row["at"], "session_id": row["session_id"], "turn_key": row["turn_key"],
        "response": row["response"], "verdict": row["verdict"],
        "first_try": None if row["first_try"] is None else bool(row["first_try"]),
        "hints_used": row["hints_used"], "mastery_before": row["mastery_before"],
        "mastery_after": row["mastery_after"],
    }


def _upsert_mastery(db, learner_id: int, skill_id: str, p_known: float, at) -> None:
    db.execute(
        "INSERT INTO mastery (learner_id, skill_id, p_known, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (learner_id, skill_id) DO UPDATE SET p_known = excluded.p_known, updated_at = excluded.updated_at",
        (learner_id, skill_id, float(p_known), _iso(at)),
    )


def _upsert_review(db, learner_id: int, skill_id: str, card: str, due: datetime) -> None:
    db.execute(
        "INSERT INTO reviews (learner_id, skill_id, card, due) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (learner_id, skill_id) DO UPDATE SET card = excluded.card, due = excluded.due",
        (learner_id, skill_id, card, _iso(due)),
    )


def _iso(moment: datetime | None) -> str:
    """A timezone-aware datetime (None: now) as fixed-width UTC ISO 8601 text."""
    if moment is None:
        moment = datetime.now(timezone.utc)
    elif moment.tzinfo is None:
        raise ValueError(f"datetime must be timezone-aware, not naive: {moment!r}")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _learner_id(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT id FROM learners WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise LearnerNotFound(name)
    return row[0]


def _learner(db: sqlite3.Connection, name: str) -> Learner:
    row = db.execute("SELECT * FROM learners WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise LearnerNotFound(name)
    return _learner_from_row(row)


def _class(db: sqlite3.Connection, name: str) -> ClassRoom:
    row = db.execute("SELECT * FROM classes WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise ClassNotFound(name)
    members = tuple(
        member for (member,) in db.execute(
            "SELECT learners.name FROM class_members JOIN learners ON learners.id = class_members.learner_id"
            " WHERE class_members.class_id = ? ORDER BY learners.name",
            (row["id"],),
        )
    )
    return ClassRoom(
        id=row["id"], name=row["name"], teacher=row["teacher"], members=members,
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def _learner_from_row(row: sqlite3.Row) -> Learner:
    return Learner(
        id=row["id"],
        name=row["name"],
        level=row["level"],
        preferences=Preferences.from_dict(json.loads(row["preferences"])),
        goals=tuple(json.loads(row["goals"])),
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def _turn_from_row(row: sqlite3.Row) -> Turn:
    return Turn(
        id=row["id"],
        session_id=row["session_id"],
        index=row["idx"],
        role=row["role"],
        text=row["text"],
        heard=row["heard"],
        cut=bool(row["cut"]),
        started_at=datetime.fromisoformat(row["started_at"]),
        ended_at=datetime.fromisoformat(row["ended_at"]),
        latency_ms=json.loads(row["latency_ms"]),
        audio_path=row["audio_path"],
        turn_key=row["turn_key"],
    )


def _turn_export(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"],
        "index": row["idx"],
        "role": row["role"],
        "text": row["text"],
        "heard": row["heard"],
        "cut": bool(row["cut"]),
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "latency_ms": json.loads(row["latency_ms"]),
        "audio_path": row["audio_path"],
        "turn_key": row["turn_key"],
    }


def _review_from_row(row: sqlite3.Row) -> ReviewEntry:
    return ReviewEntry(skill_id=row[0], card=row[1], due=datetime.fromisoformat(row[2]))
