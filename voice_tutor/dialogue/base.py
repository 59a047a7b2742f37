"""The one small interface every dialogue backend implements.

A tutor turns the learner's final transcript (plus the session's context) into
a stream of reply text.  Streams are async generators, so cancelling the task
that consumes one (barge-in) closes it, and a backend releases its resources
(an HTTP stream, say) in ``finally``/``async with``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


class DialogueUnavailable(RuntimeError):
    """The backend cannot answer at all right now (endpoint down, bad key).

    ``kind`` names the cause in one word a dashboard can group by
    (``timeout``, ``unreachable``, ``http_error``, ``context_overflow``,
    ``empty_reply``, ``circuit_open``...); the message says it for a person.
    """

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


class HoldingPhrase(str):
    """Words said only to fill a wait ("Let me think."): they do not count as the tutor's answer.

    A backend that fails after yielding only these still falls back.
    """


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


Probe = Callable[[], Awaitable[None]]
"""Raises if the backend still cannot answer; returns when it can."""


class CircuitBreaker:
    """Stops calling a backend that keeps failing, and probes it in the background until it is back.

    After ``failures_to_open`` failures in a row the circuit opens: every turn
    goes straight to the fallback (no waiting on a dead endpoint).  A turn that
    comes at least ``cooldown_s`` after the last probe starts one more probe in
    the background (the turn itself is not kept waiting); the first probe that
    succeeds closes the circuit.  Probes run only while turns come, so nothing
    outlives a finished session.
    """

    def __init__(self, probe: Probe, *, failures_to_open: int = 2, cooldown_s: float = 30.0):
        if failures_to_open < 1 or cooldown_s <= 0:
            raise ValueError("a circuit breaker needs failures_to_open >= 1 and cooldown_s > 0")
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self._probe = probe
        self._failures = 0
        self._open = False
        self._last_probe = 0.0
        self._prober: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self._open

    def allow(self) -> bool:
        """Whether to try the backend for this turn; while open, maybe start a background probe."""
        if not self._open:
            return True
        probing = self._prober is not None and not self._prober.done()
        if not probing and time.monotonic() - self._last_probe >= self.cooldown_s:
            self._last_probe = time.monotonic()
            self._prober = asyncio.get_running_loop().create_task(self._probe_once(), name="llm-probe")
        return False

    def succeeded(self) -> None:
        self._failures = 0
        self._open = False

    def failed(self) -> None:
        self._failures += 1
        if self._failures >= self.failures_to_open and not self._open:
            self._open = True
            self._last_probe = time.monotonic()
            log.warning("circuit opened after %d failures in a row; probing every %g s", self._failures, self.cooldown_s)

    async def _probe_once(self) -> None:
        try:
            await self._probe()
        except Exception as error:  # still down: stay open, probe again after the cooldown
            log.info("probe failed: %s", error)
            self._last_probe = time.monotonic()
            return
        log.info("circuit closed: the backend answers again")
        self.succeeded()

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            self._prober = None


class FallbackTutor:
    """Use ``primary``; when it is unavailable before saying anything, use ``fallback``.

    A dead LLM must not leave the learner in silence: the offline tutor answers
    instead and ``on_fallback`` receives the :class:`DialogueUnavailable` (its
    message and ``kind``) for whoever watches the session.  With a ``breaker``,
    a primary that keeps failing is not tried at all until its probe succeeds;
    those turns are reported as fallbacks of kind ``circuit_open``.  Holding
    phrases the primary said before failing do not count as an answer.
    """

    def __init__(self, primary: Tutor, fallback: Tutor, on_fallback=None, breaker: CircuitBreaker | None = None):
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker
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
            if self.breaker is not None and not self.breaker.allow():
                raise DialogueUnavailable(
                    f"{self.primary.name} failed {self.breaker.failures_to_open} times in a row; "
                    "not tried until a background probe succeeds", kind="circuit_open")
            async for piece in primary:
                said_something = said_something or not isinstance(piece, HoldingPhrase)
                yield piece
            if self.breaker is not None:
                self.breaker.succeeded()
        except DialogueUnavailable as error:
            if self.breaker is not None and error.kind != "circuit_open":
                self.breaker.failed()
            self._on_fallback(error)
            if not said_something:
                async for piece in fallback:
                    yield piece
        finally:
            await primary.aclose()  # type: ignore[attr-defined]
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
