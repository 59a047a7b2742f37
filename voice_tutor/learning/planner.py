"""What to practise next: pure decisions over a lesson and a learner's state.

Due reviews come first (spaced review only works if reviews happen when due).
Then the learner works on the *frontier*: skills not yet mastered whose
prerequisites are.  The tutor stays on the frontier skill closest to mastery
until it is mastered — finishing one skill before opening another is what
mastery learning asks — and never re-drills a mastered skill that is not due.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from voice_tutor.learning.lessons import Lesson, Question, Resource, Skill
from voice_tutor.learning.mastery import MASTERY_THRESHOLD


@dataclass(frozen=True)
class LearnerState:
    """What the planner knows of one learner in one lesson."""

    mastery: Mapping[str, float]
    """p_known per skill id; a missing skill is at its prior."""
    due: Sequence[str] = ()
    """Skill ids due for review, most overdue first."""
    prior: float = 0.2
    recent_questions: Sequence[str] = field(default_factory=tuple)
    """Question ids asked lately, oldest first."""
    solved: frozenset[str] = frozenset()
    """Question ids already resolved in this session: never asked twice in one sitting."""

    def p_known(self, skill_id: str) -> float:
        return self.mastery.get(skill_id, self.prior)

    def mastered(self, skill_id: str) -> bool:
        return self.p_known(skill_id) >= MASTERY_THRESHOLD


@dataclass(frozen=True)
class Plan:
    question: Question
    reason: str
    """"review" (a mastered skill is due) or "practice" (a frontier skill)."""


def _exhausted(lesson: Lesson, state: LearnerState, skill_id: str) -> bool:
    """Every question of the skill was resolved this session: practise what comes next."""
    return all(q.id in state.solved for q in lesson.questions_for(skill_id))


def frontier(lesson: Lesson, state: LearnerState) -> list[Skill]:
    """Unmastered skills whose prerequisites are mastered (or practised to the end today).

    Closest to mastery first.
    """
    ready = [
        skill for skill in lesson.skills
        if not state.mastered(skill.id)
        and all(state.mastered(p) or _exhausted(lesson, state, p) for p in skill.prerequisites)
    ]
    return sorted(ready, key=lambda skill: -state.p_known(skill.id))


def knowledge_gaps(lesson: Lesson, state: LearnerState) -> list[Skill]:
    """Skills the learner has tried and not mastered, weakest first."""
    tried = [skill for skill in lesson.skills if skill.id in state.mastery and not state.mastered(skill.id)]
    return sorted(tried, key=lambda skill: state.p_known(skill.id))


def recommend_resources(lesson: Lesson, gaps: Sequence[Skill], limit: int = 3) -> list[Resource]:
    chosen: list[Resource] = []
    for skill in gaps:
        for resource in lesson.resources_for(skill.id):
            if resource not in chosen:
                chosen.append(resource)
    return chosen[:limit]


def _pick_question(lesson: Lesson, skill_id: str, state: LearnerState) -> Question | None:
    """The skill's unsolved question asked least recently (never-asked first, in lesson order)."""
    questions = [q for q in lesson.questions_for(skill_id) if q.id not in state.solved]
    if not questions:
        return None
    last_asked = {question_id: index for index, question_id in enumerate(state.recent_questions)}
    return min(questions, key=lambda q: (last_asked.get(q.id, -1), lesson.questions.index(q)))


def next_question(lesson: Lesson, state: LearnerState) -> Plan | None:
    """The next question to ask, or None when every skill is mastered and nothing is due."""
    known = {skill.id for skill in lesson.skills}
    for skill_id in state.due:
        if skill_id in known and (question := _pick_question(lesson, skill_id, state)):
            return Plan(question, "review")
    for skill in frontier(lesson, state):
        if question := _pick_question(lesson, skill.id, state):
            return Plan(question, "practice")
    return None
