"""Lessons do what they promise, and a finished lesson leads somewhere.

* a rule's action is carried out (the offline tutor starts the pendulum in a
  real room when a learner on the pendulum skill says they don't understand),
  and an action no tutor can carry out is refused when the lesson loads;
* a learner who finishes a lesson is offered what comes next, and "can we do
  fractions?" said aloud starts the fractions lesson in the same session.

The spoken tests use the real models on piper speech, a real bridge server on
127.0.0.1 and the real SQLite store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import numpy as np
import pytest

from voice_tutor.audio.sinks import WavFileSink
from voice_tutor.audio.sources import FileSource
from voice_tutor.config import Config, DialogueConfig, LLMConfig
from voice_tutor.dialogue.base import DialogueContext
from voice_tutor.dialogue.lesson_switch import Asks, lesson_request
from voice_tutor.dialogue.lesson_tutor import LessonTutor
from voice_tutor.dialogue.prompts import lesson_system_prompt
from voice_tutor.events import LessonChanged, SimulationRequested
from voice_tutor.learning.catalogue import Catalogue
from voice_tutor.learning.lessons import LessonError, load_lesson
from voice_tutor.store import Store
from voice_tutor.tutoring import Tutoring
from xr_bridge import protocol as p
from xr_bridge.server import BridgeServer
from xr_bridge.simulations import scene_models
from xr_bridge.voice import voice_session_factory

LESSONS = Config().dialogue.lessons_dir
SECRET = b"lessonflow-test-secret-0123456789"

TINY = """
id = "tiny"
title = "Tiny"
subject = "testing"
level = "anyone"
objectives = ["Count"]
greeting = "Hi {name}."
wrap_up = "Bye."

[[questions]]
id = "one"
kind = "number"
prompt = "What is one plus one?"
answers = ["2"]
explanation = "One plus one is two."

[[rules]]
when = "does_not_understand"
say = "Let's look at it another way."
action = "ACTION"
"""


def tiny(tmp_path, action: str):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace("ACTION", action), encoding="utf-8")
    return path


@pytest.mark.parametrize("action, problem", [
    ("start_pendulum", "rules.0.action: unknown action 'start_pendulum': no tutor can carry it out (allowed: "),
    ("start_simulation", "rules.0.action: start_simulation needs a simulation the scene runs"),
    ("recommend_resource", "rules.0.action: recommend_resource needs a resource to recommend"),
])
def test_a_rule_whose_action_cannot_be_carried_out_is_refused_at_load(tmp_path, action, problem):
    with pytest.raises(LessonError) as refused:
        load_lesson(tiny(tmp_path, action))
    assert str(refused.value).startswith(f"{tiny(tmp_path, action)}: ")
    assert problem in str(refused.value)
    assert load_lesson(tiny(tmp_path, "give_hint")).rules[0].action == "give_hint"


SIMULATED = TINY.replace("ACTION", "start_simulation").replace(
    'say = "Let\'s look at it another way."', 'say = "I\'ll start a pendulum for you to watch."') + """
[[resources]]
id = "swing"
kind = "simulation"
title = "A swinging pendulum"
simulation = "pendulum"
parameters = { length = 2.0 }
skills = ["tiny"]

[[resources]]
id = "reading"
kind = "reading"
title = "Pendulums explained"
url = "https://example.org/pendulums"
skills = ["tiny"]

