"""Speech recognition with faster-whisper, tuned for short conversational turns.

Whisper's encoder is trained on 30 s windows, and ``WhisperModel.transcribe``
always pads to one.  A learner's turn is a few seconds, so :meth:`transcribe_turn`
encodes only the utterance plus ``padding_s`` of silence (CTranslate2 accepts
shorter feature windows) and decodes in timestamp mode with ``max_length``
bounded by the audio's length; segments that start after the audio ends are
dropped.  On our test audio this gives the same words as the full window in a
fraction of the time (``voice-tutor bench`` reports both real-time factors and
word error rates).  Longer audio (files) goes through faster-whisper's own
``transcribe`` with its VAD filter.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import zlib
from dataclasses import dataclass

from pathlib import Path

import numpy as np

from voice_tutor.config import SpeechToTextConfig
from voice_tutor.speech.bundled import ModelNotFound, whisper_base_dir

SAMPLE_RATE = 16_000
_LONG_AUDIO_S = 28.0
_SECONDS_PER_TIMESTAMP = 0.02
_MAX_COMPRESSION_RATIO = 2.4
"""Whisper's threshold: text that compresses better than this is a repetition loop."""
log = logging.getLogger(__name__)


def hotwords_for(*phrases: str | None) -> str | None:
    """One hotwords prompt from phrases (a lesson's vocabulary, the pending answers), each word once.

    A word said again in the prompt pulls recognition harder towards it: "sum the sum total the total"
    made Whisper hear "thumbs down" as "pumps down".
    """
    words = [word for phrase in phrases if phrase for word in phrase.split()]
    return " ".join(dict.fromkeys(words)) or None


class ModelLoadError(RuntimeError):
    """A model exists but cannot be loaded (corrupt, wrong format, no device)."""


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    duration_s: float
    elapsed_ms: float
    no_speech_prob: float = 0.0
    confidence: float | None = None
    """The mean probability of the decoded tokens (exp of Whisper's avg_logprob); None when not decoded here."""


_REPEATED_WORD = re.compile(r"\b(\w+)(?:\W+\1\b){3,}")
_REPEATED_PHRASE = re.compile(r"\b(\w[\w']* [\w' ]{1,40}?)(?:\W+\1\b){2,}")


_CONSECUTIVE_REPEAT = re.compile(r"\b(\w[\w']*(?: [\w']+){0,6}?)(?:[\s.,!?]+\1\b)+[.,!?]?", re.IGNORECASE)


def collapse_repeats(text: str, language: str = "en") -> str:
    """Say each phrase once: greedy decoding loops ("ten ten", "six 6", "chlorophyll chlorophyll chloroph").

    A lesson's vocabulary prompt makes Whisper repeat short answers; the words
    before the loop are the ones spoken.  A cut-off copy at the end is dropped.
    """
    pieces, position = [], 0
    for match in _CONSECUTIVE_REPEAT.finditer(text):
        pieces.append(text[position : match.start()] + match.group(1) + _end_mark(match.group(0)))
        position = match.end()
        rest = text[position:].strip(" .,!?")
        if rest and match.group(1).lower().startswith(rest.lower()):
            position = len(text)  # the loop's last copy, cut off by the length bound
    collapsed = "".join(pieces) + text[position:]
    words: list[str] = []
    for word in collapsed.split():
        if words and _as_number(words[-1], language) is not None and (
            _as_number(words[-1], language) == _as_number(word, language)
        ):
            continue  # the same number said as a word and as digits
        words.append(word)
    if len(words) >= 2 and len(words[-1]) < len(words[-2]) and words[-2].lower().startswith(words[-1].lower()):
        words.pop()
    return " ".join(words).strip()


def _as_number(word: str, language: str) -> str | None:
    from text_to_num import alpha2digit

    bare = word.strip(".,!?").lower()
    try:
        digits = alpha2digit(bare, language, threshold=0)
    except (ValueError, KeyError):
        return None
    return digits if digits.isdigit() else None


def _end_mark(repeated: str) -> str:
    return repeated[-1] if repeated[-1] in ".,!?" else ""


