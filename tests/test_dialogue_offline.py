"""The offline lesson tutor and spoken-answer checking (pure text, no models, no network)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from voice_tutor.dialogue.answers import Request, check_answer, classify_request, normalize, numbers_in, parse_number
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.dialogue.lesson_tutor import LessonTutor
from voice_tutor.learning.lessons import Lesson

PRAISE = ("That's right!", "Yes, well done!", "Correct, nice work!", "Exactly right!")

LESSON = {
    "id": "tiny",
    "title": "A tiny lesson",
    "subject": "mathematics",
    "level": "ages 6 to 8",
    "objectives": ["Add small numbers"],
    "greeting": "Hello {name}, let's add.",
    "wrap_up": "All done for today.",
    "questions": [
        {
            "id": "q1", "kind": "number", "prompt": "What is seven plus five?", "answers": ["12"],
            "hints": ["Seven needs three to make ten.", "Ten plus two."],
            "explanation": "Seven plus five is twelve.",
        },
        {
            "id": "q2", "kind": "number", "prompt": "Say three quarters as a fraction", "answers": ["3/4"],
            "explanation": "Three quarters is three over four.",
        },
        {
            "id": "q3", "kind": "text", "prompt": "What do we call the answer to an addition?",
            "answers": ["sum", "total"], "hints": ["It starts with S."],
            "explanation": "It is called the sum.",
        },
    ],
}


@pytest.fixture
def context() -> DialogueContext:
    return DialogueContext("s1", learner_name="Ada")


async def opened(context: DialogueContext, lesson: dict = LESSON) -> tuple[LessonTutor, str]:
    """A tutor that has greeted the learner (as every session starts), and what it said."""
    tutor = LessonTutor(Lesson.model_validate(lesson))
    opening = "".join([piece async for piece in tutor.opening(context)])
    return tutor, opening


async def say(tutor: LessonTutor, text: str, context: DialogueContext) -> str:
    return "".join([piece async for piece in tutor.respond(text, context)])


# --- the lesson flow -------------------------------------------------------------------------------


async def test_opening_greets_by_name_and_asks_the_first_question(context):
    tutor, opening = await opened(context)
    assert opening == "Hello Ada, let's add. What is seven plus five?"
    assert tutor.current.id == "q1" and not tutor.finished


async def test_wrong_answers_get_hints_then_the_explanation(context):
    tutor, _ = await opened(context)
    assert await say(tutor, "Eleven.", context) == "Not quite. Here's a hint: Seven needs three to make ten. Try again."
    assert await say(tutor, "13", context) == "Not quite. Here's a hint: Ten plus two. Try again."
    # Hints used up: explain, and move on.
    assert await say(tutor, "I think it's fourteen", context) == (
        "Not quite. Seven plus five is twelve. Next question. Say three quarters as a fraction"
    )
    assert tutor.current.id == "q2" and tutor.correct_count == 0


async def test_right_answer_is_praised_and_the_next_question_asked(context):
    tutor, _ = await opened(context)
    reply = await say(tutor, "Twelve.", context)
    assert reply.startswith(PRAISE) and reply.endswith("Next question. Say three quarters as a fraction")
    assert tutor.correct_count == 1 and tutor.current.id == "q2"


async def test_hints_restart_for_each_question(context):
    tutor, _ = await opened(context)
    await say(tutor, "eleven", context)  # one hint used on q1
    await say(tutor, "12", context)
    # q2 has no hints: a wrong answer is explained at once, and q3's hint is its first.
    assert await say(tutor, "one half", context) == (
        "Not quite. Three quarters is three over four. Next question. What do we call the answer to an addition?"
    )
    assert await say(tutor, "the product", context) == "Not quite. Here's a hint: It starts with S. Try again."


async def test_a_prompt_without_a_question_mark_is_repeated_with_try_again(context):
    lesson = dict(LESSON, questions=[dict(LESSON["questions"][1], hints=["Three out of four parts."])])
    tutor, _ = await opened(context, lesson)
    assert await say(tutor, "a half", context) == (
        "Not quite. Here's a hint: Three out of four parts. Try again: Say three quarters as a fraction"
    )


async def test_asking_for_a_hint_gives_one_without_judging(context):
    tutor, _ = await opened(context)
    assert await say(tutor, "Can you give me a hint?", context) == (
        "Here's a hint: Seven needs three to make ten. Try again."
    )
    assert await say(tutor, "I don't know", context) == "Here's a hint: Ten plus two. Try again."
    # No hints left: the explanation, and the next question.
    assert await say(tutor, "I'm stuck", context) == (
        "Seven plus five is twelve. Next question. Say three quarters as a fraction"
    )


async def test_repeat_says_the_question_again(context):
    tutor, _ = await opened(context)
    assert await say(tutor, "Can you say that again?", context) == "What is seven plus five?"
    assert await say(tutor, "What was the question?", context) == "What is seven plus five?"
    assert tutor.current.id == "q1"


async def test_silence_and_off_topic_keep_the_question(context):
    tutor, _ = await opened(context)
    assert await say(tutor, "   ", context) == "Sorry, I didn't catch that. What is seven plus five?"
    assert await say(tutor, "I like dogs", context) == "Let's stay with our question. What is seven plus five?"
    reply = await say(tutor, "Why is the sky blue?", context)
    assert reply.endswith("What is seven plus five?") and "twelve" not in reply.lower()
    assert tutor.current.id == "q1" and tutor.correct_count == 0


async def test_stop_ends_the_lesson_with_the_score(context):
    tutor, _ = await opened(context)
    await say(tutor, "twelve", context)
    assert await say(tutor, "Stop, I'm done.", context) == "Okay, let's stop here. You got 1 right. All done for today."
    assert tutor.finished and tutor.current is None
    assert await say(tutor, "twelve", context) == "We have finished this lesson. All done for today."


async def test_the_last_right_answer_wraps_up(context):
    tutor, _ = await opened(context)
    await say(tutor, "12", context)
    await say(tutor, "three quarters", context)
    reply = await say(tutor, "It's the sum.", context)
    assert reply.startswith(PRAISE) and reply.endswith("All done for today.")
    assert tutor.finished and tutor.correct_count == 3
    assert (await say(tutor, "Goodbye", context)).startswith("We have finished this lesson.")


async def test_a_right_answer_wins_over_a_hint_request(context):
    tutor, _ = await opened(context)
    reply = await say(tutor, "I don't know, is it twelve?", context)
    assert reply.startswith(PRAISE)


async def test_shipped_lesson_anticipates_a_misconception(context):
    from voice_tutor.config import Config
    from voice_tutor.learning.lessons import find_lesson, load_lesson

    lesson = load_lesson(find_lesson("arithmetic", Config().dialogue.lessons_dir))
    tutor = LessonTutor(lesson)
    opening = "".join([piece async for piece in tutor.opening(context)])
    question = lesson.questions[0]
    assert opening.endswith(question.prompt)
    reply = await say(tutor, "Eleven.", context)
    feedback = next(m.feedback for m in question.misconceptions if "11" in m.answers)
    assert reply == f"Not quite. {feedback} Here's a hint: {question.hints[0]} Try again."


async def test_a_tutor_that_did_not_greet_still_teaches(context):
    tutor = LessonTutor(Lesson.model_validate(LESSON))
    reply = await say(tutor, "twelve", context)
    assert not reply.startswith("We have finished this lesson.")
    assert not tutor.finished


# --- answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Twelve.", "12"),
        ("I think it's twelve!", "i think it s 12"),
        ("Seven plus five is twelve", "7 plus 5 is 12"),
        ("twenty-one", "21"),
        ("one hundred", "100"),
        ("three quarters", "3/4"),
        ("a half", "1/2"),
        ("three over four", "3/4"),
        ("3 out of 4", "3/4"),
        ("1,000 apples", "1000 apples"),
        ("It is 3.5.", "it is 3.5"),
        ("The SUM, of course.", "the sum of course"),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("twelve", [12]),
        ("12", [12]),
        ("I think it's twelve", [12]),
        ("Seven plus five is twelve", [7, 5, 12]),
        ("three quarters", [Fraction(3, 4)]),
        ("3/4", [Fraction(3, 4)]),
        ("0.5", [Fraction(1, 2)]),
        ("a half", [Fraction(1, 2)]),
        ("no numbers here", []),
        ("", []),
    ],
)
def test_numbers_in(text, expected):
    assert numbers_in(text) == expected


def test_parse_number_wants_exactly_one_number():
    assert parse_number("twelve") == 12
    assert parse_number("3/4") == Fraction(3, 4)
    assert parse_number("0.75") == Fraction(3, 4)
    assert parse_number("12 or 13") is None
    assert parse_number("none") is None


@pytest.mark.parametrize(
    ("said", "accepted", "correct"),
    [
        ("twelve", ["12"], True),
        ("12", ["12"], True),
        ("Twelve.", ["12"], True),
        ("I think it's twelve", ["12"], True),
        ("Is it 12?", ["12"], True),
        ("seven plus five is twelve", ["12"], True),  # the last number said is the answer
        ("eleven", ["12"], False),
        ("twelve, no, thirteen", ["12"], False),
        ("three quarters", ["3/4"], True),
        ("3/4", ["3/4"], True),
        ("six eighths", ["3/4"], True),  # the same number
        ("0.75", ["3/4"], True),
        ("a half", ["3/4"], False),
    ],
)
def test_check_number_answers(said, accepted, correct):
    verdict = check_answer(said, accepted, "number")
    assert verdict.understood and verdict.correct is correct


@pytest.mark.parametrize("said", ["banana", "I like dogs", "", "um"])
def test_a_number_answer_without_a_number_is_not_understood(said):
    verdict = check_answer(said, ["12"], "number")
    assert not verdict.understood and not verdict.correct


@pytest.mark.parametrize(("said", "accepted"), [("two", ["2"]), ("It's one.", ["1"]), ("zero", ["0"])])
def test_small_number_words_are_numbers(said, accepted):
    """Numbers below three are words to text2num by default; they must still count as answers."""
    assert check_answer(said, accepted, "number").correct


@pytest.mark.parametrize(
    ("said", "correct"),
    [
        ("The sum.", True),
        ("sum", True),
        ("I think it's the total", True),
        ("the summ", True),  # a near miss of the recognizer still passes
        ("the difference", False),
        ("product", False),
    ],
)
def test_check_text_answers_fuzzily(said, correct):
    verdict = check_answer(said, ["sum", "the sum", "total"], "text")
    assert verdict.understood and verdict.correct is correct


@pytest.mark.parametrize("said", ["", "   ", "um", "uh, hmm", "Well, um."])
def test_fillers_are_not_a_text_answer(said):
    verdict = check_answer(said, ["sum"], "text")
    assert not verdict.understood and not verdict.correct


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("Can you give me a hint?", Request.HINT),
        ("Help me please", Request.HINT),
        ("I don't know", Request.HINT),
        ("I do not understand", Request.HINT),
        ("I'm stuck.", Request.HINT),
        ("No idea", Request.HINT),
        ("Can you repeat that?", Request.REPEAT),
        ("Say that again", Request.REPEAT),
        ("What was the question?", Request.REPEAT),
        ("Pardon?", Request.REPEAT),
        ("Stop.", Request.STOP),
        ("I'm done", Request.STOP),
        ("Goodbye!", Request.STOP),
        ("That's enough for today", Request.STOP),
        ("Why do we make ten first?", Request.QUESTION),
        ("How do fractions work?", Request.QUESTION),
        ("Twelve.", None),
        ("I think it's twelve", None),
        ("Is it twelve?", None),
        ("The bus stopped", None),
    ],
)
def test_classify_request(said, expected):
    assert classify_request(said) is expected
