"""The tutor backed by any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama...).

Replies stream token by token so speech can start on the first sentence; the
HTTP stream lives inside the async generator, so cancelling the consumer
(barge-in) closes the connection at once.  Every way the endpoint can fail
becomes :class:`DialogueUnavailable` with one line a person can act on, which
is what :class:`~voice_tutor.dialogue.base.FallbackTutor` switches on.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from voice_tutor.config import ConfigError, LLMConfig
from voice_tutor.dialogue.base import DialogueContext, DialogueUnavailable

log = logging.getLogger(__name__)

INTERRUPTED_MARK = "[interrupted by the learner]"
"""Appended to a reply the learner cut off, so the model knows they heard only the part shown."""

OPENING_REQUEST = (
    "The session is starting now. Greet the learner, whose name is {name}, by name "
    "and begin the lesson."
)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for, complete and with its arguments parsed."""

    id: str
    name: str
    arguments: dict[str, Any]


class ToolCallError(ValueError):
    """The model streamed a tool call that cannot be used (no name, arguments not a JSON object)."""


class ToolCallAccumulator:
    """Joins streamed ``delta.tool_calls`` fragments into complete calls.

    A call arrives spread over many chunks, keyed by ``index``: the first
    fragment carries the id and name, the rest carry pieces of the JSON
    arguments.  Strings are concatenated as the openai SDK's own accumulator does.
    """

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def add(self, fragments: Iterable[ChoiceDeltaToolCall]) -> None:
        for fragment in fragments:
            part = self._parts.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            if fragment.id and not part["id"]:
                part["id"] = fragment.id
            if fragment.function is not None:
                part["name"] += fragment.function.name or ""
                part["arguments"] += fragment.function.arguments or ""

    def calls(self) -> list[ToolCall]:
        """The complete calls in index order; raises :class:`ToolCallError` for a malformed one."""
        calls = []
        for index in sorted(self._parts):
            part = self._parts[index]
            if not part["name"]:
                raise ToolCallError(f"tool call #{index} has no function name")
            try:
                arguments = json.loads(part["arguments"] or "{}")
            except json.JSONDecodeError as error:
                raise ToolCallError(
                    f"tool call {part['name']!r} has arguments that are not JSON: {error}"
                ) from error
            if not isinstance(arguments, dict):
                raise ToolCallError(f"tool call {part['name']!r} has arguments that are not a JSON object")
            calls.append(ToolCall(id=part["id"] or f"call_{index}", name=part["name"], arguments=arguments))
        return calls


OnToolCall = Callable[[ToolCall], Awaitable[None] | None]


def _make_client(config: LLMConfig) -> openai.AsyncOpenAI:
    if not config.base_url:
        raise ConfigError("an LLM tutor needs [llm].base_url (leave it unset to use the offline tutor)")
    # No retries: a voice turn cannot wait for back-off; the fallback tutor answers instead.
    return openai.AsyncOpenAI(
        base_url=config.base_url,
        api_key=config.api_key or "not-needed",
        timeout=config.timeout_s,
        max_retries=0,
    )


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _server_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return _one_line(str(message))
    return _one_line(error.response.reason_phrase or "no details")


def _connection_reason(error: BaseException) -> str:
    """The innermost OS-level reason ('connection refused'), which is what a person can act on."""
    reason = None
    cause: BaseException | None = error.__cause__ or error.__context__
    while cause is not None:
        if isinstance(cause, OSError) and (cause.errno or cause.strerror):
            # asyncio words refusals as "Connect call failed (...)"; the errno says it plainly.
            plain = cause.errno and not isinstance(cause, socket.gaierror)
            reason = (os.strerror(cause.errno) if plain else cause.strerror or str(cause)).lower()
        elif reason is None and str(cause):
            reason = _one_line(str(cause))
        cause = cause.__cause__ or cause.__context__
    return reason or "connection failed"


def describe_error(error: Exception, config: LLMConfig, pieces: int = 0) -> str:
    """One line saying what went wrong with the endpoint, for logs, notices and the CLI.

    ``pieces`` is how much of the reply had streamed when it failed.
    """
    where = f"LLM endpoint {config.base_url}"
    if isinstance(error, openai.APITimeoutError):
        return f"{where} timed out after {config.timeout_s:g} s" + (f" ({pieces} pieces in)" if pieces else "")
    if isinstance(error, openai.APIConnectionError):
        if pieces:
            return f"{where} broke off the reply after {pieces} pieces: {_connection_reason(error)}"
        return f"{where} unreachable: {_connection_reason(error)}"
    if isinstance(error, openai.AuthenticationError):
        return f"{where} rejected the API key (HTTP {error.status_code}): {_server_message(error)}"
    if isinstance(error, openai.NotFoundError):
        return f"{where} has no model {config.model!r} or no such API (HTTP 404): {_server_message(error)}"
    if isinstance(error, openai.APIStatusError):
        return f"{where} answered HTTP {error.status_code}: {_server_message(error)}"
    return f"{where} sent an unusable response: {_one_line(str(error))}"


