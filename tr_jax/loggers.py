"""Experiment trackers fed by the host loop: TensorBoard (``tensorboardX``) and Weights & Biases (offline).

:func:`tr_jax.run.run` and :func:`~tr_jax.run.run_sweep` take ``loggers=[...]``
(``tr-jax train --log tensorboard,wandb``). Between chunks -- never inside the
jitted program -- the loop hands every logger the rows it has just appended
to ``metrics.jsonl`` and ``eval.jsonl``, so a tracker shows exactly what the
files hold:

* ``open(runs, env_steps)``: once before the first chunk; ``runs`` lists the run
  directories trained (one, or one per sweep setting) as :class:`Run`;
  ``env_steps`` is where the call starts (> 0 on resume);
* ``metrics(run, rows)`` / ``evals(run, rows)``: after each chunk / evaluation,
  ``run`` the index into ``runs`` and ``rows`` the dicts written to the files
  (``iteration``, ``seed``, ``env_steps``, then the values; NaN where the file
  has ``null``);
* ``close()``: when the run stops (finished, diverged, interrupted or failed).

Each (run directory, seed) is one tracker run, so that seeds and sweep
settings are compared in the tracker's own UI:

* TensorBoard: ``<run dir>/tensorboard/seed_<i>/`` (or ``<log_dir>/<run
  name>/seed_<i>/``); scalars ``train/<metric>`` (every column of
  ``metrics.jsonl``) and ``eval/<column>`` (``eval.jsonl``), step = ``env_steps``;
  non-finite values (``null`` in the files) are left out. The resolved config,
  the seed and the setting are the run's HParams (and the config as JSON text
  ``config``). A resumed run purges the events after its checkpoint
  (``purge_step``), as the files are cut back.
* W&B: one offline run per seed (``wandb.init(mode="offline")``, files under
  ``<run dir>/wandb/``; upload later with ``wandb sync``), ``group`` = the run
  directory's name (a sweep setting's label), config = the resolved config plus
  ``seed``/``setting``/``sweep``; logged values as for TensorBoard with
  ``env_steps`` as the x axis. A resumed run is a new W&B run holding the rows
  trained after the checkpoint.

Only process 0 of a multi-host run logs. :func:`export_tensorboard` writes the
same event files for a run made without ``--log``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Literal, NamedTuple

from tr_jax import rundir as R

KEYS = ("iteration", "seed", "env_steps")  # the row keys that place a value rather than being one
NAMES = ("tensorboard", "wandb")


class Run(NamedTuple):
    """One run directory a logger writes for: a plain run or one setting of a sweep."""

    path: str  # the run directory
    label: str  # "" for a plain run, the setting's label ("eps_mean=0.01") in a sweep
    config: dict  # the resolved TrainConfig, every field
    num_seeds: int
    sweep: str  # the sweep directory's name, "" for a plain run


class Logger:
    """The calls the host loop makes (see the module docstring); the base class ignores them all."""

    def outputs(self) -> list[str]:
        """The directories it writes besides the run directories (checked before a run creates anything)."""
        return []

    def open(self, runs: Sequence[Run], env_steps: int) -> None:
        """Called once before the first chunk: ``runs`` the run directories trained, ``env_steps`` where the
        call starts (> 0 on resume)."""

    def metrics(self, run: int, rows: Sequence[dict]) -> None:
        """Called after each chunk with the rows appended to ``runs[run]``'s ``metrics.jsonl``."""
        self._write(run, rows, "train")

    def evals(self, run: int, rows: Sequence[dict]) -> None:
        """Called after each evaluation with the rows appended to ``runs[run]``'s ``eval.jsonl``."""
        self._write(run, rows, "eval")

    def _write(self, run: int, rows: Sequence[dict], prefix: str) -> None:
        """Logs ``rows`` of ``runs[run]`` with their values named ``<prefix>/<column>``: each row's values, once
        per row, to the tracker run of its seed (:meth:`_seed_runs`, :meth:`_log`)."""
        seed_runs = self._seed_runs(run)
        if not seed_runs:
            return
        for seed, step, values in _values(rows, prefix):
            self._log(seed_runs[seed], step, values)

    def _seed_runs(self, run: int) -> list:
        """The tracker runs (one per seed) of ``runs[run]``; empty where nothing was opened (the base class, or
        a process other than 0)."""
        return []

    def _log(self, tracker_run, step: int, values: dict) -> None:
        """Logs ``values`` (``{"<prefix>/<column>": float}``) of one row at ``step`` env steps to one tracker run."""

    def close(self) -> None:
        """Called when the run stops (finished, diverged, interrupted or failed)."""


