"""The lesson format: shipped lessons validate, every rule rejects a bad lesson at the right path, helpers work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from voice_tutor.config import ASSETS_DIR
from voice_tutor.dialogue.answers import check_answer
from voice_tutor.learning.lessons import TRIGGERS, LessonError, load_lesson

LESSONS = sorted((ASSETS_DIR / "lessons").glob("*.toml"))
NEW_LESSONS = ["fractions", "photosynthesis", "newtons-laws", "spanish-cafe"]

BASE = """\
id = "tiny"
title = "Tiny"
subject = "testing"
level = "anyone"
objectives = ["pass"]
vocabulary = ["alpha", "beta"]
greeting = "Hi {name}."
wrap_up = "Bye."

[[skills]]
id = "a"
name = "A"

[[skills]]
id = "b"
name = "B"
prerequisites = ["a"]

[[skills]]
id = "c"
name = "C"
prerequisites = ["b"]

[[questions]]
id = "q0"
skill = "a"
kind = "number"
prompt = "What is one plus one?"
answers = ["2"]
hints = ["Count on one from one."]
explanation = "One plus one is two."

[[questions.misconceptions]]
answers = ["11"]
feedback = "That is the two ones side by side, not added."

[[questions]]
id = "q1"
skill = "b"
prompt = "What do we call the answer to an addition?"
answers = ["sum"]
hints = ["It starts with S."]
explanation = "It is the sum."

[[questions]]
id = "q2"
skill = "c"
prompt = "Which is bigger, two thirds or two fifths?"
kind = "number"
answers = ["2/3"]
explanation = "Thirds are bigger pieces than fifths."

[[resources]]
id = "r"
kind = "reading"
title = "R"
url = "https://example.org/r"
skills = ["b", "c"]

[[resources]]
id = "sim"
kind = "simulation"
title = "S"
simulation = "pendulum"
parameters = { length = 1.0 }
skills = ["c"]

[[rules]]
when = "upset"
action = "encourage"
say = "You are doing well."

[[rules]]
when = "upset"
skill = "c"
say = "Fifths are tricky."
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return path


def edited(*replacements: tuple[str, str], prepend: str = "") -> str:
    text = BASE
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return prepend + text


def test_the_base_lesson_is_valid(tmp_path):
    lesson = load_lesson(write(tmp_path, BASE))
    assert [s.id for s in lesson.skills] == ["a", "b", "c"]


# --- shipped lessons --------------------------------------------------------------------------


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_every_shipped_lesson_validates(path):
    lesson = load_lesson(path)
    assert lesson.id == path.stem


def test_the_new_lessons_are_all_shipped():
    assert set(NEW_LESSONS) <= {p.stem for p in LESSONS}


@pytest.mark.parametrize("lesson_id", NEW_LESSONS)
def test_new_lessons_are_complete(lesson_id):
    lesson = load_lesson(ASSETS_DIR / "lessons" / f"{lesson_id}.toml")
    assert len(lesson.skills) >= 3 and any(s.prerequisites for s in lesson.skills)
    assert len(lesson.questions) >= 5 and len(lesson.vocabulary) >= 5
    for question in lesson.questions:
        assert question.hints and question.misconceptions, question.id
        assert check_answer(question.answers[0], question.answers, question.kind).correct
    for skill in lesson.skills:
        assert lesson.questions_for(skill.id) and lesson.resources_for(skill.id), skill.id
    anticipated = {rule.when for rule in lesson.rules}
    assert {"does_not_understand", "asks_for_answer_twice", "off_topic", "upset"} <= anticipated
    assert lesson.audience.proficiency is not None


def test_arithmetic_keeps_its_questions_for_the_current_tutor():
    lesson = load_lesson(ASSETS_DIR / "lessons" / "arithmetic.toml")
    assert [(q.id, q.answers) for q in lesson.questions] == [
        ("add-7-5", ["12"]),
        ("sub-15-6", ["9"]),
        ("add-8-9", ["17"]),
        ("word-sum", ["sum", "the sum", "total", "the total"]),
    ]
    assert lesson.prerequisites_closure("subtraction") == ["addition"]


