"""Cut streaming reply text into pieces worth synthesizing on their own.

Pure and incremental: text arrives token by token, complete sentences leave
as soon as their final punctuation is followed by a space (or the stream
ends).  The very first piece may be an opening clause, so the learner hears
the tutor start while the rest of a long first sentence is still arriving.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?…])([\"')\]]*)\s+|\n+")
"""The end of a sentence: its final punctuation and closing quotes (kept), then space."""
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s+")
_ABBREVIATIONS = {"e.g.", "i.e.", "mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "etc.", "approx."}


class SentenceChunker:
    def __init__(self, first_clause_min_words: int = 5):
        self._buffer = ""
        self._emitted_any = False
        self._first_clause_min_words = first_clause_min_words

    def push(self, text: str) -> list[str]:
        """Add streamed text; return the pieces that are complete."""
        self._buffer += text
        pieces: list[str] = []
        start = 0
        for match in _SENTENCE_END.finditer(self._buffer):
            candidate = self._buffer[start : match.end(1) if match.group(1) is not None else match.start()].strip()
            last_word = candidate.rsplit(" ", 1)[-1].lower()
            if not candidate or last_word in _ABBREVIATIONS:
                continue
            pieces.append(candidate)
            start = match.end()
        self._buffer = self._buffer[start:]
        if not pieces and not self._emitted_any:
            pieces.extend(self._opening_clause())
        self._emitted_any = self._emitted_any or bool(pieces)
        return pieces

    def _opening_clause(self) -> list[str]:
        for match in _CLAUSE_END.finditer(self._buffer):
            clause = self._buffer[: match.start()].strip()
            if len(clause.split()) >= self._first_clause_min_words:
                self._buffer = self._buffer[match.end() :]
                return [clause]
        return []

    def flush(self) -> list[str]:
        """The stream ended: whatever is left is the last piece."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []
