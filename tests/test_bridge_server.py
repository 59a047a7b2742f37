"""The bridge server on loopback, driven by real ``websockets`` clients."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voice_tutor import events as ev
from xr_bridge import auth, protocol as p
from xr_bridge.server import BridgeServer, Limits, Room, load_ssl_context

SECRET = b"bridge-test-secret-0123456789"
SID = {"session_id": "sess", "t": 1.0}


_peers: list[Peer] = []


@contextlib.asynccontextmanager
async def running(**kwargs: object) -> AsyncIterator[BridgeServer]:
    """A server on a free loopback port; the test's clients vanish before it stops."""
    async with BridgeServer(SECRET, port=0, **kwargs) as server:  # type: ignore[arg-type]
        try:
            yield server
        finally:
            while _peers:
                _peers.pop().ws.transport.abort()


class Peer:
    """A scene client: speaks the protocol over a real websocket connection."""

    def __init__(self, ws: ClientConnection, joined: p.Joined, state: p.RoomState):
        self.ws, self.joined, self.state = ws, joined, state
        self.last_seq = state.seq

    @classmethod
    async def join(
        cls,
        server: BridgeServer,
        room: str,
        role: p.Role,
        name: str,
        *,
        resume: str | None = None,
        last_seq: int | None = None,
        **connect_kwargs: object,
    ) -> Peer:
        ws = await connect(server.url, **connect_kwargs)  # type: ignore[arg-type]
        await ws.send(p.encode_text(p.Hello(versions=[p.PROTOCOL_VERSION], client="test")))
        assert isinstance(p.parse_text(await ws.recv()), p.Welcome)
        token = server.make_token(room, role, name)
        await ws.send(p.encode_text(p.Join(token=token, role=role, name=name, resume=resume, last_seq=last_seq)))
        joined = p.parse_text(await ws.recv())
        state = p.parse_text(await ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES)
        assert isinstance(joined, p.Joined) and isinstance(state, p.RoomState)
        _peers.append(peer := cls(ws, joined, state))
        return peer

    async def send(self, item: p.Message | p.AudioChunk) -> None:
        await self.ws.send(p.encode(item))

    async def recv(self, timeout: float = 3.0) -> p.Message | p.AudioChunk:
        async with asyncio.timeout(timeout):
            item = p.parse(await self.ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES)
        if isinstance(item, p.RoomMessage) and item.seq is not None:
            self.last_seq = item.seq
        return item

    async def recv_type(self, kind: type[p.Message], timeout: float = 3.0) -> p.Message:
        """The next message of ``kind``, skipping presence and others."""
        async with asyncio.timeout(timeout):
            while not isinstance(item := await self.recv(), kind):
                pass
        return item

    async def settle(self) -> None:
        """Read until nothing arrives for a moment (presence messages after joins)."""
        with contextlib.suppress(TimeoutError):
            while True:
                await self.recv(timeout=0.05)

    async def close(self) -> None:
        await self.ws.close()
        _peers.remove(self)


async def join_all(server: BridgeServer, room: str, *who: tuple[p.Role, str]) -> list[Peer]:
    peers = [await Peer.join(server, room, role, name) for role, name in who]
    for peer in peers:
        await peer.settle()
    return peers


def pcm(n: int = 320) -> bytes:
    return (np.arange(n, dtype="<i2") % 100).tobytes()


async def test_join_then_session_events_fan_out_to_every_member_in_order() -> None:
    async with running() as server:
        learner, observer, teacher = await join_all(
            server, "lab", ("learner", "Ada"), ("observer", "Parent"), ("teacher", "Ms T")
        )
        assert teacher.joined.members == [
            learner.joined.members[0],
            observer.joined.members[1],
            teacher.joined.members[2],
        ]
        assert [m.role for m in teacher.joined.members] == ["learner", "observer", "teacher"]

        room = server.room("lab")
        events = [ev.TutorText(session_id="s", turn_id=1, text=f"piece {i}") for i in range(40)]
        for event in events:
            wire = p.event_to_wire(event)
            assert wire is not None
            await room.publish(wire)

        for peer in (learner, observer, teacher):
            received = [await peer.recv() for _ in events]
            assert [m.text for m in received] == [f"piece {i}" for i in range(40)]  # type: ignore[union-attr]
            seqs = [m.seq for m in received]  # type: ignore[union-attr]
            assert seqs == list(range(seqs[0], seqs[0] + 40))


