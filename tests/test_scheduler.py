"""The shared recognizer's scheduling, and a listener that never stops taking frames while it waits.

The scheduler tests use plain callables (the ordering is what is tested); the
listener tests run the real Whisper model on real piper speech.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from voice_tutor.audio.sources import CapturedFrame
from voice_tutor.audio.vad import FRAME_SAMPLES, SAMPLE_RATE
from voice_tutor.config import TurnTakingConfig
from voice_tutor.events import FinalTranscript, PartialTranscript, SpeechStarted
from voice_tutor.listener import Listener
from voice_tutor.speech.scheduler import TranscriptionScheduler
from voice_tutor.speech.stt import resolve_workers


def blocker(scheduler: TranscriptionScheduler) -> tuple[threading.Event, asyncio.Future]:
    """Occupy one worker until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold() -> str:
        started.set()
        release.wait(10)
        return "held"

    future = scheduler.run_urgent(hold)
    assert started.wait(5)
    return release, future


async def test_turn_ending_work_runs_before_queued_partials():
    scheduler = TranscriptionScheduler(1)
    order: list[str] = []
    try:
        release, held = blocker(scheduler)
        first = scheduler.run_partial(lambda: order.append("partial"))
        assert first is not None  # nothing was waiting, only running
        urgent = [scheduler.run_urgent(lambda n=n: order.append(f"final {n}")) for n in range(2)]
        assert scheduler.waiting == 3
        release.set()
        await asyncio.gather(held, first, *urgent)
        assert order == ["final 0", "final 1", "partial"]
    finally:
        scheduler.close()


async def test_a_partial_is_not_queued_behind_waiting_work():
    scheduler = TranscriptionScheduler(1)
    try:
        release, held = blocker(scheduler)
        queued = scheduler.run_urgent(lambda: "final")
        assert scheduler.run_partial(lambda: "stale soon") is None
        release.set()
        assert await queued == "final" and await held == "held"
        assert await scheduler.run_partial(lambda: "fresh") == "fresh"
    finally:
        scheduler.close()


async def test_cancelled_work_that_has_not_started_never_runs():
    scheduler = TranscriptionScheduler(1)
    ran: list[str] = []
    try:
        release, held = blocker(scheduler)
        dropped = scheduler.run_urgent(lambda: ran.append("dropped"))
        kept = scheduler.run_urgent(lambda: ran.append("kept"))
        dropped.cancel()
        await asyncio.sleep(0)  # the cancellation reaches the worker's queue on the loop's next turn
        release.set()
        await asyncio.gather(held, kept)
        assert ran == ["kept"]
    finally:
        scheduler.close()


async def test_errors_reach_the_caller_and_the_worker_lives_on():
    scheduler = TranscriptionScheduler(1)
    try:
        def broken() -> None:
            raise RuntimeError("model exploded")

        with pytest.raises(RuntimeError, match="model exploded"):
            await scheduler.run_urgent(broken)
        assert await scheduler.run_urgent(lambda: 42) == 42
    finally:
        scheduler.close()


async def test_workers_run_in_parallel():
    scheduler = TranscriptionScheduler(2)
    barrier = threading.Barrier(2, timeout=5)
    try:
        both = [scheduler.run_urgent(barrier.wait) for _ in range(2)]
        assert sorted(await asyncio.gather(*both)) == [0, 1]  # each reached the barrier while the other waited
    finally:
        scheduler.close()


async def test_close_cancels_waiting_work_and_refuses_more():
    scheduler = TranscriptionScheduler(1)
    release, held = blocker(scheduler)
    waiting = scheduler.run_urgent(lambda: "never")
    closing = asyncio.get_running_loop().run_in_executor(None, scheduler.close)
    await asyncio.sleep(0.05)
    release.set()
    await closing
    assert await held == "held"
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.run_urgent(lambda: None)


def test_workers_share_out_the_cores_on_the_cpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert resolve_workers("cpu", 0, 0) == (4, 2)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert resolve_workers("cpu", 0, 0) == (2, 1)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert resolve_workers("cpu", 2, 0) == (2, 4)
    assert resolve_workers("cpu", 16, 0) == (16, 1)
    assert resolve_workers("cpu", 2, 3) == (2, 3)  # an explicit setting is kept
    assert resolve_workers("cuda", 0, 0) == (4, 0)
    with pytest.raises(ValueError):
        resolve_workers("cpu", -1, 0)


# The listener on the real model


def frames_of(audio: np.ndarray, start: float) -> list[CapturedFrame]:
    count = len(audio) // FRAME_SAMPLES
    return [
        CapturedFrame(audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES], start + (i + 1) * FRAME_SAMPLES / SAMPLE_RATE)
        for i in range(count)
    ]


