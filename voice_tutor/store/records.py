"""What the store hands back: frozen records and the errors it raises."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Literal

Role = Literal["learner", "tutor"]
ROLES: tuple[Role, ...] = ("learner", "tutor")
PACES = ("slow", "normal", "fast")


class StoreError(Exception):
    """The store cannot do what was asked (a newer schema, a missing record)."""


class NotFound(StoreError, LookupError):
    """A session or turn id that the store does not hold."""


class LearnerNotFound(NotFound):
    """No learner with that name; create one with ``Store.ensure_learner``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no learner named {name!r}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Preferences:
    """How a learner likes to be taught; stored as JSON so new fields need no migration."""

    pace: str = "normal"
    """``slow``, ``normal`` or ``fast``: how much the tutor says per turn."""
    voice_speed: float = 1.0
    """Speaking rate relative to the voice's own (TTS length_scale = 1 / voice_speed)."""
    language: str = "en"

    def __post_init__(self) -> None:
        if self.pace not in PACES:
            raise ValueError(f"pace must be one of {', '.join(PACES)}, not {self.pace!r}")
        if isinstance(self.voice_speed, bool) or not isinstance(self.voice_speed, (int, float)):
            raise ValueError(f"voice_speed must be a number, not {self.voice_speed!r}")
        if not 0.5 <= self.voice_speed <= 2.0:
            raise ValueError(f"voice_speed must be in [0.5, 2.0], not {self.voice_speed}")
        if not isinstance(self.language, str) or not self.language:
            raise ValueError(f"language must be a non-empty string, not {self.language!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preferences:
        """Missing keys take their defaults; unknown keys are an error, not silently dropped."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown preferences: {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Learner:
    id: int
    name: str
    level: str
    preferences: Preferences
    goals: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance of a session; a tutor turn cut by barge-in keeps what was heard."""

    id: int
    session_id: int
    index: int
    role: Role
    text: str
    heard: str | None
    cut: bool
    started_at: datetime
    ended_at: datetime
    latency_ms: dict[str, float]
    audio_path: str | None = None
    """The recording of a spoken learner turn (kept only with ``[privacy] record_audio``)."""
    turn_key: int | None = None
    """The session's own id of the turn (the utterance id), which an assessed answer names."""


VERDICTS = ("correct", "incorrect", "revealed")
"""How a question ended: the learner's answer was right (hints or not), was wrong, or the tutor gave it."""
OUTCOMES = ("completed", "suspended", "terminated")
"""How a session ended: the lesson's completion rule met; left mid-lesson (resumable); ended otherwise."""


@dataclass(frozen=True, slots=True)
class AnswerFacts:
    """What happened when a question was resolved: the facts the record, reports and xAPI share.

    ``mastery_after`` is what the learner model made of it (BKT sees ``right_first_time``).
    """

    verdict: str
    response: str | None
    """The learner's words that resolved it (already redacted as turns are), None if none."""
    first_try: bool
    """No wrong answer came before."""
    hints_used: int
    mastery_before: float
    mastery_after: float
    session_id: int | None = None
    """The stored session it was given in."""
    turn_key: int | None = None
    """The session's own id of the learner turn it was given in (``Turn.turn_key``)."""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}")
        if isinstance(self.hints_used, bool) or not isinstance(self.hints_used, int) or self.hints_used < 0:
            raise ValueError(f"hints_used must be a count, not {self.hints_used!r}")
        for name in ("mastery_before", "mastery_after"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")

    @property
    def right_first_time(self) -> bool:
        """Right at the first try without hints: the observation BKT learns from."""
        return self.verdict == "correct" and self.first_try and self.hints_used == 0


@dataclass(frozen=True, slots=True)
class Answer:
    """One stored assessed answer."""

    id: int
    skill_id: str
    question_id: str
    at: datetime
    facts: AnswerFacts | None
    """None for answers stored before the record kept them (schema 3 and older)."""
    correct: bool = False
    """BKT's observation: right at the first try, without hints (all that older answers kept)."""

    @property
    def right_first_time(self) -> bool:
        return self.correct


@dataclass(frozen=True, slots=True)
class ReviewEntry:
    """A skill's spaced-review card, serialized by ``learning.review.card_to_json``."""

    skill_id: str
    card: str
    due: datetime


class ClassNotFound(NotFound):
    """No class with that name; create one with ``Store.create_class``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no class named {name!r}")
        self.name = name


@dataclass(frozen=True, slots=True)
class ClassRoom:
    """A class: its teacher and its learners (by name, sorted)."""

    id: int
    name: str
    teacher: str | None
    members: tuple[str, ...]
    created_at: datetime


SURVEY_QUESTIONS: dict[str, str] = {
    "helpful": "How much did the tutor help you today?",
    "clear": "How clear were the tutor's explanations?",
    "pace": "Was the pace right for you?",
    "enjoyed": "How much did you enjoy the session?",
}
"""The end-of-session survey: each answered 1 (not at all) to 5 (very), plus free text."""


@dataclass(frozen=True, slots=True)
class XapiQueued:
    """One statement in the outbox, in enqueue order (``id``)."""

    id: int
    statement_id: str
    statement: str
    attempts: int