async def test_messages_never_leak_between_rooms() -> None:
    async with running() as server:
        a1, a2 = await join_all(server, "room-a", ("learner", "A1"), ("teacher", "A2"))
        (b1,) = await join_all(server, "room-b", ("learner", "B1"))
        await a2.send(p.LoadScene(scene="secret-scene"))
        await a1.send(p.Answer(question_id="q", choice="a"))
        for i in range(20):
            await server.room("room-a").publish(p.Notice(**SID, level="info", message=f"a{i}"))
        await server.room("room-b").publish(p.Notice(**SID, level="info", message="only-b"))
        first = await b1.recv()
        assert isinstance(first, p.Notice) and first.message == "only-b"
        assert (await a1.recv_type(p.LoadScene)).scene == "secret-scene"  # type: ignore[attr-defined]
        assert b1.state.scene == [] and server.room("room-b").snapshot().scene == []


async def test_roles_are_enforced_and_errors_keep_the_connection_open() -> None:
    async with running() as server:
        learner, observer, teacher = await join_all(
            server, "r", ("learner", "Ada"), ("observer", "Obs"), ("teacher", "Ms T")
        )
        audio = p.AudioChunk(kind=p.AudioKind.LEARNER, sample_rate=16000, seq=0, pcm=pcm())
        refusals = [
            (observer, p.Gaze(target="bob"), "a observer may not send 'gaze'"),
            (observer, audio, "a observer may not send learner audio"),
            (learner, p.Highlight(target="bob"), "a learner may not send 'highlight'"),
            (teacher, p.SelectObject(object_id="bob"), "a teacher may not send 'select_object'"),
            (teacher, p.TutorText(**SID, turn_id=1, text="forged"), "a teacher may not send 'tutor_text'"),
            (learner, p.Hello(versions=[1]), "already joined"),
        ]
        for peer, message, text in refusals:
            await peer.send(message)
            error = await peer.recv_type(p.Error)
            assert error.code in ("forbidden", "bad_state") and error.message == text  # type: ignore[attr-defined]

        await learner.send(p.SelectObject(object_id="bob"))
        await teacher.send(p.TeacherMessage(kind="hint", text="Ask about length."))
        for peer in (learner, observer, teacher):
            selected = await peer.recv_type(p.SelectObject)
            assert selected.sender == learner.joined.client_id  # type: ignore[attr-defined]
            hint = await peer.recv_type(p.TeacherMessage)
            assert hint.sender == teacher.joined.client_id and hint.seq > selected.seq  # type: ignore[attr-defined]


async def test_bad_expired_or_mismatched_tokens_are_refused() -> None:
    async with running() as server:
        now = time.time()
        cases = [
            (
                auth.make_token(b"some-other-secret-value", room="r", role="teacher", name="Eve"),
                "teacher",
                "Eve",
                "signature",
            ),
            (
                auth.make_token(SECRET, room="r", role="learner", name="Ada", ttl_s=10, now=now - 60),
                "learner",
                "Ada",
                "expired",
            ),
            (auth.make_token(SECRET, room="r", role="observer", name="Obs"), "teacher", "Obs", "'Obs' as observer"),
            ("garbage", "learner", "Ada", "malformed"),
        ]
        for token, role, name, reason in cases:
            async with connect(server.url) as ws:
                await ws.send(p.encode_text(p.Hello(versions=[1])))
                await ws.recv()
                await ws.send(p.encode_text(p.Join(token=token, role=role, name=name)))  # type: ignore[arg-type]
                error = p.parse_text(await ws.recv())
                assert isinstance(error, p.Error) and error.code == "unauthorized" and reason in error.message
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd.code == p.CLOSE_UNAUTHORIZED
        assert server.rooms == {}


