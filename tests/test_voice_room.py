"""A room's voice session on a real bridge server: real models, real websocket clients, spoken learners.

The learners' words are piper speech (the ``say`` fixture), cut into 20 ms
int16 frames as the page's microphone worklet sends them.  Every assertion is
about what the clients receive over their sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from voice_tutor import events as ev
from voice_tutor.config import Config
from voice_tutor.dialogue.feedback import ACKNOWLEDGEMENTS
from voice_tutor.store import Store
from xr_bridge import protocol as p
from xr_bridge.server import BridgeServer
from xr_bridge.voice import VoiceRoom, simulation_commands, voice_session_factory

pytestmark = pytest.mark.slow

SECRET = b"voice-room-test-secret-0123456789"
FRAME = 320  # 20 ms at 16 kHz


@contextlib.asynccontextmanager
async def voice_server(speech_models, store: Store | None = None, **options) -> AsyncIterator[BridgeServer]:
    factory = voice_session_factory(speech_models, Config(), store=store, **options)  # the offline arithmetic lesson
    async with BridgeServer(SECRET, port=0, session_factory=factory) as server:
        yield server


class Client:
    """A scene client that records everything it receives, in order."""

    def __init__(self, ws: ClientConnection, joined: p.Joined):
        self.ws, self.joined = ws, joined
        self.received: list[p.Message | p.AudioChunk] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @property
    def id(self) -> str:
        return self.joined.client_id

    @classmethod
    async def join(cls, server: BridgeServer, room: str, role: p.Role, name: str) -> Client:
        ws = await connect(server.url)
        await ws.send(p.encode_text(p.Hello(versions=[p.PROTOCOL_VERSION], client="voice-test")))
        assert isinstance(p.parse_text(await ws.recv()), p.Welcome)
        await ws.send(p.encode_text(p.Join(token=server.make_token(room, role, name), role=role, name=name)))
        joined = p.parse_text(await ws.recv())
        assert isinstance(joined, p.Joined)
        assert isinstance(p.parse_text(await ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES), p.RoomState)
        return cls(ws, joined)

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for frame in self.ws:
                item = p.parse(frame, max_bytes=p.MAX_SERVER_TEXT_BYTES)
                async with self._changed:
                    self.received.append(item)
                    self._changed.notify_all()

    async def wait_for(self, found: Callable[[p.Message | p.AudioChunk], bool], timeout: float = 20.0):
        """The first received item (so far or to come) for which ``found`` holds."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for item in self.received:
                    if found(item):
                        return item
                await self._changed.wait()

    def of(self, kind: type) -> list:
        return [item for item in self.received if isinstance(item, kind)]

    async def send(self, item: p.Message | p.AudioChunk) -> None:
        await self.ws.send(p.encode(item))

    async def speak(self, samples: np.ndarray, *, speed: float = 2.0) -> None:
        """Stream 16 kHz float speech as 20 ms learner frames, ``speed`` times faster than real time."""
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
        for seq, start in enumerate(range(0, len(pcm), FRAME)):
            chunk = p.AudioChunk(p.AudioKind.LEARNER, 16000, seq, pcm[start : start + FRAME].tobytes())
            await self.send(chunk)
            await asyncio.sleep(FRAME / 16000 / speed)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype=np.float32)


def is_(kind: type, **fields: object) -> Callable[[object], bool]:
    return lambda item: isinstance(item, kind) and all(getattr(item, k) == v for k, v in fields.items())


def stream_key(item: p.Message | p.AudioChunk) -> tuple[str, int | None]:
    """What identifies an item in a room's stream: its type and room (or audio) sequence number."""
    if isinstance(item, p.AudioChunk):
        return ("audio", item.seq)
    return (p.message_type(item), getattr(item, "seq", None))


