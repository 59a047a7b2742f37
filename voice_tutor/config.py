"""Configuration: one frozen dataclass per concern, read from TOML and the environment.

Defaults are the embedded ones (bundled speech models, offline tutor), so a
fresh machine needs no file at all.  A TOML file (``--config``) overrides
fields by section; ``VOICE_TUTOR_*`` / ``OPENAI_*`` variables override the LLM
settings so keys never have to be written to disk.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


@dataclass(frozen=True)
class SpeechToTextConfig:
    model: str = "bundled:whisper-base"
    """A faster-whisper model: ``bundled:whisper-base``, a directory, or a size name."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    compute_type: str = "auto"
    """``auto`` (float16 on CUDA, int8 on CPU) or any CTranslate2 compute type."""
    cpu_threads: int = 0
    """0 means one per core."""
    language: str | None = "en"
    """None detects the language per utterance."""
    padding_s: float = 3.0
    """Silence appended to an utterance before encoding (see speech/stt.py)."""
    lesson_hotwords: bool = True
    """Bias recognition towards the lesson's vocabulary during a session (see benchmarks/hotwords.py)."""


@dataclass(frozen=True)
class TextToSpeechConfig:
    voice: str = "bundled:joe"
    """A piper voice: ``bundled:joe`` or a path to an ``.onnx`` voice (config beside it)."""
    length_scale: float | None = None
    """Speaking rate: >1 slower, <1 faster; None keeps the voice's own."""


@dataclass(frozen=True)
class TurnTakingConfig:
    speech_threshold: float = 0.5
    silence_threshold: float = 0.35
    min_speech_ms: int = 96
    """Voiced audio needed before a turn (or a barge-in) starts."""
    pause_ms: int = 160
    """Silence after which the utterance is transcribed, in case the turn is over."""
    end_of_turn_ms: int = 320
    """Silence that ends a turn whose words sound finished."""
    unfinished_end_of_turn_ms: int = 1200
    """Silence that ends a turn whose words trail off ('and', 'the', 'um')."""
    partial_interval_ms: int = 700
    pre_roll_ms: int = 200
    max_utterance_s: float = 25.0


@dataclass(frozen=True)
class LLMConfig:
    base_url: str | None = None
    """An OpenAI-compatible endpoint; None runs the offline tutor."""
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    timeout_s: float = 20.0
    temperature: float = 0.4
    max_tokens: int = 300


@dataclass(frozen=True)
class DialogueConfig:
    lesson: str = "arithmetic"
    """A lesson id from the lessons directory, or a path to a lesson file."""
    lessons_dir: Path = ASSETS_DIR / "lessons"
    learner_name: str | None = None
    """Named learners are remembered across sessions; unnamed ones are not."""
    store: Path | None = None
    """The learner database (SQLite); None is ``$XDG_DATA_HOME/voice-tutor/tutor.db``."""


@dataclass(frozen=True)
class Config:
    stt: SpeechToTextConfig = field(default_factory=SpeechToTextConfig)
    tts: TextToSpeechConfig = field(default_factory=TextToSpeechConfig)
    turns: TurnTakingConfig = field(default_factory=TurnTakingConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    dialogue: DialogueConfig = field(default_factory=DialogueConfig)


_SECTIONS = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


def _section_from_table(name: str, table: object, source: str):
    cls = _SECTIONS[name]
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{source}: [{name}] has unknown keys: {', '.join(unknown)}")
    values = {}
    for key, value in table.items():
        default = getattr(cls(), key)
        if isinstance(default, Path):
            value = Path(value)
        elif default is not None and not isinstance(value, type(default)):
            if isinstance(default, float) and isinstance(value, int):
                value = float(value)
            else:
                raise ConfigError(
                    f"{source}: [{name}].{key} must be {type(default).__name__}, "
                    f"not {type(value).__name__}"
                )
        values[key] = value
    return cls(**values)


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Build the configuration from defaults, an optional TOML file and the environment."""
    environ = dict(os.environ if environ is None else environ)
    config = Config()
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            raise ConfigError(f"{source}: unknown sections: {', '.join(unknown)}")
        config = replace(
            config, **{name: _section_from_table(name, table, source) for name, table in data.items()}
        )
    llm = config.llm
    base_url = environ.get("VOICE_TUTOR_LLM_BASE_URL") or llm.base_url
    api_key = environ.get("VOICE_TUTOR_LLM_API_KEY") or environ.get("OPENAI_API_KEY") or llm.api_key
    model = environ.get("VOICE_TUTOR_LLM_MODEL") or llm.model
    return replace(config, llm=replace(llm, base_url=base_url, api_key=api_key, model=model))


def with_overrides(config: Config, **sections: dict) -> Config:
    """Return ``config`` with some fields of some sections replaced (None values are skipped)."""
    changed = {}
    for name, values in sections.items():
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            changed[name] = dataclasses.replace(getattr(config, name), **values)
    return replace(config, **changed)
