"""Speech end and first sound read from the samples (the definitions every latency figure uses)."""

from __future__ import annotations

import numpy as np

from voice_tutor.audio.levels import first_sound_s, speech_end_s, window_levels_db

RATE = 16_000


def tone(seconds: float, dbfs: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (10 ** (dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * 400 * t)).astype(np.float32)


def test_window_levels_are_the_rms_in_dbfs_of_whole_10_ms_windows():
    levels = window_levels_db(tone(0.105, -20.0), RATE)
    assert len(levels) == 10  # the partial last window is dropped
    assert np.allclose(levels, -20.0, atol=0.2)


def test_speech_ends_at_the_last_window_within_35_db_of_the_loudest():
    audio = np.concatenate([tone(0.5, -10.0), tone(0.2, -40.0), tone(0.3, -50.0), np.zeros(RATE // 2, np.float32)])
    assert abs(speech_end_s(audio, RATE) - 0.7) < 0.011  # -40 dB counts (30 dB down), -50 dB does not


def test_a_quieter_range_moves_the_end_earlier():
    audio = np.concatenate([tone(0.5, -10.0), tone(0.2, -40.0)])
    assert abs(speech_end_s(audio, RATE, range_db=20.0) - 0.5) < 0.011


def test_silence_has_no_speech_end():
    assert speech_end_s(np.zeros(RATE, np.float32), RATE) is None
    assert speech_end_s(np.zeros(10, np.float32), RATE) is None


def test_first_sound_is_the_first_window_above_minus_50_dbfs_after_the_given_time():
    audio = np.concatenate([tone(0.3, -20.0), tone(0.2, -60.0), np.zeros(RATE // 4, np.float32), tone(0.2, -45.0)])
    assert first_sound_s(audio, RATE) == 0.0
    assert abs(first_sound_s(audio, RATE, after_s=0.3) - 0.75) < 0.011  # the -60 dBFS stretch is inaudible here
    assert first_sound_s(audio[: int(0.75 * RATE)], RATE, after_s=0.3) is None
