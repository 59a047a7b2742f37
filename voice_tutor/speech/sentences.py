"""Cut streaming reply text into pieces worth synthesizing on their own.

Pure and incremental: text arrives token by token, complete sentences leave
as soon as their final punctuation is followed by a space (or the stream
ends).  The very first piece may be an opening clause, so the learner hears
the tutor start while the rest of a long first sentence is still arriving,
or is still being synthesized: piper's time to first audio grows with the
length of the piece, so a long first sentence is said in two.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?…])([\"')\]]*)\s+|\n+")
"""The end of a sentence: its final punctuation and closing quotes (kept), then space."""
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s+|\s+(?=(?:and|but|because|so|which|when|where|while|if|or|then)\s)")
"""After a comma, semicolon, colon or dash, or before a conjunction that opens a clause."""
_ABBREVIATIONS = {"e.g.", "i.e.", "mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "etc.", "approx."}


class SentenceChunker:
    def __init__(self, first_clause_min_words: int = 5, first_sentence_max_words: int = 9):
        """A first sentence of more than ``first_sentence_max_words`` is said from its first clause
        boundary that leaves ``first_clause_min_words`` or more before it (and a few after)."""
        self._buffer = ""
        self._emitted_any = False
        self._first_clause_min_words = first_clause_min_words
        self._first_sentence_max_words = first_sentence_max_words

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
        if not self._emitted_any:
            pieces = self._split_opening(pieces[0]) + pieces[1:] if pieces else self._opening_clause()
        self._emitted_any = self._emitted_any or bool(pieces)
        return pieces

    def _opening_clause(self) -> list[str]:
        """The first sentence is still arriving: say its opening clause once it is long enough."""
        for match in _CLAUSE_END.finditer(self._buffer):
            clause = self._buffer[: match.start()].strip()
            if len(clause.split()) >= self._first_clause_min_words and match.end() < len(self._buffer):
                self._buffer = self._buffer[match.end() :]
                return [clause]
        return []

    def _split_opening(self, sentence: str) -> list[str]:
        """A complete but long first sentence: its opening clause, then the rest."""
        if len(sentence.split()) <= self._first_sentence_max_words:
            return [sentence]
        for match in _CLAUSE_END.finditer(sentence):
            clause, rest = sentence[: match.start()].strip(), sentence[match.end() :].strip()
            if len(clause.split()) >= self._first_clause_min_words and len(rest.split()) >= 3:
                return [clause, rest]
        return [sentence]

    def flush(self) -> list[str]:
        """The stream ended: whatever is left is the last piece (a long first sentence in two)."""
        rest, self._buffer = self._buffer.strip(), ""
        if not rest:
            return []
        pieces = self._split_opening(rest) if not self._emitted_any else [rest]
        self._emitted_any = True
        return pieces
