"""Speech recognition work of every session on one process, turn-ending work first.

All sessions share one Whisper model and a few worker threads.  Two kinds of
work compete for them: transcripts that may end a learner's turn (a
speculative transcript at a pause, a final one) and partial transcripts shown
while the learner is still speaking.  A turn's latency is what the learner
feels; a partial is a nicety that is stale a moment later.  So turn-ending
work always runs before any queued partial, and a partial is not even queued
while other work is waiting (the next one will be fresher anyway).  With one
plain thread pool, finals queued behind everyone's partials and a 2-core
server fell behind real time at about 10 sessions (``benchmarks/sessions_load.py``).

The scheduler knows nothing of turns or sessions; it takes a callable per job.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

URGENT, PARTIAL = 0, 1
"""Priorities: lower runs first."""


class TranscriptionScheduler:
    """A priority queue of recognition jobs drained by ``workers`` threads."""

    def __init__(self, workers: int = 1, *, name: str = "stt"):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self._jobs: queue.PriorityQueue[tuple[int, int, Future | None, Callable[[], object] | None]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True) for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        """Jobs queued and not yet started."""
        return self._jobs.qsize()

    def run_urgent(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``job`` before any partial; cancelling the returned future drops it if it has not started.

        asyncio passes the cancellation on to the queued job in a callback,
        so a worker that frees up within the same loop iteration may still
        start it; the result is then simply not awaited.
        """
        return asyncio.wrap_future(self._submit(URGENT, job))

    def run_partial(self, job: Callable[[], T]) -> asyncio.Future[T] | None:
        """Run ``job`` when nothing else is waiting; None (nothing queued) when other work is already waiting."""
        if self._jobs.qsize() > 0:
            return None
        return asyncio.wrap_future(self._submit(PARTIAL, job))

    def _submit(self, priority: int, job: Callable[[], T]) -> Future:
        if self._closed:
            raise RuntimeError("the transcription scheduler is closed")
        future: Future = Future()
        self._jobs.put((priority, next(self._order), future, job))
        return future

    def _work(self) -> None:
        while True:
            _priority, _order, future, job = self._jobs.get()
            if future is None:  # closing
                return
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited: the turn moved on
            try:
                future.set_result(job())
            except BaseException as error:  # handed to whoever awaits the transcript
                future.set_exception(error)

    def close(self, timeout_s: float = 10.0) -> None:
        """Cancel what is waiting, and wait for the jobs running to finish (the model must outlive them)."""
        self._closed = True
        while True:
            try:
                _priority, _order, future, _job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if future is not None:
                future.cancel()
        for _thread in self._threads:
            self._jobs.put((2, next(self._order), None, None))
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout_s)
