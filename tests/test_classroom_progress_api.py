"""The read-only progress API over real HTTP on 127.0.0.1, with scoped bearer tokens."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from test_classroom_reports import PLAN, seed
from voice_tutor.classroom.progress_api import ProgressApi
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