async def test_spoken_turns_reach_every_member_in_the_same_order_and_learners_take_turns(speech_models, say):
    twelve, nine = say("Twelve."), say("Nine.")
    async with voice_server(speech_models) as server:
        ada = await Client.join(server, "class", "learner", "Ada")
        await ada.wait_for(is_(p.TutorText, turn_id=0))  # the session started and greets
        olive = await Client.join(server, "class", "observer", "Olive")
        ben = await Client.join(server, "class", "learner", "Ben")
        joined_seq = (await ada.wait_for(is_(p.MemberJoined, client_id=ben.id))).seq

        # Ada holds push-to-talk; Ben talks hands-free at the same time and is not heard.
        await ada.send(p.PttStart())
        await asyncio.gather(ada.speak(np.concatenate([silence(0.2), twelve])), ben.speak(np.concatenate([nine, nine])))
        await ada.send(p.PttStop())  # no trailing silence: releasing the button ends the turn
        final = await ada.wait_for(is_(p.FinalTranscript), timeout=10)
        assert final.sender == ada.id and ("twelve" in final.text.lower() or "12" in final.text)
        turn = final.utterance_id
        completed = await ada.wait_for(is_(p.TurnCompleted, turn_id=turn), timeout=20)
        assert any(word in completed.tutor.lower() for word in ("right", "correct", "well done"))
        assert "next question" in completed.tutor.lower()
        assert not completed.cut and completed.heard == completed.tutor

        # Olive and Ben saw exactly what Ada saw since Ben joined: the same messages, audio, order.
        for other in (olive, ben):
            await other.wait_for(is_(p.TurnCompleted, turn_id=turn))
        streams = []
        for client in (ada, olive, ben):
            start = next(i for i, m in enumerate(client.received) if is_(p.MemberJoined, client_id=ben.id)(m))
            end = next(i for i, m in enumerate(client.received) if is_(p.TurnCompleted, turn_id=turn)(m))
            streams.append([stream_key(item) for item in client.received[start : end + 1]])
        assert streams[0] == streams[1] == streams[2]
        window = ada.received[ada.received.index(ada.of(p.MemberJoined)[-1]) :]

        def first(kind: type, **fields: object) -> int:
            return window.index(next(m for m in window if is_(kind, **fields)(m)))

        assert first(p.LearnerSpeechStarted, utterance_id=turn) < first(p.FinalTranscript, utterance_id=turn)
        assert first(p.BargeIn, turn_id=0) < first(p.FinalTranscript) < first(p.TutorText, turn_id=turn)
        started, ended = first(p.TutorSpeechStarted, turn_id=turn), first(p.TutorSpeechEnded, turn_id=turn)
        reply_audio = [m for m in window[started:ended] if isinstance(m, p.AudioChunk)]
        assert reply_audio and all(m.kind is p.AudioKind.TUTOR for m in reply_audio)
        assert sum(m.duration_s for m in reply_audio) > 1.5  # the whole reply, streamed
        assert isinstance(window[started + 1], p.AudioChunk)  # the audio follows its start event
        assert [m.seq for m in reply_audio] == list(range(reply_audio[0].seq, reply_audio[0].seq + len(reply_audio)))
        seqs = [m.seq for m in window if isinstance(m, p.RoomMessage)]
        assert seqs[0] == joined_seq and seqs == list(range(joined_seq, joined_seq + len(seqs)))  # none missing
        assert not [m for m in ada.of(p.FinalTranscript) if "nine" in m.text.lower() or "9" in m.text]

        # The floor is free again: Ben answers hands-free, and is named as the speaker.
        await ben.speak(np.concatenate([nine, silence(1.0)]))
        second = await olive.wait_for(lambda m: is_(p.FinalTranscript)(m) and m.utterance_id > turn, timeout=10)
        assert second.sender == ben.id and ("nine" in second.text.lower() or "9" in second.text)

        # Observers cannot speak or act.
        await olive.send(p.AudioChunk(p.AudioKind.LEARNER, 16000, 0, (nine[:FRAME] * 32767).astype("<i2").tobytes()))
        await olive.send(p.PttStart())
        errors = [await olive.wait_for(is_(p.Error, ref_type=ref)) for ref in (None, "ptt_start")]
        assert [e.code for e in errors] == ["forbidden", "forbidden"]
        assert "observer may not send learner audio" in errors[0].message
        for client in (ada, olive, ben):
            await client.close()


