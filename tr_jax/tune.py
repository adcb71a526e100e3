"""Hyperparameter search whose batches are sweeps: Optuna's ask-and-tell, each batch of trials ONE program.

:func:`tune` (``tr-jax tune``) asks Optuna for ``batch`` trials at a time and
trains them, x ``seeds`` seeds, as one :func:`tr_jax.run.run_sweep` (settings x
seeds vmapped: one compile per batch, the CPU/GPU filled by the whole batch).
Only the hyperparameters that are data in the training state
(:data:`tr_jax.hyperparams.SWEEPABLE`) can differ within a program, so only
they can be searched. Every trial of every batch trains the same seeds (seed
``i`` gets the key of seed ``i`` of a plain run with the same ``seed``), so
trials differ by their parameters only.

The tune directory holds::

    tune.json         the search: base config, parameters, trials, batch, seeds, objective, sampler, seed
    study.db          the Optuna study (SQLite, Optuna's own storage): every trial, its parameters and value
    batch_000/ ...    one sweep directory per batch; one run directory per trial (trial_0000/ ...)
    trials.csv        one row per trial: number, state, value, parameters, seed scores, failure, run directory
    best_config.json  the best trial's full config (tr-jax train best_config.json trains it)
    history.png, importances.png, slice.png   optuna.visualization.matplotlib's plots

Objective ``eval_return``: the protocol's score (:func:`tr_jax.stats.seed_score`:
the mean deterministic evaluation return over the last 10% of the run) averaged
over the trial's seeds, maximised. A trial with a seed that diverged (the NaN
guard fired: that seed stayed at its last good state while the batch went on)
or without a finite score is a FAILED trial -- never a mean over the seeds
that survived. Each evaluation's mean over seeds is also reported as the
trial's intermediate value (``trial.report``, step = env steps).

Pruning: not done. A pruner stops a trial early to save its compute, but in a
batch the trials are lanes of one vmapped program: a pruned lane costs the
same as a running one until the whole batch ends, so pruning would save
nothing unless every trial of a batch were pruned at once, which Optuna's
pruners (median, successive halving) decide per trial and rarely do.

Interrupts and kills: a stop signal (Ctrl-C, SIGTERM, SIGUSR1) checkpoints the
batch in flight and returns its status; ``tune(resume=...)``
(``tr-jax tune --resume DIR``) tells Optuna nothing twice: the finished trials
stay, a batch that was stopped or killed continues from its checkpoints (a
batch killed before its first checkpoint starts again), then new batches are
asked until ``trials`` trials exist. A resumed search keeps its config,
parameters, seeds, objective, sampler and seed (a different one given is an
error naming the stored value); ``trials`` and ``batch`` may change. The sampler's seed is ``seed`` plus the
number of trials already asked, so a resumed search does not redraw the points
it has.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from tr_jax import rundir as R
from tr_jax.config import TrainConfig, config_from_dict, config_to_dict, validate
from tr_jax.hyperparams import SWEEPABLE

TUNE_FILE = "tune.json"
STUDY_FILE = "study.db"
STUDY_NAME = "tr_jax"
OBJECTIVES = ("eval_return",)
SAMPLERS = ("tpe", "random", "cmaes")
SCALES = ("log", "uniform")
PLOTS = ("history", "importances", "slice")


class Param(NamedTuple):
    """One searched hyperparameter: ``name`` in :data:`SWEEPABLE`, drawn on a ``log`` or ``uniform`` scale."""

    name: str
    scale: str
    low: float
    high: float


class TuneResult(NamedTuple):
    """What :func:`tune` returns.

    status: "finished", or the stopped batch's "interrupted"/"preempted".
    directory: the tune directory.
    trials: one dict per trial (the rows of trials.csv).
    best: the best finished trial's row, None if there is none.
    best_config: the path of best_config.json (None without a best trial).
    plots: the PNG files written.
    """

    status: str
    directory: str
    trials: list
    best: dict | None
    best_config: str | None
    plots: list


def parse_param(text: str, config: TrainConfig | None = None) -> Param:
    """``"eps_mean=log:0.003:0.3"`` -> :class:`Param`; ``ValueError`` (one line) naming what is wrong.
    With ``config``, both bounds must be valid values of it."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    parts = spec.split(":")
    if not sep or len(parts) != 3:
        raise ValueError(
            f"--param {text!r}: expected NAME=SCALE:LOW:HIGH with SCALE log or uniform, e.g. eps_mean=log:0.003:0.3"
        )
    if name not in SWEEPABLE:
        raise ValueError(
            f"--param {name}: cannot be searched: a batch of trials is one compiled program, so only "
            f"the hyperparameters held as data in the training state can differ between its trials "
            f"({', '.join(SWEEPABLE)}); set {name} with --set or in the config file"
        )
    scale = parts[0].strip()
    if scale not in SCALES:
        raise ValueError(f"--param {text!r}: scale {scale!r} is not one of {', '.join(SCALES)}")
    try:
        low, high = float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"--param {text!r}: the bounds must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"--param {text!r}: needs finite bounds with LOW < HIGH")
    if scale == "log" and low <= 0:
        raise ValueError(f"--param {text!r}: a log scale needs LOW > 0")
    if config is not None:
        for v in (low, high):
            try:
                validate(config.replace(**{name: v}), given=(name,))
            except ValueError as e:
                raise ValueError(f"--param {text!r}: {e}") from None
    return Param(name, scale, low, high)


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise ImportError(f"tr-jax tune needs Optuna: pip install 'tr_jax[tune]' ({e})") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _sampler(optuna, name: str, seed: int):
    if name == "tpe":  # constant_liar: the trials asked together (a batch) spread out instead of coinciding
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (experimental-feature warnings)
        return optuna.samplers.CmaEsSampler(seed=seed)


