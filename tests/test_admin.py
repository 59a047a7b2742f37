"""The admin role and the progress API on the bridge's port, in process (no speech models).

A real :class:`~xr_bridge.server.BridgeServer` on 127.0.0.1 with the routes
``voice-tutor serve`` mounts (:class:`~xr_bridge.serve.Classroom` and
:class:`~xr_bridge.serve.Admin`) over a real SQLite store, queried over real
HTTP.  ``test_admin_e2e.py`` does the same against the ``voice-tutor serve``
process, and drives the admin page in Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect

from test_classroom_reports import PLAN, seed
from voice_tutor.store import LearnerNotFound, Store
from xr_bridge import protocol as p
from xr_bridge import serve as serve_module
from xr_bridge.serve import REFUSAL_DELAY_S, Admin, Classroom, _announce, run_serve
from xr_bridge.server import BridgeServer, load_ssl_context

SECRET = b"admin-tests-secret-0123456789"
TEACHER = "teacher-password-1"
ADMIN = "admin-password-1"


def get(base: str, path: str, password: str | None = None, *, tls: ssl.SSLContext | None = None,
        **params) -> tuple[int, object]:  # fmt: skip
    """``GET path?params`` with the password as a bearer token (blocking: call it in a thread)."""
    url = f"{base}{path}" + (f"?{urlencode(params)}" if params else "")
    headers = {"Authorization": f"Bearer {password}"} if password else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10, context=tls) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if error.headers.get_content_type() == "application/json" else body


async def aget(*args, **params) -> tuple[int, object]:
    return await asyncio.to_thread(get, *args, **params)


async def bridge(store: Store | None, tokens: dict | None = None, retention_days: int | None = None, tls=None):
    classroom = Classroom(SECRET, "demo", TEACHER, kiosk=False, ttl_s=600, admin_password=ADMIN)
    admin = Admin(classroom, ADMIN, store, progress_tokens=tokens, retention_days=retention_days)
    server = BridgeServer(SECRET, port=0, routes=classroom.routes() | admin.routes(), ssl=tls)
    classroom.server = server
    await server.start()
    return server


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "tutor.db") as store:
        seed(store)
        store.ensure_learner("Dan Other")
        yield store


async def test_admin_routes_need_the_admin_password_and_the_teacher_routes_take_it(store):
    server = await bridge(store)
    base = server.http_url.rstrip("/")
    try:
        for password in (None, TEACHER, "wrong-password", f"{ADMIN}x"):
            started = time.monotonic()
            assert await aget(base, "/api/admin/learners", password) == (401, {"error": "wrong admin password"})
            assert time.monotonic() - started >= REFUSAL_DELAY_S * 0.9
        status, body = await aget(base, "/api/admin/learners", ADMIN)
        assert status == 200
        assert [learner["name"] for learner in body["learners"]] == [*sorted(PLAN), "Dan Other"]
        ada = body["learners"][0]
        assert ada["sessions"] == 2 and ada["classes"] == ["5B"] and ada["live_in"] is None
        assert ada["last_seen"].startswith("2026-03-")
        # An admin may do what a teacher may.
        assert await aget(base, "/api/teacher/rooms", ADMIN) == (200, {"rooms": []})
        assert await aget(base, "/api/teacher/rooms", TEACHER) == (200, {"rooms": []})
        assert (await aget(base, "/api/teacher/rooms", "wrong-password"))[0] == 401
    finally:
        await server.close()


async def test_export_delete_classes_and_purge(store):
    server = await bridge(store, retention_days=30)
    base = server.http_url.rstrip("/")
    try:
        status, export = await aget(base, "/api/admin/export", ADMIN, learner="Ben Okafor")
        assert status == 200 and export == json.loads(json.dumps(store.export_learner("Ben Okafor"))) | {
            "exported_at": export["exported_at"]
        }
        assert (await aget(base, "/api/admin/export", ADMIN, learner="Nobody")) == (
            404, {"error": "no learner named 'Nobody'"})  # fmt: skip
        assert (await aget(base, "/api/admin/export", ADMIN))[0] == 400

        # Deleting wants the name again; without it (or with another) nothing happens.
        for confirm in ({}, {"confirm": "yes"}, {"confirm": "Ada Lovelace"}):
            status, body = await aget(base, "/api/admin/delete", ADMIN, learner="Ben Okafor", **confirm)
            assert status == 400 and "confirm=" in body["error"]
        assert store.get_learner("Ben Okafor")
        assert (await aget(base, "/api/admin/delete", TEACHER, learner="Ben Okafor", confirm="Ben Okafor"))[0] == 401
        status, body = await aget(base, "/api/admin/delete", ADMIN, learner="Ben Okafor", confirm="Ben Okafor")
        assert status == 200 and body["deleted"] == "Ben Okafor"
        assert body.get("recordings_deleted", 0) == 0  # none were kept
        with pytest.raises(LearnerNotFound):
            store.get_learner("Ben Okafor")
        assert store.read("SELECT COUNT(*) FROM sessions")[0][0] == 4  # Ada's and Chloé's only
        assert (await aget(base, "/api/admin/delete", ADMIN, learner="Ben Okafor", confirm="Ben Okafor"))[0] == 404

        # Classes: create, add (a new name is created), remove.
        assert await aget(base, "/api/admin/class/create", ADMIN, **{"class": "6C", "teacher": "Mr Hale"}) == (
            200, {"name": "6C", "teacher": "Mr Hale", "learners": []})  # fmt: skip
        assert (await aget(base, "/api/admin/class/add", ADMIN, **{"class": "6C", "learner": "Zoe New"}))[1][
            "learners"] == ["Zoe New"]  # fmt: skip
        assert (await aget(base, "/api/admin/class/add", ADMIN, **{"class": "7D", "learner": "Ghost"}))[0] == 404
        with pytest.raises(LearnerNotFound):
            store.get_learner("Ghost")  # an unknown class creates no learner
        await aget(base, "/api/admin/class/add", ADMIN, **{"class": "6C", "learner": "Ada Lovelace"})
        await aget(base, "/api/admin/class/remove", ADMIN, **{"class": "6C", "learner": "Zoe New"})
        assert (await aget(base, "/api/admin/classes", ADMIN))[1] == {"classes": [
            {"name": "5B", "teacher": "Ms Rivera", "learners": ["Ada Lovelace", "Chloé Martin"]},
            {"name": "6C", "teacher": "Mr Hale", "learners": ["Ada Lovelace"]},
        ]}  # fmt: skip
        assert (await aget(base, "/api/admin/class/create", ADMIN, **{"class": "  "}))[0] == 400

        # The purge: confirm=purge, the configured retention by default.
        turns = store.read("SELECT COUNT(*) FROM turns")[0][0]
        assert (await aget(base, "/api/admin/purge", ADMIN))[0] == 400
        assert (await aget(base, "/api/admin/purge", ADMIN, days="soon", confirm="purge"))[0] == 400
        assert await aget(base, "/api/admin/purge", ADMIN, confirm="purge") == (
            200, {"deleted_turns": turns, "older_than_days": 30})  # the seed is from March 2026  # fmt: skip
        assert store.read("SELECT COUNT(*) FROM turns")[0][0] == 0
    finally:
        await server.close()


async def test_routes_answer_get_only(store):
    server = await bridge(store, tokens={"tok-all": ["*"]})
    base = server.http_url.rstrip("/")

    def call(method: str, path: str, password: str) -> tuple[int, str | None]:
        request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {password}"},
                                         method=method)  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, None
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Allow")

    try:
        for method in ("POST", "DELETE", "PUT", "HEAD"):
            assert await asyncio.to_thread(call, method, "/api/v1/classes", "tok-all") == (405, "GET")
            path = "/api/admin/delete?learner=Dan%20Other&confirm=Dan%20Other"
            assert await asyncio.to_thread(call, method, path, ADMIN) == (405, "GET")
        assert store.get_learner("Dan Other")  # never run
    finally:
        await server.close()


async def test_purge_without_a_retention_period_needs_days(store):
    server = await bridge(store)
    try:
        status, body = await aget(server.http_url.rstrip("/"), "/api/admin/purge", ADMIN, confirm="purge")
        assert status == 400 and "retention_days" in body["error"]
    finally:
        await server.close()


async def test_a_learner_in_a_live_session_is_not_deleted(store):
    server = await bridge(store)
    base = server.http_url.rstrip("/")
    token = server.make_token("room-1", "learner", "Ada Lovelace")
    async with connect(server.url) as ws:
        await ws.send(p.encode_text(p.Hello(versions=[p.PROTOCOL_VERSION], client="test")))
        await ws.recv()
        await ws.send(p.encode_text(p.Join(token=token, role="learner", name="Ada Lovelace")))
        assert isinstance(p.parse_text(await ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES), p.Joined)
        ada = (await aget(base, "/api/admin/learners", ADMIN))[1]["learners"][0]
        assert ada["live_in"] == "room-1"
        status, body = await aget(base, "/api/admin/delete", ADMIN, learner="Ada Lovelace", confirm="Ada Lovelace")
        assert status == 409 and "room-1" in body["error"]
    assert store.get_learner("Ada Lovelace")
    await server.close()


async def test_progress_api_on_the_bridge_port(store):
    server = await bridge(store, tokens={"tok-5b": ["5B"], "tok-all": ["*"]})
    base = server.http_url.rstrip("/")
    try:
        status, body = await aget(base, "/api/v1/classes", "tok-5b")
        assert status == 200 and body == {"classes": [{"name": "5B", "teacher": "Ms Rivera", "learners": 3}]}
        assert (await aget(base, "/api/v1/learners/Dan%20Other", "tok-5b"))[0] == 404
        assert (await aget(base, "/api/v1/learners/Dan%20Other", "tok-all"))[0] == 200
        assert (await aget(base, "/api/v1/learners/Dan%20Other", ADMIN))[0] == 200  # the admin sees everything
        assert (await aget(base, "/api/v1/classes", TEACHER))[0] == 401
        assert await aget(base, "/api/v1", ADMIN) == (404, {"error": "not found"})
        started = time.monotonic()
        assert (await aget(base, "/api/v1/classes", "nope"))[0] == 401
        assert time.monotonic() - started >= REFUSAL_DELAY_S * 0.9
        assert await aget(base, "/api/v1x", ADMIN) == (404, b"Not found\n")  # not under /api/v1/: a page
    finally:
        await server.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
async def test_the_api_and_the_admin_routes_over_tls(store, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = await bridge(store, tokens={"tok-5b": ["5B"]}, tls=load_ssl_context(cert, key))
    base = server.http_url.rstrip("/")
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        assert base.startswith("https://")
        assert (await aget(base, "/api/v1/classes", "tok-5b", tls=trust))[1]["classes"][0]["name"] == "5B"
        assert (await aget(base, "/api/admin/learners", ADMIN, tls=trust))[0] == 200
        with pytest.raises(urllib.error.URLError):  # an untrusted certificate: no password is sent
            await aget(base, "/api/admin/learners", ADMIN, tls=ssl.create_default_context())
    finally:
        await server.close()


async def test_without_a_learner_database_the_api_answers_503():
    server = await bridge(None, tokens={"tok-all": ["*"]})
    base = server.http_url.rstrip("/")
    try:
        for path, password in (("/api/v1/classes", "tok-all"), ("/api/v1/classes", ADMIN),
                               ("/api/admin/learners", ADMIN), ("/api/admin/classes", ADMIN)):  # fmt: skip
            status, body = await aget(base, path, password)
            assert status == 503 and "without a learner database" in body["error"], path
        assert (await aget(base, "/api/admin/learners", TEACHER))[0] == 401  # the password is checked first
        assert (await aget(base, "/api/teacher/rooms", ADMIN))[0] == 200
    finally:
        await server.close()


def serve_args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_module.add_serve_command(parser.add_subparsers())
    args = parser.parse_args(["serve"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.mark.parametrize(("options", "env", "error"), [
    ({"admin_password": "short"}, {}, "--admin-password must be at least 8 characters"),
    ({}, {"VOICE_TUTOR_ADMIN_PASSWORD": "short"}, "--admin-password must be at least 8 characters"),
    ({"teacher_password": "same-password", "admin_password": "same-password"}, {}, "must differ"),
    ({"teacher_password": "same-password"}, {"VOICE_TUTOR_ADMIN_PASSWORD": "same-password"}, "must differ"),
])  # fmt: skip
def test_serve_refuses_a_weak_or_shared_admin_password(options, env, error, monkeypatch, capsys):
    monkeypatch.delenv("VOICE_TUTOR_TEACHER_PASSWORD", raising=False)
    monkeypatch.delenv("VOICE_TUTOR_ADMIN_PASSWORD", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert run_serve(serve_args(**options)) == 2
    assert error in capsys.readouterr().err


class _Announced:
    url = "ws://127.0.0.1:8765/ws"
    port = 8765

    def make_token(self, room, role, name, ttl_s):
        return f"token-{role}"


def test_the_admin_link_carries_a_generated_password_only(capsys):
    classroom = Classroom(SECRET, "demo", TEACHER, kiosk=False, ttl_s=60, admin_password=ADMIN)
    args = serve_args(host="127.0.0.1", teacher_password=TEACHER, admin_password=ADMIN,
                      teacher_password_printed=False, admin_password_printed=True)  # fmt: skip
    _announce(_Announced(), args, "Lesson", "lesson", classroom)
    printed = capsys.readouterr().out
    assert f"  admin:     http://127.0.0.1:8765/admin.html#key={ADMIN}\n" in printed
    assert "dashboard.html\n" in printed and TEACHER not in printed
    args.admin_password_printed = False
    _announce(_Announced(), args, "Lesson", "lesson", classroom)
    printed = capsys.readouterr().out
    assert "  admin:     http://127.0.0.1:8765/admin.html\n" in printed and ADMIN not in printed
