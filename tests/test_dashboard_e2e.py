"""The teacher dashboard end to end: the real server process, real models, the page in headless Chromium.

A teacher logs in on ``/dashboard.html`` with the ``--teacher-password``; a
learner's page (Chromium, its fake microphone playing piper speech) answers
the tutor; the dashboard shows the room's live captions.  A second learner
connection (a plain websocket) picks an answer that the safety filter flags,
and the alert appears on the dashboard.  The teacher sends a hint, which the
learner's page shows.  The screenshots are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import soxr
from websockets.asyncio.client import connect

from audio_fixtures import write_wav
from conftest import REPO_ROOT
from serve_fixtures import start_serve, stop_serve
from voice_tutor import events as ev
from xr_bridge import protocol as p
from xr_bridge.voice import AlertRules, _AlertTracker

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
SECRET = "dashboard-e2e-secret-0123456789"
TEACHER_PASSWORD = "teacher-pw-0123"




def chromium_args(microphone: Path | None = None) -> list[str]:
    args = [
        "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream", "--enable-unsafe-swiftshader",
        "--autoplay-policy=no-user-gesture-required",
    ]  # fmt: skip
    if microphone is not None:
        args.append(f"--use-file-for-fake-audio-capture={microphone}%noloop")
    return args


def learner_microphone(say, path: Path, text: str) -> Path:
    """A WAV for Chromium's fake microphone: quiet, ``text`` spoken, quiet (48 kHz, as a sound card delivers it)."""
    speech = say(text)
    # Six quiet seconds first: on a loaded machine the page may take that long to start streaming.
    audio = np.concatenate([np.zeros(96000), speech, np.zeros(80000)]).astype(np.float32)
    return write_wav(path, soxr.resample(audio, 16000, 48000), 48000)


async def join(url: str, *, role: str | None = None, token: str | None = None, name: str | None = None):
    """A websocket client joined with a printed link's token (or the given one); (socket, joined, room_state)."""
    query = parse_qs(urlsplit(url).query)
    token = token or query["token"][0]
    role = role or query["role"][0]
    name = name or query["name"][0]
    ws = await connect(f"ws://{urlsplit(url).netloc}/ws", max_size=p.MAX_SERVER_TEXT_BYTES)
    await ws.send(p.encode_text(p.Hello(versions=[p.PROTOCOL_VERSION], client="e2e")))
    assert isinstance(p.parse_text(await ws.recv()), p.Welcome)
    await ws.send(p.encode_text(p.Join(token=token, role=role, name=name)))
    joined = p.parse_text(await ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES)
    if not isinstance(joined, p.Joined):
        await ws.close()
        return None, joined, None
    state = p.parse_text(await ws.recv(), max_bytes=p.MAX_SERVER_TEXT_BYTES)
    return ws, joined, state


def test_alerts_for_repeated_wrong_answers_and_a_learner_stuck_on_a_skill():
    tracker = _AlertTracker(AlertRules(repeated_wrong=2, stuck_attempts=3, stuck_below=0.5))

    def answer(correct: bool, p_known: float) -> list[str | None]:
        event = ev.MasteryUpdated(session_id="s", learner="Ada", skill_id="add", skill_name="adding",
                                  correct=correct, p_known=p_known, mastered=False)  # fmt: skip
        wire = p.event_to_wire(event)
        _, alerts = tracker.assessed(event, wire)
        return [alert.code for alert in alerts]

    assert answer(False, 0.3) == []
    assert answer(False, 0.2) == ["repeated_wrong_answers"]
    assert answer(True, 0.4) == ["stuck_on_skill"]  # three answers and still below half
    assert answer(False, 0.3) == []  # told once per skill; a new streak starts
    assert answer(False, 0.2) == ["repeated_wrong_answers"]


