"""Personal data in transcripts: redaction before storing, retention, and name scrubbing.

Redaction uses the safety filter's ``redact`` (emails, phone numbers,
addresses, "my name is ..." and the like) and also replaces every name the
store knows (learners, teachers) with ``[name]``, whole words, any case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from voice_tutor.dialogue.safety import redact
from voice_tutor.store import Store


def known_names(store: Store) -> list[str]:
    """Every learner and teacher name in the store, and their parts ("Ada Lovelace": also "Ada")."""
    names = {row[0] for row in store.read("SELECT name FROM learners")}
    names |= {row[0] for row in store.read("SELECT teacher FROM classes WHERE teacher IS NOT NULL")}
    parts = {part for name in names for part in re.split(r"\s+", name) if len(part) >= 2}
    return sorted(names | parts, key=len, reverse=True)


def scrub(text: str, names: Iterable[str]) -> str:
    """``text`` with personal data redacted and every one of ``names`` replaced by ``[name]``."""
    text = redact(text)
    for name in names:
        if name.strip():
            text = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", "[name]", text, flags=re.IGNORECASE)
    return text


class TranscriptRedactor:
    """What the turn recorder applies to every text before storing it, when configured.

    ``enabled=False`` (``[privacy] redact_transcripts = false``, the default)
    passes text through unchanged.
    """

    def __init__(self, store: Store, *, enabled: bool, extra_names: Iterable[str] = ()):
        self.enabled = enabled
        self._names = sorted(set(known_names(store)) | set(extra_names), key=len, reverse=True) if enabled else []

    def __call__(self, text: str | None) -> str | None:
        if text is None or not self.enabled:
            return text
        return scrub(text, self._names)


def purge(store: Store, older_than_days: int, *, now: datetime | None = None) -> int:
    """Delete the transcripts (and recordings) of sessions started more than ``older_than_days`` ago; returns turns deleted."""
    if older_than_days < 0:
        raise ValueError("older_than_days must not be negative")
    now = now or datetime.now(UTC)
    return store.purge_transcripts(now - timedelta(days=older_than_days))
