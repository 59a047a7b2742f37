"""The tutor backed by any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama...).

Replies stream token by token so speech can start on the first sentence; the
HTTP stream lives inside the async generator, so cancelling the consumer
(barge-in) closes the connection at once.  Every way the endpoint can fail
becomes :class:`DialogueUnavailable` with one line a person can act on, which
is what :class:`~voice_tutor.dialogue.base.FallbackTutor` switches on.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import openai
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from voice_tutor.config import ConfigError, LLMConfig
from voice_tutor.dialogue.base import DialogueContext, DialogueUnavailable, HoldingPhrase
from voice_tutor.dialogue.speakable import SpeechFilter

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
    """Joins streamed ``delta.tool_calls`` fragments into complete calls, however the server sends them.

    Servers differ: OpenAI and vLLM send the id and name once, then pieces of
    the JSON arguments split anywhere; llama-cpp-python repeats the full name
    (and id) in every fragment; Ollama sends each call whole in one fragment;
    some send no id, or no ``index`` at all, or parallel calls under one index
    with different ids.  So: a fragment belongs to the call of its ``index``
    (the last call when it has none), unless it carries a different id, or a
    name while that call already has arguments, which starts a new call; a
    name equal to the one already held is a repeat, not more of the name;
    arguments sent as an object are taken as they are.
    """

    def __init__(self) -> None:
        self._parts: list[dict[str, Any]] = []
        self._by_index: dict[int, dict[str, Any]] = {}

    def add(self, fragments: Iterable[ChoiceDeltaToolCall]) -> None:
        for fragment in fragments:
            function = fragment.function
            name = (function.name if function is not None else None) or ""
            arguments: Any = function.arguments if function is not None else None
            part = self._part_for(fragment.index, fragment.id or "", name, bool(arguments))
            if fragment.id and not part["id"]:
                part["id"] = fragment.id
            if name and name != part["name"]:
                part["name"] += name
            if isinstance(arguments, dict):
                part["arguments"] = json.dumps(arguments)
            elif arguments:
                part["arguments"] += arguments

    def _part_for(self, index: int | None, call_id: str, name: str, has_arguments: bool) -> dict[str, Any]:
        current = self._by_index.get(index) if index is not None else (self._parts[-1] if self._parts else None)
        starts_new = current is None or (call_id and current["id"] and call_id != current["id"]) or (
            name and current["arguments"] and (
                name != current["name"] or (has_arguments and _is_json_object(current["arguments"]))
            )
        )
        if starts_new:
            current = {"id": "", "name": "", "arguments": ""}
            self._parts.append(current)
            if index is not None:
                self._by_index[index] = current
        return current

    def calls(self) -> list[ToolCall]:
        """The complete calls in the order they began; raises :class:`ToolCallError` for a malformed one."""
        calls = []
        for number, part in enumerate(self._parts):
            if not part["name"]:
                raise ToolCallError(f"tool call #{number} has no function name")
            text = part["arguments"].strip() or "{}"
            try:
                arguments = json.loads(text)
                if isinstance(arguments, str):  # arguments encoded twice, as some servers do
                    arguments = json.loads(arguments)
            except json.JSONDecodeError as error:
                raise ToolCallError(
                    f"tool call {part['name']!r} has arguments that are not JSON: {error}"
                ) from error
            if not isinstance(arguments, dict):
                raise ToolCallError(f"tool call {part['name']!r} has arguments that are not a JSON object")
            calls.append(ToolCall(id=part["id"] or f"call_{number}", name=part["name"], arguments=arguments))
        return calls


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


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


CHARS_PER_TOKEN = 3
"""A cautious estimate (English runs nearer 4 per token): budgets stay inside the window without a tokenizer."""
ASSUMED_CONTEXT_TOKENS = 4096
"""The context assumed when neither the configuration nor the server says; an overflow error corrects it."""
SAFETY_TOKENS = 64
"""Kept free besides the reply: chat-template tokens each message adds, estimation error."""
_CONTEXT_NUMBERS = re.compile(
    r"(?:context (?:window|length|size|limit)|n_ctx|max_model_len)\D{0,40}?(\d{3,7})", re.IGNORECASE
)
_OVERFLOW = re.compile(
    r"context (?:window|length|size|limit)|n_ctx|max_model_len|too many tokens|prompt is too long|"
    r"exceeds? the (?:available )?context", re.IGNORECASE
)


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def _overflow_size(message: str) -> int | None:
    """The context size an overflow error names ("...exceed context window of 2048"), if it names one."""
    sizes = [int(n) for n in _CONTEXT_NUMBERS.findall(message)]
    sizes += [int(n) for n in re.findall(r"maximum context length is (\d+)", message)]
    return min(sizes) if sizes else None


def _is_overflow(error: BaseException) -> bool:
    return isinstance(error, openai.APIError) and bool(_OVERFLOW.search(str(error)))


class ChatTutor:
    """A :class:`~voice_tutor.dialogue.base.Tutor` that streams chat completions.

    ``tools`` (OpenAI tool schemas) are sent with every request; the calls the
    model makes are assembled from the stream and handed to ``on_tool_call``
    (sync or async) once the reply has finished streaming.

    Each request fits the endpoint's context window (``context_tokens``): the
    reply's ``max_tokens`` and the tools are reserved first, then the system
    prompt (:meth:`system_prompt_for`), then the newest exchanges that fit.  A
    reply must start within ``first_token_timeout_s`` (plus ``holding_grace_s``
    after a holding phrase when the server has answered but is still thinking),
    must not be empty, and passes through a :class:`SpeechFilter`; otherwise
    the turn raises :class:`DialogueUnavailable` with a ``kind``.
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
        context_tokens: int | None = None,
    ):
        self.config = config
        self.system_prompt = system_prompt
        self.history_turns = history_turns
        self.tools = tools
        self.name = f"chat:{config.model}"
        self.context_tokens = context_tokens or config.context_tokens or ASSUMED_CONTEXT_TOKENS
        self._window_assumed = not (context_tokens or config.context_tokens)
        self._client = client or _make_client(config)
        self._on_tool_call = on_tool_call

    async def aclose(self) -> None:
        """Release the HTTP connection pool."""
        await self._client.close()

    async def probe(self) -> None:
        """Raises unless the endpoint answers now (the circuit breaker's background check)."""
        await asyncio.wait_for(check_endpoint(self.config), self.config.first_token_timeout_s * 2)

    # --- the request -----------------------------------------------------------------------

    def prompt_budget_chars(self) -> int:
        """Characters the messages may take: the window less the reply, the tools and a margin."""
        tools_tokens = estimate_tokens(json.dumps(self.tools)) if self.tools else 0
        free = self.context_tokens - self.config.max_tokens - tools_tokens - SAFETY_TOKENS
        return max(free, 0) * CHARS_PER_TOKEN

    def system_prompt_for(self, context: DialogueContext, max_chars: int) -> str:
        """The system prompt of a request made now, in at most ``max_chars`` where it can be shortened."""
        return self.system_prompt

    def messages(
        self, context: DialogueContext, user_text: str, follow_up: Sequence[dict[str, Any]] = ()
    ) -> list[dict[str, Any]]:
        """The request: system prompt, the recent exchanges as the learner heard them, the new turn.

        ``follow_up`` (this turn's tool calls and results) comes last.  The
        oldest exchanges are left out first when the budget is short.
        """
        budget = self.prompt_budget_chars() - len(user_text) - sum(len(json.dumps(m)) for m in follow_up)
        system = self.system_prompt_for(context, max(budget * 3 // 5, 0))
        left = budget - len(system)
        recent = list(context.history)[-self.history_turns :] if self.history_turns > 0 else []
        exchanges: list[dict[str, str]] = []
        for exchange in reversed(recent):
            heard = f"{exchange.heard} {INTERRUPTED_MARK}".strip() if exchange.cut else exchange.heard
            learner = exchange.learner or OPENING_REQUEST.format(name=context.learner_name)
            size = len(heard) + len(learner) + 2 * 16  # 16: a message's own share of the template
            if size > left:
                break
            left -= size
            exchanges[:0] = [{"role": "user", "content": learner}, {"role": "assistant", "content": heard}]
        return [{"role": "system", "content": system}, *exchanges, {"role": "user", "content": user_text},
                *follow_up]

    def speech_filter(self) -> SpeechFilter:
        """A fresh filter for one turn (see :mod:`voice_tutor.dialogue.speakable`)."""
        return SpeechFilter(self.system_prompt, max_chars=self.config.max_spoken_chars)

    # --- the turn --------------------------------------------------------------------------

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        request = OPENING_REQUEST.format(name=context.learner_name)
        async for piece in self._stream(lambda: self.messages(context, request), self.speech_filter()):
            yield piece

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        async for piece in self._stream(lambda: self.messages(context, learner_text), self.speech_filter()):
            yield piece

    async def _stream(
        self, build: Callable[[], list[dict[str, Any]]], speech: SpeechFilter, *, required: bool = True
    ) -> AsyncIterator[str]:
        """One request's reply, filtered for speech; tool calls are dispatched once it has streamed.

        ``build`` makes the messages (again, smaller, if the server says they
        overflow its context).  ``required``: a reply with neither speakable
        words nor tool calls is a failure (``empty_reply``).
        """
        for attempt in range(2):
            pieces = 0
            said = 0
            tool_calls = ToolCallAccumulator()
            try:
                async for chunk in self._chunks(build()):
                    if isinstance(chunk, HoldingPhrase):
                        yield chunk
                        continue
                    for choice in chunk.choices:
                        if choice.delta.tool_calls:
                            tool_calls.add(choice.delta.tool_calls)
                        if choice.delta.content:
                            pieces += 1
                            for sentence in speech.push(choice.delta.content):
                                said += 1
                                yield sentence
                for sentence in speech.finish():
                    said += 1
                    yield sentence
            except (openai.OpenAIError, ValueError) as error:  # ValueError: a chunk that is not JSON
                for sentence in speech.finish_broken():
                    yield sentence
                if _is_overflow(error):
                    size = _overflow_size(str(error))
                    known = self.context_tokens
                    # The window the server names; or, if it names none (or ours was right), a smaller budget.
                    self.context_tokens = size if size and size < known else max(1024, known * 3 // 4)
                    log.warning("%s: context overflow (window now taken as %d tokens)", self.name, self.context_tokens)
                    if attempt == 0 and not pieces:
                        continue  # once more, budgeted to the window the server named
                    raise DialogueUnavailable(describe_error(error, self.config, pieces), kind="context_overflow") from error
                raise DialogueUnavailable(describe_error(error, self.config, pieces), kind=_error_kind(error)) from error
            break
        if speech.dropped:
            log.info("%s: speech filter dropped %s", self.name, ", ".join(sorted(set(speech.dropped))))
        calls = await self._dispatch(tool_calls)
        if required and not said and not calls:
            why = "a reply with nothing speakable" if pieces else "an empty reply"
            if not pieces and self._window_assumed:
                # llama-cpp-python answers a request past its window with an empty stream: assume a smaller one.
                self.context_tokens = max(1024, self.context_tokens * 3 // 4)
                why += f" (perhaps past its context window, now taken as {self.context_tokens} tokens)"
            raise DialogueUnavailable(f"LLM endpoint {self.config.base_url} sent {why}", kind="empty_reply")

    async def _chunks(self, messages: list[dict[str, Any]]) -> AsyncIterator[Any]:
        """The stream's chunks; a :class:`HoldingPhrase` while the first words are late.

        The first chunk with words or a tool call must come within
        ``first_token_timeout_s``; if by then the server has answered (headers,
        role-only chunks) a holding phrase is said and ``holding_grace_s`` more
        is allowed.  Later chunks are bounded by the client's ``timeout_s``.
        """
        extra: dict[str, Any] = {"tools": self.tools} if self.tools else {}
        config = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.first_token_timeout_s
        held = False
        opening = asyncio.ensure_future(self._client.chat.completions.create(
            model=config.model,
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            **extra,
        ))
        pending: asyncio.Future | None = None
        try:
            done, _ = await asyncio.wait({opening}, timeout=max(deadline - loop.time(), 0))
            if not done:
                raise _late(config, answered=False)
            stream = opening.result()
            async with stream:  # closes the HTTP response on cancellation too
                chunks = stream.__aiter__()
                started = False
                while True:
                    pending = asyncio.ensure_future(anext(chunks, None))
                    while not started:
                        done, _ = await asyncio.wait({pending}, timeout=max(deadline - loop.time(), 0))
                        if done:
                            break
                        if held or not config.holding_phrase.strip():
                            raise _late(config, answered=True)
                        held = True
                        deadline = loop.time() + config.holding_grace_s
                        yield HoldingPhrase(config.holding_phrase.strip() + " ")  # said at once, as a sentence
                    chunk = await pending
                    pending = None
                    if chunk is None:
                        return
                    if not started and any(c.delta.content or c.delta.tool_calls for c in chunk.choices):
                        started = True
                    yield chunk
        finally:
            for future in (opening, pending):
                if future is not None and not future.done():
                    future.cancel()

    async def _dispatch(self, tool_calls: ToolCallAccumulator) -> int:
        """Hand the reply's tool calls over; how many there were."""
        try:
            calls = tool_calls.calls()
        except ToolCallError as error:
            log.warning("ignored a tool call from %s: %s", self.name, error, extra={"tool_outcome": "malformed"})
            return 0
        if self._on_tool_call is None:
            return 0
        for call in calls:
            result = self._on_tool_call(call)
            if inspect.isawaitable(result):
                await result
        return len(calls)


def _late(config: LLMConfig, *, answered: bool) -> DialogueUnavailable:
    waited = config.first_token_timeout_s + (config.holding_grace_s if answered and config.holding_phrase.strip() else 0)
    state = "answered but said nothing" if answered else "did not answer"
    return DialogueUnavailable(f"LLM endpoint {config.base_url} {state} within {waited:g} s", kind="timeout")


def _error_kind(error: BaseException) -> str:
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "unreachable"
    if isinstance(error, openai.AuthenticationError):
        return "auth"
    if isinstance(error, openai.APIStatusError):
        return "http_error"
    return "bad_response"


OLLAMA_DEFAULT_CONTEXT = 2048
"""Ollama's window when a model sets no ``num_ctx``; it cuts longer prompts silently."""


async def discover_context_tokens(config: LLMConfig) -> int | None:
    """The context window the endpoint says it has for ``config.model``, or None if it does not say.

    llama.cpp's server: ``GET /props`` (``default_generation_settings.n_ctx``,
    the per-slot window); vLLM: ``max_model_len`` in ``/v1/models``; Ollama:
    ``POST /api/show`` (``num_ctx`` if the model sets it, else its trained
    ``context_length`` capped at Ollama's default of 2048, which it truncates to
    silently).  OpenAI and llama-cpp-python say nothing: configure
    ``[llm].context_tokens``.
    """
    base = (config.base_url or "").rstrip("/")
    root = base[: -len("/v1")] if base.endswith("/v1") else base
    client = _make_client(replace(config, timeout_s=min(config.timeout_s, 5.0)))

    async def ask(method: str, url: str, **body: Any) -> Any:
        try:
            request = client.get(url, cast_to=object) if method == "GET" else client.post(url, cast_to=object, body=body)
            return await request
        except (openai.OpenAIError, ValueError):
            return None

    try:
        models = await ask("GET", f"{base}/models")
        for entry in models.get("data", []) if isinstance(models, dict) else []:
            if isinstance(entry, dict) and entry.get("id") == config.model:
                for key in ("max_model_len", "context_length", "context_window"):
                    if isinstance(entry.get(key), int) and entry[key] > 0:
                        return entry[key]
        props = await ask("GET", f"{root}/props")
        if isinstance(props, dict):
            settings = props.get("default_generation_settings") or {}
            n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
            if isinstance(n_ctx, int) and n_ctx > 0:
                return n_ctx
        show = await ask("POST", f"{root}/api/show", model=config.model)
        if isinstance(show, dict):
            match = re.search(r"^\s*num_ctx\s+(\d+)", str(show.get("parameters") or ""), re.MULTILINE)
            if match:
                return int(match.group(1))
            info = show.get("model_info") or {}
            trained = [v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)]
            if trained:
                return min(trained[0], OLLAMA_DEFAULT_CONTEXT)
        return None
    finally:
        await client.close()


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
                f"LLM endpoint {config.base_url} does not serve model {config.model!r} (it serves: {listed})",
                kind="no_model",
            )
    except (openai.OpenAIError, ValueError) as error:
        raise DialogueUnavailable(describe_error(error, config), kind=_error_kind(error)) from error
    finally:
        await client.close()
