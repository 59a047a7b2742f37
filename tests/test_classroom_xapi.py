"""xAPI statements: queued durably in the store, delivered to a real LRS process exactly once, in order."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

from voice_tutor.classroom.settings import XapiConfig, load_xapi_config
from voice_tutor.classroom.xapi import VERBS, LrsError, XapiRecorder, XapiSender, statement
from voice_tutor.config import ConfigError
from voice_tutor.events import MasteryUpdated
from voice_tutor.store import Store

SERVER = Path(__file__).with_name("xapi_lrs_server.py")
AUTH = "Basic " + b64encode(b"lrs-key:lrs-secret").decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lrs:
    def __init__(self, data: Path, port: int):
        self.data, self.port, self.process = data, port, None

    def start(self, fail_first: int = 0, tls: tuple[Path, Path] | None = None) -> None:
        extra = ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", str(self.port), "--data", str(self.data),
             "--fail-first", str(fail_first), *extra], stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout.readline().strip() == f"PORT {self.port}"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def get(self, path: str):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": AUTH})
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.loads(reply.read())


@pytest.fixture
def lrs(tmp_path):
    server = Lrs(tmp_path / "lrs.jsonl", free_port())
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "tutor.db") as opened:
        opened.ensure_learner("Ada Lovelace")
        yield opened


async def record_a_session(store: Store) -> None:
    """What a session's bus carries: two answers (the second masters the skill), then the end."""
    recorder = XapiRecorder(store, "Ada Lovelace", "arithmetic")
    await recorder.start()  # before the session's first answer
    bus: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(recorder.run(bus))
    for question, p_known, mastered in (("add-7-5", 0.8, False), ("add-8-9", 0.97, True)):
        store.record_answer("Ada Lovelace", "arithmetic/addition", question, True, p_known)
        await bus.put(MasteryUpdated(learner="Ada Lovelace", skill_id="addition", skill_name="Addition",
                                     correct=True, p_known=p_known, mastered=mastered, question_id=question,
                                     verdict="correct", response="twelve", first_try=True, p_before=0.5))
    await asyncio.sleep(0.2)
    task.cancel()
    await recorder.close(outcome="completed")


def queued(store: Store) -> list[dict]:
    return [json.loads(row[0]) for row in store.read("SELECT statement FROM xapi_outbox ORDER BY id")]


async def test_recorder_queues_pseudonymous_statements(store):
    await record_a_session(store)
    statements = queued(store)
    assert [s["verb"]["id"] for s in statements] == [
        VERBS["experienced"], VERBS["answered"], VERBS["answered"], VERBS["mastered"], VERBS["completed"]]
    pseudonym = store.learner_pseudonym("Ada Lovelace")
    assert all(s["actor"]["account"]["name"] == pseudonym for s in statements)
    assert "Ada" not in json.dumps(statements)
    answered = statements[1]
    assert answered["object"]["id"].endswith("/lessons/arithmetic/questions/add-7-5")
    assert answered["result"]["success"] is True
    assert statements[3]["object"]["id"].endswith("/lessons/arithmetic/skills/addition")
    assert len({s["id"] for s in statements}) == 5
    assert len({s["context"]["registration"] for s in statements}) == 1


async def test_lrs_down_then_up_delivers_exactly_once_in_order(store, lrs):
    await record_a_session(store)
    ids = [s["id"] for s in queued(store)]
    config = XapiConfig(endpoint=f"http://127.0.0.1:{lrs.port}/xapi/", username="lrs-key",
                        password="lrs-secret", batch_size=2, timeout_s=2)
    sender = XapiSender(store, config, min_backoff_s=0.05, max_backoff_s=0.2)

    with pytest.raises(LrsError, match="unreachable"):  # nothing listening
        sender.send_pending()
    assert store.xapi_counts() == {"pending": 5, "delivered": 0}

    lrs.start(fail_first=3)  # up, but answering 503 three times
    with pytest.raises(LrsError, match="503"):
        sender.send_pending()
    assert sender.deliver(deadline_s=20) == 5
    assert store.xapi_counts() == {"pending": 0, "delivered": 5}
    assert [s["id"] for s in lrs.get("/xapi/statements")["statements"]] == ids

    # Down again mid-lesson: the next session's statements wait, then follow, after a restart.
    lrs.stop()
    await record_a_session(store)
    with pytest.raises(LrsError):
        sender.send_pending()
    lrs.start()
    assert sender.deliver(deadline_s=20) == 5
    # A crash after the LRS took a batch but before it was marked: sent again, stored once.
    raw = sqlite3.connect(store.path)
    with raw:
        raw.execute("UPDATE xapi_outbox SET delivered_at = NULL WHERE id IN (SELECT id FROM xapi_outbox ORDER BY id DESC LIMIT 3)")
    raw.close()
    assert sender.deliver(deadline_s=20) == 3
    assert sender.send_pending() == 0
    stored = lrs.get("/xapi/statements")["statements"]
    assert [s["id"] for s in stored] == [s["id"] for s in queued(store)]
    assert len(stored) == 10 == len({s["id"] for s in stored})


