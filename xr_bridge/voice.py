"""The voice session of a room: learners' microphones in, the tutor's voice and events out.

One :class:`VoiceRoom` per room of the bridge (the :class:`~xr_bridge.server.RoomSession`
seam) runs one tutoring :class:`~voice_tutor.session.Session`, exactly as
``voice-tutor talk`` runs one on the microphone:

    learner audio frames ─► floor ─► PcmSource ─► Session (VAD, STT, tutor, TTS) ─► PcmSink ─► room
                                                        │
                                          session events (bus) ─► event_to_wire ─► room

* The speech models are the process's (one :class:`SpeechModels`, shared by
  every room); each room has its own lesson state, VAD and turn detector.
* Several learners share a room but one listener: the *floor* decides whose
  audio reaches it.  Push-to-talk takes a free floor at once; hands-free audio
  takes it only when it holds speech (Silero VAD per learner; a silent
  microphone or steady room noise never claims or keeps the floor, so it cannot
  keep a kiosk from timing out).  Audio of the others is ignored until the
  holder releases it (push-to-talk released, the turn ended, or the holder
  stopped speaking or sending).  The learner who held the
  floor is named as the ``sender`` of ``learner_speech_started``,
  ``partial_transcript`` and ``final_transcript``, and the tutor addresses them
  by that name.
* Each learner has their own seat in the session (``Tutoring.join``, taken as
  they enter): their own question, memory, stored session, turns,
  recordings, answers and xAPI actor.  Taking the floor makes a learner the
  session's speaker (``Session.set_speaker``), so the turn is theirs: assessed
  against their question and stored in their record.
* Session events and the tutor's audio leave through one queue, so every
  client sees them in the order they happened (``tutor_speech_started``
  before the reply's first audio chunk).
* A learner's ``rate_turn`` and ``survey`` become :class:`~voice_tutor.events.TurnRated`
  and :class:`~voice_tutor.events.SurveyAnswered` on the session's bus, which the
  turn recorder stores with the rated turn and the session.  A recorded session
  (``[privacy] record_audio``) tells every learner who joins it with a ``notice``
  of level ``recording``.
* A simulation request of the tutor (a lesson rule's action or an LLM tool
  call: start a pendulum, make the string longer; a
  :class:`~voice_tutor.events.SimulationRequested` on the session's bus) becomes
  ``start_simulation``/``set_sim_param`` on the room, which runs it and streams
  its state to every member.
* The room's lesson goes out as a ``lesson`` message (with the lessons a learner
  may choose) when the session starts, when it changes and when a learner
  joins; a learner's ``choose_lesson`` switches it as asking aloud does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from voice_tutor import events as ev
from voice_tutor.audio.sinks import PcmSink
from voice_tutor.audio.sources import PcmSource
from voice_tutor.audio.vad import SAMPLE_RATE, SpeechGate
from voice_tutor.config import Config
from voice_tutor.learning.catalogue import Catalogue, short_title
from voice_tutor.store.recordings import NOTICE as RECORDING_NOTICE

from . import protocol as p
from .server import Room
from .simulations import scene_models

log = logging.getLogger(__name__)


HOW_TO_TALK = "I can't hear you yet. Hold the Talk button, or the space bar, while you speak."
"""Said when a learner's page hears speech while push-to-talk is not held."""
HOW_TO_TALK_EVERY_S = 15.0


@dataclass(frozen=True, slots=True)
class FloorOptions:
    """How learners of one room take turns at the single listener."""

    speech_threshold: float = 0.5
    """Silero speech probability at which a hands-free learner's frame counts as speech."""
    min_speech_ms: float = 64.0
    """Speech needed in a row before hands-free audio claims a free floor (or keeps one)."""
    pre_roll_s: float = 0.5
    """Audio kept from each learner while the floor is free, so a claim does not clip the first word."""
    quiet_release_s: float = 1.5
    """A hands-free holder who has not spoken for this long, with no utterance open, gives the floor up."""
    utterance_release_s: float = 4.0
    """...and this long even with an utterance open (sounds that never became words)."""
    stale_s: float = 1.0
    """A hands-free holder whose audio stopped arriving this long ago loses the floor."""
    ptt_stale_s: float = 5.0
    """A push-to-talk holder that sends neither audio nor ``ptt_stop`` this long loses it."""
    end_of_turn_margin_s: float = 0.3
    """Silence pushed past the longest end-of-turn pause when push-to-talk is released."""


