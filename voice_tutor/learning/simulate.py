"""Simulated learners: does adaptive question selection reach mastery in fewer questions?

A simulated learner's *hidden* knowledge of each skill follows Bayesian
Knowledge Tracing with the learner's own true parameters (drawn per learner and
skill from a :class:`Population`): each answer is right with probability
``1 - slip`` if the skill is known and ``guess`` if not, and after every
question on an unknown skill the learner learns it with probability ``learn``
(multiplied by ``prerequisite_penalty`` while any of the skill's direct
prerequisites is still unknown: building on a gap is slow).  Knowledge is never
forgotten.

The tutor never sees that hidden state.  It keeps the same estimate the real
:class:`~voice_tutor.learning.memory.LearnerMemory` keeps (:class:`SimulatedMemory`:
BKT with the tutor's default parameters, FSRS cards once a skill is mastered,
the questions asked and solved this session) and chooses questions with one of
two policies:

* ``adaptive``: :func:`voice_tutor.learning.planner.next_question`, exactly as
  the offline tutor asks them (due reviews first, then the frontier skill
  closest to mastery, never a question already solved this session);
* ``fixed``: the lesson's questions in file order, repeated.

Sessions.  The planner never re-asks a question solved in the same session, so a
simulated learner works in sessions: a session ends after ``session_length``
questions, or earlier when the planner has nothing left to ask today (every
question of the frontier skills solved); the next session starts a day later,
with a fresh set of solved questions, and FSRS reviews that fell due in between
come first, as they would for a returning learner.  A session that opens with
nothing to ask (every skill estimated mastered and no review due) skips ahead
to the next review due date.  The fixed sequence uses the same sessions and
clock; they change nothing for it.  Each question is one answer (no hints, no
second attempts), 30 simulated seconds apart.

Two counts per learner and policy, both in questions asked:

* ``to_estimated``: until the tutor's estimate marks every skill mastered at once
  (p_known >= 0.95), which is when the adaptive tutor ends the lesson;
  ``known_at_estimated`` says whether the learner then truly knew every skill,
  so a policy cannot look fast by stopping on false mastery;
* ``to_known``: until the learner truly knows every skill (the hidden state).
  After the adaptive tutor's estimate says "all mastered", only due reviews are
  asked, so a falsely mastered skill is caught when its review fails.

A count that is not reached within ``max_questions`` is censored at
``max_questions`` in the summaries (conservative for whichever policy it hits)
and counted in ``censored``.  Everything is seeded: the same seed gives the
same learners, and both policies face the same learner (same true parameters,
same starting knowledge, the same stream of random numbers per answer).
"""

from __future__ import annotations

import random
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from voice_tutor.learning import review
from voice_tutor.learning.lessons import Lesson, Question
from voice_tutor.learning.mastery import DEFAULT_PARAMS, BKTParams, is_mastered, update
from voice_tutor.learning.planner import LearnerState, next_question

POLICIES = ("adaptive", "fixed")
START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
"""The simulated clock's start (a Monday morning); only differences matter."""
SECONDS_PER_QUESTION = 30
DAYS_BETWEEN_SESSIONS = 1


@dataclass(frozen=True)
class Population:
    """Where simulated learners' true BKT parameters are drawn from (uniformly, per skill)."""

    prior: tuple[float, float] = (0.05, 0.35)
    learn: tuple[float, float] = (0.10, 0.35)
    slip: tuple[float, float] = (0.05, 0.15)
    guess: tuple[float, float] = (0.10, 0.30)
    prerequisite_penalty: float = 0.25
    """``learn`` is multiplied by this while a direct prerequisite of the skill is unknown."""

    def __post_init__(self) -> None:
        for name in ("prior", "learn", "slip", "guess"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"population {name} range must satisfy 0 <= low <= high <= 1, not {(low, high)}")
        if not 0.0 <= self.prerequisite_penalty <= 1.0:
            raise ValueError(f"prerequisite_penalty must be in [0, 1], not {self.prerequisite_penalty}")

    def draw(self, rng: random.Random) -> BKTParams:
        return BKTParams(*(rng.uniform(*getattr(self, name)) for name in ("prior", "learn", "slip", "guess")))


