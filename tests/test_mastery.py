"""BKT: the update against hand-computed values, the fit against known parameters."""

from __future__ import annotations

import numpy as np
import pytest

from voice_tutor.learning.mastery import (
    DEFAULT_PARAMS,
    MASTERY_THRESHOLD,
    BKTParams,
    fit_params,
    is_mastered,
    update,
)

TRUTH = BKTParams(prior=0.3, learn=0.15, slip=0.1, guess=0.2)


def simulate(
    params: BKTParams, learners: int, opportunities: int, seed: int
) -> dict[str, list[bool]]:
    """Answer sequences of learners who follow the BKT model exactly."""
    rng = np.random.default_rng(seed)
    sequences = {}
    for learner in range(learners):
        known = rng.random() < params.prior
        answers = []
        for _ in range(opportunities):
            answers.append(bool(rng.random() < (1 - params.slip if known else params.guess)))
            known = known or rng.random() < params.learn
        sequences[f"learner-{learner}"] = answers
    return sequences


@pytest.mark.parametrize(
    "values",
    [
        {"prior": -0.1},
        {"prior": 1.1},
        {"learn": 1.5},
        {"slip": 0.5},
        {"guess": 0.6},
        {"guess": -0.01},
    ],
)
def test_params_outside_their_ranges_are_refused(values):
    with pytest.raises(ValueError):
        BKTParams(**{"prior": 0.3, "learn": 0.15, "slip": 0.1, "guess": 0.2, **values})


def test_update_after_a_right_answer():
    # Posterior: .3*.9 / (.3*.9 + .7*.2) = .27/.41; then learning: + (.14/.41)*.15.
    assert update(0.3, True, TRUTH) == pytest.approx(27 / 41 + 14 / 41 * 0.15)
    assert update(0.3, True, TRUTH) == pytest.approx(0.709756, abs=1e-6)


def test_update_after_a_wrong_answer():
    # Posterior: .3*.1 / (.3*.1 + .7*.8) = .03/.59; then learning: + (.56/.59)*.15.
    assert update(0.3, False, TRUTH) == pytest.approx(3 / 59 + 56 / 59 * 0.15)
    assert update(0.3, False, TRUTH) == pytest.approx(0.193220, abs=1e-6)


def test_right_answers_lead_to_mastery():
    p, answers = TRUTH.prior, 0
    while not is_mastered(p):
        p, answers = update(p, True, TRUTH), answers + 1
    # 0.3 -> 0.710 -> 0.929 -> 0.986: three right answers in a row.
    assert answers == 3
    assert is_mastered(MASTERY_THRESHOLD) and not is_mastered(0.949)
    assert is_mastered(0.9, threshold=0.9)


def test_update_rejects_a_probability_out_of_range():
    with pytest.raises(ValueError):
        update(1.2, True, DEFAULT_PARAMS)


def test_fit_recovers_the_parameters_that_generated_the_data():
    # 1000 learners x 20 answers: with a few hundred the sampling noise alone
    # moves the maximum-likelihood prior by up to ~0.05 on some seeds.
    fitted = fit_params(simulate(TRUTH, learners=1000, opportunities=20, seed=2024))
    assert fitted is not None
    assert fitted.prior == pytest.approx(TRUTH.prior, abs=0.05)
    assert fitted.learn == pytest.approx(TRUTH.learn, abs=0.05)
    assert fitted.slip == pytest.approx(TRUTH.slip, abs=0.05)
    assert fitted.guess == pytest.approx(TRUTH.guess, abs=0.05)


def test_fit_handles_sequences_of_different_lengths():
    sequences = simulate(TRUTH, learners=600, opportunities=25, seed=7)
    ragged = {name: answers[: 5 + i % 20] for i, (name, answers) in enumerate(sequences.items())}
    fitted = fit_params(ragged)
    assert fitted is not None
    assert fitted.learn == pytest.approx(TRUTH.learn, abs=0.05)
    assert fitted.slip == pytest.approx(TRUTH.slip, abs=0.05)
    assert fitted.guess == pytest.approx(TRUTH.guess, abs=0.05)


def test_fit_waits_for_enough_data():
    small = simulate(TRUTH, learners=5, opportunities=10, seed=1)
    assert fit_params(small) is None
    assert fit_params(small, min_observations=50) is not None
    single_answers = {f"learner-{i}": [i % 2 == 0] for i in range(500)}
    assert fit_params(single_answers) is None
    assert fit_params({}) is None
