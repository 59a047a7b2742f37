"""The SQLite schema, as an ordered list of migrations.

``PRAGMA user_version`` records how many migrations a database file has had;
opening a file applies the missing ones in order, each in the same
transaction as its version bump, so a file is always at exactly one version.
Never edit a released migration: append a new one.

Every row about a learner hangs off ``learners`` through ``ON DELETE
CASCADE`` foreign keys, so deleting the learner row deletes all of it.
Timestamps are ISO 8601 UTC text with microseconds (fixed width, so they
sort and compare as text); JSON columns are checked with ``json_valid``.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: learners, their sessions and turns, assessments, mastery, review cards, ratings.
    """
    CREATE TABLE learners (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        level       TEXT NOT NULL,
        preferences TEXT NOT NULL CHECK (json_valid(preferences)),
        goals       TEXT NOT NULL CHECK (json_valid(goals)),
        created_at  TEXT NOT NULL
    ) STRICT;

    CREATE TABLE sessions (
        id          INTEGER PRIMARY KEY,
        learner_id  INTEGER NOT NULL REFERENCES learners (id) ON DELETE CASCADE,
        lesson_id   TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT
    ) STRICT;
    CREATE INDEX sessions_by_learner ON sessions (learner_id, started_at);

    CREATE TABLE turns (
        id          INTEGER PRIMARY KEY,
        session_id  INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        idx         INTEGER NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('learner', 'tutor')),
        text        TEXT NOT NULL,
        heard       TEXT,
        cut         INTEGER NOT NULL CHECK (cut IN (0, 1)),
        started_at  TEXT NOT NULL,
        ended_at    TEXT NOT NULL,
        latency_ms  TEXT NOT NULL CHECK (json_valid(latency_ms)),
        UNIQUE (session_id, idx)
    ) STRICT;

    CREATE TABLE assessments (
        id          INTEGER PRIMARY KEY,
        learner_id  INTEGER NOT NULL REFERENCES learners (id) ON DELETE CASCADE,
        skill_id    TEXT NOT NULL,
        question_id TEXT NOT NULL,
        correct     INTEGER NOT NULL CHECK (correct IN (0, 1)),
        at          TEXT NOT NULL
    ) STRICT;
    CREATE INDEX assessments_by_skill ON assessments (skill_id, learner_id, at);
    CREATE INDEX assessments_by_learner ON assessments (learner_id);

    CREATE TABLE mastery (
        learner_id  INTEGER NOT NULL REFERENCES learners (id) ON DELETE CASCADE,
        skill_id    TEXT NOT NULL,
        p_known     REAL NOT NULL CHECK (p_known BETWEEN 0 AND 1),
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (learner_id, skill_id)
    ) STRICT;

    CREATE TABLE reviews (
        learner_id  INTEGER NOT NULL REFERENCES learners (id) ON DELETE CASCADE,
        skill_id    TEXT NOT NULL,
        card        TEXT NOT NULL CHECK (json_valid(card)),
        due         TEXT NOT NULL,
        PRIMARY KEY (learner_id, skill_id)
    ) STRICT;
    CREATE INDEX reviews_by_due ON reviews (learner_id, due);

    CREATE TABLE ratings (
        id          INTEGER PRIMARY KEY,
        turn_id     INTEGER NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
        rating      INTEGER NOT NULL CHECK (rating IN (-1, 1)),
        comment     TEXT,
        at          TEXT NOT NULL
    ) STRICT;
    CREATE INDEX ratings_by_turn ON ratings (turn_id);
    """,
    # 2: classes and their learners, end-of-session surveys, pseudonyms for learning
    # systems, and the durable outbox of xAPI statements (delivered ones are marked).
    """
    CREATE TABLE classes (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        teacher     TEXT,
        created_at  TEXT NOT NULL
    ) STRICT;

    CREATE TABLE class_members (
        class_id    INTEGER NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
        learner_id  INTEGER NOT NULL REFERENCES learners (id) ON DELETE CASCADE,
        PRIMARY KEY (class_id, learner_id)
    ) STRICT;
    CREATE INDEX class_members_by_learner ON class_members (learner_id);

    CREATE TABLE surveys (
        id          INTEGER PRIMARY KEY,
        session_id  INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        answers     TEXT NOT NULL CHECK (json_valid(answers)),
        comment     TEXT,
        at          TEXT NOT NULL
    ) STRICT;
    CREATE INDEX surveys_by_session ON surveys (session_id);

    CREATE TABLE pseudonyms (
        learner_id  INTEGER PRIMARY KEY REFERENCES learners (id) ON DELETE CASCADE,
        pseudonym   TEXT NOT NULL UNIQUE
    ) STRICT;

    CREATE TABLE xapi_outbox (
        id           INTEGER PRIMARY KEY,
        statement_id TEXT NOT NULL UNIQUE,
        learner_id   INTEGER REFERENCES learners (id) ON DELETE CASCADE,
        statement    TEXT NOT NULL CHECK (json_valid(statement)),
        created_at   TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT,
        delivered_at TEXT
    ) STRICT;
    CREATE INDEX xapi_outbox_pending ON xapi_outbox (delivered_at, id);
    CREATE INDEX xapi_outbox_by_learner ON xapi_outbox (learner_id);
    """,
    # 3: a learner turn's recording (kept by consent, ``[privacy] record_audio``): the WAV
    # file's absolute path; deleting the turn (retention, a deleted learner) deletes the file.
    """
    ALTER TABLE turns ADD COLUMN audio_path TEXT;
    """,
    # 4: the truth of each assessed answer (the record teachers, reports, xAPI and the next session
    # read): the session and turn it was given in, the learner's words (redacted as turns are),
    # the verdict (``correct``: the learner's answer was right, even after hints; ``incorrect``;
    # ``revealed``: the tutor gave the answer), first try or not, hints used, and the skill's
    # mastery before and after.  ``correct`` stays BKT's observation (right at the first try,
    # without hints).  A turn keeps the session's own id for it, which an answer names; a
    # session keeps how it ended (completed, suspended, terminated).
    """
    ALTER TABLE assessments ADD COLUMN session_id INTEGER REFERENCES sessions (id) ON DELETE SET NULL;
    ALTER TABLE assessments ADD COLUMN turn_key INTEGER;
    ALTER TABLE assessments ADD COLUMN response TEXT;
    ALTER TABLE assessments ADD COLUMN verdict TEXT CHECK (verdict IN ('correct', 'incorrect', 'revealed'));
    ALTER TABLE assessments ADD COLUMN first_try INTEGER CHECK (first_try IN (0, 1));
    ALTER TABLE assessments ADD COLUMN hints_used INTEGER CHECK (hints_used >= 0);
    ALTER TABLE assessments ADD COLUMN mastery_before REAL CHECK (mastery_before BETWEEN 0 AND 1);
    ALTER TABLE assessments ADD COLUMN mastery_after REAL CHECK (mastery_after BETWEEN 0 AND 1);
    CREATE INDEX assessments_by_session ON assessments (session_id);
    ALTER TABLE turns ADD COLUMN turn_key INTEGER;
    ALTER TABLE sessions ADD COLUMN outcome TEXT CHECK (outcome IN ('completed', 'suspended', 'terminated'));
    """,
)
