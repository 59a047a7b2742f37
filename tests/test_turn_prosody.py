"""Turns that don't split, on real speech: the pitch at a pause, and the real listener on the audio clock.

espeak-ng speaks a list item before a comma with a rising pitch and a
statement's end with a falling one, as people do; the pause at the comma is
then stretched to 300-700 ms (the words keep the intonation they were given).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import SAMPLE_RATE, espeak, heard_numbers, silence
from voice_tutor.audio.prosody import sounds_continuing
from voice_tutor.config import Config

pytestmark = pytest.mark.slow

_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "turn_taking.py"
_spec = importlib.util.spec_from_file_location("turn_taking_benchmark", _SCRIPT)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)
end_of_speech_s, listen, longest_inner_gap, with_pause = (
    bench.end_of_speech_s, bench.listen, bench.longest_inner_gap, bench.with_pause)


@pytest.fixture(scope="module")
def espeak_say(audio_dir):
    """``espeak_say(text, voice=...)``: espeak-ng speech, 16 kHz mono (espeak-ng variants as different voices)."""
    workdir = audio_dir / "espeak-prosody"
    workdir.mkdir(exist_ok=True)
    return lambda text, voice="en-us": espeak(text, workdir, voice=voice)

VOICES = ["en-us", "en-us+f3", "en-gb+m3"]


@pytest.mark.parametrize("voice", VOICES)
@pytest.mark.parametrize("text", ["Front, center.", "Red, green, and blue.", "Seven, plus five."])
def test_the_voice_stays_up_before_a_mid_phrase_pause(espeak_say, voice, text):
    spoken = espeak_say(text, voice=voice)
    gap = longest_inner_gap(spoken)
    assert gap is not None
    assert sounds_continuing(spoken[: gap[0]])


@pytest.mark.parametrize("voice", VOICES)
@pytest.mark.parametrize("text", ["Twelve.", "The leaves.", "Photosynthesis.", "I don't know."])
def test_the_voice_falls_at_the_end_of_a_finished_answer(espeak_say, voice, text):
    assert not sounds_continuing(espeak_say(text, voice=voice))


def test_too_little_voicing_is_not_judged():
    assert not sounds_continuing(silence(0.5))
    assert not sounds_continuing(np.zeros(100, dtype=np.float32))


@pytest.mark.parametrize("pause_s", [0.3, 0.5, 0.7])
async def test_a_list_with_a_pause_at_the_comma_is_one_turn(speech_models, espeak_say, pause_s):
    spoken = with_pause(espeak_say("Seven, plus five.", voice="en-us+f3"), pause_s)
    audio = np.concatenate([silence(1.0), spoken, silence(3.0)])
    turns = await listen(speech_models, Config(), audio)
    assert len(turns) == 1, turns
    assert heard_numbers(turns[0][0]) >= {7, 5}


async def test_a_finished_answer_keeps_the_short_wait(speech_models, espeak_say):
    audio = np.concatenate([silence(1.0), espeak_say("Twelve.", voice="en-us"), silence(3.0)])
    turns = await listen(speech_models, Config(), audio)
    assert [heard_numbers(text) for text, _at in turns] == [{12}]
    config = Config().turns
    waited_ms = (turns[0][1] - end_of_speech_s(audio)) * 1000
    # Decided on the frame clock (no wall time): the finished-words wait, not the continuing one.
    assert waited_ms < config.continuing_end_of_turn_ms
    assert len(audio) / SAMPLE_RATE > turns[0][1]
