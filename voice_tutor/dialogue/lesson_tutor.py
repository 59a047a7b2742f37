"""The offline tutor: a lesson file drives a short spoken exchange.

Greet, ask, check the spoken answer, hint, explain, move on, wrap up.  It needs
no network and answers instantly, so it is the default and the fallback when
an LLM endpoint is down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from voice_tutor.dialogue.answers import Request, check_answer, classify_request
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.learning.lessons import Lesson, Question

_PRAISE = ["That's right!", "Yes, well done!", "Correct, nice work!", "Exactly right!"]


class LessonTutor:
    name = "offline lesson tutor"

    def __init__(self, lesson: Lesson):
        self.lesson = lesson
        self._index = 0
        self._hints_given = 0
        self.finished = False
        self.correct_count = 0

    @property
    def current(self) -> Question | None:
        return None if self.finished else self.lesson.questions[self._index]

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        yield f"{self.lesson.greeting.format(name=context.learner_name)} {self.lesson.questions[0].prompt}"

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        yield self._reply(learner_text.strip())

    def _reply(self, text: str) -> str:
        question = self.current
        if question is None:
            return f"We have finished this lesson. {self.lesson.wrap_up}"
        if not text:
            return f"Sorry, I didn't catch that. {question.prompt}"
        request = classify_request(text)
        verdict = check_answer(text, question.answers, question.kind)
        if request is Request.STOP:
            self.finished = True
            return f"Okay, let's stop here. You got {self.correct_count} right. {self.lesson.wrap_up}"
        if request is Request.REPEAT:
            return question.prompt
        if verdict.correct:
            self.correct_count += 1
            praise = _PRAISE[self.correct_count % len(_PRAISE)]
            return f"{praise} {self._advance()}"
        if request is Request.HINT or (verdict.understood and not verdict.correct):
            opener = "" if request is Request.HINT else "Not quite. "
            return opener + self._hint_or_explain(question)
        if request is Request.QUESTION:
            return f"That's a good question, but I can only help with this lesson right now. {question.prompt}"
        return f"Let's stay with our question. {question.prompt}"

    def _hint_or_explain(self, question: Question) -> str:
        if self._hints_given < len(question.hints):
            hint = question.hints[self._hints_given]
            self._hints_given += 1
            return f"Here's a hint: {hint} {_try_again(question)}"
        return f"{question.explanation} {self._advance()}"

    def _advance(self) -> str:
        self._hints_given = 0
        if self._index + 1 >= len(self.lesson.questions):
            self.finished = True
            return self.lesson.wrap_up
        self._index += 1
        return f"Next question. {self.lesson.questions[self._index].prompt}"


def _try_again(question: Question) -> str:
    return "Try again." if question.prompt.endswith("?") else f"Try again: {question.prompt}"
