"""Does the voice say "more is coming"?  The pitch at the end of what was said so far.

A speaker who pauses mid-list or mid-phrase ("Front, ... center.") usually
ends the part before the pause on a level or rising pitch (continuation
intonation); a finished statement falls to the bottom of their range.  Smart
Turn (pipecat) learns such cues from audio; LiveKit's turn detector reads only
the words.  Here the cue is measured: Praat's pitch tracker (parselmouth)
over the utterance so far, the final pitch compared with the speaker's own
median and with the pitch just before it.  It is one input to the end-of-turn
wait (``audio/turns.py``); the words are another.

Blocking (a few milliseconds per second of audio): run it on a worker thread.
"""

from __future__ import annotations

import numpy as np

from voice_tutor.audio.vad import SAMPLE_RATE

LEVEL_SEMITONES = 0.0
"""A final pitch at or above the speaker's median is not a final fall."""
RISE_SEMITONES = 1.5
"""...nor is a rise of this much over the last ~100 ms of voicing."""
_ANALYSED_S = 4.0


def sounds_continuing(audio: np.ndarray) -> bool:
    """True when the last voiced stretch of ``audio`` (16 kHz) ends level or rising, not falling."""
    import parselmouth

    audio = np.asarray(audio, dtype=np.float64)[-int(_ANALYSED_S * SAMPLE_RATE) :]
    if len(audio) < SAMPLE_RATE // 5:
        return False
    pitch = parselmouth.Sound(audio, SAMPLE_RATE).to_pitch_ac(time_step=0.01, pitch_floor=60.0, pitch_ceiling=500.0)
    voiced = pitch.selected_array["frequency"]
    voiced = voiced[voiced > 0]
    if len(voiced) < 12:
        return False  # too little voicing to judge: the words decide
    semitones = 12 * np.log2(voiced)
    final = np.median(semitones[-4:])
    level = final - np.median(semitones)
    rise = final - np.median(semitones[-12:-4])
    return bool(level >= LEVEL_SEMITONES or rise >= RISE_SEMITONES)
