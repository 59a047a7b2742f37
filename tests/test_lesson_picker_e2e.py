"""The page's lesson picker end to end: ``voice-tutor serve``, real models, the page in headless Chromium.

The learner's page shows the room's lesson and, in a picker, the lessons the
tutor can teach; picking one switches the tutor to it (its greeting is heard
and captioned) and the picker follows.
"""

from __future__ import annotations

import pytest

from serve_fixtures import start_serve, stop_serve
from test_dashboard_e2e import ARTIFACTS, CHROMIUM, chromium_args, learner_microphone

pytestmark = pytest.mark.slow

SECRET = "lesson-picker-e2e-secret-0123456789"


async def test_picking_a_lesson_on_the_page_switches_the_tutor_to_it(say, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    microphone = learner_microphone(say, tmp_path / "learner.wav", "Hello.")
    process, links = start_serve(tmp_path / "xdg", SECRET, "--room", "picker", "--learner", "Ada")
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(microphone))
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(links["learner"])
            await page.click("#start")
            await page.wait_for_function("window.tutorPage.joined !== null", timeout=10_000)
            await page.locator(".line.tutor", has_text="Let's practise adding").wait_for(timeout=30_000)

            picker = page.locator("#lesson-picker")
            await picker.wait_for(state="visible", timeout=10_000)
            assert await picker.input_value() == "arithmetic"
            offered = await picker.locator("option").evaluate_all("options => options.map(o => o.value)")
            assert {"arithmetic", "fractions", "photosynthesis", "newtons-laws", "spanish-cafe"} <= set(offered)

            await picker.select_option("fractions")
            await page.locator(".line.tutor", has_text="Today we're working with fractions").wait_for(timeout=30_000)
            await page.wait_for_function("window.tutorPage.lesson === 'fractions'", timeout=10_000)
            assert await picker.input_value() == "fractions"
            assert await page.locator(".line.learner", has_text="Let's do Fractions").count() == 1
            await page.screenshot(path=str(ARTIFACTS / "lesson-picker-e2e.png"))
            assert problems == []
            await browser.close()
    finally:
        errors = stop_serve(process)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors, errors
