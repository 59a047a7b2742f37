"""Checking spoken answers, robust to how speech recognition writes them.

Whisper may write "twelve" or "12", "three quarters" or "3/4"; a learner may
say "I think it's twelve".  Everything here is pure text processing: number
words become digits (text2num), spoken fractions become fractions, and text
answers are matched fuzzily (rapidfuzz) so small misrecognitions pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

from rapidfuzz import fuzz
from text_to_num import alpha2digit

_DENOMINATORS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4,
    "fourth": 4, "fourths": 4, "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6,
    "seventh": 7, "sevenths": 7, "eighth": 8, "eighths": 8, "ninth": 9, "ninths": 9,
    "tenth": 10, "tenths": 10,
}
_NUMERATORS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
_NUMBER = r"-?\d+(?:\.\d+)?"
_SPOKEN_FRACTION = re.compile(rf"\b(\d+|{'|'.join(_NUMERATORS)})\s+({'|'.join(_DENOMINATORS)})\b")
_OVER = re.compile(rf"\b(\d+)\s*(?:/|\bover\b|\bout of\b|\bslash\b)\s*(\d+)\b")
_NUMBER_TOKEN = re.compile(rf"(?<![\w.])({_NUMBER}(?:/\d+)?)(?![\w])")


def normalize(text: str, language: str = "en") -> str:
    """Lowercase, number words as digits, spoken fractions as ``a/b``, no punctuation."""
    text = text.lower().replace("-", " ")
    if language == "en":
        text = _SPOKEN_FRACTION.sub(
            lambda m: f"{_NUMERATORS.get(m.group(1), m.group(1))}/{_DENOMINATORS[m.group(2)]}", text
        )
    try:
        text = alpha2digit(text, language, threshold=0)
    except (ValueError, KeyError):  # a language text2num does not know: keep the words
        pass
    text = _OVER.sub(lambda m: f"{m.group(1)}/{m.group(2)}", text)
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)
    text = re.sub(r"[^\w\s./-]|(?<!\d)\.|\.(?!\d)", " ", text)
    return " ".join(text.split())


def parse_number(text: str, language: str = "en") -> Fraction | None:
    """A single number written any way (``12``, ``twelve``, ``3/4``, ``0.5``), else None."""
    found = numbers_in(text, language)
    return found[0] if len(found) == 1 else None


def numbers_in(text: str, language: str = "en") -> list[Fraction]:
    values = []
    for token in _NUMBER_TOKEN.findall(normalize(text, language)):
        try:
            values.append(Fraction(token))
        except (ValueError, ZeroDivisionError):
            continue
    return values


_TEXT_MATCH = 85
"""rapidfuzz ratio (0-100) at which a heard phrase counts as the answer."""
_FILLERS = {"um", "uh", "erm", "er", "hmm", "hm", "mm", "ah", "oh", "well", "so", "like"}


@dataclass(frozen=True, slots=True)
class Verdict:
    correct: bool
    understood: bool
    """False when the utterance holds no answer of the right kind at all."""


def check_answer(utterance: str, accepted: list[str], kind: str, language: str = "en") -> Verdict:
    if kind == "number":
        said = numbers_in(utterance, language)
        if not said:
            return Verdict(correct=False, understood=False)
        targets = {parse_number(answer, language) for answer in accepted}
        return Verdict(correct=said[-1] in targets, understood=True)
    heard = normalize(utterance, language).split()
    if not heard or set(heard) <= _FILLERS:
        return Verdict(correct=False, understood=False)
    return Verdict(correct=any(_says(heard, normalize(a, language).split()) for a in accepted), understood=True)


def _says(heard: list[str], answer: list[str]) -> bool:
    """Whether some run of the heard words is the answer, allowing small misrecognitions.

    The run must be about as long as the answer: a learner who says only part
    of it ("carbon" for "carbon dioxide") has not said it.
    """
    if not answer:
        return False
    target = " ".join(answer)
    for size in {max(1, len(answer) - 1), len(answer), len(answer) + 1}:
        for start in range(0, max(1, len(heard) - size + 1)):
            window = " ".join(heard[start : start + size])
            if fuzz.ratio(window, target) >= _TEXT_MATCH:
                return True
    return False


class Request(Enum):
    """What a learner may ask for instead of answering."""

    HINT = "hint"
    REPEAT = "repeat"
    STOP = "stop"
    QUESTION = "question"
    SKIP = "skip"
    SLOWER = "slower"


_REQUEST_PATTERNS = [
    (Request.STOP, re.compile(r"\b(stop|goodbye|bye|i'?m done|that'?s enough|end the lesson)\b")),
    (Request.REPEAT, re.compile(
        r"\b(repeat|say (that|it) again|again please|what('?s| is| was) the question|pardon)\b"
    )),
    (Request.HINT, re.compile(
        r"\b(hint|help( me)?|clue|i (don'?t|do not) (know|understand|get it)|no idea|not sure|i'?m stuck)\b"
    )),
    (Request.QUESTION, re.compile(r"^(why|how|what|who|where|when|can you|could you|is it true)\b.*\?$")),
]


def classify_request(utterance: str) -> Request | None:
    text = utterance.lower().strip()
    for request, pattern in _REQUEST_PATTERNS:
        if pattern.search(text):
            return request
    return None


_TRIGGER_PATTERNS = [
    ("upset", re.compile(
        r"\b(i'?m (so )?(stupid|dumb|bad at (this|math|maths))|i hate (this|math|maths|fractions)|"
        r"this is (too|so) hard|i give up|i can'?t do (this|it)|i feel (sad|awful|terrible))\b"
    )),
    ("does_not_understand", re.compile(
        r"\b(i (don'?t|do not) (understand|get it)|what does (that|this|it) mean|i'?m (confused|lost)|makes no sense)\b"
    )),
    ("asks_for_answer", re.compile(
        r"\b(just )?(tell|give|show) me the answer\b|^(please |just |can you |could you )*tell me( please)?[.!?]?$|"
        r"\bwhat('?s| is) the (right |correct )?answer( please| then| to (this|that|it))?[.!?]?$"
    )),
]


def detect_trigger(utterance: str) -> str | None:
    """The lesson rule trigger an utterance fires by its words alone, if any.

    ``asks_for_answer`` becomes the lesson's ``asks_for_answer_twice`` when the
    tutor sees it a second time on one question.
    """
    text = utterance.lower()
    for trigger, pattern in _TRIGGER_PATTERNS:
        if pattern.search(text):
            return trigger
    return None