def _distributions(optuna, params: Sequence[Param]) -> dict:
    return {p.name: optuna.distributions.FloatDistribution(p.low, p.high, log=p.scale == "log") for p in params}


def tune(
    config: TrainConfig | None = None,
    params: Sequence[Param] = (),
    trials: int | None = None,
    batch: int | None = None,
    seeds: int | None = None,
    objective: str | None = None,
    sampler: str | None = None,
    seed: int | None = None,
    directory: str | None = None,
    resume: bool = False,
    progress: str = "auto",
    env=None,
    runs_root: str = "runs",
) -> TuneResult:
    """Searches ``params`` of ``config`` for the best ``objective`` with ``trials`` trials, ``batch`` per program.

    Args:
      config: the base config (every trial: this with its sampled ``params``); with ``resume`` None or the
        search's own.
      params: :class:`Param` s (:func:`parse_param`), each a different sweepable field the algorithm reads;
        with ``resume`` empty or the search's own.
      trials: total trials of the search (default 16; on resume: None keeps the saved number, a larger one
        continues further).
      batch: trials trained at once (one :func:`tr_jax.run.run_sweep` each; the last batch may be smaller;
        default 8). On resume None keeps the saved number and another one applies to the batches still to be
        asked (a stopped batch continues with its trials): batching decides which trials share a program and
        what TPE knows when it asks, not what a trial is, so the trials stay comparable.
      seeds: seeds per trial (default 1).
      objective: "eval_return" (see the module docstring; the default).
      sampler: "tpe" (Optuna's TPE with constant liar; the default), "random" or "cmaes".
      seed: the training seed of every trial and the sampler's seed (default 0).
      directory: the tune directory (default ``runs_root/tune-<env>-<algorithm>-<time>``).
      resume: continue ``directory``. Its tune.json fixes the config, parameters, seeds, objective, sampler and
        seed (the trials must stay comparable): one given with another value is a ``ValueError`` naming the
        stored one; ``trials`` and ``batch`` may change.
      progress, env: as for :func:`tr_jax.run.run`.
    Returns:
      :class:`TuneResult`.
    """
    optuna = _optuna()
    if resume:
        if directory is None:
            raise ValueError("resume needs the tune directory")
        directory = os.path.abspath(directory)
        spec, saved, saved_params = saved_search(directory)
        given = {"seeds": seeds, "objective": objective, "sampler": sampler, "seed": seed}
        _check_resume(spec, directory, (saved, saved_params), (config, params), given)
        for name, value in (("trials", trials), ("batch", batch)):
            if value is not None:
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must be an int >= 1, got {value!r}")
                spec[name] = value
        config, params = saved, saved_params
    else:
        spec = _new_spec(
            config,
            params,
            trials,
            8 if batch is None else batch,
            1 if seeds is None else seeds,
            objective or "eval_return",
            sampler or "tpe",
            0 if seed is None else seed,
        )
        directory = os.path.abspath(directory or os.path.join(runs_root, "tune-" + R.default_name(config)))
        if os.path.exists(os.path.join(directory, TUNE_FILE)):
            raise ValueError(f"{directory} holds a search already: continue it with tr-jax tune --resume {directory}")
        if os.path.isdir(directory) and os.listdir(directory):
            raise ValueError(f"{directory} exists and is not empty")
    os.makedirs(directory, exist_ok=True)
    with R.RunLock(directory):
        R.write_json(os.path.join(directory, TUNE_FILE), spec)
        storage = f"sqlite:///{os.path.join(directory, STUDY_FILE)}"
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="maximize", load_if_exists=True)
        study.sampler = _sampler(optuna, spec["sampler"], spec["seed"] + len(study.trials))
        status = _search(_Search(optuna, study, spec, config, params, directory, progress, env))
        return _report(optuna, study, spec, config, directory, status)


