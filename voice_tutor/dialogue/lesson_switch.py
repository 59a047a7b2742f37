"""Moving between lessons: by voice at any time, and an offer of what comes next when a lesson is done.

:func:`lesson_request` recognises what a learner's words ask of the lesson
itself (pure text matching, consulted before any answer is judged);
:class:`LessonSwitcher` wraps the tutor of the lesson in progress (offline or
LLM) and acts on it: it opens the named lesson for the same learner (their
record is per skill, so nothing is lost), publishes
:class:`~voice_tutor.events.LessonChanged` so speech recognition and the
scene follow, and answers with the new lesson's opening.  When a lesson is
done it says so once and offers due reviews, the next lesson by prerequisites,
or any lesson the learner names; later turns get the choice again, never a
dead end.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from voice_tutor.dialogue.answers import Request, classify_request
from voice_tutor.dialogue.base import DialogueContext, Tutor
from voice_tutor.dialogue.lesson_tutor import LessonTutor
from voice_tutor.events import LessonChanged
from voice_tutor.learning.catalogue import Catalogue, short_title
from voice_tutor.learning.lessons import Lesson
from voice_tutor.learning.memory import LearnerMemory
from voice_tutor.learning.planner import next_question

_VERBS = r"(do|learn|try|study|practi[cs]e|switch to|change to|move on to|go on to|go to|start|have|work on)"
_SWITCH = re.compile(
    rf"\b((can|could|shall|may) we|let'?s|let us|i('d| would)? (like|want|wanna) to|i want|i'?d like|"
    rf"can i|could i) {_VERBS}\b|\b(switch|change) (to|lessons?)\b|\bteach me\b|\b(how|what) about\b|\binstead\b"
)
_WHATS_NEXT = re.compile(
    r"\bwhat('?s| is| comes)? next\b|\bnext lesson\b|\blessons? (are |is |comes )?next\b|"
    r"\bwhat (else|other lessons?)\b|\bwhat now\b|"
    r"\b(another|a different) lesson\b|\bwhich lessons?\b"
)
_YES = re.compile(r"^(yes|yeah|yep|sure|ok(ay)?|alright|all right|go on|sounds good|lets? (do|go)|"
                  r"why not|please|the (first|next) one)\b")
_NO = re.compile(r"^(no|nope|not now|not today|nothing|none)\b|\b(i'?m done|that'?s all|goodbye|bye)\b")


class Asks(Enum):
    SWITCH = "switch"
    WHATS_NEXT = "whats_next"
    YES = "yes"
    NO = "no"


@dataclass(frozen=True)
class LessonRequest:
    asks: Asks
    lesson: Lesson | None = None


def lesson_request(text: str, catalogue: Catalogue, current: Lesson, *, choosing: bool) -> LessonRequest | None:
    """What ``text`` asks of the lesson, if anything; ``choosing``: the learner was just offered lessons.

    Naming another lesson switches only with words that ask for it ("can we
    do", "let's", "instead"), so an answer that happens to contain a lesson's
    word is still judged as an answer; after an offer, the name alone is enough.
    """
    words = " ".join(text.lower().replace("’", "'").split())
    words = re.sub(r"[^\w' ]", " ", words)
    named = catalogue.named_in(words)
    if named is not None and named.id != current.id and (choosing or _SWITCH.search(words)):
        return LessonRequest(Asks.SWITCH, named)
    if _WHATS_NEXT.search(words):
        return LessonRequest(Asks.WHATS_NEXT)
    if choosing and _YES.search(words.strip()):
        return LessonRequest(Asks.YES)
    if choosing and _NO.search(words.strip()):
        return LessonRequest(Asks.NO)
    return None


@dataclass
class LessonStack:
    """One lesson's tutors for one learner: ``tutor`` answers (offline, or an LLM falling back to ``offline``)."""

    lesson: Lesson
    memory: LearnerMemory
    offline: LessonTutor
    tutor: Tutor


@dataclass(frozen=True)
class Progress:
    """The learner's record across lessons: lessons with skills due for review, lessons finished."""

    due: tuple[str, ...] = ()
    done: frozenset[str] = frozenset()


OpenLesson = Callable[[Lesson], Awaitable[LessonStack]]


class LessonSwitcher:
    """A :class:`~voice_tutor.dialogue.base.Tutor` over the lesson in progress, which can change lessons."""

    def __init__(self, catalogue: Catalogue, stack: LessonStack, open_lesson: OpenLesson,
                 progress: Callable[[], Awaitable[Progress]] | None = None,
                 on_switch: Callable[[LessonStack], None] | None = None):
        self.catalogue = catalogue
        self.stack = stack
        self._open_lesson = open_lesson
        self._progress = progress
        self._on_switch = on_switch or (lambda stack: None)
        self._finished: set[str] = set()
        """Lessons finished in this session (a learner the store does not remember has no other record)."""
        self._offered: list[Lesson] = []
        self._choosing = False
        """The tutor's last words offered lessons: a name alone, "yes" or "no" answer that offer."""

    @property
    def name(self) -> str:
        return self.stack.tutor.name

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        async for piece in self.stack.tutor.opening(context):
            yield piece

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        finished = self.stack.offline.finished
        choosing, self._choosing = finished or self._choosing, False
        request = lesson_request(learner_text, self.catalogue, self.stack.lesson, choosing=choosing)
        if request is not None and request.asks is Asks.SWITCH:
            async for piece in self.switch_to(request.lesson, context):
                yield piece
            return
        if request is not None and request.asks is Asks.YES and self._offered:
            async for piece in self.switch_to(self._offered[0], context):
                yield piece
            return
        if request is not None and request.asks is Asks.NO:
            question = self.stack.offline.current
            if not finished and question is not None:
                yield f"Okay, let's carry on. {question.prompt}"
            else:
                yield "Okay. You did well today. Whenever you want more, just name a lesson and we'll start it."
            return
        if finished or (request is not None and request.asks is Asks.WHATS_NEXT):
            yield await self.offer(lead=None if finished else "Sure.")
            return
        async for piece in self.stack.tutor.respond(learner_text, context):
            yield piece
        if self.stack.offline.finished and classify_request(learner_text) is not Request.STOP:
            yield " " + await self.offer(lead=None)  # said once, right after the lesson's wrap-up

    async def switch_to(self, lesson: Lesson, context: DialogueContext) -> AsyncIterator[str]:
        """Open ``lesson`` for the same learner and say its opening (``lesson`` already running: say so)."""
        if lesson.id == self.stack.lesson.id:
            yield f"We're doing {short_title(lesson)} already."
            return
        if self._completed():
            self._finished.add(self.stack.lesson.id)
        previous_outcome = self.stack.memory.outcome()
        self.stack = await self._open_lesson(lesson)
        self._offered = []
        self._on_switch(self.stack)
        vocabulary = " ".join(lesson.vocabulary)
        context.publish(LessonChanged(session_id=context.session_id, lesson_id=lesson.id, title=lesson.title,
                                      hotwords=vocabulary or None, language=lesson.answer_language,
                                      learner=context.learner_name, previous_outcome=previous_outcome))
        yield f"Okay, let's do {short_title(lesson)}. "
        async for piece in self.stack.tutor.opening(context):
            yield piece

    def _completed(self) -> bool:
        """Whether the lesson in progress was worked through (not just stopped): the planner has nothing left."""
        stack = self.stack
        return stack.offline.finished and next_question(stack.lesson, stack.memory.state) is None

    async def offer(self, lead: str | None) -> str:
        """What comes next: due reviews, the next lesson by prerequisites, any other lesson."""
        completed = self._completed()
        if completed:
            self._finished.add(self.stack.lesson.id)
        progress = await self._progress() if self._progress else Progress()
        current = self.stack.lesson
        done = set(progress.done) | self._finished
        due = [lesson for lesson_id in progress.due
               if lesson_id != current.id and (lesson := self.catalogue.get(lesson_id)) is not None]
        following = self.catalogue.next_after(current, done)
        others = [lesson for lesson in self.catalogue.lessons
                  if lesson.id != current.id and lesson not in due and lesson not in following[:1]]
        self._offered = [*due, *following[:1]] or others[:1]
        parts = [lead] if lead else []
        if completed:
            parts.append(f"We've finished {short_title(current)}.")
        elif self.stack.offline.finished:  # the learner stopped early
            parts.append(f"We've stopped {short_title(current)} for now.")
        if due:
            parts.append(f"It's time to review {_spoken([short_title(lesson) for lesson in due])}.")
        if following:
            parts.append(f"{'Or' if due else 'Next'} we could start {short_title(following[0])}.")
        if others:
            parts.append(f"You can also pick {_spoken([short_title(lesson) for lesson in others[:4]], 'or')}.")
        if not self.stack.offline.finished:
            parts.append(f"Or we can carry on with {short_title(current)}.")
        elif not self._offered:
            return " ".join([*parts, "That's every lesson I have. Well done!"])
        self._choosing = True
        return " ".join([*parts, "Which would you like?"])


def _spoken(items: list[str], last: str = "and") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"