@pytest.mark.parametrize(
    ("first", "code", "close_code"),
    [
        (p.encode_text(p.Hello(versions=[7, 9])), "unsupported_version", p.CLOSE_UNSUPPORTED_VERSION),
        (p.encode_text(p.Join(token="t", role="learner", name="n")), "bad_state", p.CLOSE_HANDSHAKE),
        ("{not json", "bad_message", p.CLOSE_HANDSHAKE),
    ],
)
async def test_handshake_violations_get_an_error_then_a_close(first: str, code: str, close_code: int) -> None:
    async with running() as server, connect(server.url) as ws:
        await ws.send(first)
        error = p.parse_text(await ws.recv())
        assert isinstance(error, p.Error) and error.code == code
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == close_code


async def test_a_client_that_does_not_say_hello_in_time_is_closed() -> None:
    async with running(limits=Limits(handshake_timeout_s=0.2)) as server, connect(server.url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2.0)
        assert closed.value.rcvd.code == p.CLOSE_HANDSHAKE


async def test_a_slow_client_is_cut_off_without_stalling_the_others() -> None:
    async with running(limits=Limits(send_queue=64), close_timeout=0.5) as server:
        (fast,) = await join_all(server, "r", ("learner", "Fast"))
        # The slow client never reads.  Without compression the repetitive texts below take their
        # full size on the wire, and a small socket buffer (no autotuning) makes it back up sooner.
        slow = await Peer.join(server, "r", "observer", "Slow", compression=None)
        slow.ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        await fast.settle()
        room = server.room("r")
        slow_on_server = next(c for c in room.clients() if c.member.name == "Slow")
        big = "€" * p.MAX_TEXT_CHARS  # 24 KB a message
        started = time.monotonic()
        left: list[p.MemberLeft] = []
        for i in range(600):  # 14 MB: more than the server's socket buffer and the slow client's outbox
            await room.publish(p.TutorText(**SID, turn_id=i, text=big))
            message = await fast.recv()
            if isinstance(message, p.MemberLeft):
                left.append(message)
                message = await fast.recv()
            assert isinstance(message, p.TutorText) and message.turn_id == i
        assert time.monotonic() - started < 5
        assert [(m.client_id, m.reason) for m in left] == [(slow.joined.client_id, "slow_consumer")]
        assert [m.name for m in room.members] == ["Fast"]
        async with asyncio.timeout(3):  # a peer that cannot take the close frame is cut
            await slow_on_server.ws.wait_closed()
        slow.ws.transport.abort()


async def test_latest_value_messages_are_coalesced_for_a_lagging_client() -> None:
    async with running(limits=Limits(send_queue=64)) as server:
        (viewer,) = await join_all(server, "r", ("observer", "V"))
        room = server.room("r")
        (client,) = room.clients()
        viewer.ws.transport.pause_reading()  # the client lags; its outbox fills
        for step in range(200):
            await room.publish(p.SimState(
                sim_id="p", model="pendulum", t=step / 30, step=step, running=True, params={}, state={"theta": 0.0}
            ))  # fmt: skip
        await room.publish(p.Notice(**SID, level="info", message="after"))
        viewer.ws.transport.resume_reading()
        received = [await viewer.recv() for _ in range(2)]
        assert [m.type for m in received][-1] == "notice"  # type: ignore[union-attr]
        states = [m for m in received if isinstance(m, p.SimState)]
        assert states and states[-1].step == 199
        assert client.outbox.dropped >= 190
        assert room.members  # still connected: coalescing kept it under its limit


