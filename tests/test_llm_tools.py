"""The grounded LLM tutor and its tools, against a real server process (tests/llm_server.py) on loopback.

Nothing mocks the openai client: requests go over real HTTP, the server's
JSON-lines log shows what was sent, and a learner memory over a real SQLite
file shows what the tools did.  The server calls the tool a learner turn names
("tool record_assessment {...}") with the JSON written in it, and answers the
follow-up that carries the tool's result with "Tool said: <result>".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from conftest import RunningLLMServer

from voice_tutor.config import ASSETS_DIR, Config, LLMConfig
from voice_tutor.dialogue.base import DialogueContext, DialogueUnavailable, FallbackTutor
from voice_tutor.dialogue.lesson_tutor import LessonTutor
from voice_tutor.dialogue.llm import ToolCall
from voice_tutor.dialogue.prompts import DEFAULT_MAX_CHARS, lesson_system_prompt
from voice_tutor.dialogue.tools import (
    GroundedChatTutor,
    LessonTools,
    ToolArgumentError,
    build_llm_tutor,
    spoken_results,
    validate_arguments,
)
from voice_tutor.events import AnswerExpected, MasteryUpdated, SimulationRequested
from voice_tutor.learning import review
from voice_tutor.learning.lessons import Lesson, load_lesson
from voice_tutor.learning.mastery import DEFAULT_PARAMS, update
from voice_tutor.learning.memory import LearnerMemory
from voice_tutor.store import Preferences, Store
from xr_bridge.simulations import scene_models

MODEL = "tutor-test"
NOW = datetime(2025, 3, 3, 16, 0, tzinfo=UTC)


def lesson(name: str) -> Lesson:
    return load_lesson(ASSETS_DIR / "lessons" / f"{name}.toml")


def tutor_config(server: RunningLLMServer) -> Config:
    return Config(llm=LLMConfig(base_url=server.url, model=MODEL, timeout_s=5.0))


FAST_TOKENS = ("--token-delay-ms", "1")


@pytest.fixture
def server(start_llm) -> RunningLLMServer:
    return start_llm(*FAST_TOKENS)


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "tutor.db") as opened:
        yield opened


@dataclass
class Setup:
    tutor: GroundedChatTutor
    offline: LessonTutor
    memory: LearnerMemory
    context: DialogueContext
    events: list
    commands: list


@pytest_asyncio.fixture(loop_scope="function")  # the tests' loop: their HTTP clients close on it
async def make_tutor(store):
    tutors: list[GroundedChatTutor] = []

    async def make(server: RunningLLMServer, lesson_id: str = "arithmetic", *, simulations: bool = False,
                   **options) -> Setup:
        the_lesson = lesson(lesson_id)
        memory = await LearnerMemory.open(the_lesson, "Ada", store, clock=lambda: NOW)
        offline = LessonTutor(the_lesson, memory)
        events, commands = [], []
        if options:
            tutor = GroundedChatTutor(tutor_config(server).llm, the_lesson, memory, offline,
                                      scene=scene_models() if simulations else None, **options)
        else:
            tutor = build_llm_tutor(tutor_config(server), the_lesson, memory, offline,
                                    scene=scene_models() if simulations else None)
        tutors.append(tutor)

        def publish(event) -> None:  # the scene's requests apart from what the tutors decided
            if isinstance(event, AnswerExpected):  # the offline tutor's recognition biasing is not a decision
                return
            (commands if isinstance(event, SimulationRequested) else events).append(event)

        context = DialogueContext("s1", learner_name="Ada", publish=publish)
        return Setup(tutor, offline, memory, context, events, commands)

    yield make
    for tutor in tutors:
        await tutor.aclose()


async def said(stream) -> str:
    return "".join([piece async for piece in stream])


def tool_turn(tool: str, /, words: str = "", **arguments) -> str:
    """A learner turn that makes the test server call ``tool``; ``words`` are the learner's answer in it."""
    return f"tool {tool} {json.dumps(arguments)} {words}".strip()


def tool_result(server: RunningLLMServer) -> dict:
    """The result of the last tool call, as the follow-up request carried it to the model.

    (The model's reply echoes it, but JSON is never spoken: the speech filter drops it.)
    """
    last = server.completion_bodies()[-1]["messages"][-1]
    assert last["role"] == "tool", last
    return json.loads(last["content"])


async def said_result(server: RunningLLMServer, stream) -> dict:
    await said(stream)
    return tool_result(server)


# --- grounding ---------------------------------------------------------------------------------


