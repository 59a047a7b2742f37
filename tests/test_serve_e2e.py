"""``voice-tutor serve`` end to end: the real server process, the page in headless Chromium, a spoken answer.

Chromium's fake microphone plays a generated WAV of the learner (piper) into
the page's AudioWorklet; the page streams it to the server, whose voice
session transcribes it and answers; the page shows the captions and plays
the tutor's voice.  A teacher, over a plain websocket, then changes the
scene and starts a simulation, and the page shows both.  The screenshot is
kept in ``test-artifacts/serve-e2e.png``.
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
from xr_bridge import protocol as p

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
SECRET = "serve-e2e-secret-0123456789"




async def teacher_joins(url: str) -> object:
    query = parse_qs(urlsplit(url).query)
    parts = urlsplit(url)
    ws = await connect(f"ws://{parts.netloc}/ws")
    await ws.send(p.encode_text(p.Hello(versions=[p.PROTOCOL_VERSION], client="e2e-teacher")))
    assert isinstance(p.parse_text(await ws.recv()), p.Welcome)
    await ws.send(p.encode_text(p.Join(token=query["token"][0], role="teacher", name=query["name"][0])))
    assert isinstance(p.parse_text(await ws.recv()), p.Joined)
    return ws


async def test_the_page_hears_the_learner_answers_aloud_and_follows_the_teachers_scene(say, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    # The learner's microphone: quiet, the answer, quiet (48 kHz, as a sound card delivers it).
    speech = say("It is twelve.")
    # Six quiet seconds first: on a loaded machine the page may take that long to start streaming.
    audio = np.concatenate([np.zeros(96000), speech, np.zeros(80000)]).astype(np.float32)
    microphone = write_wav(tmp_path / "learner.wav", soxr.resample(audio, 16000, 48000), 48000)
    process, links = start_serve(tmp_path / "xdg", SECRET, "--room", "e2e", "--learner", "Ada")
    ARTIFACTS.mkdir(exist_ok=True)
    teacher = None
    try:
        assert re.match(r"http://127\.0\.0\.1:\d+/\?room=e2e&role=learner&name=Ada&token=", links["learner"])
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}%noloop",
                    "--enable-unsafe-swiftshader",  # WebGL on the CPU, for the 3D view
                ],
            )  # fmt: skip
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(links["learner"])
            await page.wait_for_function("window.tutorPage && window.tutorPage.scene.ready", timeout=10_000)
            await page.click("#start")
            await page.wait_for_function("document.querySelector('#handsfree').getAttribute('aria-pressed') === 'true'", timeout=10_000)  # hands-free by default
            await page.wait_for_function("window.tutorPage.joined !== null", timeout=10_000)
            assert await page.get_attribute("#handsfree", "aria-pressed") == "true"

            # The learner's words come back as a caption, named, and the tutor answers.
            final = page.locator(".line.learner.final").last
            await final.wait_for(timeout=40_000)
            assert re.search(r"twelve|12", await final.locator(".text").inner_text(), re.I)
            assert await final.locator(".who").inner_text() in ("Ada", "ADA")
            reply = page.locator(".line.tutor", has_text=re.compile("next question", re.I))
            await reply.wait_for(timeout=20_000)
            assert re.search(r"right|correct|well done", await reply.inner_text(), re.I)
            await page.wait_for_function("window.tutorPage.received.tutor_speech_ended >= 2", timeout=20_000)
            await page.wait_for_function("window.tutorPage.audio.played > 20", timeout=10_000)
            stats = await page.evaluate("window.tutorPage")
            assert stats["mic"]["rate"] == 16000 and stats["mic"]["frames"] > 50
            assert stats["audio"]["chunks"] > 50 and stats["audio"]["playedSeconds"] > 1.0
            assert stats["received"]["learner_speech_started"] >= 1 and stats["received"]["barge_in"] == 1
            assert stats["state"] in ("ready", "speaking")
            assert await page.inner_text("#state-text") in ("Ready", "Speaking")

            # A teacher changes the scene; the page follows.
            teacher = await teacher_joins(links["teacher"])
            for command in (
                p.LoadScene(scene="lab"),
                p.SpawnObject(object_id="apples", kind="box", position=(0.0, 0.8, 0.0)),
                p.ShowLabel(label_id="sum", text="7 + 5 = 12", target="apples"),
                p.Highlight(target="apples", color="#ffd23f"),
                p.StartSimulation(sim_id="pendulum", model="pendulum", params={"length": 1.2}),
            ):
                await teacher.send(p.encode_text(command))
            label = page.locator('#labels [data-label-id="sum"]')
            await label.wait_for(timeout=5000)
            assert await label.inner_text() == "7 + 5 = 12" and await label.is_visible()
            readout = page.locator("#sim-readout", has_text="Pendulum: length 1.20 m")
            await readout.wait_for(timeout=5000)
            await asyncio.sleep(0.3)  # a few frames of the swing
            await page.screenshot(path=str(ARTIFACTS / "serve-e2e.png"))
            assert problems == []
            await browser.close()
    finally:
        if teacher is not None:
            await teacher.close()
        errors = stop_serve(process)
    assert process.returncode == 0, errors
    assert (ARTIFACTS / "serve-e2e.png").stat().st_size > 10_000
    assert "Traceback" not in errors, errors
