"""Where speech ends and sound begins, read from the samples themselves.

Latency is measured from the sound: the end of the learner's speech is the end
of the last 10 ms window within 35 dB of the utterance's loudest window, and
the tutor's first audio is the first 10 ms window above -50 dBFS.  The same
definitions serve the benchmarks (on the recordings) and the listener (to stamp
the end of speech where the sound ended, not where the VAD's hysteresis let go).
Pure functions over numpy arrays; no I/O.
"""

from __future__ import annotations

import numpy as np

WINDOW_S = 0.01
SPEECH_RANGE_DB = 35.0
"""A window within this many dB of the loudest still counts as speech."""
SOUND_FLOOR_DBFS = -50.0
"""A window above this level counts as audible output."""


def window_levels_db(audio: np.ndarray, sample_rate: int, window_s: float = WINDOW_S) -> np.ndarray:
    """RMS level (dBFS, full scale = 1.0) of each whole window of ``audio``; a partial last window is dropped."""
    size = max(1, int(round(sample_rate * window_s)))
    count = len(audio) // size
    if count == 0:
        return np.zeros(0)
    windows = np.asarray(audio[: count * size], dtype=np.float64).reshape(count, size)
    rms = np.sqrt(np.mean(windows**2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def speech_end_s(audio: np.ndarray, sample_rate: int, range_db: float = SPEECH_RANGE_DB,
                 window_s: float = WINDOW_S) -> float | None:
    """Seconds from the start of ``audio`` to the end of its last window within ``range_db`` of its loudest.

    None for audio with no window at all or pure digital silence.
    """
    levels = window_levels_db(audio, sample_rate, window_s)
    if not len(levels) or levels.max() <= -199:
        return None
    loud = np.flatnonzero(levels >= levels.max() - range_db)
    size = max(1, int(round(sample_rate * window_s)))
    return (int(loud[-1]) + 1) * size / sample_rate


def first_sound_s(audio: np.ndarray, sample_rate: int, after_s: float = 0.0,
                  floor_dbfs: float = SOUND_FLOOR_DBFS, window_s: float = WINDOW_S) -> float | None:
    """Seconds from the start of ``audio`` to the start of the first window above ``floor_dbfs`` at or after ``after_s``."""
    size = max(1, int(round(sample_rate * window_s)))
    start = max(0, int(round(after_s * sample_rate)))
    levels = window_levels_db(audio[start:], sample_rate, window_s)
    loud = np.flatnonzero(levels > floor_dbfs)
    return None if not len(loud) else (start + int(loud[0]) * size) / sample_rate
