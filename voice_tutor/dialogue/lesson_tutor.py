"""The offline tutor: a lesson file and the learner's memory drive the exchange.

It greets the learner (by name, with what is due and what was hard last
time), asks what the planner chooses, works out what each turn is before
judging it (``intent.understand``: only one asserted answer is graded; a
hedged list is asked to pick one, a doubtful hearing is confirmed), checks
spoken answers, answers known misconceptions with targeted feedback, gives
graduated hints before any explanation, applies the lesson's rules (confusion, frustration, asking for
the answer, off-topic talk, the learner's own questions), and records every
resolved question in the learner model.  It needs no network and answers
instantly, so it is the default and the fallback when an LLM endpoint is down.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from rapidfuzz import fuzz

from voice_tutor.dialogue.answers import Request, check_answer, normalize, parse_number
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.dialogue.intent import Intent, Understanding, answer_words, spoken_number, understand
from voice_tutor.dialogue.lesson_qa import LessonQA
from voice_tutor.dialogue.rule_actions import SceneError, SceneModels, check_scene_parameters, start_simulation
from voice_tutor.events import AnswerExpected
from voice_tutor.learning.lessons import Lesson, Question, Resource
from voice_tutor.learning.mastery import is_mastered
from voice_tutor.learning.memory import LearnerMemory, MasteryChange, mastery_event
from voice_tutor.learning.planner import knowledge_gaps, next_question, recommend_resources

_PRAISE = ["That's right!", "Yes, well done!", "Correct, nice work!", "Exactly right!"]

DEFAULT_ACTIONS = {
    "does_not_understand": "give_hint",
    "asks_for_answer_twice": "worked_example",
    "wrong_twice": "give_hint",
    "off_topic": "steer_back",
    "upset": "encourage",
    "asks_question": "answer_from_lesson",
}
"""What the tutor does on a trigger when the lesson has no rule for it, or a rule without an action."""
_DEFAULT_SAY = {
    "off_topic": "Let's stay with our question.",
    "upset": "It's okay, this is hard, and you're doing well to keep going.",
}


@dataclass
class _Attempt:
    """The state of the question being asked."""

    question: Question
    wrong: int = 0
    hints: int = 0
    answer_requests: int = 0
    unconfirmed: Understanding | None = None
    """An answer the tutor asked the learner to confirm ("Did you say twelve?"), until they do."""
    answered: str = ""
    """The learner's words of the answer being graded, for the record of the assessment."""


def _join(*parts: str | None) -> str:
    return " ".join(part.strip() for part in parts if part and part.strip())