async def test_answers_by_choice_are_turns_and_the_tutors_simulation_requests_reach_every_member(speech_models):
    async with voice_server(speech_models) as server:
        ada = await Client.join(server, "lab", "learner", "Ada")
        olive = await Client.join(server, "lab", "observer", "Olive")
        await ada.wait_for(is_(p.TutorText, turn_id=0))

        await ada.send(p.Answer(question_id="add-7-5", choice="12"))
        final = await olive.wait_for(is_(p.FinalTranscript))
        assert (final.text, final.sender) == ("12", ada.id)
        reply = await olive.wait_for(is_(p.TutorSpeechEnded, turn_id=final.utterance_id), timeout=20)
        assert "next question" in reply.text.lower()
        cut_greeting = await olive.wait_for(is_(p.TutorSpeechEnded, turn_id=0))
        assert cut_greeting.cut  # answering cut the greeting short, as speaking would

        room = server.room("lab")
        voice = room.session
        assert isinstance(voice, VoiceRoom) and voice.session is not None
        # What the LLM tutor's start_simulation / set_simulation_parameter tools publish (dialogue.tools).
        sid = voice.session.id
        voice.request_simulation({"type": "start_simulation", "session_id": sid, "sim_id": "pendulum",
                                  "model": "pendulum", "params": {"length": 1.0}})  # fmt: skip
        for client in (ada, olive):
            started = await client.wait_for(is_(p.StartSimulation))
            assert (started.sim_id, started.model, started.params) == ("pendulum", "pendulum", {"length": 1.0})
            assert started.sender is None  # the tutor's, not a member's
            await client.wait_for(is_(p.SimState, sim_id="pendulum"))
        voice.request_simulation({"type": "set_sim_param", "session_id": sid, "sim_id": "pendulum",
                                  "name": "length", "value": 2.5})  # fmt: skip
        for client in (ada, olive):
            changed = await client.wait_for(is_(p.SetSimParam))
            assert (changed.sim_id, changed.name, changed.value) == ("pendulum", "length", 2.5)
            longer = await client.wait_for(lambda m: isinstance(m, p.SimState) and m.params["length"] == 2.5)
            assert longer.running and longer.state["y"] < -1.0  # the bob hangs on the longer string
        voice.request_simulation({"type": "set_sim_param", "session_id": sid, "sim_id": "pendulum",
                                  "name": "length", "value": -3.0})  # fmt: skip
        notice = await olive.wait_for(is_(p.Notice, level="warning"))
        assert "refused" in notice.message and "length" in notice.message
        for client in (ada, olive):
            await client.close()


async def test_a_rating_said_aloud_reaches_the_room_as_a_rate_turn_on_the_reply_before(speech_models, say):
    thumbs_down = say("Thumbs down.")
    async with voice_server(speech_models) as server:
        ada = await Client.join(server, "rated", "learner", "Ada")
        olive = await Client.join(server, "rated", "observer", "Olive")
        await ada.wait_for(is_(p.TutorText, turn_id=0))
        await ada.send(p.Answer(question_id="add-7-5", choice="12"))
        answered = await olive.wait_for(is_(p.FinalTranscript))
        reply = await olive.wait_for(is_(p.TutorSpeechEnded, turn_id=answered.utterance_id), timeout=30)
        assert "next question" in reply.text.lower()

        await ada.speak(np.concatenate([thumbs_down, silence(1.0)]))
        rated = await olive.wait_for(is_(p.RateTurn), timeout=20)
        # The reply it was said after, by the learner who said it: pages light that reply's thumb.
        assert (rated.turn_id, rated.rating, rated.sender) == (reply.turn_id, -1, ada.id)
        heard = await olive.wait_for(lambda m: is_(p.FinalTranscript)(m) and m.utterance_id > reply.turn_id)
        assert "thumbs down" in heard.text.lower()
        acknowledged = await olive.wait_for(is_(p.TurnCompleted, turn_id=heard.utterance_id), timeout=20)
        assert acknowledged.tutor.strip() == ACKNOWLEDGEMENTS[-1]  # acknowledged, not taken for an answer
        for client in (ada, olive):
            await client.close()