class SimulatedLearner:
    """A learner whose hidden knowledge follows BKT with their own parameters.

    ``answer`` always draws two random numbers (answer, learning), whatever the
    state, so two policies fed the same stream see the same luck per answer.
    """

    def __init__(self, lesson: Lesson, params: dict[str, BKTParams], known: dict[str, bool],
                 prerequisite_penalty: float, rng: random.Random):
        self.lesson = lesson
        self.params = params
        self.known = dict(known)
        self.prerequisite_penalty = prerequisite_penalty
        self._rng = rng
        self._prerequisites = {skill.id: tuple(skill.prerequisites) for skill in lesson.skills}

    @classmethod
    def draw(cls, lesson: Lesson, seed: str, population: Population = Population(),
             answer_seed: str | None = None) -> SimulatedLearner:
        """The learner called ``seed``; ``answer_seed`` seeds their answers (default: derived from ``seed``)."""
        rng = random.Random(seed)
        params = {skill.id: population.draw(rng) for skill in lesson.skills}
        known = {skill.id: rng.random() < params[skill.id].prior for skill in lesson.skills}
        return cls(lesson, params, known, population.prerequisite_penalty,
                   random.Random(answer_seed or f"{seed}:answers"))

    def knows_all(self) -> bool:
        return all(self.known.values())

    def answer(self, question: Question) -> bool:
        skill_id = question.skill or self.lesson.id
        params = self.params[skill_id]
        answer_draw, learn_draw = self._rng.random(), self._rng.random()
        known = self.known[skill_id]
        correct = answer_draw < (1.0 - params.slip if known else params.guess)
        if not known:
            rate = params.learn
            if not all(self.known[p] for p in self._prerequisites[skill_id]):
                rate *= self.prerequisite_penalty
            self.known[skill_id] = learn_draw < rate
        return correct


