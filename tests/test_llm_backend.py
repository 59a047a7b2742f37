"""The OpenAI-compatible chat tutor against a real server process (tests/llm_server.py) on loopback.

Nothing here mocks the openai client: requests go over real HTTP, and the
server's JSON-lines log shows what was sent and when a client hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from conftest import RunningLLMServer
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction

from voice_tutor.config import LLMConfig
from voice_tutor.dialogue.base import DialogueContext, DialogueUnavailable, Exchange, FallbackTutor
from voice_tutor.dialogue.llm import (
    INTERRUPTED_MARK,
    ChatTutor,
    ToolCall,
    ToolCallAccumulator,
    ToolCallError,
    check_endpoint,
)

MODEL = "tutor-test"
SYSTEM = "You are a patient arithmetic tutor. Lesson: adding within twenty."


def expected_reply(user: str) -> str:
    return f"Tutor heard: {user}. What is seven plus five?"


def chat_config(server: RunningLLMServer, **changes) -> LLMConfig:
    return replace(LLMConfig(base_url=server.url, model=MODEL, timeout_s=5.0), **changes)


@pytest.fixture
def server(start_llm) -> RunningLLMServer:
    return start_llm()


@pytest.fixture
def dead_url() -> str:
    """The URL of a port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class EchoTutor:
    """The smallest offline tutor: what FallbackTutor falls back to here."""

    name = "echo"

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        yield f"Hello {context.learner_name}, "
        yield "let us add."

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        yield "Offline: "
        yield f"you said {learner_text}."


@contextlib.asynccontextmanager
async def tutor_for(config: LLMConfig, **options):
    tutor = ChatTutor(config, SYSTEM, **options)
    try:
        yield tutor
    finally:
        await tutor.aclose()


async def collect(stream: AsyncIterator[str]) -> list[tuple[float, str]]:
    return [(time.monotonic(), piece) async for piece in stream]


# --- streaming and the request -------------------------------------------------------------


async def test_reply_streams_sentence_by_sentence_joining_to_the_reply(server):
    async with tutor_for(chat_config(server)) as tutor:
        timed = await collect(tutor.respond("I think it is twelve", DialogueContext("s1")))
    pieces = [piece for _, piece in timed]
    assert "".join(pieces) == expected_reply("I think it is twelve")
    # Sentence by sentence (the speech filter judges whole sentences), each as soon as it is complete,
    # ending in a space so the sentence chunker passes it to speech at once.
    assert pieces == ["Tutor heard: I think it is twelve. ", "What is seven plus five?"]
    assert timed[-1][0] - timed[0][0] > 0.05
    [end] = server.records("stream_end")
    assert end["completed"] is True


async def test_request_carries_system_prompt_bounded_history_and_interruption(server):
    context = DialogueContext("s1", learner_name="Ada")
    for n in range(5):
        context.record(Exchange(learner=f"old {n}", tutor=f"reply {n}", heard=f"reply {n}", cut=False))
    context.record(Exchange(learner="is it eleven", tutor="Not quite. Count on from seven: eight, nine",
                            heard="Not quite. Count on", cut=True))
    config = chat_config(server, temperature=0.2, max_tokens=77)
    async with tutor_for(config, history_turns=3) as tutor:
        reply = "".join([p async for p in tutor.respond("twelve", context)])
    assert reply == expected_reply("twelve")

    [body] = server.completion_bodies()
    assert body["model"] == MODEL and body["stream"] is True
    assert body["temperature"] == 0.2 and body["max_tokens"] == 77
    assert "tools" not in body
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "old 3"},
        {"role": "assistant", "content": "reply 3"},
        {"role": "user", "content": "old 4"},
        {"role": "assistant", "content": "reply 4"},
        {"role": "user", "content": "is it eleven"},
        {"role": "assistant", "content": f"Not quite. Count on {INTERRUPTED_MARK}"},
        {"role": "user", "content": "twelve"},
    ]


async def test_opening_asks_for_a_greeting_by_name(server):
    async with tutor_for(chat_config(server)) as tutor:
        opening = "".join([p async for p in tutor.opening(DialogueContext("s1", learner_name="Ada"))])
    [body] = server.completion_bodies()
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    request = body["messages"][-1]
    assert request["role"] == "user" and "Ada" in request["content"] and "lesson" in request["content"]
    assert opening == expected_reply(request["content"])


async def test_cancelling_the_consumer_closes_the_stream_promptly(start_llm):
    server = start_llm("--token-delay-ms", "200")  # the whole reply would take ~2.6 s
    pieces: list[str] = []
    first = asyncio.Event()

    async with tutor_for(chat_config(server)) as tutor:
        async def consume():
            async with contextlib.aclosing(tutor.respond("a long question", DialogueContext("s1"))) as stream:
                async for piece in stream:
                    pieces.append(piece)
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - cancelled_at < 0.5  # the rest of the reply would take ~2.4 s

    assert pieces == ["Tutor heard: a long question. "]  # the first sentence, then the learner cut in
    deadline = time.monotonic() + 3
    while not server.records("stream_end") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    [end] = server.records("stream_end")
    assert end["completed"] is False and end["sent"] < end["total"] - 2


