"""How well the offline tutor judges what a learner says while a question is pending.

Runs every labelled utterance of ``tests/data/judgement/`` through the same
understanding and grading the tutor uses (``dialogue.intent.understand``, then
``answers.check_answer`` on a single asserted answer) and prints the confusion
matrix (label by outcome) and the issue's three figures:

- questions, requests, feedback, remarks and greetings graded as answers (target 0),
- hedged, multi-option or only-negated answers marked correct (target 0),
- plain right answers accepted as correct (target >= 97 %).

    PYTHONPATH=. python benchmarks/judgement.py                 # the tuning corpus (hand-written + ASR-style)
    PYTHONPATH=. python benchmarks/judgement.py --set heldout   # the held-out part, never tuned on
    PYTHONPATH=. python benchmarks/judgement.py --write-asr     # regenerate asr.json from handwritten.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from voice_tutor.dialogue.answers import check_answer, normalize
from voice_tutor.dialogue.intent import Intent, spoken_number, understand
from voice_tutor.learning.lessons import Lesson, Question, load_lesson

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "judgement"
LESSONS = ROOT / "assets" / "lessons"
SETS = {"corpus": ["handwritten.json", "asr.json"], "heldout": ["heldout.json"], "handwritten": ["handwritten.json"],
        "asr": ["asr.json"]}

NOT_ANSWERS = ("question", "request", "feedback", "off_topic", "social")
CHOICES = ("hedged", "multi", "negated")
LABELS = ("right", "wrong", *CHOICES, "misheard", *NOT_ANSWERS)
OUTCOMES = ("correct", "wrong", "choose", "confirm", "question", "request", "feedback", "off_topic", "social", "empty")


@dataclass(frozen=True)
class Item:
    lesson: str
    question: str
    text: str
    label: str


@dataclass(frozen=True)
class Judged:
    item: Item
    outcome: str


def load_items(names: list[str]) -> list[Item]:
    items = []
    for name in names:
        data = json.loads((DATA / name).read_text(encoding="utf-8"))
        for lesson, questions in data.items():
            for question, pairs in questions.items():
                for text, label in pairs:
                    if label not in LABELS:
                        raise ValueError(f"{name}: unknown label {label!r} for {text!r}")
                    items.append(Item(lesson, question, text, label))
    return items


def lessons() -> dict[str, Lesson]:
    return {path.stem: load_lesson(path) for path in sorted(LESSONS.glob("*.toml"))}


def judge(text: str, question: Question, language: str, confidence: float | None = None) -> str:
    """What the tutor does with ``text``: the verdict of a graded answer, or what else it took the words for."""
    heard = understand(text, question, language, confidence=confidence)
    if heard.intent is Intent.ANSWER:
        verdict = check_answer(heard.graded_text, question.answers, question.kind, language)
        return "correct" if verdict.correct else "wrong"
    return {Intent.CHOOSE: "choose", Intent.CONFIRM: "confirm"}.get(heard.intent, heard.intent.value)


def run(items: list[Item]) -> list[Judged]:
    by_id = lessons()
    judged = []
    for item in items:
        lesson = by_id[item.lesson]
        question = next(q for q in lesson.questions if q.id == item.question)
        judged.append(Judged(item, judge(item.text, question, lesson.answer_language)))
    return judged


@dataclass(frozen=True)
class Figures:
    non_answers: int
    non_answers_graded: int
    choices: int
    choices_marked_correct: int
    choices_graded: int
    right: int
    right_accepted: int
    wrong: int
    wrong_marked_correct: int
    misheard: int
    misheard_judged_wrong_or_off_topic: int

    @property
    def right_accepted_share(self) -> float:
        return self.right_accepted / max(1, self.right)


def figures(judged: list[Judged]) -> Figures:
    def count(labels, outcomes=None) -> int:
        return sum(1 for j in judged if j.item.label in labels and (outcomes is None or j.outcome in outcomes))

    return Figures(
        non_answers=count(NOT_ANSWERS), non_answers_graded=count(NOT_ANSWERS, ("correct", "wrong")),
        choices=count(CHOICES), choices_marked_correct=count(CHOICES, ("correct",)),
        choices_graded=count(CHOICES, ("correct", "wrong")),
        right=count(("right",)), right_accepted=count(("right",), ("correct",)),
        wrong=count(("wrong",)), wrong_marked_correct=count(("wrong",), ("correct",)),
        misheard=count(("misheard",)),
        misheard_judged_wrong_or_off_topic=count(("misheard",), ("wrong", "off_topic")),
    )


def confusion(judged: list[Judged]) -> str:
    cells = Counter((j.item.label, j.outcome) for j in judged)
    width = max(len(o) for o in OUTCOMES) + 1
    lines = ["label \\ outcome".ljust(12) + "".join(o.rjust(width) for o in OUTCOMES) + "   total"]
    for label in LABELS:
        row = [cells[(label, outcome)] for outcome in OUTCOMES]
        lines.append(label.ljust(12) + "".join(str(n or ".").rjust(width) for n in row) + f"{sum(row):8d}")
    return "\n".join(lines)


def report(judged: list[Judged], name: str, show_errors: bool) -> Figures:
    result = figures(judged)
    print(f"# {name}: {len(judged)} utterances")
    print(confusion(judged))
    print()
    print(f"questions/requests/feedback/remarks graded as answers: {result.non_answers_graded} of "
          f"{result.non_answers} (target 0)")
    print(f"hedged/multi-option/negated answers marked correct:    {result.choices_marked_correct} of "
          f"{result.choices} (target 0); graded at all: {result.choices_graded}")
    print(f"correct plain answers accepted:                        {result.right_accepted} of {result.right} = "
          f"{100 * result.right_accepted_share:.1f} % (target >= 97 %)")
    print(f"wrong answers marked correct:                          {result.wrong_marked_correct} of {result.wrong}")
    print(f"misheard right answers judged wrong or off topic:      {result.misheard_judged_wrong_or_off_topic} of "
          f"{result.misheard}")
    if show_errors:
        expected = {"right": {"correct"}, "wrong": {"wrong"}, "misheard": {"confirm", "correct"},
                    **{label: {"choose"} for label in CHOICES}}
        print("\nunexpected outcomes:")
        for j in judged:
            allowed = expected.get(j.item.label, {j.item.label})
            if j.outcome not in allowed:
                print(f"  [{j.item.lesson}/{j.item.question}] {j.item.text!r}: {j.item.label} -> {j.outcome}")
    return result


# --- ASR-style variants --------------------------------------------------------------------------------

_FILLERS = ["um", "uh", "hmm", "er"]


_ANSWER_LABELS = {"right", "wrong", "hedged", "multi", "negated", "misheard"}


def asr_variant(text: str, language: str, rng: random.Random, label: str) -> str:
    """``text`` as faster-whisper often writes speech: no capitals or punctuation, plus one slip."""
    plain = " ".join(re.sub(r"(?!(?<=\d)[/.](?=\d))[^\w' ]", " ", text.lower()).split())
    words = plain.split()
    choice = rng.randrange(5)
    if choice == 0:
        words.insert(0, rng.choice(_FILLERS))
    elif choice == 1 and words:
        at = rng.randrange(len(words))
        if not re.search(r"\d", normalize(words[at], language)) and words[at] != "point":  # a stuttered digit would say another number
            words.insert(at, words[at])  # a stutter
    elif choice == 2 and label in _ANSWER_LABELS:
        normalized = normalize(plain, language)  # number words as digits
        if normalized != plain:
            return normalized
        words = [w.replace("'", "") for w in words]
    elif choice == 3:
        words = [spoken_number(w) if re.fullmatch(r"\d+", w) else w for w in words]  # digits as words
        words.append(rng.choice(["", "i think"]))
    else:
        words = [w.replace("'", "") for w in words]  # "its", "dont"
        if len(words) > 2:
            words.insert(rng.randrange(1, len(words)), rng.choice(_FILLERS))
    return " ".join(w for w in words if w)


def write_asr() -> None:
    rng = random.Random(20261204)
    languages = {lesson_id: lesson.answer_language for lesson_id, lesson in lessons().items()}
    data = json.loads((DATA / "handwritten.json").read_text(encoding="utf-8"))
    out = {lesson: {question: [[asr_variant(text, languages[lesson], rng, label), label] for text, label in pairs]
                    for question, pairs in questions.items()}
           for lesson, questions in data.items()}
    (DATA / "asr.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=sorted(SETS), default="corpus")
    parser.add_argument("--errors", action="store_true", help="list every utterance judged otherwise than labelled")
    parser.add_argument("--write-asr", action="store_true")
    args = parser.parse_args(argv)
    if args.write_asr:
        write_asr()
        return 0
    result = report(run(load_items(SETS[args.set])), args.set, args.errors)
    met = (result.non_answers_graded == 0 and result.choices_marked_correct == 0
           and result.right_accepted_share >= 0.97)
    print(f"\ntargets {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
