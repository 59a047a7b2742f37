"""The admin role and the progress API in the real ``voice-tutor serve`` process, over real HTTP and in Chromium.

One server for the module: a learner database seeded through the Store API
(class 5B with three learners, Dan in 6C, Zed in no class) named by the
configuration's ``[dialogue] store``, ``[progress_api] tokens``, a teacher and an admin password.  The API is
queried with urllib; then an admin logs in on ``/admin.html`` in headless
Chromium, exports a learner, deletes one after confirming (the store no longer
has them), and opens the teacher dashboard with the same login.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_fixtures import start_serve, stop_serve
from test_admin import get
from test_classroom_reports import PLAN, seed
from test_dashboard_e2e import ARTIFACTS, CHROMIUM, chromium_args
from voice_tutor.store import LearnerNotFound, Store

SECRET = "admin-e2e-secret-0123456789"
TEACHER = "teacher-pw-e2e-1"
ADMIN = "admin-pw-e2e-1"
CONFIG = """\
[progress_api.tokens]
"tok-5b" = ["5B"]
"tok-all" = ["*"]

[privacy]
retention_days = 36500
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("admin-e2e")
    db = root / "tutor.db"
    with Store.open(db) as store:
        seed(store)
        store.create_class("6C", "Mr Hale")
        for name in ("Dan Other", "Zed Leaving"):
            store.ensure_learner(name)
        store.add_to_class("6C", ["Dan Other"])
        session = store.start_session("Zed Leaving", "arithmetic")
        store.add_turn(session, "learner", "my secret answer")
        store.end_session(session)
    config = root / "voice-tutor.toml"
    config.write_text(CONFIG + f"\n[dialogue]\nstore = {json.dumps(str(db))}\n")  # the database by configuration
    process, links = start_serve(root / "xdg", SECRET, "--config", str(config),
                                 "--teacher-password", TEACHER, "--admin-password", ADMIN)  # fmt: skip
    base = links["dashboard"].removesuffix("dashboard.html").rstrip("/")
    yield base, db
    errors = stop_serve(process)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors, errors
    for secret in (TEACHER, ADMIN, "tok-5b", "tok-all"):
        assert secret not in errors


@pytest.mark.slow
def test_progress_api_and_admin_routes_over_http(served):
    base, _ = served
    assert get(base, "/api/v1/classes", "tok-5b") == (200, {"classes": [
        {"name": "5B", "teacher": "Ms Rivera", "learners": 3}]})  # fmt: skip
    assert [c["name"] for c in get(base, "/api/v1/classes", "tok-all")[1]["classes"]] == ["5B", "6C"]
    assert [c["name"] for c in get(base, "/api/v1/classes", ADMIN)[1]["classes"]] == ["5B", "6C"]
    status, body = get(base, "/api/v1/classes/5B", "tok-5b")
    assert status == 200 and [learner["learner"] for learner in body["learners"]] == sorted(PLAN)
    assert get(base, "/api/v1/learners/Ada%20Lovelace", "tok-5b")[1]["time_on_task"] == {"sessions": 2, "minutes": 18.0}
    assert get(base, "/api/v1/learners/Dan%20Other", "tok-5b") == (404, {"error": "no learner named 'Dan Other'"})
    assert get(base, "/api/v1/learners/Dan%20Other", "tok-all")[0] == 200
    for password in (None, "wrong-token", TEACHER):
        assert get(base, "/api/v1/classes", password)[0] == 401

    # The teacher's password opens the dashboard's routes, never the admin's; the admin's opens both.
    assert get(base, "/api/admin/learners", TEACHER) == (401, {"error": "wrong admin password"})
    assert get(base, "/api/admin/delete", TEACHER, learner="Dan Other", confirm="Dan Other")[0] == 401
    assert get(base, "/api/teacher/rooms", TEACHER) == (200, {"rooms": []})
    assert get(base, "/api/teacher/rooms", ADMIN) == (200, {"rooms": []})
    status, body = get(base, "/api/admin/learners", ADMIN)
    assert status == 200
    assert [(learner["name"], learner["classes"]) for learner in body["learners"]] == [
        ("Ada Lovelace", ["5B"]), ("Ben Okafor", ["5B"]), ("Chloé Martin", ["5B"]),
        ("Dan Other", ["6C"]), ("Zed Leaving", []),
    ]  # fmt: skip
    # A destructive route is a no-op without its confirmation.
    assert get(base, "/api/admin/delete", ADMIN, learner="Dan Other")[0] == 400
    assert get(base, "/api/admin/purge", ADMIN)[0] == 400
    assert get(base, "/api/admin/purge", ADMIN, confirm="purge") == (
        200, {"deleted_turns": 0, "older_than_days": 36500})  # nothing is that old  # fmt: skip


