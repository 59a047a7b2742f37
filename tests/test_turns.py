"""Turn-taking logic on synthetic speech-probability sequences (pure, no models)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_tutor.audio.turns import FRAME_MS, Transition, TurnDetector, sounds_unfinished
from voice_tutor.config import TurnTakingConfig

SPEECH, UNSURE, QUIET = 0.9, 0.4, 0.05
"""Above speech_threshold (0.5); between it and silence_threshold (0.35); below both."""


def frames(ms: float) -> int:
    return math.ceil(ms / FRAME_MS)


def feed(detector: TurnDetector, probabilities) -> list[Transition | None]:
    return [detector.feed(p) for p in probabilities]


def started(config: TurnTakingConfig | None = None) -> TurnDetector:
    detector = TurnDetector(config or TurnTakingConfig())
    feed(detector, [SPEECH] * frames(detector.config.min_speech_ms))
    assert detector.in_speech
    return detector


def test_frames_are_32_ms():
    assert FRAME_MS == 32


def test_speech_starts_after_min_speech_ms_of_voiced_frames():
    detector = TurnDetector(TurnTakingConfig())
    needed = frames(96)
    assert feed(detector, [SPEECH] * needed) == [None] * (needed - 1) + [Transition.STARTED]
    assert detector.in_speech and detector.voiced and detector.silence_ms == 0
    assert feed(detector, [SPEECH] * 5) == [None] * 5  # started once


def test_short_blips_never_start_a_turn():
    detector = TurnDetector(TurnTakingConfig())
    blips = [SPEECH, SPEECH, QUIET, SPEECH, QUIET, SPEECH, SPEECH, UNSURE] * 20
    assert set(feed(detector, blips)) == {None}
    assert not detector.in_speech and not detector.voiced


def test_unsure_frames_do_not_start_a_turn():
    detector = TurnDetector(TurnTakingConfig())
    assert set(feed(detector, [UNSURE] * 50)) == {None}
    assert not detector.in_speech


def test_min_speech_ms_is_configurable():
    detector = TurnDetector(TurnTakingConfig(min_speech_ms=32))
    assert detector.feed(SPEECH) is Transition.STARTED


def test_pause_after_pause_ms_of_silence_once():
    detector = started()
    needed = frames(160)
    transitions = feed(detector, [QUIET] * (needed + 10))
    assert transitions[needed - 1] is Transition.PAUSED
    assert transitions.count(Transition.PAUSED) == 1
    assert detector.in_speech and detector.paused and not detector.voiced
    assert detector.silence_ms == pytest.approx((needed + 10) * FRAME_MS)


def test_speech_back_after_a_pause_resumes_and_resets_the_silence():
    detector = started()
    feed(detector, [QUIET] * frames(160))
    assert detector.paused
    assert detector.feed(SPEECH) is Transition.RESUMED
    assert detector.silence_ms == 0 and not detector.paused and detector.voiced
    # A second pause is a new PAUSED.
    assert Transition.PAUSED in feed(detector, [QUIET] * frames(160))


def test_speech_back_before_the_pause_is_no_transition():
    detector = started()
    assert feed(detector, [QUIET] * (frames(160) - 1)) == [None] * (frames(160) - 1)
    assert detector.feed(SPEECH) is None
    assert detector.silence_ms == 0 and not detector.paused


def test_hysteresis_unsure_frames_continue_speech_but_do_not_resume_it():
    detector = started()
    # While speaking, a frame between the thresholds still counts as speech.
    assert feed(detector, [UNSURE] * 10) == [None] * 10
    assert detector.silence_ms == 0 and detector.voiced
    # Once silence has begun, the same frames count as silence: they do not end it.
    detector.feed(QUIET)
    assert detector.feed(UNSURE) is None
    assert detector.silence_ms == 2 * FRAME_MS and not detector.voiced
    feed(detector, [UNSURE] * frames(160))
    assert detector.paused
    assert detector.feed(SPEECH) is Transition.RESUMED


def test_turn_is_over_after_end_of_turn_ms_for_finished_words():
    detector = started()
    feed(detector, [QUIET] * (frames(320) - 1))
    assert not detector.turn_is_over("Twelve.")
    detector.feed(QUIET)
    assert detector.turn_is_over("Twelve.")


def test_unfinished_words_wait_for_the_longer_silence():
    detector = started()
    feed(detector, [QUIET] * frames(320))
    for text in ("Seven plus", "Seven plus...", "I think it's", "um", ""):
        assert not detector.turn_is_over(text), text
    feed(detector, [QUIET] * (frames(1200) - frames(320) - 1))
    assert not detector.turn_is_over("Seven plus")
    detector.feed(QUIET)
    assert detector.turn_is_over("Seven plus")


def test_a_voice_that_stayed_up_at_the_pause_waits_for_the_continuing_silence():
    detector = started()
    feed(detector, [QUIET] * frames(320))
    assert detector.turn_is_over("Front.")  # the voice fell: finished
    assert not detector.turn_is_over("Front.", voice_continues=True)  # level or rising: "Front, ... center."
    assert detector.turn_is_over("Can you say that again?", voice_continues=True)  # a question rises, and is done
    feed(detector, [QUIET] * (frames(900) - frames(320) - 1))
    assert not detector.turn_is_over("Front.", voice_continues=True)
    detector.feed(QUIET)
    assert detector.turn_is_over("Front.", voice_continues=True)
    assert not detector.turn_is_over("Seven plus", voice_continues=True)  # the words still trail off: longer yet


def test_turn_is_never_over_outside_speech():
    detector = TurnDetector(TurnTakingConfig())
    feed(detector, [QUIET] * 100)
    assert not detector.turn_is_over("Twelve.")


def test_end_turn_resets_everything():
    detector = started()
    feed(detector, [QUIET] * frames(400))
    detector.end_turn()
    assert not detector.in_speech and not detector.paused and detector.silence_ms == 0
    # A new turn needs min_speech_ms of speech again.
    assert feed(detector, [SPEECH] * frames(96)) == [None] * (frames(96) - 1) + [Transition.STARTED]


def test_a_partial_voiced_run_does_not_carry_over_end_turn():
    detector = started()
    detector.end_turn()
    detector.feed(SPEECH)
    detector.feed(QUIET)
    assert feed(detector, [SPEECH] * (frames(96) - 1)) == [None] * (frames(96) - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.2, 0.34, 0.35, 0.4, 0.49, 0.5, 0.7, 1.0]), max_size=200))
def test_transitions_come_in_a_sensible_order(probabilities):
    """STARTED only outside speech; RESUMED only after PAUSED; voiced means speech without silence."""
    detector = TurnDetector(TurnTakingConfig())
    paused = False
    for probability in probabilities:
        was_in_speech = detector.in_speech
        transition = detector.feed(probability)
        if transition is Transition.STARTED:
            assert not was_in_speech
        elif transition is Transition.PAUSED:
            assert was_in_speech and not paused and detector.silence_ms >= detector.config.pause_ms
            paused = True
        elif transition is Transition.RESUMED:
            assert paused and detector.silence_ms == 0
            paused = False
        assert detector.voiced == (detector.in_speech and detector.silence_ms == 0)
        assert detector.paused == paused


@pytest.mark.parametrize(
    "text",
    ["", "   ", "Seven plus", "Seven plus...", "7 Plus.", "fifteen minus", "I think it's", "Um", "um...",
     "and", "eight plus nine is,", "The answer is", "I think it is.", "seven times", "divided by", "Well, so—"],
)
def test_sounds_unfinished(text):
    assert sounds_unfinished(text)


@pytest.mark.parametrize(
    "text",
    ["Twelve.", "12", "It is twelve.", "The sum.", "I think it's the sum.", "Is it twelve?", "Um, twelve.",
     "Can you say that again?", "Nine!"],
)
def test_sounds_finished(text):
    assert not sounds_unfinished(text)