# --- failures become DialogueUnavailable ---------------------------------------------------


async def test_unreachable_endpoint_is_unavailable_with_a_clear_message(dead_url):
    config = LLMConfig(base_url=dead_url, model=MODEL)
    expected = f"LLM endpoint {dead_url} unreachable: connection refused"
    async with tutor_for(config) as tutor:
        started = time.monotonic()
        with pytest.raises(DialogueUnavailable) as caught:
            [p async for p in tutor.respond("hello", DialogueContext("s1"))]
        assert time.monotonic() - started < 2  # no retries
    assert str(caught.value) == expected
    with pytest.raises(DialogueUnavailable) as caught:
        await check_endpoint(config)
    assert str(caught.value) == expected


async def test_http_error_is_unavailable(start_llm):
    server = start_llm("--fail-status", "500")
    async with tutor_for(chat_config(server)) as tutor:
        with pytest.raises(DialogueUnavailable) as caught:
            [p async for p in tutor.respond("hello", DialogueContext("s1"))]
    assert str(caught.value) == (
        f"LLM endpoint {server.url} answered HTTP 500: The test server was told to fail."
    )


async def test_wrong_api_key_is_unavailable_and_the_right_one_works(start_llm):
    server = start_llm("--api-key", "sk-right")
    async with tutor_for(chat_config(server, api_key="sk-wrong")) as tutor:
        with pytest.raises(DialogueUnavailable) as caught:
            [p async for p in tutor.respond("hello", DialogueContext("s1"))]
    message = str(caught.value)
    assert message.startswith(f"LLM endpoint {server.url} rejected the API key (HTTP 401)")
    assert "sk-wrong" not in message and "\n" not in message
    with pytest.raises(DialogueUnavailable, match="rejected the API key"):
        await check_endpoint(chat_config(server, api_key="sk-wrong"))

    await check_endpoint(chat_config(server, api_key="sk-right"))
    async with tutor_for(chat_config(server, api_key="sk-right")) as tutor:
        assert "".join([p async for p in tutor.respond("hello", DialogueContext("s1"))]) == expected_reply("hello")


async def test_silence_past_the_timeout_is_unavailable(start_llm):
    server = start_llm("--token-delay-ms", "3000")
    async with tutor_for(chat_config(server, timeout_s=0.3)) as tutor:
        started = time.monotonic()
        with pytest.raises(DialogueUnavailable) as caught:
            [p async for p in tutor.respond("hello", DialogueContext("s1"))]
    assert time.monotonic() - started < 2
    assert str(caught.value) == f"LLM endpoint {server.url} timed out after 0.3 s"


async def test_check_endpoint_knows_the_served_models(server):
    await check_endpoint(chat_config(server))
    with pytest.raises(DialogueUnavailable) as caught:
        await check_endpoint(chat_config(server, model="gpt-9"))
    assert str(caught.value) == (
        f"LLM endpoint {server.url} does not serve model 'gpt-9' (it serves: {MODEL})"
    )
    assert server.completion_bodies() == []  # /models was enough


async def test_check_endpoint_without_models_route_tries_one_token(start_llm):
    server = start_llm("--no-models")
    await check_endpoint(chat_config(server))
    [probe] = server.completion_bodies()
    assert probe["max_tokens"] == 1 and probe["model"] == MODEL and not probe.get("stream")

    with pytest.raises(DialogueUnavailable) as caught:
        await check_endpoint(chat_config(server, model="gpt-9"))
    assert str(caught.value).startswith(f"LLM endpoint {server.url} has no model 'gpt-9'")


# --- falling back ---------------------------------------------------------------------------


async def test_fallback_answers_when_the_endpoint_is_dead(dead_url):
    fallbacks: list[Exception] = []
    async with tutor_for(LLMConfig(base_url=dead_url, model=MODEL)) as chat:
        tutor = FallbackTutor(chat, EchoTutor(), on_fallback=fallbacks.append)
        context = DialogueContext("s1", learner_name="Ada")
        opening = "".join([p async for p in tutor.opening(context)])
        reply = "".join([p async for p in tutor.respond("twelve", context)])
    assert opening == "Hello Ada, let us add."
    assert reply == "Offline: you said twelve."
    assert [type(e) for e in fallbacks] == [DialogueUnavailable, DialogueUnavailable]
    assert "unreachable: connection refused" in str(fallbacks[0])


async def test_stream_breaking_midway_is_unavailable_and_keeps_what_was_said(start_llm):
    server = start_llm("--break-after", "3")
    fallbacks: list[Exception] = []
    async with tutor_for(chat_config(server)) as chat:
        tutor = FallbackTutor(chat, EchoTutor(), on_fallback=fallbacks.append)
        pieces = [p async for p in tutor.respond("twelve", DialogueContext("s1"))]
    # The learner already heard the start of the LLM's reply: no offline answer is spliced on.
    assert pieces == ["Tutor heard: twelve."]  # a finished sentence is said; an unfinished one would not be
    [error] = fallbacks
    assert isinstance(error, DialogueUnavailable)
    assert str(error).startswith(f"LLM endpoint {server.url} broke off the reply after 3 pieces: peer closed")
    assert "\n" not in str(error)