@pytest.mark.slow
async def test_an_admin_deletes_a_learner_on_the_admin_page(served, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    base, db = served
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args())
        page = await browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto(f"{base}/admin.html")

        # The teacher's password is not the admin's.
        await page.fill("#password", TEACHER)
        await page.click("#login button[type=submit]")
        await page.locator("#login-error", has_text="Wrong password").wait_for(timeout=5000)
        await page.fill("#password", ADMIN)
        await page.click("#login button[type=submit]")
        await page.wait_for_function("window.admin.loggedIn", timeout=5000)
        row = page.locator('#learners tr[data-learner="Zed Leaving"]')
        await row.wait_for(timeout=5000)
        assert await page.locator("#learners tbody tr").count() == 5

        # Export: the learner's data as a JSON file.
        async with page.expect_download(timeout=10_000) as download_info:
            await row.get_by_role("button", name="Export Zed Leaving's data").click()
        download = await download_info.value
        assert download.suggested_filename == "learner-Zed_Leaving.json"
        exported = json.loads(Path(await download.path()).read_text())
        assert exported["learner"]["name"] == "Zed Leaving"
        assert exported["sessions"][0]["turns"][0]["text"] == "my secret answer"

        # Delete: cancelling keeps the learner; confirming deletes them.
        await row.get_by_role("button", name="Delete Zed Leaving").click()
        dialog = page.get_by_role("dialog")
        await dialog.wait_for(timeout=5000)
        assert "deleted for good" in await dialog.inner_text()
        await page.click("#confirm-cancel")
        await page.locator("#message", has_text="Zed Leaving was not deleted").wait_for(timeout=5000)
        assert await row.count() == 1
        await row.get_by_role("button", name="Delete Zed Leaving").click()
        await page.click("#confirm-ok")
        await page.locator("#message", has_text="Deleted Zed Leaving").wait_for(timeout=5000)
        await row.wait_for(state="detached", timeout=5000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "admin-e2e.png"), full_page=True)
        with Store.open(db) as store:
            with pytest.raises(LearnerNotFound):
                store.get_learner("Zed Leaving")
            assert store.read("SELECT COUNT(*) FROM turns WHERE text = 'my secret answer'")[0][0] == 0
            assert [learner.name for learner in store.list_learners()] == [*sorted(PLAN), "Dan Other"]

        # The same login opens the teacher dashboard in this tab.
        await page.click("#to-dashboard")
        await page.wait_for_url("**/dashboard.html", timeout=5000)
        await page.wait_for_function("window.dashboard.loggedIn", timeout=5000)

        # The printed link's #key= logs in and leaves the address bar; the tab keeps the login.
        linked = await browser.new_page()
        linked.on("pageerror", lambda error: problems.append(str(error)))
        await linked.goto(f"{base}/admin.html#key={ADMIN}")
        await linked.wait_for_function("window.admin.loggedIn", timeout=5000)
        assert ADMIN not in linked.url
        await linked.reload()
        await linked.wait_for_function("window.admin.loggedIn", timeout=5000)
        await linked.click("#logout")
        await linked.reload()
        await linked.locator("#login").wait_for(timeout=5000)
        assert not await linked.evaluate("window.admin.loggedIn")
        assert problems == []
        await browser.close()
