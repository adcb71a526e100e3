"""Compares training setups: envs x setups x seeds at one env-step budget, as a markdown table and plots.

    tr-jax compare --envs hopper --setups ppo trpl-kl trpl-w2 trpl-frob trpo \\
        --seeds 3 --env-steps 2000000 --out results/hopper
    tr-jax compare ... --report-only      # table and plots of what is there, no training

(``python3 experiments/compare.py`` with the same arguments does the same from a checkout.)

Setup ``S`` on env ``E`` is the config file ``CONFIGS/E/S.yaml`` (default
``experiments/configs/`` under the current directory: the paper's setups in a
checkout of tr_jax), with ``total_env_steps`` set to
``--env-steps`` and any ``--set key=value``. Its run directory is
``OUT/runs/E/S``; all ``--seeds`` seeds train at once (vmapped) through
:func:`tr_jax.run.run`, one setup after another.

Resumable: a run whose ``summary.json`` says it finished (or diverged) at the
budget is skipped (if its config is the one asked for); a run with a checkpoint is resumed from its newest one (a
killed or interrupted run, or a finished one given a larger budget -- a learning-rate decay keeps its
horizon ``lr_decay_steps`` when it is set, as in the shipped configs; without it the decay spans the new
budget only from the resume on); a
directory without a checkpoint is started again. Asking for a different
config than a run directory holds is an error naming the differing fields.

Writes ``OUT/results.md`` (the table, also printed), ``OUT/<env>.png``
(learning curves, :func:`tr_jax.plot.plot_runs`) and ``OUT/timings.json``
(wall time of every invocation per run, updated after every chunk so a kill
loses at most one chunk's time). Invocations may train different setups into
one OUT at the same time (never the same run). Exit status: 0 all done, 1 a run diverged or
failed, 2 bad arguments or a missing config directory, 130 / 75 a run stopped by Ctrl-C / SIGTERM
or SIGUSR1 with a checkpoint (as ``tr-jax train``; the next call resumes it).

Table columns (per env and setup, over seeds):

* score IQM [95% CI]: every seed is scored at the same budget, the run's ``total_env_steps`` (with
  ``--table-at N``: N): the mean of its deterministic (mean-action) evaluation returns over the last 10% of
  the budget (:func:`tr_jax.stats.seed_score` states the exact rule). A seed that diverged before the budget
  counts as a failure with the lowest evaluation return seen on the env in the table (worst-case
  imputation, :func:`tr_jax.stats.impute_failures`); a cell with a seed short of the budget (still
  running, or stopped with a run in which another seed diverged) is *incomplete*: no score, the column says
  how many seeds reached the budget. The column is the interquartile mean of the seeds' scores with a 95%
  stratified-bootstrap confidence interval (rliable, :mod:`tr_jax.stats`); a footnote under the table states
  the rule and names the failed seeds;
* P(improvement over ppo) [95% CI]: the probability that a random seed of the setup scores above a random
  seed of the setup named ``ppo`` on the same env at the same budget (ties count half), with its CI; "–"
  for ppo itself, without a ppo row at that budget, or when either cell is incomplete;
* final eval return: the last deterministic evaluation, mean ± std over seeds;
* max acting KL: the largest per-state KL(new || old) of the policy that acts in the next rollout, any
  update and seed (``acting_kl_max``: TRPL's network output, not its projection; PPO's and TRPO's policy);
* bound use: the largest per-state trust-region distance over its bound, any update and seed, of the
  policy the update optimised -- TRPL: ``max(mean part / eps_mean, cov part / eps_cov)`` of the projected
  policy (each per-state bound holds iff this is <= 1, up to the solver's tolerance :data:`TOLERANCE`, so
  it cannot exceed 1 by construction); TRPO bounds the *mean* KL over states, so its column is
  ``max kl_mean / max_kl``; PPO has no bound; ``(n over)`` counts the updates above ``1 + TOLERANCE``;
* acting mean part / eps_mean, acting cov part / eps_cov (TRPL): the same distances of the acting policy
  (the network output, which only the regression loss keeps near its projection): the max over states and
  updates, the mean over states and updates, and the fraction of states above ``1 + TOLERANCE`` times the
  bound (over every update's states);
* env steps/s: env steps of all seeds per second of training chunks
  (compilation, evaluation and checkpoints excluded);
* wall time: of every invocation that trained the run (compilation included).

Under the table a line says which critic the runs use (:func:`tr_jax.config.critic`): the same in every
run, or the fields in which they differ.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from tr_jax import rundir as R
from tr_jax import stats
from tr_jax.algorithms.bounds import BOUNDS, Bound
from tr_jax.algorithms.trpl import BOUND_TOLERANCE as TOLERANCE  # relative slack of "bound held"
from tr_jax.config import critic, load_config_file, parse_assignment

DEFAULT_CONFIGS = os.path.join("experiments", "configs")  # relative to the current directory
BASELINE = "ppo"  # the setup the probability of improvement compares every setup with


class Row(NamedTuple):
    """One table row: a setup on an env, summarised over its seeds.

    budget: env steps per seed at which the seeds are scored (``total_env_steps`` rounded down to whole
      iterations, or ``--table-at``).
    scores: ``[S]`` the score of each seed at ``budget`` (:func:`tr_jax.stats.seed_score`: NaN short of the
      budget, :data:`tr_jax.stats.FAILED` diverged).
    floor: the lowest finite evaluation return of the run at or before ``budget`` (NaN: none).
    final: ``[S]`` final deterministic eval return per seed (NaN: no evaluation yet).
    env_steps: env steps per seed reached (latest evaluation); status: the run's state.
    kl_max: largest per-state KL of the acting policy of any update (NaN: no update yet).
    bound_use: largest distance/bound of any update (None: the algorithm has no bound).
    over: updates (x seeds) with ``bound_use > 1 + TOLERANCE``.
    acting_mean, acting_cov: TRPL's acting policy (the network output), its mean / cov part over its bound:
      ``(max over states and updates, mean over states and updates, fraction of states over the bound)``;
      None for other algorithms (NaNs: no such metrics in the run).
    critic: the critic's settings (:func:`tr_jax.config.critic`).
    steps_per_second, wall_seconds: over all recorded invocations (NaN: none recorded).
    """

    env: str
    setup: str
    status: str
    num_seeds: int
    env_steps: int
    budget: int
    scores: np.ndarray
    floor: float
    final: np.ndarray
    kl_max: float
    bound_use: float | None
    over: int
    acting_mean: tuple | None
    acting_cov: tuple | None
    critic: dict
    steps_per_second: float
    wall_seconds: float


def config_path(configs: str, env: str, setup: str) -> str:
    """The config file of ``setup`` on ``env``: ``CONFIGS/<env>/<setup>.yaml``."""
    return os.path.join(configs, env, f"{setup}.yaml")


def run_path(out: str, env: str, setup: str) -> str:
    """The run directory of ``setup`` on ``env``: ``OUT/runs/<env>/<setup>``."""
    return os.path.join(out, "runs", env, setup)


def make_config(configs: str, env: str, setup: str, env_steps: int | None, assignments: Sequence[str]):
    """The TrainConfig of ``setup`` on ``env``: its config file, the budget, then ``--set`` assignments."""
    config = load_config_file(config_path(configs, env, setup))
    if env_steps is not None:
        config = config.replace(total_env_steps=env_steps)
    return config.replace(**dict(parse_assignment(a) for a in assignments))


def plan(run_dir: str, config) -> str:
    """What to do with ``run_dir`` for ``config``: "new", "resume", "restart" (no checkpoint to resume
    from), "done" (finished at this budget) or "diverged". ``ValueError`` listing the fields if the
    run directory holds a config that differs in more than the budget and the host-loop fields."""
    from tr_jax.config import config_from_dict
    from tr_jax.run import resume_config

    rd = R.RunDir(run_dir)
    if not os.path.exists(rd.config) or not os.path.exists(rd.run):
        return "restart" if os.path.exists(rd.path) else "new"
    resume_config(config_from_dict(R.read_json(rd.config), where=rd.config), config)
    if os.path.exists(rd.summary):
        summary = R.read_json(rd.summary)
        if summary["status"] == "diverged":
            return "diverged"
        if summary["status"] == "finished" and summary["iterations"] >= config.num_iterations:
            return "done"
    from tr_jax.checkpoint import Checkpoints

    ckpt = Checkpoints(rd.checkpoints)
    try:
        return "resume" if ckpt.latest() is not None else "restart"
    finally:
        ckpt.close()


class Timings:
    """``OUT/timings.json``: ``{run name: [{"started", "wall_seconds", "train_seconds", "env_steps"}, ...]}``,
    one entry per invocation that trained the run; ``env_steps`` counts all seeds.

    ``save`` re-reads the file and replaces only the runs this invocation trained, so invocations
    training different setups into one OUT at the same time keep each other's timings.
    """

    def __init__(self, out: str):
        self.path = os.path.join(out, "timings.json")
        self.data = self._read()
        self._mine: set[str] = set()

    def _read(self) -> dict:
        return R.read_json(self.path) if os.path.exists(self.path) else {}

    def start(self, name: str) -> dict:
        """A new timing entry for run ``name`` (this invocation); the caller fills it in."""
        entry = {
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "wall_seconds": 0.0,
            "train_seconds": 0.0,
            "env_steps": 0,
        }
        self.data.setdefault(name, []).append(entry)
        self._mine.add(name)
        return entry

    def save(self) -> None:
        """Writes the file, keeping the entries of the runs other invocations trained."""
        self.data = {**self._read(), **{name: self.data[name] for name in self._mine}}
        R.write_json(self.path, self.data)

    def totals(self, name: str) -> tuple:
        """``(env steps/s over training seconds, wall seconds)`` of every invocation of ``name``."""
        entries = self.data.get(name, [])
        train = sum(e["train_seconds"] for e in entries)
        steps = sum(e["env_steps"] for e in entries)
        wall = sum(e["wall_seconds"] for e in entries)
        return (steps / train if train > 0 else float("nan")), (wall if entries else float("nan"))


def train(
    run_dir: str, config, num_seeds: int, seed: int, action: str, timings: Timings, name: str, progress: str
) -> str:
    """Trains (or resumes) one run, recording its wall time after every chunk; returns its status."""
    from tr_jax.run import run

    entry = timings.start(name)
    t0 = time.perf_counter()
    last = [t0]

    def record(env_steps, metrics):
        now = time.perf_counter()
        entry["wall_seconds"] = now - t0
        # a chunk's training time is not reported per chunk: count the time since the previous chunk
        # (evaluation and checkpoint included; compilation only in the first); replaced by the exact
        # training time when the run returns
        entry["train_seconds"] += now - last[0]
        entry["env_steps"] += metrics["iteration"].size * config.batch_size * config.action_repeat
        last[0] = now
        timings.save()

    result = run(
        config,
        seed=seed,
        num_seeds=num_seeds,
        run_dir=run_dir,
        resume=action == "resume",
        overwrite=action == "restart",
        progress=progress,
        progress_fn=record,
        on_divergence="return",
    )
    entry.update(wall_seconds=time.perf_counter() - t0, train_seconds=result.run_seconds)
    timings.save()
    return result.status


def _bound_use(config: dict, rows: list) -> tuple:
    """``(max distance/bound or None, updates over 1 + TOLERANCE)`` from ``metrics.jsonl`` rows."""
    bounds = BOUNDS[config["algorithm"]].optimised.values()
    if not bounds:
        return None, 0
    use = [
        max(r[b.metric] / config[b.hyperparameter] for b in bounds)
        for r in rows
        if all(r.get(b.metric) is not None for b in bounds)
    ]
    if not use:
        return float("nan"), 0
    return max(use), sum(u > 1 + TOLERANCE for u in use)


def summarize(
    out: str, env: str, setup: str, timings: Timings, up_to: int | None = None, column: str = stats.DETERMINISTIC
) -> Row | None:
    """The table row of ``OUT/runs/env/setup`` from its files (None if it has not started); with
    ``up_to``, from its evaluations and updates at or before that many env steps per seed only. ``column``: the
    evaluation return its ``scores`` and ``floor`` are of (:func:`tr_jax.stats.seed_score`; the deterministic
    evaluation's unless told otherwise)."""
    rd = R.RunDir(run_path(out, env, setup))
    if not os.path.exists(rd.config) or not os.path.exists(rd.run):
        return None
    from tr_jax.config import config_from_dict

    config, num_seeds = R.read_json(rd.config), int(rd.info()["num_seeds"])
    all_evals, metrics = rd.read_eval(), rd.read_metrics()
    c = config_from_dict(config, where=rd.config)
    per_iteration = c.batch_size * c.action_repeat
    budget = c.num_iterations * per_iteration if up_to is None else up_to
    summary = R.read_json(rd.summary) if os.path.exists(rd.summary) else None
    diverged_at = [None] * num_seeds
    for seed in (summary or {}).get("seeds", []):
        if seed.get("diverged_at") is not None:  # the iteration whose update failed
            diverged_at[seed["seed"]] = (seed["diverged_at"] + 1) * per_iteration
    scores = stats.seed_scores(all_evals, num_seeds, budget, diverged_at=diverged_at, column=column)
    evals = all_evals
    if up_to is not None:
        evals = [r for r in evals if r["env_steps"] <= up_to]
        metrics = [r for r in metrics if r["env_steps"] <= up_to]
    final = np.full(num_seeds, np.nan)
    for s in range(num_seeds):
        det = [r["deterministic_return_mean"] for r in evals if r["seed"] == s]
        if det:
            final[s] = det[-1] if det[-1] is not None else np.nan
    exported = os.path.join(rd.path, METRIC_SUMMARY)
    if up_to is None and os.path.exists(exported):  # an exported run: its metrics.jsonl is thinned
        m = _from_json(R.read_json(exported))
    else:
        m = metric_summary(config, metrics)
    # the summary is written when an invocation stops: it is stale while a resumed run trains on
    status = summary["status"] if summary and summary["iterations"] == m["iterations"] else "partial"
    steps_per_second, wall = timings.totals(f"{env}/{setup}")
    return Row(
        env,
        setup,
        status,
        num_seeds,
        evals[-1]["env_steps"] if evals else 0,
        budget,
        scores,
        stats.lowest_return(all_evals, budget, column),
        final,
        kl_max=m["kl_max"],
        bound_use=m["bound_use"],
        over=m["over"],
        acting_mean=m["acting_mean"],
        acting_cov=m["acting_cov"],
        critic=critic(config),
        steps_per_second=steps_per_second,
        wall_seconds=wall,
    )


METRIC_SUMMARY = "metric_summary.json"  # in an exported run (experiments/study_export.py): metric_summary()


def _from_json(m: dict) -> dict:
    """:func:`metric_summary` as read back from JSON (which wrote NaN as null)."""

    def nan(x):
        return np.nan if x is None else x

    return {
        **m,
        "kl_max": nan(m["kl_max"]),
        **{k: None if m[k] is None else tuple(nan(x) for x in m[k]) for k in ("acting_mean", "acting_cov")},
    }


def metric_summary(config: dict, metrics: list) -> dict:
    """The table's columns that come from a run's ``metrics.jsonl`` rows (every iteration and seed):
    ``{"iterations": iterations done, "kl_max", "bound_use", "over", "acting_mean", "acting_cov"}`` (see
    :class:`Row`) from the rows as :meth:`~tr_jax.rundir.RunDir.read_metrics` gives them (under this version's
    names). An exported run keeps these, computed from its whole metrics, in ``METRIC_SUMMARY`` beside a thinned
    ``metrics.jsonl``."""
    bound_use, over = _bound_use(config, metrics)
    acting = BOUNDS[config["algorithm"]].acting
    return {
        "iterations": max((r["iteration"] for r in metrics), default=-1) + 1,
        "kl_max": _acting_kl_max(metrics),
        "bound_use": bound_use,
        "over": over,
        "acting_mean": _acting_part(metrics, acting["mean"], config) if "mean" in acting else None,
        "acting_cov": _acting_part(metrics, acting["cov"], config) if "cov" in acting else None,
    }


def _column(rows: list, name: str) -> np.ndarray:
    return np.array([r[name] for r in rows if r.get(name) is not None], np.float64)


def _acting_kl_max(rows: list) -> float:
    """The largest per-state KL of the acting policy in any update (``acting_kl_max``; PPO and TRPO runs written
    before it existed: ``kl_max``, their policy acts; TRPL's older ``raw_kl_max`` reads as ``acting_kl_max``,
    :func:`tr_jax.rundir.current_metric_names`)."""
    kls = _column(rows, "acting_kl_max" if any("acting_kl_max" in r for r in rows) else "kl_max")
    return float(kls.max()) if kls.size else float("nan")


def _acting_part(rows: list, bound: Bound, config: dict) -> tuple:
    """The acting policy's ``(max, mean, fraction over)`` of a bounded part (TRPL: ``acting_<part>_max``) over its
    bound, over the states of every update and seed (each update's batch has equally many states); NaN where
    missing."""
    column = bound.metric.removesuffix("_max")
    top, avg, over = (_column(rows, f"{column}_{k}") for k in ("max", "mean", "over"))
    eps = config[bound.hyperparameter]
    return (
        top.max() / eps if top.size else np.nan,
        avg.mean() / eps if avg.size else np.nan,
        over.mean() if over.size else np.nan,
    )


def _pm(x: np.ndarray) -> str:
    x = x[np.isfinite(x)]
    return f"{x.mean():.1f} ± {x.std():.1f}" if x.size else "–"


def _number(x: float, spec: str) -> str:
    return format(x, spec) if np.isfinite(x) else "–"


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "–"
    m = int(round(seconds / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{seconds / 60:.1f} min"


def estimate_text(e: stats.Estimate, spec: str) -> str:
    """``"point [low, high]"`` of ``e`` with the format ``spec`` (e.g. ``".1f"``); "–" when it has no value."""
    return "–" if not np.isfinite(e.point) else f"{e.point:{spec}} [{e.low:{spec}}, {e.high:{spec}}]"


def acting_text(part: tuple | None) -> str:
    """``"max / mean / fraction over"`` of an acting-policy bound use ``(max, mean, fraction)``; "–" if none."""
    if part is None or not np.isfinite(part[0]):
        return "–"
    top, avg, over = part
    return f"{top:.2f} / {avg:.2f} / {100 * over:.0f}%"


def _critic_note(rows: Sequence[Row]) -> str:
    """Which critic the rows' runs use: one line."""
    if not rows:
        return ""
    first = rows[0].critic
    differ = sorted({k for r in rows for k in first if r.critic[k] != first[k]})
    if not differ:
        return "critic: the same in every run: " + ", ".join(f"{k}={v}" for k, v in first.items()) + "\n"
    return (
        f"critic: differs between runs in {', '.join(differ)} (a difference in return is not the policy "
        "update's alone)\n"
    )


def scored(rows: Sequence[Row]) -> dict:
    """``{(env, setup): [S] scores}`` of ``rows`` with failed seeds imputed (:func:`tr_jax.stats.impute_failures`:
    the lowest evaluation return of any row of the same env and budget); NaN stays NaN (an incomplete cell)."""
    found: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        found.setdefault((r.env, r.budget), []).append(r.floor)
    floors = {k: min((x for x in v if np.isfinite(x)), default=np.nan) for k, v in found.items()}
    return {(r.env, r.setup): stats.impute_failures(r.scores, floors[(r.env, r.budget)]) for r in rows}


def _cell(r: Row, scores: np.ndarray, estimate: Callable) -> str:
    if not stats.complete(scores):
        reached = int(np.sum(~np.isnan(scores)))
        return f"incomplete ({reached}/{r.num_seeds} seeds at the budget)"
    return estimate_text(estimate(stats.iqm, scores), ".1f")


def score_note(rows: Sequence[Row]) -> str:
    """The footnote of the score columns: the rule, and which seeds failed."""
    failed = [f"{r.env}/{r.setup} seed {s}" for r in rows for s in np.flatnonzero(r.scores == stats.FAILED)]
    return (
        f"score: every seed at its row's budget (env steps per seed), the mean deterministic evaluation return "
        f"over the last {stats.SCORE_WINDOW:.0%} of the budget; a seed that diverged before the budget counts "
        "as a failure with the lowest evaluation return recorded on its env in this table (worst-case "
        "imputation); a cell with a seed short of the budget is incomplete and not scored. Failed seeds: "
        f"{', '.join(failed) if failed else 'none'}.\n"
    )


def table(rows: Sequence[Row], reps: int = stats.REPS, estimate: Callable | None = None) -> str:
    """The markdown table of ``rows``, a footnote on the score and a line naming the critic (see the module
    docstring for the columns).

    ``reps``: bootstrap resamples of the confidence intervals (:mod:`tr_jax.stats`). ``estimate(statistic,
    *cells)``: computes ``statistic(*cells, reps)`` (default: directly; a caller that has the same estimates
    already passes its store of them, as experiments/study_report.py does).
    """
    if estimate is None:

        def estimate(statistic: Callable, *cells: np.ndarray) -> stats.Estimate:
            return statistic(*cells, reps)

    lines = [
        "| env | setup | seeds | env steps per seed | score IQM [95% CI] | P(improvement over ppo) [95% CI] "
        "| final eval return | max acting KL | bound use | acting mean part / eps_mean: max / mean / over "
        "| acting cov part / eps_cov: max / mean / over | env steps/s | wall time | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    scores = scored(rows)
    baseline = {(r.env, r.budget): scores[(r.env, r.setup)] for r in rows if r.setup == BASELINE}
    for r in rows:
        use = "–" if r.bound_use is None or not np.isfinite(r.bound_use) else f"{r.bound_use:.3f} ({r.over} over)"
        base = baseline.get((r.env, r.budget))
        poi = (
            estimate(stats.probability_of_improvement, scores[(r.env, r.setup)], base)
            if base is not None and r.setup != BASELINE
            else stats.NAN
        )
        lines.append(
            f"| {r.env} | {r.setup} | {r.num_seeds} | {r.env_steps:,} "
            f"| {_cell(r, scores[(r.env, r.setup)], estimate)} | {estimate_text(poi, '.2f')} | {_pm(r.final)} "
            f"| {_number(r.kl_max, '.3g')} | {use} "
            f"| {acting_text(r.acting_mean)} | {acting_text(r.acting_cov)} | {_number(r.steps_per_second, ',.0f')} "
            f"| {_duration(r.wall_seconds)} | {r.status} |"
        )
    return "\n".join(lines) + "\n\n" + score_note(rows) + "\n" + _critic_note(rows)


def plotted_setups(out: str, env: str, setups: Sequence[str]) -> list:
    """The ``setups`` of ``env`` that :func:`plot` draws: those whose runs have evaluation rows."""
    return [s for s in setups if R.read_jsonl(R.RunDir(run_path(out, env, s)).eval)]


def plot(out: str, env: str, setups: Sequence[str], smooth: int = 1, path: str | None = None) -> str | None:
    """Learning curves of ``env``'s runs into ``path`` (default ``OUT/<env>.png``), one group per setup; None if
    none has metrics yet.

    ``smooth``: per-iteration metrics averaged over that many trailing iterations (:func:`tr_jax.plot.plot_runs`).
    """
    from tr_jax.plot import ACTING_BOUND_METRICS, BOUND_METRICS, DEFAULT_METRICS, plot_runs

    present = plotted_setups(out, env, setups)
    dirs = [run_path(out, env, s) for s in present]
    if not dirs:
        return None
    trpl = any(R.read_json(R.RunDir(d).config)["algorithm"] == "trpl" for d in dirs)
    metrics = list(DEFAULT_METRICS) + ["entropy"] + (list(BOUND_METRICS) if trpl else [])
    # the acting policy's KL and (TRPL) bound use, in runs that record them
    has = {k for d in dirs for k in R.RunDir(d).first_metrics_row()}
    metrics += ["acting_kl_max"] * ("acting_kl_max" in has) + list(ACTING_BOUND_METRICS) * (
        trpl and BOUNDS["trpl"].acting["mean"].metric in has
    )
    path = path or os.path.join(out, f"{env}.png")
    plot_runs(dirs, path, metrics, labels=present, smooth=smooth)  # by setup: ppo-m is not pooled with ppo
    return path


def run_compare(args, prog: str = "tr-jax compare") -> int:
    """Trains what ``args`` (the parsed options of ``tr-jax compare``, tr_jax.cli.compare.add_arguments) asks for,
    then writes the table and plots; returns the exit status (errors go to stderr as ``prog: error: ...``)."""
    if args.seeds < 1:
        print(f"{prog}: error: --seeds must be >= 1", file=sys.stderr)
        return 2
    if args.smooth < 1:
        print(f"{prog}: error: --smooth must be >= 1 (1: raw curves), got {args.smooth}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.configs):
        print(
            f"{prog}: error: --configs {args.configs}: no such directory (the default is experiments/configs "
            "under the current directory, as in a checkout of tr_jax; name the config tree with --configs DIR)",
            file=sys.stderr,
        )
        return 2
    try:  # every config first: a typo fails before hours of training
        configs = {
            (e, s): make_config(args.configs, e, s, args.env_steps, args.assignments)
            for e in args.envs
            for s in args.setups
        }
    except (ValueError, TypeError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    timings = Timings(args.out)
    failed, stopped = False, None
    for (env, setup), config in configs.items():
        if args.report_only:
            break
        run_dir = run_path(args.out, env, setup)
        try:
            action = plan(run_dir, config)
            print(f"== {env} / {setup}: {action} ({run_dir})", flush=True)
            if action in ("done", "diverged"):
                failed |= action == "diverged"
                continue
            status = train(run_dir, config, args.seeds, args.seed, action, timings, f"{env}/{setup}", args.progress)
        except (ValueError, RuntimeError, OSError) as e:  # a different config, a bad checkpoint, a full disk
            print(f"{prog}: {env} / {setup} failed: {e}", file=sys.stderr)
            failed = True
            continue
        failed |= status != "finished"
        if status in ("interrupted", "preempted"):  # stopped by a signal: the runs after it wait for the next call
            stopped = status
            break
    from tr_jax.plot import PlotError

    try:
        rows = [
            r for (env, setup) in configs if (r := summarize(args.out, env, setup, timings, args.table_at)) is not None
        ]
        text = table(rows)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(text)
        print(text)
        for env in args.envs:
            path = plot(args.out, env, args.setups, args.smooth)
            if path:
                print(f"wrote {path}")
    except (R.RunDirError, PlotError) as e:  # e.g. an iteration written twice (two processes at once)
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    from tr_jax.run import EXIT_STATUS

    return EXIT_STATUS[stopped] if stopped else 1 if failed else 0


def main(argv=None, prog: str = "compare.py", default_configs: str = DEFAULT_CONFIGS) -> int:
    """The command on its own (``experiments/compare.py``): parses ``argv`` and runs :func:`run_compare`."""
    from tr_jax.cli.compare import add_arguments as options

    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options(p, default_configs)
    return run_compare(p.parse_args(argv), prog)


def add_arguments(p: argparse.ArgumentParser, default_configs: str = DEFAULT_CONFIGS) -> None:
    """Deprecated: the options of ``tr-jax compare`` are :func:`tr_jax.cli.compare.add_arguments`."""
    import warnings

    from tr_jax.cli.compare import add_arguments as options

    warnings.warn(
        "tr_jax.compare.add_arguments is deprecated: use tr_jax.cli.compare.add_arguments", DeprecationWarning, 2
    )
    options(p, default_configs)
