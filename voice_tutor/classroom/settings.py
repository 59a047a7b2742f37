"""The classroom's own TOML sections, read from the same file as ``voice_tutor.config``.

::

    [xapi]
    endpoint = "https://lrs.example.org/xapi/"   # statements go to <endpoint>statements
    username = "key"
    password = "secret"
    homepage = "https://school.example.org"       # the account homePage of pseudonymous actors
    ca_file = "/etc/ssl/lrs-ca.pem"               # optional: a private CA

    [privacy]
    redact_transcripts = true     # names, emails, phone numbers... replaced before turns are stored
    retention_days = 365          # `voice-tutor privacy purge` default

Unknown keys and wrong types are refused by name, like the rest of the configuration.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from voice_tutor.config import ConfigError

IRI_BASE = "https://voice-tutor.invalid/xapi"
"""Activities and the default account homePage live under this IRI (``.invalid``: never resolved)."""


@dataclass(frozen=True, slots=True)
class XapiConfig:
    endpoint: str | None = None
    """The LRS's xAPI base URL; None: statements are queued but not sent."""
    username: str | None = None
    password: str | None = None
    homepage: str = IRI_BASE
    ca_file: str | None = None
    timeout_s: float = 10.0
    batch_size: int = 50

    def __repr__(self) -> str:  # the password never reaches a log
        return f"XapiConfig(endpoint={self.endpoint!r}, username={self.username!r}, password=***)"


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    redact_transcripts: bool = False
    retention_days: int | None = None


_TYPES = {
    "endpoint": str, "username": str, "password": str, "homepage": str, "ca_file": str,
    "timeout_s": (int, float), "batch_size": int, "redact_transcripts": bool, "retention_days": int,
}


def _section(cls, name: str, data: dict, source: str):
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    known = {f.name for f in fields(cls)}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{source}: [{name}].{key}: unknown key")
        expected = _TYPES[key]
        if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
            raise ConfigError(f"{source}: [{name}].{key}: wrong type {type(value).__name__}")
    return cls(**table)


def _read(path: str | Path | None) -> tuple[dict, str]:
    if path is None:
        return {}, "defaults"
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8")), str(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load_xapi_config(path: str | Path | None) -> XapiConfig:
    data, source = _read(path)
    return _section(XapiConfig, "xapi", data, source)


def load_privacy_config(path: str | Path | None) -> PrivacyConfig:
    data, source = _read(path)
    config = _section(PrivacyConfig, "privacy", data, source)
    if config.retention_days is not None and config.retention_days < 1:
        raise ConfigError(f"{source}: [privacy].retention_days: must be at least 1")
    return config


def store_path(path: str | Path | None) -> Path | None:
    """``[dialogue] store`` of the file, read without ``load_config`` (which refuses our sections)."""
    data, _ = _read(path)
    value = data.get("dialogue", {}).get("store")
    return Path(value).expanduser() if value else None