class SimulatedMemory:
    """The tutor's view of one learner: what ``LearnerMemory`` keeps, without a store.

    ``assess`` mirrors :meth:`LearnerMemory.assess` (BKT update with the
    tutor's parameters, an FSRS card created when a skill is first mastered and
    reviewed on every later answer); ``state`` is the planner's input.
    """

    def __init__(self, lesson: Lesson, *, params: BKTParams = DEFAULT_PARAMS, start: datetime = START):
        self.lesson = lesson
        self.tutor_params = params
        self.now = start
        self.mastery: dict[str, float] = {}
        self.cards: dict[str, review.Card] = {}
        self._recent: deque[str] = deque(maxlen=max(3, len(lesson.questions) // 2))
        self._solved: set[str] = set()

    @property
    def state(self) -> LearnerState:
        return LearnerState(
            mastery=dict(self.mastery),
            due=review.due_skills(self.cards, self.now),
            prior=self.tutor_params.prior,
            recent_questions=tuple(self._recent),
            solved=frozenset(self._solved),
        )

    def all_mastered(self) -> bool:
        return all(is_mastered(self.mastery.get(s.id, self.tutor_params.prior)) for s in self.lesson.skills)

    def note_asked(self, question: Question) -> None:
        self._recent.append(question.id)

    def assess(self, question: Question, correct: bool) -> float:
        self._solved.add(question.id)
        skill_id = question.skill or self.lesson.id
        before = self.mastery.get(skill_id, self.tutor_params.prior)
        after = update(before, correct, self.tutor_params)
        self.mastery[skill_id] = after
        card = self.cards.get(skill_id)
        if card is None and is_mastered(after):
            card = review.new_card(self.now)
        if card is not None:
            rating = review.rating_for(correct, hints_used=0, first_try=True, mastered=is_mastered(before))
            self.cards[skill_id] = review.review(card, rating, self.now)
        return after

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def new_session(self, at: datetime) -> None:
        """A later sitting: nothing solved yet, nothing asked lately (as a freshly opened LearnerMemory)."""
        self.now = max(at, self.now)
        self._solved.clear()
        self._recent.clear()

    def next_due(self) -> datetime | None:
        return min((card.due for card in self.cards.values()), default=None)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One simulated learner taught under one policy."""

    policy: str
    to_estimated: int | None
    """Questions until every skill was estimated mastered at once; None if not within the cap."""
    to_known: int | None
    """Questions until every skill was truly known; None if not within the cap."""
    known_at_estimated: bool
    """Whether the learner truly knew every skill when the estimate first said so."""
    asked: int
    sessions: int


def simulate(
    lesson: Lesson,
    learner: SimulatedLearner,
    policy: str,
    *,
    session_length: int = 10,
    max_questions: int = 500,
    tutor_params: BKTParams = DEFAULT_PARAMS,
) -> Outcome:
    """Teach ``learner`` with ``policy`` until both counts are reached (or ``max_questions``)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    if session_length < 1:
        raise ValueError(f"session_length must be at least 1, not {session_length}")
    memory = SimulatedMemory(lesson, params=tutor_params)
    asked = in_session = 0
    sessions = 1
    to_estimated: int | None = None
    to_known: int | None = 0 if learner.knows_all() else None
    known_at_estimated = False

    def next_session(at: datetime) -> None:
        nonlocal in_session, sessions
        memory.new_session(at)
        in_session = 0
        sessions += 1

    while asked < max_questions and (to_estimated is None or to_known is None):
        if policy == "adaptive":
            plan = next_question(lesson, memory.state)
            if plan is None:
                if in_session > 0:  # nothing left to ask today: come back tomorrow
                    next_session(memory.now + timedelta(days=DAYS_BETWEEN_SESSIONS))
                    continue
                due = memory.next_due()  # all mastered, nothing due: wait for the next review
                if due is None or due <= memory.now:
                    break  # cannot happen with the planner as written; never loop forever
                next_session(due)
                continue
            question = plan.question
        else:
            question = lesson.questions[asked % len(lesson.questions)]
        memory.note_asked(question)
        memory.assess(question, learner.answer(question))
        asked += 1
        in_session += 1
        memory.tick(SECONDS_PER_QUESTION)
        if to_estimated is None and memory.all_mastered():
            to_estimated = asked
            known_at_estimated = learner.knows_all()
        if to_known is None and learner.knows_all():
            to_known = asked
        if in_session >= session_length:
            next_session(memory.now + timedelta(days=DAYS_BETWEEN_SESSIONS))
    return Outcome(policy, to_estimated, to_known, known_at_estimated, asked, sessions)


@dataclass(frozen=True)
class PolicySummary:
    policy: str
    learners: int
    estimated_median: float
    estimated_mean: float
    known_median: float
    known_mean: float
    known_at_estimated: float
    """Share of learners who truly knew every skill when the tutor's estimate said so."""
    censored: int
    """Counts (either kind) not reached within the cap, summarized as the cap."""


@dataclass(frozen=True)
class LessonResult:
    lesson_id: str
    skills: int
    questions: int
    learners: int
    adaptive: PolicySummary
    fixed: PolicySummary
    outcomes: dict[str, list[Outcome]] = field(repr=False, default_factory=dict)

    def ratio(self, metric: str) -> float:
        """fixed / adaptive for a summary field, e.g. ``estimated_median``; > 1 means adaptive needs fewer."""
        return getattr(self.fixed, metric) / max(getattr(self.adaptive, metric), 1e-9)


def _summary(policy: str, outcomes: Sequence[Outcome], cap: int) -> PolicySummary:
    estimated = [o.to_estimated if o.to_estimated is not None else cap for o in outcomes]
    known = [o.to_known if o.to_known is not None else cap for o in outcomes]
    censored = sum((o.to_estimated is None) + (o.to_known is None) for o in outcomes)
    return PolicySummary(
        policy=policy,
        learners=len(outcomes),
        estimated_median=float(statistics.median(estimated)),
        estimated_mean=statistics.fmean(estimated),
        known_median=float(statistics.median(known)),
        known_mean=statistics.fmean(known),
        known_at_estimated=sum(o.known_at_estimated for o in outcomes) / len(outcomes),
        censored=censored,
    )


def compare(
    lesson: Lesson,
    learners: int = 200,
    *,
    seed: int = 0,
    population: Population = Population(),
    session_length: int = 10,
    max_questions: int = 500,
    tutor_params: BKTParams = DEFAULT_PARAMS,
) -> LessonResult:
    """Both policies on the same ``learners`` simulated learners of ``lesson``."""
    if learners < 1:
        raise ValueError(f"learners must be at least 1, not {learners}")
    outcomes: dict[str, list[Outcome]] = {policy: [] for policy in POLICIES}
    for number in range(learners):
        name = f"{seed}:{lesson.id}:{number}"
        for policy in POLICIES:
            learner = SimulatedLearner.draw(lesson, name, population)  # same learner, fresh state
            outcomes[policy].append(simulate(
                lesson, learner, policy,
                session_length=session_length, max_questions=max_questions, tutor_params=tutor_params,
            ))
    return LessonResult(
        lesson_id=lesson.id,
        skills=len(lesson.skills),
        questions=len(lesson.questions),
        learners=learners,
        adaptive=_summary("adaptive", outcomes["adaptive"], max_questions),
        fixed=_summary("fixed", outcomes["fixed"], max_questions),
        outcomes=outcomes,
    )


def compare_all(lessons: Iterable[Lesson], learners: int = 200, **options) -> list[LessonResult]:
    return [compare(lesson, learners, **options) for lesson in lessons]

