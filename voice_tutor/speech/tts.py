"""Speech synthesis with piper, one sentence at a time."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from voice_tutor.config import TextToSpeechConfig
from voice_tutor.speech.bundled import ModelNotFound, piper_joe_voice
from voice_tutor.speech.stt import ModelLoadError


def resolve_voice(name: str) -> Path:
    if name == "bundled:joe":
        return piper_joe_voice()
    if name.startswith("bundled:"):
        raise ModelNotFound(f"unknown bundled voice {name!r} (known: bundled:joe)")
    path = Path(name)
    if not path.is_file():
        raise ModelNotFound(f"piper voice not found: {path}")
    if not Path(f"{path}.json").is_file():
        raise ModelNotFound(f"piper voice config not found: {path}.json")
    return path


class SpeechSynthesizer:
    """One loaded piper voice; ``synthesize`` is blocking, so run it in a thread."""

    def __init__(self, config: TextToSpeechConfig | None = None):
        from piper import PiperVoice, SynthesisConfig

        self.config = config or TextToSpeechConfig()
        path = resolve_voice(self.config.voice)
        try:
            self._voice = PiperVoice.load(path)
        except Exception as exc:  # onnxruntime and json raise a variety of errors for bad files
            raise ModelLoadError(f"cannot load piper voice {path}: {exc}") from exc
        self._synthesis = SynthesisConfig(length_scale=self.config.length_scale)
        self.sample_rate: int = self._voice.config.sample_rate
        self.description = f"{path.stem} ({self.sample_rate} Hz)"
        self.last_elapsed_ms = 0.0

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        """Float32 mono audio at ``sample_rate`` for ``text`` (empty for no speakable text).

        ``speed`` scales the configured speaking rate (a learner's preference).
        """
        from piper import SynthesisConfig

        started = time.perf_counter()
        synthesis = self._synthesis
        if speed != 1.0:
            synthesis = SynthesisConfig(length_scale=(self.config.length_scale or 1.0) / speed)
        chunks = [chunk.audio_float_array for chunk in self._voice.synthesize(text, synthesis)]
        self.last_elapsed_ms = (time.perf_counter() - started) * 1000
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def warm_up(self) -> None:
        self.synthesize("Hello.")