def saved_search(directory: str) -> tuple[dict, TrainConfig, list[Param]]:
    """The search in tune directory ``directory``: its tune.json, base config and parameters;
    ``FileNotFoundError`` naming the directory when it holds none."""
    path = os.path.join(directory, TUNE_FILE)
    try:
        spec = R.read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory} is not a tune directory: {TUNE_FILE} is missing") from None
    return spec, config_from_dict(spec["config"], where=path), [Param(*p) for p in spec["params"]]


def _param_text(p: Param) -> str:
    return f"{p.name}={p.scale}:{p.low}:{p.high}"


def _check_resume(spec: dict, directory: str, stored: tuple, new: tuple, given: dict) -> None:
    """``ValueError`` (one line, naming the stored value) for a setting given to a resumed search that differs
    from the search's; None or an equal value is fine. ``stored``, ``new``: ``(config, params)`` of the search
    and as given; ``given``: the seeds, objective, sampler and seed as given, by name."""
    (saved, saved_params), (config, params) = stored, new
    keep = "a resumed search keeps it (only --trials and --batch may change)"
    for flag, value in given.items():
        if value is not None and value != spec[flag]:
            raise ValueError(f"--{flag} {value}: the search in {directory} has --{flag} {spec[flag]}; {keep}")
    if params and sorted(params) != sorted(saved_params):
        raise ValueError(
            f"--param {' '.join(map(_param_text, params))}: the search in {directory} has --param "
            f"{' '.join(map(_param_text, saved_params))}; {keep}"
        )
    if config is not None and config != saved:
        diff = [f for f in config_to_dict(config) if getattr(config, f) != getattr(saved, f)]
        raise ValueError(
            f"config {', '.join(f'{f}={getattr(config, f)!r}' for f in diff)}: the search in {directory} has "
            f"{', '.join(f'{f}={getattr(saved, f)!r}' for f in diff)}; {keep}"
        )


