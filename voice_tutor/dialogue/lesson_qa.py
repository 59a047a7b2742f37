"""Answering a learner's own questions from the lesson itself, offline.

The offline tutor has no language model, but a lesson already holds good
answers: worked explanations, hints, skill descriptions, objectives,
misconception feedback and resources.  ``LessonQA`` finds the passage that
covers a question best and says it, or returns no text, so the tutor can say
honestly that it does not know rather than guess.

Scoring is IDF-weighted coverage: the share of the question's content words
(weighted by how rare they are in the lesson) that a passage contains, with
words found only in the passage's surroundings (its question's prompt, its
skill's name) counting for less.  Unlike raw BM25 or TF-IDF cosine scores,
this lies in 0..1 for every lesson, so one threshold means the same thing for
a four-question lesson and a forty-question one; and a question about
something the lesson never mentions ("who won the football?") scores 0,
because a word the lesson never uses counts against the passage as much as
the lesson's rarest word counts for it.  A passage must contain at least one
of the question's words itself.  Text goes through
the same normalisation as spoken answers (``answers.normalize``: "seven" and
"7" are one word), a light suffix stemmer, and fuzzy matching of rare terms,
so speech-recognition slips ("photosinthesis", "chloro plast") still match.

The passages are gathered by walking the lesson model, so text fields added to
the schema later are searched too unless listed in ``_NOT_CONTENT``.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from pydantic import BaseModel
from rapidfuzz import fuzz, process

from voice_tutor.dialogue.answers import check_answer, normalize, numbers_in, parse_number
from voice_tutor.learning.lessons import Lesson, Question

DEFAULT_THRESHOLD = 0.5
"""Below this share of the question covered, the lesson does not answer it."""
MAX_QUESTION_CHARS = 1000
"""A spoken question is a sentence or two; longer input is cut, so hostile text stays cheap."""

_NOT_CONTENT = {
    "id", "kind", "url", "simulation", "parameters", "answers", "skill", "prerequisites", "vocabulary",
    "greeting", "wrap_up", "review_intro", "practice_intro", "rules", "audience", "level", "subject",
    "answer_language", "socratic",
}
"""Fields that are not teaching content: ids, answer keys, conversation lines, settings."""
_TOP_LEVEL_ONLY_SKIPPED = {"title"}
"""The lesson's own title is a label; a resource's title is content."""
_CONTEXT_FIELDS = {"prompt", "name"}
"""Text that helps find a passage (a question's prompt) but is no answer on its own."""
_PRIORS = {"explanation": 1.0, "description": 0.95, "hints": 0.9, "title": 0.85, "objectives": 0.8, "feedback": 0.75}
"""How well each kind of text answers a question; worked explanations best."""
_DEFAULT_PRIOR = 0.85
_CONTEXT_WEIGHT = 0.6
_FUZZY_WEIGHT = 0.8
_FUZZY_CUTOFF = 90
_MIN_PASSAGE_WORDS = 3

_STOP_WORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being both but by can
could did do does doing done don't each even ever for from get gets getting got had has have having he
her here hers him his how i i'd i'm i've if in into is isn't it it's its just know let let's like me mean
means meaning might more most much my no not now of off on once only or other our out over please quite
really said say says she should so some such tell than thank thanks that that's the their them then there
these they thing things this those through to too uh um understand us very want was we well were what
what's when where which while who whom why will with would yes you you're your explain called call
lesson teacher tutor work works okay ok oh hmm hey hi er erm actually maybe sure don doesn didn isn aren wasn
weren couldn wouldn shouldn ll re ve come comes came go goes went make makes made give gives gave
""".split())

_TOKEN = re.compile(r"[a-z0-9][a-z0-9'/.]*")


def _stem(word: str) -> str:
    """A light suffix stripper: 'adding', 'added', 'adds' and 'add' meet; so do 'gases' and 'gas'."""
    if word[0].isdigit():
        return word
    word = word.replace("'", "")
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    else:
        if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")) and len(word) > 4:
            word = word[:-2]
        elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
            word = word[:-1]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _tokens(text: str) -> list[str]:
    return [token.rstrip("./") for token in _TOKEN.findall(normalize(text))]


def _terms(tokens: list[str]) -> list[str]:
    """Content words, stemmed; single letters are what is left of "what's" or "don't" once normalised."""
    return [_stem(token) for token in tokens
            if token not in _STOP_WORDS and (len(token) > 1 or token.isdigit())]


@dataclass(frozen=True, slots=True)
class QAResult:
    """The spoken answer (None when the lesson does not cover the question), its score and where it came from.

    ``source`` names the lesson field, e.g. ``questions[add-7-5].explanation``;
    with no answer it names the best candidate, or is empty.
    """

    text: str | None
    score: float
    source: str


class _Text(NamedTuple):
    """One string of the lesson, before the passages are built from all of them."""

    group: str
    """The top-level item it belongs to, e.g. ``questions[add-7-5]``: its surroundings."""
    skills: list[str]
    text: str
    owner: BaseModel | None
    field: str | None
    source: str
    is_answer: bool
    terms: list[str]


@dataclass(frozen=True, slots=True)
class _Passage:
    spoken: str
    source: str
    text: str
    terms: frozenset[str]
    context: frozenset[str]
    """Terms of the passage's surroundings (its question, its skill) that it lacks itself."""
    length: int
    prior: float


def _walk(value: object, path: tuple[str, ...] = (), owner: BaseModel | None = None,
          field: str | None = None, top: object = None
          ) -> Iterator[tuple[tuple[str, ...], str, BaseModel | None, str | None, object]]:
    """Every string of the lesson: its readable path, the model and field holding it, and the top-level item."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            if name in _NOT_CONTENT or (not path and name in _TOP_LEVEL_ONLY_SKIPPED):
                continue
            yield from _walk(getattr(value, name), (*path, name), value, name, top)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            label = getattr(item, "id", None) or str(index)
            yield from _walk(item, (*path[:-1], f"{path[-1]}[{label}]"), owner, field,
                             item if len(path) == 1 else top)
    elif isinstance(value, str) and value.strip():
        yield path, value.strip(), owner, field, top


def _spoken(text: str, owner: BaseModel | None, field: str | None) -> str:
    """The passage as the tutor says it: marked as the lesson's words, otherwise as written."""
    sentence = text if text[-1] in ".!?" else f"{text}."
    kind = getattr(owner, "kind", None)
    if field == "title" and isinstance(kind, str):
        return f"Our lesson has {'an' if kind[0] in 'aeiou' else 'a'} {kind} that can help: {sentence}"
    if field == "objectives":
        return f"In this lesson, we learn to {sentence[0].lower()}{sentence[1:]}"
    return f"Here's what our lesson says: {sentence}"


def _linked_skills(item: object) -> list[str]:
    """The skills a question or resource is about, so their names and descriptions help find it."""
    linked = getattr(item, "skills", None) or [getattr(item, "skill", None)]
    return [f"skills[{skill}]" for skill in linked if isinstance(skill, str)]


def _reveals(text: str, question: Question) -> bool:
    """Whether ``text`` says an answer of ``question`` that its prompt does not already say."""
    if question.kind == "number":
        hidden = {parse_number(answer) for answer in question.answers} - set(numbers_in(question.prompt))
        return bool(hidden & set(numbers_in(text)))
    if check_answer(question.prompt, question.answers, "text").correct:
        return False
    return check_answer(text, question.answers, "text").correct


class LessonQA:
    """Retrieval over one lesson's content; build it once per lesson, then ask it any number of questions."""

    def __init__(self, lesson: Lesson, *, threshold: float = DEFAULT_THRESHOLD):
        self.lesson = lesson
        self.threshold = threshold
        texts: list[_Text] = []
        for path, text, owner, field, top in _walk(lesson):
            is_answer = field not in _CONTEXT_FIELDS
            if is_answer and field != "title" and len(text.split()) < _MIN_PASSAGE_WORDS:
                continue  # a label, not something to say
            kind = getattr(owner, "kind", None) if field == "title" else None  # "is there a video?"
            terms = _terms(_tokens(f"{text} {kind}" if isinstance(kind, str) else text))
            texts.append(_Text(path[0], _linked_skills(top), text, owner, field, ".".join(path), is_answer, terms))
        by_group: dict[str, set[str]] = defaultdict(set)
        for item in texts:
            by_group[item.group].update(item.terms)
        self._documents = len(texts)
        self._df = Counter(term for item in texts for term in set(item.terms))
        self._vocabulary = list(self._df)
        self._passages = []
        for item in texts:
            if not item.is_answer:
                continue
            around = by_group[item.group].union(*(by_group[skill] for skill in item.skills))
            self._passages.append(_Passage(
                spoken=_spoken(item.text, item.owner, item.field), source=item.source, text=item.text,
                terms=frozenset(item.terms), context=frozenset(around - set(item.terms)),
                length=max(len(item.terms), 1), prior=_PRIORS.get(item.field or "", _DEFAULT_PRIOR),
            ))

    def answer(self, question: str, *, withhold: Collection[str] = ()) -> QAResult:
        """The lesson's best answer to ``question``, or ``text=None`` when nothing covers it well enough.

        ``withhold`` names questions whose answers must not be given away yet
        (the question being asked now, or a Socratic one whose hints are not
        used up): passages that say one of their answers are skipped, so a hint
        or a related explanation is found instead.
        """
        wanted = self._query(question)
        if not wanted:
            return QAResult(None, 0.0, "")
        total = sum(weight for _, weight, _ in wanted)
        hidden = [q for q in self.lesson.questions if q.id in withhold]
        best: tuple[tuple[float, float], _Passage] | None = None
        for passage in self._passages:
            if any(_reveals(passage.text, q) for q in hidden):
                continue
            covered = own = 0.0
            for term, weight, credit in wanted:
                if term in passage.terms:
                    covered += weight * credit
                    own += 1
                elif term in passage.context:
                    covered += weight * credit * _CONTEXT_WEIGHT
            if not own:
                continue  # a passage must itself say something the question asks about
            score = passage.prior * covered / total
            key = (round(score, 9), own / passage.length)  # ties go to the passage most about the question
            if best is None or key > best[0]:
                best = (key, passage)
        if best is None:
            return QAResult(None, 0.0, "")
        (score, _), passage = best
        if score < self.threshold:
            return QAResult(None, score, passage.source)
        return QAResult(passage.spoken, score, passage.source)

    def _query(self, question: str) -> list[tuple[str | None, float, float]]:
        """The question's content terms as (lesson term or None, weight, credit).

        A word the lesson never uses earns nothing, so it pulls the score
        down; a misheard word that fuzzily matches a lesson term earns part.
        """
        tokens = _tokens(question[:MAX_QUESTION_CHARS])
        terms: list[str] = []
        index = 0
        while index < len(tokens):
            if index + 1 < len(tokens):
                joined = _stem(tokens[index] + tokens[index + 1])  # "chloro plast", "photo synthesis"
                if joined in self._df and not {_stem(tokens[index]), _stem(tokens[index + 1])} <= self._df.keys():
                    terms.append(joined)
                    index += 2
                    continue
            terms += _terms([tokens[index]])
            index += 1
        wanted: dict[str, tuple[str | None, float, float]] = {}
        for term in terms:
            if term in wanted:
                continue
            if term in self._df:
                wanted[term] = (term, self._idf(term), 1.0)
                continue
            match = None
            if len(term) >= 5 and not term[0].isdigit():
                match = process.extractOne(term, self._vocabulary, scorer=fuzz.ratio, score_cutoff=_FUZZY_CUTOFF)
            if match:
                wanted[term] = (match[0], self._idf(match[0]), _FUZZY_WEIGHT)
            else:
                wanted[term] = (None, self._idf(term), 0.0)
        return list(wanted.values())

    def _idf(self, term: str) -> float:
        """Rare lesson words weigh most; a word the lesson never uses weighs as much as its rarest."""
        return math.log((self._documents + 1) / (max(self._df.get(term, 0), 1) + 0.5))
