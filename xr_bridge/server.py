"""The XR bridge server: rooms of websocket clients mirroring one tutoring session.

One port serves both the static pages (kiosk, WebXR, dashboard) over plain
HTTP and the websocket endpoint at ``ws_path``.  A client says ``hello``,
gets ``welcome``, then ``join``\\ s a room with a signed token (see
:mod:`xr_bridge.auth`) and receives ``joined`` and a ``room_state`` snapshot.
From then on every room message is stamped with the room's ``seq`` and
fanned out to all members.

Design choices, each for one failure mode:

* Fan-out never awaits a client: each member has a bounded outbox drained by
  its own writer task.  Latest-value messages (``sim_state``, ``gaze``,
  ``partial_transcript``) are coalesced; tutor audio is dropped first when an
  outbox is half full (late audio is useless); a client whose outbox still
  overflows is disconnected (``4008``) and may resume.  A slow or dead client
  therefore costs memory bounded by ``Limits.send_queue``, never others' time.
* Every inbound frame is size-capped by ``websockets`` (``max_size``),
  rate-limited per client (token buckets), parsed by :mod:`.protocol` and
  checked against the sender's role before it touches room state.
* The voice pipeline plugs in through :class:`RoomSession`; without one, a
  room still relays scene commands, actions and teacher messages and runs
  simulations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import mimetypes
import secrets
import ssl as ssl_module
import time
from collections import deque
import json
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import auth, protocol as p
from .simulations import SimulationRunner, create as create_simulation

log = logging.getLogger(__name__)


class RoomSession(Protocol):
    """The seam where a voice session attaches to a room.

    The bridge calls these as members send things; the session answers by
    calling :meth:`Room.publish` with wire messages (see
    :func:`xr_bridge.protocol.event_to_wire` to forward a session's events).
    Callbacks run on the sending client's reader: hand heavy work to a queue.
    Everything runs on the server's event loop; from a worker thread, publish
    with ``asyncio.run_coroutine_threadsafe(room.publish(message), loop)``.
    """

    async def on_learner_audio(self, client: p.Member, pcm: bytes, sample_rate: int) -> None:
        """Mono int16 little-endian PCM from a learner's microphone."""

    async def on_learner_action(self, client: p.Member, action: p.LearnerAction) -> None:
        """A learner's action in the scene, already fanned out to the room (``seq`` set)."""

    async def on_teacher_message(self, client: p.Member, message: p.TeacherMessage) -> None:
        """A teacher's hint or message, already fanned out to the room."""

    async def close(self) -> None:
        """The room is gone (empty past the resume grace, or the server stopped)."""


SessionFactory = Callable[["Room"], RoomSession | None]

HttpRoute = Callable[[Request, dict[str, str]], Awaitable[tuple[int, object]]]
"""An HTTP GET handler of :class:`BridgeServer` (``routes``): the request and its query -> status, JSON body."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit of the server, with its default."""

    max_message_bytes: int = p.MAX_TEXT_BYTES
    """Largest frame a client may send (text or audio); bigger closes the connection (1009)."""
    send_queue: int = 256
    """Messages waiting for one client; past this it is disconnected as a slow consumer."""
    messages_per_s: float = 50.0
    message_burst: int = 100
    audio_bytes_per_s: float = 192_000.0
    """Twice real time for 48 kHz mono int16; 16 kHz audio needs 32 000."""
    audio_burst_bytes: int = 192_000
    max_rate_violations: int = 200
    """Frames dropped for rate before the client is disconnected (4029)."""
    handshake_timeout_s: float = 10.0
    resume_grace_s: float = 120.0
    """How long a disconnected member may resume, and an empty room is kept."""
    history: int = 512
    """Room events kept for resuming clients."""
    captions: int = 50
    max_scene_entries: int = 1024
    max_simulations: int = 4
    simulation_rate_hz: float = 30.0

    def __post_init__(self) -> None:
        """Refuse limits that the protocol's own bounds (``room_state`` sizes) would break later."""
        bounds = {"history": 4096, "captions": 256, "max_scene_entries": 4096, "max_simulations": 64}
        for name, most in bounds.items():
            if not 0 < getattr(self, name) <= most:
                raise ValueError(f"Limits.{name} must be within 1-{most}")
        if self.send_queue < 2 or self.max_message_bytes <= p.AUDIO_HEADER.size:
            raise ValueError("Limits.send_queue must be at least 2, max_message_bytes above the audio header")


def load_ssl_context(certfile: str | Path, keyfile: str | Path | None = None) -> ssl_module.SSLContext:
    """A server TLS context from PEM files (WebXR needs a secure origin off localhost)."""
    context = ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


class _TokenBucket:
    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self, amount: float) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True