async def test_request_carries_lesson_grounding_learner_state_and_tools(server, store, make_tutor):
    store.ensure_learner("Ada", level="year 3", goals=["know the number bonds to twenty"],
                         preferences=Preferences(pace="slow", voice_speed=0.8))
    store.set_mastery("Ada", "arithmetic/addition", 0.42)
    store.set_mastery("Ada", "arithmetic/subtraction", 0.97)
    card = review.review(review.new_card(NOW - timedelta(days=9)), review.rating_for(True), NOW - timedelta(days=9))
    store.set_review("Ada", "arithmetic/subtraction", review.card_to_json(card), card.due)
    setup = await make_tutor(server)

    opening = await said(setup.tutor.opening(setup.context))

    [body] = server.completion_bodies()
    system = body["messages"][0]
    assert system["role"] == "system"
    prompt = system["content"]
    assert len(prompt) <= DEFAULT_MAX_CHARS
    # The lesson: objectives, skills with prerequisites, questions with answers, hints, misconceptions, explanations.
    for text in [
        "Adding and subtracting within twenty",
        "Add two numbers whose sum is at most twenty by making ten",
        "- subtraction: Subtracting within twenty; Subtract within twenty",
        "prerequisites: addition",
        "What is seven plus five? (accepted: 12",
        "Seven needs three more to make ten.",
        "It looks like you started counting on at seven itself.",
        "Seven plus five is twelve: seven and three make ten",
        "word-sum [addition]: What do we call the answer when we add numbers together? (accepted: sum, the sum",
    ]:
        assert text in prompt, text
    # The learner: profile, mastery per skill, gaps, due reviews.
    for text in [
        "Name: Ada. Level: year 3.",
        "Goals: know the number bonds to twenty.",
        "Preferences: pace slow",
        "voice speed 0.8",
        "A returning learner.",
        "- addition (Adding within twenty): p_known 0.42, not mastered",
        "- subtraction (Subtracting within twenty): p_known 0.97, mastered",
        "Knowledge gaps (tried, not mastered, weakest first): Adding within twenty (0.42).",
        "Due for review now: Subtracting within twenty.",
    ]:
        assert text in prompt, text
    # The question the planner chose (the due review) is the current one, in full.
    # (After the lesson content, which never changes in a lesson: a prefix servers can cache.)
    assert prompt.index("LESSON CONTENT") < prompt.index("LEARNER") < prompt.index("CURRENT QUESTION (")
    current = prompt[prompt.index("CURRENT QUESTION ("):]
    assert "id sub-15-6; skill subtraction (a review: the skill is due)." in current
    assert "Prompt: What is fifteen minus six?" in current and "Accepted answers (number): 9." in current
    assert "1) Take away five first to get to ten." in current
    assert "call record_assessment" in prompt
    # The tools: the lesson's questions are the only ids the model may use; arithmetic has no resources.
    tools = {tool["function"]["name"]: tool["function"] for tool in body["tools"]}
    assert set(tools) == {"record_assessment", "give_hint"}
    assert tools["record_assessment"]["parameters"]["properties"]["question_id"]["enum"] == [
        "add-7-5", "sub-15-6", "add-8-9", "word-sum"]
    assert tools["record_assessment"]["parameters"]["required"] == ["question_id", "correct"]
    # The opening was heard, so the planned question is now the offline tutor's too.
    assert opening.startswith("Tutor heard:") and "Ada" in body["messages"][-1]["content"]
    assert setup.offline.current.id == "sub-15-6"


def test_prompt_stays_bounded_and_keeps_the_learner_and_current_question():
    memory_lessons = [lesson(p.stem) for p in sorted((ASSETS_DIR / "lessons").glob("*.toml"))]
    for each in memory_lessons:
        memory = LearnerMemory(each, None, None)
        full = lesson_system_prompt(each, memory, current=each.questions[-1])
        assert len(full) <= DEFAULT_MAX_CHARS and "explanation: " in full  # shipped lessons fit in full
        small = lesson_system_prompt(each, memory, current=each.questions[-1], max_chars=3000)
        assert len(small) <= 3000
        assert f"Prompt: {each.questions[-1].prompt}" in small and "Mastery (" in small

    # A lesson far too big for the budget is shown in less detail, then cut, with a count.
    base = lesson("arithmetic").model_dump()
    many = [dict(base["questions"][n % 2], id=f"q{n}", explanation="A long worked explanation. " * 20)
            for n in range(300)]
    huge = Lesson.model_validate({**base, "questions": many})
    prompt = lesson_system_prompt(huge, LearnerMemory(huge, None, None), current=huge.questions[5])
    assert len(prompt) <= DEFAULT_MAX_CHARS
    assert "Prompt: What is fifteen minus six?" in prompt and "id q5;" in prompt
    assert "more lines of the lesson left out" in prompt
    with pytest.raises(ValueError, match="max_chars"):
        lesson_system_prompt(huge, max_chars=100)


