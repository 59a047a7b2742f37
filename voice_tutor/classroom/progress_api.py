"""A read-only JSON HTTP API of progress, for learning systems and dashboards, with bearer tokens.

::

    GET /api/v1/classes                       the classes the token may see
    GET /api/v1/classes/{class}               its teacher, and each learner's summary
    GET /api/v1/learners/{name}               one learner's mastery, gaps, time on task, reviews due

Every request needs ``Authorization: Bearer <token>``; a token is scoped to
some classes (a learner is visible through any class they are in) or to
``"*"`` (everything).  Unknown or missing tokens get 401, a learner or class
outside the token's scope 404 (the same as one that does not exist, so a
token cannot probe for names), any method but GET/HEAD 405, and 503 when
there is no learner database behind the API.  Tokens are compared in
constant time and never logged.

:meth:`ProgressApi.handle` is the whole API: method, path and Authorization
header in, status and JSON body out, with no I/O but the store's reads.
``voice-tutor serve`` mounts it at ``/api/v1`` on its own port (with the
``[progress_api] tokens`` of the configuration and the admin password);
:meth:`ProgressApi.serve` wraps it in a standalone ``ThreadingHTTPServer``::

    api = ProgressApi(store, {"s3cret-teacher-token": {"5B"}, "admin-token": "*"})
    server = api.serve("127.0.0.1", 8766)     # server.serve_forever() in a thread
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from voice_tutor.classroom import analytics
from voice_tutor.store import ClassNotFound, LearnerNotFound, Store

log = logging.getLogger(__name__)
Scope = str | set[str] | frozenset[str]
"""``"*"`` (every class and learner) or the names of the classes a token may see."""

PREFIX = "/api/v1"
READ_METHODS = frozenset({"GET", "HEAD"})
NO_STORE = "serve was started without a learner database (--db), so there is no progress to read"


def scopes_from_config(tokens: Mapping[str, Iterable[str]]) -> dict[str, Scope]:
    """``[progress_api] tokens`` (token → class names, ``["*"]`` for all) as :class:`ProgressApi` scopes."""
    return {token: _scope(frozenset(classes)) for token, classes in tokens.items()}


class ProgressApi:
    """The progress API over ``store`` (None: every authorized request is answered 503)."""

    def __init__(self, store: Store | None, tokens: Mapping[str, Scope]):
        if not tokens:
            raise ValueError("the progress API needs at least one token")
        if any(not token for token in tokens):
            raise ValueError("a progress API token must not be empty")
        self._store = store
        self._tokens = {token: _scope(scope) for token, scope in tokens.items()}

    def _scope(self, header: str | None) -> Scope | None:
        if not header or header[:7].lower() != "bearer ":
            return None
        given = header[7:].strip().encode()
        found = None
        for token, scope in self._tokens.items():  # every token compared: timing does not tell which
            if hmac.compare_digest(given, token.encode()):
                found = scope
        return found

    def _classes(self, store: Store, scope: Scope) -> list:
        rooms = store.list_classes()
        return rooms if scope == "*" else [room for room in rooms if room.name in scope]

    def learner(self, name: str, now: datetime | None = None) -> dict:
        """One learner's progress (:class:`~voice_tutor.store.LearnerNotFound` if unknown)."""
        if self._store is None:
            raise RuntimeError(NO_STORE)
        return _learner(self._store, name, now or datetime.now(UTC))

    def handle(self, path: str, authorization: str | None, method: str = "GET") -> tuple[int, dict]:
        """One request: its path (a query is ignored), ``Authorization`` header and method → status, JSON body."""
        if method.upper() not in READ_METHODS:
            return 405, {"error": "this API is read-only: GET or HEAD"}
        scope = self._scope(authorization)
        if scope is None:
            return 401, {"error": "a valid bearer token is required"}
        store = self._store
        if store is None:
            return 503, {"error": NO_STORE}
        parts = [unquote(p) for p in urlsplit(path).path.strip("/").split("/")]
        if parts[:2] != ["api", "v1"]:
            return 404, {"error": "not found"}
        rest = parts[2:]
        now = datetime.now(UTC)
        try:
            if rest == ["classes"]:
                visible = self._classes(store, scope)
                return 200, {"classes": [{"name": r.name, "teacher": r.teacher, "learners": len(r.members)}
                                         for r in visible]}  # fmt: skip
            if len(rest) == 2 and rest[0] == "classes":
                room = next((r for r in self._classes(store, scope) if r.name == rest[1]), None)
                if room is None:
                    raise ClassNotFound(rest[1])
                return 200, {"class": room.name, "teacher": room.teacher,
                             "learners": [_learner(store, name, now) for name in room.members]}  # fmt: skip
            if len(rest) == 2 and rest[0] == "learners":
                if scope != "*" and not any(rest[1] in r.members for r in self._classes(store, scope)):
                    raise LearnerNotFound(rest[1])
                return 200, _learner(store, rest[1], now)
        except (ClassNotFound, LearnerNotFound) as error:
            return 404, {"error": str(error)}
        return 404, {"error": "not found"}

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        """A standalone HTTP server of :meth:`handle` (``serve_forever()`` it in a thread)."""
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args) -> None:  # the request line only, never the headers
                log.info("progress API: %s", args[0] if args else "")

            def _answer(self) -> None:
                try:
                    code, body = api.handle(self.path, self.headers.get("Authorization"), self.command)
                except Exception:
                    log.exception("progress API failed on %s", self.path)
                    code, body = 500, {"error": "internal error"}
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(code)
                for name, value in response_headers(code, len(data)).items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        return ThreadingHTTPServer((host, port), Handler)


def _scope(scope: Scope) -> Scope:
    if isinstance(scope, str):  # "*", or a single class's name
        return "*" if scope == "*" else frozenset({scope})
    return "*" if "*" in scope else frozenset(scope)


def response_headers(status: int, length: int) -> dict[str, str]:
    """The headers of an API answer of ``length`` bytes of JSON."""
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": str(length),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="voice-tutor progress"'
    if status == 405:
        headers["Allow"] = "GET, HEAD"
    return headers


def _learner(store: Store, name: str, now: datetime) -> dict:
    store.get_learner(name)
    learners = [name]
    sessions = analytics.time_on_task(store, learners)
    return {
        "learner": name,
        "mastery": [{k: r[k] for k in ("skill", "p_known", "mastered", "updated_at")}
                    for r in analytics.current_mastery(store, learners)],
        "knowledge_gaps": [{k: g[k] for k in ("skill", "p_known", "answers", "accuracy")}
                           for g in analytics.knowledge_gaps(store, learners)],
        "time_on_task": {"sessions": len(sessions), "minutes": round(sum(s["minutes"] for s in sessions), 2)},
        "reviews_due": [{"skill": r["skill"], "due": r["due"]}
                        for r in analytics.reviews_due(store, learners, now)],
    }  # fmt: skip
