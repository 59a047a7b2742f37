"""The XR bridge wire protocol: message schema, versioning, framing. Pure, no I/O.

Like the sans-I/O core of ``websockets``, this module only turns frames into
validated objects and back; the server (or any client, test or tool) owns the
sockets.  ``PROTOCOL.md`` beside this file is the reference for scene
developers; this module is the single source of truth it describes.

* Text frames carry one JSON object each, discriminated by its ``type`` field.
* Binary frames carry PCM audio behind a fixed 12-byte header (:class:`AudioChunk`).

Why pydantic v2 rather than dataclasses plus hand-written checks: every
message is an object with a closed set of typed, bounded fields, which is
exactly a pydantic model with ``extra="forbid"`` and ``strict=True``; a
discriminated union on ``type`` dispatches in one pass of the Rust core
(fast enough to validate every frame at the edge); its error locations give
precise messages for free; and :func:`json_schema` exports the same
definitions for client developers, so the schema is written once.  Audio is
the exception: it is a fixed binary layout, so a frozen dataclass with
``struct`` is simpler and faster there.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, field_validator

from voice_tutor import events as ev

PROTOCOL_VERSION = 1
"""The version this module speaks; bumped on any incompatible change."""
SUPPORTED_VERSIONS = frozenset({1})

MAX_TEXT_BYTES = 64 * 1024
"""Largest JSON frame a client may send (UTF-8 bytes)."""
MAX_SERVER_TEXT_BYTES = 1024 * 1024
"""Largest JSON frame the server sends (a ``room_state`` can be big); clients parse with this."""
MAX_AUDIO_BYTES = 192_000
"""Largest PCM payload of one audio frame: one second of 48 kHz mono int16 is 96 000."""
MAX_TEXT_CHARS = 8000

ROLES = ("learner", "observer", "teacher")
Role = Literal["learner", "observer", "teacher"]

ErrorCode = Literal[
    "bad_message",  # not JSON, not an object, a field missing, extra or mistyped
    "unknown_type",  # no such message type
    "too_large",  # frame over the size limit
    "unsupported_version",  # no protocol version in common
    "unauthorized",  # bad, expired or mismatched join token
    "forbidden",  # the sender's role may not send this message
    "bad_state",  # out of order: join before hello, a command before join
    "invalid_command",  # well-formed but not applicable (unknown simulation, bad parameter)
    "rate_limited",  # dropped: the client sends faster than its limit
    "slow_consumer",  # the client did not read fast enough and was disconnected
    "internal",  # the server failed handling a valid message
]

# Close codes the server uses (4000-4999 is the application range of RFC 6455).
CLOSE_HANDSHAKE = 4000  # no valid hello/join in time, or out of order
CLOSE_UNAUTHORIZED = 4001  # do not retry with the same token
CLOSE_UNSUPPORTED_VERSION = 4002
CLOSE_REPLACED = 4004  # the same client resumed on another connection
CLOSE_SLOW_CONSUMER = 4008  # reconnect and resume
CLOSE_RATE_LIMITED = 4029
CLOSE_SESSION_ENDED = 4010  # the learner's session ended (idle, a teacher, a new sign-in): sign in again
SESSION_ENDED = "session_ended"
"""``notice.level`` of the notice that tells a room its learner's session ended (message: the reason)."""
RECORDING = "recording"
"""``notice.level`` of the notice that the learner's spoken turns are recorded (message: what they were told).

Sent when a recorded session starts and again whenever a learner joins it; pages show it until the session ends."""
FALLBACK = "fallback"
"""``notice.level`` of a turn the LLM could not answer, so the offline tutor did (message: why)."""


