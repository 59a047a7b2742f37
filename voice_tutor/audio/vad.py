"""Streaming voice activity detection with the Silero model faster-whisper ships.

The ONNX graph takes 512 samples at 16 kHz plus the previous 64 samples of
context, and carries an LSTM state (h, c) from one frame to the next, so the
probability of speech is available 32 ms after each frame is captured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FRAME_SAMPLES = 512
SAMPLE_RATE = 16_000
_CONTEXT_SAMPLES = 64


def silero_model_path() -> Path:
    import faster_whisper

    path = Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        from voice_tutor.speech.bundled import ModelNotFound

        raise ModelNotFound(f"faster-whisper's Silero VAD model is missing: {path}")
    return path


class StreamingVad:
    """Speech probability for each 32 ms frame of one audio stream (keeps state)."""

    def __init__(self, model_path: Path | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(model_path or silero_model_path()),
            providers=["CPUExecutionProvider"],
            sess_options=options,
        )
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(f"VAD frames are {FRAME_SAMPLES} samples, got {frame.shape}")
        window = np.concatenate([self._context, frame.astype(np.float32, copy=False)])[None, :]
        probability, self._h, self._c = self._session.run(None, {"input": window, "h": self._h, "c": self._c})
        self._context = frame[-_CONTEXT_SAMPLES:].astype(np.float32, copy=True)
        return float(np.asarray(probability).reshape(-1)[0])


class SpeechGate:
    """Whether chunks of one audio stream (any length) hold speech, by Silero VAD on 32 ms frames.

    Level is no guide to speech: a silent microphone's hiss or steady room
    noise at -40..-30 dBFS is "loud" yet no one is talking.  The gate says
    speech only after ``min_speech_ms`` of frames at or above ``threshold``
    in a row, so a click does not count.  Blocking (one model run per frame):
    call it from a worker thread, one stream per gate.
    """

    def __init__(self, threshold: float = 0.5, min_speech_ms: float = 64.0, vad: StreamingVad | None = None):
        self.threshold = threshold
        self._frames_needed = max(1, round(min_speech_ms * SAMPLE_RATE / 1000 / FRAME_SAMPLES))
        self._vad = vad  # loaded on the first feed, in the worker thread
        self._pending = np.zeros(0, dtype=np.float32)
        self._voiced_run = 0

    def feed(self, samples: np.ndarray) -> bool:
        """True when speech was heard in this chunk (a run of voiced frames reached or continued)."""
        if self._vad is None:
            self._vad = StreamingVad()
        pending = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        heard = False
        whole = len(pending) - len(pending) % FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            if self._vad(pending[start : start + FRAME_SAMPLES]) >= self.threshold:
                self._voiced_run += 1
                heard = heard or self._voiced_run >= self._frames_needed
            else:
                self._voiced_run = 0
        self._pending = pending[whole:].copy()  # under one frame: the buffer stays bounded
        return heard