class LessonTutor:
    name = "offline lesson tutor"

    def __init__(self, lesson: Lesson, memory: LearnerMemory | None = None, *, scene: SceneModels | None = None):
        """``scene``: the simulations the learner's scene runs (None: no scene, as in ``voice-tutor talk``)."""
        self.lesson = lesson
        self.memory = memory or LearnerMemory(lesson, None, None)
        self.scene = scene
        self._recommended: set[str] = set()
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
        self._announce_expected(context)
        yield _join(*parts)

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        reply = await self._reply(learner_text.strip(), context)
        self._announce_expected(context)
        yield reply

    def _announce_expected(self, context: DialogueContext) -> None:
        """Tell the session which answers to expect, so recognition is biased towards them."""
        question = self.current
        context.publish(AnswerExpected(
            session_id=context.session_id,
            question_id=question.id if question else None,
            words=tuple(answer_words(question)) if question else (),
        ))

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

    async def _rule(self, trigger: str, attempt: _Attempt, context: DialogueContext, text: str = "") -> str:
        """The lesson's rule for ``trigger``: its words, then its action carried out.

        Without a rule (or a rule without an action) the trigger's usual move
        (:data:`DEFAULT_ACTIONS`) is made.
        """
        rule = self.lesson.rule_for(trigger, attempt.question.skill)
        say = rule.say if rule else _DEFAULT_SAY.get(trigger)
        action = rule.action if rule and rule.action else DEFAULT_ACTIONS[trigger]
        if action == "answer_from_lesson":
            result = self._qa.answer(text, withhold=[attempt.question.id])  # never the answer being worked on
            if result.text is None:
                return _join("That's a good question, and I don't know the answer from this lesson.",
                             "Let's get back to ours:", attempt.question.prompt)
            return _join(say, result.text, "Now, back to our question:", attempt.question.prompt)
        if action == "start_simulation":
            started = self._start_simulation(attempt, context)
            if started is None:  # no scene here: never promise what nobody will see
                return _join(self._resource_line(attempt, prefer_simulation=True), attempt.question.prompt)
            return _join(say, "Then tell me:", attempt.question.prompt)
        return _join(say, await self._carry_out(action, attempt, context, reveal_when_out=trigger == "wrong_twice"))

    async def _carry_out(self, action: str, attempt: _Attempt, context: DialogueContext, *,
                         reveal_when_out: bool) -> str:
        """What the tutor says after a rule's words to carry out a teaching move."""
        question = attempt.question
        if action in ("give_hint", "explain_with_analogy"):  # an analogy is tied back with the next hint
            if reveal_when_out and attempt.hints >= len(question.hints):
                return await self._reveal(attempt, context, verdict="incorrect")
            return self._hint_or_explain(attempt)
        if action == "worked_example":
            if self._must_withhold(attempt):
                return _join("Let's work it out together.", self._hint_or_explain(attempt))
            return await self._reveal(attempt, context)
        if action == "encourage":
            return self._hint_or_explain(attempt) if attempt.hints < len(question.hints) else question.prompt
        if action == "recommend_resource":
            return _join(self._resource_line(attempt), "Now, back to our question:", question.prompt)
        return question.prompt  # steer_back

    def _start_simulation(self, attempt: _Attempt, context: DialogueContext) -> Resource | None:
        """Start the scene simulation for the question's skill; None when this session has no scene for it."""
        if self.scene is None:
            return None
        for resource in self._skill_resources(attempt):
            if resource.simulation is None:
                continue
            try:
                check_scene_parameters(self.scene, resource.simulation, resource.parameters)
            except SceneError:
                continue
            context.publish(start_simulation(resource, context.session_id))
            return resource
        return None

    def _skill_resources(self, attempt: _Attempt) -> list[Resource]:
        skill = attempt.question.skill
        return self.lesson.resources_for(skill) if skill else list(self.lesson.resources)

    def _resource_line(self, attempt: _Attempt, *, prefer_simulation: bool = False) -> str | None:
        """A resource for the question's skill to try later, one not recommended yet first."""
        openable = [r for r in self._skill_resources(attempt) if r.simulation is None]  # no scene needed
        resources = openable or self._skill_resources(attempt)
        if prefer_simulation:
            resources = [r for r in resources if r.kind == "simulation"] or resources
        if not resources:
            return None
        resource = next((r for r in resources if r.id not in self._recommended), resources[0])
        self._recommended.add(resource.id)
        return f"Have a look at \"{resource.title}\" later; it helps with this."

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
        language = self.lesson.answer_language
        if attempt.unconfirmed is not None:
            unconfirmed, attempt.unconfirmed = attempt.unconfirmed, None
            confirmed = _yes_or_no(text)
            if confirmed is True:
                return await self._grade(attempt, unconfirmed, context)
            if confirmed is False:
                return _join("Okay, sorry I misheard.", "What is your answer?")
        heard = understand(text, question, language, confidence=context.heard_confidence)
        match heard.intent:
            case Intent.EMPTY:
                return _join("Sorry, I didn't catch that.", question.prompt)
            case Intent.ANSWER:
                attempt.answered = text
                return await self._grade(attempt, heard, context)
            case Intent.CHOOSE:
                return self._ask_to_choose(heard)
            case Intent.CONFIRM:
                attempt.unconfirmed = heard
                attempt.answered = text
                return f"Did you say {self._spoken(heard.candidates[0])}?"
            case Intent.REQUEST:
                return await self._on_request(attempt, heard, context)
            case Intent.QUESTION:
                return await self._rule("asks_question", attempt, context, text)
            case Intent.FEEDBACK:
                return _join("Thank you for telling me.", "Back to our question:", question.prompt)
            case Intent.SOCIAL:
                return _join("Whenever you're ready:", question.prompt)
        return await self._rule("off_topic", attempt, context)

    async def _grade(self, attempt: _Attempt, heard: Understanding, context: DialogueContext) -> str:
        question = attempt.question
        verdict = check_answer(heard.graded_text, question.answers, question.kind, self.lesson.answer_language)
        if verdict.correct:
            return await self._on_correct(attempt, context)
        return await self._on_wrong(attempt, heard.graded_text, context)

    async def _on_request(self, attempt: _Attempt, heard: Understanding, context: DialogueContext) -> str:
        question = attempt.question
        if heard.request is Request.STOP:
            self.finished = True
            self._attempt = None
            return _join(f"Okay, let's stop here. You got {self.correct_count} right.", self.lesson.wrap_up)
        if heard.request is Request.REPEAT:
            return question.prompt
        if heard.request is Request.SLOWER:
            return _join("Of course. Here it is again:", question.prompt)
        if heard.trigger == "upset":
            return await self._rule("upset", attempt, context)
        if heard.trigger == "asks_for_answer" or heard.request is Request.SKIP:
            attempt.answer_requests += 1
            if attempt.answer_requests >= 2 and not self._must_withhold(attempt):
                return await self._rule("asks_for_answer_twice", attempt, context)
            return _join("Let's work it out together.", self._hint_or_explain(attempt))
        if heard.trigger == "does_not_understand":
            return await self._rule("does_not_understand", attempt, context)
        return await self._hint_or_reveal(attempt, context)

    def _ask_to_choose(self, heard: Understanding) -> str:
        """A hedged list or several options: nothing is graded until the learner picks one."""
        options = [self._spoken(candidate) for candidate in heard.candidates]
        if len(options) < 2:
            return "Tell me just one answer, the one you choose."
        return f"You said {_spoken_list(options, 'or')}. Which one is your answer?"

    def _spoken(self, answer: str) -> str:
        """A candidate as the tutor says it back: numbers in words, a known option as the lesson writes it."""
        question = self.current
        if question is None:
            return answer
        if question.kind == "number":
            return spoken_number(answer) if parse_number(answer) is not None else answer
        language = self.lesson.answer_language
        options = [*question.answers, *(a for m in question.misconceptions for a in m.answers)]
        heard = normalize(answer, language)
        best = max(options, key=lambda option: fuzz.ratio(heard, normalize(option, language)))
        if fuzz.ratio(heard, normalize(best, language)) >= 85:
            return best.strip("¿?¡! ")
        return answer

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
        if attempt.wrong == 2:
            return _join(feedback, await self._rule("wrong_twice", attempt, context))
        if attempt.hints < len(question.hints):
            return _join(feedback, self._hint_or_explain(attempt))
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


def _spoken_list(items: list[str], conjunction: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


_YES = {"yes", "yeah", "yep", "yup", "yes i did", "yeah i did", "uh huh", "mhm", "correct", "right", "that's right",
        "thats right", "exactly", "sí", "si", "yes please", "of course", "that's it", "thats it"}
_NO = {"no", "nope", "nah", "no i didn't", "no i didnt", "not really", "that's wrong", "wrong", "no no"}


def _yes_or_no(text: str) -> bool | None:
    """The learner's reply to "Did you say …?": True, False, or None when it is neither (a restated answer)."""
    words = " ".join(re.sub(r"[^\w' ]+", " ", text.lower().replace("\u2019", "'")).split())
    words = re.sub(r"^(?:um|uh|oh|well)\s+", "", words)
    if words in _YES or re.fullmatch(r"(yes|yeah|yep)( (i did|that's right|thats right|please|sir|miss))?", words):
        return True
    if words in _NO or re.fullmatch(r"(no|nope)( (i didn't|i didnt|sorry|that's wrong))?", words):
        return False
    return None