class ProtocolError(Exception):
    """A frame or message that breaks the protocol; ``code`` is an :data:`ErrorCode`."""

    def __init__(self, code: ErrorCode, message: str, *, ref_type: str | None = None):
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.ref_type = ref_type

    def to_message(self) -> Error:
        return Error(code=self.code, message=self.message, ref_type=self.ref_type)


Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Label = Annotated[str, StringConstraints(max_length=500)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Level = Annotated[str, StringConstraints(min_length=1, max_length=16)]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
Count = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]
Vec3 = tuple[float, float, float]
"""x, y, z in metres (positions) or Euler degrees (rotations), right-handed, y up."""
Params = Annotated[dict[Id, float], Field(max_length=16)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Message(_Model):
    """A JSON message sent to one peer (handshake, errors, snapshots)."""


class RoomMessage(Message):
    """A message fanned out to a room.

    The server stamps ``seq`` (the room's order, strictly increasing) and
    ``sender`` (the client id of the member who sent it; absent when the
    server or the tutor did); values a client puts there are overwritten.
    """

    seq: Count | None = None
    sender: Id | None = None


class Member(_Model):
    client_id: Id
    role: Role
    name: Name


class Caption(_Model):
    """A finished line of the conversation, for subtitles and late joiners."""

    seq: Count
    speaker: Literal["learner", "tutor", "teacher"]
    text: Text
    cut: bool = False
    turn_id: Count | None = None
    """A tutor line's turn (of ``tutor_speech_ended``), so a reloaded page can still rate it."""
    rating: Annotated[int, Field(ge=-1, le=1)] | None = None
    """The room's latest ``rate_turn`` of that turn."""


# --- handshake and room control -------------------------------------------


class Hello(Message):
    """Client -> server, first frame: the protocol versions the client speaks."""

    type: Literal["hello"] = "hello"
    versions: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=16)]
    client: Annotated[str, StringConstraints(max_length=128)] = ""


class Welcome(Message):
    """Server -> client: the version chosen and the limits the client must respect."""

    type: Literal["welcome"] = "welcome"
    version: int
    server: str
    max_message_bytes: int
    max_audio_bytes: int
    ping_interval_s: float | None = None


class Join(Message):
    """Client -> server after ``welcome``: enter the room named in the token.

    ``role`` and ``name`` must equal the token's.  ``resume`` (the
    ``resume_id`` of a previous ``joined``) and ``last_seq`` (the highest
    ``seq`` received) resume an interrupted connection.
    """

    type: Literal["join"] = "join"
    token: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    role: Role
    name: Name
    resume: Id | None = None
    last_seq: Count | None = None


class Joined(Message):
    """Server -> the joining client; a ``room_state`` follows immediately."""

    type: Literal["joined"] = "joined"
    room: Id
    client_id: Id
    role: Role
    name: Name
    resume_id: Id
    resumed: bool
    members: Annotated[list[Member], Field(max_length=1024)]


class Error(Message):
    """Server -> client: a message was refused (the connection stays open unless it closes)."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: Annotated[str, StringConstraints(max_length=1000)]
    ref_type: Annotated[str, StringConstraints(max_length=64)] | None = None


class MemberJoined(RoomMessage):
    type: Literal["member_joined"] = "member_joined"
    client_id: Id
    role: Role
    name: Name


class MemberLeft(RoomMessage):
    type: Literal["member_left"] = "member_left"
    client_id: Id
    name: Name
    reason: Annotated[str, StringConstraints(max_length=64)] = "closed"


# --- session events (server -> room) ----------------------------------------


class SessionEvent(RoomMessage):
    """An event of the voice session; ``t`` is the server's monotonic clock in seconds."""

    session_id: Id
    t: float


class LearnerSpeechStarted(SessionEvent):
    type: Literal["learner_speech_started"] = "learner_speech_started"
    utterance_id: Count


class PartialTranscript(SessionEvent):
    type: Literal["partial_transcript"] = "partial_transcript"
    utterance_id: Count
    text: Text


class FinalTranscript(SessionEvent):
    type: Literal["final_transcript"] = "final_transcript"
    utterance_id: Count
    text: Text
    language: Level
    audio_duration_s: NonNegative
    stt_ms: NonNegative


class TutorText(SessionEvent):
    """A piece of the tutor's reply as it is produced (before it is spoken)."""

    type: Literal["tutor_text"] = "tutor_text"
    turn_id: Count
    text: Text


class TutorSpeechStarted(SessionEvent):
    type: Literal["tutor_speech_started"] = "tutor_speech_started"
    turn_id: Count


class TutorSpeechEnded(SessionEvent):
    """The reply stopped playing; ``heard`` is what the learner heard, ``cut`` if interrupted."""

    type: Literal["tutor_speech_ended"] = "tutor_speech_ended"
    turn_id: Count
    text: Text
    heard: Text
    cut: bool


class BargeIn(SessionEvent):
    type: Literal["barge_in"] = "barge_in"
    turn_id: Count