async def paced(frames: list[CapturedFrame], taken: list[float]):
    """Frames at the speed of a microphone; ``taken`` records when the listener asked for each."""
    for frame in frames:
        delay = frame.captured_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        taken.append(time.monotonic() - frame.captured_at)
        yield frame


async def test_frames_keep_flowing_while_the_recognizer_is_busy(speech_models, say):
    """Another session's long job holds the only worker: this learner's turn waits, their microphone does not."""
    scheduler = TranscriptionScheduler(1)
    events = []
    speech = say("Seven plus five is twelve.")
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), speech, np.zeros(2 * SAMPLE_RATE, np.float32)])
    listener = Listener("s", speech_models.recognizer, TurnTakingConfig(), events.append, scheduler)
    release, held = blocker(scheduler)
    taken: list[float] = []
    try:
        loop = asyncio.get_running_loop()
        speech_ends = len(speech) / SAMPLE_RATE + 0.5
        taken_at_release: list[int] = []

        def free_the_worker() -> None:
            taken_at_release.append(len(taken))
            release.set()

        loop.call_later(speech_ends + 1.0, free_the_worker)  # a second after the learner stops
        await listener.run(paced(frames_of(audio, time.monotonic()), taken))
    finally:
        release.set()
        scheduler.close()
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1
    assert "twelve" in finals[0].text.lower() or "12" in finals[0].text
    assert finals[0].audio is not None and len(finals[0].audio) >= len(speech) * 0.9
    # While the turn waited for the recognizer, the listener went on taking frames well past the
    # end of turn (the old listener stopped at the first frame of end-of-turn silence).
    end_of_turn_frame = (speech_ends + TurnTakingConfig().end_of_turn_ms / 1000) * SAMPLE_RATE / FRAME_SAMPLES
    assert taken_at_release[0] > end_of_turn_frame + 0.4 * SAMPLE_RATE / FRAME_SAMPLES, taken_at_release
    assert not any(isinstance(e, PartialTranscript) for e in events[events.index(finals[0]):])


async def test_a_late_transcript_never_merges_the_learners_next_turn_into_this_one(speech_models, say):
    """An overloaded recognizer: the first turn's transcript comes after the learner has begun the next turn."""
    from voice_tutor.dialogue.answers import numbers_in

    scheduler = TranscriptionScheduler(1)
    events = []
    first, second = say("I think it is twelve."), say("Now it is nine.")
    gap_s = 1.8  # longer than any turn waits for its end (1.2 s when the words trail off)
    silence = [np.zeros(int(s * SAMPLE_RATE), np.float32) for s in (0.5, gap_s, 2.0)]
    audio = np.concatenate([silence[0], first, silence[1], second, silence[2]])
    listener = Listener("s", speech_models.recognizer, TurnTakingConfig(), events.append, scheduler)
    release, held = blocker(scheduler)
    try:
        second_starts = 0.5 + len(first) / SAMPLE_RATE + gap_s
        asyncio.get_running_loop().call_later(second_starts + 0.6, release.set)  # while the second is spoken
        await listener.run(paced(frames_of(audio, time.monotonic()), []))
    finally:
        release.set()
        scheduler.close()
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [numbers_in(final.text)[-1:] for final in finals] == [[12], [9]], [f.text for f in finals]
    assert finals[0].utterance_id < finals[1].utterance_id
    assert len(finals[0].audio) < len(first) + (gap_s + 0.3) * SAMPLE_RATE  # none of the second turn in it
    started = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(started) == 2 and events.index(started[1]) < events.index(finals[0])  # it really was late


async def test_an_utterance_too_long_is_closed_without_waiting_for_its_transcript(speech_models, say):
    scheduler = TranscriptionScheduler(1)
    events = []
    speech = np.concatenate([say("Seven plus five is twelve, and eight plus nine is seventeen.")] * 2)
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), speech, np.zeros(2 * SAMPLE_RATE, np.float32)])
    config = TurnTakingConfig(max_utterance_s=2.0)
    listener = Listener("s", speech_models.recognizer, config, events.append, scheduler)
    release, held = blocker(scheduler)
    taken: list[float] = []
    taken_at_release: list[int] = []

    def free_the_worker() -> None:
        taken_at_release.append(len(taken))
        release.set()

    try:
        asyncio.get_running_loop().call_later(len(speech) / SAMPLE_RATE, free_the_worker)
        await listener.run(paced(frames_of(audio, time.monotonic()), taken))
    finally:
        release.set()
        scheduler.close()
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) >= 2 and all(len(f.audio) <= (2.0 + 0.1) * SAMPLE_RATE for f in finals[:-1])
    assert [f.utterance_id for f in finals] == sorted({f.utterance_id for f in finals})
    # The listener went on taking frames past the first cut while the worker was held.
    assert taken_at_release[0] > (0.5 + 2.0 + 1.0) * SAMPLE_RATE / FRAME_SAMPLES, taken_at_release
