"""The playing stage: tutor audio out, and an honest record of what was heard.

Sentences are written to the sink in short blocks, so an interruption stops
playback within one block and the player knows how many samples of each
sentence reached the learner.  Every reply ends with exactly one
:class:`TutorSpeechEnded`, whole or cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from voice_tutor.audio.levels import first_sound_s
from voice_tutor.events import Event, TutorAudio, TutorSpeechEnded, TutorSpeechStarted

BLOCK_S = 0.04
ONSET_MARGIN_S = 0.01
"""Kept before a reply's first audible window, so a soft onset is not clipped."""


@dataclass(frozen=True, slots=True)
class EndOfReply:
    """Queued after a reply's last sentence."""

    turn_id: int


@dataclass
class _ReplyPlayback:
    turn_id: int
    sentences: list[str] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    started: bool = False


def heard_part(sentence: str, fraction: float) -> str:
    """The words of a sentence a listener heard when it was cut at ``fraction``."""
    words = sentence.split()
    return " ".join(words[: int(len(words) * max(0.0, min(1.0, fraction)))])


class Player:
    def __init__(self, session_id: str, sink, publish: Callable[[Event], None], max_queued: int = 64):
        self.session_id = session_id
        self._sink = sink
        self._publish = publish
        self.queue: asyncio.Queue[TutorAudio | EndOfReply] = asyncio.Queue(max_queued)
        self._current: _ReplyPlayback | None = None
        self._closed_turn = -1
        self._cutting_turn: int | None = None
        self._playing = False

    async def run(self) -> None:
        while True:
            item = await self.queue.get()
            if item.turn_id <= self._closed_turn:
                continue  # audio of a reply that was already cut
            reply = self._reply_for(item.turn_id)
            if isinstance(item, EndOfReply):
                self._finish(cut=False)
                continue
            reply.sentences.append(item.text)
            self._playing = True
            try:
                played = await self._play(item, reply)
            finally:
                self._playing = False
            if played < len(item.samples) or self._cutting_turn == item.turn_id:
                reply.heard.append(heard_part(item.text, played / max(1, len(item.samples))))
                self._finish(cut=True)
            else:
                reply.heard.append(item.text)

    def _reply_for(self, turn_id: int) -> _ReplyPlayback:
        if self._current is not None and self._current.turn_id != turn_id:
            self._finish(cut=False)
        if self._current is None:
            self._current = _ReplyPlayback(turn_id)
        return self._current

    async def _play(self, item: TutorAudio, reply: _ReplyPlayback) -> int:
        block = max(1, int(item.sample_rate * BLOCK_S))
        played = 0 if reply.started else _silent_lead(item)
        while played < len(item.samples) and self._cutting_turn != item.turn_id:
            if not reply.started:
                reply.started = True
                self._publish(TutorSpeechStarted(session_id=self.session_id, turn_id=item.turn_id))
            chunk = item.samples[played : played + block]
            await self._sink.write(chunk)
            played += len(chunk)
        return played

    def interrupt(self, turn_id: int) -> None:
        """Barge-in: stop this reply within one block and drop its queued audio."""
        if turn_id <= self._closed_turn:
            return
        self._cutting_turn = turn_id
        kept = [item for item in _drain(self.queue) if item.turn_id != turn_id]
        for item in kept:
            self.queue.put_nowait(item)
        if not self._playing:
            self._reply_for(turn_id)
            self._finish(cut=True)

    def _finish(self, cut: bool) -> None:
        reply, self._current = self._current, None
        if reply is None:
            return
        self._closed_turn = reply.turn_id
        self._publish(TutorSpeechEnded(
            session_id=self.session_id,
            turn_id=reply.turn_id,
            text=" ".join(reply.sentences),
            heard=" ".join(part for part in reply.heard if part),
            cut=cut,
        ))


def _silent_lead(item: TutorAudio) -> int:
    """Samples of inaudible lead-in before a reply's first sound (piper starts each sentence with ~45 ms).

    Skipped at the start of a reply only: the learner is waiting, and between
    sentences the same silence is part of the voice's rhythm.
    """
    onset = first_sound_s(item.samples, item.sample_rate)
    if onset is None:
        return 0
    return max(0, int((onset - ONSET_MARGIN_S) * item.sample_rate))


def _drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