def test_spanish_lesson_listens_for_spanish():
    lesson = load_lesson(ASSETS_DIR / "lessons" / "spanish-cafe.toml")
    assert lesson.answer_language == "es"
    order = next(q for q in lesson.questions if q.id == "order-coffee")
    assert check_answer("Un café, por favor.", order.answers, order.kind).correct


def test_the_pendulum_lesson_agrees_with_the_bridge_simulation():
    """The simulation resource starts, and it confirms the lesson's physics: 4x the length, 2x the period."""
    from xr_bridge.simulations import create

    lesson = load_lesson(ASSETS_DIR / "lessons" / "newtons-laws.toml")
    resource = next(r for r in lesson.resources_for("pendulum-period") if r.simulation)
    create(resource.simulation, resource.parameters)

    def period(length: float) -> float:
        sim = create("pendulum", {"length": length, "gravity": 9.8, "angle": 0.01})
        dt, crossings, previous = 1 / 2000, [], sim.state()["theta"]
        while len(crossings) < 3:
            sim.step(dt)
            theta = sim.state()["theta"]
            if previous > 0 >= theta:
                crossings.append(sim.t - dt * theta / (theta - previous))
            previous = theta
        return crossings[2] - crossings[1]

    assert period(4.0) / period(1.0) == pytest.approx(2.0, rel=1e-3)
    assert period(2.45) == pytest.approx(math.pi, rel=1e-3)


# --- each rule rejects a bad lesson, at the right path -----------------------------------------