async def test_tutor_audio_is_dropped_first_for_a_lagging_client() -> None:
    async with running(limits=Limits(send_queue=32)) as server:
        (listener,) = await join_all(server, "r", ("learner", "L"))
        room = server.room("r")
        (client,) = room.clients()
        listener.ws.transport.pause_reading()
        chunk = p.AudioChunk(kind=p.AudioKind.TUTOR, sample_rate=16000, seq=0, pcm=pcm(8000))
        for _ in range(400):
            await room.publish(chunk)
        await room.publish(p.Notice(**SID, level="info", message="still here"))
        listener.ws.transport.resume_reading()
        seqs = []
        while not isinstance(item := await listener.recv(), p.Notice):
            seqs.append(item.seq)  # type: ignore[union-attr]
        # The outbox took audio until half full and dropped the rest; the notice still got through.
        assert seqs == list(range(1, 17)) and client.outbox.dropped == 400 - 16
        assert room.members


async def test_an_empty_room_outlives_the_resume_grace_then_closes_its_session() -> None:
    closed: list[str] = []

    class Session:
        def __init__(self, room: Room):
            self.room = room

        async def on_learner_audio(self, client: p.Member, pcm: bytes, sample_rate: int) -> None: ...
        async def on_learner_action(self, client: p.Member, action: p.LearnerAction) -> None: ...
        async def on_teacher_message(self, client: p.Member, message: p.TeacherMessage) -> None: ...

        async def close(self) -> None:
            closed.append(self.room.id)

    async with running(limits=Limits(resume_grace_s=0.3), session_factory=Session) as server:
        (peer,) = await join_all(server, "r", ("learner", "Ada"))
        await peer.close()
        await asyncio.sleep(0.1)
        assert "r" in server.rooms and closed == []
        await asyncio.sleep(0.4)
        assert server.rooms == {} and closed == ["r"]
        again = await Peer.join(server, "r", "learner", "Ada", resume=peer.joined.resume_id, last_seq=peer.last_seq)
        assert not again.joined.resumed  # the ticket went with the room


def test_limits_that_would_break_the_protocol_are_refused() -> None:
    with pytest.raises(ValueError, match="history"):
        Limits(history=100_000)
    with pytest.raises(ValueError, match="send_queue"):
        Limits(send_queue=1)
    with pytest.raises(ValueError, match="16 bytes"):
        BridgeServer(b"short")


async def test_captions_name_the_tutors_turn_and_keep_its_latest_rating_for_late_joiners() -> None:
    async with running() as server:
        (learner,) = await join_all(server, "rated", ("learner", "Ada"))
        room = server.room("rated")
        await room.publish(p.TutorSpeechEnded(**SID, turn_id=3, text="Twelve. Next:", heard="Twelve. Next:", cut=False))
        await room.publish(p.TutorSpeechEnded(**SID, turn_id=4, text="Try again.", heard="Try", cut=True))
        await learner.send(p.RateTurn(turn_id=3, rating=-1))
        await learner.send(p.RateTurn(turn_id=3, rating=1))  # changed their mind: the latest counts
        await learner.recv_type(p.RateTurn)
        await learner.recv_type(p.RateTurn)

        late = await Peer.join(server, "rated", "observer", "Olive")
        assert [(c.speaker, c.text, c.turn_id, c.rating) for c in late.state.captions] == [
            ("tutor", "Twelve. Next:", 3, 1),
            ("tutor", "Try", 4, None),
        ]


