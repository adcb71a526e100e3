"""Learning curves of run directories: ``tr-jax plot RUN_DIR... [--out FILE] [--metric NAME ...]``.

Each run directory (written by :func:`tr_jax.run.run`) holds one or more seeds.
Runs are grouped by a label -- by default the algorithm plus, for TRPL, the
projection (and ``-full``/``-sqrt`` for a non-diagonal covariance), e.g.
``ppo``, ``trpl-kl``, ``trpl-frob-full`` -- and every seed of every run in a
group is one curve. For each group and metric the figure shows the mean over
the seeds and a 95% bootstrap confidence band of that mean
(:func:`bootstrap_band`), over env steps.

Metrics (``--metric``), one panel each:

* ``return``: training return (``episode_return`` of ``metrics.jsonl``: mean
  return of the episodes that finished in an iteration);
* ``eval_return``: evaluation return with the deterministic (mean) action
  (``deterministic_return_mean`` of ``eval.jsonl``); ``eval_return_stochastic``
  with sampled actions;
* ``kl_max``: the largest per-state KL(new || old) of each update;
* ``mean_bound``, ``cov_bound`` (TRPL runs only): the largest per-state mean
  and covariance part of the projection's distance as a fraction of its bound
  (``mean_part_max / eps_mean``, ``cov_part_max / eps_cov``; at most 1 up to
  the solver's tolerance, a dashed line marks 1);
* ``acting_mean_bound``, ``acting_cov_bound`` (TRPL runs only): the same for
  the policy that acts in the next rollout, the network output (not
  projected: only the regression loss keeps it near its projection), from
  ``acting_mean_part_max`` / ``acting_cov_part_max``; ``acting_kl_max``: the largest
  per-state KL of the acting policy (every algorithm; TRPL's ``kl_max`` is
  the projected policy's);
* any other column of ``metrics.jsonl`` or ``eval.jsonl`` by its name
  (``entropy``, ``value_loss``, ``stochastic_length_mean``, ...).

A bound panel with a curve above 10 times its bound, and a KL panel whose
curves span more than two decades, get a log y axis.

The default is ``return``, ``eval_return``, ``kl_max`` and, when any run is
TRPL, ``mean_bound`` and ``cov_bound`` (and the acting ones where a run has
them). The file type follows the extension of
``--out``: ``.png``, ``.pdf`` or ``.svg``. Needs matplotlib (``pip install
'tr_jax[plot]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from tr_jax import rundir as R
from tr_jax.algorithms.bounds import BOUNDS

FORMATS = (".png", ".pdf", ".svg")

_TRPL = BOUNDS["trpl"]
# derived metrics: name -> (file, column, title, bound field dividing the value or None)
DERIVED = {
    "return": ("metrics", "episode_return", "training return", None),
    "eval_return": ("eval", "deterministic_return_mean", "evaluation return (deterministic)", None),
    "eval_return_stochastic": ("eval", "stochastic_return_mean", "evaluation return (sampled actions)", None),
    "kl_max": ("metrics", "kl_max", "max KL(new || old) per update", None),
    # TRPL's bounded parts (tr_jax.algorithms.bounds), of the optimised (projected) and the acting policy
    **{
        f"{prefix}{name}_bound": ("metrics", b.metric, f"{title}max {name} part / {b.hyperparameter}", b.hyperparameter)
        for prefix, title, bounds in (("", "", _TRPL.optimised), ("acting_", "acting policy: ", _TRPL.acting))
        for name, b in bounds.items()
    },
    "acting_kl_max": ("metrics", "acting_kl_max", "acting policy: max KL(new || old) per update", None),
}
BOUND_METRICS = tuple(f"{name}_bound" for name in _TRPL.optimised)
# the same for the policy that acts next (TRPL: the network output, which is not projected); runs written
# before these metrics existed have none
ACTING_BOUND_METRICS = tuple(f"acting_{name}_bound" for name in _TRPL.acting)
DEFAULT_METRICS = ("return", "eval_return", "kl_max")
# a bound panel with a curve above this many times its bound gets a log y axis, as does a KL panel whose means
# span more than LOG_DECADES decades (e.g. a contextual PPO run beside diagonal ones)
LOG_ABOVE = 10.0
LOG_DECADES = 2.0


class PlotError(ValueError):
    """A bad run directory, metric, label count or output file (the CLI exits with status 2)."""


class Run(NamedTuple):
    """One run directory's data.

    path: the run directory.
    config: its ``config.json`` (a dict of TrainConfig fields).
    label: the group it is plotted in.
    metrics: the rows of ``metrics.jsonl`` (one per iteration and seed).
    evals: the rows of ``eval.jsonl`` (one per evaluation and seed).
    """

    path: str
    config: dict
    label: str
    metrics: list
    evals: list


class Band(NamedTuple):
    """One group's curve for one metric: ``x`` ``[P]`` env steps; ``mean``, ``low``, ``high`` ``[P]``;
    ``num_seeds`` the number of seed curves behind it."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    num_seeds: int


