"""A small Learning Record Store for the tests: a real HTTP server process on 127.0.0.1.

    python tests/xapi_lrs_server.py --port 0 --data FILE [--fail-first N] [--user U --password P]

prints ``PORT <n>`` once listening.  ``POST /xapi/statements`` (a statement
or a list) checks Basic auth, the ``X-Experience-API-Version`` header and
the statement structure (actor, verb with an IRI id, object with an IRI
id, UUID ids, ISO 8601 timestamps, result types), stores them in order in
``FILE`` (JSON lines, so a restarted server keeps them) and answers the ids.
A statement id it already holds with the same content is not stored again;
with other content the batch is refused with 409.  The first N requests (and
any after ``POST /control {"fail_next": N}``) get 503.  ``GET
/xapi/statements`` answers ``{"statements": [...]}`` in stored order and
``GET /stats`` the request counts.  ``--tls-cert/--tls-key`` serve HTTPS.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import ssl
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)
IRI = re.compile(r"^[a-z][a-z0-9+.-]*:[^\s]+$", re.I)
VERSIONS = ("1.0.0", "1.0.1", "1.0.2", "1.0.3")


class Invalid(ValueError):
    pass


def _lang_map(value, where: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Invalid(f"{where} must be a language map")


def validate_actor(actor, where: str = "actor") -> None:
    if not isinstance(actor, dict):
        raise Invalid(f"{where} must be an object")
    if actor.get("objectType", "Agent") not in ("Agent", "Group"):
        raise Invalid(f"{where}.objectType must be Agent or Group")
    ifis = [k for k in ("mbox", "mbox_sha1sum", "openid", "account") if k in actor]
    if len(ifis) != 1:
        raise Invalid(f"{where} needs exactly one inverse functional identifier, has {ifis}")
    if "account" in actor:
        account = actor["account"]
        if not isinstance(account, dict) or set(account) != {"homePage", "name"}:
            raise Invalid(f"{where}.account needs homePage and name only")
        if not IRI.match(str(account["homePage"])) or not isinstance(account["name"], str) or not account["name"]:
            raise Invalid(f"{where}.account.homePage must be an IRL and name a string")
    if "mbox" in actor and not str(actor["mbox"]).startswith("mailto:"):
        raise Invalid(f"{where}.mbox must be a mailto IRI")


def _timestamp(value, where: str) -> None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{where} must be an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise Invalid(f"{where} must have a time zone")


def validate(statement) -> None:
    if not isinstance(statement, dict):
        raise Invalid("a statement must be an object")
    allowed = {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority",
               "version", "attachments"}
    if set(statement) - allowed:
        raise Invalid(f"unknown statement properties {sorted(set(statement) - allowed)}")
    for required in ("actor", "verb", "object"):
        if required not in statement:
            raise Invalid(f"statement is missing {required}")
    if "id" in statement and not UUID.match(str(statement["id"])):
        raise Invalid("id must be a UUID")
    validate_actor(statement["actor"])
    verb = statement["verb"]
    if not isinstance(verb, dict) or not IRI.match(str(verb.get("id", ""))):
        raise Invalid("verb.id must be an IRI")
    if "display" in verb:
        _lang_map(verb["display"], "verb.display")
    obj = statement["object"]
    if not isinstance(obj, dict):
        raise Invalid("object must be an object")
    if obj.get("objectType", "Activity") == "Activity":
        if not IRI.match(str(obj.get("id", ""))):
            raise Invalid("object.id must be an IRI")
        definition = obj.get("definition", {})
        if "name" in definition:
            _lang_map(definition["name"], "object.definition.name")
        if "type" in definition and not IRI.match(str(definition["type"])):
            raise Invalid("object.definition.type must be an IRI")
    result = statement.get("result", {})
    if not isinstance(result, dict):
        raise Invalid("result must be an object")
    for key in ("success", "completion"):
        if key in result and not isinstance(result[key], bool):
            raise Invalid(f"result.{key} must be a boolean")
    if "score" in result:
        scaled = result["score"].get("scaled")
        if scaled is not None and (isinstance(scaled, bool) or not -1 <= scaled <= 1):
            raise Invalid("result.score.scaled must be in [-1, 1]")
    if "duration" in result and not re.match(r"^P(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?$",
                                              str(result["duration"])):
        raise Invalid("result.duration must be an ISO 8601 duration")
    context = statement.get("context", {})
    if "registration" in context and not UUID.match(str(context["registration"])):
        raise Invalid("context.registration must be a UUID")
    if "timestamp" in statement:
        _timestamp(statement["timestamp"], "timestamp")


class Lrs:
    def __init__(self, data: Path, fail_first: int, user: str, password: str):
        self.data = data
        self.fail_next = fail_first
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.lock = threading.Lock()
        self.requests = {"total": 0, "failed_503": 0, "rejected": 0, "accepted": 0}
        self.statements: dict[str, dict] = {}
        self.order: list[str] = []
        if data.exists():
            for line in data.read_text().splitlines():
                statement = json.loads(line)
                self.statements[statement["id"]] = statement
                self.order.append(statement["id"])


def make_handler(lrs: Lrs):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _reply(self, code: int, body=None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Experience-API-Version", "1.0.3")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            length = int(self.headers.get("Content-Length", 0))
            return json.loads(self.rfile.read(length) or b"null")

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            with lrs.lock:
                if path == "/stats":
                    return self._reply(200, {**lrs.requests, "stored": len(lrs.order)})
                if path == "/xapi/statements":
                    if self.headers.get("Authorization") != lrs.auth:
                        return self._reply(401, {"error": "bad credentials"})
                    return self._reply(200, {"statements": [lrs.statements[i] for i in lrs.order]})
            self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            if path == "/control":
                with lrs.lock:
                    lrs.fail_next = int(self._body().get("fail_next", 0))
                return self._reply(200, {"fail_next": lrs.fail_next})
            if path != "/xapi/statements":
                return self._reply(404, {"error": "not found"})
            with lrs.lock:
                lrs.requests["total"] += 1
                if lrs.fail_next > 0:
                    lrs.fail_next -= 1
                    lrs.requests["failed_503"] += 1
                    return self._reply(503, {"error": "down for maintenance"})
                if self.headers.get("Authorization") != lrs.auth:
                    lrs.requests["rejected"] += 1
                    return self._reply(401, {"error": "bad credentials"})
                if self.headers.get("X-Experience-API-Version") not in VERSIONS:
                    lrs.requests["rejected"] += 1
                    return self._reply(400, {"error": "missing or unknown X-Experience-API-Version"})
                try:
                    body = self._body()
                    batch = body if isinstance(body, list) else [body]
                    for statement in batch:
                        validate(statement)
                        if "id" not in statement:
                            raise Invalid("this LRS wants ids set by the client")
                except (Invalid, ValueError, AttributeError) as error:
                    lrs.requests["rejected"] += 1
                    return self._reply(400, {"error": str(error)})
                for statement in batch:
                    held = lrs.statements.get(statement["id"])
                    if held is not None and held != statement:
                        lrs.requests["rejected"] += 1
                        return self._reply(409, {"error": f"statement {statement['id']} conflicts"})
                new = [s for s in batch if s["id"] not in lrs.statements]
                with lrs.data.open("a") as handle:
                    for statement in new:
                        handle.write(json.dumps(statement) + "\n")
                for statement in new:
                    lrs.statements[statement["id"]] = statement
                    lrs.order.append(statement["id"])
                lrs.requests["accepted"] += 1
                return self._reply(200, [s["id"] for s in batch])

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--user", default="lrs-key")
    parser.add_argument("--password", default="lrs-secret")
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (and --tls-key)")
    parser.add_argument("--tls-key", type=Path)
    args = parser.parse_args()
    lrs = Lrs(args.data, args.fail_first, args.user, args.password)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(lrs))
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