@dataclass(frozen=True, slots=True)
class _SimulationRequest:
    """A tutor's simulation tool call, queued behind the session events that preceded it."""

    request: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _TutorPcm:
    """Tutor audio queued behind the session events that preceded it."""

    pcm: bytes
    sample_rate: int


class _Floor:
    """Who may speak to the tutor now; pure bookkeeping, no I/O."""

    def __init__(self, options: FloorOptions):
        self.options = options
        self.holder: p.Member | None = None
        self.ptt = False
        self.claimed_at = 0.0
        self.last_audio_at = 0.0
        self.last_speech_at = 0.0
        self.heard_from: dict[str, float] = {}
        """When each learner last sent audio."""

    def holds(self, member: p.Member) -> bool:
        return self.holder is not None and self.holder.client_id == member.client_id

    def claim(self, member: p.Member, now: float, *, ptt: bool) -> None:
        self.holder, self.ptt = member, ptt
        self.claimed_at = self.last_audio_at = self.last_speech_at = now

    def release(self) -> p.Member | None:
        holder, self.holder, self.ptt = self.holder, None, False
        return holder

    def lapsed(self, now: float, in_utterance: bool) -> bool:
        """Whether the holder should lose the floor now."""
        if self.holder is None:
            return False
        o = self.options
        if self.ptt:
            return now - self.last_audio_at > o.ptt_stale_s
        quiet = now - self.last_speech_at
        return (
            now - self.last_audio_at > o.stale_s
            or (not in_utterance and quiet > o.quiet_release_s)
            or quiet > o.utterance_release_s
        )


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


