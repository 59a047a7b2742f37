"""The typed events every stage of a session speaks.

Each event is a frozen dataclass carrying the session id and a monotonic
timestamp (``time.monotonic()``), so per-stage latency is computed from the
events themselves.  Learner audio flows at frame rate on its own queue (see
``voice_tutor.audio.sources``); the session's event bus carries everything an
observer (metrics, the live view, the XR bridge) may want to see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


def now() -> float:
    """The clock every event is stamped with."""
    return time.monotonic()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    session_id: str = ""
    """Empty only until the session that publishes it stamps it."""
    t: float = field(default_factory=now)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechStarted(Event):
    """The learner started speaking (also the barge-in trigger)."""

    utterance_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechPaused(Event):
    """The learner went quiet; the turn may or may not be over."""

    utterance_id: int
    last_voiced_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PartialTranscript(Event):
    utterance_id: int
    text: str
    heard_until: float = 0.0
    """Capture time of the last audio it covers: how far behind the speech it is, is ``t - heard_until``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalTranscript(Event):
    """End of the learner's turn, with what they said.

    ``last_voiced_at`` is the capture time of the end of the learner's voice (the
    last 10 ms within 35 dB of the utterance's loudest, or the VAD's last voiced
    frame if that is earlier): every latency of the turn is measured from it.
    """

    utterance_id: int
    text: str
    language: str
    audio_duration_s: float
    last_voiced_at: float
    stt_ms: float
    confidence: float | None = None
    """How sure the recognizer was of ``text`` (mean token probability, 0-1); None when typed or unknown."""
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The utterance's 16 kHz mono float32 samples (spoken turns only), for a recording kept by consent."""
    speaker: str | None = None
    """The learner who spoke it (the session stamps it; in a shared room, who held the floor)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TutorText(Event):
    """A piece of the tutor's reply text as it is produced."""

    turn_id: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TutorReplyDone(Event):
    """The dialogue finished producing the reply (it may still be playing)."""

    turn_id: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TutorAudio(Event):
    """A synthesized sentence of the tutor's reply, ready to play."""

    turn_id: int
    text: str
    samples: np.ndarray
    sample_rate: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TutorSpeechStarted(Event):
    """The first sample of a reply was handed to the audio sink."""

    turn_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TutorSpeechEnded(Event):
    """A reply stopped playing, whole or cut by barge-in.

    ``heard`` is the part of the reply the learner actually heard.
    """

    turn_id: int
    text: str
    heard: str
    cut: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BargeIn(Event):
    """The learner spoke over the tutor; the reply in flight is cancelled."""

    turn_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnCompleted(Event):
    """One learner turn and the tutor's answer, with latencies in milliseconds.

    Latencies are measured from the learner's last voiced sample.
    """

    turn_id: int
    learner: str
    tutor: str
    heard: str
    cut: bool
    latency_ms: dict[str, float]
    speaker: str | None = None
    """The learner whose turn it was (``FinalTranscript.speaker``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionNotice(Event):
    """Something a person watching the session should know (a fallback, an error)."""

    level: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TutorFallback(Event):
    """The LLM could not answer (or was not asked), so the offline tutor answered instead."""

    kind: str
    """The cause in one word: ``timeout``, ``unreachable``, ``http_error``, ``context_overflow``,
    ``empty_reply``, ``circuit_open``..."""
    reason: str
    """One line a person can act on (no learner words in it)."""
    backend: str
    """The tutor that failed, e.g. ``chat:llama-3.1-8b-instruct``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MasteryUpdated(Event):
    """An assessed answer moved the learner's estimated mastery of a skill (BKT).

    ``correct`` is BKT's observation (right at the first try, without hints);
    the rest says what happened, as the learner record keeps it (empty
    ``verdict``: a tutor that did not say).
    """

    learner: str
    skill_id: str
    skill_name: str
    correct: bool
    p_known: float
    mastered: bool
    question_id: str = ""
    verdict: str = ""
    """``correct`` (the learner's answer was right, even after hints), ``incorrect`` or ``revealed``."""
    response: str | None = None
    """The learner's words that resolved the question, redacted as the record keeps them."""
    first_try: bool | None = None
    hints_used: int = 0
    p_before: float | None = None
    """Mastery of the skill before this answer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerExpected(Event):
    """The tutor is waiting for the answer to a question (or none, ``question_id`` None).

    ``words`` are how a learner would say its answers and likely wrong answers;
    the session biases recognition towards them until the next question.
    """

    question_id: str | None
    words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SafetyAlert(Event):
    """Something said in the session that a teacher must know about."""

    direction: str
    """``learner`` or ``tutor``: who said it."""
    category: str
    severity: str
    excerpt: str
    """What was said, with personal data redacted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnRated(Event):
    """The learner rated a reply of the tutor: thumbs up (+1) or down (-1); their latest rating of it counts."""

    rating: int
    turn_id: int | None
    """The session turn of the rated reply (0: the opening); None: the reply the tutor gave
    just before the learner's turn that said it (a rating said aloud, "thumbs up")."""
    source: str
    """``page`` (a button) or ``voice`` (said aloud)."""
    learner: str | None = None
    """Who rated it, where several learners share the session (None: it does not say)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SurveyAnswered(Event):
    """The learner's end-of-session survey: answers 1-5 by question (any may be skipped), and a comment."""

    answers: dict[str, int]
    comment: str | None = None
    learner: str | None = None
    """Who answered it, where several learners share the session (None: it does not say)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationRequested(Event):
    """The tutor asks the scene to run a simulation: a lesson rule's action or an LLM tool call.

    Both tutors publish this one event, and whoever shows the scene (the XR
    bridge's voice room) carries it out; without a scene nobody does.
    """

    action: str
    """``start_simulation`` or ``set_sim_param``."""
    sim_id: str
    """The lesson resource's id: the instance in the scene."""
    simulation: str
    """The model the scene runs (``pendulum``)."""
    parameters: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LessonChanged(Event):
    """The session moved to another lesson (the learner asked, by voice or on a page).

    Speech recognition listens with the new lesson's ``hotwords`` and ``language``;
    the learner's record carries on (mastery is kept per skill).
    """

    lesson_id: str
    title: str
    hotwords: str | None
    language: str
    learner: str | None = None
    """Who moved (in a shared room only their record moves with them; None: it does not say)."""
    previous_outcome: str = "terminated"
    """How the lesson left behind stands for them: ``completed``, ``suspended`` or ``terminated``."""
