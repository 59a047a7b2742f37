"""The read-only progress API over real HTTP on 127.0.0.1, with scoped bearer tokens."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from test_classroom_reports import PLAN, seed
from voice_tutor.classroom.progress_api import ProgressApi, scopes_from_config
from voice_tutor.store import Store


@pytest.fixture
def api(tmp_path):
    with Store.open(tmp_path / "tutor.db") as store:
        seed(store)
        store.create_class("6C", "Mr Hale")
        store.ensure_learner("Dan Other")
        store.add_to_class("6C", ["Dan Other"])
        server = ProgressApi(store, {"teacher-5b": {"5B"}, "admin": "*"}).serve("127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        server.server_close()


def call(url: str, token: str | None = None, method: str = "GET"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_progress_api_scopes_tokens(api):
    assert call(f"{api}/api/v1/classes")[0] == 401
    assert call(f"{api}/api/v1/classes", "wrong")[0] == 401
    status, body = call(f"{api}/api/v1/classes", "teacher-5b")
    assert status == 200 and body == {"classes": [{"name": "5B", "teacher": "Ms Rivera", "learners": 3}]}
    assert [c["name"] for c in call(f"{api}/api/v1/classes", "admin")[1]["classes"]] == ["5B", "6C"]

    status, body = call(f"{api}/api/v1/classes/5B", "teacher-5b")
    assert status == 200 and [learner["learner"] for learner in body["learners"]] == sorted(PLAN)
    ada = call(f"{api}/api/v1/learners/Ada%20Lovelace", "teacher-5b")[1]
    assert ada["time_on_task"] == {"sessions": 2, "minutes": 18.0}
    assert {m["skill"] for m in ada["mastery"]} == {"arithmetic/addition", "arithmetic/subtraction"}

    # Outside the token's classes looks exactly like not existing.
    assert call(f"{api}/api/v1/classes/6C", "teacher-5b")[0] == 404
    assert call(f"{api}/api/v1/learners/Dan%20Other", "teacher-5b") == (404, {"error": "no learner named 'Dan Other'"})
    assert call(f"{api}/api/v1/learners/Nobody", "teacher-5b") == (404, {"error": "no learner named 'Nobody'"})
    assert call(f"{api}/api/v1/learners/Dan%20Other", "admin")[0] == 200
    assert call(f"{api}/api/v1/learners/Ada%20Lovelace", "admin", method="DELETE")[0] == 405
    assert call(f"{api}/api/v1/learners/Ada%20Lovelace", "admin")[0] == 200


# --- the pure handler: path + Authorization header (+ method) -> status, JSON body ----------------------


@pytest.fixture
def handler(tmp_path):
    with Store.open(tmp_path / "tutor.db") as store:
        seed(store)
        store.create_class("6C", "Mr Hale")
        store.ensure_learner("Dan Other")
        store.add_to_class("6C", ["Dan Other"])
        store.ensure_learner("Eve Nowhere")  # in no class
        tokens = scopes_from_config({"tok-5b": ["5B"], "tok-both": ["5B", "6C"], "tok-all": ["*"], "tok-none": []})
        yield ProgressApi(store, tokens)


def test_handler_scopes_every_route_to_the_tokens_classes(handler):
    classes = lambda token: [c["name"] for c in handler.handle("/api/v1/classes", f"Bearer {token}")[1]["classes"]]
    assert classes("tok-5b") == ["5B"]
    assert classes("tok-both") == classes("tok-all") == ["5B", "6C"]
    assert classes("tok-none") == []
    assert handler.handle("/api/v1/classes/6C", "Bearer tok-both")[1]["learners"][0]["learner"] == "Dan Other"
    assert handler.handle("/api/v1/classes/6C", "Bearer tok-5b") == (404, {"error": "no class named '6C'"})
    # A learner in no class is seen by "*" only.
    assert handler.handle("/api/v1/learners/Eve%20Nowhere", "Bearer tok-all")[0] == 200
    for token in ("tok-5b", "tok-both", "tok-none"):
        assert handler.handle("/api/v1/learners/Eve%20Nowhere", f"Bearer {token}")[0] == 404
    # The query string is ignored; the scheme's case does not matter.
    assert handler.handle("/api/v1/classes?x=1", "bearer tok-5b")[0] == 200


def test_handler_status_codes(handler):
    assert handler.handle("/api/v1/classes", None) == (401, {"error": "a valid bearer token is required"})
    assert handler.handle("/api/v1/classes", "tok-all")[0] == 401  # no scheme
    assert handler.handle("/api/v1/classes", "Basic tok-all")[0] == 401
    assert handler.handle("/api/v1/classes", "Bearer tok-al")[0] == 401
    assert handler.handle("/api/v1/classes", "Bearer ")[0] == 401
    for path in ("/api/v1", "/api/v1/", "/api/v1/nothing", "/api/v1/classes/5B/extra", "/api/v2/classes", "/"):
        assert handler.handle(path, "Bearer tok-all") == (404, {"error": "not found"}), path
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert handler.handle("/api/v1/classes", "Bearer tok-all", method)[0] == 405
        assert handler.handle("/api/v1/classes", None, method)[0] == 405  # read-only before anything else
    assert handler.handle("/api/v1/classes", "Bearer tok-all", "HEAD")[0] == 200


def test_handler_without_a_store_answers_503_to_a_valid_token_only():
    api = ProgressApi(None, {"tok": "*"})
    status, body = api.handle("/api/v1/classes", "Bearer tok")
    assert status == 503 and "without a learner database" in body["error"]
    assert api.handle("/api/v1/classes", "Bearer wrong")[0] == 401
    assert api.handle("/api/v1/classes", "Bearer tok", "POST")[0] == 405


def test_tokens_from_the_configuration():
    assert scopes_from_config({"a": ["*"], "b": ["5B", "6C"], "c": ["5B", "*"], "d": []}) == {
        "a": "*", "b": frozenset({"5B", "6C"}), "c": "*", "d": frozenset(),
    }  # fmt: skip
    with pytest.raises(ValueError, match="at least one token"):
        ProgressApi(None, {})
    with pytest.raises(ValueError, match="empty"):
        ProgressApi(None, {"": "*"})
    # A single class name given as a string is that class, not its letters.
    assert ProgressApi(None, {"t": "5B"})._tokens == {"t": frozenset({"5B"})}


def test_standalone_server_sends_read_only_and_auth_headers(api):
    request = urllib.request.Request(f"{api}/api/v1/classes", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "GET, HEAD"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{api}/api/v1/classes", timeout=10)
    assert refused.value.code == 401 and refused.value.headers["WWW-Authenticate"].startswith("Bearer")
    head = urllib.request.Request(f"{api}/api/v1/classes", headers={"Authorization": "Bearer admin"}, method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as reply:
        assert reply.status == 200 and reply.read() == b""
