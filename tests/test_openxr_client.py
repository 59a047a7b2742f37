"""The OpenXR client's networking core against a real bridge server on loopback.

The one stand-in is the XR layer (:class:`ScriptedInput` and :class:`RecordingDisplay`
implement ``XrInput`` and ``CaptionDisplay``): no OpenXR runtime can run here.  The
server, the websocket, the protocol and the audio path (a WAV file through
voice_tutor's ``FileSource``, framed as the microphone's would be) are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile

from voice_tutor.audio.sources import FileSource
from xr_bridge import protocol as p
from xr_bridge.openxr_client import (
    EXIT_NO_RUNTIME,
    BridgeClient,
    BridgeError,
    CaptionLine,
    Captions,
    ControllerEvent,
    Ray,
    SceneObjects,
    run_client,
)
from xr_bridge.server import BridgeServer, Room

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET = b"openxr-client-test-secret-0123"
SID = {"session_id": "sess", "t": 1.0}


class RecordingSession:
    """The tutor's side of the RoomSession seam: everything a learner sends, in arrival order."""

    def __init__(self, room: Room):
        self.room = room
        self.log: list[tuple[str, object]] = []  # ("audio", (client_id, pcm, rate)) or ("action", message)

    async def on_learner_audio(self, client: p.Member, pcm: bytes, sample_rate: int) -> None:
        self.log.append(("audio", (client.client_id, pcm, sample_rate)))

    async def on_learner_action(self, client: p.Member, action: p.LearnerAction) -> None:
        self.log.append(("action", action))

    async def on_teacher_message(self, client: p.Member, message: p.TeacherMessage) -> None:
        pass

    async def close(self) -> None:
        pass

    @property
    def actions(self) -> list[p.RoomMessage]:
        return [item for kind, item in self.log if kind == "action"]  # type: ignore[misc]

    @property
    def audio(self) -> list[tuple[str, bytes, int]]:
        return [item for kind, item in self.log if kind == "audio"]  # type: ignore[misc]


