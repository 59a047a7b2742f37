"""Writes a session's conversation to the store as it happens.

A learner's words are stored as soon as their turn ends, the tutor's opening
and replies (with what was heard when cut) as soon as they stop playing, one write at a
time in order, off the event loop.  A crash loses at most the turn in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from voice_tutor.events import Event, FinalTranscript, TurnCompleted, TutorSpeechEnded
from voice_tutor.store import Store

log = logging.getLogger(__name__)


class TurnRecorder:
    def __init__(self, store: Store, learner: str, lesson_id: str,
                 redact: Callable[[str | None], str | None] | None = None):
        """``redact`` is applied to every text before it is stored (privacy settings)."""
        self._store = store
        self._redact = redact or (lambda text: text)
        self._learner = learner
        self._lesson_id = lesson_id
        self.session_id: int | None = None

    async def run(self, events: asyncio.Queue[Event]) -> None:
        """Record until cancelled; call :meth:`close` to drain and end the session."""
        self.session_id = await asyncio.to_thread(self._store.start_session, self._learner, self._lesson_id)
        self._events = events
        while True:
            await self._record(await events.get())

    async def close(self) -> None:
        while self.session_id is not None and not self._events.empty():
            await self._record(self._events.get_nowait())
        if self.session_id is not None:
            await asyncio.to_thread(self._store.end_session, self.session_id)

    async def _record(self, event: Event) -> None:
        now = datetime.now(UTC)
        try:
            match event:
                case FinalTranscript():
                    await asyncio.to_thread(
                        self._store.add_turn, self.session_id, "learner", self._redact(event.text), ended_at=now
                    )
                case TutorSpeechEnded(turn_id=0):  # the opening: greeting, reviews due, first question
                    await asyncio.to_thread(
                        self._store.add_turn, self.session_id, "tutor", self._redact(event.text),
                        heard=self._redact(event.heard), cut=event.cut, ended_at=now,
                    )
                case TurnCompleted():
                    await asyncio.to_thread(
                        self._store.add_turn, self.session_id, "tutor", self._redact(event.tutor),
                        heard=self._redact(event.heard), cut=event.cut, ended_at=now, latency_ms=event.latency_ms,
                    )
        except Exception:  # the conversation goes on even if the disk is full
            log.exception("could not store a turn")
