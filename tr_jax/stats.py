"""Statistics of a comparison over seeds: the score of a seed, and IQM and probability of improvement with
95% stratified-bootstrap confidence intervals (``rliable``; Agarwal et al., "Deep Reinforcement Learning at the
Edge of the Statistical Precipice", NeurIPS 2021).

* :func:`seed_score`: the score of one seed from its ``eval.jsonl`` rows at the comparison's common budget:
  scored, failed (diverged: it counts, :func:`impute_failures`) or short (its cell is incomplete, no statistic);
* :func:`iqm`: interquartile mean over seeds (the mean of the middle 50%: ``scipy.stats.trim_mean`` cutting
  25% at each end, so with fewer than 4 seeds it is the mean) and its CI;
* :func:`probability_of_improvement`: ``P(X > Y) + P(X = Y) / 2`` for a random seed of setup X against one of
  setup Y (the Mann-Whitney U statistic over ``|X| |Y|``) and its CI;
* :func:`relative_drop`, :func:`drop_difference`: how much of its IQM a setup loses without its
  implementation choices (the ablation), and the difference of two such losses, with CIs.

The intervals are rliable's percentile intervals of ``reps`` stratified bootstrap resamples (seeds resampled
with replacement within each env; for the probability of improvement, independently for the two setups),
with a fixed ``seed`` (of numpy's global generator, which rliable 1.2 draws from; restored afterwards) so that
a table is reproducible. rliable is an optional dependency
(``pip install 'tr_jax[stats]'``), imported when a statistic is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

SCORE_WINDOW = 0.1  # the score averages the evaluations in the last 10% of the budget
FAILED = float("-inf")  # the score of a seed that diverged (seed_score), until impute_failures
CONFIDENCE = 0.95
REPS = 2000  # bootstrap resamples (rliable's default 50,000 takes minutes per cell on 2 cores)
# the eval.jsonl columns a seed can be scored by: the mean action's return (the primary score) or a sampled action's
DETERMINISTIC, STOCHASTIC = "deterministic_return_mean", "stochastic_return_mean"


class Estimate(NamedTuple):
    """A point estimate and its confidence interval (NaN where there is too little data)."""

    point: float
    low: float
    high: float


NAN = Estimate(float("nan"), float("nan"), float("nan"))


def _rliable() -> tuple[ModuleType, ModuleType]:
    try:
        from rliable import library, metrics
    except ImportError as e:  # rliable itself, or its arch/pandas (arch<8 fails to import with pandas 3)
        raise ImportError(
            f"the statistics of tr-jax compare need rliable (with arch<8, pandas<3): pip install 'tr_jax[stats]' ({e})"
        ) from None
    return library, metrics


def seed_score(
    evals: Sequence[dict],
    budget: int,
    window: float = SCORE_WINDOW,
    diverged_at: int | None = None,
    column: str = DETERMINISTIC,
) -> float:
    """The score of one seed at the common ``budget`` (env steps per seed) of its comparison.

    Rule, the same for every seed of every setup:

    * **scored**: the seed has an evaluation at ``env_steps >= budget`` (it ran the budget) and did not
      diverge before it: its score is the mean ``column`` (the deterministic evaluation's return unless
      told otherwise) over its evaluations with
      ``(1 - window) * budget <= env_steps <= budget`` (the last 10% of the budget, not of whatever the seed
      reached);
    * **failed** (:data:`FAILED`, ``-inf``): the seed diverged at or before the budget -- ``diverged_at`` (the
      env steps at which its NaN guard fired, from ``summary.json``) ``<= budget``, or an evaluation in its
      window has no finite return. It counts, as a failure: :func:`impute_failures` gives it the worst score
      of its env (worst-case imputation, see there);
    * **short** (NaN): neither -- the seed has not reached the budget (still running, stopped, or stopped with
      a run in which another seed diverged), or it has no evaluation in the window. Its cell is *incomplete*:
      :func:`iqm` and :func:`probability_of_improvement` give NaN for it rather than a score of the seeds that
      happened to finish (no survivorship).

    Args:
      evals: the ``eval.jsonl`` rows of ONE seed (any order).
      budget: env steps per seed at which every seed of the comparison is scored.
      diverged_at: env steps at which the seed diverged, None if it did not.
      column: the return scored, :data:`DETERMINISTIC` (the mean action, the primary score) or
        :data:`STOCHASTIC` (an action sampled from the policy).
    """
    if diverged_at is not None and diverged_at <= budget:
        return FAILED
    if not any(r["env_steps"] >= budget for r in evals):
        return float("nan")
    in_window = [r[column] for r in evals if (1 - window) * budget <= r["env_steps"] <= budget]
    values = np.array([np.nan if v is None else v for v in in_window], np.float64)
    if not values.size:
        return float("nan")
    return float(values.mean()) if np.all(np.isfinite(values)) else FAILED


def seed_scores(
    evals: Sequence[dict],
    num_seeds: int,
    budget: int,
    window: float = SCORE_WINDOW,
    diverged_at: Sequence[int | None] | None = None,
    column: str = DETERMINISTIC,
) -> np.ndarray:
    """``[num_seeds]`` :func:`seed_score` of each seed in a run's ``eval.jsonl`` rows at ``budget``;
    ``diverged_at``: ``[num_seeds]`` env steps of each seed's divergence (None: did not diverge); ``column``: the
    return scored (:func:`seed_score`)."""
    diverged_at = [None] * num_seeds if diverged_at is None else diverged_at
    return np.array(
        [
            seed_score([r for r in evals if r["seed"] == s], budget, window, diverged_at[s], column)
            for s in range(num_seeds)
        ]
    )


def lowest_return(evals: Sequence[dict], budget: int | None = None, column: str = DETERMINISTIC) -> float:
    """The lowest finite return ``column`` (:func:`seed_score`) of ``evals`` (at or before ``budget``); NaN if
    none."""
    x = np.array(
        [r[column] for r in evals if r[column] is not None and (budget is None or r["env_steps"] <= budget)],
        np.float64,
    )
    x = x[np.isfinite(x)]
    return float(x.min()) if x.size else float("nan")


def impute_failures(scores: ArrayLike, floor: float) -> np.ndarray:
    """``scores`` ``[S]`` with every :data:`FAILED` seed given the score ``floor``.

    The comparison passes as ``floor`` the lowest evaluation return recorded on the env by any seed of any
    setup in it (:func:`lowest_return`; in practice an early-training evaluation): worst-case imputation, the
    conservative treatment of a failed unit. A failed seed ranks at or below every seed that did not fail,
    so the probability of improvement counts it as a loss (a tie at worst) against each of them, and the IQM
    trims it away only while fewer than a quarter of the seeds fail (then its value matters). It can never
    raise a setup's score, and a setup cannot lose a diverging seed from its sample.
    """
    x = np.asarray(scores, np.float64).copy()
    x[x == FAILED] = floor
    return x


def complete(scores: ArrayLike) -> bool:
    """Whether every seed of ``scores`` ``[S]`` has a score (none short of the budget; :func:`seed_score`)."""
    x = np.asarray(scores, np.float64).ravel()
    return bool(x.size) and not np.isnan(x).any()


def _column(scores: ArrayLike) -> np.ndarray | None:
    """``[S, 1]`` the scores of one cell (one env: one column for rliable), None if it is incomplete."""
    x = np.asarray(scores, np.float64).ravel()
    if np.isinf(x).any():
        raise ValueError("failed seeds (FAILED, -inf) must be given a score first: stats.impute_failures")
    return x[:, None] if complete(x) else None


def _interval(score_dict: dict, func: Callable[..., np.ndarray], reps: int, seed: int) -> Estimate:
    library, _ = _rliable()
    # rliable's resampling draws from numpy's global generator (np.random.choice), whatever random_state says:
    # seed that for a reproducible table, and give the caller's generator state back (hence the legacy global
    # API, NPY002)
    saved = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        points, intervals = library.get_interval_estimates(
            score_dict, func, reps=reps, confidence_interval_size=CONFIDENCE, random_state=np.random.RandomState(seed)
        )
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    (point,), ((low,), (high,)) = next(iter(points.values())), next(iter(intervals.values()))
    return Estimate(float(point), float(low), float(high))


def iqm(scores: ArrayLike, reps: int = REPS, seed: int = 0) -> Estimate:
    """IQM of ``scores`` ``[S]`` (one per seed) with its stratified-bootstrap CI; NaN if a seed has no score
    (an incomplete cell: NaN is never dropped). ``ValueError`` for a :data:`FAILED` seed not yet imputed."""
    x = _column(scores)
    if x is None:
        return NAN
    _, metrics = _rliable()
    return _interval({"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps, seed)


def probability_of_improvement(scores_x: ArrayLike, scores_y: ArrayLike, reps: int = REPS, seed: int = 0) -> Estimate:
    """P(X > Y) of the seed scores ``scores_x`` ``[S]`` over ``scores_y`` ``[S']`` with its CI; NaN if either
    cell is incomplete (as :func:`iqm`)."""
    x, y = _column(scores_x), _column(scores_y)
    if x is None or y is None:
        return NAN
    return _interval({"x,y": [x, y]}, lambda a, b: np.array([_improvement(a, b)]), reps, seed)


def _improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) of the scores ``x`` ``[S, 1]`` over ``y`` ``[S', 1]`` (one task), the number rliable's
    ``metrics.probability_of_improvement`` gives: its Mann-Whitney U statistic of x over y (the pairs x wins, a tie
    counting one half: exact in float64) divided by ``S * S'``, counted here directly. scipy's test costs about a
    millisecond per call in argument handling, and the bootstrap calls it once per resample."""
    a, b = x[:, :1], y[:, 0]  # [S, 1] against [S']: every pair
    # (rliable returns 0.5 for equal arrays without counting: the count of equal samples is 0.5 too)
    wins = np.count_nonzero(a > b) + 0.5 * np.count_nonzero(a == b)
    return wins / (a.size * b.size)


def _iqm_of(x: np.ndarray) -> float:
    _, metrics = _rliable()
    return float(metrics.aggregate_iqm(x))


def relative_drop(full: ArrayLike, minimal: ArrayLike, reps: int = REPS, seed: int = 0) -> Estimate:
    """``1 - IQM(minimal) / IQM(full)`` of two cells' seed scores (``[S]``, ``[S']``: a setup and its variant
    with the implementation choices off) with its CI (the two cells resampled independently); NaN if either
    is incomplete. 0: no loss; 0.5: the variant keeps half of the setup's IQM."""
    x, y = _column(full), _column(minimal)
    if x is None or y is None:
        return NAN
    return _interval({"x,y": [x, y]}, lambda a, b: np.array([1 - _iqm_of(b) / _iqm_of(a)]), reps, seed)


def drop_difference(
    full_a: ArrayLike, minimal_a: ArrayLike, full_b: ArrayLike, minimal_b: ArrayLike, reps: int = REPS, seed: int = 0
) -> Estimate:
    """:func:`relative_drop` of setup A minus that of setup B with its CI (the four cells resampled
    independently); > 0: A loses more of its score than B without the implementation choices."""
    cells = [_column(c) for c in (full_a, minimal_a, full_b, minimal_b)]
    if any(c is None for c in cells):
        return NAN

    def func(a: np.ndarray, am: np.ndarray, b: np.ndarray, bm: np.ndarray) -> np.ndarray:
        return np.array([(1 - _iqm_of(am) / _iqm_of(a)) - (1 - _iqm_of(bm) / _iqm_of(b))])

    return _interval({"cells": cells}, func, reps, seed)
