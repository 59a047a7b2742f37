"""The offline tutor: a lesson file and the learner's memory drive the exchange.

It greets the learner (by name, with what is due and what was hard last
time), asks what the planner chooses, checks spoken answers, answers known
misconceptions with targeted feedback, gives graduated hints before any
explanation, applies the lesson's rules (confusion, frustration, asking for
the answer, off-topic talk, the learner's own questions), and records every
resolved question in the learner model.  It needs no network and answers
instantly, so it is the default and the fallback when an LLM endpoint is down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from voice_tutor.dialogue.answers import Request, check_answer, classify_request, detect_trigger
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.dialogue.lesson_qa import LessonQA
from voice_tutor.learning.lessons import Lesson, Question
from voice_tutor.learning.mastery import is_mastered
from voice_tutor.learning.memory import LearnerMemory, MasteryChange, mastery_event
from voice_tutor.learning.planner import knowledge_gaps, next_question, recommend_resources

_PRAISE = ["That's right!", "Yes, well done!", "Correct, nice work!", "Exactly right!"]


@dataclass
class _Attempt:
    """The state of the question being asked."""

    question: Question
    wrong: int = 0
    hints: int = 0
    answer_requests: int = 0


def _join(*parts: str | None) -> str:
    return " ".join(part.strip() for part in parts if part and part.strip())


class LessonTutor:
    name = "offline lesson tutor"

    def __init__(self, lesson: Lesson, memory: LearnerMemory | None = None):
        self.lesson = lesson
        self.memory = memory or LearnerMemory(lesson, None, None)
        self._qa = LessonQA(lesson)
        self._attempt: _Attempt | None = None
        self.finished = False
        self.correct_count = 0

    @property
    def current(self) -> Question | None:
        return None if self._attempt is None else self._attempt.question

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        name = context.learner_name
        parts = [self.lesson.greeting.format(name=name)]
        state = self.memory.state
        if self.memory.returning:
            skill_names = {skill.id: skill.name for skill in self.lesson.skills}
            due = [skill_names[s] for s in state.due if s in skill_names]
            gaps = knowledge_gaps(self.lesson, state)
            if due:
                parts.append(f"Welcome back! It's time to review {_spoken_list(due)}.")
            if gaps:
                parts.append(f"Last time, {_spoken_list([g.name for g in gaps])} still felt tricky, so we'll practise it.")
                resources = recommend_resources(self.lesson, gaps, limit=1)
                if resources:
                    parts.append(f"If you want more later, try \"{resources[0].title}\".")
        parts.append(self._ask_next(name))
        yield _join(*parts)

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        yield await self._reply(learner_text.strip(), context)

    def _ask_next(self, name: str = "friend") -> str:
        plan = next_question(self.lesson, self.memory.state)
        if plan is None:
            self.finished = True
            self._attempt = None
            return self.lesson.wrap_up
        self._attempt = _Attempt(plan.question)
        self.memory.note_asked(plan.question)
        intro = self.lesson.review_intro if plan.reason == "review" else None
        return _join(intro.format(name=name) if intro else None, plan.question.prompt)

    def _rule(self, trigger: str) -> str | None:
        skill = self.current.skill if self.current else None
        rule = self.lesson.rule_for(trigger, skill)
        return rule.say if rule else None

    async def _reply(self, text: str, context: DialogueContext) -> str:
        attempt = self._attempt
        if attempt is None and not self.finished:
            # Someone else greeted (an LLM that has since failed): start the lesson now.
            return _join("Let's begin.", self._ask_next(context.learner_name))
        if attempt is None:
            return _join("We have finished this lesson.", self.lesson.wrap_up)
        question = attempt.question
        if not text:
            return _join("Sorry, I didn't catch that.", question.prompt)
        request = classify_request(text)
        trigger = detect_trigger(text)
        verdict = check_answer(text, question.answers, question.kind, self.lesson.answer_language)
        if request is Request.STOP:
            self.finished = True
            self._attempt = None
            return _join(f"Okay, let's stop here. You got {self.correct_count} right.", self.lesson.wrap_up)
        if request is Request.REPEAT:
            return question.prompt
        if verdict.correct:
            return await self._on_correct(attempt, context)
        if trigger == "upset":
            return _join(self._rule("upset") or "It's okay, this is hard, and you're doing well to keep going.",
                         self._hint_or_explain(attempt) if attempt.hints < len(question.hints) else question.prompt)
        if trigger == "asks_for_answer":
            attempt.answer_requests += 1
            if attempt.answer_requests >= 2 and not self._must_withhold(attempt):
                return await self._reveal(attempt, context, self._rule("asks_for_answer_twice"))
            return _join("Let's work it out together.", self._hint_or_explain(attempt))
        if trigger == "does_not_understand":
            return _join(self._rule("does_not_understand"), self._hint_or_explain(attempt))
        if request is Request.HINT:
            return await self._hint_or_reveal(attempt, context)
        if verdict.understood:
            return await self._on_wrong(attempt, text, context)
        if request is Request.QUESTION:
            return self._answer_question(attempt, text)
        return _join(self._rule("off_topic") or "Let's stay with our question.", question.prompt)

    def _must_withhold(self, attempt: _Attempt) -> bool:
        """Socratic questions keep the answer until every hint has been given."""
        question = attempt.question
        socratic = question.socratic if question.socratic is not None else self.lesson.socratic
        return socratic and attempt.hints < len(question.hints)

    async def _on_correct(self, attempt: _Attempt, context: DialogueContext) -> str:
        self.correct_count += 1
        change = await self._resolve(attempt, context, "correct")
        praise = _PRAISE[self.correct_count % len(_PRAISE)]
        mastered = ""
        if change.mastered and not is_mastered(change.before):
            mastered = f"You've mastered {self.lesson.skill(change.skill_id).name}!"
        return _join(praise, mastered, self._next_with_transition(context))

    async def _on_wrong(self, attempt: _Attempt, text: str, context: DialogueContext) -> str:
        attempt.wrong += 1
        question = attempt.question
        feedback = "Not quite."
        for misconception in question.misconceptions:
            if check_answer(text, misconception.answers, question.kind, self.lesson.answer_language).correct:
                feedback = f"Not quite. {misconception.feedback}"
                break
        encouragement = self._rule("wrong_twice") if attempt.wrong == 2 else None
        if attempt.hints < len(question.hints):
            return _join(feedback, encouragement, self._hint_or_explain(attempt))
        return _join(feedback, await self._reveal(attempt, context, verdict="incorrect"))

    async def _hint_or_reveal(self, attempt: _Attempt, context: DialogueContext) -> str:
        if attempt.hints < len(attempt.question.hints):
            return self._hint_or_explain(attempt)
        return await self._reveal(attempt, context)

    def _hint_or_explain(self, attempt: _Attempt) -> str:
        question = attempt.question
        if attempt.hints < len(question.hints):
            hint = question.hints[attempt.hints]
            attempt.hints += 1
            again = "Try again." if question.prompt.endswith("?") else f"Try again: {question.prompt}"
            return _join(f"Here's a hint: {hint}", again)
        return _join("Think about it once more:", question.prompt)

    async def _reveal(self, attempt: _Attempt, context: DialogueContext, lead: str | None = None,
                      *, verdict: str = "revealed") -> str:
        await self._resolve(attempt, context, verdict)
        return _join(lead, attempt.question.explanation, self._next_with_transition(context))

    def _answer_question(self, attempt: _Attempt, text: str) -> str:
        # Never give away the answer to the question the learner is working on.
        result = self._qa.answer(text, withhold=[attempt.question.id])
        if result.text is None:
            return _join("That's a good question, and I don't know the answer from this lesson.",
                         "Let's get back to ours:", attempt.question.prompt)
        return _join(self._rule("asks_question"), result.text, "Now, back to our question:", attempt.question.prompt)

    async def _resolve(self, attempt: _Attempt, context: DialogueContext, verdict: str) -> MasteryChange:
        """Record the question's outcome (the learner's words of this turn, hints, first try) and publish it."""
        change = await self.memory.record_answer(
            attempt.question, verdict, hints_used=attempt.hints, first_try=attempt.wrong == 0,
            response=context.learner_text, turn_key=context.turn_id,
        )
        context.publish(mastery_event(change, context, self.lesson.skill(change.skill_id).name))
        return change

    def _next_with_transition(self, context: DialogueContext) -> str:
        text = self._ask_next(context.learner_name)
        return text if self.finished else _join("Next question.", text)


def _spoken_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"
