"""Persistence of learners, sessions, turns and the learner model (SQLite by default).

::

    store = Store.open()                  # $XDG_DATA_HOME/voice-tutor/tutor.db
    store.ensure_learner("ada")
    session = store.start_session("ada", "arithmetic")
    store.add_turn(session, "learner", "seven")

Every method is blocking and thread-safe: from async code call it through
``asyncio.to_thread``.
"""

from voice_tutor.store.records import (
    OUTCOMES,
    SURVEY_QUESTIONS,
    VERDICTS,
    Answer,
    AnswerFacts,
    ClassNotFound,
    ClassRoom,
    Learner,
    LearnerNotFound,
    NotFound,
    Preferences,
    ReviewEntry,
    Role,
    StoreError,
    Turn,
)
from voice_tutor.store.sqlite import Store, default_path

__all__ = [
    "OUTCOMES",
    "SURVEY_QUESTIONS",
    "VERDICTS",
    "Answer",
    "AnswerFacts",
    "ClassNotFound",
    "ClassRoom",
    "Learner",
    "LearnerNotFound",
    "NotFound",
    "Preferences",
    "ReviewEntry",
    "Role",
    "StoreError",
    "Store",
    "Turn",
    "default_path",
]