async def test_in_a_shared_room_each_learner_is_asked_assessed_and_stored_as_themselves(
    speech_models, say, tmp_path, run_cli
):
    hello, twelve = say("Hello."), say("Twelve.")
    db = tmp_path / "tutor.db"
    with Store.open(db) as store:
        async with voice_server(speech_models, store, seat_grace_s=0.5) as server:
            ada = await Client.join(server, "shared", "learner", "Ada")
            await ada.wait_for(is_(p.TutorText, turn_id=0))  # Ada is greeted and asked her question
            ben = await Client.join(server, "shared", "learner", "Ben")
            await ada.wait_for(is_(p.MemberJoined, client_id=ben.id))

            await ben.speak(np.concatenate([hello, silence(1.2)]))  # Ben takes the floor hands-free
            said = await ada.wait_for(lambda m: is_(p.FinalTranscript)(m) and m.sender == ben.id, timeout=20)
            welcome = await ada.wait_for(is_(p.TurnCompleted, turn_id=said.utterance_id), timeout=30)
            assert "ben" in welcome.tutor.lower() and "seven plus five" in welcome.tutor.lower()

            await ben.speak(np.concatenate([twelve, silence(1.2)]))  # and answers his own question
            answer = await ada.wait_for(
                lambda m: is_(p.FinalTranscript)(m) and m.sender == ben.id and m.utterance_id > said.utterance_id,
                timeout=20)
            praised = await ada.wait_for(is_(p.TurnCompleted, turn_id=answer.utterance_id), timeout=30)
            assert "next question" in praised.tutor.lower()
            assessed = await ada.wait_for(is_(p.MasteryUpdate))  # the dashboard sees whose answer, and how
            assert (assessed.sender, assessed.skill, assessed.correct, assessed.first_try, assessed.hints_used) == (
                ben.id, "addition", True, True, 0)
            # Ben leaves mid-lesson (his next question asked) while Ada stays: his record ends, suspended.
            await ben.close()
            async with asyncio.timeout(15):
                while not (bens_sessions := store.export_learner("Ben")["sessions"])[0]["ended_at"]:
                    await asyncio.sleep(0.1)
            assert bens_sessions[0]["outcome"] == "suspended"
            assert store.export_learner("Ada")["sessions"][0]["ended_at"] is None  # her lesson goes on
            await ada.close()
        # The room has closed: each learner's session is stored and ended, each in their own record.
        (bens,) = store.answers("Ben")
        assert bens.question_id == "add-7-5" and bens.facts.verdict == "correct"
        assert bens.facts.first_try and bens.facts.hints_used == 0
        assert "twelve" in bens.facts.response.lower() or "12" in bens.facts.response
        assert store.answers("Ada") == []
        ben_export, ada_export = store.export_learner("Ben"), store.export_learner("Ada")
        (ben_session,) = ben_export["sessions"]
        assert bens.facts.session_id == ben_session["id"] and ben_session["ended_at"]
        ben_words = [t["text"].lower() for t in ben_session["turns"] if t["role"] == "learner"]
        assert len(ben_words) == 2 and ("twelve" in ben_words[1] or "12" in ben_words[1])
        assert bens.facts.turn_key == ben_session["turns"][2]["turn_key"] == answer.utterance_id
        assert "ben" in ben_session["turns"][1]["text"].lower()  # the tutor's welcome, in Ben's record
        (ada_session,) = ada_export["sessions"]
        assert [t["role"] for t in ada_session["turns"]] == ["tutor"]  # her greeting; none of Ben's words
        assert ada_session["outcome"] == "terminated" and ben_session["outcome"] == "suspended"
        # Each is their own xAPI actor: Ben's answer is his pseudonym's, Ada has none.
        ben_statements = [s["statement"] for s in ben_export["xapi"]["statements"]]
        assert [s["verb"]["id"].rsplit("/", 1)[-1] for s in ben_statements] == ["experienced", "answered",
                                                                                  "suspended"]
        assert {s["actor"]["account"]["name"] for s in ben_statements} == {ben_export["xapi"]["pseudonym"]}
        ada_verbs = [s["statement"]["verb"]["id"].rsplit("/", 1)[-1] for s in ada_export["xapi"]["statements"]]
        assert ada_verbs == ["experienced", "terminated"]
    shown = run_cli("learner", "show", "Ben", "--db", db)
    assert shown.returncode == 0, shown.stderr
    assert "add-7-5" in shown.stdout and "correct, first try" in shown.stdout
    shown = run_cli("learner", "show", "Ada", "--db", db)
    assert "add-7-5" not in shown.stdout