def _new_spec(config, params, trials, batch, seeds, objective, sampler, seed) -> dict:
    if config is None:
        raise ValueError("tune needs a config (or resume=True)")
    validate(config, given=[p.name for p in params])
    if not params:
        raise ValueError("tune needs at least one parameter to search (--param NAME=SCALE:LOW:HIGH)")
    trials = 16 if trials is None else trials
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError(f"a parameter is searched twice: {names}")
    for name, value, least in (("trials", trials, 1), ("batch", batch, 1), ("seeds", seeds, 1)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
    if sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as e:
            raise ImportError(f"--sampler cmaes needs the cmaes package: pip install 'tr_jax[tune]' ({e})") from None
    return {
        "config": config_to_dict(config),
        "params": [list(p) for p in params],
        "trials": trials,
        "batch": batch,
        "seeds": seeds,
        "objective": objective,
        "sampler": sampler,
        "seed": seed,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": R.versions(),
    }


def _batch_dir(directory: str, b: int) -> str:
    return os.path.join(directory, f"batch_{b:03d}")


def _label(number: int) -> str:
    return f"trial_{number:04d}"


class _Search(NamedTuple):
    """A search being run: Optuna, its study, the search's spec (tune.json), base config, parameters and
    directory, and how its sweeps run (progress display, env)."""

    optuna: Any
    study: Any
    spec: dict
    config: TrainConfig | None
    params: Sequence[Param]
    directory: str
    progress: str
    env: Any


def _search(search: _Search) -> str:
    """Runs the unfinished batches, then new ones until ``spec["trials"]`` trials exist; returns the status."""
    optuna, study, spec, params = search.optuna, search.study, search.spec, search.params
    running: dict[int | None, list] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            running.setdefault(t.user_attrs.get("batch"), []).append(t)
    for b in sorted(k for k in running if k is not None):
        trials = [optuna.trial.Trial(study, t._trial_id) for t in sorted(running[b], key=lambda t: t.number)]
        status = _run_batch(search, b, trials, resume=True)
        if status != "finished":
            return status
    for t in running.get(None, []):  # asked, but killed before it was given a batch: never trained
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    dists = _distributions(optuna, params)
    while True:
        batches = [t.user_attrs["batch"] for t in study.get_trials(deepcopy=False) if "batch" in t.user_attrs]
        k = min(spec["batch"], spec["trials"] - len(batches))
        if k <= 0:
            return "finished"
        b = max(batches, default=-1) + 1
        trials = []
        for _ in range(k):
            t = study.ask(dists)
            t.set_user_attr("batch", b)
            trials.append(t)
        status = _run_batch(search, b, trials, resume=False)
        if status != "finished":
            return status


def _resumable(path: str) -> bool:
    """Whether sweep directory ``path`` exists with a checkpoint in every setting."""
    from tr_jax.checkpoint import Checkpoints

    try:
        labels = R.read_json(os.path.join(path, R.SWEEP_FILE))["settings"]
    except (OSError, ValueError, KeyError):
        return False
    for label in labels:
        ckpt = Checkpoints(os.path.join(path, label, "checkpoints"))
        try:
            if not ckpt.steps():
                return False
        finally:
            ckpt.close()
    return True


def _run_batch(search: _Search, b: int, trials: list, resume: bool) -> str:
    """Trains batch ``b`` (its ``trials``, asked and not told) as one sweep and tells Optuna each result."""
    optuna, study, spec, config, params, directory, progress, env = search
    from tr_jax.run import run_sweep

    path = _batch_dir(directory, b)
    labels = [_label(t.number) for t in trials]
    numbers = f"{trials[0].number}-{trials[-1].number}" if len(trials) > 1 else str(trials[0].number)
    print(f"batch {b}: trials {numbers} ({len(trials)} x {spec['seeds']} seed(s)) in {path}", flush=True)
    options = dict(
        progress=progress, on_divergence="continue", env=env, resume_command=f"tr-jax tune --resume {directory}"
    )
    if resume and _resumable(path):
        results = run_sweep(None, run_dir=path, resume=True, **options)
    else:
        sweep = [(p.name, tuple(t.params[p.name] for t in trials)) for p in params]
        results = run_sweep(
            config,
            sweep,
            seed=spec["seed"],
            num_seeds=spec["seeds"],
            run_dir=path,
            overwrite=os.path.exists(path),
            labels=labels,
            **options,
        )
    if any(r.status in ("interrupted", "preempted") for r in results):
        return results[0].status
    for t, r in zip(trials, results):
        _tell(optuna, study, t, r, spec["seeds"])
    return "finished"


def _tell(optuna, study, trial, result, num_seeds: int) -> None:
    from tr_jax.stats import seed_scores

    evals = R.read_jsonl(os.path.join(result.run_dir, "eval.jsonl"))
    for steps in sorted({r["env_steps"] for r in evals}):
        values = [r["deterministic_return_mean"] for r in evals if r["env_steps"] == steps]
        if all(v is not None for v in values):
            trial.report(float(np.mean(values)), steps)
    # every seed trains to the end (on_divergence='continue': a diverged seed is frozen, and fails the trial
    # below), so the budget is where the evaluations end
    budget = max((r["env_steps"] for r in evals), default=0)
    scores = seed_scores(evals, num_seeds, budget)
    trial.set_user_attr("seed_scores", [None if not np.isfinite(s) else float(s) for s in scores])
    trial.set_user_attr("run_dir", result.run_dir)
    bad = [f"seed {s} diverged at iteration {int(i)}" for s, i in enumerate(result.diverged_at) if i >= 0]
    bad += [
        f"seed {s} has no finite score"
        for s in range(num_seeds)
        if not np.isfinite(scores[s]) and result.diverged_at[s] < 0
    ]
    if bad:
        trial.set_user_attr("failure", "; ".join(bad))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, float(np.mean(scores)))


