"""What an LLM may say aloud: its streamed text made fit for a speech synthesizer.

A model's reply is written for a screen: markdown, code fences, HTML entities
(``don&#39;t``), links, emoji, lists, long monologues, and sometimes the
system prompt echoed back.  Piper would read all of it, and the store would
keep it.  :class:`SpeechFilter` sits between the LLM stream and the rest of
the session, one per turn, and passes on only speakable sentences:

* markup is removed (emphasis, headings, bullets, tables, HTML tags) and
  entities decoded; a link keeps its words, a bare URL is dropped;
* code (fenced blocks, inline code that is not a plain word) is never read out,
  nor is JSON a model wrote instead of calling a tool;
* a sentence longer than ``max_sentence_words`` is broken at a comma or cut;
* the whole turn stops after ``max_chars`` characters, at a sentence end;
* a sentence that repeats the instructions (six words in a row from them, or an
  internal name such as a tool's) is dropped.

It is pure text processing (no I/O) and works sentence by sentence, so speech
can start as soon as the first sentence is complete.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

DEFAULT_MAX_CHARS = 600
"""About four spoken sentences: a tutor's turn, not a lecture."""
DEFAULT_MAX_SENTENCE_WORDS = 40
ECHO_WORDS = 6
"""A sentence sharing this many words in a row with the instructions is an echo of them."""

