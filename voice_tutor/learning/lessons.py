"""Lesson files: TOML, validated whole before use.

A lesson that fails validation is rejected with its file, the field path and
the problem named; nothing of it is loaded.  Cross-references (a question's
skill, a skill's prerequisites, a resource's skills) are checked here too, so
the tutor can trust every id it reads.  The schema is the single source of
truth for the format (documented in assets/lessons/README.md).
"""

from __future__ import annotations

import re
import string
import tomllib
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from voice_tutor.dialogue.answers import check_answer, numbers_in, parse_number


class LessonError(ValueError):
    """A lesson file that cannot be used; the message names file, field and problem."""


class _Problems(ValueError):
    """Problems found by a whole-model check, each at a path below the model that raised it.

    Pydantic gives a model-level error no location; carrying the paths lets
    the message point at ``questions.3.skill`` rather than at the lesson.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]):
        self.problems = problems
        super().__init__("; ".join(f"{_dotted(path)}: {problem}" for path, problem in problems))


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


_ID = r"^[a-z0-9][a-z0-9_-]*$"
Text = Annotated[str, Field(min_length=1)]
Id = Annotated[str, Field(pattern=_ID)]

Trigger = Literal[
    "does_not_understand",  # "I don't understand", "what does that mean"
    "asks_for_answer_twice",  # asked to be told the answer a second time on one question
    "wrong_twice",  # two wrong answers in a row on one question
    "off_topic",  # talks about something unrelated to the lesson
    "upset",  # frustrated, sad, or says they are bad at this
    "asks_question",  # asks a question of their own instead of answering
]
TRIGGERS: tuple[str, ...] = get_args(Trigger)
Action = Literal[
    "explain_with_analogy",
    "worked_example",
    "give_hint",
    "steer_back",
    "encourage",
    "answer_from_lesson",
    "recommend_resource",
    "start_simulation",
]
ACTIONS: tuple[str, ...] = get_args(Action)
"""What a rule may make the tutor do; both tutors carry out each one (``dialogue.rule_actions``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Audience(_Strict):
    """Who the lesson is written for; ``level`` stays the free-text description."""

    min_age: int | None = Field(default=None, ge=3, le=120)
    max_age: int | None = Field(default=None, ge=3, le=120)
    proficiency: Literal["beginner", "intermediate", "advanced"] | None = None

    @model_validator(mode="after")
    def _ages_ordered(self):
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise _Problems([(("max_age",), f"{self.max_age} is below min_age {self.min_age}")])
        return self


class Skill(_Strict):
    """One thing a learner can master; mastery and review are tracked per skill."""

    id: Id
    name: Text
    description: str = ""
    prerequisites: list[Id] = Field(default_factory=list)
    """Ids of skills of this lesson to master first."""


class Misconception(_Strict):
    """Wrong answers that reveal one known misunderstanding, and what to say about it."""

    answers: list[Text] = Field(min_length=1)
    feedback: Text


class Question(_Strict):
    id: Text
    prompt: Text
    kind: Literal["number", "text"] = "text"
    answers: list[Text] = Field(min_length=1)
    """Accepted answers; for ``number`` questions, numbers (``12``, ``3/4``, ``0.5``)."""
    hints: list[Text] = Field(default_factory=list)
    """Graduated: each gives away a little more than the one before."""
    explanation: Text
    """The worked explanation, said once the hints are used up."""
    skill: Id | None = None
    """The skill practised; set to the lesson id when the lesson declares no skills."""
    misconceptions: list[Misconception] = Field(default_factory=list)
    socratic: bool | None = None
    """Overrides the lesson's ``socratic`` for this question."""

    @model_validator(mode="after")
    def _answers_usable(self):
        problems = []
        if self.kind == "number":
            for i, answer in enumerate(self.answers):
                if parse_number(answer) is None:
                    problems.append((("answers", i), f"answer {answer!r} of a number question is not a number"))
        if not problems:
            for i, misconception in enumerate(self.misconceptions):
                for j, answer in enumerate(misconception.answers):
                    where = ("misconceptions", i, "answers", j)
                    if self.kind == "number" and parse_number(answer) is None:
                        problems.append((where, f"{answer!r} of a number question is not a number"))
                    elif check_answer(answer, self.answers, self.kind).correct:
                        problems.append((where, f"{answer!r} is accepted as a correct answer, "
                                                "so this feedback could never be given"))
        if problems:
            raise _Problems(problems)
        return self


class Resource(_Strict):
    """A reading, video or simulation that helps with some skills.

    A simulation is either a web page (``url``) or one the XR bridge runs
    (``simulation``, its model name, with optional starting ``parameters``).
    """

    id: Id
    kind: Literal["reading", "video", "simulation"]
    title: Text
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    simulation: Id | None = None
    parameters: dict[str, float] = Field(default_factory=dict)
    skills: list[Id] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_target(self):
        if (self.url is None) == (self.simulation is None):
            raise _Problems([(("url",), "give exactly one of url and simulation")])
        if self.simulation is not None and self.kind != "simulation":
            raise _Problems([(("simulation",), f"only a simulation resource runs a simulation, not a {self.kind}")])
        if self.parameters and self.simulation is None:
            raise _Problems([(("parameters",), "parameters are for a simulation the bridge runs")])
        return self


class Rule(_Strict):
    """What the tutor says (and does) when the learner does something the lesson anticipates."""

    when: Trigger
    say: Text
    action: Action | None = None
    skill: Id | None = None
    """Applies only while this skill is practised; rules without one apply throughout."""

    @field_validator("action", mode="before")
    @classmethod
    def _known_action(cls, action):
        """Name the action that no tutor could carry out, rather than only list the allowed ones."""
        if isinstance(action, str) and action.strip() not in ACTIONS:
            raise _Problems([((), f"unknown action {action.strip()!r}: no tutor can carry it out "
                                  f"(allowed: {', '.join(ACTIONS)})")])
        return action


def _check_placeholders(text: str | None) -> str | None:
    """Only ``{name}`` may be filled in; anything else would fail when the tutor speaks."""
    if text is not None:
        try:
            fields = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
        except ValueError as exc:
            raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
        if fields - {"name"}:
            raise ValueError(f"unknown placeholder {{{sorted(fields - {'name'})[0]}}} (only {{name}} is filled in)")
    return text


class Lesson(_Strict):
    id: Id
    title: Text
    subject: Text
    level: Text
    """Who it is for, in words ("ages 9 to 11"); ``audience`` says it for machines."""
    objectives: list[Text] = Field(min_length=1)
    vocabulary: list[Text] = Field(default_factory=list)
    """Domain terms that bias speech recognition during this lesson."""
    greeting: Text
    """The intro; may use ``{name}`` for the learner's name."""
    wrap_up: Text
    questions: list[Question] = Field(min_length=1)
    audience: Audience = Field(default_factory=Audience)
    answer_language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    """ISO 639-1 language the learner answers in (speech recognition listens for it)."""
    socratic: bool = False
    """Never reveal an answer before every hint has been given (questions may override)."""
    completion: Literal["mastery", "all_questions"] = "mastery"
    """When a learner has completed the lesson: every skill it asks about mastered (``mastery``,
    when the tutor has nothing left to teach), or every question answered once (``all_questions``)."""
    review_intro: str | None = Field(default=None, min_length=1)
    """Said before questions due for review; may use ``{name}``."""
    practice_intro: str | None = Field(default=None, min_length=1)
    """Said before new practice begins; may use ``{name}``."""
    skills: list[Skill] = Field(default_factory=list)
    resources: list[Resource] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    prerequisites: list[Id] = Field(default_factory=list)
    """Ids of lessons to finish first; the tutor offers this lesson after them (checked by ``catalogue``)."""

    @model_validator(mode="before")
    @classmethod
    def _implicit_skill(cls, data):
        """A lesson that declares no skills is one skill, named after the lesson."""
        if not isinstance(data, dict) or data.get("skills") or not isinstance(data.get("id"), str):
            return data
        if not re.match(_ID, data["id"].strip()):
            return data  # the id's own error is reported; an implicit skill would only echo it
        lesson_id = data["id"].strip()
        title = data.get("title")
        name = title if isinstance(title, str) and title.strip() else lesson_id
        data = {**data, "skills": [{"id": lesson_id, "name": name}]}
        if isinstance(data.get("questions"), list):
            data["questions"] = [{"skill": lesson_id, **q} if isinstance(q, dict) else q for q in data["questions"]]
        return data

    @field_validator("greeting", "review_intro", "practice_intro")
    @classmethod
    def _placeholders(cls, text: str | None) -> str | None:
        return _check_placeholders(text)

    @model_validator(mode="after")
    def _cross_references(self):
        problems: list[tuple[tuple[str | int, ...], str]] = []
        skill_ids = [skill.id for skill in self.skills]
        declared = ", ".join(skill_ids)

        def unique(items: list[str], field: str, path_of) -> None:
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.casefold() in seen:
                    problems.append((path_of(i), f"{field} {item!r} is used twice"))
                seen.add(item.casefold())

        unique([q.id for q in self.questions], "question id", lambda i: ("questions", i, "id"))
        unique(skill_ids, "skill id", lambda i: ("skills", i, "id"))
        unique([r.id for r in self.resources], "resource id", lambda i: ("resources", i, "id"))
        unique(self.vocabulary, "term", lambda i: ("vocabulary", i))

        def known(skill_id: str, *path: str | int) -> bool:
            if skill_id in skill_ids:
                return True
            problems.append((path, f"unknown skill {skill_id!r} (declared: {declared})"))
            return False

        for i, skill in enumerate(self.skills):
            for j, prerequisite in enumerate(skill.prerequisites):
                known(prerequisite, "skills", i, "prerequisites", j)
        cycle = _find_cycle(self.skills)
        if cycle:
            problems.append((("skills", skill_ids.index(cycle[0]), "prerequisites"),
                             f"prerequisites form a cycle: {' -> '.join(cycle)}"))

        practised = set()
        for i, question in enumerate(self.questions):
            if question.skill is None:
                problems.append((("questions", i, "skill"), f"missing: the lesson declares skills ({declared}), "
                                                            "so each question names one"))
            else:
                known(question.skill, "questions", i, "skill")
            practised.add(question.skill)
            if self.is_socratic(question):
                problems += _socratic_problems(question, ("questions", i))
        for i, skill in enumerate(self.skills):
            if skill.id not in practised:
                problems.append((("skills", i), f"no question practises skill {skill.id!r}"))

        for i, resource in enumerate(self.resources):
            for j, skill_id in enumerate(resource.skills):
                known(skill_id, "resources", i, "skills", j)

        seen_rules: set[tuple[str, str | None]] = set()
        for i, rule in enumerate(self.rules):
            if rule.skill is not None:
                known(rule.skill, "rules", i, "skill")
            if (rule.when, rule.skill) in seen_rules:
                scope = f" for skill {rule.skill!r}" if rule.skill else ""
                problems.append((("rules", i), f"a second rule for {rule.when!r}{scope}"))
            seen_rules.add((rule.when, rule.skill))
            problem = self._action_problem(rule)
            if problem:
                problems.append((("rules", i, "action"), problem))

        for i, lesson_id in enumerate(self.prerequisites):
            if lesson_id == self.id:
                problems.append((("prerequisites", i), "a lesson is not its own prerequisite"))

        if problems:
            raise _Problems(problems)
        return self

    def _action_problem(self, rule: Rule) -> str | None:
        """Why the tutor could not carry out ``rule``'s action in this lesson, or None."""
        scope = f" for skill {rule.skill!r}" if rule.skill else ""
        if rule.action not in ("start_simulation", "recommend_resource"):
            return None
        resources = self.resources_for_rule(rule)
        if rule.action == "recommend_resource" and not resources:
            return f"recommend_resource needs a resource{scope} to recommend (a [[resources]] tagged with it)"
        if rule.action == "start_simulation" and not any(r.simulation for r in resources):
            return (f"start_simulation needs a simulation the scene runs{scope} "
                    "(a [[resources]] with `simulation` tagged with it)")
        return None

    def resources_for_rule(self, rule: Rule) -> list[Resource]:
        """The resources a rule's action may use: its skill's, or the whole lesson's for a general rule."""
        if rule.skill is None:
            return list(self.resources)
        return [r for r in self.resources if rule.skill in r.skills]

    def is_socratic(self, question: Question) -> bool:
        return self.socratic if question.socratic is None else question.socratic

    def skill(self, skill_id: str) -> Skill:
        for skill in self.skills:
            if skill.id == skill_id:
                return skill
        raise KeyError(f"lesson {self.id!r} has no skill {skill_id!r}")

    def questions_for(self, skill_id: str) -> list[Question]:
        """The questions practising a skill, in lesson order."""
        self.skill(skill_id)
        return [q for q in self.questions if q.skill == skill_id]

    def resources_for(self, skill_id: str) -> list[Resource]:
        self.skill(skill_id)
        return [r for r in self.resources if skill_id in r.skills]

    def prerequisites_closure(self, skill_id: str) -> list[str]:
        """Every skill to master before ``skill_id``, each after its own prerequisites."""
        order: list[str] = []

        def visit(current: str) -> None:
            for prerequisite in self.skill(current).prerequisites:
                if prerequisite not in order:
                    visit(prerequisite)
                    order.append(prerequisite)

        visit(skill_id)
        return order

    def rule_for(self, trigger: str, skill_id: str | None = None) -> Rule | None:
        """The rule for ``trigger``: the one for ``skill_id`` if there is one, else the general one."""
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown trigger {trigger!r} (known: {', '.join(TRIGGERS)})")
        general = None
        for rule in self.rules:
            if rule.when == trigger:
                if rule.skill == skill_id and skill_id is not None:
                    return rule
                if rule.skill is None:
                    general = rule
        return general


def _find_cycle(skills: list[Skill]) -> list[str]:
    """One prerequisite cycle as ``[a, b, ..., a]``, or ``[]``; unknown ids are ignored."""
    prerequisites = {skill.id: skill.prerequisites for skill in skills}
    done: set[str] = set()
    path: list[str] = []

    def visit(skill_id: str) -> list[str]:
        if skill_id in path:
            return path[path.index(skill_id):] + [skill_id]
        if skill_id in done or skill_id not in prerequisites:
            return []
        path.append(skill_id)
        for prerequisite in prerequisites[skill_id]:
            cycle = visit(prerequisite)
            if cycle:
                return cycle
        path.pop()
        done.add(skill_id)
        return []

    for skill in skills:
        cycle = visit(skill.id)
        if cycle:
            return cycle
    return []


def _socratic_problems(question: Question, at: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    """A Socratic question must have hints to give, and none may say an answer the prompt does not.

    (In "which is bigger, 2/3 or 2/5?" every hint may name 2/3: the prompt already does.)
    """
    if not question.hints:
        return [((*at, "hints"), "a Socratic question needs at least one hint to ask before the answer")]
    if question.kind == "number":
        hidden = {parse_number(answer) for answer in question.answers} - set(numbers_in(question.prompt))

        def says_answer(hint: str) -> bool:
            return bool(hidden & set(numbers_in(hint)))
    else:
        in_prompt = check_answer(question.prompt, question.answers, "text").correct

        def says_answer(hint: str) -> bool:
            return not in_prompt and check_answer(hint, question.answers, "text").correct

    return [((*at, "hints", j), "gives away the answer, which a Socratic question saves for last")
            for j, hint in enumerate(question.hints) if says_answer(hint)]


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, _Problems):
            problems += [f"{_dotted(item['loc'] + path)}: {problem}" for path, problem in cause.problems]
        else:
            problems.append(f"{_dotted(item['loc'])}: {item['msg']}")
    return "; ".join(problems)


def load_lesson(path: str | Path) -> Lesson:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LessonError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise LessonError(f"{path}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LessonError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Lesson.model_validate(data)
    except ValidationError as exc:
        raise LessonError(f"{path}: {_describe(exc)}") from exc


def find_lesson(name: str, lessons_dir: Path) -> Path:
    """A lesson by id (a file in ``lessons_dir``) or by path."""
    candidate = Path(name)
    if candidate.suffix == ".toml" or candidate.is_file():
        return candidate
    path = lessons_dir / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in lessons_dir.glob("*.toml"))) or "none"
        raise LessonError(f"no lesson {name!r} in {lessons_dir} (known: {known})")
    return path