def _rows(optuna, study, params) -> list:
    rows = []
    for t in study.get_trials(deepcopy=False):
        scores = t.user_attrs.get("seed_scores") or []
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                **{p.name: t.params.get(p.name) for p in params},
                "seed_scores": " ".join("nan" if s is None else f"{s:.6g}" for s in scores),
                "batch": t.user_attrs.get("batch"),
                "failure": t.user_attrs.get("failure", ""),
                "run_dir": t.user_attrs.get("run_dir", ""),
            }
        )
    return rows


def _report(optuna, study, spec, config, directory, status) -> TuneResult:
    """Writes trials.csv, best_config.json and the plots; prints the table."""
    params = [Param(*p) for p in spec["params"]]
    rows = _rows(optuna, study, params)
    with open(os.path.join(directory, "trials.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["number"])
        w.writeheader()
        w.writerows(rows)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(done, key=lambda r: r["value"]) if done else None
    best_path = None
    if best is not None:
        best_path = os.path.join(directory, "best_config.json")
        R.write_json(best_path, config_to_dict(config.replace(**{p.name: best[p.name] for p in params})))
    plots = _plots(optuna, study, directory) if done else []
    print(table(rows, params))
    return TuneResult(status, directory, rows, best, best_path, plots)


def table(rows: list, params: Sequence[Param], limit: int = 20) -> str:
    """The trials as a text table, best first (failed trials last), at most ``limit`` rows."""
    order = sorted(rows, key=lambda r: (r["value"] is None, -(r["value"] or 0.0), r["number"]))
    head = ["trial", "state", "value", *(p.name for p in params), "seed scores / failure"]
    lines = [head]
    for r in order[:limit]:
        lines.append(
            [
                str(r["number"]),
                r["state"].lower(),
                "" if r["value"] is None else f"{r['value']:.4g}",
                *(f"{r[p.name]:.4g}" if r[p.name] is not None else "" for p in params),
                r["failure"] or r["seed_scores"],
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(x.ljust(wd) for x, wd in zip(line, widths)).rstrip() for line in lines]
    if len(order) > limit:
        out.append(f"... {len(order) - limit} more in trials.csv")
    return "\n".join(out)


def _plots(optuna, study, directory) -> list:
    """Optuna's matplotlib plots as PNG; a plot Optuna cannot draw yet (e.g. importances from one trial) is
    left out with a note."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    draw: dict[str, Callable[..., Any]] = {
        "history": vis.plot_optimization_history,
        "importances": vis.plot_param_importances,
        "slice": vis.plot_slice,
    }
    written = []
    for name in PLOTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (Optuna's experimental-feature warnings)
            try:
                ax = draw[name](study)
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                print(f"{name}.png not drawn: {e}")
                continue
        fig = (np.asarray(ax).ravel()[0]).figure
        path = os.path.join(directory, f"{name}.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
