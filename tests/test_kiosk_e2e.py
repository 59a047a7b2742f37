"""Kiosk mode end to end: ``voice-tutor serve --kiosk``, real models, the page in headless Chromium.

A learner signs in at the kiosk and answers aloud (Chromium's fake
microphone plays piper speech); the page reloads and the learner continues
where they were; the microphone is lost and comes back; then nobody talks, the
idle timeout ends the session, and the next learner sees nothing of the
previous one: no captions, no name, a fresh greeting, and the room keeps no
trace either (its ``room_state`` for a new member, the previous learner's
token refused).  The screenshots are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re

import pytest

from serve_fixtures import start_serve, stop_serve
from test_dashboard_e2e import ARTIFACTS, CHROMIUM, SECRET, chromium_args, join, learner_microphone
from xr_bridge import protocol as p

pytestmark = pytest.mark.slow

IDLE_S = 6
KIOSK_STORE = "voice-tutor-kiosk-learner"


async def sign_in(page, name: str) -> None:
    await page.locator("#signin").wait_for(state="visible", timeout=20_000)
    await page.fill("#signin-name", name)
    await page.click("#signin-button")
    await page.wait_for_function("window.tutorPage.joined !== null", timeout=10_000)


async def test_a_kiosk_session_times_out_and_the_next_learner_sees_nothing_of_the_previous_one(say, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    microphone = learner_microphone(say, tmp_path / "learner.wav", "It is twelve.")
    db = tmp_path / "kiosk.db"
    process, links = start_serve(tmp_path / "xdg", SECRET, "--kiosk", "--room", "kiosk-1", "--idle-timeout", str(IDLE_S),
                                 "--db", str(db))  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        assert re.match(r"http://127\.0\.0\.1:\d+/\?kiosk=\S+$", links["kiosk"])
        assert "#key=" in links["dashboard"]  # a generated teacher password is printed once, in the fragment
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(microphone))
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(links["kiosk"])

            # Ada signs in and answers aloud, hands-free.
            await sign_in(page, "Ada")
            assert "Ada" in await page.inner_text("#title")
            await page.wait_for_function("document.querySelector('#handsfree').getAttribute('aria-pressed') === 'true'", timeout=10_000)  # a kiosk is hands-free
            greeting = page.locator(".line.tutor", has_text="Hi Ada!")
            await greeting.wait_for(timeout=20_000)
            said = page.locator(".line.learner.final", has_text=re.compile("twelve|12", re.I))
            await said.wait_for(timeout=30_000)
            reply = page.locator(".line.tutor", has_text=re.compile("next question", re.I))
            await reply.locator(".thumb.up").click(timeout=30_000)  # offered once the reply has played
            turn = int(await reply.get_attribute("data-turn"))
            await page.wait_for_function(f"window.tutorPage.ratings[{turn}] === 1", timeout=10_000)
            assert await page.evaluate("window.tutorPage.earcons") >= 1  # the state is heard as well as seen
            ada = json.loads(await page.evaluate(f"sessionStorage.getItem('{KIOSK_STORE}')"))
            assert ada["name"] == "Ada" and ada["room"] == "kiosk-1"

            # A reload keeps Ada signed in, with the conversation so far.
            await page.reload()
            await page.locator("#start", has_text="Continue as Ada").click(timeout=10_000)
            await page.wait_for_function("window.tutorPage.joined !== null", timeout=10_000)
            await page.locator(".line.learner", has_text=re.compile("twelve|12", re.I)).wait_for(timeout=5000)
            await page.locator(".line.tutor", has_text="Hi Ada!").wait_for(timeout=5000)
            # Its replies can still be rated, and show the rating already given.
            restored = page.locator(f'.line.tutor[data-turn="{turn}"]')
            assert await restored.locator(".thumb.up").get_attribute("aria-pressed") == "true"
            assert await restored.locator(".thumb.down").get_attribute("aria-pressed") == "false"

            # The microphone goes away: the page says so and gets it back.
            await page.evaluate("window.tutorPage.debug.dropMicrophone()")
            banner = page.locator("#mic-status", has_text="Microphone lost")
            await banner.wait_for(timeout=2000)
            await page.wait_for_function("window.tutorPage.mic.recovered >= 1", timeout=10_000)
            await banner.wait_for(state="hidden", timeout=2000)
            await page.screenshot(path=str(ARTIFACTS / "kiosk-e2e-ada.png"))

            # Nobody talks: the session ends, and the screen forgets Ada.
            await page.wait_for_function("window.tutorPage.kiosk.sessionsEnded === 1", timeout=(IDLE_S + 20) * 1000)
            await page.locator("#signin").wait_for(state="visible", timeout=5000)
            assert await page.locator("#captions .line").count() == 0
            assert "Ada" not in await page.inner_text("body")
            assert await page.evaluate(f"sessionStorage.getItem('{KIOSK_STORE}')") is None
            assert not await page.is_visible("#start")  # no "Continue as …" left behind

            # Ada's token no longer joins; the room keeps nothing of her session.
            _, refused, _ = await join(links["kiosk"], role="learner", token=ada["token"], name="Ada")
            assert isinstance(refused, p.Error) and refused.code == "unauthorized"
            observer, _, state = await join(links["observer"])
            await observer.close()
            assert isinstance(state, p.RoomState) and state.captions == [] and state.scene == []
            kept = p.encode_text(state)
            assert "Ada" not in kept and not re.search("twelve", kept, re.I)

            # Ben signs in: a fresh greeting, for him, and nothing of Ada.
            await sign_in(page, "Ben")
            await page.locator(".line.tutor", has_text="Hi Ben!").wait_for(timeout=20_000)
            text = await page.inner_text("body")
            assert "Ada" not in text and not re.search(r"twelve", text, re.I)
            assert await page.locator(".line.learner").count() == 0
            assert "Ben" in await page.inner_text("#title")
            await page.screenshot(path=str(ARTIFACTS / "kiosk-e2e-ben.png"))
            assert problems == []
            await browser.close()
    finally:
        errors = stop_serve(process)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors, errors
    assert db.is_file()  # the kiosk remembers its learners' progress
