"""The page's talk modes end to end: real ``voice-tutor serve``, real models, headless Chromium's fake microphone.

- A kiosk starts hands-free, as the lesson's greeting ("answer out loud whenever
  you're ready") says: the learner just talks and is answered.  Then steady room
  noise: the page stops sending it (it sends speech and the silence that ends a
  turn, not sound forever), and the idle timeout still ends the session.
- With ``?handsfree=0`` the page is push-to-talk: speech while the button is not
  held is not sent, brings a visible hint and the tutor's spoken one; holding the
  button sends the answer, and the release waits for the worklet's flush
  acknowledgement (no timeout) before ``ptt_stop``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import soxr

from audio_fixtures import write_wav
from serve_fixtures import start_serve, stop_serve
from test_dashboard_e2e import ARTIFACTS, CHROMIUM, SECRET, chromium_args
from test_kiosk_e2e import sign_in

pytestmark = pytest.mark.slow

IDLE_S = 10
HANDS_FREE_ON = "document.querySelector('#handsfree').getAttribute('aria-pressed') === 'true'"


def microphone_file(path, parts: list[np.ndarray]):
    """16 kHz pieces laid end to end, as Chromium's fake microphone file (48 kHz)."""
    audio = np.concatenate(parts).astype(np.float32)
    return write_wav(path, soxr.resample(audio, 16000, 48000), 48000)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


def room_noise(seconds: float, dbfs: float = -35.0) -> np.ndarray:
    """Steady broadband noise (a fan, a projector) at ``dbfs`` RMS."""
    noise = np.random.default_rng(0).standard_normal(int(seconds * 16000))
    return (noise * 10 ** (dbfs / 20)).astype(np.float32)


async def test_a_kiosk_is_hands_free_as_the_greeting_says_and_room_noise_does_not_hold_it_open(say, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    microphone = microphone_file(tmp_path / "learner.wav",
                                 [quiet(6.0), say("It is twelve."), quiet(2.5), room_noise(60.0)])
    process, links = start_serve(tmp_path / "xdg", SECRET, "--kiosk", "--room", "kiosk-m", "--idle-timeout", str(IDLE_S))
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(microphone))
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(links["kiosk"])
            await sign_in(page, "Ada")
            await page.wait_for_function(HANDS_FREE_ON, timeout=10_000)
            assert await page.inner_text("#talk-label") == "Just talk"
            # What the tutor says matches the page's mode.
            await page.locator(".line.tutor", has_text=re.compile("Hi Ada!.*out loud", re.S)).wait_for(timeout=20_000)
            await page.locator(".line.learner.final", has_text=re.compile("twelve|12", re.I)).wait_for(timeout=30_000)

            # The room noise that follows is sent only until the page has learnt it is noise (a few
            # seconds), while the session is still on; then the idle timeout ends the session.
            await page.wait_for_function("""() => {
                const tutor = window.tutorPage, sent = tutor.soundLog.sent;
                return tutor.kiosk.sessionsEnded === 0 && sent.length > 0
                    && performance.now() - sent[sent.length - 1][0] > 2000;
            }""", timeout=60_000)
            await page.wait_for_function("window.tutorPage.kiosk.sessionsEnded === 1", timeout=60_000)
            await page.locator("#signin").wait_for(state="visible", timeout=5000)
            assert problems == []
            await browser.close()
    finally:
        errors = stop_serve(process)
    assert "Traceback" not in errors, errors


async def test_push_to_talk_hints_at_unheard_speech_and_releases_on_the_worklets_ack(say, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    speech = say("It is twelve.")
    # Three answers: the first may come while the greeting still plays (no hint then); the
    # hint follows the next, and the learner holds the button for the one after.
    microphone = microphone_file(tmp_path / "learner.wav", [quiet(12.0), speech, quiet(9.0), speech, quiet(9.0), speech, quiet(8.0)])
    process, links = start_serve(tmp_path / "xdg", SECRET, "--room", "ptt", "--learner", "Ada")
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(microphone))
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(links["learner"] + "&handsfree=0")
            await page.click("#start")
            await page.wait_for_function("window.tutorPage.joined !== null", timeout=10_000)
            assert await page.get_attribute("#handsfree", "aria-pressed") == "false"
            assert await page.inner_text("#talk-label") == "Hold to talk"

            # The learner answers without holding the button: nothing is sent, and they are told how.
            hint = page.locator("#talk-hint")
            await hint.wait_for(state="visible", timeout=30_000)
            assert "hold the Talk button" in await hint.inner_text()
            assert await page.evaluate("window.tutorPage.mic.frames") == 0
            chunks = await page.evaluate("window.tutorPage.audio.chunks")
            spoken = page.locator(".line.tutor", has_text="can't hear you")
            await spoken.wait_for(timeout=20_000)
            await page.wait_for_function(f"window.tutorPage.audio.chunks > {chunks}", timeout=20_000)
            await page.screenshot(path=str(ARTIFACTS / "page-modes-ptt-hint.png"))
            assert await page.evaluate("window.tutorPage.nudges.count") == 1

            # Held for the next answer (until the page has sent it and a second of quiet): it is heard.
            await page.focus("#talk")
            await page.keyboard.down("Space")
            await page.wait_for_function("""() => {
                const sent = window.tutorPage.soundLog.sent, loud = sent.findIndex(([, level]) => level > 0.02);
                return loud >= 0 && sent.length - loud > 25 && sent.slice(-25).every(([, level]) => level < 0.005);
            }""", timeout=30_000)
            await page.keyboard.up("Space")
            await page.locator(".line.learner.final", has_text=re.compile("twelve|12", re.I)).wait_for(timeout=30_000)
            await page.wait_for_function("window.tutorPage.mic.flushAcks + window.tutorPage.mic.flushTimeouts >= 1",
                                         timeout=5000)
            mic = await page.evaluate("window.tutorPage.mic")
            assert mic["flushAcks"] >= 1 and mic["flushTimeouts"] == 0  # released on the worklet's word, no timeout
            assert problems == []
            await browser.close()
    finally:
        errors = stop_serve(process)
    assert "Traceback" not in errors, errors
