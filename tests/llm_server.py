"""A real OpenAI-compatible chat server for tests: deterministic, loopback only, standard library only.

The design rule is "no mocked openai client": tests drive the real SDK over
real HTTP against this process.  Replies are built from the request, so a test
can assert on what comes back, and every request is logged as a JSON line, so
a test can assert on what was sent.

    python tests/llm_server.py --port 0 --log requests.jsonl

prints ``PORT <n>`` as its first line, then serves on 127.0.0.1:

* ``GET /v1/models`` lists ``--model`` (404 with ``--no-models``).
* ``POST /v1/moderations`` flags inputs containing ``--flag-word`` as violence.
* ``POST /v1/chat/completions`` answers ``--reply`` (``{user}`` is the last
  user message), streamed word by word as ``chat.completion.chunk`` SSE events
  (``stream: true``) or whole.  A last user message containing the word
  "tool", in a request that offers tools, gets a streamed call of the first
  tool with ``--tool-arguments`` instead.  ``max_tokens`` counts words.
  Which tool: one the message names ("tool give_hint"), else ``--tool-name``,
  else the first offered; with which arguments: a JSON object in the message
  (from its first "{" to its last "}"), else ``--tool-arguments``.
* A request whose last message is a tool result (role ``tool``, the follow-up
  after a tool call) gets ``--tool-reply`` as text (``{tool}`` is the content
  of the request's trailing tool messages, joined by spaces), never a tool call;
  with ``--repeat-tool-calls`` it gets the same tool call again (a model that
  never stops calling tools).
* ``--fail-status N`` answers every completion with HTTP N; ``--api-key K``
  demands ``Authorization: Bearer K``; ``--break-after N`` drops the
  connection after N words; an unknown model gets OpenAI's 404.

Behaviours of the servers people run, each behind a flag:

* ``--tool-style``: how streamed tool calls look.  ``openai`` (vLLM too): id
  and name once, then argument pieces; ``repeat-names`` (llama-cpp-python):
  id and name repeated in every fragment; ``whole`` (Ollama): each call whole
  in one fragment, with no id; ``no-index``: fragments without ``index``.
  Arguments are split every ``ARGUMENT_PIECE`` characters, mid-token.
* A message naming several tools, with a JSON array of argument objects
  ("tool give_hint recommend_resource [{...}, {...}]"), gets one call per
  named tool, in the order named (parallel tool calls).
* ``--reject-null-content``: a message whose content is null gets HTTP 500,
  as llama-cpp-python answers.
* ``--context-tokens N``: a window of N tokens (4 characters each); a request
  whose messages, tools and ``max_tokens`` exceed it gets, with
  ``--overflow error``, HTTP 400 "Requested tokens (X) exceed context window
  of N" (llama.cpp), or with ``--overflow empty`` an HTTP 200 stream with no
  words (what llama-cpp-python 0.3 does).  Each is logged as
  ``{"event": "overflow"}``.
* ``--advertise vllm|llamacpp|ollama``: where the window is published
  (``max_model_len`` in ``/v1/models``, ``/props``, ``/api/show``).
* ``--first-token-delay-ms``: headers and the role chunk at once, the first
  word only after this (a server busy reading a long prompt).
* A server that stops answering is the real process stopped (SIGSTOP) by the test.

Besides each request, the log records how every stream ended
(``{"event": "stream_end", "completed": ..., "sent": ..., "total": ...}``),
so a test can see that a client hung up early.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGUMENT_PIECE = 5
"""Characters of tool-call arguments per chunk: small, so fragments split JSON tokens."""


MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors",
    "violence", "violence/graphic",
)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as real endpoints do
    options: argparse.Namespace
    log_lock = threading.Lock()

    def log_message(self, format, *args):  # noqa: A002 - the access log would only be noise
        pass

    def _log(self, record: dict) -> None:
        if self.options.log:
            with self.log_lock, open(self.options.log, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str, code: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": "invalid_request_error", "code": code}})

    def _authorized(self) -> bool:
        if self.options.api_key and self.headers.get("Authorization") != f"Bearer {self.options.api_key}":
            self._send_error(401, "Incorrect API key provided.", "invalid_api_key")
            return False
        return True

    def do_GET(self):
        self._log({"event": "request", "method": "GET", "path": self.path})
        advertise, window = self.options.advertise, self.options.context_tokens
        if self.path.rstrip("/") == "/props" and advertise == "llamacpp":
            self._send_json(200, {"default_generation_settings": {"n_ctx": window}, "total_slots": 1})
        elif self.path.rstrip("/") != "/v1/models" or self.options.no_models:
            self._send_error(404, f"No route {self.path}", "not_found")
        elif self._authorized():
            model = {"id": self.options.model, "object": "model", "created": 0, "owned_by": "tests"}
            if advertise == "vllm":
                model["max_model_len"] = window
            elif advertise == "llamacpp":
                model["meta"] = {"n_ctx_train": window * 4}  # the trained window, not the one served
            self._send_json(200, {"object": "list", "data": [model]})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._log({"event": "request", "method": "POST", "path": self.path, "body": None})
            self._send_error(400, "Body is not JSON.", "invalid_json")
            return
        self._log({"event": "request", "method": "POST", "path": self.path, "body": body})
        if self.path.rstrip("/") == "/api/show" and self.options.advertise == "ollama":
            self._send_json(200, {"parameters": f"num_ctx                        {self.options.context_tokens}",
                                  "model_info": {"llama.context_length": 131072}})
        elif self.path.rstrip("/") == "/v1/moderations" and self._authorized():
            self._moderate(body)
        elif self.path.rstrip("/") != "/v1/chat/completions":
            self._send_error(404, f"No route {self.path}", "not_found")
        elif self._authorized():
            if self.options.fail_status:
                self._send_error(self.options.fail_status, "The test server was told to fail.", "server_error")
            elif body.get("model") != self.options.model:
                self._send_error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
            elif self.options.reject_null_content and any(
                    "content" in m and m["content"] is None for m in body.get("messages") or []):
                self._send_error(500, "Internal Server Error: content must be a string", "server_error")
            elif self._overflows(body):
                pass
            else:
                self._complete(body)

    def _overflows(self, body: dict) -> bool:
        """Answer as a server whose window is too small for ``body`` does; False if it fits."""
        window = self.options.context_tokens
        if not window:
            return False
        text = json.dumps(body.get("messages") or []) + json.dumps(body.get("tools") or [])
        requested = len(text) // 4 + (body.get("max_tokens") or 0)
        if requested <= window:
            return False
        self._log({"event": "overflow", "requested": requested, "window": window})
        if self.options.overflow == "error":
            self._send_error(400, f"Requested tokens ({requested}) exceed context window of {window}",
                             "context_length_exceeded")
        else:
            base = {"id": "chatcmpl-overflow", "created": int(time.time()), "model": self.options.model}
            self._stream(base, [{"role": "assistant"}], "stop")
        return True

    def _moderate(self, body: dict) -> None:
        """OpenAI's moderation shape: ``--flag-word`` in the input flags it as violence."""
        text = body.get("input") or ""
        texts = text if isinstance(text, list) else [text]
        results = []
        for item in texts:
            flagged = self.options.flag_word.lower() in str(item).lower()
            categories = {name: False for name in MODERATION_CATEGORIES}
            categories["violence"] = flagged
            scores = {name: (0.9 if categories[name] else 0.01) for name in MODERATION_CATEGORIES}
            results.append({"flagged": flagged, "categories": categories, "category_scores": scores})
        self._send_json(200, {"id": f"modr-{int(time.time() * 1000)}", "model": "omni-moderation-test",
                              "results": results})

    def _complete(self, body: dict) -> None:
        user = next((m.get("content") or "" for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
        base = {"id": f"chatcmpl-{int(time.time() * 1000)}", "created": int(time.time()), "model": self.options.model}
        messages = body.get("messages") or []
        if messages and messages[-1].get("role") == "tool" and not self.options.repeat_tool_calls:
            self._reply_text(body, base, self.options.tool_reply.format(tool=" ".join(_trailing_tool_results(messages))))
            return
        if tools and re.search(r"\btool\b", user, re.IGNORECASE):
            calls = self._tool_calls(user, tools)
            if body.get("stream"):
                self._stream(base, [{"role": "assistant", "content": None}] + self._tool_deltas(calls), "tool_calls")
            else:
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": arguments}}
                    for n, (name, arguments) in enumerate(calls)]}
                self._send_whole(base, message, "tool_calls", 1)
            return
        self._reply_text(body, base, self.options.reply.format(user=user))

    def _tool_calls(self, user: str, tools: list[dict]) -> list[tuple[str, str]]:
        """(name, JSON arguments) of each call the message asks for."""
        names = [tool["name"] for tool in tools]
        named = sorted((m.start(), name) for name in names for m in re.finditer(rf"\b{re.escape(name)}\b", user))
        start, end = user.find("["), user.rfind("]")
        if len(named) > 1 and 0 <= start < end:
            try:
                each = json.loads(user[start : end + 1])
            except json.JSONDecodeError:
                each = None
            if isinstance(each, list) and len(each) == len(named):
                return [(name, json.dumps(arguments)) for (_, name), arguments in zip(named, each)]
        arguments = _arguments_in(user)
        return [(self._tool_name(user, tools), self.options.tool_arguments if arguments is None else arguments)]

    def _tool_deltas(self, calls: list[tuple[str, str]]) -> list[dict]:
        """The streamed fragments of ``calls``, shaped as ``--tool-style`` says."""
        style = self.options.tool_style
        deltas = []
        for index, (name, arguments) in enumerate(calls):
            call_id = f"call_{index}"
            pieces = [arguments[i : i + ARGUMENT_PIECE] for i in range(0, len(arguments), ARGUMENT_PIECE)]
            if style == "whole":
                deltas.append({"tool_calls": [{"index": index, "type": "function",
                                               "function": {"name": name, "arguments": arguments}}]})
            elif style == "repeat-names":
                deltas += [{"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                            "function": {"name": name, "arguments": piece}}]} for piece in pieces]
            else:
                first = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                fragments = [first] + [{"function": {"arguments": piece}} for piece in pieces]
                for fragment in fragments:
                    if style != "no-index":
                        fragment = {"index": index, **fragment}
                    deltas.append({"tool_calls": [fragment]})
        return deltas

    def _tool_name(self, user: str, tools: list[dict]) -> str:
        names = [tool["name"] for tool in tools]
        named = [name for name in names if re.search(rf"\b{re.escape(name)}\b", user)]
        if named:
            return named[0]
        return self.options.tool_name if self.options.tool_name in names else names[0]

    def _reply_text(self, body: dict, base: dict, text: str) -> None:
        words = re.findall(r"\s*\S+", text)
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        finish = "length" if limit and len(words) > limit else "stop"
        words = words[:limit] if limit else words
        if body.get("stream"):
            deltas = [{"role": "assistant", "content": ""}] + [{"content": w} for w in words]
            self._stream(base, deltas, finish)
        else:
            self._send_whole(base, {"role": "assistant", "content": "".join(words)}, finish, len(words))

    def _send_whole(self, base: dict, message: dict, finish: str, tokens: int) -> None:
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        usage = {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}
        self._send_json(200, base | {"object": "chat.completion", "choices": [choice], "usage": usage})

    def _stream(self, base: dict, deltas: list[dict], finish: str) -> None:
        """Send SSE chunks with ``--token-delay-ms`` between them; log whether the client stayed."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunks = [base | {"object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]} for delta in deltas]
        chunks.append(base | {"object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]})
        sent = 0
        try:
            for number, chunk in enumerate(chunks):
                if self.options.break_after is not None and number > self.options.break_after:
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # mid-stream, without the terminating chunk
                    self._log({"event": "stream_end", "completed": False, "sent": sent, "total": len(chunks)})
                    return
                if number > 0:  # every word waits, the first too: time to first token is one delay
                    time.sleep(self.options.token_delay_ms / 1000)
                if number == 1 and self.options.first_token_delay_ms:
                    time.sleep(self.options.first_token_delay_ms / 1000)
                self._write_chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                sent += 1
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self._log({"event": "stream_end", "completed": False, "sent": sent, "total": len(chunks)})
            return
        self._log({"event": "stream_end", "completed": True, "sent": sent, "total": len(chunks)})

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _trailing_tool_results(messages: list[dict]) -> list[str]:
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.insert(0, str(message.get("content") or ""))
    return results


def _arguments_in(text: str) -> str | None:
    """The JSON object written in ``text`` (first "{" to last "}"), as JSON text, or None."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        arguments = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    return json.dumps(arguments) if isinstance(arguments, dict) else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as 'PORT n')")
    parser.add_argument("--log", help="append each request and each stream's end as a JSON line here")
    parser.add_argument("--model", default="tutor-test", help="the only model served")
    parser.add_argument("--reply", default="Tutor heard: {user}. What is seven plus five?",
                        help="the reply; {user} is the last user message")
    parser.add_argument("--token-delay-ms", type=float, default=20, help="pause between streamed words")
    parser.add_argument("--tool-arguments", default='{"answer": 12, "hint": "count on from seven"}',
                        help="JSON arguments of the streamed tool call")
    parser.add_argument("--tool-name", help="the tool called when the message names none (default: the first offered)")
    parser.add_argument("--tool-reply", default="Tool said: {tool}",
                        help="the reply to a follow-up request ending in tool results; {tool} is their content")
    parser.add_argument("--repeat-tool-calls", action="store_true",
                        help="answer follow-ups that end in tool results with the tool call again")
    parser.add_argument("--fail-status", type=int, help="answer every completion with this HTTP status")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--break-after", type=int, help="drop the connection after this many words of a stream")
    parser.add_argument("--flag-word", default="dragonfire",
                        help="/v1/moderations flags any input containing this word as violence")
    parser.add_argument("--no-models", action="store_true", help="answer /v1/models with 404, as some servers do")
    parser.add_argument("--tool-style", choices=("openai", "repeat-names", "whole", "no-index"), default="openai",
                        help="how streamed tool calls are fragmented (see the module's docstring)")
    parser.add_argument("--reject-null-content", action="store_true",
                        help="answer HTTP 500 to a message whose content is null (llama-cpp-python)")
    parser.add_argument("--context-tokens", type=int, help="the context window, in tokens of 4 characters")
    parser.add_argument("--overflow", choices=("error", "empty"), default="error",
                        help="a request past the window: HTTP 400 (llama.cpp) or an empty stream (llama-cpp-python)")
    parser.add_argument("--advertise", choices=("vllm", "llamacpp", "ollama"),
                        help="publish --context-tokens as that server does")
    parser.add_argument("--first-token-delay-ms", type=float, default=0,
                        help="after the headers and role chunk, wait this long before the first word")
    options = parser.parse_args(argv)
    json.loads(options.tool_arguments)  # fail at start, not mid-test

    handler = type("ConfiguredHandler", (Handler,), {"options": options})
    server = ThreadingHTTPServer(("127.0.0.1", options.port), handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