def default_label(config: dict) -> str:
    """``ppo``, ``trpo``, ``trpl-<projection>`` (``-full``/``-sqrt`` appended for those covariances)."""
    label = config["algorithm"]
    if label == "trpl":
        label += f"-{config['projection']}"
    if config.get("cov_type", "diag") != "diag":
        label += f"-{config['cov_type']}"
    return label


def load_run(path: str, label: str | None = None) -> Run:
    """Reads a run directory; ``PlotError`` if it is not one, or its rows are damaged or duplicated."""
    try:
        rd = R.RunDir.existing(path)
    except FileNotFoundError as e:
        raise PlotError(str(e)) from None
    config = R.read_json(rd.config)
    if label is None:  # a sweep's setting adds its own label ("eps_cov=0.001") to the default
        setting = rd.info().get("label")
        label = default_label(config) + (f" {setting}" if setting else "")
    try:
        return Run(rd.path, config, label, rd.read_metrics(), rd.read_eval())
    except R.RunDirError as e:  # an iteration written twice, a line that is not JSON
        raise PlotError(str(e)) from None


def bootstrap_band(values: np.ndarray, confidence: float = 0.95, num_resamples: int = 2000, seed: int = 0) -> tuple:
    """Mean over seeds and a bootstrap confidence interval of that mean.

    Resamples the ``S`` seeds with replacement ``num_resamples`` times (the
    same resampled seeds at every point, so a band is one bootstrap of whole
    curves), takes each resample's mean and returns the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of those
    means (numpy's default linear interpolation).

    Args:
      values: ``[S, P]`` one row per seed, one column per point; finite.
      confidence: the interval's coverage, in (0, 1).
      num_resamples: bootstrap resamples.
      seed: seed of the resampling (the band is deterministic).
    Returns:
      ``(mean, low, high)``, each ``[P]``. With one seed the band is the mean itself.
    """
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or values.shape[0] < 1:
        raise ValueError(f"values must be [seeds, points] with at least one seed, got shape {values.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s = values.shape[0]
    mean = values.mean(axis=0)
    idx = np.random.default_rng(seed).integers(0, s, size=(num_resamples, s))
    means = values[idx].mean(axis=1)  # [num_resamples, P]
    alpha = (1 - confidence) / 2
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return mean, low, high


def smooth_curve(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average of ``y`` ``[n]`` over ``window`` points (fewer at the start)."""
    if window <= 1:
        return y
    c = np.concatenate([[0.0], np.cumsum(y)])
    i = np.arange(1, len(y) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def _series(run: Run, metric: str, smooth: int = 1):
    """Per seed ``(x [n], y [n])`` of ``metric`` in ``run`` (rows without a value dropped); None if it has none.

    ``smooth`` > 1: per-iteration metrics (not evaluations) are averaged over
    that many trailing iterations, per seed.
    """
    if metric in DERIVED:
        source, column, _, bound = DERIVED[metric]
    else:
        source, column, bound = ("eval" if any(metric in r for r in run.evals[:1]) else "metrics"), metric, None
    rows = run.evals if source == "eval" else run.metrics
    if (
        not rows
        or column not in rows[0]
        or (metric in BOUND_METRICS + ACTING_BOUND_METRICS and run.config["algorithm"] != "trpl")
    ):
        return None
    scale = 1.0 / run.config[bound] if bound else 1.0
    out = {}
    for seed in sorted({r["seed"] for r in rows}):
        pts = [
            (r["env_steps"], r[column])
            for r in rows
            if r["seed"] == seed and isinstance(r.get(column), (int, float)) and not isinstance(r[column], bool)
        ]
        if pts:
            x, y = np.array(pts, np.float64).T
            out[seed] = (x, smooth_curve(y, smooth if source == "metrics" else 1) * scale)
    return list(out.values()) or None


def band(curves: Sequence[tuple], confidence: float = 0.95) -> Band:
    """Mean and bootstrap band of seed curves ``[(x [n_i], y [n_i]), ...]``.

    Curves with identical ``x`` are used as they are; otherwise each is
    linearly interpolated onto the union of the ``x`` values inside the range
    that every curve covers (no extrapolation).
    """
    xs = [c[0] for c in curves]
    if all(len(x) == len(xs[0]) and np.array_equal(x, xs[0]) for x in xs):
        grid, ys = xs[0], np.stack([c[1] for c in curves])
    else:
        lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
        grid = np.unique(np.concatenate(xs))
        grid = grid[(grid >= lo) & (grid <= hi)]
        ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    mean, low, high = bootstrap_band(ys, confidence)
    return Band(grid, mean, low, high, len(curves))


def available_metrics(runs: Sequence[Run]) -> list:
    """Every metric name some run can plot: the derived names, then the raw columns."""
    names = [m for m in DERIVED if any(_series(r, m) for r in runs)]
    skip = {"iteration", "seed", "env_steps", "diverged"}
    for r in runs:
        for rows in (r.metrics, r.evals):
            names += [k for k in (rows[0] if rows else {}) if k not in skip and k not in names]
    return names


def plot_runs(
    run_dirs: Sequence[str],
    out: str,
    metrics: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    confidence: float = 0.95,
    smooth: int = 1,
) -> dict:
    """Draws the learning curves of ``run_dirs`` into ``out`` (``.png``, ``.pdf`` or ``.svg``).

    Args:
      run_dirs: run directories written by ``tr-jax train``.
      out: the output file; its extension picks the format.
      metrics: metric names (see the module docstring); default: return,
        eval_return, kl_max and, if any run is TRPL, mean_bound and cov_bound
        (and acting_mean_bound, acting_cov_bound where a run has them).
      labels: one label per run directory (runs with equal labels are pooled);
        default :func:`default_label` of each run's config.
      confidence: of the bootstrap band.
      smooth: per-iteration metrics (training return, KL, bounds) are
        averaged over this many trailing iterations per seed before the band
        (1: raw); evaluation returns are never smoothed.
    Returns:
      ``{metric: {label: Band}}``: what was drawn.
    Raises:
      PlotError: a missing run directory, an unknown metric (the message lists
        the available ones), a label count that does not match, an unknown
        extension, or a metric that no run has data for.
    """
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        raise PlotError(f"--out {out}: unknown file type {ext or '(none)'!r}; use one of {list(FORMATS)}")
    if not run_dirs:
        raise PlotError("no run directory given")
    if not isinstance(smooth, int) or smooth < 1:
        raise PlotError(f"smooth must be a whole number of iterations >= 1, got {smooth!r}")
    if labels and len(labels) != len(run_dirs):
        raise PlotError(
            f"got {len(labels)} labels for {len(run_dirs)} run directories; give one per run directory or none"
        )
    runs = [load_run(d, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
    if not metrics:
        metrics = list(DEFAULT_METRICS)
        if any(r.config["algorithm"] == "trpl" for r in runs):
            metrics += list(BOUND_METRICS) + [m for m in ACTING_BOUND_METRICS if any(_series(r, m) for r in runs)]
    known = available_metrics(runs)
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise PlotError(f"unknown metric(s) {unknown} for these runs; available: {known}")

    drawn = {}
    for m in metrics:
        groups: dict[str, list] = {}
        for r in runs:
            groups.setdefault(r.label, []).extend(_series(r, m, smooth) or [])
        # a group whose seeds share no env-step range (e.g. one point each at different steps) has no band
        drawn[m] = {label: b for label, curves in groups.items() if curves and (b := band(curves, confidence)).x.size}
        if not drawn[m]:
            raise PlotError(f"metric {m!r}: no run has values for it yet")
    _draw(drawn, out, confidence)
    return drawn


def _decades(bands: dict) -> float:
    """How many decades the positive mean values of ``bands`` span (0 without two positive values)."""
    means = np.concatenate([b.mean for b in bands.values()])
    positive = means[np.isfinite(means) & (means > 0)]
    return float(np.log10(positive.max() / positive.min())) if positive.size > 1 else 0.0


def _draw(drawn: dict, out: str, confidence: float) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError("tr-jax plot needs matplotlib: pip install 'tr_jax[plot]'") from None

    n = len(drawn)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(5.0 * cols, 3.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    labels = sorted({label for bands in drawn.values() for label in bands})
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for ax, (m, bands) in zip(axes, drawn.items()):
        for label in labels:
            if label not in bands:
                continue
            b = bands[label]
            ax.plot(b.x, b.mean, color=colors[label], lw=1.5, label=f"{label} (n={b.num_seeds})")
            ax.fill_between(b.x, b.low, b.high, color=colors[label], alpha=0.25, lw=0)
        top = max(float(np.nanmax(b.high)) for b in bands.values())
        if m in BOUND_METRICS + ACTING_BOUND_METRICS:
            ax.axhline(1.0, color="k", ls="--", lw=1, label="bound")
            if top > LOG_ABOVE:  # a curve far outside its bound: a log axis keeps the others readable
                ax.set_yscale("log")
            else:  # headroom above the bound, so curves that sit on it stay visible
                ax.set_ylim(0, 1.1 * max(1.0, top))
        elif m in ("kl_max", "acting_kl_max") and _decades(bands) > LOG_DECADES:
            ax.set_yscale("log")
        ax.set_title(DERIVED[m][2] if m in DERIVED else m, fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        ax.legend(fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"mean over seeds, {100 * confidence:.0f}% bootstrap confidence band", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