# --- tools taking effect -------------------------------------------------------------------------


async def test_streamed_record_assessment_takes_effect(server, store, make_tutor, tmp_path):
    setup = await make_tutor(server)
    await said(setup.tutor.opening(setup.context))
    assert setup.offline.current.id == "add-7-5"

    reply = await said(setup.tutor.respond(
        tool_turn("record_assessment", question_id="add-7-5", correct=True, hints_used=0, words="twelve"), setup.context))

    expected = update(DEFAULT_PARAMS.prior, True, DEFAULT_PARAMS)
    # The learner model, the offline tutor, and the session's bus.
    assert setup.memory.state.mastery == {"addition": pytest.approx(expected)}
    assert setup.memory.state.solved == {"add-7-5"}
    assert setup.offline.current.id == "add-8-9" and setup.offline.correct_count == 1
    assert setup.events == [MasteryUpdated(
        session_id="s1", t=setup.events[0].t, learner="Ada", skill_id="addition",
        skill_name="Adding within twenty", correct=True, p_known=round(expected, 4), mastered=False,
        question_id="add-7-5", verdict="correct", response=None, first_try=True, hints_used=0,
        p_before=DEFAULT_PARAMS.prior,
    )]
    # The store on disk, read back through a second connection.
    with Store.open(tmp_path / "tutor.db") as reopened:
        assert reopened.assessment_sequences("arithmetic/addition") == {"Ada": [True]}
        assert reopened.get_mastery("Ada", "arithmetic/addition") == pytest.approx(expected)

    # One follow-up carried the result; the learner heard the model speak about it.
    opening, turn, follow_up = server.completion_bodies()
    assert [t["function"]["name"] for t in turn["tools"]] == ["record_assessment", "give_hint"]
    assistant, tool = follow_up["messages"][-2:]
    assert assistant["role"] == "assistant" and assistant["content"] == ""  # null is rejected by some servers
    [call] = assistant["tool_calls"]
    assert call["id"] == "call_0" and call["function"]["name"] == "record_assessment"
    assert json.loads(call["function"]["arguments"]) == {"question_id": "add-7-5", "correct": True, "hints_used": 0}
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_0"
    result = json.loads(tool["content"])
    assert result["ok"] is True and result["recorded"]["right_first_time"] is True
    assert result["mastery"] == {"skill_id": "addition", "skill": "Adding within twenty", "p_known_before": 0.2,
                                 "p_known": round(expected, 3), "mastered": False, "newly_mastered": False}
    assert result["next_question"] == {"id": "add-8-9", "skill_id": "addition",
                                       "prompt": "What is eight plus nine?", "reason": "practice"}
    # The follow-up's grounding is rebuilt: new mastery, new current question.
    prompt = follow_up["messages"][0]["content"]
    assert f"- addition (Adding within twenty): p_known {expected:.2f}, not mastered" in prompt
    assert "id add-8-9; skill addition." in prompt
    assert "Questions already resolved this session: add-7-5." in prompt


async def test_hints_are_graduated_shared_with_the_offline_tutor_and_counted(server, make_tutor):
    setup = await make_tutor(server)
    await said(setup.tutor.opening(setup.context))

    first = await said_result(server, setup.tutor.respond(tool_turn("give_hint", question_id="add-7-5"), setup.context))
    assert first == {"ok": True, "question_id": "add-7-5", "hint": "Seven needs three more to make ten.",
                     "hint_number": 1, "hints_left": 1}
    # The offline tutor holds the same attempt: asked for a hint now, it gives the second one.
    offline_reply = await said(setup.offline.respond("can I have a hint", setup.context))
    assert offline_reply.startswith("Here's a hint: Seven plus three is ten")
    none_left = await said_result(server, setup.tutor.respond(tool_turn("give_hint", question_id="add-7-5"),
                                                           setup.context))
    assert none_left["hint"] is None and none_left["hints_left"] == 0
    assert none_left["explanation"].startswith("Seven plus five is twelve")

    # Right in the end, but after two hints: BKT counts it as not right first time.
    recorded = await said_result(server, setup.tutor.respond(
        tool_turn("record_assessment", question_id="add-7-5", correct=True, words="it is twelve"), setup.context))
    assert recorded["recorded"] == {"question_id": "add-7-5", "answered_correctly": True, "right_first_time": False,
                                    "hints_used": 2, "attempts": 1}
    [event] = setup.events
    assert event.correct is False
    assert event.p_known == round(update(DEFAULT_PARAMS.prior, False, DEFAULT_PARAMS), 4)


