"""Every lesson of the lessons folder: the one a learner names, and what to offer after one.

A learner switches lessons by saying so ("can we do fractions", "I want to
learn Spanish"), and speech recognition writes that unpunctuated and
sometimes misspelt, so a lesson is found by its id, its title, the distinctive
words of its title, its subject and the language it is answered in, matched
fuzzily.  Words two lessons share ("adding", "mathematics") only decide
between the lessons that have them.

A lesson's ``prerequisites`` (lesson ids) order the catalogue: after a lesson
the tutor offers the lessons that follow it, then any other whose
prerequisites the learner has finished, younger audiences first.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rapidfuzz import fuzz

from voice_tutor.learning.lessons import Lesson, LessonError, load_lesson

log = logging.getLogger(__name__)

_STOPWORDS = frozenset(
    "a an and are at by do for from how in into is it its of on or our the their them they this to we what when "
    "where which who why with within your you make makes made some".split()
)
_LANGUAGES = {"es": "spanish", "fr": "french", "de": "german", "it": "italian", "pt": "portuguese",
              "nl": "dutch", "zh": "chinese", "ja": "japanese", "ar": "arabic", "ru": "russian"}
_SUBJECT_WORDS = {"mathematics": ("maths", "math", "mathematics"), "biology": ("biology", "science"),
                  "physics": ("physics", "science"), "chemistry": ("chemistry", "science")}
_FUZZY = 86
"""rapidfuzz ratio at which a heard word counts as a lesson's word (``photosinthesis``)."""
MAX_LESSONS = 256
"""A folder with more lesson files than this is read this far (a bound on memory and matching)."""


