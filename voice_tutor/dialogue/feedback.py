"""Ratings said aloud: "thumbs up", "that was helpful", "thumbs down", "that didn't help".

:func:`spoken_rating` is the pure phrase matcher: the whole utterance must
be a rating (a few fillers around it are fine), so a lesson answer that
merely contains "up", "helps" or a number never counts as one.
:class:`FeedbackTutor` wraps any tutor: a rating is acknowledged briefly,
published as a :class:`~voice_tutor.events.TurnRated` about the reply before
it (naming that reply's turn when the conversation knows it, so the learner's
page lights its thumb; the turn recorder stores it with that turn), and never
reaches the inner tutor as a lesson answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from voice_tutor.dialogue.base import DialogueContext, Tutor
from voice_tutor.events import TurnRated

_FILLER = r"(?:(?:oh|um+|uh+|er+|hmm+|well|ok|okay|yes|yeah|no|nope|so|i think|i'd say)\s+)*"
_AFTER = r"(?:\s+(?:thanks|thank you|thank you very much|for that|to that|from me|tutor))?"
_THAT = r"(?:that|this|it|your answer|your explanation|the explanation)"
_WAS = r"(?: was| is|'s|s)"
_VERY = r"(?:(?:very|really|so|super|quite)\s+)?"
_POSITIVE = (
    rf"thumbs? up|big thumbs up|"
    rf"{_THAT}{_WAS} {_VERY}(?:helpful|useful)|"
    rf"{_THAT} (?:really )?(?:helped|helps)(?: me)?(?: a lot)?|"
    rf"(?:very|really|super) helpful"
)
_NEGATIVE = (
    rf"thumbs? down|"
    rf"{_THAT} (?:did not|didn't|didnt|does not|doesn't|doesnt) (?:really )?help(?: me)?(?: at all)?|"
    rf"{_THAT}(?:{_WAS} not| wasn't| wasnt| isn't| isnt) {_VERY}(?:helpful|useful)(?: at all)?|"
    rf"{_THAT}{_WAS} (?:unhelpful|useless)|"
    rf"(?:not |un)helpful(?: at all)?"
)
_RATING = re.compile(rf"{_FILLER}(?:(?P<down>{_NEGATIVE})|(?P<up>{_POSITIVE})){_AFTER}")

ACKNOWLEDGEMENTS = {
    1: "Thanks, I'm glad that helped!",
    -1: "Thanks for telling me. I'll try to explain things better.",
}
"""What the tutor says to a rating said aloud."""


def _normalized(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("-", " ")
    text = re.sub(r"[^\w' ]+", " ", text)
    return " ".join(text.split())


def spoken_rating(text: str) -> int | None:
    """+1 or -1 when the learner's whole turn is a rating of the tutor's last reply, else None."""
    match = _RATING.fullmatch(_normalized(text))
    if match is None:
        return None
    return -1 if match["down"] else 1


class FeedbackTutor:
    """Any ``Tutor``; a learner turn that rates the previous reply is acknowledged, not answered."""

    def __init__(self, inner: Tutor):
        self.inner = inner
        self.name = inner.name

    def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        return self.inner.opening(context)

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        rating = spoken_rating(learner_text)
        if rating is None:
            async for piece in self.inner.respond(learner_text, context):
                yield piece
            return
        rated = context.history[-1].turn_id if context.history else None
        context.publish(TurnRated(session_id=context.session_id, rating=rating, turn_id=rated, source="voice"))
        yield ACKNOWLEDGEMENTS[rating]

