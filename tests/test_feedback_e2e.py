"""Feedback and recording on the learner's page, end to end: ``voice-tutor serve``, real models, headless Chromium.

Recording is on (``[privacy] record_audio`` in ``--config``): the page shows
the Recording indicator.  The learner answers aloud (Chromium's fake
microphone plays piper speech), rates the tutor's reply thumbs down, changes
their mind to thumbs up, presses Finish and answers the survey.  After the
server stops, the learner database holds one rating (+1) on that reply, the
survey on the session, and the answer's recording linked from its turn.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
import soundfile

from serve_fixtures import start_serve, stop_serve
from test_dashboard_e2e import ARTIFACTS, CHROMIUM, SECRET, chromium_args, learner_microphone
from voice_tutor.store import Store

pytestmark = pytest.mark.slow


async def test_a_learner_rates_a_reply_and_answers_the_survey_on_a_recorded_session(say, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    microphone = learner_microphone(say, tmp_path / "learner.wav", "It is twelve.")
    db, recordings = tmp_path / "tutor.db", tmp_path / "recordings"
    config = tmp_path / "tutor.toml"
    config.write_text(f'[privacy]\nrecord_audio = true\nrecordings_dir = "{recordings}"\n')
    process, links = start_serve(tmp_path / "xdg", SECRET, "--room", "feedback-1", "--learner", "Ada",
                                 "--db", str(db), "--config", str(config))  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(microphone))
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(links["learner"] + "&handsfree=1")
            await page.click("#start")

            # The learner is told: the indicator, and the tutor's first words.
            await page.locator("#recording").wait_for(state="visible", timeout=20_000)
            await page.locator(".line.tutor", has_text="this session is recorded").wait_for(timeout=20_000)

            await page.locator(".line.learner.final", has_text=re.compile("twelve|12", re.I)).wait_for(timeout=30_000)
            reply = page.locator(".line.tutor", has_text=re.compile("next question", re.I))
            await reply.locator(".thumb.up").wait_for(timeout=30_000)  # offered once the reply has played
            turn = int(await reply.get_attribute("data-turn"))
            await reply.locator(".thumb.down").click()
            await page.wait_for_function(f"window.tutorPage.ratings[{turn}] === -1", timeout=10_000)
            await reply.locator(".thumb.up").click()  # changed their mind
            await page.wait_for_function(f"window.tutorPage.ratings[{turn}] === 1", timeout=10_000)
            assert await reply.locator(".thumb.up").get_attribute("aria-pressed") == "true"
            assert await reply.locator(".thumb.down").get_attribute("aria-pressed") == "false"

            # Finish: the survey, answered in part, with a comment.
            await page.locator("#signout", has_text="Finish").click()
            await page.locator("#survey").wait_for(state="visible", timeout=5000)
            await page.click('label:has(input[name="survey-helpful"][value="5"])')
            await page.click('label:has(input[name="survey-pace"][value="3"])')
            await page.fill("#survey-comment", "More questions like that, please.")
            await page.screenshot(path=str(ARTIFACTS / "feedback-e2e-survey.png"))
            await page.click("#survey-send")
            await page.wait_for_function("window.tutorPage.finished === true", timeout=10_000)
            assert await page.evaluate("window.tutorPage.surveysEchoed") == 1  # the room had it before the page left
            assert not await page.is_visible("#recording")
            assert "Thank you" in await page.inner_text("#start-overlay")
            assert problems == []
            await browser.close()
    finally:
        errors = stop_serve(process)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors, errors

    with Store.open(db) as store:
        (session,) = store.export_learner("Ada")["sessions"]
        recorded = store.export_learner("Ada")["recordings"]
    rated = [(t["text"], [r["rating"] for r in t["ratings"]]) for t in session["turns"] if t["ratings"]]
    assert len(rated) == 1 and re.search("next question", rated[0][0], re.I) and rated[0][1] == [1]
    assert [(s["answers"], s["comment"]) for s in session["surveys"]] == [
        ({"helpful": 5, "pace": 3}, "More questions like that, please.")
    ]
    answer = next(t for t in session["turns"] if t["role"] == "learner" and re.search("twelve|12", t["text"], re.I))
    assert answer["audio_path"] in recorded and answer["audio_path"].startswith(str(recordings.resolve()))
    assert soundfile.info(answer["audio_path"]).duration > 0.5
    with sqlite3.connect(db) as raw:  # the rating is stored with the turn, replacing the first click
        assert raw.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 1


async def test_signing_out_of_a_kiosk_asks_the_survey_first_and_stores_it_with_the_session(tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    from test_kiosk_e2e import sign_in

    db = tmp_path / "kiosk.db"
    process, links = start_serve(tmp_path / "xdg", SECRET, "--kiosk", "--room", "kiosk-fb", "--db", str(db))
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args())
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(links["kiosk"])
            await sign_in(page, "Ada")
            assert not await page.is_visible("#recording")  # not recorded: never said to be
            greeting = page.locator(".line.tutor", has_text="Hi Ada!")
            await greeting.locator(".thumb.up").click(timeout=30_000)  # once the greeting has played
            await page.wait_for_function("window.tutorPage.ratings[0] === 1", timeout=10_000)

            await page.locator("#signout", has_text="Sign out").click()
            await page.locator("#survey").wait_for(state="visible", timeout=5000)
            await page.click('label:has(input[name="survey-enjoyed"][value="4"])')
            await page.click("#survey-send")
            await page.wait_for_function("window.tutorPage.kiosk.sessionsEnded === 1", timeout=10_000)
            await page.locator("#signin").wait_for(state="visible", timeout=5000)
            assert not await page.is_visible("#survey")
            assert "Ada" not in await page.inner_text("body")
            assert problems == []
            await browser.close()
    finally:
        errors = stop_serve(process)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors, errors
    with Store.open(db) as store:
        (session,) = store.export_learner("Ada")["sessions"]
    assert session["ended_at"] is not None
    assert [(s["answers"], s["comment"]) for s in session["surveys"]] == [({"enjoyed": 4}, None)]
    opening = session["turns"][0]
    assert opening["role"] == "tutor" and "Hi Ada!" in opening["text"]
    assert [r["rating"] for r in opening["ratings"]] == [1]
    assert all(t["audio_path"] is None for t in session["turns"])