BAD = {
    "unknown prerequisite": (
        edited(('prerequisites = ["a"]', 'prerequisites = ["z"]')),
        "skills.1.prerequisites.0: unknown skill 'z'",
    ),
    "prerequisite cycle": (
        edited(('id = "a"\nname = "A"\n', 'id = "a"\nname = "A"\nprerequisites = ["c"]\n')),
        "skills.0.prerequisites: prerequisites form a cycle: a -> c -> b -> a",
    ),
    "skill its own prerequisite": (
        edited(('prerequisites = ["a"]', 'prerequisites = ["a", "b"]')),
        "skills.1.prerequisites: prerequisites form a cycle: b -> b",
    ),
    "duplicate skill id": (
        edited(('id = "c"\nname = "C"', 'id = "b"\nname = "C"'), ('skill = "c"\nprompt', 'skill = "b"\nprompt')),
        "skills.2.id: skill id 'b' is used twice",
    ),
    "bad skill id": (edited(('id = "c"\nname = "C"', 'id = "C c"\nname = "C"')), "skills.2.id: String should match"),
    "question of an unknown skill": (
        edited(('skill = "c"\nprompt', 'skill = "zz"\nprompt')),
        "questions.2.skill: unknown skill 'zz' (declared: a, b, c)",
    ),
    "question without a skill": (
        edited(('skill = "b"\nprompt', "prompt")),
        "questions.1.skill: missing: the lesson declares skills",
    ),
    "skill without questions": (
        edited(('[[questions]]\nid = "q0"', '[[skills]]\nid = "d"\nname = "D"\n\n[[questions]]\nid = "q0"')),
        "skills.3: no question practises skill 'd'",
    ),
    "misconception not a number": (
        edited(('answers = ["11"]', 'answers = ["eleven", "lots"]')),
        "questions.0.misconceptions.0.answers.1: 'lots' of a number question is not a number",
    ),
    "misconception that is an accepted answer": (
        edited(('answers = ["11"]', 'answers = ["11", "2"]')),
        "questions.0.misconceptions.0.answers.1: '2' is accepted as a correct answer",
    ),
    "misconception without feedback": (
        edited(('feedback = "That is the two ones side by side, not added."', 'feedback = ""')),
        "questions.0.misconceptions.0.feedback: String should have at least 1 character",
    ),
    "socratic question without hints": (
        edited(('skill = "c"\nprompt', 'skill = "c"\nsocratic = true\nprompt')),
        "questions.2.hints: a Socratic question needs at least one hint",
    ),
    "socratic hint that gives the answer away": (
        edited(('hints = ["Count on one from one."]', 'hints = ["Count on.", "It is 2."]'), prepend="socratic = true\n"),
        "questions.0.hints.1: gives away the answer",
    ),
    "socratic text hint that gives the answer away": (
        edited(('hints = ["It starts with S."]', 'hints = ["It is the sum."]'), ('skill = "b"\nprompt', 'skill = "b"\nsocratic = true\nprompt')),
        "questions.1.hints.0: gives away the answer",
    ),
    "resource with url and simulation": (
        edited(('url = "https://example.org/r"', 'url = "https://example.org/r"\nsimulation = "pendulum"')),
        "resources.0.url: give exactly one of url and simulation",
    ),
    "resource with neither url nor simulation": (
        edited(('url = "https://example.org/r"\n', "")),
        "resources.0.url: give exactly one of url and simulation",
    ),
    "reading that runs a simulation": (
        edited(('kind = "simulation"', 'kind = "reading"')),
        "resources.1.simulation: only a simulation resource runs a simulation, not a reading",
    ),
    "parameters for a web page": (
        edited(('url = "https://example.org/r"', 'url = "https://example.org/r"\nparameters = { length = 2.0 }')),
        "resources.0.parameters: parameters are for a simulation the bridge runs",
    ),
    "resource url that is not http": (
        edited(('url = "https://example.org/r"', 'url = "ftp://example.org/r"')),
        "resources.0.url: String should match",
    ),
    "resource of an unknown skill": (
        edited(('skills = ["b", "c"]', 'skills = ["b", "nope"]')),
        "resources.0.skills.1: unknown skill 'nope'",
    ),
    "resource of no skill": (edited(('skills = ["b", "c"]', "skills = []")), "resources.0.skills: List should have at least 1 item"),
    "resource of an unknown kind": (edited(('kind = "reading"', 'kind = "podcast"')), "resources.0.kind: Input should be"),
    "unknown trigger": (edited(('when = "upset"\naction', 'when = "bored"\naction')), "rules.0.when: Input should be 'does_not_understand'"),
    "unknown action": (edited(('action = "encourage"', 'action = "dance"')), "rules.0.action: unknown action 'dance': no tutor can carry it out"),
    "rule for an unknown skill": (edited(('skill = "c"\nsay', 'skill = "q"\nsay')), "rules.1.skill: unknown skill 'q'"),
    "two rules for one trigger": (edited(('skill = "c"\nsay', "say")), "rules.1: a second rule for 'upset'"),
    "unknown placeholder": (edited(('greeting = "Hi {name}."', 'greeting = "Hi {nmae}."')), "greeting: Value error, unknown placeholder {nmae}"),
    "stray brace": (edited(('greeting = "Hi {name}."', 'greeting = "Hi {name."')), "greeting: Value error"),
    "review intro placeholder": (edited(prepend='review_intro = "Back, {learner}!"\n'), "review_intro: Value error, unknown placeholder {learner}"),
    "ages reversed": (edited(prepend="audience = { min_age = 12, max_age = 9 }\n"), "audience.max_age: 9 is below min_age 12"),
    "unknown proficiency": (edited(prepend='audience = { proficiency = "expert" }\n'), "audience.proficiency: Input should be"),
    "answer language not a code": (edited(prepend='answer_language = "spanish"\n'), "answer_language: String should match"),
    "duplicate vocabulary": (edited(('["alpha", "beta"]', '["alpha", "Alpha"]')), "vocabulary.1: term 'Alpha' is used twice"),
    "duplicate question id": (edited(('id = "q1"', 'id = "q0"')), "questions.1.id: question id 'q0' is used twice"),
    "misspelt field": (edited(('prerequisites = ["a"]', 'prereqs = ["a"]')), "skills.1.prereqs: Extra inputs are not permitted"),
}