async def test_reconnecting_with_the_resume_id_restores_state_and_missed_events() -> None:
    async with running() as server:
        learner, teacher = await join_all(server, "r", ("learner", "Ada"), ("teacher", "Ms T"))
        room = server.room("r")
        await teacher.send(p.LoadScene(scene="lab"))
        await teacher.send(p.SpawnObject(object_id="bob", kind="sphere", position=(0.0, 1.0, 0.0)))
        await room.publish(
            p.FinalTranscript(**SID, utterance_id=1, text="Why?", language="en", audio_duration_s=1, stt_ms=5)
        )
        await learner.recv_type(p.FinalTranscript)
        seen = learner.last_seq
        await learner.close()
        await teacher.recv_type(p.MemberLeft)

        # While the learner is away: the scene moves on and the conversation goes on.
        await teacher.send(p.MoveObject(object_id="bob", position=(2.0, 1.0, 0.0), duration_s=1.0))
        await teacher.send(p.Highlight(target="bob", color="#ff0000"))
        await room.publish(p.TutorSpeechEnded(**SID, turn_id=1, text="Gravity pulls.", heard="Gravity", cut=True))
        await room.publish(p.MasteryUpdate(**SID, skill="period", mastery=0.5))
        await teacher.recv_type(p.MasteryUpdate)

        back = await Peer.join(server, "r", "learner", "Ada", resume=learner.joined.resume_id, last_seq=seen)
        assert back.joined.resumed and back.joined.client_id == learner.joined.client_id
        state = back.state
        assert state.seq == room.seq - 1  # its own member_joined follows the snapshot
        assert state.scene == [
            p.LoadScene(scene="lab"),
            p.SpawnObject(object_id="bob", kind="sphere", position=(2.0, 1.0, 0.0)),
            p.Highlight(target="bob", color="#ff0000"),
        ]
        assert [(c.speaker, c.text, c.cut) for c in state.captions] == [
            ("learner", "Why?", False),
            ("tutor", "Gravity", True),
        ]
        assert [m.type for m in state.missed] == ["member_left", "tutor_speech_ended", "mastery_update"]
        assert all(m.seq > seen for m in state.missed) and not state.gap

        # A stranger with a forged resume id gets a fresh identity, not Ada's.
        other = await Peer.join(server, "r", "learner", "Ada", resume="not-a-real-resume-id", last_seq=0)
        assert not other.joined.resumed and other.joined.client_id != learner.joined.client_id
        assert other.state.missed == []


async def test_resuming_while_the_old_connection_lingers_replaces_it() -> None:
    async with running() as server:
        (first,) = await join_all(server, "r", ("learner", "Ada"))
        second = await Peer.join(server, "r", "learner", "Ada", resume=first.joined.resume_id, last_seq=first.last_seq)
        assert second.joined.resumed
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await first.recv()
        assert closed.value.rcvd.code == p.CLOSE_REPLACED
        assert [m.client_id for m in server.room("r").members] == [first.joined.client_id]


async def test_static_pages_and_the_websocket_share_one_port(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>kiosk</title>")
    (web / "js" / "scene.js").write_text("export const x = 1;")
    (tmp_path / "secret.txt").write_text("do not serve")

    async def get(port: int, path: str, extra: str = "", method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
        raw = await reader.read()
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in header_lines)
        return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body

    async with running(static_dir=web) as server:
        status, headers, body = await get(server.port, "/")
        assert status == 200 and body == b"<!doctype html><title>kiosk</title>"
        assert headers["content-type"] == "text/html; charset=utf-8"
        status, headers, body = await get(server.port, "/js/scene.js?v=2")
        assert status == 200 and "javascript" in headers["content-type"] and body == b"export const x = 1;"
        for path in ("/missing.html", "/../secret.txt", "/%2e%2e/secret.txt", "/js/../../secret.txt"):
            status, _, body = await get(server.port, path)
            assert status == 404 and b"do not serve" not in body, path
        for method in ("POST", "PUT", "DELETE"):  # the pages are read-only
            status, headers, body = await get(server.port, "/", "Content-Length: 0\r\n", method=method)
            assert (status, headers["allow"]) == (405, "GET") and b"kiosk" not in body, method
        upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        assert (await get(server.port, "/elsewhere", upgrade))[0] == 404
        assert (await get(server.port, "/ws"))[0] == 426  # the endpoint wants a websocket upgrade
        peer = await Peer.join(server, "r", "observer", "O")  # and the same port speaks websocket
        assert peer.joined.room == "r"


async def test_oversized_frames_close_the_connection_and_others_carry_on() -> None:
    async with running(limits=Limits(max_message_bytes=4096)) as server:
        big_mouth, other = await join_all(server, "r", ("teacher", "Big"), ("learner", "Other"))
        await big_mouth.ws.send('{"type":"teacher_message","text":"' + "x" * 5000 + '"}')
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await big_mouth.recv()
        assert closed.value.rcvd.code == 1009  # message too big
        left = await other.recv_type(p.MemberLeft)
        assert left.client_id == big_mouth.joined.client_id  # type: ignore[attr-defined]
        await other.send(p.Gaze(target="x"))
        assert isinstance(await other.recv_type(p.Gaze), p.Gaze)


async def test_clients_over_their_rate_are_throttled_then_disconnected() -> None:
    limits = Limits(messages_per_s=5, message_burst=5, max_rate_violations=30)
    async with running(limits=limits) as server:
        chatty, watcher = await join_all(server, "r", ("learner", "Chatty"), ("observer", "W"))
        for i in range(20):
            await chatty.send(p.Gaze(target=f"t{i}"))
        error = await chatty.recv_type(p.Error)
        assert error.code == "rate_limited"  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)
        gazes = []
        with contextlib.suppress(TimeoutError):
            while True:
                if isinstance(m := await watcher.recv(timeout=0.2), p.Gaze):
                    gazes.append(m)
        assert 1 <= len(gazes) <= 7  # the burst, maybe one refill; gazes coalesce, never exceed
        for _ in range(40):
            with contextlib.suppress(ConnectionClosed):
                await chatty.send(p.Gaze())
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await chatty.recv()
        assert closed.value.rcvd.code == p.CLOSE_RATE_LIMITED