[[rules]]
when = "off_topic"
say = "Here is something for later."
action = "recommend_resource"
"""


async def test_the_offline_tutor_starts_a_simulation_only_where_a_scene_shows_it(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SIMULATED, encoding="utf-8")
    lesson = load_lesson(path)
    for scene in (scene_models(), None):
        published: list = []
        context = DialogueContext("s1", publish=published.append)
        tutor = LessonTutor(lesson, scene=scene)
        [_ async for _ in tutor.opening(context)]
        reply = "".join([piece async for piece in tutor.respond("I don't understand", context)])
        requests = [event for event in published if isinstance(event, SimulationRequested)]
        if scene is not None:  # the promise is kept: the same request the LLM's tool publishes
            assert reply == "I'll start a pendulum for you to watch. Then tell me: What is one plus one?"
            assert [(r.action, r.sim_id, r.simulation, r.parameters) for r in requests] == [
                ("start_simulation", "swing", "pendulum", {"length": 2.0})]
        else:  # nobody would see it: no promise, a resource the learner can open instead
            assert requests == [] and "I'll start" not in reply
            assert reply == 'Have a look at "Pendulums explained" later; it helps with this. What is one plus one?'
    off_topic = "".join([piece async for piece in tutor.respond("I like football", context)])
    assert off_topic == ('Here is something for later. Have a look at "Pendulums explained" later; it helps with '
                         "this. Now, back to our question: What is one plus one?")


def test_the_llm_tutor_is_shown_the_rules_of_the_question_in_hand():
    lesson = load_lesson(LESSONS / "newtons-laws.toml")
    pendulum = next(q for q in lesson.questions if q.skill == "pendulum-period")
    with_scene = lesson_system_prompt(lesson, current=pendulum, tools=("give_hint", "start_simulation"))
    rules = with_scene[with_scene.index("LESSON RULES"):]  # the last part: it changes with the question
    assert "I'll start a one metre pendulum" in rules and "call start_simulation" in rules
    assert "shopping trolley" not in rules  # the pendulum skill's rule wins over the general one
    assert "answer from the lesson content" in rules and "call give_hint" in rules
    without_scene = lesson_system_prompt(lesson, current=pendulum, tools=("give_hint",))
    assert "suggest a simulation resource instead of promising one" in without_scene
    first_law = lesson_system_prompt(lesson, current=lesson.questions[0])
    assert "shopping trolley" in first_law and "I'll start a one metre pendulum" not in first_law


def test_lessons_are_found_by_what_learners_call_them_and_only_switch_when_asked():
    catalogue = Catalogue.load(LESSONS)
    assert catalogue.refused == ()
    arithmetic, fractions = catalogue.get("arithmetic"), catalogue.get("fractions")
    asked = {
        "can we do fractions": "fractions",
        "lets do photosynthesis instead": "photosynthesis",
        "I want to learn Spanish": "spanish-cafe",
        "could we try the pendulum one": "newtons-laws",
        "can we do photo synthesis": "photosynthesis",
    }
    for text, lesson_id in asked.items():
        request = lesson_request(text, catalogue, arithmetic, choosing=False)
        assert request is not None and request.asks is Asks.SWITCH and request.lesson.id == lesson_id, text
    # Answers that mention a lesson's word are answers; naming the lesson in progress is no switch.
    assert lesson_request("three fractions", catalogue, arithmetic, choosing=False) is None
    assert lesson_request("can we do fractions", catalogue, fractions, choosing=False) is None
    # After an offer the name alone chooses, and yes takes what was offered.
    assert lesson_request("fractions", catalogue, arithmetic, choosing=True).lesson.id == "fractions"
    assert lesson_request("yes please", catalogue, arithmetic, choosing=True).asks is Asks.YES
    assert lesson_request("what's next", catalogue, arithmetic, choosing=False).asks is Asks.WHATS_NEXT
    # Prerequisites order what is offered: fractions follows arithmetic, Newton's laws follows fractions.
    assert catalogue.next_after(arithmetic, set())[0].id == "fractions"
    assert catalogue.next_after(fractions, {"arithmetic"})[0].id == "newtons-laws"


def test_lesson_prerequisites_must_name_known_lessons_without_a_cycle():
    base = load_lesson(LESSONS / "arithmetic.toml")
    loop_a = base.model_copy(update={"id": "a", "prerequisites": ["b"]})
    loop_b = base.model_copy(update={"id": "b", "prerequisites": ["a"]})
    lost = base.model_copy(update={"id": "c", "prerequisites": ["nowhere"]})
    catalogue = Catalogue.of([base, loop_a, loop_b, lost])
    assert [lesson.id for lesson in catalogue.lessons] == ["arithmetic"]
    assert any("c: prerequisites.0: unknown lesson 'nowhere'" in problem for problem in catalogue.refused)
    assert any("form a cycle" in problem for problem in catalogue.refused)


async def test_asking_whats_next_mid_lesson_offers_a_choice_and_no_carries_on():
    tutoring = await Tutoring.open(Config())
    context = DialogueContext("s1")

    async def reply(text: str | None = None) -> str:
        pieces = tutoring.tutor.opening(context) if text is None else tutoring.tutor.respond(text, context)
        return "".join([piece async for piece in pieces]).strip()

    opening = await reply()
    assert opening.endswith("What is seven plus five?")
    offer = await reply("what lessons are next")
    assert offer.startswith("Sure. Next we could start Fractions.") and "carry on with Adding" in offer
    assert await reply("no thanks") == "Okay, let's carry on. What is seven plus five?"
    assert (await reply("twelve")).startswith(("That's right!", "Yes, well done!", "Correct, nice work!"))
    await reply("what's next")
    switched = await reply("photosynthesis")  # after an offer, the name alone chooses
    assert switched.startswith("Okay, let's do Photosynthesis.") and tutoring.lesson.id == "photosynthesis"


async def test_an_llm_tutor_switches_lessons_and_is_grounded_in_the_new_one(start_llm):
    llm = start_llm()
    config = Config(llm=LLMConfig(base_url=llm.url, model="tutor-test", timeout_s=5.0),
                    dialogue=DialogueConfig(lesson="arithmetic"))
    tutoring = await Tutoring.open(config)
    published: list = []
    context = DialogueContext("s1", "Sam", publish=published.append)
    said = "".join([piece async for piece in tutoring.tutor.respond("can we do fractions please", context)])
    assert said.startswith("Okay, let's do Fractions.")
    assert [(e.lesson_id, e.language) for e in published if isinstance(e, LessonChanged)] == [("fractions", "en")]
    system = llm.completion_bodies()[-1]["messages"][0]["content"]  # the new lesson's opening request
    assert "Lesson: Fractions" in system and "LESSON RULES" in system and "pizza" in system
    assert all("Can we do fractions" not in message.get("content", "") for message in
               llm.completion_bodies()[-1]["messages"][1:])  # the switch itself is not sent as an answer


# --- spoken -----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_finished_lesson_offers_what_is_next_and_can_we_do_fractions_starts_it(
        speech_models, say, recording, tmp_path):
    answers = ["Twelve.", "Seventeen.", "The sum.", "Nine."]
    parts = [(1.0, say(text)) for text in answers] + [(1.5, say("Okay. Can we do fractions?")),
                                                       (1.5, say("Four."))]
    learner, _ = recording(parts, tail_s=1.5)
    store = Store.open(tmp_path / "tutor.db")
    tutoring = await Tutoring.open(Config(), "Ada", store)
    source = FileSource(learner, realtime=False)
    sink = WavFileSink(tmp_path / "tutor.wav", speech_models.synthesizer.sample_rate, realtime=False)
    session = tutoring.session(speech_models, source, sink)
    events = session.bus.subscribe(maxsize=100_000)
    turns = await asyncio.wait_for(tutoring.run(session), 240)
    said = [turn.tutor for turn in turns]

    finished = next(i for i, text in enumerate(said) if "We've finished Adding and subtracting" in text)
    assert finished == 3, said  # the last answer: wrap-up, then the offer, once
    assert "Next we could start Fractions" in said[finished] and "Which would you like?" in said[finished]
    switched = said[finished + 1]
    assert switched.startswith("Okay, let's do Fractions.") and "Today we're working with fractions" in switched
    assert "what do we call the bottom number" in switched
    assert "denominator" in said[finished + 2].lower() or "not quite" in said[finished + 2].lower()
    assert not any("We have finished this lesson" in text for text in said)

    changed = [event for event in _drain(events) if isinstance(event, LessonChanged)]
    assert [(c.lesson_id, c.language) for c in changed] == [("fractions", "en")]
    assert tutoring.lesson.id == "fractions"  # later sessions and stored turns follow
    sessions = store.export_learner("Ada")["sessions"]
    assert [s["lesson_id"] for s in sessions] == ["arithmetic", "fractions"]
    assert store.get_mastery("Ada", "arithmetic/addition") is not None  # the record carried over
    statements = [json.loads(queued.statement) for queued in store.pending_xapi(limit=200)]
    experienced = [s["object"]["id"] for s in statements if s["verb"]["display"]["en-US"] == "experienced"]
    assert [iri.rsplit("/", 1)[1] for iri in experienced] == ["arithmetic", "fractions"]  # xAPI follows the switch
    store.close()


@pytest.mark.slow
async def test_the_offline_tutor_starts_the_pendulum_its_rule_promises_in_the_room(speech_models, say, tmp_path):
    store = Store.open(tmp_path / "tutor.db")
    store.ensure_learner("Ada")
    for skill in ("first-law", "second-law", "third-law"):  # so the pendulum is what is practised
        store.set_mastery("Ada", f"newtons-laws/{skill}", 0.99)
    config = dataclasses.replace(Config(), dialogue=dataclasses.replace(Config().dialogue, lesson="newtons-laws"))
    async with BridgeServer(SECRET, port=0, session_factory=voice_session_factory(speech_models, config,
                                                                                  store=store)) as server:
        ada = await _Client.join(server, "lab", "Ada")
        greeting = await ada.wait_for(lambda m: isinstance(m, p.TutorSpeechEnded) and m.turn_id == 0, 60)
        assert "pendulum" in greeting.text.lower()
        lesson = await ada.wait_for(lambda m: isinstance(m, p.LessonStarted))
        assert lesson.lesson_id == "newtons-laws" and "fractions" in [entry.id for entry in lesson.available]

        await ada.speak(np.concatenate([say("I don't understand."), np.zeros(24000, dtype=np.float32)]))
        started = await ada.wait_for(lambda m: isinstance(m, p.StartSimulation), 60)
        assert (started.sim_id, started.model, started.params) == ("pendulum", "pendulum",
                                                                   {"length": 1.0, "angle": 0.2})
        running = await ada.wait_for(lambda m: isinstance(m, p.SimState) and m.step > 0)
        assert running.running and running.params["length"] == 1.0
        reply = await ada.wait_for(lambda m: isinstance(m, p.TurnCompleted), 60)
        assert "I'll start a one metre pendulum" in reply.tutor and "Then tell me:" in reply.tutor

        await ada.send(p.ChooseLesson(lesson_id="photosynthesis"))  # the page's lesson picker
        changed = await ada.wait_for(lambda m: isinstance(m, p.LessonStarted) and m.lesson_id == "photosynthesis",
                                     60)
        assert changed.title.startswith("Photosynthesis")
        stopped = await ada.wait_for(lambda m: isinstance(m, p.StopSimulation))  # the pendulum leaves with its lesson
        assert stopped.sim_id == "pendulum" and stopped.seq < changed.seq
        opening = await ada.wait_for(lambda m: isinstance(m, p.TutorText) and "photosynthesis" in m.text.lower(), 60)
        assert opening.text
        await ada.close()
    store.close()


def _drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


class _Client:
    """A learner's page: joins over a real websocket and keeps what it receives."""

    def __init__(self, ws, joined: p.Joined):
        self.ws, self.joined, self.received = ws, joined, []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, server: BridgeServer, room: str, name: str) -> _Client:
        from websockets.asyncio.client import connect

        ws = await connect(server.url)
        await ws.send(p.encode_text(p.Hello(versions=[p.PROTOCOL_VERSION], client="lessonflow-test")))
        p.parse_text(await ws.recv())
        await ws.send(p.encode_text(p.Join(token=server.make_token(room, "learner", name), role="learner", name=name)))
        joined = p.parse_text(await ws.recv())
        p.parse_text(await ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES)
        return cls(ws, joined)

    async def _read(self) -> None:
        async for frame in self.ws:
            item = p.parse(frame, max_bytes=p.MAX_SERVER_TEXT_BYTES)
            async with self._changed:
                self.received.append(item)
                self._changed.notify_all()

    async def wait_for(self, found, timeout: float = 20.0):
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for item in self.received:
                    if found(item):
                        return item
                await self._changed.wait()

    async def send(self, message: p.Message) -> None:
        await self.ws.send(p.encode_text(message))

    async def speak(self, samples: np.ndarray) -> None:
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
        for seq, start in enumerate(range(0, len(pcm), 320)):
            await self.ws.send(p.encode(p.AudioChunk(p.AudioKind.LEARNER, 16000, seq, pcm[start:start + 320].tobytes())))
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