_FENCE = re.compile(r"```|~~~")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\s*\n\s*")
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_PLAIN_WORDS = re.compile(r"[\w .,'-]{1,24}")
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3}|(?<!\w)_)(?=\S)(.+?)(?<=\S)\1(?!\w)")
_SCRIPT = re.compile(r"<(script|style)\b.*?(</\1\s*>|$)", re.DOTALL | re.IGNORECASE)
_LINE_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|>+\s*|[-*+•]\s+|\d+[.)]\s+)", re.MULTILINE)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}.*$", re.MULTILINE)
_JSON_LIKE = re.compile(r"^\s*[\[{].*[:\]}]", re.DOTALL)
_TOOL_TAGS = re.compile(r"<(tool_call|function_call|tools?)>.*?(</\1>|$)", re.DOTALL | re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _speakable_char(char: str) -> bool:
    category = unicodedata.category(char)
    return not (category in ("So", "Cs", "Co", "Cn") or (category == "Cc" and char not in "\n\t"))


def clean_markup(text: str) -> str:
    """``text`` without markup, entities decoded, links reduced to their words, URLs and emoji gone."""
    text = _TOOL_TAGS.sub(" ", text)
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _INLINE_CODE.sub(lambda m: m.group(1) if _PLAIN_WORDS.fullmatch(m.group(1)) else " ", text)
    text = _TAG.sub(" ", _SCRIPT.sub(" ", text))
    text = html.unescape(text)
    text = _TAG.sub(" ", _SCRIPT.sub(" ", text))  # tags that were written as entities
    text = _TABLE_RULE.sub(" ", text)
    text = _LINE_MARKUP.sub("", text)
    for _ in range(2):  # nested emphasis: ***bold italic*** inside **bold**
        text = _EMPHASIS.sub(r"\2", text)
    text = text.replace("|", ", ").replace("#", " ").replace("`", " ")
    text = "".join(char for char in text if _speakable_char(char))
    text = re.sub(r"\s+([,.!?;:])", r"\1", " ".join(text.split()))
    return re.sub(r"^[,;:\s]+", "", text).strip()


class SpeechFilter:
    """One turn of LLM text in, speakable sentences out (see the module's docstring).

    ``instructions`` is what the model was told but must never say (the
    system prompt's rules, not the lesson's questions); ``internal_names``
    (tool names, field names) mark a sentence as not meant for the learner.
    """

    def __init__(
        self,
        instructions: str = "",
        *,
        internal_names: Iterable[str] = (),
        max_chars: int = DEFAULT_MAX_CHARS,
        max_sentence_words: int = DEFAULT_MAX_SENTENCE_WORDS,
    ):
        words = _words(instructions)
        self._echoes = {tuple(words[i : i + ECHO_WORDS]) for i in range(len(words) - ECHO_WORDS + 1)}
        names = [name for name in internal_names if name]
        self._internal = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b", re.IGNORECASE) if names else None
        self.max_chars = max_chars
        self.max_sentence_words = max_sentence_words
        self._pending = ""
        self._in_code = False
        self._spoken = 0
        self.dropped: list[str] = []
        """Why each dropped sentence was dropped (``echo``, ``internal``, ``code``, ``over_length``): for logs."""

    @property
    def full(self) -> bool:
        """The turn has said all it may."""
        return self._spoken >= self.max_chars

    def push(self, piece: str) -> list[str]:
        """The speakable sentences completed by ``piece``, each ending in a space."""
        self._pending += piece
        out: list[str] = []
        while True:
            fence = _FENCE.search(self._pending)
            end = _SENTENCE_END.search(self._pending)
            if fence is not None and (end is None or fence.start() <= end.start()):
                before, self._pending = self._pending[: fence.start()], self._pending[fence.end() :]
                if self._in_code:
                    self.dropped.append("code")
                else:
                    out += self._sentence(before)
                self._in_code = not self._in_code
                continue
            if end is None:
                break
            sentence, self._pending = self._pending[: end.end()], self._pending[end.end() :]
            if self._in_code:
                continue
            out += self._sentence(sentence)
        if self._in_code:
            self._pending = self._pending[-3:]  # code is never said: keep only what may start a closing fence
        return out

    def finish(self) -> list[str]:
        """What is left at the end of the turn (an unfinished sentence is said; unfinished code is not)."""
        rest, self._pending = self._pending, ""
        if self._in_code:
            self.dropped.append("code")
            return []
        out = self._sentence(rest)
        return [*out[:-1], out[-1].rstrip()] if out else []  # nothing follows the last one

    def finish_broken(self) -> list[str]:
        """The end of a reply that broke off: its last sentence only if it was finished."""
        if re.search(r"[.!?…][\"')\]]*\s*$", self._pending):
            return self.finish()
        self._pending = ""
        return []

    def _sentence(self, raw: str) -> list[str]:
        if self.full or not raw.strip():
            if raw.strip():
                self.dropped.append("over_length")
            return []
        if _JSON_LIKE.match(raw) and not _words(_JSON_LIKE.sub("", raw)):
            self.dropped.append("code")
            return []
        text = clean_markup(raw)
        words = _words(text)
        if not words:
            return []
        if self._internal is not None and self._internal.search(raw):
            self.dropped.append("internal")
            return []
        if any(tuple(words[i : i + ECHO_WORDS]) in self._echoes for i in range(len(words) - ECHO_WORDS + 1)):
            self.dropped.append("echo")
            return []
        out = []
        for part in _within_words(text, self.max_sentence_words):
            if self.full:
                self.dropped.append("over_length")
                break
            room = self.max_chars - self._spoken
            if len(part) > room and self._spoken:  # a whole sentence or none, unless it is the first
                self.dropped.append("over_length")
                self._spoken = self.max_chars
                break
            if len(part) > room:
                part = _cut_words(part, room)
            out.append(part + " ")  # the space tells the sentence chunker downstream that it has ended
            self._spoken += len(part) + 1
        return out


def _within_words(text: str, limit: int) -> list[str]:
    """``text`` as sentences of at most ``limit`` words, broken after a comma where one is near."""
    words = text.split()
    parts = []
    while len(words) > limit:
        cut = max((i + 1 for i, word in enumerate(words[:limit]) if word.endswith((",", ";", ":"))
                   and i >= limit // 2), default=limit)
        head = " ".join(words[:cut]).rstrip(",;:")
        parts.append(head if head.endswith((".", "!", "?")) else head + ".")
        words = words[cut:]
    if words:
        parts.append(" ".join(words))
    return parts


def _cut_words(text: str, limit: int) -> str:
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut if cut.endswith((".", "!", "?")) else cut + "."
