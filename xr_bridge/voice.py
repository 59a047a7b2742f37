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
  takes it when it is loud (or nobody else is sending audio).  Audio of the
  others is ignored until the holder releases it (push-to-talk released, the
  turn ended, or the holder went quiet or silent).  The learner who held the
  floor is named as the ``sender`` of ``learner_speech_started``,
  ``partial_transcript`` and ``final_transcript``, and the tutor addresses them
  by that name.
* Session events and the tutor's audio leave through one queue, so every
  client sees them in the order they happened (``tutor_speech_started``
  before the reply's first audio chunk).
* A simulation request of the tutor (a tool call: start a pendulum, make the
  string longer) becomes ``start_simulation``/``set_sim_param`` on the room,
  which runs it and streams its state to every member.
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
from voice_tutor.audio.vad import SAMPLE_RATE
from voice_tutor.config import Config

from . import protocol as p
from .server import Room

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FloorOptions:
    """How learners of one room take turns at the single listener."""

    speech_rms: float = 0.01
    """Level (RMS of float samples, about -40 dBFS) at which hands-free audio claims a free floor."""
    pre_roll_s: float = 0.5
    """Audio kept from each learner while the floor is free, so a claim does not clip the first word."""
    quiet_release_s: float = 1.5
    """A hands-free holder quiet this long, with no utterance open, gives the floor up."""
    utterance_release_s: float = 4.0
    """...and this long even with an utterance open (noise that never became words)."""
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
        self.last_loud_at = 0.0
        self.heard_from: dict[str, float] = {}
        """When each learner last sent audio."""

    def holds(self, member: p.Member) -> bool:
        return self.holder is not None and self.holder.client_id == member.client_id

    def others_active(self, member: p.Member, now: float) -> bool:
        return any(
            cid != member.client_id and now - at < self.options.stale_s for cid, at in self.heard_from.items()
        )

    def claim(self, member: p.Member, now: float, *, ptt: bool) -> None:
        self.holder, self.ptt = member, ptt
        self.claimed_at = self.last_audio_at = self.last_loud_at = now

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
        quiet = now - self.last_loud_at
        return (
            now - self.last_audio_at > o.stale_s
            or (not in_utterance and quiet > o.quiet_release_s)
            or quiet > o.utterance_release_s
        )


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


class VoiceRoom:
    """One tutoring session for one room of the bridge (a :class:`~xr_bridge.server.RoomSession`).

    It starts when the first learner is in the room (so the greeting names
    them and nobody misses it) and ends with the room.  ``store`` (optional)
    remembers that first learner across sessions, as ``voice-tutor talk
    --name`` does.
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
        self._in_utterance = False
        self._speaker: p.Member | None = None
        """Who spoke the utterance in progress (the floor holder when it started)."""
        self._speakers: dict[int, p.Member] = {}
        self._closed = False
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
        loud = rms(samples) >= floor.options.speech_rms
        if floor.holder is None:
            if loud or not floor.others_active(client, now):
                floor.claim(client, now, ptt=False)
                for block in self._pre_roll.pop(client.client_id, ()):
                    self._source.push(block)
            else:
                self._keep_pre_roll(client, samples)
                return
        if not floor.holds(client):
            return  # another learner has the floor
        floor.last_audio_at = now
        if loud:
            floor.last_loud_at = now
        self._source.push(samples)

    async def on_learner_action(self, client: p.Member, action: p.LearnerAction) -> None:
        if self._closed or client.role != "learner":
            return
        now = time.monotonic()
        floor = self.floor
        match action:
            case p.PttStart():
                self._expire(now)
                if floor.holder is None or floor.holds(client):
                    floor.claim(client, now, ptt=True)
                    self._pre_roll.pop(client.client_id, None)
            case p.PttStop():
                if floor.holds(client):
                    self._release(end_turn=True)
            case p.Answer(choice=choice):
                self._expire(now)
                if floor.holder is not None and not floor.holds(client):
                    return  # someone else is speaking
                await self._answer(client, choice.replace("_", " ").replace("-", " ").strip())

    async def on_teacher_message(self, client: p.Member, message: p.TeacherMessage) -> None:
        # Shown to the room already.  A hint for the tutor needs Session support (see the report).
        add_hint = getattr(self.session, "add_hint", None)
        if message.kind == "hint" and add_hint is not None:
            add_hint(message.text)

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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the session ---------------------------------------------------------------------

    async def _main(self) -> None:
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
        self.ready.set()
        try:
            await self.tutoring.run(self.session)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("room %s: the voice session failed", self.room.id)
            await self._notice("error", f"the voice tutor stopped: {error}")

    async def _first_learner(self) -> p.Member:
        """Wait for a learner (a teacher may open the room before anyone can be taught)."""
        while not (learners := [m for m in self.room.members if m.role == "learner"]):
            await asyncio.sleep(self._tick_s)
        return learners[0]

    async def _start(self, first: p.Member) -> None:
        from voice_tutor.tutoring import Tutoring

        remembered = first.name if self.store is not None else None
        self.tutoring = await Tutoring.open(
            self.config, remembered, self.store, publish_simulation=self.request_simulation
        )  # the LLM tutor's simulation tools publish through request_simulation
        sink = PcmSink(self._send_tutor_audio, self.models.synthesizer.sample_rate)
        self.session = session = self.tutoring.session(self.models, self._source, sink)
        session.context.learner_name = first.name
        self._outgoing = session.bus.subscribe(maxsize=4096)
        self._tasks.append(asyncio.create_task(self._pump(self._outgoing), name=f"voice room {self.room.id} out"))
        self._tasks.append(asyncio.create_task(self._watch(), name=f"voice room {self.room.id} floor"))

    async def _send_tutor_audio(self, pcm: bytes, sample_rate: int) -> None:
        """The PcmSink's callback: queue the audio behind the events already published."""
        queue = self._outgoing
        if queue is not None:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(_TutorPcm(pcm, sample_rate))

    def request_simulation(self, request: Mapping[str, Any]) -> None:
        """The tutor's ``publish_simulation`` callback (``dialogue.tools``): a dict like the bridge's messages.

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
        match event:
            case ev.SpeechStarted(utterance_id=uid):
                self._in_utterance = True
                speaker = self._speakers.get(uid) or self.floor.holder or self._speaker
                if speaker is not None:
                    self._speaker = self._speakers[uid] = speaker
                    if self.session is not None:
                        self.session.context.learner_name = speaker.name
                    while len(self._speakers) > 64:
                        del self._speakers[next(iter(self._speakers))]
            case ev.FinalTranscript():
                self._in_utterance = False
                if self.floor.holder is not None and not self.floor.ptt:
                    self._release(end_turn=False)  # the turn is over: the floor is free again
        wire = p.event_to_wire(event)
        if isinstance(wire, p.RoomMessage):
            speaker = None
            if isinstance(wire, p.LearnerSpeechStarted | p.PartialTranscript | p.FinalTranscript):
                speaker = self._speakers.get(wire.utterance_id)
            await self.room.publish(wire, sender=speaker)
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
        """Release a floor whose holder went quiet, stopped sending, or left the room."""
        while True:
            await asyncio.sleep(self._tick_s)
            present = {m.client_id for m in self.room.members}
            holder = self.floor.holder
            if holder is not None and holder.client_id not in present:
                self._release(end_turn=True)
            else:
                self._expire(time.monotonic())
            for gone in set(self.floor.heard_from) - present:
                del self.floor.heard_from[gone]
                self._pre_roll.pop(gone, None)
                for key in [key for key in self._resamplers if key[0] == gone]:
                    del self._resamplers[key]

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
        longest_ms = max(self.config.turns.end_of_turn_ms, self.config.turns.unfinished_end_of_turn_ms)
        return 1.5 * longest_ms / 1000 + self.floor.options.end_of_turn_margin_s

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

    async def _notice(self, level: str, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.room.publish(p.Notice(session_id=self.room.id[:128], t=time.monotonic(), level=level,
                                             message=message[: p.MAX_TEXT_CHARS]))


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