class TurnCompleted(SessionEvent):
    type: Literal["turn_completed"] = "turn_completed"
    turn_id: Count
    learner: Text
    tutor: Text
    heard: Text
    cut: bool
    latency_ms: Annotated[dict[Id, float], Field(max_length=32)]


class MasteryUpdate(SessionEvent):
    """An assessed answer of the learner named as ``sender``, and the skill's mastery after it."""

    type: Literal["mastery_update"] = "mastery_update"
    skill: Id
    mastery: Annotated[float, Field(ge=0, le=1)]
    previous: Annotated[float, Field(ge=0, le=1)] | None = None
    correct: bool | None = None
    """The learner's answer was right, after hints too (None: the tutor did not say)."""
    first_try: bool | None = None
    hints_used: Annotated[int, Field(ge=0, le=1000)] | None = None


class Alert(SessionEvent):
    """Something a teacher should act on (the learner is stuck, a safety flag)."""

    type: Literal["alert"] = "alert"
    severity: Literal["info", "warning", "critical"]
    message: Label
    code: Id | None = None


class Notice(SessionEvent):
    """Something a person watching should know (a fallback, an error); ``level`` as logging's."""

    type: Literal["notice"] = "notice"
    level: Level
    message: Text


class LessonEntry(_Model):
    """A lesson a learner may choose."""

    id: Id
    title: Label
    subject: Label = ""
    level: Label = ""


class LessonStarted(SessionEvent):
    """The room's lesson, sent when a session starts, when it changes and when a learner joins.

    ``available`` lists the lessons a learner may switch to (``choose_lesson``).
    """

    type: Literal["lesson"] = "lesson"
    lesson_id: Id
    title: Label
    available: Annotated[list[LessonEntry], Field(max_length=256)] = []


# --- scene commands (teacher or server -> room) -----------------------------


class LoadScene(RoomMessage):
    """Replace the whole scene; objects, highlights and labels of the previous one are gone."""

    type: Literal["load_scene"] = "load_scene"
    scene: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    options: Annotated[dict[Id, Union[bool, float, str]], Field(max_length=32)] = {}


class Highlight(RoomMessage):
    type: Literal["highlight"] = "highlight"
    target: Id
    on: bool = True
    color: Color | None = None


class ShowLabel(RoomMessage):
    """Show (or with empty ``text``, remove) a label, attached to ``target`` or at ``position``."""

    type: Literal["show_label"] = "show_label"
    label_id: Id
    text: Label
    target: Id | None = None
    position: Vec3 | None = None
    duration_s: Annotated[float, Field(gt=0)] | None = None


class SpawnObject(RoomMessage):
    type: Literal["spawn_object"] = "spawn_object"
    object_id: Id
    kind: Id
    position: Vec3
    rotation: Vec3 = (0.0, 0.0, 0.0)
    scale: Annotated[float, Field(gt=0)] = 1.0


class MoveObject(RoomMessage):
    """Move a spawned object, animated over ``duration_s`` (0: at once)."""

    type: Literal["move_object"] = "move_object"
    object_id: Id
    position: Vec3
    rotation: Vec3 | None = None
    duration_s: NonNegative = 0.0


class RemoveObject(RoomMessage):
    type: Literal["remove_object"] = "remove_object"
    object_id: Id


class StartSimulation(RoomMessage):
    """Start (or restart) the server-side simulation ``sim_id`` of ``model``."""

    type: Literal["start_simulation"] = "start_simulation"
    sim_id: Id
    model: Id
    params: Params = {}
    rate_hz: Annotated[float, Field(gt=0, le=120)] | None = None


class StopSimulation(RoomMessage):
    type: Literal["stop_simulation"] = "stop_simulation"
    sim_id: Id


class SetSimParam(RoomMessage):
    type: Literal["set_sim_param"] = "set_sim_param"
    sim_id: Id
    name: Id
    value: float


class SimState(RoomMessage):
    """A snapshot of a running simulation, published at its rate (latest value wins)."""

    type: Literal["sim_state"] = "sim_state"
    sim_id: Id
    model: Id
    t: NonNegative
    step: Count
    running: bool
    params: Params
    state: Annotated[dict[Id, float], Field(max_length=32)]


# --- learner actions (learner -> room) --------------------------------------


