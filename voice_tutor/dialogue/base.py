"""The one small interface every dialogue backend implements.

A tutor turns the learner's final transcript (plus the session's context) into
a stream of reply text.  Streams are async generators, so cancelling the task
that consumes one (barge-in) closes it, and a backend releases its resources
(an HTTP stream, say) in ``finally``/``async with``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


class DialogueUnavailable(RuntimeError):
    """The backend cannot answer at all right now (endpoint down, bad key)."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One learner turn and the tutor's answer to it, as the learner heard it.

    The opening has no learner words (``learner == ""``).
    """

    learner: str
    tutor: str
    heard: str
    cut: bool
    turn_id: int | None = None
    """The session turn of the tutor's answer (0: the opening), which a rating said aloud names."""


@dataclass
class DialogueContext:
    """What a tutor may know about the conversation so far.

    ``publish`` lets a tutor report what it decided (a mastery update, a
    safety alert) on the session's event bus; the session sets it, and
    ``learner_name``, ``turn_id`` and ``learner_text`` before each reply
    (``learner_name``: who spoke, in a shared room the learner holding the floor).
    """

    session_id: str
    learner_name: str = "friend"
    history: deque[Exchange] = field(default_factory=lambda: deque(maxlen=20))
    publish: Callable[[object], None] = field(default=lambda event: None, repr=False)
    turn_id: int | None = None
    """The learner turn being answered (the session's id, which the record links answers to)."""
    learner_text: str = ""
    """What the learner said in that turn."""
    heard_confidence: float | None = None
    """How sure speech recognition was of the learner's latest turn (0-1); None when typed or unknown."""

    def record(self, exchange: Exchange) -> None:
        self.history.append(exchange)


class Tutor(Protocol):
    """A dialogue backend."""

    name: str

    def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        """What the tutor says when the session starts."""
        ...

    def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        """The reply to one learner turn, streamed as it is produced."""
        ...


class FallbackTutor:
    """Use ``primary``; when it is unavailable before saying anything, use ``fallback``.

    A dead LLM must not leave the learner in silence: the offline tutor answers
    instead and ``on_fallback`` tells whoever watches the session.
    """

    def __init__(self, primary: Tutor, fallback: Tutor, on_fallback=None):
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name} (falls back to {fallback.name})"
        self._on_fallback = on_fallback or (lambda error: log.warning("%s", error))

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        async for piece in self._guarded(self.primary.opening(context), self.fallback.opening(context)):
            yield piece

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        async for piece in self._guarded(
            self.primary.respond(learner_text, context),
            self.fallback.respond(learner_text, context),
        ):
            yield piece

    async def _guarded(self, primary: AsyncIterator[str], fallback: AsyncIterator[str]) -> AsyncIterator[str]:
        said_something = False
        try:
            async for piece in primary:
                said_something = True
                yield piece
        except DialogueUnavailable as error:
            self._on_fallback(error)
            if not said_something:
                async for piece in fallback:
                    yield piece
        finally:
            await fallback.aclose()  # type: ignore[attr-defined]


class PrefacedTutor:
    """Any ``Tutor`` whose opening starts with ``preface`` (the notice that the session is recorded)."""

    def __init__(self, inner: Tutor, preface: str):
        self.inner = inner
        self.name = inner.name
        self._preface = preface.strip()

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        yield self._preface + " "
        async for piece in self.inner.opening(context):
            yield piece

    def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        return self.inner.respond(learner_text, context)
