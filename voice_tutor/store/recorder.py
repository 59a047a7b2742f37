"""Writes a session's conversation to the store as it happens.

A learner's words are stored as soon as their turn ends, the tutor's opening
and replies (with what was heard when cut) as soon as they stop playing, one write at a
time in order, off the event loop.  A crash loses at most the turn in flight.

The learner's feedback is stored with what it is about: a rating
(:class:`~voice_tutor.events.TurnRated`) on the stored tutor turn it names
(the latest rating of a turn replaces earlier ones; one given before the turn
is stored waits for it), a survey on the stored session.  With ``recordings``
(a folder: the learner consented, ``[privacy] record_audio``) each spoken
learner turn is also kept as a WAV file linked from its stored turn.

In a session several learners share, each has a recorder (``speaker``): it
keeps that learner's own turns and the tutor's replies to them; the opening
goes to the learner it greeted (``opening``); a rating or survey to whoever
gave it (or, when the event does not say, to whoever spoke last).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from voice_tutor.events import (
    Event,
    FinalTranscript,
    LessonChanged,
    SurveyAnswered,
    TurnCompleted,
    TurnRated,
    TutorSpeechEnded,
)
from voice_tutor.store import Store
from voice_tutor.store.recordings import recording_path, write_recording

log = logging.getLogger(__name__)


class TurnRecorder:
    def __init__(self, store: Store, learner: str, lesson_id: str,
                 redact: Callable[[str | None], str | None] | None = None,
                 recordings: Path | None = None, *, speaker: str | None = None,
                 session_id: int | None = None, opening: bool = True,
                 on_new_session: Callable[[int], None] = lambda session_id: None):
        """``redact`` is applied to every text before it is stored (privacy settings);
        ``recordings`` is where spoken turns are kept as WAV files (None: nothing is recorded).
        ``speaker`` is the name the session stamps this learner's turns with (default: ``learner``);
        ``session_id`` a stored session already started for them (default: one is started);
        ``opening``: whether the tutor's opening was addressed to them;
        ``on_new_session`` is told the stored session a lesson switch moves them to."""
        self._store = store
        self._redact = redact or (lambda text: text)
        self._learner = learner
        self._speaker = speaker or learner
        self._lesson_id = lesson_id
        self._recordings = recordings
        self._opening = opening
        self._on_new_session = on_new_session
        self.session_id: int | None = session_id
        self._last_speaker: str | None = None
        """Who spoke the latest learner turn of the session (a rating said aloud is theirs)."""
        self._in_flight: asyncio.Future[None] | None = None
        self._events: asyncio.Queue[Event] | None = None
        self._tutor_turns: dict[int, int] = {}
        """Session turn id -> stored turn id, for the tutor's replies (0: the opening)."""
        self._last_tutor_turn: int | None = None
        """The stored id of the tutor's latest reply (what a rating said aloud is about)."""
        self._pending_ratings: dict[int, int] = {}
        """Ratings of replies not stored yet (still playing), by session turn id."""

    async def run(self, events: asyncio.Queue[Event]) -> None:
        """Record until cancelled; call :meth:`close` to drain and end the session."""
        self._events = events
        if self.session_id is None:
            self.session_id = await asyncio.to_thread(self._store.start_session, self._learner, self._lesson_id)
        while True:
            event = await events.get()
            # Shielded: cancelling the recorder mid-write must not drop that write (a cancelled
            # to_thread call that had not started yet would never run); close() awaits it.
            self._in_flight = asyncio.ensure_future(self._record(event))
            await asyncio.shield(self._in_flight)

    async def close(self, outcome: str | None = None) -> None:
        """Store what is still queued and end the session (``outcome``: how the lesson stood, ``store.OUTCOMES``)."""
        if self._in_flight is not None:
            await asyncio.gather(self._in_flight, return_exceptions=True)
        while self.session_id is not None and self._events is not None and not self._events.empty():
            await self._record(self._events.get_nowait())
        if self._pending_ratings:
            log.info("%d ratings of replies that were never stored are dropped", len(self._pending_ratings))
        if self.session_id is not None:
            await asyncio.to_thread(self._store.end_session, self.session_id, outcome=outcome)

    def _mine(self, speaker: str | None) -> bool:
        """Whether an event of ``speaker`` (None: it does not say) is this learner's."""
        return (speaker or self._last_speaker or self._speaker) == self._speaker

    async def _record(self, event: Event) -> None:
        now = datetime.now(UTC)
        try:
            match event:
                case FinalTranscript():
                    self._last_speaker = event.speaker or self._last_speaker
                    if self._mine(event.speaker):
                        await self._learner_turn(event, now)
                case TutorSpeechEnded(turn_id=0):  # the opening: greeting, reviews due, first question
                    if self._opening:
                        await self._tutor_turn(0, event.text, event.heard, event.cut, now)
                case TurnCompleted() if self._mine(event.speaker):
                    await self._tutor_turn(event.turn_id, event.tutor, event.heard, event.cut, now,
                                           latency_ms=event.latency_ms)
                case TurnRated() | SurveyAnswered() if not self._mine(event.learner):
                    pass  # another learner's
                case TurnRated(turn_id=None):
                    if self._last_tutor_turn is not None:
                        await asyncio.to_thread(self._store.set_rating, self._last_tutor_turn, event.rating)
                case TurnRated(turn_id=turn_id) if turn_id in self._tutor_turns:
                    await asyncio.to_thread(self._store.set_rating, self._tutor_turns[turn_id], event.rating)
                case TurnRated(turn_id=turn_id):
                    self._pending_ratings[turn_id] = event.rating
                case LessonChanged(lesson_id=lesson_id) if lesson_id != self._lesson_id and self._mine(event.learner):
                    # A stored session is one lesson's: end it as it stood and go on in a new one for the next.
                    await asyncio.to_thread(self._store.end_session, self.session_id, outcome=event.previous_outcome)
                    self._lesson_id = lesson_id
                    self.session_id = await asyncio.to_thread(self._store.start_session, self._learner, lesson_id)
                    self._on_new_session(self.session_id)
                case SurveyAnswered():
                    await asyncio.to_thread(
                        self._store.add_survey, self.session_id, dict(event.answers), self._redact(event.comment)
                    )
        except Exception:  # the conversation goes on even if the disk is full
            log.exception("could not store %s", type(event).__name__)

    async def _learner_turn(self, event: FinalTranscript, now: datetime) -> None:
        path = None
        if self._recordings is not None and event.audio is not None and len(event.audio):
            path = recording_path(self._recordings, self.session_id)
        # Linked first, written second: a crash in between leaves a link to no file, never a
        # file that no turn links to (which retention and deletion could not find).
        await asyncio.to_thread(
            self._store.add_turn, self.session_id, "learner", self._redact(event.text), ended_at=now,
            audio_path=path, turn_key=event.utterance_id,
        )
        if path is not None:
            await asyncio.to_thread(write_recording, path, event.audio)

    async def _tutor_turn(self, turn_id: int, text: str, heard: str, cut: bool, now: datetime, *,
                          latency_ms: dict[str, float] | None = None) -> None:
        stored = await asyncio.to_thread(
            self._store.add_turn, self.session_id, "tutor", self._redact(text),
            heard=self._redact(heard), cut=cut, ended_at=now, latency_ms=latency_ms, turn_key=turn_id,
        )
        self._tutor_turns[turn_id] = self._last_tutor_turn = stored.id
        if (rating := self._pending_ratings.pop(turn_id, None)) is not None:
            await asyncio.to_thread(self._store.set_rating, stored.id, rating)
