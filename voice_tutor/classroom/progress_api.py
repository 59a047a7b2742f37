"""A read-only JSON HTTP API of progress, for learning systems and dashboards, with bearer tokens.

::

    GET /api/v1/classes                       the classes the token may see
    GET /api/v1/classes/{class}               its teacher, and each learner's summary
    GET /api/v1/learners/{name}               one learner's mastery, gaps, time on task, reviews due

Every request needs ``Authorization: Bearer <token>``; a token is scoped to
some classes (a learner is visible through any class they are in) or to
``"*"`` (everything).  Unknown or missing tokens get 401, a learner or class
outside the token's scope 404 (the same as one that does not exist, so a
token cannot probe for names), any method but GET/HEAD 405.  Tokens are
compared in constant time and never logged.

    api = ProgressApi(store, {"s3cret-teacher-token": {"5B"}, "admin-token": "*"})
    server = api.serve("127.0.0.1", 8766)     # a ThreadingHTTPServer; server.serve_forever() in a thread
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

from voice_tutor.classroom import analytics
from voice_tutor.store import ClassNotFound, LearnerNotFound, Store

log = logging.getLogger(__name__)
Scope = str | set[str] | frozenset[str]


class ProgressApi:
    def __init__(self, store: Store, tokens: Mapping[str, Scope]):
        if not tokens:
            raise ValueError("the progress API needs at least one token")
        self._store = store
        self._tokens = {token: scope for token, scope in tokens.items()}

    def _scope(self, header: str | None) -> Scope | None:
        if not header or not header.startswith("Bearer "):
            return None
        given = header[len("Bearer "):].strip().encode()
        found = None
        for token, scope in self._tokens.items():  # every token compared: timing does not tell which
            if hmac.compare_digest(given, token.encode()):
                found = scope
        return found

    def _classes(self, scope: Scope) -> list:
        rooms = self._store.list_classes()
        return rooms if scope == "*" else [room for room in rooms if room.name in scope]

    def learner(self, name: str, now: datetime | None = None) -> dict:
        now = now or datetime.now(UTC)
        self._store.get_learner(name)
        learners = [name]
        sessions = analytics.time_on_task(self._store, learners)
        return {
            "learner": name,
            "mastery": [{k: r[k] for k in ("skill", "p_known", "mastered", "updated_at")}
                        for r in analytics.current_mastery(self._store, learners)],
            "knowledge_gaps": [{k: g[k] for k in ("skill", "p_known", "answers", "accuracy")}
                               for g in analytics.knowledge_gaps(self._store, learners)],
            "time_on_task": {"sessions": len(sessions), "minutes": round(sum(s["minutes"] for s in sessions), 2)},
            "reviews_due": [{"skill": r["skill"], "due": r["due"]}
                            for r in analytics.reviews_due(self._store, learners, now)],
        }

    def handle(self, path: str, authorization: str | None) -> tuple[int, dict]:
        scope = self._scope(authorization)
        if scope is None:
            return 401, {"error": "a valid bearer token is required"}
        parts = [unquote(p) for p in urlparse(path).path.strip("/").split("/")]
        if parts[:2] != ["api", "v1"]:
            return 404, {"error": "not found"}
        rest = parts[2:]
        visible = self._classes(scope)
        try:
            if rest == ["classes"]:
                return 200, {"classes": [{"name": r.name, "teacher": r.teacher, "learners": len(r.members)}
                                         for r in visible]}
            if len(rest) == 2 and rest[0] == "classes":
                room = next((r for r in visible if r.name == rest[1]), None)
                if room is None:
                    raise ClassNotFound(rest[1])
                return 200, {"class": room.name, "teacher": room.teacher,
                             "learners": [self.learner(name) for name in room.members]}
            if len(rest) == 2 and rest[0] == "learners":
                if scope != "*" and not any(rest[1] in r.members for r in visible):
                    raise LearnerNotFound(rest[1])
                return 200, self.learner(rest[1])
        except (ClassNotFound, LearnerNotFound) as error:
            return 404, {"error": str(error)}
        return 404, {"error": "not found"}

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args) -> None:  # the path only, never the headers
                log.info("progress API: %s", args[0] if args else "")

            def _send(self, code: int, body: dict, head: bool = False) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="voice-tutor progress"')
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                try:
                    code, body = api.handle(self.path, self.headers.get("Authorization"))
                except Exception:
                    log.exception("progress API failed on %s", self.path)
                    code, body = 500, {"error": "internal error"}
                self._send(code, body)

            def do_HEAD(self) -> None:
                code, body = api.handle(self.path, self.headers.get("Authorization"))
                self._send(code, body, head=True)

            def _read_only(self) -> None:
                self._send(405, {"error": "this API is read-only"})

            do_POST = do_PUT = do_PATCH = do_DELETE = _read_only

        return ThreadingHTTPServer((host, port), Handler)