async def test_a_late_final_of_an_earlier_turn_leaves_the_floor_with_the_learner_still_speaking(speech_models):
    """An overloaded recognizer publishes a turn's final after the learner's next utterance has begun."""
    async with voice_server(speech_models) as server:
        ada = await Client.join(server, "late", "learner", "Ada")
        await ada.wait_for(is_(p.TutorText, turn_id=0))
        room = server.room("late")
        voice = room.session
        assert isinstance(voice, VoiceRoom) and voice.session is not None
        member = next(m for m in room.members if m.client_id == ada.id)
        voice.floor.claim(member, time.monotonic(), ptt=False)  # Ada talks hands-free
        session = voice.session

        def final(utterance_id: int, text: str) -> ev.FinalTranscript:
            return ev.FinalTranscript(session_id=session.id, utterance_id=utterance_id, text=text, language="en",
                                      audio_duration_s=1.0, last_voiced_at=time.monotonic(), stt_ms=900.0)

        session.bus.publish(ev.SpeechStarted(session_id=session.id, utterance_id=8))
        session.bus.publish(final(7, "I think it is twelve."))  # the turn before, transcribed late
        await ada.wait_for(is_(p.FinalTranscript, utterance_id=7))
        assert voice.floor.holds(member)  # utterance 8 is still being spoken
        session.bus.publish(final(8, "Now it is nine."))
        await ada.wait_for(is_(p.FinalTranscript, utterance_id=8))
        assert voice.floor.holder is None  # that turn is over: the floor is free again
        await ada.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationRequested(ev.Event):
    """A session event for simulations, in the shape the tool-call work proposed."""

    action: str
    simulation: str
    parameters: dict[str, float]


def test_simulation_requests_in_the_shapes_tools_produce() -> None:
    tools_start = {"type": "start_simulation", "session_id": "s", "sim_id": "pendulum", "model": "pendulum",
                   "params": {"length": 1.0, "angle": 0.2}}  # fmt: skip
    assert simulation_commands(tools_start) == [
        p.StartSimulation(sim_id="pendulum", model="pendulum", params={"length": 1.0, "angle": 0.2})
    ]
    tools_set = {"type": "set_sim_param", "session_id": "s", "sim_id": "pendulum", "name": "length", "value": 4.0}
    assert simulation_commands(tools_set, running={"pendulum"}) == [
        p.SetSimParam(sim_id="pendulum", name="length", value=4.0)
    ]
    event = SimulationRequested(action="start_simulation", simulation="pendulum", parameters={"length": 2})
    assert simulation_commands(event) == [
        p.StartSimulation(sim_id="pendulum", model="pendulum", params={"length": 2.0})
    ]
    tool_call = {"name": "set_sim_param", "arguments": '{"sim_id": "p1", "name": "length", "value": 3}'}
    assert simulation_commands(tool_call, running={"p1"}) == [p.SetSimParam(sim_id="p1", name="length", value=3.0)]
    change = {"action": "update_simulation", "simulation": "projectile", "parameters": {"speed": 20, "angle": 0.5}}
    assert simulation_commands(change, running={"projectile"}) == [
        p.SetSimParam(sim_id="projectile", name="speed", value=20.0),
        p.SetSimParam(sim_id="projectile", name="angle", value=0.5),
    ]
    assert simulation_commands(change, running=()) == [  # not running yet: start it with those values
        p.StartSimulation(sim_id="projectile", model="projectile", params={"speed": 20.0, "angle": 0.5})
    ]
    assert simulation_commands({"action": "stop_simulation", "sim_id": "p1"}) == [p.StopSimulation(sim_id="p1")]
    for other in ({"action": "highlight", "target": "bob"}, ev.TutorText(turn_id=1, text="hi"), {"action": "start"}):
        assert simulation_commands(other) == []


