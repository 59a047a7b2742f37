"""The classroom's sections of the configuration file, by path.

They are part of :class:`voice_tutor.config.Config` (``[xapi]`` and
``[privacy]``), validated with the rest of the file; these helpers read them
for commands that take a ``--config`` path.
"""

from __future__ import annotations

from pathlib import Path

from voice_tutor.config import IRI_BASE, PrivacyConfig, XapiConfig, load_config

__all__ = ["IRI_BASE", "PrivacyConfig", "XapiConfig", "load_privacy_config", "load_xapi_config", "store_path"]


def load_xapi_config(path: str | Path | None) -> XapiConfig:
    return load_config(path, environ={}).xapi


def load_privacy_config(path: str | Path | None) -> PrivacyConfig:
    return load_config(path, environ={}).privacy


def store_path(path: str | Path | None) -> Path | None:
    """``[dialogue] store`` of the file, if it names one."""
    value = load_config(path, environ={}).dialogue.store
    return Path(value).expanduser() if value else None
