"""Simulated learners reach mastery in fewer questions with the adaptive planner than with a fixed sequence.

The learners are BKT-generated (voice_tutor/learning/simulate.py); everything
is seeded, so these are behaviour checks with a clear margin, not flaky
statistics.  benchmarks/adaptive.py reports the same comparison in full.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from voice_tutor.config import ASSETS_DIR
from voice_tutor.learning.lessons import load_lesson
from voice_tutor.learning.mastery import BKTParams
from voice_tutor.learning.memory import LearnerMemory
from voice_tutor.learning.simulate import (
    START,
    Population,
    SimulatedLearner,
    SimulatedMemory,
    compare,
    simulate,
)

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted((ASSETS_DIR / "lessons").glob("*.toml"))
LEARNERS = 80


@pytest.fixture(scope="module")
def results():
    return {path.stem: compare(load_lesson(path), LEARNERS, seed=0) for path in LESSONS}


@pytest.mark.parametrize("lesson_id", [path.stem for path in LESSONS])
def test_adaptive_selection_needs_fewer_questions_than_a_fixed_sequence(results, lesson_id):
    result = results[lesson_id]
    adaptive, fixed = result.adaptive, result.fixed
    assert adaptive.censored == fixed.censored == 0
    # Until the tutor's estimate says every skill is mastered (measured 1.45-2.3x on these seeds).
    assert result.ratio("estimated_median") >= 1.3, (adaptive, fixed)
    assert result.ratio("estimated_mean") >= 1.3, (adaptive, fixed)
    # ... and it did not get there by stopping on false mastery more often than the fixed sequence.
    assert adaptive.known_at_estimated >= 0.85
    assert adaptive.known_at_estimated >= fixed.known_at_estimated - 0.1
    # Until the learner truly knows every skill (measured 1.1-2.1x).
    assert result.ratio("known_mean") >= 1.15, (adaptive, fixed)
    assert result.ratio("known_median") > 1.0, (adaptive, fixed)
    # Learner by learner, the planner wins far more often than it loses.
    pairs = list(zip(result.outcomes["adaptive"], result.outcomes["fixed"]))
    wins = sum(a.to_estimated < f.to_estimated for a, f in pairs)
    losses = sum(a.to_estimated > f.to_estimated for a, f in pairs)
    assert wins >= 0.7 * len(pairs) and losses <= 0.2 * len(pairs), (wins, losses)


def test_comparison_is_reproducible_and_faces_both_policies_with_the_same_learner():
    lesson = load_lesson(ASSETS_DIR / "lessons" / "fractions.toml")
    first, again = compare(lesson, 10, seed=3), compare(lesson, 10, seed=3)
    assert first.outcomes == again.outcomes
    assert compare(lesson, 10, seed=4).outcomes != first.outcomes
    one, two = SimulatedLearner.draw(lesson, "x"), SimulatedLearner.draw(lesson, "x")
    assert one.params == two.params and one.known == two.known


def test_simulated_learners_answer_and_learn_by_bkt():
    lesson = load_lesson(ASSETS_DIR / "lessons" / "arithmetic.toml")
    [addition, subtraction] = lesson.skills
    question = lesson.questions_for("addition")[0]
    truth = BKTParams(prior=0.0, learn=0.2, slip=0.1, guess=0.25)

    def learner(seed: int, known: dict[str, bool], penalty: float = 0.25) -> SimulatedLearner:
        return SimulatedLearner(lesson, {"addition": truth, "subtraction": truth}, known, penalty, random.Random(seed))

    # Known: right with probability 1 - slip.  Unknown: right with probability guess.
    knows = learner(1, {"addition": True, "subtraction": True})
    assert statistics.fmean(knows.answer(question) for _ in range(20_000)) == pytest.approx(0.9, abs=0.01)
    guesses = [learner(seed, {"addition": False, "subtraction": False}).answer(question) for seed in range(20_000)]
    assert statistics.fmean(guesses) == pytest.approx(0.25, abs=0.01)

    # Learning: geometric with rate learn; slowed by the penalty while a prerequisite is unknown.
    def questions_to_learn(skill_question, known_prerequisite: bool) -> float:
        counts = []
        for seed in range(3000):
            simulated = learner(seed, {"addition": known_prerequisite, "subtraction": False})
            count = 0
            while not simulated.known["subtraction"]:
                simulated.answer(skill_question)
                count += 1
            counts.append(count)
        return statistics.fmean(counts)

    subtraction_question = lesson.questions_for("subtraction")[0]
    assert questions_to_learn(subtraction_question, True) == pytest.approx(1 / 0.2, rel=0.08)
    assert questions_to_learn(subtraction_question, False) == pytest.approx(1 / (0.2 * 0.25), rel=0.08)
    assert addition.prerequisites == [] and subtraction.prerequisites == ["addition"]


async def test_simulated_memory_keeps_what_learner_memory_keeps():
    lesson = load_lesson(ASSETS_DIR / "lessons" / "fractions.toml")
    now = [START]
    real = LearnerMemory(lesson, None, None, clock=lambda: now[0])
    simulated = SimulatedMemory(lesson)
    rng = random.Random(7)
    for step in range(40):
        question = lesson.questions[rng.randrange(len(lesson.questions))]
        correct = rng.random() < 0.8
        real.note_asked(question)
        simulated.note_asked(question)
        await real.assess(question, correct, hints_used=0, first_try=True)
        assert simulated.assess(question, correct) == real.state.mastery[question.skill]
        now[0] += timedelta(hours=5)
        simulated.tick(5 * 3600)
        assert simulated.state == real.state, step


def test_sessions_let_the_planner_come_back_to_unmastered_skills():
    """Arithmetic has one subtraction question: a slow learner needs many sessions to master it."""
    lesson = load_lesson(ASSETS_DIR / "lessons" / "arithmetic.toml")
    slow = BKTParams(prior=0.0, learn=0.05, slip=0.1, guess=0.1)
    learner = SimulatedLearner(lesson, {"addition": slow, "subtraction": slow},
                               {"addition": True, "subtraction": False}, 0.25, random.Random(1))
    outcome = simulate(lesson, learner, "adaptive", session_length=10, max_questions=500)
    assert outcome.to_known is not None and outcome.to_estimated is not None
    assert outcome.sessions > 3  # the planner ran out of questions in a sitting and the learner came back
    with pytest.raises(ValueError, match="unknown policy"):
        simulate(lesson, learner, "random")
    with pytest.raises(ValueError, match="prerequisite_penalty"):
        Population(prerequisite_penalty=2.0)


def test_benchmark_prints_the_ratio_table_and_json():
    command = [sys.executable, str(REPO / "benchmarks" / "adaptive.py"), "--learners", "8", "--lesson", "arithmetic"]
    table = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert table.returncode == 0, table.stderr
    assert "| lesson | skills | questions | learners | adaptive median / mean |" in table.stdout
    assert "| arithmetic | 2 | 4 | 8 |" in table.stdout
    report = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert report.returncode == 0, report.stderr
    [row] = json.loads(report.stdout)["lessons"]
    assert row["lesson"] == "arithmetic" and row["learners"] == 8
    assert row["estimated"]["ratio_median"] == pytest.approx(
        row["estimated"]["fixed"]["median"] / row["estimated"]["adaptive"]["median"], abs=1e-3)
