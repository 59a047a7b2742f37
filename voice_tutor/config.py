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
from dataclasses import field, fields, replace
from pathlib import Path

from pydantic import ConfigDict, StrictBool, StrictFloat, StrictInt, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass as _validated_dataclass

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


def dataclass(cls):
    """A frozen dataclass whose fields are type-checked (pydantic), unknown ones refused."""
    return _validated_dataclass(frozen=True, config=ConfigDict(extra="forbid"))(cls)


@dataclass
class SpeechToTextConfig:
    model: str = "bundled:whisper-base"
    """A faster-whisper model: ``bundled:whisper-base``, a directory, or a size name."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    compute_type: str = "auto"
    """``auto`` (float16 on CUDA, int8 on CPU) or any CTranslate2 compute type."""
    cpu_threads: StrictInt = 0
    """Threads per worker on the CPU; 0 shares the cores among the workers."""
    workers: StrictInt = 0
    """Transcriptions that run at once (sessions' turns in parallel); 0: one per core up to 4, or 4 on a GPU."""
    language: str | None = "en"
    """None detects the language per utterance."""
    padding_s: StrictFloat = 3.0
    """Silence appended to an utterance before encoding (see speech/stt.py)."""
    beam_size: StrictInt = 1
    """Beams when decoding a turn: 1 (greedy) is fastest; 2 matched ``transcribe()``'s word error rate
    on an AVX2 CPU for ~6% more recognition time (``benchmarks/recognition_paths.py``)."""
    lesson_hotwords: StrictBool = True
    """Bias recognition towards the lesson's vocabulary during a session (see benchmarks/hotwords.py)."""
    answer_hotwords: StrictBool = True
    """While a question is pending, also bias recognition towards how its answers are said
    (see benchmarks/spoken_judgement.py)."""

    @field_validator("beam_size")
    @classmethod
    def _some_beams(cls, beams: int) -> int:
        if not 1 <= beams <= 10:
            raise ValueError(f"beam_size must be 1 to 10, not {beams}")
        return beams

    @field_validator("language")
    @classmethod
    def _whisper_knows_it(cls, language: str | None) -> str | None:
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        if language is not None and language not in _LANGUAGE_CODES:
            raise ValueError(f"unknown language code {language!r} (Whisper knows e.g. en, es, fr, de)")
        return language


@dataclass
class TextToSpeechConfig:
    voice: str = "bundled:joe"
    """A piper voice: ``bundled:joe`` or a path to an ``.onnx`` voice (config beside it)."""
    length_scale: StrictFloat | None = None
    """Speaking rate: >1 slower, <1 faster; None keeps the voice's own."""
    workers: StrictInt = 0
    """Sentences synthesized at once across sessions (0: one per core up to 4); the cores are shared among them."""


@dataclass
class TurnTakingConfig:
    speech_threshold: StrictFloat = 0.5
    silence_threshold: StrictFloat = 0.35
    min_speech_ms: StrictInt = 96
    """Voiced audio needed before a turn (or a barge-in) starts."""
    pause_ms: StrictInt = 160
    """Silence after which the utterance is transcribed, in case the turn is over."""
    end_of_turn_ms: StrictInt = 320
    """Silence that ends a turn whose words sound finished."""
    unfinished_end_of_turn_ms: StrictInt = 1200
    """Silence that ends a turn whose words trail off ('and', 'the', 'um')."""
    continuing_end_of_turn_ms: StrictInt = 900
    """Silence that ends a turn whose voice did not fall at the pause (level or rising: a list, 'Front, ...')."""
    partial_interval_ms: StrictInt = 700
    pre_roll_ms: StrictInt = 200
    max_utterance_s: StrictFloat = 25.0


@dataclass
class LLMConfig:
    base_url: str | None = None
    """An OpenAI-compatible endpoint; None runs the offline tutor."""
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    timeout_s: StrictFloat = 20.0
    """The longest pause allowed between two pieces of a reply once it has started."""
    temperature: StrictFloat = 0.4
    max_tokens: StrictInt = 200
    """The cap on one reply's length, in tokens (a spoken turn is a few sentences), kept free in the context."""
    moderation: StrictBool = False
    """Also check learner words with the endpoint's moderation API (OpenAI's), on top of the local filter."""
    context_tokens: StrictInt | None = None
    """The endpoint's context window; None asks the server (llama.cpp ``/props``, vLLM ``/v1/models``,
    Ollama ``/api/show``) and assumes 4096 where it does not say.  Prompts are budgeted to fit it."""
    first_token_timeout_s: StrictFloat = 1.5
    """How long a turn waits for the reply's first words before the offline tutor answers instead."""
    holding_phrase: str = "Let me think."
    """Said when the first words are late but the server has started answering ("" says nothing)."""
    holding_grace_s: StrictFloat = 3.0
    """After the holding phrase, how much longer to wait for the first words."""
    breaker_failures: StrictInt = 2
    """Failed turns in a row after which the endpoint is left alone (and probed in the background)."""
    breaker_cooldown_s: StrictFloat = 30.0
    """Seconds between background probes of an endpoint left alone."""
    max_spoken_chars: StrictInt = 600
    """The most a reply may say aloud in one turn (longer replies stop at a sentence end)."""

    @field_validator("first_token_timeout_s", "holding_grace_s", "breaker_cooldown_s", "timeout_s")
    @classmethod
    def _positive_seconds(cls, seconds: float) -> float:
        if seconds <= 0:
            raise ValueError(f"must be more than 0 seconds, not {seconds}")
        return seconds

    @field_validator("context_tokens")
    @classmethod
    def _room_for_a_lesson(cls, tokens: int | None) -> int | None:
        if tokens is not None and tokens < 1024:
            raise ValueError(f"must be at least 1024 tokens (a lesson prompt and a reply), not {tokens}")
        return tokens

    @field_validator("max_tokens", "breaker_failures", "max_spoken_chars")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, not {value}")
        return value


@dataclass
class DialogueConfig:
    lesson: str = "arithmetic"
    """A lesson id from the lessons directory, or a path to a lesson file."""
    lessons_dir: Path = ASSETS_DIR / "lessons"
    learner_name: str | None = None
    """Named learners are remembered across sessions; unnamed ones are not."""
    store: Path | None = None
    """The learner database (SQLite); None is ``$XDG_DATA_HOME/voice-tutor/tutor.db``."""


IRI_BASE = "https://voice-tutor.invalid/xapi"
"""xAPI activities and the default account homePage live under this IRI (``.invalid``: never resolved)."""


@dataclass
class XapiConfig:
    """Where learning-record statements go (a Learning Record Store)."""

    endpoint: str | None = None
    """The LRS's xAPI base URL (statements go to ``<endpoint>statements``); None: queued, not sent."""
    username: str | None = None
    password: str | None = None
    homepage: str = IRI_BASE
    """The account homePage of the pseudonymous actors."""
    ca_file: str | None = None
    """A private certificate authority to trust for the LRS's HTTPS."""
    timeout_s: StrictFloat = 10.0
    batch_size: StrictInt = 50

    def __repr__(self) -> str:  # the password never reaches a log
        return f"XapiConfig(endpoint={self.endpoint!r}, username={self.username!r}, password=***)"


@dataclass
class PrivacyConfig:
    redact_transcripts: StrictBool = False
    """Names, emails, phone numbers... replaced before turns are stored."""
    retention_days: StrictInt | None = None
    """``voice-tutor privacy purge`` deletes transcripts (and recordings) older than this."""
    record_audio: StrictBool = False
    """Keep each spoken learner turn as a WAV file; the learner is told when the session starts."""
    recordings_dir: Path | None = None
    """Where recordings go; None is a ``recordings`` folder beside the learner database."""

    @field_validator("retention_days")
    @classmethod
    def _at_least_a_day(cls, days: int | None) -> int | None:
        if days is not None and days < 1:
            raise ValueError("must be at least 1")
        return days


@dataclass
class ProgressApiConfig:
    """Who may read the JSON progress API served at ``/api/v1`` by ``voice-tutor serve``."""

    tokens: dict[str, list[str]] = field(default_factory=dict)
    """Bearer token → the classes it may see (``["*"]``: all of them)."""

    def __repr__(self) -> str:  # tokens never reach a log
        return f"ProgressApiConfig(tokens=<{len(self.tokens)} hidden>)"


@dataclass
class Config:
    stt: SpeechToTextConfig = field(default_factory=SpeechToTextConfig)
    tts: TextToSpeechConfig = field(default_factory=TextToSpeechConfig)
    turns: TurnTakingConfig = field(default_factory=TurnTakingConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    dialogue: DialogueConfig = field(default_factory=DialogueConfig)
    xapi: XapiConfig = field(default_factory=XapiConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    progress_api: ProgressApiConfig = field(default_factory=ProgressApiConfig)


_SECTIONS = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


def _section_from_table(name: str, table: object, source: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    try:
        return TypeAdapter(_SECTIONS[name]).validate_python(table)
    except ValidationError as exc:
        problems = "; ".join(
            f"[{name}].{'.'.join(str(part) for part in item['loc'])}: {_problem(item)}" for item in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


_EXPECTED = {"int": "an integer", "float": "a number", "string": "text", "bool": "true or false", "path": "a path"}


def _problem(item: dict) -> str:
    """A pydantic error said the way a person editing a TOML file needs it."""
    if item["type"] == "unexpected_keyword_argument":
        return "unknown key"
    if item["type"] == "value_error":
        return str(item["ctx"]["error"])
    kind = item["type"].split("_")[0]
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, not {type(item['input']).__name__}"
    return item["msg"]


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
            current = dataclasses.asdict(getattr(config, name))
            changed[name] = _section_from_table(name, {**current, **values}, "command line")
    return replace(config, **changed)
