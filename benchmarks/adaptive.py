"""Do simulated learners reach mastery in fewer questions when the planner chooses them?

For every lesson in assets/lessons, N simulated learners (BKT-generated, see
voice_tutor/learning/simulate.py for the model, the sessions and the exact
definitions) are taught twice: by the adaptive planner
(``voice_tutor.learning.planner.next_question``, as the offline tutor asks)
and by the lesson's questions in file order, repeated.  Same learners, same
seeds, both policies.  Reported per lesson, in questions asked:

* "estimated": until the tutor's BKT estimate marks every skill mastered (when
  the adaptive tutor ends the lesson), median and mean per policy, the ratio
  fixed / adaptive (> 1: adaptive needs fewer), and the share of learners who
  truly knew every skill at that point;
* "truly known": until the learner's hidden state knows every skill;
* "adaptive wins": the share of learners for whom adaptive needed fewer
  questions (estimated) than the fixed sequence.

    .venv/bin/python benchmarks/adaptive.py [--learners 200] [--seed 0] [--lesson ID ...] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from voice_tutor.config import ASSETS_DIR
from voice_tutor.learning.lessons import load_lesson
from voice_tutor.learning.simulate import LessonResult, Population, compare


def _row(result: LessonResult) -> dict:
    adaptive, fixed = result.outcomes["adaptive"], result.outcomes["fixed"]
    wins = sum(a.to_estimated is not None and (f.to_estimated is None or a.to_estimated < f.to_estimated)
               for a, f in zip(adaptive, fixed))
    return {
        "lesson": result.lesson_id,
        "skills": result.skills,
        "questions": result.questions,
        "learners": result.learners,
        "estimated": {
            "adaptive": {"median": result.adaptive.estimated_median, "mean": round(result.adaptive.estimated_mean, 2)},
            "fixed": {"median": result.fixed.estimated_median, "mean": round(result.fixed.estimated_mean, 2)},
            "ratio_median": round(result.ratio("estimated_median"), 3),
            "ratio_mean": round(result.ratio("estimated_mean"), 3),
            "truly_known_at_stop": {"adaptive": round(result.adaptive.known_at_estimated, 3),
                                    "fixed": round(result.fixed.known_at_estimated, 3)},
        },
        "truly_known": {
            "adaptive": {"median": result.adaptive.known_median, "mean": round(result.adaptive.known_mean, 2)},
            "fixed": {"median": result.fixed.known_median, "mean": round(result.fixed.known_mean, 2)},
            "ratio_median": round(result.ratio("known_median"), 3),
            "ratio_mean": round(result.ratio("known_mean"), 3),
        },
        "adaptive_wins": round(wins / result.learners, 3),
        "censored": {"adaptive": result.adaptive.censored, "fixed": result.fixed.censored},
    }


def _table(rows: list[dict]) -> str:
    def table(title: str, key: str, extra: tuple[str, ...], cells) -> list[str]:
        header = ["lesson", "skills", "questions", "learners", "adaptive median / mean", "fixed median / mean",
                  "ratio median", "ratio mean", *extra]
        lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            part = row[key]
            lines.append("| " + " | ".join([
                row["lesson"], str(row["skills"]), str(row["questions"]), str(row["learners"]),
                f"{part['adaptive']['median']:g} / {part['adaptive']['mean']:.1f}",
                f"{part['fixed']['median']:g} / {part['fixed']['mean']:.1f}",
                f"{part['ratio_median']:.2f}", f"{part['ratio_mean']:.2f}", *cells(row),
            ]) + " |")
        return lines

    estimated = table(
        "Questions until the tutor's estimate marks every skill mastered (the adaptive tutor's stop):",
        "estimated", ("truly known at stop (adaptive / fixed)", "adaptive wins"),
        lambda row: (f"{row['estimated']['truly_known_at_stop']['adaptive']:.0%} / "
                     f"{row['estimated']['truly_known_at_stop']['fixed']:.0%}", f"{row['adaptive_wins']:.0%}"),
    )
    known = table(
        "Questions until the learner truly knows every skill (hidden BKT state):",
        "truly_known", ("censored (adaptive / fixed)",),
        lambda row: (f"{row['censored']['adaptive']} / {row['censored']['fixed']}",),
    )
    return "\n".join(estimated + [""] + known)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=200, help="simulated learners per lesson")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lesson", action="append", help="a lesson id (repeatable); default: every shipped lesson")
    parser.add_argument("--lessons-dir", type=Path, default=ASSETS_DIR / "lessons")
    parser.add_argument("--session-length", type=int, default=10, help="questions per session at most")
    parser.add_argument("--max-questions", type=int, default=500, help="cap per learner; counts not reached are censored")
    parser.add_argument("--prerequisite-penalty", type=float, default=Population().prerequisite_penalty,
                        help="learning-rate factor while a prerequisite is unknown")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)

    paths = ([args.lessons_dir / f"{name}.toml" for name in args.lesson] if args.lesson
             else sorted(args.lessons_dir.glob("*.toml")))
    population = Population(prerequisite_penalty=args.prerequisite_penalty)
    started = time.perf_counter()
    rows = [
        _row(compare(load_lesson(path), args.learners, seed=args.seed, population=population,
                     session_length=args.session_length, max_questions=args.max_questions))
        for path in paths
    ]
    elapsed = time.perf_counter() - started
    settings = {"learners": args.learners, "seed": args.seed, "session_length": args.session_length,
                "max_questions": args.max_questions, "population": dataclasses.asdict(population), "seconds": round(elapsed, 2)}
    if args.json:
        print(json.dumps({"settings": settings, "lessons": rows}, indent=2))
    else:
        print(f"Questions to mastery, adaptive planner vs fixed sequence ({args.learners} simulated learners per "
              f"lesson, seed {args.seed}, sessions of at most {args.session_length} questions; ratio = fixed / "
              f"adaptive)\n")
        print(_table(rows))
        print(f"\n{elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