async def test_heartbeat_drops_a_peer_that_stops_answering() -> None:
    async with running(ping_interval=0.1, ping_timeout=0.2, close_timeout=0.3) as server:
        dead, alive = await join_all(server, "r", ("learner", "Dead"), ("teacher", "Alive"))
        dead.ws.transport.pause_reading()  # its pongs never come: a vanished network
        left = await alive.recv_type(p.MemberLeft, timeout=3.0)
        assert left.client_id == dead.joined.client_id and left.reason == "connection_lost"  # type: ignore[attr-defined]


class RecordingSession:
    """A stand-in voice session on the RoomSession seam: records calls, answers like a tutor."""

    def __init__(self, room: Room):
        self.room = room
        self.audio: list[tuple[str, bytes, int]] = []
        self.actions: list[p.Message] = []
        self.hints: list[str] = []
        self.closed = False

    async def on_learner_audio(self, client: p.Member, pcm: bytes, sample_rate: int) -> None:
        self.audio.append((client.client_id, pcm, sample_rate))
        if len(self.audio) == 3:
            for event in (
                ev.FinalTranscript(session_id="s", utterance_id=1, text="Hello", language="en",
                                   audio_duration_s=0.06, last_voiced_at=0.0, stt_ms=1.0),
                ev.TutorAudio(session_id="s", turn_id=1, text="Hi", samples=np.zeros(160, np.float32), sample_rate=16000),
                ev.TutorAudio(session_id="s", turn_id=1, text="Hi", samples=np.zeros(160, np.float32), sample_rate=16000),
            ):  # fmt: skip
                wire = p.event_to_wire(event)
                assert wire is not None
                await self.room.publish(wire)

    async def on_learner_action(self, client: p.Member, action: p.LearnerAction) -> None:
        self.actions.append(action)

    async def on_teacher_message(self, client: p.Member, message: p.TeacherMessage) -> None:
        self.hints.append(message.text)

    async def close(self) -> None:
        self.closed = True


