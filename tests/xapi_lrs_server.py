"""A small Learning Record Store for the tests: a real HTTP server process on 127.0.0.1.

    python tests/xapi_lrs_server.py --port 0 --data FILE [--fail-first N] [--user U --password P]

prints ``PORT <n>`` once listening.  ``POST /xapi/statements`` (a statement
or a list) checks Basic auth, the ``X-Experience-API-Version`` header and
each statement strictly, as a real LRS does, against xAPI 1.0.3 (no
property the spec does not define; actor with one inverse functional
identifier; verb and activity ids IRIs; language maps with RFC 5646 tags;
result types, score.scaled in [-1, 1] and raw within min/max, ISO 8601
durations; extension keys IRIs; UUID ids and registration; timestamps with
a zone), stores them in order in
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


LANGUAGE_TAG = re.compile(r"^[a-z]{2,8}(?:-[a-z0-9]{1,8})*$", re.I)
DURATION = re.compile(r"^P(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?$")
INTERACTION_TYPES = {"true-false", "choice", "fill-in", "long-fill-in", "matching", "performance", "sequencing",
                     "likert", "numeric", "other"}


def _only(value, allowed: set[str], where: str) -> None:
    """xAPI 1.0.3 (2.2): an LRS rejects a statement with properties the spec does not define."""
    if not isinstance(value, dict):
        raise Invalid(f"{where} must be an object")
    if unknown := sorted(set(value) - allowed):
        raise Invalid(f"{where} has properties xAPI does not define: {unknown}")


def _iri(value, where: str) -> None:
    if not isinstance(value, str) or not IRI.match(value):
        raise Invalid(f"{where} must be an IRI")


def _lang_map(value, where: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Invalid(f"{where} must be a language map")
    for tag in value:
        if not LANGUAGE_TAG.match(tag):
            raise Invalid(f"{where} has {tag!r}, not an RFC 5646 language tag")


def _extensions(value, where: str) -> None:
    if not isinstance(value, dict):
        raise Invalid(f"{where} must be an object")
    for key in value:
        _iri(key, f"{where} key {key!r}")


def _number(value, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{where} must be a number")


def validate_actor(actor, where: str = "actor") -> None:
    _only(actor, {"objectType", "name", "mbox", "mbox_sha1sum", "openid", "account", "member"}, where)
    kind = actor.get("objectType", "Agent")
    if kind not in ("Agent", "Group"):
        raise Invalid(f"{where}.objectType must be Agent or Group")
    if "name" in actor and not isinstance(actor["name"], str):
        raise Invalid(f"{where}.name must be a string")
    ifis = [k for k in ("mbox", "mbox_sha1sum", "openid", "account") if k in actor]
    if kind == "Group" and not ifis:
        members = actor.get("member")
        if not isinstance(members, list) or not members:
            raise Invalid(f"{where}: an anonymous group needs members")
    elif len(ifis) != 1:
        raise Invalid(f"{where} needs exactly one inverse functional identifier, has {ifis}")
    if kind == "Agent" and "member" in actor:
        raise Invalid(f"{where}: an agent has no members")
    for index, member in enumerate(actor.get("member", [])):
        validate_actor(member, f"{where}.member[{index}]")
        if member.get("objectType", "Agent") != "Agent":
            raise Invalid(f"{where}.member[{index}] must be an Agent")
    if "account" in actor:
        account = actor["account"]
        if not isinstance(account, dict) or set(account) != {"homePage", "name"}:
            raise Invalid(f"{where}.account needs homePage and name only")
        if not IRI.match(str(account["homePage"])) or not isinstance(account["name"], str) or not account["name"]:
            raise Invalid(f"{where}.account.homePage must be an IRL and name a string")
    if "mbox" in actor and not re.match(r"^mailto:[^@\s]+@[^@\s]+$", str(actor["mbox"])):
        raise Invalid(f"{where}.mbox must be a mailto IRI")
    if "mbox_sha1sum" in actor and not re.match(r"^[0-9a-f]{40}$", str(actor["mbox_sha1sum"]), re.I):
        raise Invalid(f"{where}.mbox_sha1sum must be a SHA-1 hex digest")
    if "openid" in actor:
        _iri(actor["openid"], f"{where}.openid")


def _timestamp(value, where: str) -> None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{where} must be an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise Invalid(f"{where} must have a time zone")


def _activity(activity, where: str) -> None:
    _only(activity, {"objectType", "id", "definition"}, where)
    if activity.get("objectType", "Activity") != "Activity":
        raise Invalid(f"{where}.objectType must be Activity")
    _iri(activity.get("id"), f"{where}.id")
    if "definition" not in activity:
        return
    definition = activity["definition"]
    _only(definition, {"name", "description", "type", "moreInfo", "extensions", "interactionType",
                       "correctResponsesPattern", "choices", "scale", "source", "target", "steps"},
          f"{where}.definition")
    for key in ("name", "description"):
        if key in definition:
            _lang_map(definition[key], f"{where}.definition.{key}")
    for key in ("type", "moreInfo"):
        if key in definition:
            _iri(definition[key], f"{where}.definition.{key}")
    if "extensions" in definition:
        _extensions(definition["extensions"], f"{where}.definition.extensions")
    if "interactionType" in definition and definition["interactionType"] not in INTERACTION_TYPES:
        raise Invalid(f"{where}.definition.interactionType is not an xAPI interaction type")


def _result(result) -> None:
    _only(result, {"score", "success", "completion", "response", "duration", "extensions"}, "result")
    for key in ("success", "completion"):
        if key in result and not isinstance(result[key], bool):
            raise Invalid(f"result.{key} must be a boolean")
    if "response" in result and not isinstance(result["response"], str):
        raise Invalid("result.response must be a string")
    if "score" in result:
        score = result["score"]
        _only(score, {"scaled", "raw", "min", "max"}, "result.score")
        for key, value in score.items():
            _number(value, f"result.score.{key}")
        if "scaled" in score and not -1 <= score["scaled"] <= 1:
            raise Invalid("result.score.scaled must be in [-1, 1]")
        if "min" in score and "max" in score and score["min"] > score["max"]:
            raise Invalid("result.score.min must not exceed max")
        if "raw" in score and not (score.get("min", score["raw"]) <= score["raw"] <= score.get("max", score["raw"])):
            raise Invalid("result.score.raw must lie between min and max")
    if "duration" in result and not DURATION.match(str(result["duration"])):
        raise Invalid("result.duration must be an ISO 8601 duration")
    if "extensions" in result:
        _extensions(result["extensions"], "result.extensions")


def _context(context, object_type: str) -> None:
    _only(context, {"registration", "instructor", "team", "contextActivities", "revision", "platform",
                    "language", "statement", "extensions"}, "context")
    if "registration" in context and not UUID.match(str(context["registration"])):
        raise Invalid("context.registration must be a UUID")
    if "instructor" in context:
        validate_actor(context["instructor"], "context.instructor")
    if "team" in context:
        validate_actor(context["team"], "context.team")
        if context["team"].get("objectType") != "Group":
            raise Invalid("context.team must be a Group")
    for key in ("revision", "platform"):
        if key in context:
            if not isinstance(context[key], str):
                raise Invalid(f"context.{key} must be a string")
            if object_type != "Activity":
                raise Invalid(f"context.{key} is only for statements about an Activity")
    if "language" in context and not (isinstance(context["language"], str)
                                      and LANGUAGE_TAG.match(context["language"])):
        raise Invalid("context.language must be an RFC 5646 language tag")
    if "contextActivities" in context:
        activities = context["contextActivities"]
        _only(activities, {"parent", "grouping", "category", "other"}, "context.contextActivities")
        for key, value in activities.items():
            for index, activity in enumerate(value if isinstance(value, list) else [value]):
                _activity(activity, f"context.contextActivities.{key}[{index}]")
    if "extensions" in context:
        _extensions(context["extensions"], "context.extensions")


def validate(statement) -> None:
    """A statement as xAPI 1.0.3 defines it (Data 2.2-2.4); Invalid names the first problem."""
    if not isinstance(statement, dict):
        raise Invalid("a statement must be an object")
    _only(statement, {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority",
                      "version", "attachments"}, "statement")
    for required in ("actor", "verb", "object"):
        if required not in statement:
            raise Invalid(f"statement is missing {required}")
    if "id" in statement and not UUID.match(str(statement["id"])):
        raise Invalid("id must be a UUID")
    if "version" in statement and not re.match(r"^1\.0(?:\.\d+)?$", str(statement["version"])):
        raise Invalid("version must be 1.0.x")
    validate_actor(statement["actor"])
    verb = statement["verb"]
    _only(verb, {"id", "display"}, "verb")
    _iri(verb.get("id"), "verb.id")
    if "display" in verb:
        _lang_map(verb["display"], "verb.display")
    obj = statement["object"]
    if not isinstance(obj, dict):
        raise Invalid("object must be an object")
    object_type = obj.get("objectType", "Activity")
    if object_type == "Activity":
        _activity(obj, "object")
    elif object_type in ("Agent", "Group"):
        validate_actor(obj, "object")
    elif object_type == "StatementRef":
        _only(obj, {"objectType", "id"}, "object")
        if not UUID.match(str(obj.get("id", ""))):
            raise Invalid("object.id of a StatementRef must be a UUID")
    else:
        raise Invalid(f"object.objectType {object_type!r} is not one this LRS takes")
    if "result" in statement:
        _result(statement["result"])
    if "context" in statement:
        _context(statement["context"], object_type)
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
