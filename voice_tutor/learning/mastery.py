"""Bayesian Knowledge Tracing: how likely a learner is to know a skill.

BKT models each skill as a hidden two-state Markov chain (unknown -> known,
never back) observed through noisy answers: a learner who knows the skill
still slips, one who does not may guess.  After every answer the tutor
updates ``p_known`` with :func:`update`; the four parameters per skill come
from :data:`DEFAULT_PARAMS` until enough answers have accumulated to fit them
with :func:`fit_params`.

Fitting is maximum-likelihood EM (Baum-Welch) written here with numpy rather
than with the ``pyBKT`` package: pyBKT 1.4.3 fails to import with
scikit-learn >= 1.8 and its EM fails on numpy >= 2.4, both of which this
project installs.  On the same data both give the same estimates (see the
tests for the recovery check against known parameters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MASTERY_THRESHOLD = 0.95
"""The conventional BKT mastery criterion: p_known at or above this is mastered."""


@dataclass(frozen=True, slots=True)
class BKTParams:
    """The four BKT parameters of one skill, as probabilities.

    ``slip`` and ``guess`` must stay below 0.5: above it, a wrong answer
    would be evidence *for* knowing the skill and the two states swap meaning.
    """

    prior: float
    """P(known) before the first answer."""
    learn: float
    """P(unknown -> known) at each practice opportunity."""
    slip: float
    """P(wrong answer | known)."""
    guess: float
    """P(right answer | unknown)."""

    def __post_init__(self) -> None:
        for name in ("prior", "learn"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"BKT {name} must be in [0, 1], not {value}")
        for name in ("slip", "guess"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.5:
                raise ValueError(f"BKT {name} must be in [0, 0.5), not {value}")


DEFAULT_PARAMS = BKTParams(prior=0.2, learn=0.15, slip=0.1, guess=0.2)
"""Typical values from the BKT literature, used for a skill until it has been fitted."""


def update(p_known: float, correct: bool, params: BKTParams) -> float:
    """``p_known`` after one answer: Bayes' rule on the answer, then one learning step."""
    if not 0.0 <= p_known <= 1.0:
        raise ValueError(f"p_known must be in [0, 1], not {p_known}")
    if correct:
        evidence_known = p_known * (1.0 - params.slip)
        evidence_unknown = (1.0 - p_known) * params.guess
    else:
        evidence_known = p_known * params.slip
        evidence_unknown = (1.0 - p_known) * (1.0 - params.guess)
    posterior = evidence_known / (evidence_known + evidence_unknown)
    return posterior + (1.0 - posterior) * params.learn


def is_mastered(p_known: float, threshold: float = MASTERY_THRESHOLD) -> bool:
    return p_known >= threshold


# EM keeps parameters strictly inside their ranges: at exactly 0 or 1 a
# probability can never move again, and slip/guess must stay below 0.5.
_EPS = 1e-6
_BELOW_HALF = 0.5 - 1e-3

# Deterministic starting points (prior, learn, slip, guess) spread over the
# space; EM runs from each and the most likely fit wins, which avoids the
# poor local optima a single start can fall into.
_STARTS = (
    (0.5, 0.1, 0.1, 0.2),
    (0.2, 0.3, 0.2, 0.3),
    (0.8, 0.05, 0.05, 0.1),
    (0.1, 0.05, 0.3, 0.4),
)


def fit_params(
    sequences: Mapping[str, Sequence[bool]],
    *,
    min_observations: int = 200,
    max_iterations: int = 500,
    tolerance: float = 1e-7,
) -> BKTParams | None:
    """Fit one skill's parameters to the learners' answer sequences by EM.

    ``sequences`` maps each learner to their answers on the skill, oldest
    first.  Returns None while there are fewer than ``min_observations``
    answers (or no learner has answered twice, so learning cannot be seen):
    estimates from a handful of answers are worse than the defaults.
    """
    answers = [list(map(bool, seq)) for seq in sequences.values() if len(seq) > 0]
    if sum(map(len, answers)) < min_observations or max(map(len, answers), default=0) < 2:
        return None
    longest = max(map(len, answers))
    correct = np.zeros((len(answers), longest))
    mask = np.zeros((len(answers), longest), dtype=bool)
    for row, seq in enumerate(answers):
        correct[row, : len(seq)] = seq
        mask[row, : len(seq)] = True

    best, best_loglik = None, -np.inf
    for start in _STARTS:
        params, loglik = _em(correct, mask, np.array(start), max_iterations, tolerance)
        if loglik > best_loglik:
            best, best_loglik = params, loglik
    prior, learn, slip, guess = (float(v) for v in best)
    return BKTParams(prior=prior, learn=learn, slip=slip, guess=guess)


def _em(
    correct: np.ndarray, mask: np.ndarray, params: np.ndarray, max_iterations: int, tolerance: float
) -> tuple[np.ndarray, float]:
    """Baum-Welch on the padded (learners x opportunities) answer matrix."""
    previous = -np.inf
    loglik = previous
    for _ in range(max_iterations):
        gamma, expected_learned, loglik = _expectations(correct, mask, params)
        params = _maximize(correct, mask, gamma, expected_learned)
        if loglik - previous < tolerance * abs(loglik):
            break
        previous = loglik
    return params, loglik


def _expectations(
    correct: np.ndarray, mask: np.ndarray, params: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """E-step: scaled forward-backward over all learners at once.

    Returns P(state at t | answers) with state 0 = unknown, 1 = known, the
    expected number of unknown -> known transitions at each step, and the
    log-likelihood of the answers.  Padded steps use an emission of 1 so
    they change nothing.
    """
    prior, learn, slip, guess = params
    n, steps = correct.shape
    p_correct = np.array([guess, 1.0 - slip])
    emission = np.where(correct[..., None] == 1.0, p_correct, 1.0 - p_correct)
    emission[~mask] = 1.0
    transition = np.array([[1.0 - learn, learn], [0.0, 1.0]])

    alpha = np.empty((n, steps, 2))
    scale = np.empty((n, steps))
    a = np.array([1.0 - prior, prior]) * emission[:, 0]
    for t in range(steps):
        if t > 0:
            a = (alpha[:, t - 1] @ transition) * emission[:, t]
        scale[:, t] = a.sum(axis=1)
        alpha[:, t] = a / scale[:, t, None]

    beta = np.ones((n, steps, 2))
    for t in range(steps - 2, -1, -1):
        beta[:, t] = (emission[:, t + 1] * beta[:, t + 1]) @ transition.T / scale[:, t + 1, None]

    gamma = alpha * beta
    # xi(unknown -> known) between t and t+1, only where both steps are real answers.
    expected_learned = (
        alpha[:, :-1, 0] * learn * emission[:, 1:, 1] * beta[:, 1:, 1] / scale[:, 1:]
    ) * mask[:, 1:]
    loglik = float(np.log(scale[mask]).sum())
    return gamma, expected_learned, loglik


def _maximize(
    correct: np.ndarray, mask: np.ndarray, gamma: np.ndarray, expected_learned: np.ndarray
) -> np.ndarray:
    """M-step: the parameters that maximize the expected complete-data likelihood."""
    unknown = gamma[..., 0] * mask
    known = gamma[..., 1] * mask
    # Opportunities to learn: unknown at a step that has a next answer.
    unknown_before_next = (unknown[:, :-1] * mask[:, 1:]).sum()
    prior = gamma[:, 0, 1].mean()
    learn = expected_learned.sum() / max(unknown_before_next, _EPS)
    slip = (known * (1.0 - correct)).sum() / max(known.sum(), _EPS)
    guess = (unknown * correct).sum() / max(unknown.sum(), _EPS)
    return np.array(
        [
            np.clip(prior, _EPS, 1.0 - _EPS),
            np.clip(learn, _EPS, 1.0 - _EPS),
            np.clip(slip, _EPS, _BELOW_HALF),
            np.clip(guess, _EPS, _BELOW_HALF),
        ]
    )
