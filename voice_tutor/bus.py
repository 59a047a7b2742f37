"""The session's event bus: every stage publishes, any observer subscribes.

Publishing never blocks a stage: each subscriber has a bounded queue, and a
subscriber that falls behind loses its oldest events (counted), not the
session's timing.
"""

from __future__ import annotations

import asyncio
import logging

from voice_tutor.events import Event

log = logging.getLogger(__name__)


class EventBus:
    def __init__(self):
        self._subscribers: list[asyncio.Queue[Event]] = []
        self.dropped = 0

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)

    def publish(self, event: Event) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)