async def test_recommend_resource_and_simulations_are_published_as_scene_requests(server, make_tutor):
    setup = await make_tutor(server, "newtons-laws", simulations=True)
    names = [tool["function"]["name"] for tool in setup.tutor.tools]
    assert names == ["record_assessment", "give_hint", "recommend_resource", "start_simulation",
                     "set_simulation_parameter"]

    first = await said_result(server, setup.tutor.respond(
        tool_turn("recommend_resource", skill_id="pendulum-period"), setup.context))
    assert first["resource"] == {"id": "pendulum", "kind": "simulation",
                                 "title": "A one metre pendulum in the scene: change its length and time the swings",
                                 "simulation": "pendulum", "parameters": {"length": 1.0, "angle": 0.2}}
    assert "start_simulation" in first["note"]
    second = await said_result(server, setup.tutor.respond(
        tool_turn("recommend_resource", skill_id="pendulum-period"), setup.context))
    assert second["resource"]["id"] == "phet-pendulum-lab"  # a fresh one each time

    started = await said_result(server, setup.tutor.respond(
        tool_turn("start_simulation", simulation="pendulum", parameters={"length": 4}), setup.context))
    assert started == {"ok": True, "started": {"simulation": "pendulum", "model": "pendulum",
                                               "parameters": {"length": 4.0, "angle": 0.2}}}
    changed = await said_result(server, setup.tutor.respond(
        tool_turn("set_simulation_parameter", simulation="pendulum", name="length", value=1), setup.context))
    assert changed["ok"] is True and changed["parameters"] == {"length": 1.0, "angle": 0.2}
    assert [(c.session_id, c.action, c.sim_id, c.simulation, c.parameters) for c in setup.commands] == [
        ("s1", "start_simulation", "pendulum", "pendulum", {"length": 4.0, "angle": 0.2}),
        ("s1", "set_sim_param", "pendulum", "pendulum", {"length": 1.0}),
    ]
    assert setup.events == []  # nothing was assessed


async def test_simulation_tools_need_a_consumer_and_a_scene_simulation(server, make_tutor):
    without_consumer = await make_tutor(server, "newtons-laws")
    assert "start_simulation" not in without_consumer.tutor.toolbox.names
    no_scene = await make_tutor(server, "photosynthesis", simulations=True)
    assert no_scene.tutor.toolbox.names == ("record_assessment", "give_hint", "recommend_resource")


# --- bad calls ---------------------------------------------------------------------------------


BAD_ASSESSMENTS = [
    ({"question_id": "add-99-1", "correct": True}, 'question_id "add-99-1" is not one of: add-7-5, sub-15-6'),
    ({"question_id": "add-7-5", "correct": "yes"}, 'correct must be true or false, not "yes"'),
    ({"question_id": "add-7-5", "correct": True, "hints_used": -1}, "hints_used must be at least 0"),
    ({"question_id": "add-7-5", "correct": True, "hints_used": 1.5}, "hints_used must be a whole number"),
    ({"correct": True}, "record_assessment needs question_id"),
    ({"question_id": "add-7-5", "correct": True, "score": 10}, "record_assessment has no argument 'score'"),
    ({"question_id": "add-8-9", "correct": True},
     "question 'add-8-9' is not the one being asked; the current question is 'add-7-5'"),
]


async def test_invalid_tool_arguments_are_rejected_and_change_nothing(server, store, make_tutor):
    setup = await make_tutor(server, "newtons-laws", simulations=True)
    await said(setup.tutor.opening(setup.context))
    current = setup.offline.current
    setup_arithmetic = await make_tutor(server)
    await said(setup_arithmetic.tutor.opening(setup_arithmetic.context))

    for arguments, message in BAD_ASSESSMENTS:
        reply = await said(setup_arithmetic.tutor.respond(
            f"tool record_assessment {json.dumps(arguments)}", setup_arithmetic.context))
        result = tool_result(server)
        assert result["ok"] is False and message in result["error"], (arguments, result)

    bad_scene_calls = [
        (tool_turn("start_simulation", simulation="rocket"), 'simulation "rocket" is not one of: pendulum'),
        (tool_turn("start_simulation", simulation="pendulum", parameters={"length": "long"}),
         'parameters.length must be a number, not "long"'),
        (tool_turn("start_simulation", simulation="pendulum", parameters={"length": 1000}),
         "parameter 'length' must be within [0.01, 100], not 1000"),
        (tool_turn("start_simulation", simulation="pendulum", parameters={"colour": 3}),
         "simulation 'pendulum' has no parameter 'colour'"),
        (tool_turn("set_simulation_parameter", simulation="pendulum", name="length", value=2),
         "simulation 'pendulum' is not running; call start_simulation first"),
        (tool_turn("give_hint", question_id="heavier-bob"), "is not the one being asked"),
        (tool_turn("recommend_resource", skill_id="gravity"), 'skill_id "gravity" is not one of'),
    ]
    for turn, message in bad_scene_calls:
        result = await said_result(server, setup.tutor.respond(turn, setup.context))
        assert result["ok"] is False and message in result["error"], (turn, result)

    # Nothing changed: no assessment anywhere, the same questions, no events, no scene commands.
    for each in (setup, setup_arithmetic):
        assert each.memory.state.mastery == {} and each.memory.state.solved == frozenset()
        assert each.events == []
    assert setup.offline.current is current and setup_arithmetic.offline.current.id == "add-7-5"
    assert setup.commands == []
    assert store.assessment_sequences("arithmetic/addition") == {}
    assert store.assessment_sequences("newtons-laws/first-law") == {}