def _values(rows: Sequence[dict], prefix: str):
    """``(seed, env_steps, {prefix/name: float})`` per row, non-finite and non-numeric values left out."""
    for row in rows:
        out = {}
        for name, v in row.items():
            if name in KEYS or v is None or isinstance(v, str):
                continue
            v = float(v)
            if math.isfinite(v):
                out[f"{prefix}/{name}"] = v
        yield int(row["seed"]), int(row["env_steps"]), out


def _hparam(v):
    """A config value as an HParams value: numbers, strings and bools as they are, anything else as its JSON."""
    return v if isinstance(v, (bool, int, float, str)) else json.dumps(v)


def _primary() -> bool:
    from tr_jax.parallel import is_primary

    return is_primary()


def _seed_dirs(base: str, run: Run) -> list:
    return [os.path.join(base, f"seed_{s}") for s in range(run.num_seeds)]


class TensorBoardLogger(Logger):
    """Event files per (run directory, seed); ``log_dir`` None: inside each run directory (``tensorboard/``),
    else ``log_dir/<run directory's name>/`` (a sweep setting: ``log_dir/<sweep>/<label>/``)."""

    def __init__(self, log_dir: str | None = None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise ImportError(
                f"--log tensorboard needs tensorboardX: pip install 'tr_jax[tensorboard]' ({e})"
            ) from None
        self._writer_class = SummaryWriter
        self.log_dir = log_dir
        self.writers: list = []  # [run][seed]

    def outputs(self) -> list[str]:
        """``[log_dir]`` when given (else it writes inside the run directories)."""
        return [self.log_dir] if self.log_dir else []

    def directory(self, run: Run) -> str:
        """Where ``run``'s seeds get their ``seed_<i>`` directories."""
        if self.log_dir is None:
            return os.path.join(run.path, "tensorboard")
        return os.path.join(self.log_dir, *((run.sweep,) if run.sweep else ()), os.path.basename(run.path))

    def open(self, runs: Sequence[Run], env_steps: int) -> None:
        """Opens one event-file writer per (run, seed); a run from the start writes its HParams and config."""
        from tensorboardX.summary import hparams

        if not _primary():
            return
        for run in runs:
            seeds = []
            for s, d in enumerate(_seed_dirs(self.directory(run), run)):
                # purge_step: TensorBoard hides the events of earlier files from this step on (a resumed run
                # writes the rows after its checkpoint again)
                w = self._writer_class(d, purge_step=env_steps + 1 if env_steps > 0 else None, flush_secs=30)
                if env_steps == 0:
                    hp = {k: _hparam(v) for k, v in run.config.items()}
                    hp.update(seed=s, setting=run.label or "-")
                    for summary in hparams(
                        hp, {"eval/deterministic_return_mean": float("nan"), "train/episode_return": float("nan")}
                    ):
                        w.file_writer.add_summary(summary)
                    w.add_text("config", "```\n" + json.dumps(run.config, indent=1) + "\n```", 0)
                seeds.append(w)
            self.writers.append(seeds)

    def _seed_runs(self, run: int) -> list:
        return self.writers[run] if self.writers else []

    def _log(self, tracker_run, step: int, values: dict) -> None:
        for tag, v in values.items():
            tracker_run.add_scalar(tag, v, step)

    def metrics(self, run: int, rows: Sequence[dict]) -> None:
        """Writes ``rows`` as ``train/<metric>`` scalars and flushes the run's event files."""
        super().metrics(run, rows)
        for seeds in self.writers[run : run + 1]:
            for w in seeds:
                w.flush()

    def close(self) -> None:
        """Closes every event-file writer."""
        for seeds in self.writers:
            for w in seeds:
                w.close()
        self.writers = []


class WandbLogger(Logger):
    """One W&B run per (run directory, seed), offline by default (``mode="online"`` uploads as it goes)."""

    def __init__(
        self,
        project: str = "tr_jax",
        dir: str | None = None,
        mode: Literal["online", "offline", "disabled"] = "offline",
        entity: str | None = None,
    ):
        try:
            import wandb
        except ImportError as e:
            raise ImportError(f"--log wandb needs wandb: pip install 'tr_jax[wandb]' ({e})") from None
        self._wandb = wandb
        self.project, self.dir, self.mode, self.entity = project, dir, mode, entity
        self.runs: list = []  # [run][seed]
        # what tr_jax logs, without W&B's system metrics, code and git snapshots (a run per seed: keep each light)
        self._settings = wandb.Settings(
            silent=True,
            x_disable_stats=True,
            x_disable_machine_info=True,
            save_code=False,
            disable_git=True,
            console="off",
        )

    def outputs(self) -> list[str]:
        """``[dir]`` when given (else it writes inside the run directories)."""
        return [self.dir] if self.dir else []

    def open(self, runs: Sequence[Run], env_steps: int) -> None:
        """Starts one offline W&B run per (run, seed), its config the resolved config."""
        if not _primary():
            return
        for run in runs:
            seeds = []
            name = os.path.basename(run.path)
            where = self.dir or run.path
            os.makedirs(where, exist_ok=True)
            for s in range(run.num_seeds):
                r = self._wandb.init(
                    project=self.project,
                    entity=self.entity,
                    dir=where,
                    mode=self.mode,
                    reinit="create_new",
                    name=f"{run.sweep}/{name} seed {s}" if run.sweep else f"{name} seed {s}",
                    group=name,
                    job_type=run.sweep or None,
                    settings=self._settings,
                    config={
                        **run.config,
                        "seed": s,
                        "setting": run.label,
                        "sweep": run.sweep,
                        "run_dir": run.path,
                        "resumed_at_env_steps": env_steps,
                    },
                )
                r.define_metric("env_steps")
                r.define_metric("*", step_metric="env_steps")
                seeds.append(r)
            self.runs.append(seeds)

    def _seed_runs(self, run: int) -> list:
        return self.runs[run] if self.runs else []

    def _log(self, tracker_run, step: int, values: dict) -> None:
        tracker_run.log({"env_steps": step, **values})

    def close(self) -> None:
        """Finishes every W&B run."""
        for seeds in self.runs:
            for r in seeds:
                r.finish()
        self.runs = []


def make_loggers(names: str, log_dir: str | None = None) -> list:
    """``"tensorboard,wandb"`` -> the loggers (``ValueError`` naming an unknown one; ``ImportError`` with the
    pip command when its package is missing). ``log_dir``: TensorBoard's ``log_dir`` and W&B's ``dir``."""
    wanted = [x.strip() for x in names.split(",") if x.strip()]
    unknown = [x for x in wanted if x not in NAMES]
    if unknown or not wanted:
        raise ValueError(
            f"--log {names!r}: unknown tracker {', '.join(map(repr, unknown)) or '(none)'}; "
            f"choose from {', '.join(NAMES)} (comma-separated)"
        )
    out = []
    for name in dict.fromkeys(wanted):
        out.append(TensorBoardLogger(log_dir) if name == "tensorboard" else WandbLogger(dir=log_dir))
    return out


def runs_of(path: str) -> list:
    """The :class:`Run` of a run directory, or one per setting of a sweep directory."""
    path = os.path.abspath(path)
    sweep_file = os.path.join(path, R.SWEEP_FILE)
    if os.path.exists(sweep_file):
        labels = R.read_json(sweep_file)["settings"]
        dirs, sweep = [os.path.join(path, label) for label in labels], os.path.basename(path)
    else:
        labels, dirs, sweep = [""], [path], ""
    out = []
    for label, d in zip(labels, dirs):
        rd = R.RunDir.existing(d)
        out.append(Run(rd.path, label, R.read_json(rd.config), int(rd.info()["num_seeds"]), sweep))
    return out


def export_tensorboard(path: str, log_dir: str | None = None) -> list:
    """Writes TensorBoard event files for a run (or sweep) directory from its ``metrics.jsonl``/``eval.jsonl``,
    the same files ``--log tensorboard`` writes while training. Returns the directories written; ``ValueError``
    if one holds event files already."""
    runs = runs_of(path)
    logger = TensorBoardLogger(log_dir)
    for run in runs:
        d = logger.directory(run)
        if os.path.isdir(d) and any(os.scandir(d)):
            raise ValueError(
                f"{d} exists already (written by --log tensorboard or an earlier export); "
                f"remove it or choose another --out"
            )
    logger.open(runs, 0)
    try:
        for i, run in enumerate(runs):
            rd = R.RunDir(run.path)
            logger.metrics(i, rd.read_metrics())
            logger.evals(i, rd.read_eval())
    finally:
        logger.close()
    return [logger.directory(run) for run in runs]