@pytest.mark.parametrize("text, expected", BAD.values(), ids=BAD.keys())
def test_a_bad_lesson_is_rejected_naming_file_field_and_problem(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(LessonError) as caught:
        load_lesson(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_every_cross_reference_problem_is_reported_at_once(tmp_path):
    text = edited(('skill = "c"\nprompt', 'skill = "zz"\nprompt'), ('skills = ["b", "c"]', 'skills = ["b", "nope"]'))
    with pytest.raises(LessonError) as caught:
        load_lesson(write(tmp_path, text))
    assert "questions.2.skill" in str(caught.value) and "resources.0.skills.1" in str(caught.value)


def test_a_lesson_without_skills_is_one_skill_named_after_it(tmp_path):
    text = BASE.split("[[skills]]")[0] + '[[questions]]\nid = "q"\nprompt = "Say sum."\nanswers = ["sum"]\nexplanation = "Sum."\n'
    lesson = load_lesson(write(tmp_path, text))
    assert [(s.id, s.name) for s in lesson.skills] == [("tiny", "Tiny")]
    assert [q.id for q in lesson.questions_for("tiny")] == ["q"]

    wrong = text.replace('id = "q"\n', 'id = "q"\nskill = "other"\n')
    with pytest.raises(LessonError, match=r"questions\.0\.skill: unknown skill 'other' \(declared: tiny\)"):
        load_lesson(write(tmp_path, wrong))


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def tiny(tmp_path):
    return load_lesson(write(tmp_path, BASE))


def test_prerequisites_closure_lists_prerequisites_before_what_needs_them(tiny, tmp_path):
    assert tiny.prerequisites_closure("c") == ["a", "b"]
    assert tiny.prerequisites_closure("a") == []
    diamond = edited(
        ('prerequisites = ["b"]', 'prerequisites = ["b", "d"]'),
        ('[[questions]]\nid = "q0"', '[[skills]]\nid = "d"\nname = "D"\nprerequisites = ["a"]\n\n[[questions]]\nid = "q0"'),
        ('skill = "a"\nkind', 'skill = "d"\nkind'),
    ).replace('[[questions]]\nid = "q1"', '[[questions]]\nid = "qa"\nskill = "a"\nprompt = "Say sum."\nanswers = ["sum"]\nexplanation = "Sum."\n\n[[questions]]\nid = "q1"')
    lesson = load_lesson(write(tmp_path, diamond))
    assert lesson.prerequisites_closure("c") == ["a", "b", "d"]


def test_questions_and_resources_for_a_skill(tiny):
    assert [q.id for q in tiny.questions_for("b")] == ["q1"]
    assert [r.id for r in tiny.resources_for("c")] == ["r", "sim"]
    assert tiny.resources_for("a") == []
    with pytest.raises(KeyError):
        tiny.questions_for("zz")
    assert tiny.skill("b").prerequisites == ["a"]


def test_rule_for_prefers_the_skill_rule_and_falls_back_to_the_general_one(tiny):
    assert tiny.rule_for("upset").say == "You are doing well."
    assert tiny.rule_for("upset", "c").say == "Fifths are tricky."
    assert tiny.rule_for("upset", "b").say == "You are doing well."
    assert tiny.rule_for("off_topic") is None
    with pytest.raises(ValueError, match="unknown trigger"):
        tiny.rule_for("bored")
    assert "asks_for_answer_twice" in TRIGGERS


def test_a_question_may_override_the_lessons_socratic_setting(tmp_path):
    lesson = load_lesson(write(tmp_path, edited(('skill = "c"\nprompt', 'skill = "c"\nsocratic = false\nprompt'), prepend="socratic = true\n")))
    assert [lesson.is_socratic(q) for q in lesson.questions] == [True, True, False]


def test_a_socratic_hint_may_name_an_answer_the_prompt_already_offers(tmp_path):
    text = edited(
        ('answers = ["2/3"]\n', 'answers = ["2/3"]\nhints = ["Is two thirds made of bigger pieces?"]\n'),
        prepend="socratic = true\n",
    )
    question = load_lesson(write(tmp_path, text)).questions[2]
    assert question.hints == ["Is two thirds made of bigger pieces?"]