class ScriptedInput:
    """The XR layer's controller events, pushed by the test."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ControllerEvent | None] = asyncio.Queue()

    def push(self, event: ControllerEvent) -> None:
        self.queue.put_nowait(event)

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def events(self) -> AsyncIterator[ControllerEvent]:
        while (event := await self.queue.get()) is not None:
            yield event


class RecordingDisplay:
    def __init__(self) -> None:
        self.views: list[list[CaptionLine]] = []

    def show(self, lines: Sequence[CaptionLine]) -> None:
        self.views.append(list(lines))

    @property
    def current(self) -> list[str]:
        return [line.render("Ada") for line in self.views[-1]] if self.views else []


async def until(condition: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def bridge() -> AsyncIterator[tuple[BridgeServer, list[RecordingSession]]]:
    sessions: list[RecordingSession] = []

    def factory(room: Room) -> RecordingSession:
        sessions.append(RecordingSession(room))
        return sessions[-1]

    async with BridgeServer(SECRET, port=0, session_factory=factory) as server:
        yield server, sessions


def tone_wav(path: Path, seconds: float = 0.6) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    soundfile.write(path, audio, 16000, subtype="PCM_16")
    return audio


async def test_joins_shows_captions_and_sends_select_and_push_to_talk(tmp_path: Path) -> None:
    wav = tmp_path / "question.wav"
    tone_wav(wav)
    expected_pcm = np.round(np.clip(FileSource(wav).audio, -1, 1) * 32767).astype("<i2").tobytes()

    async with bridge() as (server, sessions):
        display, controller = RecordingDisplay(), ScriptedInput()
        client = BridgeClient(
            server.url,
            server.make_token("lab", "learner", "Ada"),  # role and name are read from the token
            display=display,
            audio=lambda: FileSource(wav, realtime=True, tail_silence_s=0.0),
            fallback_object="board",
        )
        running = asyncio.create_task(run_client(client, controller))
        await client.wait_connected(timeout=5)
        assert client.joined is not None and client.joined.name == "Ada" and client.joined.role == "learner"
        (session,) = sessions
        room = server.room("lab")

        # The tutor's events, published in the room, become captions.
        await room.publish(p.LoadScene(scene="pendulum-lab"))
        await room.publish(p.SpawnObject(object_id="bob", kind="sphere", position=(0.0, 1.0, -2.0)))
        await room.publish(p.SpawnObject(object_id="pivot", kind="box", position=(1.5, 2.0, -2.0)))
        await room.publish(p.PartialTranscript(**SID, utterance_id=1, text="why does"))
        await until(lambda: display.current == ["Ada: why does …"])
        await room.publish(p.FinalTranscript(**SID, utterance_id=1, text="Why does it swing?", language="en",
                                             audio_duration_s=1.2, stt_ms=80.0))  # fmt: skip
        for piece in ("Gravity", " pulls the bob", " down."):
            await room.publish(p.TutorText(**SID, turn_id=1, text=piece))
        await until(lambda: display.current[-1:] == ["Tutor: Gravity pulls the bob down. …"])
        await room.publish(p.TutorSpeechEnded(**SID, turn_id=1, text="Gravity pulls the bob down.",
                                              heard="Gravity pulls", cut=True))  # fmt: skip
        await room.publish(p.TeacherMessage(text="Look at the bob."))
        await until(
            lambda: display.current
            == ["Ada: Why does it swing?", "Tutor: Gravity pulls —", "Teacher: Look at the bob."]
        )

        # Select: the aim ray from the right hand at eye height towards the bob; then without a ray.
        eye = (0.1, 1.5, 0.0)
        toward_bob = (0.0 - eye[0], 1.0 - eye[1], -2.0 - eye[2])
        controller.push(ControllerEvent("select", Ray(eye, toward_bob)))
        controller.push(ControllerEvent("select", None))
        await until(lambda: len(session.actions) == 2)
        selected = [(a.type, a.object_id) for a in session.actions]  # type: ignore[attr-defined]
        assert selected == [("select_object", "bob"), ("select_object", "board")]
        assert all(a.sender == client.joined.client_id for a in session.actions)

        # Push to talk: PCM frames between ptt_start and ptt_stop, in order, bit-exact.
        controller.push(ControllerEvent("talk_pressed"))
        await until(lambda: len(session.audio) >= 12)
        controller.push(ControllerEvent("talk_released"))
        await until(lambda: session.actions[-1].type == "ptt_stop")
        kinds = [kind if kind == "audio" else item.type for kind, item in session.log[2:]]  # type: ignore[attr-defined]
        assert kinds[0] == "ptt_start" and kinds[-1] == "ptt_stop" and set(kinds[1:-1]) == {"audio"}
        received = b"".join(pcm for _, pcm, _ in session.audio)
        assert {(cid, rate) for cid, _, rate in session.audio} == {(client.joined.client_id, 16000)}
        assert all(len(pcm) == 1024 for _, pcm, _ in session.audio)  # 512-sample (32 ms) frames
        assert len(received) >= 12 * 1024 and received == expected_pcm[: len(received)]

        assert client.errors == []

        controller.end()  # the headset session ended: the client leaves
        await asyncio.wait_for(running, 5)
        await until(lambda: room.members == [])


async def test_a_dropped_connection_is_resumed_with_the_missed_captions() -> None:
    async with bridge() as (server, _):
        display, controller = RecordingDisplay(), ScriptedInput()
        client = BridgeClient(
            server.url, server.make_token("lab", "learner", "Ada"), display=display, reconnect_delay_s=0.1
        )
        running = asyncio.create_task(run_client(client, controller))
        await client.wait_connected(timeout=5)
        first_id = client.joined.client_id  # type: ignore[union-attr]
        room = server.room("lab")
        (member,) = room.clients()
        member.ws.transport.abort()  # the network drops
        await until(lambda: not client._connected.is_set())
        await room.publish(p.TutorSpeechEnded(**SID, turn_id=2, text="Longer string, slower swing.",
                                              heard="Longer string, slower swing.", cut=False))  # fmt: skip
        await client.wait_connected(timeout=5)
        assert client.joined.resumed and client.joined.client_id == first_id  # type: ignore[union-attr]
        await until(lambda: "Tutor: Longer string, slower swing." in display.current)
        assert display.current.count("Tutor: Longer string, slower swing.") == 1  # snapshot and missed agree
        assert display.current[-1] == "!: reconnected (resumed)"
        controller.end()
        await asyncio.wait_for(running, 5)


async def test_a_bad_token_is_one_clear_error() -> None:
    async with bridge() as (server, _):
        forged = BridgeServer(b"another-secret-0123456789", port=0).make_token("lab", "learner", "Ada")
        client = BridgeClient(server.url, forged, display=RecordingDisplay())
        with pytest.raises(BridgeError, match="unauthorized: bad token signature"):
            await client.connect()
    with pytest.raises(BridgeError, match="cannot connect"):
        await BridgeClient("ws://127.0.0.1:9/ws", forged, display=RecordingDisplay()).connect()


def test_captions_and_picking_follow_the_room() -> None:
    captions = Captions(max_lines=3)
    for message in [
        p.RoomState(seq=5, scene=[], simulations=[], captions=[p.Caption(seq=4, speaker="tutor", text="Hi")]),
        p.LearnerSpeechStarted(**SID, utterance_id=2),
        p.PartialTranscript(**SID, utterance_id=2, text="and if"),
        p.PartialTranscript(**SID, utterance_id=2, text="and if it is longer"),
        p.TutorText(**SID, turn_id=3, text="It"),
        p.FinalTranscript(**SID, utterance_id=2, text="And if it is longer?", language="en",
                          audio_duration_s=1, stt_ms=1),  # fmt: skip
        p.TutorText(**SID, turn_id=3, text=" swings slower."),
        p.Notice(**SID, level="warning", message="the tutor is offline"),
    ]:
        captions.apply(message)
    assert [line.render("Ada") for line in captions.lines] == [
        "Ada: And if it is longer?",
        "Tutor: It swings slower. …",
        "!: the tutor is offline",
    ]
    scene = SceneObjects()
    scene.apply(p.RoomState(seq=1, scene=[p.LoadScene(scene="lab"), p.SpawnObject(
        object_id="near", kind="s", position=(0.0, 0.0, -1.0)), p.SpawnObject(
        object_id="far", kind="s", position=(0.0, 0.0, -3.0), scale=2.0)], simulations=[], captions=[]))  # fmt: skip
    assert scene.pick(Ray((0, 0, 0), (0, 0, -1))) == "near"
    assert scene.pick(Ray((0, 0, 0), (0, 0, 1))) is None  # behind
    scene.apply(p.RemoveObject(object_id="near"))
    assert scene.pick(Ray((0, 0, 0), (0.1, 0, -1))) == "far"
    scene.apply(p.MoveObject(object_id="far", position=(5.0, 0.0, 0.0)))
    assert scene.pick(Ray((0, 0, 0), (0, 0, -1))) is None


def test_without_an_openxr_runtime_it_exits_with_one_clear_line() -> None:
    env = dict(os.environ)
    env.pop("XR_LOADER_DEBUG", None)
    # Make "no runtime" true even where one is installed: point the loader at a missing manifest.
    env["XR_RUNTIME_JSON"] = str(REPO_ROOT / "no-such-runtime" / "active_runtime.json")
    token = BridgeServer(SECRET, port=0).make_token("lab", "learner", "Ada")
    done = subprocess.run(
        [sys.executable, "-m", "xr_bridge.openxr_client", "--url", "ws://127.0.0.1:9/ws", "--token", token],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == EXIT_NO_RUNTIME != 0
    assert lines == [
        "voice-tutor XR client: no OpenXR runtime found (XR_ERROR_RUNTIME_UNAVAILABLE); "
        "install one such as Monado or SteamVR"
    ]
    assert "Traceback" not in done.stderr