class ChatTutor:
    """A :class:`~voice_tutor.dialogue.base.Tutor` that streams chat completions.

    ``tools`` (OpenAI tool schemas) are sent with every request; the calls the
    model makes are assembled from the stream and handed to ``on_tool_call``
    (sync or async) once the reply has finished streaming.
    """

    def __init__(
        self,
        config: LLMConfig,
        system_prompt: str,
        *,
        client: openai.AsyncOpenAI | None = None,
        history_turns: int = 8,
        tools: list[dict[str, Any]] | None = None,
        on_tool_call: OnToolCall | None = None,
    ):
        self.config = config
        self.system_prompt = system_prompt
        self.history_turns = history_turns
        self.tools = tools
        self.name = f"chat:{config.model}"
        self._client = client or _make_client(config)
        self._on_tool_call = on_tool_call

    async def aclose(self) -> None:
        """Release the HTTP connection pool."""
        await self._client.close()

    def messages(self, context: DialogueContext, user_text: str) -> list[dict[str, str]]:
        """The request: system prompt, the recent exchanges as the learner heard them, the new turn."""
        messages = [{"role": "system", "content": self.system_prompt}]
        recent = list(context.history)[-self.history_turns :] if self.history_turns > 0 else []
        for exchange in recent:
            heard = f"{exchange.heard} {INTERRUPTED_MARK}".strip() if exchange.cut else exchange.heard
            learner = exchange.learner or OPENING_REQUEST.format(name=context.learner_name)
            messages.append({"role": "user", "content": learner})
            messages.append({"role": "assistant", "content": heard})
        messages.append({"role": "user", "content": user_text})
        return messages

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        async for piece in self._stream(self.messages(context, OPENING_REQUEST.format(name=context.learner_name))):
            yield piece

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        async for piece in self._stream(self.messages(context, learner_text)):
            yield piece

    async def _stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        extra: dict[str, Any] = {"tools": self.tools} if self.tools else {}
        pieces = 0
        tool_calls = ToolCallAccumulator()
        try:
            stream = await self._client.chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                **extra,
            )
            async with stream:  # closes the HTTP response on cancellation too
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.delta.tool_calls:
                            tool_calls.add(choice.delta.tool_calls)
                        if choice.delta.content:
                            pieces += 1
                            yield choice.delta.content
        except (openai.OpenAIError, ValueError) as error:  # ValueError: a chunk that is not JSON
            raise DialogueUnavailable(describe_error(error, self.config, pieces)) from error
        await self._dispatch(tool_calls)

    async def _dispatch(self, tool_calls: ToolCallAccumulator) -> None:
        if self._on_tool_call is None:
            return
        try:
            calls = tool_calls.calls()
        except ToolCallError as error:
            log.warning("ignored a tool call from %s: %s", self.name, error)
            return
        for call in calls:
            result = self._on_tool_call(call)
            if inspect.isawaitable(result):
                await result


async def check_endpoint(config: LLMConfig) -> None:
    """Fail fast, with one clear line, when the endpoint is down or does not serve ``config.model``.

    Servers without ``/models`` are asked for a one-token completion instead.
    """
    client = _make_client(config)
    try:
        try:
            served = [model.id async for model in client.models.list()]
        except openai.APIStatusError as error:
            if error.status_code not in (404, 405, 501):
                raise
            served = []
        if not served:
            await client.chat.completions.create(
                model=config.model,
                messages=[{"role": "user", "content": "Say OK."}],
                max_tokens=1,
            )
        elif config.model not in served:
            listed = ", ".join(sorted(served)[:8]) + (", …" if len(served) > 8 else "")
            raise DialogueUnavailable(
                f"LLM endpoint {config.base_url} does not serve model {config.model!r} (it serves: {listed})"
            )
    except (openai.OpenAIError, ValueError) as error:
        raise DialogueUnavailable(describe_error(error, config)) from error
    finally:
        await client.close()