class SelectObject(RoomMessage):
    type: Literal["select_object"] = "select_object"
    object_id: Id


class Gaze(RoomMessage):
    """What the learner looks at (``target`` null: nothing), for how long so far."""

    type: Literal["gaze"] = "gaze"
    target: Id | None = None
    dwell_ms: NonNegative = 0.0


class Answer(RoomMessage):
    type: Literal["answer"] = "answer"
    question_id: Id
    choice: Id


class PttStart(RoomMessage):
    """Push-to-talk pressed: the learner's audio frames that follow are meant for the tutor."""

    type: Literal["ptt_start"] = "ptt_start"


class PttStop(RoomMessage):
    type: Literal["ptt_stop"] = "ptt_stop"


class UnheardSpeech(RoomMessage):
    """The learner's page heard speech while push-to-talk was not held: the tutor tells them how to talk."""

    type: Literal["unheard_speech"] = "unheard_speech"


class RateTurn(RoomMessage):
    """Thumbs up (+1) or down (-1) on the tutor's reply ``turn_id`` (of ``tutor_text``/``tutor_speech_ended``).

    Stored with that turn for a remembered learner; a later rating of the same
    reply replaces the earlier one (changing your mind).
    """

    type: Literal["rate_turn"] = "rate_turn"
    turn_id: Count
    rating: Annotated[int, Field(ge=-1, le=1)]
    """1 (thumbs up) or -1 (thumbs down); an int, strictly (``true`` or ``1.0`` are refused)."""

    @field_validator("rating")
    @classmethod
    def _thumbs(cls, rating: int) -> int:
        if rating == 0:
            raise ValueError("rating must be 1 (thumbs up) or -1 (thumbs down)")
        return rating


class ChooseLesson(RoomMessage):
    """The learner picked another lesson (on a page): the tutor switches to it, as when they ask aloud."""

    type: Literal["choose_lesson"] = "choose_lesson"
    lesson_id: Id


SurveyQuestion = Literal["helpful", "clear", "pace", "enjoyed"]
"""The keys of the store's ``SURVEY_QUESTIONS``."""


class Survey(RoomMessage):
    """The learner's end-of-session survey, sent as they finish (before signing out).

    Each question answered 1 (not at all) to 5 (very), any may be left out;
    ``comment`` is free text.  Stored with the session of a remembered learner.
    """

    type: Literal["survey"] = "survey"
    answers: Annotated[dict[SurveyQuestion, Annotated[int, Field(ge=1, le=5)]], Field(max_length=4)] = {}
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


# --- teacher ----------------------------------------------------------------


class TeacherMessage(RoomMessage):
    """A teacher's ``hint`` (for the tutor to use) or ``message`` (for everyone), shown to the room."""

    type: Literal["teacher_message"] = "teacher_message"
    kind: Literal["hint", "message"] = "message"
    text: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


SceneCommand = Annotated[
    Union[LoadScene, Highlight, ShowLabel, SpawnObject, MoveObject, RemoveObject],
    Field(discriminator="type"),
]
SimCommand = Union[StartSimulation, StopSimulation, SetSimParam]
LearnerAction = Union[SelectObject, Gaze, Answer, PttStart, PttStop, UnheardSpeech, RateTurn, Survey, ChooseLesson]
SessionEventMessage = Union[
    LearnerSpeechStarted,
    PartialTranscript,
    FinalTranscript,
    TutorText,
    TutorSpeechStarted,
    TutorSpeechEnded,
    BargeIn,
    TurnCompleted,
    MasteryUpdate,
    Alert,
    Notice,
    LessonStarted,
]
AnyRoomMessage = Annotated[
    Union[
        MemberJoined,
        MemberLeft,
        SessionEventMessage,
        LoadScene,
        Highlight,
        ShowLabel,
        SpawnObject,
        MoveObject,
        RemoveObject,
        SimCommand,
        SimState,
        LearnerAction,
        TeacherMessage,
    ],
    Field(discriminator="type"),
]