def test_lrs_refuses_bad_statements_and_credentials(lrs, tmp_path):
    lrs.start()
    good = statement("answered", pseudonym="p-1", homepage="https://school.example", lesson_id="arithmetic",
                     kind="question", item="add-7-5", success=True)
    good["id"] = "0b7f1d3e-8c1a-4c7e-9a4b-2f3e4d5c6b7a"

    def post(body, auth=AUTH, version="1.0.3"):
        headers = {"Content-Type": "application/json", "Authorization": auth}
        if version:
            headers["X-Experience-API-Version"] = version
        request = urllib.request.Request(f"http://127.0.0.1:{lrs.port}/xapi/statements",
                                         data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return reply.status
        except urllib.error.HTTPError as error:
            return error.code

    bad_verb = {**good, "verb": {"id": "answered"}}
    no_actor = {k: v for k, v in good.items() if k != "actor"}
    bad_result = {**good, "result": {"success": "yes"}}
    two_ids = {**good, "actor": {"mbox": "mailto:a@b.c", "account": good["actor"]["account"]}}
    for bad in (bad_verb, no_actor, bad_result, two_ids, {**good, "id": "42"}):
        assert post([bad]) == 400
    assert post([good], auth="Basic bm9ib2R5Og==") == 401
    assert post([good], version=None) == 400
    assert post([good]) == 200
    assert post([good]) == 200  # the same statement again: not stored twice
    assert post([{**good, "result": {"success": False}}]) == 409
    assert [s["id"] for s in lrs.get("/xapi/statements")["statements"]] == [good["id"]]


def test_xapi_config_from_the_same_toml_file(tmp_path):
    path = tmp_path / "tutor.toml"
    path.write_text('[dialogue]\nlesson = "fractions"\n[xapi]\nendpoint = "https://lrs.example/xapi/"\n'
                    'username = "key"\npassword = "s3cret"\n')
    config = load_xapi_config(path)
    assert config.endpoint == "https://lrs.example/xapi/" and config.password == "s3cret"
    assert "s3cret" not in repr(config)
    path.write_text('[xapi]\nendpint = "x"\n')
    with pytest.raises(ConfigError, match=r"\[xapi\].endpint: unknown key"):
        load_xapi_config(path)
    assert load_xapi_config(None).endpoint is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
async def test_statements_go_over_https_with_the_configured_ca(store, lrs, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    lrs.start(tls=(cert, key))
    await record_a_session(store)
    endpoint = f"https://127.0.0.1:{lrs.port}/xapi"
    untrusted = XapiSender(store, XapiConfig(endpoint=endpoint, username="lrs-key", password="lrs-secret"))
    with pytest.raises(LrsError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusted.send_pending()
    sender = XapiSender(store, XapiConfig(endpoint=endpoint, username="lrs-key", password="lrs-secret",
                                          ca_file=str(cert)))
    assert sender.send_pending() == 5
    request = urllib.request.Request(f"{endpoint}/statements", headers={"Authorization": AUTH})
    with urllib.request.urlopen(request, timeout=5, context=ssl.create_default_context(cafile=str(cert))) as reply:
        assert [s["id"] for s in json.loads(reply.read())["statements"]] == [s["id"] for s in queued(store)]
