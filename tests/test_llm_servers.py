"""The LLM tutor against the behaviours of the servers people run (llama.cpp, llama-cpp-python, vLLM, Ollama).

Each behaviour is a flag of the loopback test server (tests/llm_server.py):
tool calls fragmented as each server fragments them, several calls in one
reply, null content rejected, a context window that overflows loudly or
silently, a window published where each server publishes it, a slow first
token, and a server that stops answering (the real process, stopped with
SIGSTOP).  Nothing mocks the openai client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass

import pytest
import pytest_asyncio
from conftest import RunningLLMServer

from voice_tutor.config import ASSETS_DIR, LLMConfig
from voice_tutor.dialogue.base import (
    CircuitBreaker,
    DialogueContext,
    DialogueUnavailable,
    Exchange,
    FallbackTutor,
    HoldingPhrase,
)
from voice_tutor.dialogue.lesson_tutor import LessonTutor
from voice_tutor.dialogue.llm import discover_context_tokens
from voice_tutor.dialogue.tools import GroundedChatTutor
from voice_tutor.events import MasteryUpdated
from voice_tutor.learning.lessons import load_lesson
from voice_tutor.learning.memory import LearnerMemory
from voice_tutor.store import Store

MODEL = "tutor-test"
FAST_TOKENS = ("--token-delay-ms", "1")


@dataclass
class Lesson:
    tutor: GroundedChatTutor
    fallback: FallbackTutor
    offline: LessonTutor
    memory: LearnerMemory
    context: DialogueContext
    events: list
    fallbacks: list[DialogueUnavailable]

    async def turn(self, words: str | None) -> str:
        """One turn through the fallback tutor (None: the opening), recorded in the history as heard."""
        stream = self.fallback.opening(self.context) if words is None else self.fallback.respond(words, self.context)
        reply = "".join([piece async for piece in stream]).strip()
        self.context.record(Exchange(learner=words or "", tutor=reply, heard=reply, cut=False))
        return reply


@pytest_asyncio.fixture(loop_scope="function")
async def lesson_on(tmp_path):
    """``await lesson_on(server, **llm_options)``: the arithmetic lesson taught by the grounded tutor, falling back."""
    opened: list[tuple[GroundedChatTutor, CircuitBreaker]] = []
    store = Store.open(tmp_path / "tutor.db")

    async def make(server: RunningLLMServer, *, context_tokens: int | None = None, **options) -> Lesson:
        the_lesson = load_lesson(ASSETS_DIR / "lessons" / "arithmetic.toml")
        memory = await LearnerMemory.open(the_lesson, "Ada", store)
        offline = LessonTutor(the_lesson, memory)
        config = LLMConfig(base_url=server.url, model=MODEL, **{"timeout_s": 5.0, **options})
        tutor = GroundedChatTutor(config, the_lesson, memory, offline, context_tokens=context_tokens)
        breaker = CircuitBreaker(tutor.probe, failures_to_open=config.breaker_failures,
                                 cooldown_s=config.breaker_cooldown_s)
        fallbacks: list[DialogueUnavailable] = []
        fallback = FallbackTutor(tutor, offline, on_fallback=fallbacks.append, breaker=breaker)
        opened.append((tutor, breaker))
        events: list = []
        context = DialogueContext("s1", learner_name="Ada", publish=events.append)
        return Lesson(tutor, fallback, offline, memory, context, events, fallbacks)

    yield make
    for tutor, breaker in opened:
        await breaker.aclose()
        await tutor.aclose()
    store.close()


def tool_turn(tool: str, words: str = "", **arguments) -> str:
    return f"tool {tool} {json.dumps(arguments)} {words}".strip()


# --- streamed tool calls, as each server sends them ------------------------------------------------


@pytest.mark.parametrize("style", ["openai", "repeat-names", "whole", "no-index"])
async def test_record_assessment_works_however_the_server_fragments_it(start_llm, lesson_on, style):
    server = start_llm(*FAST_TOKENS, "--tool-style", style, "--reject-null-content", "--tool-reply", "Well done. {tool}")
    lesson = await lesson_on(server)
    await lesson.turn(None)

    reply = await lesson.turn(tool_turn("record_assessment", "it is twelve", question_id="add-7-5", correct=True))

    assert lesson.fallbacks == []
    assert [type(e) for e in lesson.events] == [MasteryUpdated] and lesson.events[0].correct is True
    assert lesson.offline.current.id == "add-8-9"
    follow_up = server.completion_bodies()[-1]["messages"]
    assistant, result = follow_up[-2:]
    [call] = assistant["tool_calls"]
    assert call["function"]["name"] == "record_assessment"  # not "record_assessmentrecord_assessment…"
    assert assistant["content"] == ""  # null would be HTTP 500 here
    assert result["tool_call_id"] == call["id"] and json.loads(result["content"])["ok"] is True
    assert reply == "Well done."  # the model's follow-up was spoken; the tool result it echoed was not


@pytest.mark.parametrize("style", ["openai", "repeat-names", "whole"])
async def test_several_tool_calls_in_one_reply_all_run(start_llm, lesson_on, style):
    server = start_llm(*FAST_TOKENS, "--tool-style", style)
    lesson = await lesson_on(server)
    await lesson.turn(None)

    await lesson.turn('tool give_hint then record_assessment [{"question_id": "add-7-5"}, '
                      '{"question_id": "add-7-5", "correct": true}] twelve')

    assistant = server.completion_bodies()[-1]["messages"][-3]
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["give_hint", "record_assessment"]
    results = [m for m in server.completion_bodies()[-1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == [c["id"] for c in assistant["tool_calls"]]
    assert len({c["id"] for c in assistant["tool_calls"]}) == 2  # ids made up where the server sent none
    assert all(json.loads(m["content"])["ok"] for m in results)
    assert lesson.memory.state.solved == {"add-7-5"} and lesson.fallbacks == []


# --- the verdict -------------------------------------------------------------------------------------


async def test_the_lessons_checker_decides_not_the_model(start_llm, lesson_on, caplog):
    server = start_llm(*FAST_TOKENS)
    lesson = await lesson_on(server)
    await lesson.turn(None)

    with caplog.at_level(logging.INFO, logger="voice_tutor.dialogue.tools"):
        await lesson.turn(tool_turn("record_assessment", "I think it is eleven", question_id="add-7-5", correct=True))

    [event] = lesson.events
    assert event.correct is False  # eleven is not seven plus five, whatever the model said
    result = json.loads(server.completion_bodies()[-1]["messages"][-1]["content"])
    assert result["recorded"]["answered_correctly"] is False and "checker" in result["note"]
    [line] = [r.getMessage() for r in caplog.records if "checker" in r.getMessage()]
    assert "add-7-5" in line and "eleven" not in line  # ids only, never the learner's words


# --- the context window -----------------------------------------------------------------------------


async def test_a_long_lesson_fits_a_small_window_it_learns_from_the_server(start_llm, lesson_on):
    server = start_llm(*FAST_TOKENS, "--context-tokens", "2048", "--overflow", "error")
    lesson = await lesson_on(server)  # nothing configured, nothing advertised: the first request overflows

    await lesson.turn(None)
    for turn in range(12):
        await lesson.turn(f"I am not sure, maybe it is {turn}, can you tell me more about this question please")

    overflows = server.records("overflow")
    assert len(overflows) == 1  # once, then the window named in the error is used
    assert lesson.tutor.context_tokens == 2048
    assert lesson.fallbacks == []
    assert len(server.completion_bodies()) == 1 + 1 + 12


async def test_a_configured_window_never_overflows_and_old_turns_are_dropped(start_llm, lesson_on):
    server = start_llm(*FAST_TOKENS, "--context-tokens", "2048", "--overflow", "empty")
    lesson = await lesson_on(server, context_tokens=2048)

    await lesson.turn(None)
    for turn in range(12):
        await lesson.turn(f"I am not sure, maybe it is {turn}, can you tell me more about this question please")

    assert server.records("overflow") == [] and lesson.fallbacks == []
    last = server.completion_bodies()[-1]
    assert last["max_tokens"] == 200
    learner_turns = [m for m in last["messages"] if m["role"] == "user"]
    assert 1 < len(learner_turns) < 13  # the newest exchanges, not all of them
    assert learner_turns[-1]["content"].endswith("this question please")


async def test_an_empty_stream_falls_back_and_is_reported(start_llm, lesson_on):
    """llama-cpp-python answers an overflowing request with HTTP 200 and no words: never a silent repeat."""
    server = start_llm(*FAST_TOKENS, "--context-tokens", "1100", "--overflow", "empty")
    lesson = await lesson_on(server, context_tokens=4096)  # wrongly configured

    reply = await lesson.turn(None)

    [error] = lesson.fallbacks
    assert error.kind == "empty_reply" and "empty reply" in str(error)
    assert "What is seven plus five?" in reply  # the offline tutor's opening
    assert server.records("overflow")


async def test_silent_overflows_of_an_assumed_window_shrink_it_until_requests_fit(start_llm, lesson_on):
    server = start_llm(*FAST_TOKENS, "--context-tokens", "2048", "--overflow", "empty")
    lesson = await lesson_on(server)  # llama-cpp-python publishes no window and none is configured

    await lesson.turn(None)
    for turn in range(6):
        await lesson.turn(f"maybe it is {turn}")

    overflows = len(server.records("overflow"))
    assert 1 <= overflows <= 3 and [e.kind for e in lesson.fallbacks] == ["empty_reply"] * overflows
    assert lesson.tutor.context_tokens < 4096
    assert "context window" in str(lesson.fallbacks[0])
    # Every later request fitted: the last turns were the LLM's.
    assert len(server.completion_bodies()) == 7 and len(lesson.fallbacks) < 7


@pytest.mark.parametrize("advertise", ["vllm", "llamacpp", "ollama"])
async def test_the_window_is_read_where_each_server_publishes_it(start_llm, advertise):
    server = start_llm("--context-tokens", "3072", "--advertise", advertise)
    assert await discover_context_tokens(LLMConfig(base_url=server.url, model=MODEL)) == 3072


async def test_a_server_that_publishes_no_window_says_none(start_llm):
    server = start_llm()
    assert await discover_context_tokens(LLMConfig(base_url=server.url, model=MODEL)) is None


# --- deadlines and the circuit breaker --------------------------------------------------------------


async def test_a_slow_first_token_gets_a_holding_phrase_then_the_reply(start_llm, lesson_on):
    server = start_llm(*FAST_TOKENS, "--first-token-delay-ms", "700")
    lesson = await lesson_on(server, first_token_timeout_s=0.3, holding_grace_s=5.0)

    pieces = [piece async for piece in lesson.fallback.respond("twelve", lesson.context)]

    assert isinstance(pieces[0], HoldingPhrase) and pieces[0] == "Let me think. "
    assert "".join(pieces[1:]).startswith("Tutor heard: twelve.")
    assert lesson.fallbacks == []


async def test_a_first_token_past_the_grace_falls_back_after_the_holding_phrase(start_llm, lesson_on):
    server = start_llm(*FAST_TOKENS, "--first-token-delay-ms", "3000")
    lesson = await lesson_on(server, first_token_timeout_s=0.2, holding_grace_s=0.3)

    pieces = [piece async for piece in lesson.fallback.opening(lesson.context)]

    assert pieces[0] == "Let me think. "
    assert "What is seven plus five?" in "".join(pieces[1:])  # the offline tutor answered the turn
    [error] = lesson.fallbacks
    assert error.kind == "timeout" and "answered but said nothing within 0.5 s" in str(error)


async def test_a_frozen_server_costs_the_deadline_then_is_left_alone_until_a_probe_finds_it_back(
        start_llm, lesson_on):
    """A stopped process (SIGSTOP) accepts connections and never answers, as a hung server does."""
    server = start_llm(*FAST_TOKENS)
    lesson = await lesson_on(server, first_token_timeout_s=0.3, breaker_failures=2, breaker_cooldown_s=0.5)
    await lesson.turn(None)
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        for _ in range(4):
            assert await lesson.turn("I do not know")  # the offline tutor answered each turn
        assert [e.kind for e in lesson.fallbacks] == ["timeout", "timeout", "circuit_open", "circuit_open"]
        # The speech deadline, not the 5 s network timeout, ended the first two.
        assert all("did not answer within 0.3 s" in str(e) for e in lesson.fallbacks[:2])
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    await asyncio.sleep(0.6)  # past the cooldown: the next turn starts a probe, and is answered offline
    assert "circuit_open" == lesson.fallbacks[-1].kind and await lesson.turn("I still do not know")
    for _ in range(50):  # the background probe closes the circuit once the server answers again
        if not lesson.fallback.breaker.open:
            break
        await asyncio.sleep(0.1)
    assert not lesson.fallback.breaker.open
    # The server, running again, got the two requests that timed out and none for the turns the circuit skipped.
    assert len(server.completion_bodies()) == 1 + 2 and lesson.fallbacks[-1].kind == "circuit_open"
    before = len(lesson.fallbacks)
    reply = await lesson.turn("can you say that again")
    assert reply.startswith("Tutor heard") and len(lesson.fallbacks) == before


# --- what is spoken ---------------------------------------------------------------------------------


MARKDOWN_REPLY = (
    "## Great work!\n\n**Well done**, you don&#39;t need help. Here is how:\n```python\nprint(7 + 5)\n```\n"
    "See [this video](https://example.com/v) or https://example.com/more. "
    "Your words are spoken aloud: answer in one to three short sentences, no lists, no markdown. "
    "I will call record_assessment now. What is eight plus nine? " + "Blah " * 400
)


async def test_only_speakable_text_reaches_the_learner(start_llm, lesson_on):
    server = start_llm(*FAST_TOKENS, "--reply", MARKDOWN_REPLY)
    lesson = await lesson_on(server, max_spoken_chars=300)

    reply = await lesson.turn("twelve")

    assert reply.startswith("Great work! Well done, you don't need help. Here is how:")
    for unspeakable in ("#", "*", "&#39;", "```", "print", "http", "example.com", "record_assessment",
                        "spoken aloud"):
        assert unspeakable not in reply
    assert "See this video" in reply and "What is eight plus nine?" in reply
    # The monologue stops at the turn's cap, its run-on sentence broken at the sentence length.
    assert len(reply) <= 300 and 0 < reply.count("Blah") <= 40