class RoomState(Message):
    """Server -> a client that just joined: the room as it is now.

    ``scene`` is the list of scene commands that rebuild the current scene
    (apply in order, after clearing yours); ``simulations`` the latest state
    of each running one; ``captions`` the recent conversation.  On a resume,
    ``missed`` holds the room events (not scene or simulation updates, which
    the snapshot already reflects) with ``seq`` above the client's
    ``last_seq``; ``gap`` is true when older ones were no longer kept.
    """

    type: Literal["room_state"] = "room_state"
    seq: Count
    scene: Annotated[list[SceneCommand], Field(max_length=4096)]
    simulations: Annotated[list[SimState], Field(max_length=64)]
    captions: Annotated[list[Caption], Field(max_length=256)]
    missed: Annotated[list[AnyRoomMessage], Field(max_length=4096)] = []
    gap: bool = False


AnyMessage = Annotated[
    Union[Hello, Welcome, Join, Joined, Error, RoomState, AnyRoomMessage],
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyMessage)
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        Hello, Welcome, Join, Joined, Error, RoomState, MemberJoined, MemberLeft,
        LearnerSpeechStarted, PartialTranscript, FinalTranscript, TutorText, TutorSpeechStarted,
        TutorSpeechEnded, BargeIn, TurnCompleted, MasteryUpdate, Alert, Notice, LessonStarted,
        LoadScene, Highlight, ShowLabel, SpawnObject, MoveObject, RemoveObject,
        StartSimulation, StopSimulation, SetSimParam, SimState,
        SelectObject, Gaze, Answer, PttStart, PttStop, UnheardSpeech, RateTurn, Survey, ChooseLesson, TeacherMessage,
    )
}  # fmt: skip

SCENE_COMMANDS = frozenset({"load_scene", "highlight", "show_label", "spawn_object", "move_object", "remove_object"})
SIM_COMMANDS = frozenset({"start_simulation", "stop_simulation", "set_sim_param"})
LEARNER_ACTIONS = frozenset({
    "select_object", "gaze", "answer", "ptt_start", "ptt_stop", "unheard_speech", "rate_turn", "survey",
    "choose_lesson",
})
PRIVATE_ACTIONS = frozenset({"survey", "unheard_speech"})
"""Learner actions for the tutor's records only: echoed to their sender, never shown to the room."""
HANDSHAKE = frozenset({"hello", "join"})
ALLOWED: dict[str, frozenset[str]] = {
    "learner": LEARNER_ACTIONS | {"audio"},
    "observer": frozenset(),
    "teacher": SCENE_COMMANDS | SIM_COMMANDS | {"teacher_message"},
}
"""What each role may send once joined (``audio``: learner audio frames); the rest is the server's."""


# --- framing ----------------------------------------------------------------


