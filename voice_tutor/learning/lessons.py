"""Lesson files: TOML, validated whole before use.

A lesson that fails validation is rejected with its file, the field and the
problem named; nothing of it is loaded.  The schema is the single source of
truth for the format (documented in assets/lessons/README.md).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class LessonError(ValueError):
    """A lesson file that cannot be used; the message names file, field and problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Question(_Strict):
    id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    kind: Literal["number", "text"] = "text"
    answers: list[str] = Field(min_length=1)
    """Accepted answers; for ``number`` questions, numbers (``12``, ``3/4``, ``0.5``)."""
    hints: list[str] = Field(default_factory=list)
    explanation: str = Field(min_length=1)

    @model_validator(mode="after")
    def _numbers_parse(self):
        if self.kind == "number":
            from voice_tutor.dialogue.answers import parse_number

            for answer in self.answers:
                if parse_number(answer) is None:
                    raise ValueError(f"answer {answer!r} of a number question is not a number")
        return self


class Lesson(_Strict):
    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    level: str = Field(min_length=1)
    objectives: list[str] = Field(min_length=1)
    vocabulary: list[str] = Field(default_factory=list)
    """Terms that bias speech recognition during this lesson."""
    greeting: str = Field(min_length=1)
    """May use ``{name}`` for the learner's name."""
    wrap_up: str = Field(min_length=1)
    questions: list[Question] = Field(min_length=1)

    @field_validator("questions")
    @classmethod
    def _unique_ids(cls, questions: list[Question]) -> list[Question]:
        seen: set[str] = set()
        for question in questions:
            if question.id in seen:
                raise ValueError(f"question id {question.id!r} is used twice")
            seen.add(question.id)
        return questions


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{where}: {item['msg']}")
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
