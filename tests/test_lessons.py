"""Lesson files: the shipped ones validate; malformed ones are refused naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice_tutor.config import Config
from voice_tutor.learning.lessons import LessonError, find_lesson, load_lesson

LESSONS_DIR = Config().dialogue.lessons_dir
SHIPPED = sorted(LESSONS_DIR.glob("*.toml"))

VALID = '''
id = "tiny"
title = "A tiny lesson"
subject = "mathematics"
level = "ages 6 to 8"
objectives = ["Add small numbers"]
greeting = "Hello {name}!"
wrap_up = "All done."

[[questions]]
id = "q1"
kind = "number"
prompt = "What is seven plus five?"
answers = ["12"]
hints = ["Make ten first."]
explanation = "Seven plus five is twelve."

[[questions]]
id = "q2"
prompt = "What do we call the answer to an addition?"
answers = ["sum"]
explanation = "It is the sum."
'''


def write(tmp_path: Path, text: str, name: str = "lesson.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(LessonError) as caught:
        load_lesson(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message  # the file comes first
    assert "\n" not in message and "Traceback" not in message
    return message


# --- the shipped lessons -----------------------------------------------------------------------------


def test_lessons_are_shipped():
    assert LESSONS_DIR.is_dir()
    assert "arithmetic" in {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_every_shipped_lesson_validates(path):
    lesson = load_lesson(path)
    assert lesson.id == path.stem  # found by id as well as by path
    assert load_lesson(find_lesson(lesson.id, LESSONS_DIR)) == lesson
    assert lesson.questions and lesson.greeting and lesson.wrap_up
    assert len({q.id for q in lesson.questions}) == len(lesson.questions)
    lesson.greeting.format(name="Ada")  # the one placeholder the tutor fills in
    for question in lesson.questions:
        assert question.answers and question.explanation


def test_the_arithmetic_lesson_is_what_the_voice_tests_speak():
    lesson = load_lesson(find_lesson("arithmetic", LESSONS_DIR))
    first = lesson.questions[0]
    assert (first.prompt, first.kind, first.answers) == ("What is seven plus five?", "number", ["12"])
    assert "{name}" in lesson.greeting
    assert all(q.kind in ("number", "text") for q in lesson.questions)


def test_the_valid_example_loads(tmp_path):
    lesson = load_lesson(write(tmp_path, VALID))
    assert [q.id for q in lesson.questions] == ["q1", "q2"]
    assert lesson.questions[1].kind == "text" and lesson.questions[1].hints == []


# --- finding lessons ---------------------------------------------------------------------------------


def test_find_lesson_by_id_or_path(tmp_path):
    assert find_lesson("arithmetic", LESSONS_DIR) == LESSONS_DIR / "arithmetic.toml"
    path = write(tmp_path, VALID)
    assert find_lesson(str(path), LESSONS_DIR) == path


def test_unknown_lesson_id_names_the_known_ones():
    with pytest.raises(LessonError) as caught:
        find_lesson("astrophysics", LESSONS_DIR)
    message = str(caught.value)
    assert "'astrophysics'" in message and "arithmetic" in message


def test_missing_lesson_file(tmp_path):
    missing = tmp_path / "nope.toml"
    message = refused(missing)
    assert "cannot read" in message


# --- malformed lessons -------------------------------------------------------------------------------


def test_not_toml(tmp_path):
    message = refused(write(tmp_path, VALID + "\nthis is = = not toml\n"))
    assert "not valid TOML" in message


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(VALID.replace("All done.", "Fin de la leçon.").encode("latin-1"))
    assert "UTF-8" in refused(path)


@pytest.mark.parametrize("field", ["title", "greeting", "wrap_up", "questions"])
def test_missing_field_is_named(tmp_path, field):
    lines = VALID.split("\n[[questions]]")[0] if field == "questions" else VALID
    lines = "\n".join(line for line in lines.splitlines() if not line.startswith(f"{field} ="))
    message = refused(write(tmp_path, lines))
    assert field in message
    assert "required" in message.lower() or "missing" in message.lower()


def test_missing_question_field_is_named_with_its_position(tmp_path):
    message = refused(write(tmp_path, VALID.replace('explanation = "It is the sum."\n', "")))
    assert "questions.1" in message and "explanation" in message


@pytest.mark.parametrize(
    ("original", "broken", "where"),
    [
        ('objectives = ["Add small numbers"]', "objectives = 5", "objectives"),
        ('title = "A tiny lesson"', "title = 12", "title"),
        ('answers = ["sum"]', 'answers = "sum"', "questions.1.answers"),
        ('kind = "number"', 'kind = "essay"', "questions.0.kind"),
        ('hints = ["Make ten first."]', "hints = [1, 2]", "questions.0.hints"),
    ],
)
def test_wrong_type_is_named(tmp_path, original, broken, where):
    assert original in VALID
    message = refused(write(tmp_path, VALID.replace(original, broken)))
    assert where in message


def test_number_question_with_a_non_number_answer(tmp_path):
    message = refused(write(tmp_path, VALID.replace('answers = ["12"]', 'answers = ["a dozen-ish"]')))
    assert "questions.0" in message and "answers" in message and "'a dozen-ish'" in message
    assert "not a number" in message


def test_number_answers_may_be_written_any_way_a_number_is(tmp_path):
    for answer in ("12", "12.0", "24/2", "twelve"):
        lesson = load_lesson(write(tmp_path, VALID.replace('answers = ["12"]', f'answers = ["{answer}"]')))
        assert lesson.questions[0].answers == [answer]


def test_duplicate_question_ids(tmp_path):
    message = refused(write(tmp_path, VALID.replace('id = "q2"', 'id = "q1"')))
    assert "questions" in message and "'q1'" in message and "twice" in message


@pytest.mark.parametrize(
    ("original", "broken", "where"),
    [
        ('level = "ages 6 to 8"', 'level = "ages 6 to 8"\ncolour = "blue"', "colour"),
        ('hints = ["Make ten first."]', 'hints = ["Make ten first."]\nhint = "typo"', "questions.0.hint"),
    ],
)
def test_unknown_field_is_refused(tmp_path, original, broken, where):
    message = refused(write(tmp_path, VALID.replace(original, broken)))
    assert where in message
    assert "not permitted" in message or "unknown" in message.lower()


@pytest.mark.parametrize("greeting", ["Hello {nmae}!", "Hello {name!", "Hi {0}"])
def test_greeting_placeholders_the_tutor_cannot_fill_are_refused(tmp_path, greeting):
    """Only {name} is filled in: anything else would crash the tutor at the first word of the session."""
    message = refused(write(tmp_path, VALID.replace('greeting = "Hello {name}!"', f'greeting = "{greeting}"')))
    assert "greeting" in message


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ('id = "tiny"', 'id = "Tiny Lesson"'),
        ('prompt = "What is seven plus five?"', 'prompt = ""'),
        ('answers = ["12"]', "answers = []"),
    ],
)
def test_empty_or_malformed_values_are_refused(tmp_path, original, broken):
    refused(write(tmp_path, VALID.replace(original, broken)))


def test_nothing_of_a_bad_lesson_is_loaded(tmp_path):
    """Validation is whole: a lesson with one bad question is refused, not loaded without it."""
    path = write(tmp_path, VALID.replace('answers = ["sum"]', "answers = []"))
    with pytest.raises(LessonError):
        load_lesson(path)