def parse_text(data: str | bytes, *, max_bytes: int = MAX_TEXT_BYTES) -> Message:
    """Validate one JSON text frame into its message object, or raise :class:`ProtocolError`."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise ProtocolError("too_large", f"text frame of {size} bytes exceeds the limit of {max_bytes}")
    try:
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise _explain(exc, data) from None


def _explain(exc: ValidationError, data: str | bytes) -> ProtocolError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    kind = first["type"]
    if kind == "json_invalid":
        return ProtocolError("bad_message", str(first["msg"]))
    if kind == "model_attributes_type" or (kind == "dict_type" and not first["loc"]):
        return ProtocolError("bad_message", "a text frame must hold one JSON object")
    if kind == "union_tag_not_found":
        return ProtocolError("bad_message", "message has no 'type' field")
    if kind == "union_tag_invalid":
        tag = str(first.get("ctx", {}).get("tag", "?"))[:64]
        if not first["loc"]:
            return ProtocolError("unknown_type", f"unknown message type {tag!r}", ref_type=tag)
    ref_type = str(first["loc"][0]) if first["loc"] else None
    details = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return ProtocolError("bad_message", f"invalid {ref_type!r} message: {details}{more}", ref_type=ref_type)


def _field(loc: tuple[int | str, ...]) -> str:
    """``('highlight', 'color')`` -> ``'color'``: the tag is already named."""
    path = ".".join(str(part) for part in loc[1:])
    return f"field {path!r}" if path else "message"


def encode_text(message: Message) -> str:
    """One JSON text frame; fields that are null are left out (absent and null mean the same)."""
    return message.model_dump_json(exclude_none=True)


class AudioKind(IntEnum):
    LEARNER = 1
    TUTOR = 2


AUDIO_MAGIC = b"XA"
AUDIO_FORMAT_VERSION = 1
AUDIO_HEADER = struct.Struct("<2sBBII")
"""magic ``b"XA"``, format version u8, kind u8, sample rate u32, sequence number u32 (little-endian)."""
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 96000


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """One binary frame of mono int16 little-endian PCM.

    ``seq`` numbers a stream's chunks (wrapping at 2**32) so a receiver can
    spot losses; the server stamps it on tutor audio it fans out.
    """

    kind: AudioKind
    sample_rate: int
    seq: int
    pcm: bytes

    @classmethod
    def from_float(cls, samples: np.ndarray, sample_rate: int, kind: AudioKind, seq: int = 0) -> AudioChunk:
        """From float samples in [-1, 1] (clipped), as the voice pipeline produces them."""
        mono = np.asarray(samples, dtype=np.float32).reshape(-1)
        pcm = np.round(np.clip(mono, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return cls(kind=kind, sample_rate=sample_rate, seq=seq, pcm=pcm)

    def samples(self) -> np.ndarray:
        """The PCM as an int16 array (a read-only view, no copy)."""
        return np.frombuffer(self.pcm, dtype="<i2")

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


def parse_binary(data: bytes, *, max_audio_bytes: int = MAX_AUDIO_BYTES) -> AudioChunk:
    """Validate one binary frame into an :class:`AudioChunk`, or raise :class:`ProtocolError`."""
    if len(data) < AUDIO_HEADER.size:
        raise ProtocolError("bad_message", f"audio frame of {len(data)} bytes is shorter than its header")
    magic, version, kind, rate, seq = AUDIO_HEADER.unpack_from(data)
    pcm = bytes(data[AUDIO_HEADER.size :])
    if magic != AUDIO_MAGIC:
        raise ProtocolError("bad_message", f"audio frame starts with {magic!r}, expected {AUDIO_MAGIC!r}")
    if version != AUDIO_FORMAT_VERSION:
        raise ProtocolError(
            "unsupported_version", f"audio frame format version {version}, expected {AUDIO_FORMAT_VERSION}"
        )
    if kind not in AudioKind._value2member_map_:
        raise ProtocolError("bad_message", f"unknown audio kind {kind}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError("bad_message", f"sample rate {rate} Hz outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}")
    if len(pcm) > max_audio_bytes:
        raise ProtocolError("too_large", f"audio payload of {len(pcm)} bytes exceeds the limit of {max_audio_bytes}")
    if not pcm or len(pcm) % 2:
        raise ProtocolError("bad_message", f"audio payload of {len(pcm)} bytes is not a whole number of samples")
    return AudioChunk(kind=AudioKind(kind), sample_rate=rate, seq=seq, pcm=pcm)


def encode_binary(chunk: AudioChunk) -> bytes:
    return AUDIO_HEADER.pack(AUDIO_MAGIC, AUDIO_FORMAT_VERSION, chunk.kind, chunk.sample_rate, chunk.seq) + chunk.pcm


def parse(frame: str | bytes, *, max_bytes: int = MAX_TEXT_BYTES) -> Message | AudioChunk:
    """Parse a frame as ``websockets`` delivers it: ``str`` for text, ``bytes`` for binary."""
    if isinstance(frame, str):
        return parse_text(frame, max_bytes=max_bytes)
    return parse_binary(frame)


def encode(item: Message | AudioChunk) -> str | bytes:
    return encode_binary(item) if isinstance(item, AudioChunk) else encode_text(item)


# --- handshake and policy ---------------------------------------------------


def negotiate(hello: Hello, supported: frozenset[int] = SUPPORTED_VERSIONS) -> int:
    """The highest version both sides speak, or :class:`ProtocolError` ``unsupported_version``."""
    common = supported.intersection(hello.versions)
    if not common:
        raise ProtocolError(
            "unsupported_version",
            f"client speaks versions {sorted(set(hello.versions))}, server speaks {sorted(supported)}",
            ref_type="hello",
        )
    return max(common)


def check_allowed(role: Role, item: Message | AudioChunk) -> None:
    """Raise ``forbidden`` unless a joined member of ``role`` may send ``item``."""
    if isinstance(item, AudioChunk):
        if item.kind is not AudioKind.LEARNER or "audio" not in ALLOWED[role]:
            raise ProtocolError("forbidden", f"a {role} may not send {item.kind.name.lower()} audio")
        return
    kind = message_type(item)
    if kind not in ALLOWED[role]:
        raise ProtocolError("forbidden", f"a {role} may not send {kind!r}", ref_type=kind)


def message_type(message: Message) -> str:
    return message.type  # type: ignore[attr-defined]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every text message, for client developers and code generators."""
    return _ADAPTER.json_schema()


