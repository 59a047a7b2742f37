"""Turn-taking: when has the learner started, paused, and finished speaking?

Pure logic over per-frame speech probabilities, so it can be tested alone.
A pause first triggers a speculative transcription; the turn then ends after
``end_of_turn_ms`` of silence if the words sound finished and the voice fell,
after ``continuing_end_of_turn_ms`` if the words could be finished but the
voice stayed level or rose (a list, "Front, ... center."; ``audio/prosody.py``),
or after the longer ``unfinished_end_of_turn_ms`` if the words trail off
("seven plus...", "um"), so a learner who stops to think mid-sentence is not
cut off.  A question ("...again?") rises and is finished.
"""

from __future__ import annotations

import re
from enum import Enum, auto

from voice_tutor.audio.vad import FRAME_SAMPLES, SAMPLE_RATE
from voice_tutor.config import TurnTakingConfig

FRAME_MS = FRAME_SAMPLES * 1000 / SAMPLE_RATE

_TRAILING_WORDS = {
    "and", "or", "but", "so", "because", "then", "if", "the", "a", "an", "of", "to", "is", "are",
    "was", "plus", "minus", "times", "divided", "by", "with", "my", "your", "its", "it's", "um",
    "uh", "erm", "er", "hmm", "like", "maybe", "think", "i", "it", "than", "for", "in", "on", "at",
}


def sounds_unfinished(text: str) -> bool:
    """True when a transcript reads like the speaker will go on."""
    stripped = text.strip()
    if not stripped or stripped.endswith(("...", "…", ",", "-", "—")):
        return True
    words = re.findall(r"[\w']+", stripped.lower())
    return not words or words[-1] in _TRAILING_WORDS


class Transition(Enum):
    STARTED = auto()
    """Enough voiced audio: a new utterance (and a barge-in if the tutor is talking)."""
    PAUSED = auto()
    """Silence reached ``pause_ms``: transcribe speculatively."""
    RESUMED = auto()
    """Speech came back after a pause: the speculative transcript is stale."""


class TurnDetector:
    """Speech-probability hysteresis plus silence timing, one frame at a time."""

    def __init__(self, config: TurnTakingConfig):
        self.config = config
        self.in_speech = False
        self.silence_ms = 0.0
        self.paused = False
        self._voiced_run_ms = 0.0

    def feed(self, probability: float) -> Transition | None:
        config = self.config
        if not self.in_speech:
            self._voiced_run_ms = self._voiced_run_ms + FRAME_MS if probability >= config.speech_threshold else 0.0
            if self._voiced_run_ms >= config.min_speech_ms:
                self.in_speech, self.silence_ms, self.paused = True, 0.0, False
                return Transition.STARTED
            return None
        if probability >= config.silence_threshold and (
            self.silence_ms == 0 or probability >= config.speech_threshold
        ):
            self.silence_ms = 0.0
            if self.paused:
                self.paused = False
                return Transition.RESUMED
            return None
        self.silence_ms += FRAME_MS
        if not self.paused and self.silence_ms >= config.pause_ms:
            self.paused = True
            return Transition.PAUSED
        return None

    @property
    def voiced(self) -> bool:
        """The last frame counted as speech (it extends the utterance)."""
        return self.in_speech and self.silence_ms == 0

    def turn_is_over(self, transcript: str, voice_continues: bool = False) -> bool:
        """Given the speculative transcript (and whether the voice was level or rising at the pause),
        has the silence lasted long enough?"""
        if not self.in_speech:
            return False
        if sounds_unfinished(transcript):
            limit = self.config.unfinished_end_of_turn_ms
        elif voice_continues and not transcript.rstrip().endswith("?"):
            limit = self.config.continuing_end_of_turn_ms
        else:
            limit = self.config.end_of_turn_ms
        return self.silence_ms >= limit

    def end_turn(self) -> None:
        self.in_speech, self.silence_ms, self.paused, self._voiced_run_ms = False, 0.0, False, 0.0