@pytest.mark.slow
async def test_a_teacher_sees_live_captions_and_an_alert_and_sends_a_hint_the_learner_sees(say, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    microphone = learner_microphone(say, tmp_path / "learner.wav", "It is twelve.")
    process, links = start_serve(tmp_path / "xdg", SECRET, "--room", "class-1", "--learner", "Ada",
                                 "--teacher-password", TEACHER_PASSWORD)  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    second = None
    try:
        assert links["dashboard"].endswith("/dashboard.html")  # a given password is never printed
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(microphone))
            problems: list[str] = []
            dashboard = await browser.new_page(viewport={"width": 1280, "height": 900})
            dashboard.on("pageerror", lambda error: problems.append(f"dashboard: {error}"))
            await dashboard.goto(links["dashboard"])

            # A wrong password is refused; the right one logs in.
            await dashboard.fill("#password", "not-the-password")
            await dashboard.click("#login button[type=submit]")
            await dashboard.locator("#login-error", has_text="Wrong password").wait_for(timeout=5000)
            await dashboard.fill("#password", TEACHER_PASSWORD)
            await dashboard.click("#login button[type=submit]")
            await dashboard.wait_for_function("window.dashboard.loggedIn", timeout=5000)
            assert await dashboard.is_visible("#no-rooms")

            # The learner starts talking; the dashboard finds the room and joins it.
            learner = await browser.new_page(viewport={"width": 1280, "height": 800})
            learner.on("pageerror", lambda error: problems.append(f"learner: {error}"))
            await learner.goto(links["learner"])
            await learner.click("#start")
            await learner.wait_for_function("document.querySelector('#handsfree').getAttribute('aria-pressed') === 'true'", timeout=10_000)  # hands-free by default
            card = dashboard.locator('.room[data-room="class-1"]')
            await card.wait_for(timeout=10_000)
            await dashboard.wait_for_function("window.dashboard.rooms['class-1']?.joined", timeout=10_000)
            await card.locator(".learners", has_text="Ada").wait_for(timeout=5000)

            # Live captions: the learner's spoken answer and the tutor's reply.
            said = card.locator(".line.learner", has_text=re.compile("twelve|12", re.I))
            await said.wait_for(timeout=30_000)
            assert await said.locator(".who").inner_text() == "Ada"
            await card.locator(".line.tutor", has_text=re.compile("next question", re.I)).wait_for(timeout=30_000)
            # The learner record's facts of that answer, per learner and skill: right, first try, no hint.
            mastery = card.locator(".mastery", has_text="Ada: addition")
            await mastery.wait_for(timeout=10_000)
            assert "(1/1 right, 1 first try, 0 hints)" in await mastery.inner_text()

            # A second connection of the learner picks an answer the safety filter flags (once the
            # page's hands-free microphone has stopped and left the floor to it).
            await learner.click("#handsfree")
            assert await learner.get_attribute("#handsfree", "aria-pressed") == "false"
            await asyncio.sleep(1.5)
            second, _, _ = await join(links["learner"])
            await second.send(p.encode_text(p.Answer(question_id="q", choice="I want to hurt myself")))
            alert = card.locator(".alert.critical", has_text="self_harm")
            await alert.wait_for(timeout=20_000)
            assert await alert.get_attribute("data-code") == "self_harm"
            assert await dashboard.inner_text("#alert-count") == "1 alert"
            assert "has-alert" in await card.get_attribute("class")
            # The learner's page never shows alerts.
            assert await learner.locator(".line.system", has_text="self_harm").count() == 0

            # The teacher's hint reaches the learner's page.
            await card.locator(".message").fill("Count on your fingers from seven.")
            await card.locator(".send-hint").click()
            hint = learner.locator(".line.teacher.hint", has_text="Count on your fingers from seven.")
            await hint.wait_for(timeout=5000)
            assert (await hint.locator(".who").inner_text()).lower() == "hint from your teacher"
            await card.locator(".line.teacher", has_text="Count on your fingers").wait_for(timeout=5000)
            await dashboard.screenshot(path=str(ARTIFACTS / "dashboard-e2e.png"))
            await learner.screenshot(path=str(ARTIFACTS / "dashboard-e2e-learner.png"))

            # Ending the session: the learner's page is told, the dashboard says so, captions go.
            await card.locator(".end").click()
            ended = "Ada's session ended: ended by the teacher."
            await card.locator(".line.system", has_text=ended).wait_for(timeout=10_000)
            await learner.locator(".line.system", has_text=ended).wait_for(timeout=10_000)
            assert await learner.locator(".line.learner, .line.tutor").count() == 0  # nothing of it stays
            assert problems == []
            await browser.close()
    finally:
        if second is not None:
            await second.close()
        errors = stop_serve(process)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors, errors
    assert TEACHER_PASSWORD not in errors