class _Outbox:
    """A client's bounded FIFO of encoded frames; coalesces by key, drops droppables first."""

    def __init__(self, limit: int):
        self.limit = limit
        self.dropped = 0
        self._items: deque[tuple[str | bytes, Hashable | None]] = deque()
        self._keys: set[Hashable] = set()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, frame: str | bytes, key: Hashable | None = None, droppable: bool = False) -> bool:
        """Queue a frame; False when the outbox is full (the client must go)."""
        if key is not None and key in self._keys:
            self._items = deque(item for item in self._items if item[1] != key)
            self.dropped += 1
        elif droppable and len(self._items) >= self.limit // 2:
            self.dropped += 1
            return True
        elif len(self._items) >= self.limit:
            return False
        self._items.append((frame, key))
        if key is not None:
            self._keys.add(key)
        self._ready.set()
        return True

    async def get(self) -> str | bytes:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        frame, key = self._items.popleft()
        self._keys.discard(key)
        return frame


class Client:
    """One joined connection: who it is, and its outbox and writer."""

    def __init__(self, member: p.Member, resume_id: str, ws: ServerConnection, limits: Limits):
        self.member = member
        self.resume_id = resume_id
        self.ws = ws
        self.outbox = _Outbox(limits.send_queue)
        self.messages = _TokenBucket(limits.messages_per_s, limits.message_burst)
        self.audio = _TokenBucket(limits.audio_bytes_per_s, limits.audio_burst_bytes)
        self.rate_violations = 0
        self.last_rate_error = 0.0
        self.closing = False
        self.token = ""
        self._sending = False
        """The join token it came in with (revoked for learners when their session ends)."""
        self._writer = asyncio.create_task(self._write(), name=f"writer {member.client_id}")

    async def _write(self) -> None:
        try:
            while True:
                frame = await self.outbox.get()
                self._sending = True
                await self.ws.send(frame)
                self._sending = False
        except ConnectionClosed:
            pass

    def send(self, message: p.Message) -> bool:
        return self.outbox.put(p.encode_text(message))

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until what is queued for the client has been written."""
        deadline = time.monotonic() + timeout
        while (len(self.outbox) or self._sending) and time.monotonic() < deadline and not self._writer.done():
            await asyncio.sleep(0.01)

    async def close(self, code: int, reason: str, close_timeout: float) -> None:
        """Stop writing and close; a peer that cannot even take the close frame is cut."""
        self._writer.cancel()
        try:
            async with asyncio.timeout(close_timeout):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()


@dataclass(slots=True)
class _Ticket:
    """What lets a dropped member come back as itself."""

    member: p.Member
    expires_at: float | None = None  # None while connected
    token: str = ""


class Room:
    """A lesson shared by several clients: members, scene state, simulations, captions.

    Created by :meth:`BridgeServer.room`; a voice session talks to its
    members through :meth:`publish` only.
    """

    def __init__(
        self,
        room_id: str,
        limits: Limits,
        *,
        close_timeout: float,
        spawn: Callable[[Coroutine[object, object, None]], None],
    ):
        self.id = room_id
        self.limits = limits
        self.session: RoomSession | None = None
        self.seq = 0
        self._close_timeout = close_timeout
        self._spawn = spawn
        self._clients: dict[str, Client] = {}
        self._tickets: dict[str, _Ticket] = {}
        self._next_client = 0
        self._audio_seq = 0
        self._scene: dict[Hashable, p.RoomMessage] = {}
        self._runners: dict[str, SimulationRunner] = {}
        self._captions: deque[p.Caption] = deque(maxlen=limits.captions)
        self._history: deque[p.RoomMessage] = deque()
        self._evicted_seq = 0
        self.alerts: deque[p.Alert] = deque(maxlen=50)
        """The latest alerts of the current session (for a teacher's dashboard)."""
        self.revoked_tokens: set[str] = set()
        """Learner tokens of ended sessions: they no longer join this room."""
        self.sessions_ended = 0
        self._ending = False

    def attach(self, session: RoomSession | None) -> None:
        self.session = session

    @property
    def members(self) -> list[p.Member]:
        return [client.member for client in self._clients.values()]

    def clients(self) -> Iterator[Client]:
        return iter(list(self._clients.values()))

    # --- publishing ----------------------------------------------------------

    async def publish(
        self, item: p.RoomMessage | p.AudioChunk, *, sender: p.Member | None = None
    ) -> p.RoomMessage | p.AudioChunk:
        """Apply a message to the room's state and fan it out to every member, in ``seq`` order.

        Returns the stamped message (``seq``, ``sender``).  Scene and simulation
        commands that cannot apply raise :class:`~xr_bridge.protocol.ProtocolError`
        (``invalid_command``) and are not sent.  Tutor audio gets the room's
        audio ``seq`` and goes to everyone, dropped first for slow clients.
        """
        if isinstance(item, p.AudioChunk):
            self._audio_seq = (self._audio_seq + 1) % 2**32
            chunk = dataclasses.replace(item, seq=self._audio_seq)
            self._fan_out(p.encode_binary(chunk), droppable=True)
            return chunk
        start = await self._apply(item)
        self.seq += 1
        message = item.model_copy(update={"seq": self.seq, "sender": sender.client_id if sender else None})
        self._remember(message)
        self._fan_out(p.encode_text(message), key=_coalesce_key(message))
        if start is not None:
            start.start()
        return message

    def _fan_out(self, frame: str | bytes, *, key: Hashable | None = None, droppable: bool = False) -> None:
        for client in self.clients():
            if not client.outbox.put(frame, key, droppable):
                log.warning("room %s: %s is too slow, disconnecting", self.id, client.member.client_id)
                self._spawn(self.drop(client, "slow_consumer", p.CLOSE_SLOW_CONSUMER))

    async def _apply(self, message: p.RoomMessage) -> SimulationRunner | None:
        """Update the scene/simulation state; returns a runner to start once the command is out."""
        match message:
            case p.LoadScene():
                self._scene = {"scene": message}
            case p.SpawnObject(object_id=oid) | p.MoveObject(object_id=oid):
                entry = self._scene.get(("object", oid))
                if isinstance(message, p.MoveObject):  # a late joiner sees it in place, not moving
                    if isinstance(entry, p.SpawnObject):
                        rotation = message.rotation or entry.rotation
                        message = entry.model_copy(update={"position": message.position, "rotation": rotation})
                    else:
                        message = message.model_copy(update={"duration_s": 0.0})
                self._set_scene(("object", oid), message)
            case p.RemoveObject(object_id=oid):
                self._scene.pop(("object", oid), None)
            case p.Highlight(target=target, on=on):
                self._set_scene(("highlight", target), message if on else None)
            case p.ShowLabel(label_id=label, text=text, duration_s=duration):
                self._set_scene(("label", label), message if text and duration is None else None)
            case p.StartSimulation():
                return await self._start_simulation(message)
            case p.StopSimulation(sim_id=sid):
                runner = self._runner(sid)
                del self._runners[sid]
                await runner.stop()
            case p.SetSimParam(sim_id=sid, name=name, value=value):
                try:
                    self._runner(sid).sim.set_param(name, value)
                except ValueError as exc:
                    raise p.ProtocolError("invalid_command", str(exc), ref_type="set_sim_param") from None
        return None

    def _set_scene(self, key: Hashable, message: p.RoomMessage | None) -> None:
        if message is None:
            self._scene.pop(key, None)
            return
        if key not in self._scene and len(self._scene) >= self.limits.max_scene_entries:
            raise p.ProtocolError("invalid_command", f"the scene is full ({self.limits.max_scene_entries} entries)")
        self._scene[key] = message.model_copy(update={"seq": None, "sender": None})

    async def _start_simulation(self, command: p.StartSimulation) -> SimulationRunner:
        if command.sim_id not in self._runners and len(self._runners) >= self.limits.max_simulations:
            raise p.ProtocolError(
                "invalid_command",
                f"at most {self.limits.max_simulations} simulations per room",
                ref_type="start_simulation",
            )
        try:
            sim = create_simulation(command.model, command.params)
        except ValueError as exc:
            raise p.ProtocolError("invalid_command", str(exc), ref_type="start_simulation") from None
        if old := self._runners.pop(command.sim_id, None):
            await old.stop()
        rate = command.rate_hz or self.limits.simulation_rate_hz
        runner = SimulationRunner(command.sim_id, sim, self.publish, rate_hz=rate)
        self._runners[command.sim_id] = runner
        return runner

    def _runner(self, sim_id: str) -> SimulationRunner:
        if sim_id not in self._runners:
            raise p.ProtocolError("invalid_command", f"no simulation {sim_id!r} is running in this room")
        return self._runners[sim_id]

    def _remember(self, message: p.RoomMessage) -> None:
        """Keep captions, and the events a resuming client may have missed."""
        caption = _caption(message)
        if caption is not None:
            self._captions.append(caption)
        if isinstance(message, p.RateTurn):
            for index, line in enumerate(self._captions):
                if line.turn_id == message.turn_id:
                    self._captions[index] = line.model_copy(update={"rating": message.rating})
        if isinstance(message, p.Alert):
            self.alerts.append(message)
        if p.message_type(message) in _NOT_HISTORY:
            return
        self._history.append(message)
        if len(self._history) > self.limits.history:
            self._evicted_seq = self._history.popleft().seq or 0

    # --- membership ------------------------------------------------------------

    async def join(self, ws: ServerConnection, role: p.Role, name: str, request: p.Join) -> Client:
        """Add a member (resuming it when its ticket is valid) and send it ``joined`` and ``room_state``."""
        now = time.monotonic()
        self._tickets = {k: t for k, t in self._tickets.items() if t.expires_at is None or t.expires_at > now}
        ticket = self._tickets.get(request.resume) if request.resume else None
        resumed = ticket is not None and ticket.member.role == role and ticket.member.name == name
        if resumed:
            member, resume_id = ticket.member, request.resume
            if old := self._clients.get(member.client_id):
                old.closing = True  # closed in the background: a dead socket must not hold up its successor
                await self.leave(old, "resumed")
                self._spawn(old.close(p.CLOSE_REPLACED, "resumed on another connection", self._close_timeout))
        else:
            self._next_client += 1
            member = p.Member(client_id=f"c{self._next_client}", role=role, name=name)
            resume_id = secrets.token_urlsafe(18)
        # No await from the snapshot to the registration: the new member sees every seq after it.
        client = Client(member, resume_id, ws, self.limits)
        client.token = request.token
        self._tickets[resume_id] = _Ticket(member, token=request.token)
        self._clients[member.client_id] = client
        client.send(
            p.Joined(
                room=self.id, client_id=member.client_id, role=role, name=name,
                resume_id=resume_id, resumed=resumed, members=self.members,
            )
        )  # fmt: skip
        client.send(self.snapshot(request.last_seq if resumed else None))
        await self.publish(p.MemberJoined(client_id=member.client_id, role=role, name=name))
        return client

    def snapshot(self, last_seq: int | None = None) -> p.RoomState:
        """The room now; with ``last_seq``, also the events after it that are still kept."""
        missed = [m for m in self._history if m.seq is not None and m.seq > last_seq] if last_seq is not None else []
        return p.RoomState(
            seq=self.seq,
            scene=list(self._scene.values()),
            simulations=[runner.snapshot() for runner in self._runners.values()],
            captions=list(self._captions),
            missed=missed,
            gap=last_seq is not None and last_seq < self._evicted_seq,
        )

    async def leave(self, client: Client, reason: str) -> None:
        """Forget a connection that ended; its member may resume within the grace period."""
        if self._clients.get(client.member.client_id) is not client:
            return
        del self._clients[client.member.client_id]
        if ticket := self._tickets.get(client.resume_id):
            ticket.expires_at = time.monotonic() + self.limits.resume_grace_s
        await self.publish(p.MemberLeft(client_id=client.member.client_id, name=client.member.name, reason=reason))

    async def drop(self, client: Client, reason: str, code: int) -> None:
        """Remove a member now and close its connection with ``code``."""
        if client.closing:
            return
        client.closing = True
        await self.leave(client, reason)
        await client.close(code, reason.replace("_", " "), self._close_timeout)

    def error(self, client: Client, exc: p.ProtocolError) -> None:
        if not client.send(exc.to_message()):
            self._spawn(self.drop(client, "slow_consumer", p.CLOSE_SLOW_CONSUMER))

    # --- inbound -----------------------------------------------------------------

    async def receive(self, client: Client, item: p.Message | p.AudioChunk) -> None:
        """Act on a validated frame from a member whose role may send it."""
        member, session = client.member, self.session
        if isinstance(item, p.AudioChunk):
            if session is not None:
                await session.on_learner_audio(member, item.pcm, item.sample_rate)
            return
        assert isinstance(item, p.RoomMessage)
        if p.message_type(item) in p.PRIVATE_ACTIONS:  # a survey is between the learner and the tutor
            message = item.model_copy(update={"seq": self.seq, "sender": member.client_id})
            if not client.send(message):  # the echo tells the sender it arrived
                self._spawn(self.drop(client, "slow_consumer", p.CLOSE_SLOW_CONSUMER))
        else:
            message = await self.publish(item, sender=member)
        if session is None:
            return
        if isinstance(message, p.TeacherMessage):
            await session.on_teacher_message(member, message)
        elif p.message_type(message) in p.LEARNER_ACTIONS:
            await session.on_learner_action(member, message)  # type: ignore[arg-type]

    @property
    def empty(self) -> bool:
        return not self._clients

    async def end_conversation(self, reason: str, *, learner: str | None = None) -> None:
        """End the learner's session: nothing of it stays for the next learner.

        ``reason`` is a short phrase for people ("ended by the teacher").

        The voice session (``end_conversation`` of the :class:`RoomSession`, if
        it has one) stops first, so no event of it follows; then every member
        gets a ``notice`` of level ``session_ended`` (its message says why);
        captions, resume history, alerts, the scene and simulations are
        cleared; learners' tokens are revoked for this room and their
        connections closed with 4010.  Teachers and observers stay.
        """
        if self._ending:
            return
        self._ending = True
        try:
            end = getattr(self.session, "end_conversation", None)
            if end is not None:
                await end()
            learners = [client for client in self.clients() if client.member.role == "learner"]
            if learner is None and learners:
                learner = learners[0].member.name
            for ticket in self._tickets.values():
                if ticket.member.role == "learner" and ticket.token:
                    self.revoked_tokens.add(ticket.token)
            self._tickets = {key: t for key, t in self._tickets.items() if t.member.role != "learner"}
            for runner in self._runners.values():
                await runner.stop()
            self._runners.clear()
            self._scene.clear()
            self._captions.clear()
            self._history.clear()
            self.alerts.clear()
            who = f"{learner}'s session" if learner else "The session"
            await self.publish(p.Notice(session_id=self.id[:128], t=time.monotonic(), level=p.SESSION_ENDED,
                                        message=f"{who} ended: {reason}."[: p.MAX_TEXT_CHARS]))
            self._history.clear()
            self._evicted_seq = self.seq
            self.sessions_ended += 1
            await asyncio.gather(*(client.flush(self._close_timeout) for client in learners))  # they read why
            for client in learners:
                await self.drop(client, "session_ended", p.CLOSE_SESSION_ENDED)
        finally:
            self._ending = False

    async def close(self) -> None:
        for runner in self._runners.values():
            await runner.stop()
        self._runners.clear()
        for client in self.clients():
            await self.drop(client, "room_closed", 1001)
        if self.session is not None:
            await self.session.close()


_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip

_NOT_HISTORY = p.SCENE_COMMANDS | p.SIM_COMMANDS | {"sim_state", "gaze", "partial_transcript"}
"""State the snapshot already carries, or transient values a late client has no use for."""


def _coalesce_key(message: p.RoomMessage) -> Hashable | None:
    """Messages where only the latest value matters share a key; a slow client gets the newest."""
    match message:
        case p.SimState(sim_id=sid):
            return ("sim_state", sid)
        case p.Gaze(sender=sender):
            return ("gaze", sender)
        case p.PartialTranscript(session_id=sid, utterance_id=uid):
            return ("partial", sid, uid)
    return None


def _caption(message: p.RoomMessage) -> p.Caption | None:
    seq = message.seq or 0
    match message:
        case p.FinalTranscript(text=text) if text:
            return p.Caption(seq=seq, speaker="learner", text=text)
        case p.TutorSpeechEnded(heard=heard, cut=cut) if heard:
            return p.Caption(seq=seq, speaker="tutor", text=heard, cut=cut, turn_id=message.turn_id)
        case p.TeacherMessage(text=text):
            return p.Caption(seq=seq, speaker="teacher", text=text)
    return None


class BridgeServer:
    """The websocket + static HTTP server.

    ``secret`` signs join tokens (:meth:`make_token`).  ``static_dir`` is
    served over HTTP on the same port; the websocket lives at ``ws_path``.
    ``session_factory`` is called with each new room and may return the
    :class:`RoomSession` to attach.  ``ping_interval``/``ping_timeout`` are the
    heartbeat of ``websockets``: a peer that stops answering is closed and
    leaves its room.  Use ``async with BridgeServer(...) as server:`` or
    :meth:`start`/:meth:`close`; ``port=0`` picks a free port (:attr:`port`).
    """

    def __init__(
        self,
        secret: bytes,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        static_dir: str | Path | None = None,
        ws_path: str = "/ws",
        ssl: ssl_module.SSLContext | None = None,
        session_factory: SessionFactory | None = None,
        routes: dict[str, HttpRoute] | None = None,
        limits: Limits = Limits(),
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 2.0,
        server_name: str = "xr-bridge",
    ):
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self.secret = secret
        self.host = host
        self.static_dir = Path(static_dir).resolve() if static_dir is not None else None
        self.ws_path = ws_path
        self.limits = limits
        self.session_factory = session_factory
        self.routes: dict[str, HttpRoute] = dict(routes or {})
        """HTTP GET handlers by path (``/api/...``), answered with JSON on the same port.

        A path ending in ``/`` (``/api/v1/``) also answers every path below it
        (the longest such prefix wins); the handler reads ``request.path``."""
        self.ping_interval = ping_interval
        self.server_name = server_name
        self._requested_port = port
        self._ssl = ssl
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._rooms: dict[str, Room] = {}
        self._reapers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Server | None = None

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            ssl=self._ssl,
            max_size=self.limits.max_message_bytes,
            ping_interval=self.ping_interval,
            ping_timeout=self._ping_timeout,
            close_timeout=self._close_timeout,
            open_timeout=self.limits.handshake_timeout_s,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for room_id in list(self._rooms):
            await self._remove_room(room_id)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        await self._server.serve_forever()

    async def __aenter__(self) -> BridgeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """The websocket URL clients connect to."""
        return f"{'wss' if self._ssl else 'ws'}://{self.host}:{self.port}{self.ws_path}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://{self.host}:{self.port}/"

    def make_token(self, room: str, role: p.Role, name: str, ttl_s: float = 3600.0) -> str:
        return auth.make_token(self.secret, room=room, role=role, name=name, ttl_s=ttl_s)

    # --- rooms -----------------------------------------------------------------

    @property
    def rooms(self) -> dict[str, Room]:
        return dict(self._rooms)

    def room(self, room_id: str) -> Room:
        """The room ``room_id``, created (with its session) on first use."""
        if room_id not in self._rooms:
            room = Room(room_id, self.limits, close_timeout=self._close_timeout, spawn=self._spawn)
            if self.session_factory is not None:
                room.attach(self.session_factory(room))
            self._rooms[room_id] = room
        if reaper := self._reapers.pop(room_id, None):
            reaper.cancel()
        return self._rooms[room_id]

    def _reap_later(self, room: Room) -> None:
        if room.empty and room.id not in self._reapers:
            loop = asyncio.get_running_loop()
            self._reapers[room.id] = loop.call_later(
                self.limits.resume_grace_s, lambda: self._spawn(self._remove_room(room.id, only_if_empty=True))
            )

    async def _remove_room(self, room_id: str, *, only_if_empty: bool = False) -> None:
        room = self._rooms.get(room_id)
        if room is None or (only_if_empty and not room.empty):
            return
        del self._rooms[room_id]
        if reaper := self._reapers.pop(room_id, None):
            reaper.cancel()
        await room.close()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- HTTP --------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == self.ws_path:
            return None
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return connection.respond(404, f"The websocket endpoint is {self.ws_path}\n")
        if (route := self._find_route(path)) is not None:
            return await self._route(connection, request, path, route)
        if (method := getattr(request, "method", "GET")) != "GET":  # see _route: static files are read-only too
            response = connection.respond(405, f"{path} answers GET only, not {method}\n")
            response.headers["Allow"] = "GET"
            return response
        found = await asyncio.to_thread(self._read_static, path)
        if isinstance(found, int):
            return connection.respond(found, "Not found\n" if found == 404 else "Bad path\n")
        body, content_type = found
        headers = Headers(
            {
                "Content-Type": content_type,
                "Content-Length": str(len(body)),
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            }
        )
        return Response(200, "OK", headers, body)

    def _find_route(self, path: str) -> HttpRoute | None:
        if path in self.routes:
            return self.routes[path]
        prefixes = [key for key in self.routes if key.endswith("/") and path.startswith(key)]
        return self.routes[max(prefixes, key=len)] if prefixes else None

    async def _route(self, connection: ServerConnection, request: Request, path: str, route: HttpRoute) -> Response:
        query = {key: values[-1] for key, values in parse_qs(urlsplit(request.path).query).items()}
        # Recent websockets releases (17 here) hand other methods to process_request too (older ones refuse them);
        # a route is a GET handler, never run for POST, DELETE, or HEAD (which would get a body).
        method = getattr(request, "method", "GET")
        if method != "GET":
            status, body = 405, {"error": f"{path} answers GET only, not {method}"}
        else:
            try:
                status, body = await route(request, query)
            except Exception:
                log.exception("HTTP %s failed", path)
                status, body = 500, {"error": "the server failed to handle that request"}
        data = json.dumps(body, ensure_ascii=False).encode()
        headers = Headers(
            {
                "Content-Type": "application/json; charset=utf-8",
                "Content-Length": str(len(data)),
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            }
        )
        if status == 405:
            headers["Allow"] = "GET"
        return Response(status, _REASONS.get(status, "Error"), headers, data)

    def _read_static(self, path: str) -> tuple[bytes, str] | int:
        """A file under ``static_dir`` (``index.html`` for folders) and its type, or an HTTP status."""
        if self.static_dir is None:
            return 404
        relative = unquote(path).lstrip("/")
        if "\0" in relative:
            return 400
        target = (self.static_dir / relative).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(self.static_dir) or not target.is_file():
            return 404
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type in ("application/javascript", "application/json"):
            content_type += "; charset=utf-8"
        return target.read_bytes(), content_type

    # --- websocket ------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            async with asyncio.timeout(self.limits.handshake_timeout_s):
                joined = await self._handshake(ws)
        except TimeoutError:
            await ws.close(p.CLOSE_HANDSHAKE, "no hello and join in time")
            return
        except ConnectionClosed:
            return
        if joined is None:
            return
        room, client = joined
        reason = "closed"
        try:
            await self._read(room, client)
        except ConnectionClosed:
            reason = "connection_lost"
        finally:
            await room.leave(client, reason)
            if not client.closing:
                await client.close(1000, "", self._close_timeout)
            self._reap_later(room)

    async def _refuse(self, ws: ServerConnection, exc: p.ProtocolError, code: int) -> None:
        await ws.send(p.encode_text(exc.to_message()))
        await ws.close(code, exc.message[:120])

    async def _handshake(self, ws: ServerConnection) -> tuple[Room, Client] | None:
        """hello -> welcome, join -> joined; refusals are sent and closed here."""
        try:
            hello = p.parse(await ws.recv(), max_bytes=self.limits.max_message_bytes)
            if not isinstance(hello, p.Hello):
                raise p.ProtocolError("bad_state", "the first message must be 'hello'")
            version = p.negotiate(hello)
        except p.ProtocolError as exc:
            code = p.CLOSE_UNSUPPORTED_VERSION if exc.code == "unsupported_version" else p.CLOSE_HANDSHAKE
            await self._refuse(ws, exc, code)
            return None
        await ws.send(
            p.encode_text(
                p.Welcome(
                    version=version,
                    server=self.server_name,
                    max_message_bytes=self.limits.max_message_bytes,
                    max_audio_bytes=min(p.MAX_AUDIO_BYTES, self.limits.max_message_bytes - p.AUDIO_HEADER.size),
                    ping_interval_s=self.ping_interval,
                )
            )
        )
        try:
            join = p.parse(await ws.recv(), max_bytes=self.limits.max_message_bytes)
            if not isinstance(join, p.Join):
                raise p.ProtocolError("bad_state", "after 'welcome' the client must send 'join'")
        except p.ProtocolError as exc:
            await self._refuse(ws, exc, p.CLOSE_HANDSHAKE)
            return None
        try:
            claims = auth.verify_token(self.secret, join.token)
            if (claims.role, claims.name) != (join.role, join.name):
                raise auth.TokenError(f"the token is for {claims.name!r} as {claims.role}")
        except auth.TokenError as exc:
            await self._refuse(ws, p.ProtocolError("unauthorized", str(exc), ref_type="join"), p.CLOSE_UNAUTHORIZED)
            return None
        existing = self._rooms.get(claims.room)
        if existing is not None and join.token in existing.revoked_tokens:
            exc = p.ProtocolError("unauthorized", "this session has ended; sign in again", ref_type="join")
            await self._refuse(ws, exc, p.CLOSE_UNAUTHORIZED)
            return None
        room = self.room(claims.room)
        return room, await room.join(ws, claims.role, claims.name, join)

    async def _read(self, room: Room, client: Client) -> None:
        limits = self.limits
        async for frame in client.ws:
            if client.closing:
                continue  # drain what is in flight, so the closing handshake can complete
            bucket, cost = (client.audio, len(frame)) if isinstance(frame, bytes) else (client.messages, 1)
            if not bucket.take(cost):
                client.rate_violations += 1
                if client.rate_violations > limits.max_rate_violations:
                    self._spawn(room.drop(client, "rate_limited", p.CLOSE_RATE_LIMITED))
                    continue
                now = time.monotonic()
                if now - client.last_rate_error >= 1.0:
                    client.last_rate_error = now
                    room.error(client, p.ProtocolError("rate_limited", "too many messages; some were dropped"))
                continue
            try:
                item = p.parse(frame, max_bytes=limits.max_message_bytes)
                if isinstance(item, p.Message) and p.message_type(item) in p.HANDSHAKE:
                    raise p.ProtocolError("bad_state", "already joined", ref_type=p.message_type(item))
                p.check_allowed(client.member.role, item)
                await room.receive(client, item)
            except p.ProtocolError as exc:
                room.error(client, exc)
            except Exception:
                log.exception("room %s: handling a message from %s failed", room.id, client.member.client_id)
                room.error(client, p.ProtocolError("internal", "the server failed to handle that message"))
