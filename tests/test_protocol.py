"""The wire protocol: every message round-trips, every malformed frame is a ProtocolError."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voice_tutor import events as ev
from xr_bridge import auth, protocol as p

S = {"session_id": "sess-1", "t": 12.5}
PENDULUM_STATE = p.SimState(
    sim_id="pend", model="pendulum", t=1.0, step=240, running=True,
    params={"length": 1.0}, state={"theta": 0.1, "omega": -0.2},
)  # fmt: skip

SAMPLES: list[p.Message] = [
    p.Hello(versions=[1, 2], client="webxr/0.1"),
    p.Welcome(version=1, server="xr-bridge", max_message_bytes=65536, max_audio_bytes=192000, ping_interval_s=20.0),
    p.Join(token="abc.def", role="learner", name="Ada", resume="r-1", last_seq=41),
    p.Joined(
        room="physics-1",
        client_id="c1",
        role="learner",
        name="Ada",
        resume_id="r-1",
        resumed=False,
        members=[p.Member(client_id="c0", role="teacher", name="Ms T")],
    ),
    p.Error(code="forbidden", message="a observer may not send 'gaze'", ref_type="gaze"),
    p.RoomState(
        seq=42,
        scene=[p.LoadScene(scene="lab"), p.SpawnObject(object_id="ball", kind="sphere", position=(0.0, 1.0, 0.0))],
        simulations=[PENDULUM_STATE],
        captions=[p.Caption(seq=40, speaker="tutor", text="Let go of it.", cut=True)],
        missed=[p.Answer(seq=41, sender="c1", question_id="q1", choice="b")],
        gap=True,
    ),
    p.MemberJoined(seq=1, client_id="c1", role="observer", name="Parent"),
    p.MemberLeft(seq=2, client_id="c1", name="Parent", reason="slow_consumer"),
    p.LearnerSpeechStarted(**S, utterance_id=3),
    p.PartialTranscript(**S, utterance_id=3, text="why does it"),
    p.FinalTranscript(**S, utterance_id=3, text="Why does it swing?", language="en", audio_duration_s=1.2, stt_ms=80.0),
    p.TutorText(**S, turn_id=3, text="Gravity pulls"),
    p.TutorSpeechStarted(**S, turn_id=3),
    p.TutorSpeechEnded(**S, turn_id=3, text="Gravity pulls it back.", heard="Gravity pulls", cut=True),
    p.BargeIn(**S, turn_id=3),
    p.TurnCompleted(
        **S,
        turn_id=3,
        learner="Why?",
        tutor="Gravity.",
        heard="Gravity.",
        cut=False,
        latency_ms={"first_audio": 420.0, "stt": 80.0},
    ),
    p.MasteryUpdate(**S, skill="pendulum.period", mastery=0.6, previous=0.4),
    p.Alert(**S, severity="warning", message="Three wrong answers in a row", code="stuck"),
    p.Notice(**S, level="warning", message="LLM unreachable, using the offline tutor"),
    p.LessonStarted(**S, lesson_id="fractions", title="Fractions",
                    available=[p.LessonEntry(id="fractions", title="Fractions", subject="mathematics")]),
    p.LoadScene(scene="assets/scenes/lab.json", options={"lighting": "day", "gravity_arrows": True, "scale": 1.5}),
    p.Highlight(target="bob", color="#FFaa00"),
    p.ShowLabel(label_id="l1", text="L = 1 m", target="string", duration_s=5.0),
    p.SpawnObject(object_id="ball", kind="sphere", position=(0.0, 1.5, -2.0), rotation=(0.0, 90.0, 0.0), scale=0.2),
    p.MoveObject(object_id="ball", position=(1.0, 1.5, -2.0), duration_s=0.5),
    p.RemoveObject(object_id="ball"),
    p.StartSimulation(sim_id="pend", model="pendulum", params={"length": 2.0}, rate_hz=30.0),
    p.StopSimulation(sim_id="pend"),
    p.SetSimParam(sim_id="pend", name="length", value=0.5),
    PENDULUM_STATE,
    p.SelectObject(seq=7, sender="c1", object_id="bob"),
    p.Gaze(target="bob", dwell_ms=350.0),
    p.Answer(question_id="q1", choice="b"),
    p.PttStart(),
    p.PttStop(),
    p.UnheardSpeech(),
    p.RateTurn(turn_id=3, rating=-1),
    p.Survey(answers={"helpful": 5, "pace": 3}, comment="More pendulums!"),
    p.ChooseLesson(lesson_id="photosynthesis"),
    p.TeacherMessage(kind="hint", text="Ask about the length, not the mass."),
]


def test_samples_cover_every_message_type() -> None:
    assert {p.message_type(m) for m in SAMPLES} == set(p.MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=p.message_type)
def test_every_message_round_trips(message: p.Message) -> None:
    frame = p.encode_text(message)
    assert json.loads(frame)["type"] == p.message_type(message)
    assert p.parse_text(frame, max_bytes=p.MAX_SERVER_TEXT_BYTES) == message


def test_wire_form_is_plain_json_a_scene_can_write_by_hand() -> None:
    assert p.parse_text('{"type":"highlight","target":"bob"}') == p.Highlight(target="bob", on=True)
    assert p.parse_text('{"type":"move_object","object_id":"b","position":[1,2,3]}').position == (1.0, 2.0, 3.0)
    assert json.loads(p.encode_text(p.Gaze())) == {"type": "gaze", "dwell_ms": 0.0}  # nulls are left out


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        ("not json", "bad_message", "Invalid JSON"),
        ("[1, 2]", "bad_message", "one JSON object"),
        ('"hello"', "bad_message", "one JSON object"),
        ('{"target": "bob"}', "bad_message", "no 'type'"),
        ('{"type": "teleport", "to": "mars"}', "unknown_type", "'teleport'"),
        ('{"type": 7}', "unknown_type", "7"),
        ('{"type": "highlight"}', "bad_message", "field 'target': Field required"),
        ('{"type": "highlight", "target": "bob", "blink": true}', "bad_message", "field 'blink': Extra inputs"),
        ('{"type": "highlight", "target": 5}', "bad_message", "field 'target': Input should be a valid string"),
        ('{"type": "highlight", "target": "bob", "color": "red"}', "bad_message", "field 'color'"),
        ('{"type": "highlight", "target": ""}', "bad_message", "at least 1 character"),
        ('{"type": "gaze", "dwell_ms": "300"}', "bad_message", "field 'dwell_ms'"),
        ('{"type": "gaze", "dwell_ms": -1}', "bad_message", "greater than or equal to 0"),
        ('{"type": "set_sim_param", "sim_id": "p", "name": "length", "value": NaN}', "bad_message", "finite"),
        ('{"type": "set_sim_param", "sim_id": "p", "name": "length", "value": true}', "bad_message", "'value'"),
        ('{"type": "move_object", "object_id": "b", "position": [1, 2]}', "bad_message", "field 'position"),
        ('{"type": "join", "token": "t", "role": "admin", "name": "x"}', "bad_message", "field 'role'"),
        ('{"type": "join", "token": "t", "role": "learner", "name": "x", "last_seq": 1.5}', "bad_message", "last_seq"),
        ('{"type": "hello", "versions": []}', "bad_message", "field 'versions'"),
        ('{"type": "answer", "question_id": "q", "choice": "' + "x" * 129 + '"}', "bad_message", "at most 128"),
        ('{"type": "mastery_update", "session_id": "s", "t": 1, "skill": "k", "mastery": 1.5}', "bad_message", "1"),
        ('{"type": "room_state", "seq": 1, "scene": [{"type": "gaze"}], "simulations": [], "captions": []}',
         "bad_message", "field 'scene.0'"),
    ],
)  # fmt: skip
def test_malformed_messages_are_refused_with_a_clear_error(frame: str, code: str, fragment: str) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.parse_text(frame)
    assert caught.value.code == code
    assert fragment in caught.value.message
    assert caught.value.to_message().code == code


def test_errors_name_the_message_type_and_cap_their_detail() -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.parse_text('{"type": "spawn_object", "a": 1, "b": 2, "c": 3, "d": 4}')
    assert caught.value.ref_type == "spawn_object"
    assert "and " in caught.value.message and len(caught.value.message) < 600


def test_oversized_frames_are_refused_before_parsing() -> None:
    frame = p.encode_text(p.TeacherMessage(text="x" * 2000))
    with pytest.raises(p.ProtocolError, match="exceeds the limit of 100") as caught:
        p.parse_text(frame, max_bytes=100)
    assert caught.value.code == "too_large"
    with pytest.raises(p.ProtocolError, match="exceeds the limit"):
        p.parse_text(" " * (p.MAX_TEXT_BYTES + 1))
    with pytest.raises(p.ProtocolError):  # a long text field is bounded even inside the frame limit
        p.parse_text(json.dumps({"type": "teacher_message", "text": "x" * 2001}))


def test_version_negotiation_picks_the_highest_common_version() -> None:
    assert p.negotiate(p.Hello(versions=[1])) == 1
    assert p.negotiate(p.Hello(versions=[3, 1, 2]), supported=frozenset({1, 2})) == 2
    with pytest.raises(p.ProtocolError, match=r"client speaks versions \[2, 3\], server speaks \[1\]") as caught:
        p.negotiate(p.Hello(versions=[3, 2]))
    assert caught.value.code == "unsupported_version"


def test_audio_frame_round_trip_and_header_layout() -> None:
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    chunk = p.AudioChunk(kind=p.AudioKind.LEARNER, sample_rate=16000, seq=7, pcm=samples.astype("<i2").tobytes())
    frame = p.encode(chunk)
    assert isinstance(frame, bytes)
    assert frame[:12] == b"XA\x01\x01" + (16000).to_bytes(4, "little") + (7).to_bytes(4, "little")
    parsed = p.parse(frame)
    assert parsed == chunk
    assert isinstance(parsed, p.AudioChunk)
    np.testing.assert_array_equal(parsed.samples(), samples)
    assert parsed.duration_s == pytest.approx(6 / 16000)


def test_float_audio_is_clipped_and_rounded_to_int16() -> None:
    chunk = p.AudioChunk.from_float(np.array([0.0, 0.5, -0.5, 1.0, 2.0, -3.0]), 22050, p.AudioKind.TUTOR, seq=3)
    assert chunk.samples().tolist() == [0, 16384, -16384, 32767, 32767, -32767]
    assert p.parse_binary(p.encode_binary(chunk)) == chunk


HEADER = p.AUDIO_HEADER


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        (b"XA\x01", "bad_message", "shorter than its header"),
        (HEADER.pack(b"RI", 1, 1, 16000, 0) + b"\0\0", "bad_message", "expected b'XA'"),
        (HEADER.pack(b"XA", 2, 1, 16000, 0) + b"\0\0", "unsupported_version", "format version 2"),
        (HEADER.pack(b"XA", 1, 9, 16000, 0) + b"\0\0", "bad_message", "unknown audio kind 9"),
        (HEADER.pack(b"XA", 1, 1, 4000, 0) + b"\0\0", "bad_message", "sample rate 4000"),
        (HEADER.pack(b"XA", 1, 1, 16000, 0) + b"\0\0\0", "bad_message", "whole number of samples"),
        (HEADER.pack(b"XA", 1, 1, 16000, 0), "bad_message", "0 bytes"),
        (HEADER.pack(b"XA", 1, 1, 16000, 0) + bytes(p.MAX_AUDIO_BYTES + 2), "too_large", "exceeds"),
    ],
)
def test_malformed_audio_frames_are_refused(frame: bytes, code: str, fragment: str) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.parse_binary(frame)
    assert caught.value.code == code
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("role", "message", "allowed"),
    [
        ("learner", p.SelectObject(object_id="b"), True),
        ("learner", p.PttStart(), True),
        ("learner", p.Highlight(target="b"), False),
        ("learner", p.TeacherMessage(text="hi"), False),
        ("learner", PENDULUM_STATE, False),
        ("observer", p.Gaze(), False),
        ("observer", p.TeacherMessage(text="hi"), False),
        ("teacher", p.TeacherMessage(text="hi"), True),
        ("teacher", p.StartSimulation(sim_id="s", model="pendulum"), True),
        ("teacher", p.LoadScene(scene="lab"), True),
        ("teacher", p.Answer(question_id="q", choice="a"), False),
        ("teacher", p.TutorText(**S, turn_id=1, text="forged"), False),
    ],
)
def test_roles_may_send_only_their_own_messages(role: p.Role, message: p.Message, allowed: bool) -> None:
    if allowed:
        p.check_allowed(role, message)
    else:
        with pytest.raises(p.ProtocolError, match=f"a {role} may not send") as caught:
            p.check_allowed(role, message)
        assert caught.value.code == "forbidden"


def test_only_learners_send_audio_and_only_learner_audio() -> None:
    learner = p.AudioChunk(kind=p.AudioKind.LEARNER, sample_rate=16000, seq=0, pcm=b"\0\0")
    p.check_allowed("learner", learner)
    for role, chunk in [
        ("observer", learner),
        ("teacher", learner),
        ("learner", dataclasses.replace(learner, kind=p.AudioKind.TUTOR)),
    ]:
        with pytest.raises(p.ProtocolError, match="audio"):
            p.check_allowed(role, chunk)  # type: ignore[arg-type]


def test_session_events_map_to_wire_messages() -> None:
    sid = {"session_id": "sess-9", "t": 3.25}
    cases = [
        (ev.SpeechStarted(**sid, utterance_id=1), p.LearnerSpeechStarted(**sid, utterance_id=1)),
        (ev.PartialTranscript(**sid, utterance_id=1, text="wh"), p.PartialTranscript(**sid, utterance_id=1, text="wh")),
        (
            ev.FinalTranscript(**sid, utterance_id=1, text="Why?", language="en", audio_duration_s=0.8,
                               last_voiced_at=3.0, stt_ms=55.0),
            p.FinalTranscript(**sid, utterance_id=1, text="Why?", language="en", audio_duration_s=0.8, stt_ms=55.0),
        ),
        (ev.TutorText(**sid, turn_id=2, text="Because"), p.TutorText(**sid, turn_id=2, text="Because")),
        (ev.TutorSpeechStarted(**sid, turn_id=2), p.TutorSpeechStarted(**sid, turn_id=2)),
        (
            ev.TutorSpeechEnded(**sid, turn_id=2, text="Because of gravity.", heard="Because", cut=True),
            p.TutorSpeechEnded(**sid, turn_id=2, text="Because of gravity.", heard="Because", cut=True),
        ),
        (ev.BargeIn(**sid, turn_id=2), p.BargeIn(**sid, turn_id=2)),
        (
            ev.TurnCompleted(**sid, turn_id=2, learner="Why?", tutor="Gravity.", heard="Grav", cut=True,
                             latency_ms={"first_audio": 380.5, "broken": math.nan}),
            p.TurnCompleted(**sid, turn_id=2, learner="Why?", tutor="Gravity.", heard="Grav", cut=True,
                            latency_ms={"first_audio": 380.5}),
        ),
        (ev.SessionNotice(**sid, level="warning", message="offline"), p.Notice(**sid, level="warning", message="offline")),
        (
            ev.TutorFallback(**sid, kind="timeout", reason="LLM endpoint did not answer within 1.5 s", backend="chat:m"),
            p.Notice(**sid, level=p.FALLBACK,
                     message="offline tutor answered (timeout): LLM endpoint did not answer within 1.5 s"),
        ),
    ]  # fmt: skip
    for event, expected in cases:
        wire = p.event_to_wire(event)
        assert wire == expected
        assert p.parse_text(p.encode_text(wire)) == expected


def test_tutor_audio_becomes_a_binary_chunk_and_internal_events_stay_home() -> None:
    audio = ev.TutorAudio(
        session_id="s", turn_id=1, text="Hi", samples=np.full(480, 0.25, np.float32), sample_rate=22050
    )
    chunk = p.event_to_wire(audio)
    assert isinstance(chunk, p.AudioChunk)
    assert chunk.kind is p.AudioKind.TUTOR and chunk.sample_rate == 22050 and len(chunk.samples()) == 480
    assert p.event_to_wire(ev.SpeechPaused(session_id="s", utterance_id=1, last_voiced_at=1.0)) is None
    assert p.event_to_wire(ev.TutorReplyDone(session_id="s", turn_id=1, text="Hi")) is None


def test_event_texts_over_the_wire_limit_are_clipped_not_refused() -> None:
    wire = p.event_to_wire(ev.TutorText(session_id="s", turn_id=1, text="a" * 20000))
    assert isinstance(wire, p.TutorText)
    assert len(wire.text) == p.MAX_TEXT_CHARS and wire.text.endswith("…")


def test_json_schema_documents_every_message_type() -> None:
    schema = json.dumps(p.json_schema())
    for name in p.MESSAGE_TYPES:
        assert f'"{name}"' in schema


def test_protocol_md_documents_every_message_type() -> None:
    doc = (Path(p.__file__).parent / "PROTOCOL.md").read_text()
    assert f"Protocol version {p.PROTOCOL_VERSION}" in doc
    for name in p.MESSAGE_TYPES:
        assert f"`{name}`" in doc, name


# --- properties -------------------------------------------------------------

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@FAST
@given(
    st.sampled_from(sorted(p.MESSAGE_TYPES)),
    st.dictionaries(st.sampled_from(["text", "target", "seq", "position", "versions", "x", "t", "role"]), json_values),
)
def test_any_json_object_either_parses_or_raises_protocol_error(kind: str, fields: dict[str, object]) -> None:
    frame = json.dumps({"type": kind, **fields})
    try:
        message = p.parse_text(frame)
    except p.ProtocolError as exc:
        assert exc.code in ("bad_message", "unknown_type", "too_large")
    else:
        assert p.parse_text(p.encode_text(message)) == message


@FAST
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_frames_never_crash_the_parser(frame: str | bytes) -> None:
    with contextlib.suppress(p.ProtocolError):
        p.parse(frame)


@FAST
@given(
    kind=st.sampled_from(list(p.AudioKind)),
    rate=st.integers(p.MIN_SAMPLE_RATE, p.MAX_SAMPLE_RATE),
    seq=st.integers(0, 2**32 - 1),
    samples=st.lists(st.integers(-32768, 32767), min_size=1, max_size=500),
)
def test_audio_round_trips_for_any_header_and_samples(
    kind: p.AudioKind, rate: int, seq: int, samples: list[int]
) -> None:
    chunk = p.AudioChunk(kind=kind, sample_rate=rate, seq=seq, pcm=np.array(samples, "<i2").tobytes())
    assert p.parse_binary(p.encode_binary(chunk)) == chunk


@FAST
@given(st.text(max_size=2000).filter(bool), st.sampled_from(["hint", "message"]))
def test_any_unicode_text_round_trips(text: str, kind: str) -> None:
    message = p.TeacherMessage(kind=kind, text=text)  # type: ignore[arg-type]
    assert p.parse_text(p.encode_text(message)) == message


# --- join tokens --------------------------------------------------------------

SECRET = b"0123456789abcdef-test-secret"


def test_tokens_carry_their_claims_until_they_expire() -> None:
    token = auth.make_token(SECRET, room="physics-1", role="teacher", name="Ms Tërésa", ttl_s=60, now=1000.0)
    claims = auth.verify_token(SECRET, token, now=1059.0)
    assert claims == auth.Claims(room="physics-1", role="teacher", name="Ms Tërésa", expires_at=1060.0)
    with pytest.raises(auth.TokenError, match="expired"):
        auth.verify_token(SECRET, token, now=1060.0)


def test_forged_or_mangled_tokens_are_refused() -> None:
    token = auth.make_token(SECRET, room="r", role="observer", name="n", now=0.0)
    payload, signature = token.split(".")
    elevated = auth.make_token(b"another-secret-of-16+bytes", room="r", role="teacher", name="n", now=0.0)
    for bad, reason in [
        (elevated, "signature"),
        (elevated.split(".")[0] + "." + signature, "signature"),
        (payload + "." + signature[:-2], "signature"),
        ("no-dot", "malformed"),
        ("a.b.c", "malformed"),
        ("é." + signature, "malformed"),
        ("x" * 3000, "malformed"),
    ]:
        with pytest.raises(auth.TokenError, match=reason):
            auth.verify_token(SECRET, bad, now=1.0)


def test_tokens_are_only_minted_for_valid_claims() -> None:
    with pytest.raises(ValueError, match="role"):
        auth.make_token(SECRET, room="r", role="admin", name="n")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="16 bytes"):
        auth.make_token(b"short", room="r", role="learner", name="n")
    with pytest.raises(ValueError, match="1-128"):
        auth.make_token(SECRET, room="r" * 129, role="learner", name="n")