class VoiceRoom:
    """One tutoring session for one room of the bridge (a :class:`~xr_bridge.server.RoomSession`).

    It starts when the first learner is in the room (so the greeting names
    them and nobody misses it) and ends with the room.  ``store`` (optional)
    remembers every learner of the room across sessions, each in their own
    record, as ``voice-tutor talk --name`` does.
    """

    def __init__(
        self,
        room: Room,
        models: Any,
        config: Config,
        *,
        store: Any = None,
        floor: FloorOptions = FloorOptions(),
        tick_s: float = 0.1,
        idle_timeout_s: float | None = None,
        alerts: AlertRules | None = None,
        seat_grace_s: float = 60.0,
    ):
        self.room = room
        self.models = models
        self.config = config
        self.store = store
        self.floor = _Floor(floor)
        self.session: Any = None
        """The :class:`~voice_tutor.session.Session`, once started."""
        self.tutoring: Any = None
        self.ready = asyncio.Event()
        """Set once the session runs (or failed to start)."""
        self._tick_s = tick_s
        self._source = PcmSource(SAMPLE_RATE)
        self._outgoing: asyncio.Queue[Any] | None = None
        self._pre_roll: dict[str, deque[np.ndarray]] = {}
        self._resamplers: dict[tuple[str, int], soxr.ResampleStream] = {}
        self._speech_gates: dict[str, SpeechGate] = {}
        """Per hands-free learner: does their audio hold speech (only speech claims or keeps the floor)."""
        self._in_utterance = False
        self._latest_utterance = 0
        """The utterance that started last: an overloaded recognizer's late final may be of an earlier one."""
        self._speaker: p.Member | None = None
        """Who spoke the utterance in progress (the floor holder when it started)."""
        self._speakers: dict[int, p.Member] = {}
        self._closed = False
        self.idle_timeout_s = idle_timeout_s or None
        """End the learner's session after this long without speech, an action or the tutor talking."""
        self._last_activity = time.monotonic()
        self._tutor_speaking = False
        self._ended_members: set[str] = set()
        """Learners of ended sessions (still connected for a moment): the next session is not theirs."""
        self._alerts = _AlertTracker(alerts or AlertRules())
        self._session_tasks: list[asyncio.Task[Any]] = []
        self._ending: asyncio.Task[None] | None = None
        self._seen_learners: set[str] = set()
        self.seat_grace_s = seat_grace_s
        """A learner gone from the room this long (not just reloading the page) leaves the session."""
        self._gone_since: dict[str, float] = {}
        self._told_how_to_talk_at = -HOW_TO_TALK_EVERY_S
        self._told_recording: set[str] = set()
        """Learners (client ids) told that this session is recorded."""
        self._told_lesson: set[str] = set()
        """Learners (client ids) told the room's lesson."""
        self._tasks: list[asyncio.Task[None]] = [asyncio.create_task(self._main(), name=f"voice room {room.id}")]

    # --- the RoomSession seam ----------------------------------------------------------

    async def on_learner_audio(self, client: p.Member, pcm: bytes, sample_rate: int) -> None:
        if self._closed or client.role != "learner":
            return
        samples = self._to_16k(client, pcm, sample_rate)
        now = time.monotonic()
        floor = self.floor
        floor.heard_from[client.client_id] = now
        self._expire(now)
        push_to_talk = floor.ptt and floor.holds(client)
        speech = False if push_to_talk else await asyncio.get_running_loop().run_in_executor(
            None, self._speech_gate(client).feed, samples)
        if self._closed:
            return
        now = time.monotonic()
        if floor.holder is None:
            if speech:
                self._claim(client, now, ptt=False)
                for block in self._pre_roll.pop(client.client_id, ()):
                    self._source.push(block)
            else:
                self._keep_pre_roll(client, samples)
                return
        if not floor.holds(client):
            return  # another learner has the floor
        floor.last_audio_at = now
        if speech:
            floor.last_speech_at = now
        self._source.push(samples)

    async def on_learner_action(self, client: p.Member, action: p.LearnerAction) -> None:
        if self._closed or client.role != "learner":
            return
        now = time.monotonic()
        if not isinstance(action, p.Gaze):
            self._last_activity = now
        floor = self.floor
        match action:
            case p.PttStart():
                self._expire(now)
                if floor.holder is None or floor.holds(client):
                    self._claim(client, now, ptt=True)
                    self._pre_roll.pop(client.client_id, None)
            case p.PttStop():
                if floor.holds(client):
                    self._release(end_turn=True)
            case p.Answer(choice=choice):
                self._expire(now)
                if floor.holder is not None and not floor.holds(client):
                    return  # someone else is speaking
                await self._answer(client, choice.replace("_", " ").replace("-", " ").strip())
            case p.UnheardSpeech():
                self._tell_how_to_talk(now)
            case p.RateTurn(turn_id=turn_id, rating=rating):
                self._feedback(ev.TurnRated(rating=rating, turn_id=turn_id, source="page", learner=client.name))
            case p.Survey(answers=answers, comment=comment):
                self._feedback(ev.SurveyAnswered(answers=dict(answers), comment=(comment or "").strip() or None,
                                                 learner=client.name))
            case p.ChooseLesson(lesson_id=lesson_id):
                await self._choose_lesson(client, lesson_id)

    def _tell_how_to_talk(self, now: float) -> None:
        """A learner spoke without holding push-to-talk: the tutor says how (at most every ``HOW_TO_TALK_EVERY_S``)."""
        session = self.session
        if session is None or now - self._told_how_to_talk_at < HOW_TO_TALK_EVERY_S:
            return
        self._told_how_to_talk_at = now
        session.say(HOW_TO_TALK)

    def _feedback(self, event: ev.Event) -> None:
        """Hand a learner's rating or survey to the session (its recorder stores it), if one runs."""
        session = self.session
        if session is not None:
            session.bus.publish(dataclasses.replace(event, session_id=session.id))

    async def on_teacher_message(self, client: p.Member, message: p.TeacherMessage) -> None:
        # Shown to the room already (the learner's page shows hints too).  A hint for the tutor
        # itself needs dialogue support: it is handed over once the session has an ``add_hint``.
        add_hint = getattr(self.session, "add_hint", None)
        if message.kind == "hint" and add_hint is not None:
            add_hint(message.text)

    async def end_conversation(self) -> None:
        """Stop the learner's session and forget it; the next learner to join gets a new one.

        Called by :meth:`Room.end_conversation` (idle timeout, a teacher, a kiosk
        sign-in).  The turns already happened are stored (``Tutoring.run``
        closes its recorder); nothing of this session stays in the room.
        """
        self._ended_members |= {m.client_id for m in self.room.members if m.role == "learner"}
        current = asyncio.current_task()
        tasks = [task for task in self._session_tasks if task is not current]
        self._session_tasks = []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reset()

    def _reset(self) -> None:
        """Forget the session that ran (its tasks are done): a new source, floor and alert streaks."""
        with contextlib.suppress(asyncio.QueueFull):
            self._source.close()
        self._source = PcmSource(SAMPLE_RATE)
        self.session = self.tutoring = self._outgoing = None
        self.ready.clear()
        self.floor = _Floor(self.floor.options)
        self._pre_roll.clear()
        self._resamplers.clear()
        self._speakers.clear()
        self._speaker = None
        self._in_utterance = self._tutor_speaking = False
        self._latest_utterance = 0
        self._alerts = _AlertTracker(self._alerts.rules)
        self._told_recording.clear()
        self._told_lesson.clear()
        self._gone_since.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(asyncio.QueueFull):  # a full queue: the session is cancelled below anyway
            self._source.close()
        main = self._tasks[0]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.shield(main)
        tasks = self._tasks + self._session_tasks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- the session ---------------------------------------------------------------------

    async def _main(self) -> None:
        while not self._closed:
            try:
                first = await self._first_learner()
                await self._start(first)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.exception("room %s: the voice session could not start", self.room.id)
                self.ready.set()
                await self._notice("error", f"the voice tutor could not start: {error}")
                return
            if first.client_id in self._ended_members:  # ended while it was starting (a kiosk sign-in)
                tasks, self._session_tasks = self._session_tasks, []
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._reset()
                continue
            self.ready.set()
            run = asyncio.create_task(self.tutoring.run(self.session), name=f"voice room {self.room.id} session")
            self._session_tasks.append(run)
            await asyncio.wait({run})  # cancelled: end_conversation ended it, and the next learner gets a new one
            if run.cancelled():
                continue
            if (error := run.exception()) is not None:
                log.error("room %s: the voice session failed", self.room.id, exc_info=error)
                await self._notice("error", f"the voice tutor stopped: {error}")
            return

    async def _first_learner(self) -> p.Member:
        """Wait for a learner (a teacher may open the room before anyone can be taught)."""
        while not (
            learners := [m for m in self.room.members if m.role == "learner" and m.client_id not in self._ended_members]
        ):
            await asyncio.sleep(self._tick_s)
        return learners[0]

    async def _start(self, first: p.Member) -> None:
        from voice_tutor.tutoring import Tutoring

        self.tutoring = await Tutoring.open(self.config, first.name, self.store, scene=scene_models())
        sink = PcmSink(self._send_tutor_audio, self.models.synthesizer.sample_rate)
        self.session = session = self.tutoring.session(self.models, self._source, sink)
        session.set_speaker(first.name)
        self._outgoing = session.bus.subscribe(maxsize=4096)
        self._last_activity = time.monotonic()
        self._session_tasks.append(
            asyncio.create_task(self._pump(self._outgoing), name=f"voice room {self.room.id} out")
        )
        self._session_tasks.append(asyncio.create_task(self._watch(), name=f"voice room {self.room.id} floor"))

    async def _send_tutor_audio(self, pcm: bytes, sample_rate: int) -> None:
        """The PcmSink's callback: queue the audio behind the events already published."""
        queue = self._outgoing
        if queue is not None:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(_TutorPcm(pcm, sample_rate))

    def request_simulation(self, request: Mapping[str, Any]) -> None:
        """A simulation request as a dict like the bridge's messages (or a tool call), from outside the session.

        Applied to the room in order with the session's events; the room runs
        the simulation and streams its state to every member.
        """
        if self._outgoing is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._outgoing.put_nowait(_SimulationRequest(dict(request)))

    async def _pump(self, queue: asyncio.Queue[Any]) -> None:
        """Forward session events and tutor audio to the room, in the order they happened."""
        while True:
            item = await queue.get()
            try:
                if isinstance(item, _TutorPcm):
                    await self.room.publish(p.AudioChunk(p.AudioKind.TUTOR, item.sample_rate, 0, item.pcm))
                elif isinstance(item, _SimulationRequest):
                    await self._simulate(item.request)
                else:
                    await self._forward(item)
            except Exception:
                log.exception("room %s: forwarding %r failed", self.room.id, type(item).__name__)

    async def _forward(self, event: ev.Event) -> None:
        if isinstance(event, ev.SessionNotice) and event.level == p.RECORDING:
            self._told_recording |= {m.client_id for m in self.room.members if m.role == "learner"}
        if isinstance(event, ev.SpeechStarted | ev.FinalTranscript | ev.TutorSpeechStarted | ev.TutorSpeechEnded):
            self._last_activity = time.monotonic()
            if isinstance(event, ev.TutorSpeechStarted | ev.TutorSpeechEnded):
                self._tutor_speaking = isinstance(event, ev.TutorSpeechStarted)
        match event:
            case ev.SpeechStarted(utterance_id=uid):
                self._in_utterance, self._latest_utterance = True, uid
                speaker = self._speakers.get(uid) or self.floor.holder or self._speaker
                if speaker is not None:
                    self._speaker = self._speakers[uid] = speaker
                    while len(self._speakers) > 64:
                        del self._speakers[next(iter(self._speakers))]
            case ev.FinalTranscript(utterance_id=uid) if uid >= self._latest_utterance:  # not a late one
                self._in_utterance = False
                if self.floor.holder is not None and not self.floor.ptt:
                    self._release(end_turn=False)  # the turn is over: the floor is free again
        wire = p.event_to_wire(event)
        if isinstance(wire, p.LessonStarted):  # another lesson: the last one's simulations leave the scene
            for sim_id in sorted(self._running_simulations()):
                with contextlib.suppress(p.ProtocolError):
                    await self.room.publish(p.StopSimulation(sim_id=sim_id))
            wire = wire.model_copy(update={"available": self._lesson_entries()})
            self._told_lesson = {m.client_id for m in self.room.members if m.role == "learner"}
        derived: list[p.Alert] = []
        if isinstance(event, ev.MasteryUpdated) and isinstance(wire, p.MasteryUpdate):
            previous, derived = self._alerts.assessed(event, wire)
            if previous is not None:
                wire = wire.model_copy(update={"previous": previous})
        if isinstance(wire, p.RoomMessage):
            speaker = None
            if isinstance(wire, p.LearnerSpeechStarted | p.PartialTranscript | p.FinalTranscript):
                speaker = self._speakers.get(wire.utterance_id)
            elif isinstance(wire, p.RateTurn):  # said aloud: by whoever spoke last
                speaker = self._speaker
            elif isinstance(event, ev.MasteryUpdated):  # the answer of the learner it names
                speaker = next((m for m in self.room.members if m.role == "learner" and m.name == event.learner),
                               None)
            await self.room.publish(wire, sender=speaker)
            for alert in derived:
                await self.room.publish(alert)
        elif isinstance(wire, p.AudioChunk):
            await self.room.publish(wire)
        elif wire is None:
            await self._simulate(event)  # a simulation event, once voice_tutor.events has one

    async def _simulate(self, request: object) -> None:
        for command in simulation_commands(request, self._running_simulations()):
            try:
                await self.room.publish(command)
            except p.ProtocolError as error:
                await self._notice("warning", f"the simulation request was refused: {error.message}")

    def _running_simulations(self) -> set[str]:
        return {state.sim_id for state in self.room.snapshot().simulations}

    # --- taking turns --------------------------------------------------------------------

    async def _watch(self) -> None:
        """Release a floor whose holder went quiet, stopped sending, or left the room; end an idle session."""
        while True:
            await asyncio.sleep(self._tick_s)
            if self._idle(time.monotonic()):
                log.info("room %s: no activity for %.0f s, ending the session", self.room.id, self.idle_timeout_s)
                reason = f"no activity for {self.idle_timeout_s:g} s"
                self._ending = asyncio.create_task(self.room.end_conversation(reason), name=f"end {self.room.id}")
                return
            present = {m.client_id for m in self.room.members}
            learners = {m.client_id for m in self.room.members if m.role == "learner"}
            if learners - self._seen_learners:  # a learner (re)joined, e.g. after reloading the page
                self._last_activity = time.monotonic()
                self._seat(m.name for m in self.room.members if m.client_id in learners - self._seen_learners)
            self._seen_learners = learners
            self._unseat_departed({m.name for m in self.room.members if m.role == "learner"}, time.monotonic())
            self._told_recording &= learners
            if learners - self._told_recording and getattr(self.tutoring, "recording", False):
                self._told_recording |= learners
                await self._notice(p.RECORDING, RECORDING_NOTICE)
            self._told_lesson &= learners
            if learners - self._told_lesson and self.tutoring is not None:
                self._told_lesson |= learners
                await self._announce_lesson()
            holder = self.floor.holder
            if holder is not None and holder.client_id not in present:
                self._release(end_turn=True)
            else:
                self._expire(time.monotonic())
            for gone in set(self.floor.heard_from) - present:
                del self.floor.heard_from[gone]
                self._pre_roll.pop(gone, None)
                self._speech_gates.pop(gone, None)
                for key in [key for key in self._resamplers if key[0] == gone]:
                    del self._resamplers[key]

    def _seat(self, names: Iterable[str]) -> None:
        """Open the seats of learners who came in, so their first turn does not wait for their memory."""
        self._session_tasks = [task for task in self._session_tasks if not task.done()]
        for name in set(names):
            task = asyncio.create_task(self.tutoring.join(name), name=f"seat in {self.room.id}")
            task.add_done_callback(_log_failure)
            self._session_tasks.append(task)

    def _unseat_departed(self, present: set[str], now: float) -> None:
        """End the record of learners who left a session that goes on (their lesson is suspended, resumable)."""
        if self.tutoring is None:
            return
        seated = {name for name in self.tutoring.seats if name is not None}
        for name in list(self._gone_since):
            if name in present or name not in seated:
                del self._gone_since[name]
        for name in seated - present:
            if now - self._gone_since.setdefault(name, now) > self.seat_grace_s:
                del self._gone_since[name]
                task = asyncio.create_task(self.tutoring.leave(name), name=f"unseat in {self.room.id}")
                task.add_done_callback(_log_failure)
                self._session_tasks.append(task)

    def _claim(self, member: p.Member, now: float, *, ptt: bool) -> None:
        """``member`` takes the floor: what they say next is their turn, answered and stored as theirs."""
        self.floor.claim(member, now, ptt=ptt)
        if self.session is not None:
            self.session.set_speaker(member.name)

    def _idle(self, now: float) -> bool:
        return (
            self.idle_timeout_s is not None
            and not self._tutor_speaking
            and not self._in_utterance
            and self.floor.holder is None
            and now - self._last_activity > self.idle_timeout_s
        )

    def _expire(self, now: float) -> None:
        if self.floor.lapsed(now, self._in_utterance):
            self._release(end_turn=self._in_utterance or self.floor.ptt)

    def _release(self, *, end_turn: bool) -> None:
        self.floor.release()
        if end_turn:
            self._source.push(np.zeros(int(self._end_of_turn_silence_s() * SAMPLE_RATE), dtype=np.float32))

    def _end_of_turn_silence_s(self) -> float:
        """Enough silence for the listener to end any turn, finished-sounding or not.

        A learner's slow pace stretches the pauses by up to 1.5 (``with_learner_pace``).
        """
        turns = self.config.turns
        longest_ms = max(turns.end_of_turn_ms, turns.unfinished_end_of_turn_ms, turns.continuing_end_of_turn_ms)
        return 1.5 * longest_ms / 1000 + self.floor.options.end_of_turn_margin_s

    def _speech_gate(self, client: p.Member) -> SpeechGate:
        gate = self._speech_gates.get(client.client_id)
        if gate is None:
            options = self.floor.options
            gate = self._speech_gates[client.client_id] = SpeechGate(options.speech_threshold, options.min_speech_ms)
        return gate

    def _keep_pre_roll(self, client: p.Member, samples: np.ndarray) -> None:
        kept = self._pre_roll.setdefault(client.client_id, deque())
        kept.append(samples)
        limit = int(self.floor.options.pre_roll_s * SAMPLE_RATE)
        while sum(len(block) for block in kept) - len(kept[0]) >= limit:
            kept.popleft()

    def _to_16k(self, client: p.Member, pcm: bytes, sample_rate: int) -> np.ndarray:
        samples = pcm_to_float(pcm)
        if sample_rate == SAMPLE_RATE:
            return samples
        key = (client.client_id, sample_rate)
        if key not in self._resamplers:
            self._resamplers[key] = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
        return self._resamplers[key].resample_chunk(samples)

    # --- answers by choice -----------------------------------------------------------------

    async def _answer(self, client: p.Member, text: str) -> None:
        if not text:
            return
        await self.ready.wait()
        session = self.session
        if session is None:
            return
        uid = session.submit_text(text, speaker=client.name)
        if uid is not None:
            self._speakers[uid] = client

    # --- the lesson ------------------------------------------------------------------------

    def _catalogue(self) -> Catalogue:
        tutoring = self.tutoring
        return tutoring.catalogue if tutoring is not None and tutoring.catalogue is not None else Catalogue.of([])

    def _lesson_entries(self) -> list[p.LessonEntry]:
        return [p.LessonEntry(id=lesson.id, title=lesson.title[:500], subject=lesson.subject[:500],
                              level=lesson.level[:500]) for lesson in self._catalogue().lessons[:256]]

    async def _announce_lesson(self) -> None:
        """Tell the room its lesson and the lessons it may switch to (a page shows its picker from this)."""
        tutoring, session = self.tutoring, self.session
        if tutoring is None or session is None:
            return
        with contextlib.suppress(Exception):
            await self.room.publish(p.LessonStarted(
                session_id=session.id[:128], t=time.monotonic(), lesson_id=tutoring.lesson.id,
                title=tutoring.lesson.title[:500], available=self._lesson_entries(),
            ))

    async def _choose_lesson(self, client: p.Member, lesson_id: str) -> None:
        """A lesson picked on a page becomes the learner's request for it, exactly as if said aloud."""
        await self.ready.wait()
        catalogue = self._catalogue()
        lesson = catalogue.get(lesson_id)
        if lesson is None:
            known = ", ".join(entry.id for entry in catalogue.lessons)
            await self._notice("warning", f"there is no lesson {lesson_id!r} (known: {known})")
            return
        if self.tutoring is not None and self.tutoring.lesson.id == lesson.id:
            return  # already the room's lesson
        if self.floor.holder is not None and not self.floor.holds(client):
            return  # someone else is speaking
        await self._answer(client, f"Let's do {short_title(lesson)}.")

    async def _notice(self, level: str, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.room.publish(p.Notice(session_id=self.room.id[:128], t=time.monotonic(), level=level,
                                             message=message[: p.MAX_TEXT_CHARS]))


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Done-callback of a seating task: its failure is logged (the session goes on)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("%s failed: %s", task.get_name(), error)


# --- alerts a teacher should see, derived from the learner's assessed answers ----------------


@dataclass(frozen=True, slots=True)
class AlertRules:
    """When a room's session raises an ``alert`` about the learner's answers (once per skill and streak)."""

    repeated_wrong: int = 2
    """This many wrong answers in a row on one skill: ``repeated_wrong_answers`` (warning)."""
    stuck_attempts: int = 4
    """This many assessed answers on one skill this session..."""
    stuck_below: float = 0.5
    """...with its mastery still below this: ``stuck_on_skill`` (warning)."""


class _AlertTracker:
    """Per-learner, per-skill answer streaks of one session; pure bookkeeping."""

    def __init__(self, rules: AlertRules):
        self.rules = rules
        self.mastery: dict[tuple[str, str], float] = {}
        self.wrong_streak: dict[tuple[str, str], int] = {}
        self.attempts: dict[tuple[str, str], int] = {}
        self.stuck_told: set[tuple[str, str]] = set()

    def assessed(self, event: ev.MasteryUpdated, wire: p.MasteryUpdate) -> tuple[float | None, list[p.Alert]]:
        """The skill's previous mastery for this learner (None the first time) and the alerts this answer raises."""
        skill, name, rules = (event.learner, event.skill_id), event.skill_name or event.skill_id, self.rules
        previous = self.mastery.get(skill)
        self.mastery[skill] = wire.mastery
        self.attempts[skill] = attempts = self.attempts.get(skill, 0) + 1
        right = event.verdict == "correct" if event.verdict else event.correct  # right after a hint is not wrong
        streak = 0 if right else self.wrong_streak.get(skill, 0) + 1
        self.wrong_streak[skill] = streak
        base = {"session_id": wire.session_id, "t": wire.t}
        who = event.learner or "The learner"
        alerts = []
        if streak == rules.repeated_wrong:
            alerts.append(p.Alert(**base, severity="warning", code="repeated_wrong_answers",
                                  message=f"{who} answered {streak} questions on {name} wrong in a row"[:500]))
        if (
            attempts >= rules.stuck_attempts
            and wire.mastery < rules.stuck_below
            and not event.mastered
            and skill not in self.stuck_told
        ):
            self.stuck_told.add(skill)
            alerts.append(p.Alert(**base, severity="warning", code="stuck_on_skill",
                                  message=f"{who} seems stuck on {name}: {attempts} answers, "
                                          f"mastery {round(wire.mastery * 100)}%"[:500]))
        return previous, alerts


# --- simulation requests from the tutor -------------------------------------------------------

_START = {"start_simulation", "start", "run_simulation", "show_simulation"}
_SET = {
    "set_sim_param", "set_simulation_param", "set_simulation_parameter", "set_simulation_parameters",
    "set_parameter", "set_parameters", "update_simulation", "change_simulation", "adjust_simulation",
}  # fmt: skip
_STOP = {"stop_simulation", "stop", "end_simulation"}


def _as_mapping(request: object) -> dict[str, Any]:
    if isinstance(request, Mapping):
        return dict(request)
    if dataclasses.is_dataclass(request) and not isinstance(request, type):
        return {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    return dict(getattr(request, "__dict__", {}))


def simulation_commands(request: object, running: Iterable[str] = ()) -> list[p.RoomMessage]:
    """The room commands for a tutor's simulation request, or ``[]`` if it is none.

    Accepted shapes (an event, a dataclass or a mapping): ``action`` (or a
    mapping's ``type``, as ``dialogue.tools`` publishes them, or a tool call's
    ``name`` with its ``arguments``) is ``start_simulation``,
    ``set_sim_param``/``update_simulation``/``set_simulation_parameter`` or
    ``stop_simulation``; ``simulation`` or ``model`` names the model,
    ``sim_id`` the instance (default: the model); ``parameters``/``params``
    maps names to numbers, or ``name``/``parameter`` with ``value`` sets one.
    Nested ``payload``/``arguments`` mappings are read too.  Setting
    parameters of a simulation that is not running starts it with them.
    """
    data = _as_mapping(request)
    action = data.get("action") or (data.get("type") if isinstance(request, Mapping) else None)
    for key in ("payload", "arguments"):
        nested = data.get(key)
        if isinstance(nested, str):
            with contextlib.suppress(ValueError):
                nested = json.loads(nested)
        if isinstance(nested, Mapping):
            if action is None and key == "arguments":
                action = data.get("name")  # a tool call: name + arguments
            data = {**data, **nested}
            action = data.get("action", action)
    if not isinstance(action, str):
        return []
    action = action.strip().lower()
    if action not in _START | _SET | _STOP:
        return []
    model = data.get("simulation") or data.get("model")
    sim_id = data.get("sim_id") or model
    if not isinstance(sim_id, str) or not sim_id:
        return []
    params = data.get("parameters", data.get("params")) or {}
    params = dict(params) if isinstance(params, Mapping) else {}
    named = data.get("name") if action in _SET and data.get("name") not in _SET else None
    single = data.get("parameter", data.get("param_name", named))
    if isinstance(single, str) and "value" in data:
        params[single] = data["value"]
    numbers = {str(k): float(v) for k, v in params.items() if _is_number(v)}
    if action in _STOP:
        return [p.StopSimulation(sim_id=sim_id)]
    if action in _SET and sim_id in set(running):
        return [p.SetSimParam(sim_id=sim_id, name=name, value=value) for name, value in numbers.items()]
    if not isinstance(model, str) or not model:
        return []
    return [p.StartSimulation(sim_id=sim_id, model=model, params=numbers)]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def voice_session_factory(models: Any, config: Config, **options: Any) -> Callable[[Room], VoiceRoom]:
    """``BridgeServer(session_factory=...)``: a :class:`VoiceRoom` for every room, sharing ``models``."""
    return lambda room: VoiceRoom(room, models, config, **options)
