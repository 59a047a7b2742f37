"""A native OpenXR client of the bridge: a learner in a headset, in the tutor's room.

Run it with a room's websocket URL and a join token::

    python -m xr_bridge.openxr_client --url ws://HOST:8765/ws --token TOKEN

It joins the room (``hello``/``join`` of :mod:`xr_bridge.protocol`), maps two
controller actions to learner actions and shows the conversation as captions:

* **push-to-talk** (left ``X``/``select``, right ``A``): while held, the default
  microphone (sounddevice, through :class:`voice_tutor.audio.sources.MicrophoneSource`)
  streams to the tutor as 16 kHz PCM binary frames between ``ptt_start`` and ``ptt_stop``;
* **select** (right trigger or ``select``): ``select_object`` with the object of the
  room's scene the right controller's aim ray hits, or ``--select-fallback`` when there
  is no tracked ray;
* **captions**: partial and final transcripts, the tutor's text as it is produced (then
  what the learner actually heard), teacher messages and warnings, printed to the console
  and, in the headset, drawn on a head-locked OpenXR quad layer (when Pillow is installed
  to rasterise the text; console only otherwise).

Three layers, so that everything but the headset can be tested without one:

* :class:`BridgeClient` -- the networking core: handshake, resume after a dropped
  connection, the room's captions (:class:`Captions`) and scene (:class:`SceneObjects`,
  for picking), and the mapping of :class:`ControllerEvent` objects to protocol messages
  and audio frames.  No OpenXR here.
* :class:`XrInput` / :class:`CaptionDisplay` -- the small interface the XR layer
  implements: an async stream of controller events, and a ``show(lines)`` sink.
* :class:`OpenXrLayer` -- pyopenxr: instance, session, actions, the frame loop (in its
  own thread, since ``xrWaitFrame`` blocks) and the caption quad.  With no runtime
  installed, :meth:`OpenXrLayer.open` raises :class:`XrUnavailable` with one clear line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import ssl as ssl_module
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from . import protocol as p

log = logging.getLogger(__name__)

CLIENT_NAME = "openxr-client/0.1"
PROG = "voice-tutor XR client"
LEARNER_RATE = 16000
"""The sample rate learners stream at (the speech recogniser's), per PROTOCOL.md."""

EXIT_ERROR = 1
EXIT_NO_RUNTIME = 3

# Close codes after which reconnecting cannot help (PROTOCOL.md, "Close codes").
FINAL_CLOSE_CODES = frozenset(
    {p.CLOSE_HANDSHAKE, p.CLOSE_UNAUTHORIZED, p.CLOSE_UNSUPPORTED_VERSION, p.CLOSE_REPLACED}
)

Vec3 = tuple[float, float, float]
_M = TypeVar("_M", bound=p.Message)


# --- the interface of the XR layer ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ray:
    """A pointing ray in the scene's frame (metres, right-handed, y up); ``direction`` need not be unit."""

    origin: Vec3
    direction: Vec3


@dataclass(frozen=True, slots=True)
class ControllerEvent:
    """One thing the learner did with a controller.

    ``talk_pressed``/``talk_released``: the push-to-talk button; ``select``: the
    select/trigger action, with the aim ray when the controller is tracked.
    """

    kind: Literal["talk_pressed", "talk_released", "select"]
    ray: Ray | None = None


class XrInput(Protocol):
    """Controller events, as the XR layer sees them; the iterator ends when the XR session ends."""

    def events(self) -> AsyncIterator[ControllerEvent]: ...


@dataclass(frozen=True, slots=True)
class CaptionLine:
    speaker: Literal["learner", "tutor", "teacher", "notice"]
    text: str
    final: bool = True
    """False while it may still change (a partial transcript, the tutor's reply as it streams)."""
    cut: bool = False
    """A tutor reply interrupted by the learner: ``text`` is what was heard."""

    def render(self, name: str = "You") -> str:
        who = {"learner": name, "tutor": "Tutor", "teacher": "Teacher", "notice": "!"}[self.speaker]
        text = self.text + (" —" if self.cut else "") + ("" if self.final else " …")
        return f"{who}: {text}"


class CaptionDisplay(Protocol):
    """Where captions go: ``show`` gets the whole current view, oldest line first."""

    def show(self, lines: Sequence[CaptionLine]) -> None: ...


class AudioSource(Protocol):
    """16 kHz mono float frames, as :mod:`voice_tutor.audio.sources` yields them."""

    def frames(self) -> AsyncIterator[object]: ...


# --- room state the client keeps --------------------------------------------------------


class Captions:
    """The conversation as captions: finished lines, plus lines still being produced."""

    def __init__(self, max_lines: int = 6):
        self.max_lines = max_lines
        self._lines: list[tuple[object, CaptionLine]] = []  # (key of a live line or None, line)
        self._snapshot_seqs: set[int] = set()  # captions a room_state gave, which its `missed` repeats

    @property
    def lines(self) -> list[CaptionLine]:
        return [line for _, line in self._lines]

    def apply(self, message: p.Message) -> bool:
        """Update from one message of the room; True when the view changed."""
        if isinstance(message, p.RoomMessage) and message.seq in self._snapshot_seqs:
            return False
        match message:
            case p.RoomState(captions=captions):
                self._lines = [(None, CaptionLine(c.speaker, c.text, cut=c.cut)) for c in captions]
                self._snapshot_seqs = {c.seq for c in captions}
            case p.PartialTranscript(utterance_id=u, text=text) if text:
                self._set(("utterance", u), CaptionLine("learner", text, final=False))
            case p.FinalTranscript(utterance_id=u, text=text):
                self._set(("utterance", u), CaptionLine("learner", text) if text else None)
            case p.TutorText(turn_id=turn, text=piece):
                so_far = self._live_text(("turn", turn))
                self._set(("turn", turn), CaptionLine("tutor", so_far + piece, final=False))
            case p.TutorSpeechEnded(turn_id=turn, text=text, heard=heard, cut=cut):
                shown = heard if cut else (heard or text)
                self._set(("turn", turn), CaptionLine("tutor", shown, cut=cut) if shown else None)
            case p.TeacherMessage(text=text):
                self._set(None, CaptionLine("teacher", text))
            case p.Notice(level=level, message=text) if level.lower() in ("warning", "error", "critical"):
                self._set(None, CaptionLine("notice", text))
            case _:
                return False
        del self._lines[: -self.max_lines]
        return True

    def note(self, text: str) -> None:
        """A line from the client itself (no microphone, a refused message)."""
        self._set(None, CaptionLine("notice", text))
        del self._lines[: -self.max_lines]

    def _live_text(self, key: object) -> str:
        return next((line.text for k, line in self._lines if k == key and not line.final), "")

    def _set(self, key: object, line: CaptionLine | None) -> None:
        """Replace the live line ``key`` (finalising it when ``line`` is final), or append."""
        index = next((i for i, (k, _) in enumerate(self._lines) if key is not None and k == key), None)
        entry = (None if line is None or line.final else key, line)
        if index is None:
            if line is not None:
                self._lines.append(entry)  # type: ignore[arg-type]
        elif line is None:
            del self._lines[index]
        else:
            self._lines[index] = entry  # type: ignore[assignment]


@dataclass(slots=True)
class SceneObject:
    object_id: str
    position: Vec3
    radius: float


class SceneObjects:
    """Where the scene's objects are, from scene commands, so a ray can pick one."""

    def __init__(self, pick_radius_m: float = 0.25):
        self.pick_radius_m = pick_radius_m
        self.objects: dict[str, SceneObject] = {}

    def apply(self, message: p.Message) -> None:
        match message:
            case p.RoomState(scene=commands):
                self.objects.clear()
                for command in commands:
                    self.apply(command)
            case p.LoadScene():
                self.objects.clear()
            case p.SpawnObject(object_id=oid, position=position, scale=scale):
                self.objects[oid] = SceneObject(oid, position, self.pick_radius_m * scale)
            case p.MoveObject(object_id=oid, position=position):
                if (known := self.objects.get(oid)) is not None:
                    known.position = position
                else:  # an object of the scene asset itself, now placed
                    self.objects[oid] = SceneObject(oid, position, self.pick_radius_m)
            case p.RemoveObject(object_id=oid):
                self.objects.pop(oid, None)

    def pick(self, ray: Ray) -> str | None:
        """The object whose bounding sphere the ray enters first, or None."""
        (ox, oy, oz), (dx, dy, dz) = ray.origin, ray.direction
        norm = math.sqrt(dx * dx + dy * dy + dz * dz)
        if norm == 0:
            return None
        dx, dy, dz = dx / norm, dy / norm, dz / norm
        best: tuple[float, str] | None = None
        for obj in self.objects.values():
            cx, cy, cz = obj.position[0] - ox, obj.position[1] - oy, obj.position[2] - oz
            along = cx * dx + cy * dy + cz * dz
            miss2 = cx * cx + cy * cy + cz * cz - along * along
            if miss2 > obj.radius**2:
                continue
            entry = along - math.sqrt(obj.radius**2 - miss2)
            if along + obj.radius < 0:  # behind the controller
                continue
            if best is None or entry < best[0]:
                best = (entry, obj.object_id)
        return best[1] if best else None


# --- the networking core --------------------------------------------------------------------


class BridgeError(Exception):
    """The bridge refused us, or cannot be reached (the message is one line for the user)."""


def token_identity(token: str) -> tuple[p.Role, str] | None:
    """The role and name a join token is for, read without verifying it (the server does).

    ``join`` must repeat them; this only saves the user typing them again.
    """
    try:
        payload = token.split(".", 1)[0]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        role, name = claims["role"], claims["name"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if role not in p.ROLES or not isinstance(name, str) or not name:
        return None
    return role, name


class BridgeClient:
    """One member of a room, over one websocket at a time (resuming across drops).

    ``audio`` makes the learner's microphone source when push-to-talk is pressed
    (default: the system's default input through sounddevice).  ``fallback_object``
    is selected when a select comes without a ray; None sends nothing then.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        display: CaptionDisplay,
        role: p.Role | None = None,
        name: str | None = None,
        audio: Callable[[], AudioSource] | None = None,
        fallback_object: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        reconnect_attempts: int = 5,
        reconnect_delay_s: float = 0.5,
        open_timeout_s: float = 10.0,
    ):
        identity = token_identity(token)
        if role is None or name is None:
            if identity is None:
                raise BridgeError("cannot read the role and name from the token; pass --role and --name")
            role, name = role or identity[0], name or identity[1]
        self.url, self.token, self.role, self.name = url, token, role, name
        self.display = display
        self.audio = audio or _microphone
        self.fallback_object = fallback_object
        self.ssl = ssl
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay_s = reconnect_delay_s
        self.open_timeout_s = open_timeout_s
        self.captions = Captions()
        self.scene = SceneObjects()
        self.welcome: p.Welcome | None = None
        self.joined: p.Joined | None = None
        self.last_seq: int | None = None
        self.errors: list[p.Error] = []
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._talking: asyncio.Task[None] | None = None
        self._audio_seq = 0
        self._send_lock = asyncio.Lock()

    # --- connection ----------------------------------------------------------------------

    async def connect(self) -> p.Joined:
        """Say hello and join (resuming when we were in the room before)."""
        try:
            ws = await connect(
                self.url, ssl=self.ssl, max_size=p.MAX_SERVER_TEXT_BYTES, open_timeout=self.open_timeout_s
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise BridgeError(f"cannot connect to {self.url}: {exc}") from None
        try:
            await ws.send(p.encode_text(p.Hello(versions=sorted(p.SUPPORTED_VERSIONS), client=CLIENT_NAME)))
            welcome = await self._expect(ws, p.Welcome)
            resume = self.joined.resume_id if self.joined else None
            await ws.send(
                p.encode_text(
                    p.Join(
                        token=self.token, role=self.role, name=self.name, resume=resume,
                        last_seq=self.last_seq if resume else None,
                    )
                )
            )  # fmt: skip
            joined = await self._expect(ws, p.Joined)
            state = await self._expect(ws, p.RoomState)
        except BaseException:
            await ws.close()
            raise
        self._ws, self.welcome, self.joined = ws, welcome, joined
        self._on_message(state)
        for missed in state.missed:
            self._on_message(missed)
        self._connected.set()
        return joined

    async def _expect(self, ws: ClientConnection, kind: type[_M]) -> _M:
        try:
            message = p.parse(await ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES)
        except ConnectionClosed as exc:
            raise BridgeError(f"the bridge closed the connection during the handshake ({_close(exc)})") from None
        except p.ProtocolError as exc:
            raise BridgeError(f"the bridge sent an invalid message: {exc.message}") from None
        if isinstance(message, p.Error):
            raise BridgeError(f"the bridge refused to let us in: {message.code}: {message.message}")
        if not isinstance(message, kind):
            raise BridgeError(f"expected '{kind.model_fields['type'].default}' from the bridge, got {message!r:.80}")
        return message

    async def serve(self) -> None:
        """Read the room until the connection ends for good, reconnecting and resuming meanwhile."""
        if self._ws is None:
            await self.connect()
        attempts = 0
        while True:
            assert self._ws is not None
            try:
                async for frame in self._ws:
                    attempts = 0
                    try:
                        item = p.parse(frame, max_bytes=p.MAX_SERVER_TEXT_BYTES)
                    except p.ProtocolError as exc:
                        log.warning("ignoring an invalid frame from the bridge: %s", exc.message)
                        continue
                    self._on_message(item)
                code = self._ws.close_code
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
            self._connected.clear()
            self._stop_talking()
            if code in FINAL_CLOSE_CODES or code == 1000:
                reason = self._ws.close_reason or ""
                if code != 1000:
                    raise BridgeError(f"the bridge closed the connection: {code} {reason}".rstrip())
                return
            while True:
                attempts += 1
                if attempts > self.reconnect_attempts:
                    raise BridgeError(f"lost the connection to the bridge (close code {code}) and could not resume")
                await asyncio.sleep(min(self.reconnect_delay_s * 2 ** (attempts - 1), 5.0))
                try:
                    joined = await self.connect()
                except BridgeError as exc:
                    log.warning("reconnecting: %s", exc)
                    continue
                self.captions.note("reconnected" + (" (resumed)" if joined.resumed else ""))
                self._show()
                break

    async def close(self) -> None:
        self._stop_talking()
        if self._ws is not None:
            await self._ws.close()

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def send(self, item: p.Message | p.AudioChunk) -> bool:
        """Send one message or audio frame; False when not connected (it is dropped)."""
        ws = self._ws
        if ws is None or not self._connected.is_set():
            return False
        try:
            async with self._send_lock:
                await ws.send(p.encode(item))
            return True
        except ConnectionClosed:
            return False

    # --- inbound -----------------------------------------------------------------------------

    def _on_message(self, item: p.Message | p.AudioChunk) -> None:
        if isinstance(item, p.AudioChunk):
            return  # tutor speech: this client shows captions; playback is left to the headset's audio app
        if isinstance(item, p.RoomMessage) and item.seq is not None:
            self.last_seq = item.seq
        elif isinstance(item, p.RoomState):
            self.last_seq = item.seq
        if isinstance(item, p.Error):
            self.errors.append(item)
            self.captions.note(f"refused: {item.message}")
            self._show()
            return
        self.scene.apply(item)
        if self.captions.apply(item):
            self._show()

    def _show(self) -> None:
        try:
            self.display.show(self.captions.lines)
        except Exception:  # a broken display must not take the connection down
            log.exception("caption display failed")

    # --- controller actions -> learner actions ---------------------------------------------------

    async def handle(self, event: ControllerEvent) -> None:
        """Act on one controller event (only learners act; others just watch)."""
        if self.role != "learner":
            return
        match event.kind:
            case "talk_pressed":
                await self._start_talking()
            case "talk_released":
                await self._stop_talking_and_wait()
            case "select":
                target = self.scene.pick(event.ray) if event.ray is not None else self.fallback_object
                if target is None:
                    self.captions.note("nothing to select there")
                    self._show()
                    return
                await self.send(p.SelectObject(object_id=target))

    async def run_input(self, events: AsyncIterator[ControllerEvent]) -> None:
        async for event in events:
            await self.handle(event)

    async def _start_talking(self) -> None:
        if self._talking is not None and not self._talking.done():
            return
        try:
            source = self.audio()
        except Exception as exc:  # AudioInputError, PortAudio missing: say so, keep the session
            self.captions.note(f"cannot listen: {exc}")
            self._show()
            return
        if await self.send(p.PttStart()):
            self._talking = asyncio.create_task(self._stream(source), name="push-to-talk")

    async def _stream(self, source: AudioSource) -> None:
        frames = source.frames()
        try:
            async for frame in frames:
                samples = getattr(frame, "samples", frame)
                chunk = p.AudioChunk.from_float(samples, LEARNER_RATE, p.AudioKind.LEARNER, seq=self._audio_seq)
                self._audio_seq = (self._audio_seq + 1) % 2**32
                if not await self.send(chunk):
                    return
        except Exception as exc:
            self.captions.note(f"microphone stopped: {exc}")
            self._show()
        finally:
            await frames.aclose()  # type: ignore[attr-defined]  # closes the input stream

    async def _stop_talking_and_wait(self) -> None:
        task = self._talking
        if task is None:
            return
        self._talking = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.send(p.PttStop())

    def _stop_talking(self) -> None:
        """Stop streaming without ``ptt_stop`` (the connection is gone; the server ends the turn)."""
        if self._talking is not None:
            self._talking.cancel()
            self._talking = None


def _microphone() -> AudioSource:
    from voice_tutor.audio.sources import MicrophoneSource

    return MicrophoneSource()


def _close(exc: ConnectionClosed) -> str:
    return f"code {exc.rcvd.code} {exc.rcvd.reason}".rstrip() if exc.rcvd else "no close frame"


async def run_client(client: BridgeClient, xr_input: XrInput) -> None:
    """Join, then act on controller events and show the room until either side ends."""
    await client.connect()
    serving = asyncio.create_task(client.serve(), name="bridge")
    acting = asyncio.create_task(client.run_input(xr_input.events()), name="controller")
    try:
        done, _ = await asyncio.wait({serving, acting}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a BridgeError surfaces here
    finally:
        for task in (serving, acting):
            task.cancel()
        await asyncio.gather(serving, acting, return_exceptions=True)
        await client.close()


# --- displays ------------------------------------------------------------------------------------


class ConsoleCaptions:
    """Captions on a terminal: each line printed once it is new or has changed."""

    def __init__(self, name: str = "You", out=None):
        self.name = name
        self.out = out or sys.stdout
        self._shown: list[str] = []

    def show(self, lines: Sequence[CaptionLine]) -> None:
        rendered = [line.render(self.name) for line in lines]
        for text in rendered:
            if text not in self._shown:
                print(text, file=self.out, flush=True)
        self._shown = rendered


class TeeDisplay:
    def __init__(self, *displays: CaptionDisplay):
        self.displays = displays

    def show(self, lines: Sequence[CaptionLine]) -> None:
        for display in self.displays:
            display.show(lines)


# --- the OpenXR layer -------------------------------------------------------------------------


class XrUnavailable(Exception):
    """OpenXR cannot run here; ``str()`` is the line to show the user."""


def _xr_failure(exc: Exception) -> XrUnavailable:
    import xr

    result = exc.get_result_enum() if isinstance(exc, xr.ResultException) else None
    code = f"XR_{result.name}" if result is not None else type(exc).__name__
    if isinstance(exc, xr.RuntimeUnavailableError):
        return XrUnavailable(f"no OpenXR runtime found ({code}); install one such as Monado or SteamVR")
    if isinstance(exc, xr.FormFactorUnavailableError):
        return XrUnavailable(f"the OpenXR runtime sees no headset ({code}); connect and wake the headset")
    return XrUnavailable(f"OpenXR failed: {exc} ({code})")


BINDINGS: dict[str, dict[str, list[str]]] = {
    "/interaction_profiles/khr/simple_controller": {
        "talk": ["/user/hand/left/input/select/click"],
        "select": ["/user/hand/right/input/select/click"],
        "aim": ["/user/hand/right/input/aim/pose"],
    },
    "/interaction_profiles/oculus/touch_controller": {
        "talk": ["/user/hand/left/input/x/click", "/user/hand/right/input/a/click"],
        "select": ["/user/hand/right/input/trigger/value"],
        "aim": ["/user/hand/right/input/aim/pose"],
    },
    "/interaction_profiles/valve/index_controller": {
        "talk": ["/user/hand/right/input/a/click"],
        "select": ["/user/hand/right/input/trigger/click"],
        "aim": ["/user/hand/right/input/aim/pose"],
    },
    "/interaction_profiles/htc/vive_controller": {
        "talk": ["/user/hand/right/input/menu/click"],
        "select": ["/user/hand/right/input/trigger/click"],
        "aim": ["/user/hand/right/input/aim/pose"],
    },
}
"""Suggested bindings per interaction profile: push-to-talk, select, and the right hand's aim pose."""


class OpenXrLayer:
    """The headset: controller events out, captions in (implements XrInput and CaptionDisplay).

    :meth:`open` creates the OpenXR instance and session (OpenGL through a hidden GLFW
    window, or ``XR_MND_headless`` where the runtime offers it: input only, no quad),
    the action set and, when Pillow is importable, a quad swapchain for captions.
    :meth:`start` runs the frame loop in a thread; events reach the asyncio loop
    through a queue.  This part needs a runtime and a headset; nothing else does.
    """

    QUAD_PIXELS = (1024, 256)
    QUAD_METRES = (0.8, 0.2)
    QUAD_POSE = (0.0, -0.25, -1.2)  # head-locked: a little below eye level, 1.2 m ahead

    def __init__(self, *, quad: bool = True):
        self.want_quad = quad
        self.instance = self.system = self.session = None
        self._queue: asyncio.Queue[ControllerEvent | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._caption_lock = threading.Lock()
        self._caption_text: list[str] = []
        self._caption_version = 0
        self._window = None
        self._quad = None
        self.headless = False
        self.error: BaseException | None = None

    # --- XrInput / CaptionDisplay ---

    async def events(self) -> AsyncIterator[ControllerEvent]:
        assert self._queue is not None, "start() first"
        while (event := await self._queue.get()) is not None:
            yield event
        if self.error is not None:
            raise _xr_failure(self.error) if _is_xr_error(self.error) else self.error

    def show(self, lines: Sequence[CaptionLine]) -> None:
        with self._caption_lock:
            self._caption_text = [line.render() for line in lines][-4:]
            self._caption_version += 1

    # --- setup ---

    def open(self) -> None:
        """Create instance, session, actions (and the caption quad); :class:`XrUnavailable` if it cannot."""
        try:
            self._open()
        except XrUnavailable:
            self.close()
            raise
        except Exception as exc:
            self.close()
            if _is_xr_error(exc):
                raise _xr_failure(exc) from None
            raise XrUnavailable(f"cannot start the XR session: {exc}") from None

    def _open(self) -> None:
        import xr

        available = {  # no runtime: RuntimeUnavailableError here
            _text(e.extension_name) for e in xr.enumerate_instance_extension_properties()
        }
        if xr.KHR_OPENGL_ENABLE_EXTENSION_NAME in available:
            extensions = [xr.KHR_OPENGL_ENABLE_EXTENSION_NAME]
        elif xr.MND_HEADLESS_EXTENSION_NAME in available:
            extensions, self.headless = [xr.MND_HEADLESS_EXTENSION_NAME], True
        else:
            raise XrUnavailable("the OpenXR runtime offers neither OpenGL nor headless sessions")
        self.instance = xr.create_instance(
            xr.InstanceCreateInfo(
                application_info=xr.ApplicationInfo(application_name="voice-tutor", engine_name="pyopenxr"),
                enabled_extension_names=extensions,
            )
        )
        self.system = xr.get_system(self.instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
        binding = None if self.headless else self._graphics_binding()
        self.session = xr.create_session(
            self.instance, xr.SessionCreateInfo(system_id=self.system, next=binding)
        )
        spaces = xr.enumerate_reference_spaces(self.session)
        kind = xr.ReferenceSpaceType.STAGE if xr.ReferenceSpaceType.STAGE in spaces else xr.ReferenceSpaceType.LOCAL
        self.scene_space = xr.create_reference_space(
            self.session, xr.ReferenceSpaceCreateInfo(reference_space_type=kind)
        )
        self.view_space = xr.create_reference_space(
            self.session, xr.ReferenceSpaceCreateInfo(reference_space_type=xr.ReferenceSpaceType.VIEW)
        )
        self._create_actions()
        if not self.headless and self.want_quad:
            self._quad = _CaptionQuad.create(self.session, *self.QUAD_PIXELS)
        modes = xr.enumerate_environment_blend_modes(
            self.instance, self.system, xr.ViewConfigurationType.PRIMARY_STEREO
        )
        self.blend_mode = modes[0] if modes else xr.EnvironmentBlendMode.OPAQUE

    def _graphics_binding(self):
        """A hidden GLFW window's OpenGL context, as the session's graphics binding."""
        import ctypes

        import glfw
        import xr
        from xr.utils.gl import GLXGraphicsBinding, WGLGraphicsBinding

        get_requirements = ctypes.cast(
            xr.get_instance_proc_addr(self.instance, "xrGetOpenGLGraphicsRequirementsKHR"),
            xr.PFN_xrGetOpenGLGraphicsRequirementsKHR,
        )
        requirements = xr.GraphicsRequirementsOpenGLKHR()
        result = xr.check_result(xr.Result(get_requirements(self.instance, self.system, ctypes.byref(requirements))))
        if result.is_exception():
            raise result
        if not glfw.init():
            raise XrUnavailable("cannot initialise GLFW for the OpenGL context OpenXR needs")
        glfw.window_hint(glfw.VISIBLE, False)
        glfw.window_hint(glfw.DOUBLEBUFFER, False)
        self._window = glfw.create_window(64, 64, "voice-tutor", None, None)
        if not self._window:
            raise XrUnavailable("cannot create the OpenGL context OpenXR needs (no display?)")
        glfw.make_context_current(self._window)
        glfw.swap_interval(0)
        provider = _GlfwContext(self._window)
        self._binding = (WGLGraphicsBinding if sys.platform == "win32" else GLXGraphicsBinding)(provider)
        return self._binding.pointer

    def _create_actions(self) -> None:
        import xr

        self.action_set = xr.create_action_set(
            self.instance,
            xr.ActionSetCreateInfo(action_set_name="tutor", localized_action_set_name="Tutor", priority=0),
        )

        def action(name: str, kind, label: str):
            return xr.create_action(
                self.action_set, xr.ActionCreateInfo(action_type=kind, action_name=name, localized_action_name=label)
            )

        self.actions = {
            "talk": action("talk", xr.ActionType.BOOLEAN_INPUT, "Push to talk"),
            "select": action("select", xr.ActionType.BOOLEAN_INPUT, "Select"),
            "aim": action("aim", xr.ActionType.POSE_INPUT, "Aim"),
        }
        for profile, bindings in BINDINGS.items():
            suggested = [
                xr.ActionSuggestedBinding(action=self.actions[name], binding=xr.string_to_path(self.instance, path))
                for name, paths in bindings.items()
                for path in paths
            ]
            try:
                xr.suggest_interaction_profile_bindings(
                    self.instance,
                    xr.InteractionProfileSuggestedBinding(
                        interaction_profile=xr.string_to_path(self.instance, profile),
                        suggested_bindings=suggested,
                    ),
                )
            except xr.XrException as exc:  # a runtime may not know every profile
                log.info("bindings for %s refused: %s", profile, exc)
        xr.attach_session_action_sets(self.session, xr.SessionActionSetsAttachInfo(action_sets=[self.action_set]))
        self.aim_space = xr.create_action_space(
            self.session, xr.ActionSpaceCreateInfo(action=self.actions["aim"], subaction_path=xr.NULL_PATH)
        )

    # --- the frame loop ---

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._queue = loop, asyncio.Queue()
        self._thread = threading.Thread(target=self._run, name="openxr-frames", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _emit(self, event: ControllerEvent | None) -> None:
        assert self._loop is not None and self._queue is not None
        self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def _run(self) -> None:
        try:
            if self._window is not None:
                import glfw

                glfw.make_context_current(self._window)  # the frame thread owns the context from now on
            self._frames()
        except BaseException as exc:
            self.error = exc
        finally:
            self._emit(None)

    def _frames(self) -> None:
        import ctypes
        import time

        import xr

        state, running, exit_requested = xr.SessionState.UNKNOWN, False, False
        talk_down = select_down = False
        shown_version = -1
        while True:
            if self._stop.is_set() and running and not exit_requested:
                xr.request_exit_session(self.session)
                exit_requested = True
            while True:  # drain the runtime's events
                try:
                    buffer = xr.poll_event(self.instance)
                except xr.EventUnavailable:
                    break
                kind = xr.StructureType(buffer.type)
                if kind == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                    return
                if kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                    event = ctypes.cast(ctypes.byref(buffer), ctypes.POINTER(xr.EventDataSessionStateChanged)).contents
                    state = xr.SessionState(event.state)
                    if state == xr.SessionState.READY:
                        views = xr.ViewConfigurationType
                        view = views.PRIMARY_MONO if self.headless else views.PRIMARY_STEREO
                        xr.begin_session(self.session, xr.SessionBeginInfo(primary_view_configuration_type=view))
                        running = True
                    elif state == xr.SessionState.STOPPING:
                        xr.end_session(self.session)
                        running = False
                    elif state in (xr.SessionState.EXITING, xr.SessionState.LOSS_PENDING):
                        return
            if not running:
                if self._stop.is_set():
                    return
                time.sleep(0.1)
                continue
            frame = xr.wait_frame(self.session)
            if not self.headless:
                xr.begin_frame(self.session)
            if state == xr.SessionState.FOCUSED:
                xr.sync_actions(
                    self.session,
                    xr.ActionsSyncInfo(active_action_sets=[xr.ActiveActionSet(self.action_set, xr.NULL_PATH)]),
                )
                talk = self._pressed("talk")
                if talk != talk_down:
                    talk_down = talk
                    self._emit(ControllerEvent("talk_pressed" if talk else "talk_released"))
                select = self._pressed("select")
                if select and not select_down:
                    self._emit(ControllerEvent("select", self._aim_ray(frame.predicted_display_time)))
                select_down = select
            elif talk_down:  # focus lost while talking: stop streaming
                talk_down = False
                self._emit(ControllerEvent("talk_released"))
            if self.headless:
                time.sleep(0.02)
                continue
            layers = []
            if self._quad is not None and frame.should_render:
                with self._caption_lock:
                    version, text = self._caption_version, list(self._caption_text)
                if version != shown_version:
                    self._quad.draw(text)
                    shown_version = version
                if self._quad.ready:
                    layers.append(ctypes.byref(self._quad.layer(self.view_space, self.QUAD_METRES, self.QUAD_POSE)))
            xr.end_frame(
                self.session,
                xr.FrameEndInfo(
                    display_time=frame.predicted_display_time, environment_blend_mode=self.blend_mode, layers=layers
                ),
            )

    def _pressed(self, name: str) -> bool:
        import xr

        state = xr.get_action_state_boolean(self.session, xr.ActionStateGetInfo(action=self.actions[name]))
        return bool(state.is_active and state.current_state)

    def _aim_ray(self, when) -> Ray | None:
        import xr

        location = xr.locate_space(self.aim_space, self.scene_space, when)
        valid = xr.SPACE_LOCATION_POSITION_VALID_BIT | xr.SPACE_LOCATION_ORIENTATION_VALID_BIT
        if location.location_flags & valid != valid:
            return None
        pos, q = location.pose.position, location.pose.orientation
        # The aim pose looks down its -z axis: rotate (0, 0, -1) by the orientation.
        direction = (
            -2 * (q.x * q.z + q.w * q.y),
            -2 * (q.y * q.z - q.w * q.x),
            -(1 - 2 * (q.x * q.x + q.y * q.y)),
        )
        return Ray((pos.x, pos.y, pos.z), direction)

    def close(self) -> None:
        import xr

        if self._quad is not None:
            self._quad.destroy()
            self._quad = None
        with contextlib.suppress(xr.XrException):
            if self.session is not None:
                xr.destroy_session(self.session)  # destroys its spaces, swapchains, action bindings
            if self.instance is not None:
                xr.destroy_instance(self.instance)  # and its action sets
        self.session = self.instance = None
        if self._window is not None:
            import glfw

            glfw.destroy_window(self._window)
            glfw.terminate()
            self._window = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_xr_error(exc: BaseException) -> bool:
    try:
        import xr
    except ImportError:
        return False
    return isinstance(exc, xr.XrException)


class _GlfwContext:
    """The GraphicsContextProvider pyopenxr's binding helpers expect, over a GLFW window."""

    def __init__(self, window):
        self.window = window

    def make_current(self) -> None:
        import glfw

        glfw.make_context_current(self.window)

    def done_current(self) -> None:
        import glfw

        glfw.make_context_current(None)

    def destroy(self) -> None:
        pass


class _CaptionQuad:
    """A swapchain of one RGBA texture with the captions, shown as a quad layer.

    Text is rasterised by Pillow; without it there is no quad (captions go to the console).
    """

    def __init__(self, swapchain, images, width: int, height: int, rasterise):
        self.swapchain, self.images, self.width, self.height = swapchain, images, width, height
        self._rasterise = rasterise
        self.ready = False

    @classmethod
    def create(cls, session, width: int, height: int) -> _CaptionQuad | None:
        try:
            from PIL import Image, ImageDraw, ImageFont
        except ImportError:
            log.warning("Pillow is not installed: captions are shown on the console only, not in the headset")
            return None
        import xr
        from OpenGL import GL

        formats = xr.enumerate_swapchain_formats(session)
        wanted = [f for f in (GL.GL_SRGB8_ALPHA8, GL.GL_RGBA8) if f in formats]
        if not wanted:
            log.warning("no RGBA swapchain format for the caption quad; console captions only")
            return None
        swapchain = xr.create_swapchain(
            session,
            xr.SwapchainCreateInfo(
                usage_flags=xr.SwapchainUsageFlags.SAMPLED_BIT | xr.SwapchainUsageFlags.COLOR_ATTACHMENT_BIT,
                format=wanted[0], sample_count=1, width=width, height=height,
                face_count=1, array_size=1, mip_count=1,
            ),
        )  # fmt: skip
        images = xr.enumerate_swapchain_images(swapchain, xr.SwapchainImageOpenGLKHR)
        try:
            font = ImageFont.truetype("DejaVuSans.ttf", 30)
        except OSError:
            font = ImageFont.load_default()

        def rasterise(lines: list[str]) -> bytes:
            image = Image.new("RGBA", (width, height), (0, 0, 0, 160))
            draw = ImageDraw.Draw(image)
            for row, text in enumerate(lines):
                draw.text((16, 12 + row * 58), text[:70], font=font, fill=(255, 255, 255, 255))
            return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).tobytes()  # GL rows go bottom-up

        return cls(swapchain, images, width, height, rasterise)

    def draw(self, lines: list[str]) -> None:
        import xr
        from OpenGL import GL

        index = xr.acquire_swapchain_image(self.swapchain, xr.SwapchainImageAcquireInfo())
        xr.wait_swapchain_image(self.swapchain, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.images[index].image)
        GL.glTexSubImage2D(
            GL.GL_TEXTURE_2D, 0, 0, 0, self.width, self.height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, self._rasterise(lines)
        )
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        xr.release_swapchain_image(self.swapchain, xr.SwapchainImageReleaseInfo())
        self.ready = True

    def layer(self, space, size: tuple[float, float], position: Vec3):
        import xr

        self._layer = xr.CompositionLayerQuad(  # kept referenced until end_frame has read it
            layer_flags=xr.CompositionLayerFlags.BLEND_TEXTURE_SOURCE_ALPHA_BIT,
            space=space,
            eye_visibility=xr.EyeVisibility.BOTH,
            sub_image=xr.SwapchainSubImage(
                swapchain=self.swapchain,
                image_rect=xr.Rect2Di(offset=xr.Offset2Di(0, 0), extent=xr.Extent2Di(self.width, self.height)),
            ),
            pose=xr.Posef(position=xr.Vector3f(*position)),
            size=xr.Extent2Df(*size),
        )
        return self._layer

    def destroy(self) -> None:
        import xr

        with contextlib.suppress(xr.XrException):
            xr.destroy_swapchain(self.swapchain)


# --- command line ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xr_bridge.openxr_client",
        description="Join a voice-tutor room from an OpenXR headset: push-to-talk, select, captions.",
    )
    parser.add_argument("--url", required=True, help="the bridge's websocket URL, e.g. ws://192.168.1.5:8765/ws")
    parser.add_argument("--token", required=True, help="a join token for the room (from the teacher or the server)")
    parser.add_argument("--name", help="your name in the room (default: the token's)")
    parser.add_argument("--role", choices=p.ROLES, help="your role (default: the token's)")
    parser.add_argument(
        "--select-fallback", metavar="OBJECT_ID", default=None,
        help="object to select when the controller has no tracked aim ray (default: select nothing)",
    )  # fmt: skip
    parser.add_argument("--cafile", help="trust this certificate for wss:// (a self-signed classroom server)")
    parser.add_argument("--no-quad", action="store_true", help="captions on the console only, not in the headset")
    parser.add_argument("--verbose", action="store_true", help="log details, including the OpenXR loader's")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:
        os.environ.setdefault("XR_LOADER_DEBUG", "none")  # the loader's own stderr lines; we say it in one

    def fail(message: str, code: int = EXIT_ERROR) -> int:
        print(f"{PROG}: {message}", file=sys.stderr)
        return code

    try:
        import xr  # noqa: F401
    except (ImportError, OSError) as exc:
        return fail(f"pyopenxr cannot load the OpenXR loader ({exc})", EXIT_NO_RUNTIME)
    layer = OpenXrLayer(quad=not args.no_quad)
    try:
        layer.open()  # first: without a headset nothing else is worth doing
    except XrUnavailable as exc:
        return fail(str(exc), EXIT_NO_RUNTIME)
    try:
        client = BridgeClient(
            args.url, args.token, role=args.role, name=args.name, display=ConsoleCaptions(),
            fallback_object=args.select_fallback,
            ssl=ssl_module.create_default_context(cafile=args.cafile) if args.cafile else None,
        )  # fmt: skip
    except (BridgeError, OSError, ssl_module.SSLError) as exc:
        layer.close()
        return fail(str(exc))
    client.display = TeeDisplay(ConsoleCaptions(client.name), layer)

    async def session() -> None:
        layer.start(asyncio.get_running_loop())
        try:
            await run_client(client, layer)
        finally:
            await asyncio.to_thread(layer.stop)

    try:
        asyncio.run(session())
    except KeyboardInterrupt:
        return 0
    except (BridgeError, XrUnavailable) as exc:
        return fail(str(exc))
    except Exception as exc:  # one line for the user; the details with --verbose
        log.info("the client failed", exc_info=True)
        return fail(f"unexpected error: {exc!r} (run with --verbose for details)")
    finally:
        layer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
