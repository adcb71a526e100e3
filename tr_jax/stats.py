"""Statistics of a comparison over seeds: the score of a seed, and IQM and probability of improvement with
95% stratified-bootstrap confidence intervals (``rliable``; Agarwal et al., "Deep Reinforcement Learning at the
Edge of the Statistical Precipice", NeurIPS 2021).

* :func:`seed_score`: the score of one seed from its ``eval.jsonl`` rows;
* :func:`iqm`: interquartile mean over seeds (the mean of the middle 50%: ``scipy.stats.trim_mean`` cutting
  25% at each end, so with fewer than 4 seeds it is the mean) and its CI;
* :func:`probability_of_improvement`: ``P(X > Y) + P(X = Y) / 2`` for a random seed of setup X against one of
  setup Y (the Mann-Whitney U statistic over ``|X| |Y|``) and its CI.

The intervals are rliable's percentile intervals of ``reps`` stratified bootstrap resamples (seeds resampled
with replacement within each env; for the probability of improvement, independently for the two setups),
with a fixed ``seed`` (of numpy's global generator, which rliable 1.2 draws from; restored afterwards) so that
a table is reproducible. rliable is an optional dependency
(``pip install 'tr_jax[stats]'``), imported when a statistic is computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

SCORE_WINDOW = 0.1  # the score averages the evaluations in the last 10% of the run
CONFIDENCE = 0.95
REPS = 2000  # bootstrap resamples (rliable's default 50,000 takes minutes per cell on 2 cores)


class Estimate(NamedTuple):
    """A point estimate and its confidence interval (NaN where there is too little data)."""

    point: float
    low: float
    high: float


NAN = Estimate(float("nan"), float("nan"), float("nan"))


def _rliable() -> Any:
    try:
        from rliable import library, metrics
    except ImportError as e:  # rliable itself, or its arch/pandas (arch<8 fails to import with pandas 3)
        raise ImportError(
            f"the statistics of tr-jax compare need rliable (with arch<8, pandas<3): pip install 'tr_jax[stats]' ({e})"
        ) from None
    return library, metrics


def seed_score(evals: Sequence[dict], window: float = SCORE_WINDOW) -> float:
    """The score of one seed: the mean deterministic evaluation return over the last ``window`` of its run.

    Rule: with ``T`` the ``env_steps`` of the seed's latest evaluation (the end of the run once it has
    finished), the score is the mean of ``deterministic_return_mean`` over the seed's evaluations with
    ``env_steps >= (1 - window) * T`` (so it always includes the latest one). NaN if the seed has no
    evaluation or one in the window has no finite return (a diverged run).

    Args:
      evals: the ``eval.jsonl`` rows of ONE seed (any order).
    """
    if not evals:
        return float("nan")
    end = max(r["env_steps"] for r in evals)
    window_rows = [r["deterministic_return_mean"] for r in evals if r["env_steps"] >= (1 - window) * end]
    values = np.array([np.nan if v is None else v for v in window_rows], np.float64)
    return float(values.mean()) if np.all(np.isfinite(values)) else float("nan")


def seed_scores(evals: Sequence[dict], num_seeds: int, window: float = SCORE_WINDOW) -> np.ndarray:
    """``[num_seeds]`` :func:`seed_score` of each seed in a run's ``eval.jsonl`` rows."""
    return np.array([seed_score([r for r in evals if r["seed"] == s], window) for s in range(num_seeds)])


def _finite(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """``[S, 1]`` the finite scores of ``scores`` ``[S]`` (one env: one column for rliable)."""
    x = np.asarray(scores, np.float64).ravel()
    return x[np.isfinite(x)][:, None]


def _interval(score_dict: dict[str, Any], func: Any, reps: int, seed: int) -> Estimate:
    library, _ = _rliable()
    # rliable's resampling draws from numpy's global generator (np.random.choice), whatever random_state says:
    # seed that for a reproducible table, and give the caller's generator state back
    saved = np.random.get_state()  # noqa: NPY002 (rliable's global generator, see above)
    np.random.seed(seed)  # noqa: NPY002
    try:
        points, intervals = library.get_interval_estimates(
            score_dict, func, reps=reps, confidence_interval_size=CONFIDENCE, random_state=np.random.RandomState(seed)
        )
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    (point,), ((low,), (high,)) = next(iter(points.values())), next(iter(intervals.values()))
    return Estimate(float(point), float(low), float(high))


def iqm(scores: Sequence[float] | np.ndarray, reps: int = REPS, seed: int = 0) -> Estimate:
    """IQM of the finite ``scores`` ``[S]`` (one per seed) with its stratified-bootstrap CI; NaN if none."""
    x = _finite(scores)
    if not x.size:
        return NAN
    _, metrics = _rliable()
    return _interval({"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps, seed)


def probability_of_improvement(
    scores_x: Sequence[float] | np.ndarray, scores_y: Sequence[float] | np.ndarray, reps: int = REPS, seed: int = 0
) -> Estimate:
    """P(X > Y) of the finite seed scores ``scores_x`` ``[S]`` over ``scores_y`` ``[S']`` with its CI; NaN if
    either has none."""
    x, y = _finite(scores_x), _finite(scores_y)
    if not x.size or not y.size:
        return NAN
    _, metrics = _rliable()
    return _interval({"x,y": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), reps, seed)
