"""Recordings of the learner's spoken turns, kept only by consent (``[privacy] record_audio``).

Each spoken turn of a remembered learner becomes one WAV file (16 kHz mono,
16-bit PCM) in a folder per stored session, named by ids only (no learner
names in paths), and linked from its stored turn (``turns.audio_path``).
The store deletes a recording with its turn: retention purges and a deleted
learner leave no file behind.  The learner is told at the start of the
session (:data:`NOTICE`, spoken by the tutor and shown on the page).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
"""The rate of ``FinalTranscript.audio``, and of the files."""
NOTICE = "Just so you know, this session is recorded: your voice is saved for your teacher."
"""What the learner hears (and reads) when a recorded session starts."""


def recordings_dir(configured: Path | str | None, store_path: Path | str) -> Path:
    """``[privacy] recordings_dir``, or a ``recordings`` folder beside the learner database."""
    if configured is not None:
        return Path(configured).expanduser().resolve()
    return Path(store_path).resolve().parent / "recordings"


def recording_path(root: Path, store_session_id: int) -> Path:
    """A new, unique file name for one turn of the stored session ``store_session_id``."""
    return root / f"session-{store_session_id}" / f"turn-{uuid.uuid4().hex[:16]}.wav"


def write_recording(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float samples in [-1, 1] as a 16-bit WAV, whole or not at all (written aside, then renamed)."""
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    mono = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    try:
        soundfile.write(partial, mono, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
