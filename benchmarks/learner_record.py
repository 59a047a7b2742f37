"""What the per-learner record costs: seating a learner in a shared session, and keeping an answer.

    python benchmarks/learner_record.py [--learners 200] [--answers 20] [--seats 30] [--json]

On a fresh SQLite store it creates ``--learners`` learners with ``--answers``
assessed answers each (with their facts, as sessions store them), then times,
as a shared room does them:

* seating a new learner in a running Tutoring (``Tutoring.join``: the learner
  row, their memory, BKT parameters fitted from everyone's answers, their tutor)
  — the wait a learner's first turn would have if the room had not seated them
  when they came in;
* keeping one answer (``LearnerMemory.record_answer``: mastery, review card and
  the answer's facts in one durable transaction), which the tutor awaits before
  it replies;
* a class report's per-answer tables (``analytics.mastery_history`` and
  ``answer_facts`` for 30 learners).

It prints medians and 95th percentiles in milliseconds, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from voice_tutor.classroom import analytics
from voice_tutor.config import Config
from voice_tutor.store import AnswerFacts, Store
from voice_tutor.tutoring import Tutoring


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 2),
            "n": len(ordered)}


def populate(store: Store, learners: int, answers: int) -> None:
    for index in range(learners):
        name = f"learner-{index:04d}"
        store.ensure_learner(name)
        session = store.start_session(name, "arithmetic")
        for number in range(answers):
            right = (index + number) % 3 != 0
            facts = AnswerFacts(verdict="correct" if right else "incorrect", response="twelve",
                                first_try=number % 2 == 0, hints_used=number % 3, mastery_before=0.3,
                                mastery_after=0.4, session_id=session, turn_key=number)
            skill = "arithmetic/addition" if number % 2 else "arithmetic/subtraction"
            store.record_answer(name, skill, "add-7-5", facts.right_first_time, 0.4, facts=facts)
        store.end_session(session, outcome="suspended")


async def measure(store: Store, seats: int, learners: int) -> dict:
    tutoring = await Tutoring.open(Config(), "host", store)
    seat_times, answer_times = [], []
    for index in range(seats):
        started = time.perf_counter()
        seat = await tutoring.join(f"visitor-{index:03d}")
        seat_times.append(time.perf_counter() - started)
        question = tutoring.lesson.questions[index % len(tutoring.lesson.questions)]
        started = time.perf_counter()
        await seat.memory.record_answer(question, "correct", hints_used=1, first_try=True, response="twelve")
        answer_times.append(time.perf_counter() - started)
    class_members = [f"learner-{index:04d}" for index in range(min(30, learners))]
    report_times = []
    for _ in range(5):
        started = time.perf_counter()
        analytics.mastery_history(store, class_members)
        analytics.answer_facts(store, class_members)
        report_times.append(time.perf_counter() - started)
    return {"seat_a_learner": percentiles(seat_times), "keep_an_answer": percentiles(answer_times),
            "class_report_answer_tables": percentiles(report_times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=200)
    parser.add_argument("--answers", type=int, default=20)
    parser.add_argument("--seats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Store.open(Path(folder) / "tutor.db") as store:
        populate(store, args.learners, args.answers)
        figures = asyncio.run(measure(store, args.seats, args.learners))
    figures["store"] = {"learners": args.learners, "answers_each": args.answers}
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(figures))
        return
    for name, value in figures.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