def _looks_like_a_loop(text: str) -> bool:
    """A word said four times running, a phrase three times, or text that compresses like a loop."""
    encoded = text.lower().encode("utf-8")
    if not encoded:
        return False
    ratio = len(encoded) / len(zlib.compress(encoded))
    lower = text.lower()
    return ratio > _MAX_COMPRESSION_RATIO or bool(_REPEATED_WORD.search(lower) or _REPEATED_PHRASE.search(lower))


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """Pick CUDA float16 when a GPU is present, int8 on the CPU otherwise."""
    import ctranslate2

    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def resolve_workers(device: str, workers: int, cpu_threads: int) -> tuple[int, int]:
    """How many transcriptions run at once, and CPU threads for each (0: the library's choice on a GPU).

    On the CPU the cores are shared among the workers, so two workers never
    fight over the same cores; a GPU overlaps several sessions' work.
    """
    if workers < 0 or cpu_threads < 0:
        raise ValueError("[stt] workers and cpu_threads must be 0 (automatic) or more")
    if workers == 0:  # benchmarks/sessions_load.py: on 2 cores, 2 workers served 40 sessions, 1 worker 30
        workers = 4 if device == "cuda" else min(4, os.cpu_count() or 1)
    if cpu_threads == 0 and device == "cpu":
        cpu_threads = max(1, (os.cpu_count() or 1) // workers)
    return workers, cpu_threads


def resolve_model(name: str) -> str:
    """A model directory: the bundled one, a path, or a faster-whisper size already in its cache."""
    if name == "bundled:whisper-base":
        return str(whisper_base_dir())
    if name.startswith("bundled:"):
        raise ModelNotFound(f"unknown bundled speech model {name!r} (known: bundled:whisper-base)")
    from faster_whisper.utils import available_models

    if name in available_models():
        return name  # loaded from the local cache only: nothing is downloaded at run time
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelNotFound(f"speech model directory not found: {name}")
    return str(path)


class SpeechRecognizer:
    """One loaded Whisper model, shared by every session (calls are thread-safe)."""

    def __init__(self, config: SpeechToTextConfig | None = None):
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.config = config or SpeechToTextConfig()
        self.device, self.compute_type = resolve_device(self.config.device, self.config.compute_type)
        self.workers, self.cpu_threads = resolve_workers(self.device, self.config.workers, self.config.cpu_threads)
        model_path = resolve_model(self.config.model)
        try:
            self._whisper = WhisperModel(
                model_path,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=self.workers,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLoadError(f"cannot load Whisper model {model_path!r}: {exc}") from exc
        self._tokenizers = {}
        self._tokenizer_class = Tokenizer

    @property
    def whisper(self):
        """The underlying ``faster_whisper.WhisperModel`` (for its standard ``transcribe``)."""
        return self._whisper

    @property
    def description(self) -> str:
        threads = f", {self.cpu_threads} thread(s) each" if self.device == "cpu" else ""
        return f"{self.config.model} on {self.device} ({self.compute_type}), {self.workers} worker(s){threads}"

    def _tokenizer(self, language: str):
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            tokenizer = self._tokenizer_class(
                self._whisper.hf_tokenizer,
                self._whisper.model.is_multilingual,
                task="transcribe",
                language=language,
            )
            self._tokenizers[language] = tokenizer
        return tokenizer

    def warm_up(self) -> None:
        """Run one tiny inference so the first learner turn does not pay for it."""
        self.transcribe_turn(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))

    def transcribe(self, audio: np.ndarray, hotwords: str | None = None, language: str | None = None) -> Transcript:
        """Transcribe audio of any length (16 kHz mono float32).

        Audio with no voice in it (silence, noise) is not given to Whisper,
        which would otherwise invent words.
        """
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        if not get_speech_timestamps(audio, VadOptions()):
            return Transcript("", language or self.config.language or "en", len(audio) / SAMPLE_RATE, 0.0, 1.0)
        if len(audio) / SAMPLE_RATE <= _LONG_AUDIO_S:
            return self.transcribe_turn(audio, hotwords=hotwords, language=language)
        started = time.perf_counter()
        segments, info = self._whisper.transcribe(
            audio,
            language=language or self.config.language,
            vad_filter=True,
            hotwords=hotwords,
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return Transcript(
            text=text,
            language=info.language,
            duration_s=len(audio) / SAMPLE_RATE,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    def transcribe_turn(
        self, audio: np.ndarray, hotwords: str | None = None, language: str | None = None
    ) -> Transcript:
        """Transcribe one short utterance (at most ~28 s) on a trimmed encoder window.

        ``language`` overrides the configured one (a lesson answered in Spanish).
        """
        from faster_whisper.transcribe import get_ctranslate2_storage

        started = time.perf_counter()
        duration = len(audio) / SAMPLE_RATE
        if len(audio) == 0:
            return Transcript("", language or self.config.language or "en", 0.0, 0.0, 1.0)
        if duration > _LONG_AUDIO_S:
            raise ValueError(f"transcribe_turn takes at most {_LONG_AUDIO_S:.0f} s, got {duration:.1f} s")
        padded = np.concatenate([audio.astype(np.float32, copy=False),
                                 np.zeros(int(self.config.padding_s * SAMPLE_RATE), np.float32)])
        features = self._whisper.feature_extractor(padded, padding=0)
        model = self._whisper.model
        encoded = model.encode(get_ctranslate2_storage(features[None]), to_cpu=False)

        language = language or self.config.language
        if language is None:
            if model.is_multilingual:
                token, _probability = model.detect_language(encoded)[0][0]
                language = token[2:-2]
            else:
                language = "en"
        tokenizer = self._tokenizer(language)
        result, raw_text = self._decode(encoded, tokenizer, duration, hotwords)
        text = collapse_repeats(raw_text, language)
        if _looks_like_a_loop(text):
            # A decoding loop ("12 12 12 …"): Whisper's own remedy is to decode again
            # more carefully, which its standard path does with temperature fallback.
            log.info("trimmed-window decode looped (%r); using the standard path", text[:60])
            segments, _info = self._whisper.transcribe(audio, language=language, hotwords=hotwords)
            text = " ".join(segment.text.strip() for segment in segments).strip()
        tokens = result.sequences_ids[0]
        average_logprob = result.scores[0] / max(1, len(tokens))
        # Whisper's own rule, plus a stricter one for the 'you' it hears in pure silence.
        if result.no_speech_prob > 0.85 or (result.no_speech_prob > 0.6 and average_logprob < -0.8):
            text = ""
        return Transcript(
            text=text,
            language=language,
            duration_s=duration,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            no_speech_prob=result.no_speech_prob,
            confidence=_confidence(result.scores[0], len(tokens)) if text else None,
        )

    def _decode(self, encoded, tokenizer, duration: float, hotwords: str | None) -> tuple[object, str]:
        """Timestamp-mode decoding (greedy unless ``[stt] beam_size`` says more), bounded by the audio's length."""
        prompt = []
        if hotwords:
            limit = self._whisper.max_length // 2 - 1
            prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + hotwords.strip())[:limit]]
        prompt += list(tokenizer.sot_sequence)
        budget = int(duration * 10) + 12
        result = self._whisper.model.generate(
            encoded,
            [prompt],
            beam_size=self.config.beam_size,
            max_length=min(len(prompt) + budget, self._whisper.max_length),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            max_initial_timestamp_index=50,
        )[0]
        return result, _text_within(result.sequences_ids[0], tokenizer, duration)


def _confidence(score: float, length: int) -> float:
    """Whisper's avg_logprob as a probability: CTranslate2's score is already divided by the length
    (length_penalty 1), and faster-whisper divides the sum by ``length + 1``."""
    return math.exp(score * length / (length + 1))


def _text_within(tokens: list[int], tokenizer, duration: float) -> str:
    """The text of segments that start inside the audio (repeats past its end dropped)."""
    segment_start = 0.0
    current: list[int] = []
    pieces: list[str] = []

    def close():
        if current and segment_start < duration - 0.1:
            piece = tokenizer.decode(current).strip()
            if piece and (not pieces or piece != pieces[-1]):
                pieces.append(piece)
        current.clear()

    for token in tokens:
        if token >= tokenizer.timestamp_begin:
            if current:
                close()
            segment_start = (token - tokenizer.timestamp_begin) * _SECONDS_PER_TIMESTAMP
        elif token < tokenizer.eot:
            current.append(token)
    close()
    return " ".join(pieces).strip()