async def test_unknown_tools_and_bad_arguments_directly():
    the_lesson = lesson("arithmetic")
    memory = LearnerMemory(the_lesson, None, None)
    tools = LessonTools(the_lesson, memory, LessonTutor(the_lesson, memory))
    context = DialogueContext("s1")
    result = await tools.execute(ToolCall("c1", "launch_rocket", {}), context)
    assert result == {"ok": False, "error": "unknown tool 'launch_rocket'; the tools are record_assessment, give_hint"}

    schema = tools.schemas()[0]
    assert validate_arguments(schema, {"question_id": " add-7-5 ", "correct": False, "hints_used": 2.0}) == {
        "question_id": "add-7-5", "correct": False, "hints_used": 2}
    for arguments in ({"question_id": "add-7-5", "correct": 1}, {"question_id": "add-7-5", "correct": True,
                                                                  "attempts": True}):
        with pytest.raises(ToolArgumentError):
            validate_arguments(schema, arguments)
    with pytest.raises(ValueError, match="same lesson"):
        LessonTools(the_lesson, memory, LessonTutor(the_lesson))


# --- turns and failures --------------------------------------------------------------------------


async def test_tool_rounds_per_turn_are_bounded(start_llm, make_tutor):
    server = start_llm(*FAST_TOKENS, "--repeat-tool-calls")
    setup = await make_tutor(server, max_tool_rounds=2)
    await said(setup.tutor.opening(setup.context))

    reply = await said(setup.tutor.respond(tool_turn("give_hint", question_id="add-7-5"), setup.context))

    assert len(server.completion_bodies()) == 1 + 3  # the opening; the turn, two follow-ups; the third reply's call ignored
    assert setup.offline._attempt.hints == 2  # two rounds ran the tool
    # Never silence: the model said nothing, so the learner hears the hints its tools took (counted as given).
    assert reply == ("Here's a hint: Seven needs three more to make ten. "
                     "Here's a hint: Seven plus three is ten, and you still have two left to add.")


async def test_fallback_carries_on_with_the_question_the_llm_asked(server, make_tutor):
    setup = await make_tutor(server)
    fallbacks: list[Exception] = []
    tutor = FallbackTutor(setup.tutor, setup.offline, on_fallback=fallbacks.append)
    await said(tutor.opening(setup.context))
    await said(tutor.respond(tool_turn("record_assessment", question_id="add-7-5", correct=True, words="twelve"), setup.context))
    assert setup.offline.current.id == "add-8-9"

    server.process.terminate()
    server.process.wait(5)
    reply = await said(tutor.respond("seventeen", setup.context))

    [error] = fallbacks
    assert isinstance(error, DialogueUnavailable) and "unreachable" in str(error)
    # The offline tutor checked "seventeen" against the question the LLM had moved on to, and went on.
    assert "Next question. What do we call the answer when we add numbers together?" in reply
    assert setup.memory.state.solved == {"add-7-5", "add-8-9"}
    assert [event.correct for event in setup.events] == [True, True]


def test_spoken_results_say_what_the_tools_did():
    the_lesson = lesson("arithmetic")
    assessed = {"ok": True, "recorded": {"question_id": "add-7-5", "answered_correctly": False},
                "next_question": {"id": "add-8-9", "prompt": "What is eight plus nine?"}}
    text = spoken_results([(ToolCall("c", "record_assessment", {}), assessed),
                           (ToolCall("d", "give_hint", {}), {"ok": False, "error": "x"})], the_lesson)
    assert text == ("Seven plus five is twelve: seven and three make ten, and two more make twelve. "
                    "Next question. What is eight plus nine?")