def normalize(text: str) -> list[str]:
    """Lowercase words without accents, apostrophes or punctuation: ``Newton's café`` -> ``newtons cafe``."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).replace("'", "").replace("’", "")
    return re.findall(r"[a-z0-9]+", text)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def short_title(lesson: Lesson) -> str:
    """The title up to its colon, as the tutor says it: ``Fractions``, ``En el café``."""
    return lesson.title.split(":", 1)[0].strip()


@dataclass(frozen=True)
class _Names:
    phrases: tuple[tuple[str, ...], ...]
    """Whole names (the id's words, the short title): worth most."""
    words: frozenset[str]
    """Distinctive words of the title and id, the subject's words and the answer language's name (stemmed)."""


@dataclass(frozen=True)
class Catalogue:
    """The valid lessons of a folder, in prerequisite order; ``refused`` says why any others were left out."""

    lessons: tuple[Lesson, ...]
    refused: tuple[str, ...] = ()
    _names: dict[str, _Names] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, lessons_dir: Path) -> Catalogue:
        lessons: dict[str, Lesson] = {}
        refused: list[str] = []
        for path in sorted(Path(lessons_dir).glob("*.toml"))[:MAX_LESSONS]:
            try:
                lesson = load_lesson(path)
            except LessonError as error:
                refused.append(str(error))
                continue
            if lesson.id in lessons:
                refused.append(f"{path}: id: lesson {lesson.id!r} is defined twice")
                continue
            lessons[lesson.id] = lesson
        for problem in refused:
            log.warning("lesson refused: %s", problem)
        return cls.of(list(lessons.values()), refused)

    @classmethod
    def of(cls, lessons: list[Lesson], refused: list[str] | tuple[str, ...] = ()) -> Catalogue:
        """A catalogue of these lessons; a lesson whose prerequisites are unknown or circular is refused."""
        known = sorted(lesson.id for lesson in lessons)
        by_id = {lesson.id: lesson for lesson in lessons}
        refused = list(refused)
        for lesson in lessons:
            for i, prerequisite in enumerate(lesson.prerequisites):
                if prerequisite not in known:
                    refused.append(f"{lesson.id}: prerequisites.{i}: unknown lesson {prerequisite!r} "
                                   f"(known: {', '.join(known)})")
                    by_id.pop(lesson.id, None)
        while dropped := [lesson for lesson in by_id.values() if any(p not in by_id for p in lesson.prerequisites)]:
            for lesson in dropped:  # a lesson after a refused one cannot be reached either
                missing = next(p for p in lesson.prerequisites if p not in by_id)
                refused.append(f"{lesson.id}: prerequisites.{lesson.prerequisites.index(missing)}: "
                               f"lesson {missing!r} is refused, so this one cannot follow it")
                del by_id[lesson.id]
        order: list[Lesson] = []
        visiting: set[str] = set()

        def visit(lesson: Lesson) -> bool:
            if lesson in order:
                return True
            if lesson.id in visiting:
                return False
            visiting.add(lesson.id)
            fine = all(visit(by_id[p]) for p in lesson.prerequisites if p in by_id)
            visiting.discard(lesson.id)
            if fine and all(p in by_id for p in lesson.prerequisites):
                order.append(lesson)
            return fine

        for lesson in sorted(by_id.values(), key=lambda lesson: (lesson.audience.min_age or 0, lesson.id)):
            if not visit(lesson):
                refused.append(f"{lesson.id}: prerequisites: lessons' prerequisites form a cycle through {lesson.id!r}")
        catalogue = cls(tuple(order), tuple(refused))
        catalogue._names.update(_names_of(catalogue.lessons))
        return catalogue

    def get(self, lesson_id: str) -> Lesson | None:
        return next((lesson for lesson in self.lessons if lesson.id == lesson_id), None)

    def named_in(self, text: str) -> Lesson | None:
        """The lesson ``text`` names (best match), or None when it names none, or several equally."""
        heard = normalize(text)
        stems = {_stem(word) for word in heard if word not in _STOPWORDS}
        stems |= {_stem(a + b) for a, b in zip(heard, heard[1:])}  # "photo synthesis"
        scores: Counter[str] = Counter()
        for lesson in self.lessons:
            names = self._names[lesson.id]
            for phrase in names.phrases:
                if _contains(heard, phrase):
                    scores[lesson.id] += 3
            for word in names.words:
                if word in stems or (len(word) >= 6 and any(fuzz.ratio(word, s) >= _FUZZY for s in stems)):
                    scores[lesson.id] += 1
        if not scores:
            return None
        (best, score), *rest = scores.most_common()
        if rest and rest[0][1] == score:
            return None
        return self.get(best)

    def next_after(self, lesson: Lesson | None, done: set[str] | frozenset[str]) -> list[Lesson]:
        """Lessons to offer next: those that follow ``lesson``, then any whose prerequisites are done."""
        finished = set(done) | ({lesson.id} if lesson else set())
        ready = [other for other in self.lessons
                 if other.id not in finished and all(p in finished for p in other.prerequisites)]
        following = [other for other in ready if lesson is not None and lesson.id in other.prerequisites]
        return following + [other for other in ready if other not in following]


def _names_of(lessons: tuple[Lesson, ...]) -> dict[str, _Names]:
    words_of: dict[str, set[str]] = {}
    for lesson in lessons:
        words = {_stem(w) for w in normalize(f"{lesson.id.replace('-', ' ')} {lesson.title}")
                 if len(w) >= 4 and w not in _STOPWORDS and not w.isdigit()}
        words |= {_stem(w) for w in _SUBJECT_WORDS.get(lesson.subject.lower(), (lesson.subject.lower(),))}
        if lesson.answer_language in _LANGUAGES:
            words.add(_LANGUAGES[lesson.answer_language])
        words_of[lesson.id] = words
    names = {}
    for lesson in lessons:
        phrases = {tuple(normalize(lesson.id.replace("-", " "))), tuple(normalize(short_title(lesson)))}
        names[lesson.id] = _Names(tuple(p for p in phrases if p), frozenset(words_of[lesson.id]))
    return names


def _contains(heard: list[str], phrase: tuple[str, ...]) -> bool:
    size = len(phrase)
    return any(tuple(heard[i:i + size]) == phrase for i in range(len(heard) - size + 1))