def room_noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """Steady background noise at ``dbfs`` RMS: broadband hiss plus mains hum, as a quiet classroom gives."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    noise = rng.standard_normal(len(t)) + 2.0 * np.sin(2 * np.pi * 50 * t) + np.sin(2 * np.pi * 150 * t)
    return (noise / np.sqrt(np.mean(noise**2)) * 10 ** (dbfs / 20)).astype(np.float32)


async def join_with_state(server: BridgeServer, room: str, name: str) -> tuple[ClientConnection, p.RoomState]:
    ws = await connect(server.url)
    await ws.send(p.encode_text(p.Hello(versions=[p.PROTOCOL_VERSION], client="voice-test")))
    assert isinstance(p.parse_text(await ws.recv()), p.Welcome)
    await ws.send(p.encode_text(p.Join(token=server.make_token(room, "learner", name), role="learner", name=name)))
    assert isinstance(p.parse_text(await ws.recv()), p.Joined)
    state = p.parse_text(await ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES)
    assert isinstance(state, p.RoomState)
    return ws, state


@pytest.mark.parametrize("background", ["silence", "noise -40 dBFS", "noise -30 dBFS"])
async def test_a_silent_hands_free_microphone_never_holds_the_floor_and_the_idle_timeout_ends_the_session(
    speech_models, say, background
):
    """A kiosk learner answers once, then leaves the microphone on (hands-free) with nobody speaking."""
    idle_s = 3.0
    factory = voice_session_factory(speech_models, Config(), idle_timeout_s=idle_s)
    async with BridgeServer(SECRET, port=0, session_factory=factory) as server:
        ada = await Client.join(server, "kiosk", "learner", "Ada")
        await ada.wait_for(is_(p.TutorSpeechEnded, turn_id=0), timeout=30)  # the greeting, heard out
        quiet = silence if background == "silence" else (lambda s: room_noise(s, float(background.split()[1])))
        await ada.speak(np.concatenate([quiet(0.5), say("Twelve."), quiet(1.5)]), speed=1.0)
        final = await ada.wait_for(is_(p.FinalTranscript), timeout=10)
        assert final.sender == ada.id  # speech over the same background does claim the floor
        await ada.wait_for(is_(p.TurnCompleted, turn_id=final.utterance_id), timeout=20)

        voice = server.room("kiosk").session
        assert isinstance(voice, VoiceRoom)
        held = []
        streaming = asyncio.create_task(ada.speak(quiet(idle_s + 12.0), speed=1.0))  # the microphone stays on
        try:
            ended = ada.wait_for(lambda m: is_(p.Notice)(m) and m.level == p.SESSION_ENDED, timeout=idle_s + 11.0)
            ending = asyncio.create_task(ended)
            while not ending.done():
                held.append(voice.floor.holder is not None)
                await asyncio.sleep(0.1)
            notice = ending.result()
        finally:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await streaming
        assert "no activity" in notice.message
        assert held and not any(held)  # the microphone sent all along, and never held the floor
        later = [m for m in ada.of(p.LearnerSpeechStarted) if m.utterance_id > final.utterance_id]
        assert not later  # the open microphone never started an utterance

        ben_ws, state = await join_with_state(server, "kiosk", "Ben")  # the next learner sees nothing of Ada
        assert not [c for c in state.captions if c.speaker == "learner" or "ada" in c.text.lower()]
        assert not state.missed
        await ben_ws.close()
        await ada.close()
