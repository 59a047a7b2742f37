"""Speech synthesis with piper, one sentence at a time.

A tutor says the same short sentences again and again ("That's right!",
"Not quite.", "Next question.", the lesson's questions), in every session the
process serves, so the audio of short sentences is kept in a bounded LRU
:class:`PhraseCache` shared by all of them: a repeat costs a copy instead of a
piper run (``benchmarks/sessions_load.py`` measures the effect).

Several sessions' replies are synthesized at once, by ``workers`` threads
(``[tts] workers``, one per core by default) over one voice: a reply no longer
waits behind another session's long sentence.  The cores are shared among
them (onnxruntime threads per run = cores / workers).

Piper's onnxruntime session is opened without spinning worker threads: by
default they busy-wait after every run, and on a small machine that takes the
cores Whisper needs (on 2 cores, transcription ran up to twice as slow while
piper spoke; piper itself is no slower without spinning; see benchmarks/README.md).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
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


class PhraseCache:
    """Audio of recently synthesized short phrases, least recently used first out, bounded in bytes.

    Thread-safe: every session's synthesis thread may use it.
    """

    def __init__(self, max_bytes: int = 24 * 2**20, max_chars: int = 160):
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[tuple[str, float], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def cacheable(self, text: str) -> bool:
        return 0 < len(text) <= self.max_chars and self.max_bytes > 0

    def get(self, key: tuple[str, float]) -> np.ndarray | None:
        with self._lock:
            audio = self._entries.get(key)
            if audio is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return audio.copy()

    def put(self, key: tuple[str, float], audio: np.ndarray) -> None:
        if audio.nbytes > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self.bytes -= previous.nbytes
            self._entries[key] = audio.copy()
            self.bytes += audio.nbytes
            while self.bytes > self.max_bytes:
                _key, evicted = self._entries.popitem(last=False)
                self.bytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0


def resolve_tts_workers(workers: int) -> int:
    """``[tts] workers``: 0 means one per core, up to 4 (piper runs on the CPU)."""
    if workers < 0:
        raise ValueError("[tts] workers must be 0 (automatic) or more")
    return workers or min(4, os.cpu_count() or 1)


def _load_without_spinning(path: Path, threads: int):
    """``PiperVoice.load(path)`` on the CPU, with ``threads`` onnxruntime workers per run that sleep when idle."""
    import json

    import onnxruntime
    from piper import PiperVoice

    try:
        from piper.config import PiperConfig
        from piper.voice import ESPEAK_DATA_DIR
    except ImportError:  # another piper layout: its own loader, spinning workers and all
        return PiperVoice.load(path)
    with open(f"{path}.json", encoding="utf-8") as config_file:
        config = PiperConfig.from_dict(json.load(config_file))
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(config=config, session=session, espeak_data_dir=Path(ESPEAK_DATA_DIR), download_dir=Path.cwd())


class SpeechSynthesizer:
    """One loaded piper voice; ``synthesize`` is blocking, so run it in a thread.

    ``phrase_cache_mb`` bounds the cache of short phrases' audio (0 turns it off);
    ``spinning_threads`` keeps onnxruntime's busy-waiting workers (for comparison only).
    """

    def __init__(self, config: TextToSpeechConfig | None = None, phrase_cache_mb: float = 24.0,
                 spinning_threads: bool = False):
        from piper import PiperVoice, SynthesisConfig

        self.config = config or TextToSpeechConfig()
        self.workers = resolve_tts_workers(self.config.workers)
        """How many sentences may be synthesized at once (the size of the sessions' TTS pool)."""
        path = resolve_voice(self.config.voice)
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        try:
            self._voice = PiperVoice.load(path) if spinning_threads else _load_without_spinning(path, threads)
        except Exception as exc:  # onnxruntime and json raise a variety of errors for bad files
            raise ModelLoadError(f"cannot load piper voice {path}: {exc}") from exc
        self._synthesis = SynthesisConfig(length_scale=self.config.length_scale)
        self.sample_rate: int = self._voice.config.sample_rate
        self.description = f"{path.stem} ({self.sample_rate} Hz), {self.workers} worker(s)"
        self.last_elapsed_ms = 0.0
        self.phrase_cache = PhraseCache(max_bytes=int(phrase_cache_mb * 2**20))

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        """Float32 mono audio at ``sample_rate`` for ``text`` (empty for no speakable text).

        ``speed`` scales the configured speaking rate (a learner's preference).
        Short phrases said before come from the phrase cache.
        """
        from piper import SynthesisConfig

        started = time.perf_counter()
        key = (text, float(speed))
        cache = self.phrase_cache
        if cache.cacheable(text) and (cached := cache.get(key)) is not None:
            self.last_elapsed_ms = (time.perf_counter() - started) * 1000
            return cached
        synthesis = self._synthesis
        if speed != 1.0:
            synthesis = SynthesisConfig(length_scale=(self.config.length_scale or 1.0) / speed)
        chunks = [chunk.audio_float_array for chunk in self._voice.synthesize(text, synthesis)]
        audio = (np.concatenate(chunks).astype(np.float32, copy=False) if chunks
                 else np.zeros(0, dtype=np.float32))
        if cache.cacheable(text):
            cache.put(key, audio)
        self.last_elapsed_ms = (time.perf_counter() - started) * 1000
        return audio

    def clear_cache(self) -> None:
        """Forget every cached phrase (the next synthesis of each runs piper again)."""
        self.phrase_cache.clear()

    def warm_up(self) -> None:
        self.synthesize("Hello.")