# --- tool calls -----------------------------------------------------------------------------


def fragment(index, *, call_id=None, name=None, arguments=None) -> ChoiceDeltaToolCall:
    function = ChoiceDeltaToolCallFunction(name=name, arguments=arguments)
    return ChoiceDeltaToolCall(index=index, id=call_id, type="function" if call_id else None, function=function)


def test_tool_call_fragments_assemble_into_complete_calls():
    calls = ToolCallAccumulator()
    calls.add([fragment(0, call_id="call_a", name="show_hint", arguments="")])
    calls.add([fragment(0, arguments='{"ans'), fragment(1, call_id="call_b", name="next_problem")])
    calls.add([fragment(0, arguments='wer": 1'), fragment(1, arguments="")])
    calls.add([fragment(0, arguments='2, "steps": ["7", "+5"]}')])
    assert calls.calls() == [
        ToolCall(id="call_a", name="show_hint", arguments={"answer": 12, "steps": ["7", "+5"]}),
        ToolCall(id="call_b", name="next_problem", arguments={}),
    ]


def test_names_and_ids_repeated_in_every_fragment_are_not_concatenated():
    """llama-cpp-python sends the id and the whole name again with each piece of the arguments."""
    calls = ToolCallAccumulator()
    for piece in ['{"ans', 'wer": ', "12}"]:
        calls.add([fragment(0, call_id="call_x", name="show_hint", arguments=piece)])
    assert calls.calls() == [ToolCall(id="call_x", name="show_hint", arguments={"answer": 12})]


def test_a_name_split_across_fragments_is_joined():
    calls = ToolCallAccumulator()
    calls.add([fragment(0, call_id="c", name="show_", arguments="")])
    calls.add([fragment(0, name="hint", arguments="{}")])
    assert calls.calls() == [ToolCall(id="c", name="show_hint", arguments={})]


def test_whole_calls_without_ids_or_index_become_separate_calls():
    """Ollama sends each call whole; some servers send no index, or one index for parallel calls."""
    calls = ToolCallAccumulator()
    calls.add([ChoiceDeltaToolCall.construct(index=None, id=None, function=ChoiceDeltaToolCallFunction(
        name="show_hint", arguments='{"answer": 1}'))])
    calls.add([fragment(0, name="show_hint", arguments='{"answer": 2}')])
    calls.add([fragment(0, name="next_problem", arguments='"{}"')])  # arguments encoded twice
    assert calls.calls() == [
        ToolCall(id="call_0", name="show_hint", arguments={"answer": 1}),
        ToolCall(id="call_1", name="show_hint", arguments={"answer": 2}),
        ToolCall(id="call_2", name="next_problem", arguments={}),
    ]


def test_parallel_calls_under_one_index_are_told_apart_by_id():
    calls = ToolCallAccumulator()
    calls.add([fragment(0, call_id="a", name="show_hint", arguments='{"answer": 1}')])
    calls.add([fragment(0, call_id="b", name="show_hint", arguments='{"answer": 2}')])
    assert [call.id for call in calls.calls()] == ["a", "b"]


@pytest.mark.parametrize(
    ("fragments", "problem"),
    [
        ([fragment(0, call_id="c", name="show_hint", arguments='{"answer": 1')], "not JSON"),
        ([fragment(0, call_id="c", name="show_hint", arguments="[12]")], "not a JSON object"),
        ([fragment(0, call_id="c", arguments="{}")], "no function name"),
    ],
)
def test_malformed_tool_calls_are_reported(fragments, problem):
    calls = ToolCallAccumulator()
    calls.add(fragments)
    with pytest.raises(ToolCallError, match=problem):
        calls.calls()


HINT_TOOL = {
    "type": "function",
    "function": {
        "name": "show_hint",
        "description": "Show a hint on the learner's screen.",
        "parameters": {"type": "object", "properties": {"answer": {"type": "integer"}, "hint": {"type": "string"}}},
    },
}


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_streamed_tool_call_reaches_on_tool_call(server, asynchronous):
    received: list[ToolCall] = []

    async def record_later(call: ToolCall) -> None:
        await asyncio.sleep(0)
        received.append(call)

    on_tool_call = record_later if asynchronous else received.append
    async with tutor_for(chat_config(server), tools=[HINT_TOOL], on_tool_call=on_tool_call) as tutor:
        pieces = [p async for p in tutor.respond("show me a tool hint please", DialogueContext("s1"))]

    assert pieces == []
    assert received == [ToolCall(id="call_0", name="show_hint", arguments={"answer": 12, "hint": "count on from seven"})]
    [body] = server.completion_bodies()
    assert body["tools"] == [HINT_TOOL]
    [end] = server.records("stream_end")
    assert end["completed"] and end["total"] > 5  # the arguments really came in many fragments