# --- voice session events -> wire -------------------------------------------


def _clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_to_wire(event: ev.Event) -> RoomMessage | AudioChunk | None:
    """The wire form of a session event, or None for those that stay inside the session.

    ``SpeechPaused`` and ``TutorReplyDone`` stay internal (``tutor_speech_ended``
    carries the reply as heard), as do surveys and ratings clicked on a page
    (the learner's own ``rate_turn``/``survey`` messages are on the wire
    already) and any event this version does not know.  A rating said aloud
    about a known turn becomes a ``rate_turn`` (the bridge names the learner
    who said it as its sender), so pages show it like a click.  Tutor audio
    becomes a binary chunk whose ``seq`` the room stamps.  Texts over the limit
    are clipped, never refused.
    """
    base = {"session_id": _clip(event.session_id, 128), "t": event.t}
    match event:
        case ev.SpeechStarted(utterance_id=u):
            return LearnerSpeechStarted(**base, utterance_id=u)
        case ev.PartialTranscript(utterance_id=u, text=text):
            return PartialTranscript(**base, utterance_id=u, text=_clip(text))
        case ev.FinalTranscript():
            return FinalTranscript(
                **base,
                utterance_id=event.utterance_id,
                text=_clip(event.text),
                language=_clip(event.language or "und", 16),
                audio_duration_s=max(0.0, event.audio_duration_s),
                stt_ms=max(0.0, event.stt_ms),
            )
        case ev.TutorText(turn_id=turn, text=text):
            return TutorText(**base, turn_id=turn, text=_clip(text))
        case ev.TurnRated(source="voice", turn_id=int() as turn, rating=rating) if turn >= 0 and rating in (1, -1):
            return RateTurn(turn_id=turn, rating=rating)  # a learner action: no session_id or time on the wire
        case ev.TutorSpeechStarted(turn_id=turn):
            return TutorSpeechStarted(**base, turn_id=turn)
        case ev.TutorSpeechEnded():
            return TutorSpeechEnded(
                **base, turn_id=event.turn_id, text=_clip(event.text), heard=_clip(event.heard), cut=event.cut
            )
        case ev.BargeIn(turn_id=turn):
            return BargeIn(**base, turn_id=turn)
        case ev.TurnCompleted():
            latencies = {_clip(k, 128): v for k, v in list(event.latency_ms.items())[:32] if k and math.isfinite(v)}
            return TurnCompleted(
                **base,
                turn_id=event.turn_id,
                learner=_clip(event.learner),
                tutor=_clip(event.tutor),
                heard=_clip(event.heard),
                cut=event.cut,
                latency_ms=latencies,
            )
        case ev.MasteryUpdated():
            said = bool(event.verdict)  # what happened, where the tutor said it
            return MasteryUpdate(**base, skill=_clip(event.skill_id, 128), mastery=min(1.0, max(0.0, event.p_known)),
                                 correct=event.verdict == "correct" if said else None,
                                 first_try=event.first_try if said else None,
                                 hints_used=min(event.hints_used, 1000) if said else None)
        case ev.SafetyAlert():
            return Alert(
                **base,
                severity="critical" if event.severity == "high" else "warning",
                message=_clip(f"{event.direction}: {event.category}: {event.excerpt}", 500),
                code=_clip(event.category, 128),
            )
        case ev.LessonChanged(lesson_id=lesson_id, title=title):
            return LessonStarted(**base, lesson_id=_clip(lesson_id, 128), title=_clip(title, 500))
        case ev.SessionNotice(level=level, message=message):
            return Notice(**base, level=_clip(level or "info", 16), message=_clip(message))
        case ev.TutorFallback(kind=kind, reason=reason):
            return Notice(**base, level=FALLBACK, message=_clip(f"offline tutor answered ({kind}): {reason}"))
        case ev.TutorAudio(samples=samples, sample_rate=rate):
            return AudioChunk.from_float(samples, rate, AudioKind.TUTOR)
    return None