async def test_a_voice_session_plugs_in_through_the_room_session_seam() -> None:
    sessions: list[RecordingSession] = []

    def factory(room: Room) -> RecordingSession:
        sessions.append(RecordingSession(room))
        return sessions[-1]

    async with running(session_factory=factory) as server:
        learner, observer, teacher = await join_all(
            server, "r", ("learner", "Ada"), ("observer", "O"), ("teacher", "T")
        )
        (session,) = sessions
        for seq in range(3):
            await learner.send(p.AudioChunk(kind=p.AudioKind.LEARNER, sample_rate=16000, seq=seq, pcm=pcm()))
        for peer in (learner, observer, teacher):
            assert (await peer.recv_type(p.FinalTranscript)).text == "Hello"  # type: ignore[attr-defined]
            chunks = [await peer.recv(), await peer.recv()]
            assert [c.seq for c in chunks] == [1, 2]  # type: ignore[union-attr]
            assert all(isinstance(c, p.AudioChunk) and c.kind is p.AudioKind.TUTOR for c in chunks)
        assert [(cid, len(b), rate) for cid, b, rate in session.audio] == [(learner.joined.client_id, 640, 16000)] * 3

        await learner.send(p.Answer(question_id="q1", choice="b"))
        await teacher.send(p.TeacherMessage(kind="hint", text="Mention the length."))
        await teacher.recv_type(p.TeacherMessage)
        assert [a.type for a in session.actions] == ["answer"] and session.actions[0].seq  # type: ignore[attr-defined]
        assert session.hints == ["Mention the length."]
    assert session.closed


async def test_teachers_drive_server_side_simulations() -> None:
    async with running() as server:
        learner, teacher = await join_all(server, "r", ("learner", "Ada"), ("teacher", "T"))
        await teacher.send(p.StartSimulation(sim_id="pend", model="pendulum", params={"length": 1.0}, rate_hz=50))
        assert (await learner.recv_type(p.StartSimulation)).sim_id == "pend"  # type: ignore[attr-defined]
        first = await learner.recv_type(p.SimState)
        await teacher.send(p.SetSimParam(sim_id="pend", name="length", value=2.0))
        await learner.recv_type(p.SetSimParam)
        later = await learner.recv_type(p.SimState)
        assert later.t > first.t and later.params["length"] == 2.0  # type: ignore[attr-defined]

        late = await Peer.join(server, "r", "observer", "Late")
        assert [s.sim_id for s in late.state.simulations] == ["pend"]

        for bad, fragment in [
            (p.SetSimParam(sim_id="pend", name="length", value=-1.0), "within"),
            (p.SetSimParam(sim_id="nope", name="length", value=1.0), "no simulation 'nope'"),
            (p.StartSimulation(sim_id="x", model="rocket"), "unknown simulation model"),
        ]:
            await teacher.send(bad)
            error = await teacher.recv_type(p.Error)
            assert error.code == "invalid_command" and fragment in error.message  # type: ignore[attr-defined]

        await teacher.send(p.StopSimulation(sim_id="pend"))
        await learner.recv_type(p.StopSimulation)
        await learner.settle()
        assert server.room("r").snapshot().simulations == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
async def test_tls_from_certificate_files(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    trust = ssl.create_default_context(cafile=str(cert))
    async with running(ssl=load_ssl_context(cert, key)) as server:
        assert server.url.startswith("wss://")
        peer = await Peer.join(server, "r", "observer", "O", ssl=trust)
        assert peer.joined.room == "r"
        with pytest.raises(ssl.SSLError):
            await connect(server.url, ssl=ssl.create_default_context())  # an untrusted certificate


async def test_a_survey_is_echoed_to_its_learner_only() -> None:
    async with running() as server:
        learner, observer, teacher = await join_all(
            server, "lab", ("learner", "Ada"), ("observer", "Parent"), ("teacher", "Ms T")
        )
        seq_before = server.room("lab").seq
        await learner.send(p.Survey(answers={"helpful": 2}, comment="too fast for me"))
        echo = await learner.recv_type(p.Survey)
        assert echo.comment == "too fast for me" and echo.sender == learner.joined.client_id  # type: ignore[attr-defined]
        assert echo.seq == seq_before == server.room("lab").seq  # type: ignore[attr-defined]
        await server.room("lab").publish(p.Notice(**SID, level="info", message="after"))
        for peer in (observer, teacher):
            assert isinstance(first := await peer.recv(), p.Notice) and first.message == "after", first
