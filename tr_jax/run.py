"""The host loop: ``run(config, ...)`` trains in jitted chunks and reports, evaluates and saves between them.

One compiled program per run: a chunk of ``config.chunk_iterations``
iterations, all seeds vmapped; a shorter last chunk runs the same program for
fewer iterations (``Trainer.train_chunk``'s ``active``). After every chunk:

* ``metrics.jsonl`` gets one line per iteration and seed (flushed);
* every ``eval_every`` iterations (at the first chunk end at or after each
  multiple, and at the end) ``evaluate`` runs ``eval_episodes`` full episodes
  per seed, deterministic and sampled, into ``eval.jsonl``;
* every ``checkpoint_every`` iterations (likewise, and at the end) the whole
  TrainState goes to an Orbax checkpoint;
* the progress display and ``progress_fn`` are updated.

Faults: a NaN (the trainer's guard) stops the run at the end of its chunk
(:class:`TrainingDiverged`, naming the iteration; the last good checkpoint
stays). A stop signal finishes the chunk in flight, writes a checkpoint at
the iteration reached, writes ``summary.json`` and returns: Ctrl-C (SIGINT)
with status "interrupted" (a second Ctrl-C exits at once); SIGTERM (a
scheduler's preemption, ``kill``) or SIGUSR1 (SLURM's ``--signal=USR1@T``
warning ahead of the time limit) with status "preempted" (a repeated
SIGTERM/SIGUSR1 is only noted: a scheduler sends SIGKILL after its grace
period anyway, and exiting early would lose the checkpoint). The signal's name
is ``RunResult.signal`` and summary.json's ``signal``. A resumed run
(``resume=True``) restores the newest checkpoint (or ``checkpoint=N``,
removing the newer ones), cuts the ``.jsonl`` files back to it and continues
bit-exactly: the same parameters and metrics as a run that was never stopped.
Resuming a run that is already at its ``total_env_steps`` changes no file; a
budget below the iteration reached is a ``ValueError``. The run (or sweep)
directory is locked for the whole run (:class:`tr_jax.rundir.RunLock`: a
second process fails at once naming the holder); a write that fails (full
disk, read-only) raises :class:`tr_jax.rundir.RunDirWriteError`, one line
saying what is intact.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from tr_jax import parallel as par
from tr_jax import rundir as R
from tr_jax.algorithms.bounds import BOUNDS
from tr_jax.checkpoint import CheckpointError, Checkpoints
from tr_jax.config import RESUME_SAFE, TrainConfig, config_from_dict, config_to_dict, validate
from tr_jax.loggers import Run as LogRun
from tr_jax.programs import NotExportable, ProgramCache
from tr_jax.progress import LogOnly, fmt, fmt_parts, make_progress

if TYPE_CHECKING:  # (at run time tr_jax.train is imported only where a trainer is built)
    from tr_jax.train import TrainState

_FROM_DISK = " (its trace loaded from the program cache)"
_EVAL_STREAM = 0x5EED  # fold_in tag: evaluation keys never touch the training key stream


EXIT_STATUS = {"interrupted": 130, "preempted": 75}
"""Exit status of a command whose run stopped with this status (Ctrl-C: 130; SIGTERM/SIGUSR1: 75, sysexits'
EX_TEMPFAIL, "retry": a batch script requeues on it; 143 stays what a shell reports for a process that SIGTERM
killed before it could save). A checkpoint at the iteration reached was written."""


class TrainingDiverged(RuntimeError):
    """Raised by :func:`run` when the NaN guard fired; ``.result`` holds the run (a list of them for a sweep),
    ``.diverged`` a :class:`Divergence` per setting that diverged."""

    def __init__(self, message, result, diverged=()):
        super().__init__(message)
        self.result = result
        self.diverged = list(diverged)


class RunResult(NamedTuple):
    """What :func:`run` returns.

    state: final TrainState, leaves with a leading ``[num_seeds]`` dim.
    metrics: dict of numpy arrays ``[num_seeds, iterations run by this call]``; empty when the call had
      nothing to do (a finished run resumed).
    evals: the rows written to ``eval.jsonl`` by this call.
    status: "finished", "interrupted" (SIGINT), "preempted" (SIGTERM or SIGUSR1) or "diverged".
    iteration: iterations done (the checkpoint step at the end).
    steps_per_second: env steps per second of training (compile excluded).
    compile_seconds: compiling the chunk program and the evaluation (the evaluation's compilation runs in a
      background thread while the first chunks train; only the wait for it is excluded from the speeds).
    run_seconds: wall time of the training chunks.
    loop_seconds: wall time of the whole loop, waiting for compilation excluded (chunks, files,
      progress, evaluations, checkpoints).
    eval_checkpoint_seconds: the part of ``loop_seconds`` spent evaluating and checkpointing.
    diverged_at: ``[num_seeds]`` iteration where the NaN guard fired, -1 where fine.
    run_dir: the run directory.
    signal: the name of the signal that stopped the run ("SIGINT", "SIGTERM", "SIGUSR1"), else None.
    """

    state: Any
    metrics: dict
    evals: list
    status: str
    iteration: int
    steps_per_second: float
    compile_seconds: float
    run_seconds: float
    loop_seconds: float
    eval_checkpoint_seconds: float
    diverged_at: np.ndarray
    run_dir: str
    signal: str | None = None


def resume_config(saved: TrainConfig, given: TrainConfig | None) -> tuple[TrainConfig, dict]:
    """The config a resumed run continues with, and the (safe) fields that changed.

    ``given`` None continues with ``saved``. Otherwise every field that differs
    must be in :data:`tr_jax.config.RESUME_SAFE`; if not, ``ValueError`` lists
    each differing field with its saved and given value.
    """
    if given is None:
        return saved, {}
    a, b = config_to_dict(saved), config_to_dict(given)
    changed = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    unsafe = {k: v for k, v in changed.items() if k not in RESUME_SAFE}
    if unsafe:
        lines = "; ".join(f"{k}: saved {v[0]!r}, given {v[1]!r}" for k, v in unsafe.items())
        raise ValueError(f"cannot resume with a different config ({lines}); only {list(RESUME_SAFE)} may change")
    return given, changed


class _Interrupts:
    """Stop requests by signal: SIGINT (Ctrl-C), SIGTERM and SIGUSR1 (where the platform has it).

    The first one sets ``signal`` (its name); the loop then finishes the chunk
    in flight, checkpoints and stops. After it SIGINT's default handler is back,
    so a second Ctrl-C exits at once; a repeated SIGTERM/SIGUSR1 is only noted
    (SLURM sends SIGTERM after its USR1 warning, and to the batch shell, which
    may forward it: the checkpoint must still be written; SIGKILL follows the
    grace period anyway). The handler only records: ``poll()`` (called while
    waiting for a chunk, so promptly) logs what arrived, outside the handler.
    On leaving, the handlers from before are restored, except after
    :func:`hold_exit_status` in a run stopped by a signal (see there).
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGUSR1")
    hold = False  # set by hold_exit_status(): a stopped run leaves SIGTERM/SIGUSR1 ignored

    def __init__(self, log: Callable[[str], None]):
        self.signal: str | None = None
        self._log = log
        self._previous: dict[signal.Signals, Any] = {}  # signal -> the handler it had before __enter__
        self._arrived: list[str] = []  # names of the signals in order
        self._logged = 0  # how many of them were logged

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def code(self) -> int:
        """0 for no signal, else 1 + the signal's index in ``NAMES`` (shared between processes)."""
        return 0 if self.signal is None else 1 + self.NAMES.index(self.signal)

    def share(self, code: int) -> None:
        """Takes the signal of another process (``code`` as :attr:`code`) if this one got none."""
        if self.signal is None and code > 0:
            self.signal = self.NAMES[code - 1]

    @property
    def status(self) -> str:
        """The run's status once stopped: "interrupted" (Ctrl-C) or "preempted" (SIGTERM, SIGUSR1)."""
        return "interrupted" if self.signal == "SIGINT" else "preempted"

    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        self._arrived.append(name)
        if self.signal is None:
            self.signal = name
            signal.signal(signal.SIGINT, signal.SIG_DFL)

    def poll(self):
        """Logs the signals that arrived since the last call."""
        while self._logged < len(self._arrived):  # (the handler only appends)
            name, first = self._arrived[self._logged], self._logged == 0
            self._logged += 1
            if not first:
                self._log(f"{name}: already stopping ({self.signal}); still finishing the chunk and the checkpoint")
            else:
                self._log(
                    f"{name}: finishing this chunk and writing a checkpoint"
                    + (" (Ctrl-C again to exit at once)" if name == "SIGINT" else "")
                )

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                if hasattr(signal, name):
                    sig = getattr(signal, name)
                    self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, exc_type, *exc):
        # a stop signal and no error: the checkpoint is written and the status decided, nothing may change it
        settled = self.hold and self.signal is not None and exc_type is None
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if settled and sig != signal.SIGINT else previous)


def hold_exit_status() -> None:
    """For a process that ends when its run stops (``tr-jax train``, ``tune``, ``compare``): once a run stopped
    by a signal has written its checkpoint and decided its status (exit status 75 or 130), SIGTERM and SIGUSR1
    are ignored until the process exits, instead of killing it with 143 ("killed before saving") while JAX and
    Orbax tear down (a second or two), as a scheduler or a batch shell forwarding its signal may send them
    again. Without it (a call from Python) the handlers from before the run are restored."""
    _Interrupts.hold = True


def _wait(tree, interrupts: _Interrupts):
    """Blocks until ``tree`` is computed, polling so that a signal is handled (and logged) promptly."""
    leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "is_ready")]  # (typed PRNG keys have none)
    while not all(x.is_ready() for x in leaves):
        interrupts.poll()
        time.sleep(0.02)
    interrupts.poll()
    return jax.block_until_ready(tree)


class _MujocoLog:
    """While active, MuJoCo's warnings are kept (and written to ``path`` once it is set: the run
    directory's mujoco.log) instead of going to ./MUJOCO_LOG.TXT in the working directory."""

    def __init__(self):
        self.path, self._pending, self._previous, self._mujoco = None, [], None, None

    def _warn(self, message):
        self._pending.append(str(message))
        self.flush()

    def flush(self):
        if self.path is not None and self._pending:
            with open(self.path, "a") as f:
                f.writelines(m + "\n" for m in self._pending)
            self._pending.clear()

    def __enter__(self):
        try:
            import mujoco
        except ImportError:
            return self
        self._mujoco, self._previous = mujoco, mujoco.get_mju_user_warning()
        mujoco.set_mju_user_warning(self._warn)
        return self

    def __exit__(self, *exc):
        if self._mujoco is not None:
            self._mujoco.set_mju_user_warning(self._previous)
        self.flush()


def _due(every: int, before: int, after: int, last: bool) -> bool:
    """True if a multiple of ``every`` lies in (before, after], or at the end of the run."""
    return last or (every > 0 and after // every > before // every)


def _check_budget(groups, it: int, steps_per_it: int) -> bool:
    """On resume at iteration ``it``: True if every setting is at its budget already (nothing to do).

    A budget below ``it`` is a ``ValueError`` (a run cannot go back; this is
    checked before any file of the run directory is touched).
    """
    for g in groups:
        if g.config.num_iterations < it:
            raise ValueError(
                f"{g.rd.path} is at iteration {it} ({it * steps_per_it:,} env steps): total_env_steps="
                f"{g.config.total_env_steps} ({g.config.num_iterations} iterations) is below that; a resumed run "
                f"can only continue (total_env_steps >= {it * steps_per_it})"
            )
    return all(g.config.num_iterations == it for g in groups)


def _bound_fields(config: TrainConfig, m: dict, eps: dict) -> dict:
    """Trust-region usage of the latest iteration (mean over runs, each against its own bound), as display strings.

    ``m``: metric -> ``[runs]``; ``eps``: hyperparameter -> ``[runs]``. The bounds are :data:`BOUNDS`'s.
    """
    bounds = BOUNDS[config.algorithm].optimised
    used = [_mean(m[b.metric] / eps[b.hyperparameter]) for b in bounds.values()]
    if len(bounds) == 1:  # TRPO: kl/max_kl
        ((name, b),) = bounds.items()
        return {f"{name}/{b.hyperparameter}": fmt(used[0], ".2f")}
    if bounds:  # TRPL: mean/cov part, each in % of its bound
        parts = fmt_parts([100 * u for u in used], ".0f", "%")
        return {"/".join(bounds) + " part": f"{parts} of bound" if parts else ""}
    return {}


def _mean(x):
    x = np.asarray(x, np.float64)
    return float(np.nanmean(x)) if np.any(np.isfinite(x)) else float("nan")


class _Group(NamedTuple):
    """One setting of a run: its config, run directory and (on resume) the changed safe fields."""

    label: str  # "" for a plain run, "key=value,..." for a sweep setting
    config: TrainConfig
    rd: R.RunDir
    changed: dict


SWEEP_FILE = R.SWEEP_FILE


def run(
    config: TrainConfig | None = None,
    seed: int = 0,
    num_seeds: int = 1,
    run_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: str = "auto",
    progress_fn: Callable[[int, dict], None] | None = None,
    on_divergence: str = "raise",
    runs_root: str = "runs",
    env=None,
    checkpoint: int | None = None,
    loggers: Sequence = (),
) -> RunResult:
    """Trains ``config`` for ``num_seeds`` seeds (vmapped) with progress, metrics files, evaluation and checkpoints.

    Args:
      config: the training config; with ``resume`` it may be None (continue as
        saved) or differ from the saved one only in ``RESUME_SAFE`` fields.
      seed: int; the seeds' keys are ``jax.random.split(jax.random.key(seed), num_seeds)``.
      num_seeds: seeds trained at once.
      run_dir: the run directory (default ``runs_root/<env>-<algo>-<time>``).
      resume: continue ``run_dir`` from its newest checkpoint (seed and
        num_seeds come from the run directory).
      overwrite: start ``run_dir`` again even if it exists (only a tr_jax run
        directory holding nothing else is emptied; anything else is an error).
      progress: "auto" (a bar on a terminal, lines otherwise), "bar", "lines", "none".
      progress_fn: ``progress_fn(env_steps, metrics)`` after every chunk, where
        ``metrics`` maps names to the chunk's ``[num_seeds, n]`` arrays and, after
        an evaluation, ``eval/<name>`` to ``[num_seeds]`` means.
      on_divergence: "raise" (:class:`TrainingDiverged`), "return", or "continue" (train to the end: a
        diverged seed stays at its last good state, the others go on; status "diverged"; tr-jax tune's batches).
      env: an env object with the Brax ``Env`` API to train on instead of
        ``config.env_name`` (see :func:`tr_jax.train.make_trainer`); the run
        directory records only the config, so pass the same env again to
        resume (and to :func:`load_checkpoint`).
      checkpoint: with ``resume``, the iteration of the checkpoint to continue
        from instead of the newest (e.g. when the newest is broken); the newer
        checkpoints and rows are removed.
      loggers: :class:`tr_jax.loggers.Logger` objects (TensorBoard, W&B) that get the rows of
        ``metrics.jsonl``/``eval.jsonl`` as they are written, between chunks; closed when the run stops.
    Returns:
      :class:`RunResult`.
    """
    _check_options(on_divergence, num_seeds, resume, run_dir, config, checkpoint)
    if resume:
        assert run_dir is not None  # _check_options: resume needs run_dir
        rd = R.RunDir.existing(run_dir)
        if os.path.exists(os.path.join(rd.path, SWEEP_FILE)):
            raise ValueError(f"{rd.path} is a sweep directory: resume it with run_sweep (tr-jax train --resume does)")
        saved = config_from_dict(R.read_json(rd.config), where=rd.config)
        config, changed = resume_config(saved, config)
        info = rd.info()
        seed, num_seeds = int(info["seed"]), int(info["num_seeds"])

        def groups(hold):
            R.check_writable([("run directory", rd.path)])
            hold(rd.path)
            return [_Group("", config, rd, changed)]
    else:
        assert config is not None  # _check_options: a new run needs a config

        def groups(hold):
            path = run_dir or os.path.join(runs_root, R.default_name(config))
            R.check_writable([("run directory", path)])
            rd = R.RunDir.create(path, overwrite, hold)
            R.write_json(rd.config, config_to_dict(config))
            rd.write_info(seed, num_seeds)
            return [_Group("", config, rd, {})]

    options = LoopOptions(seed, num_seeds, resume, progress_fn, on_divergence, checkpoint, tuple(loggers))
    results = _run_groups(config, groups, options, progress, env)
    return results[0]


def run_sweep(
    config: TrainConfig | None,
    sweep: Sequence[tuple] = (),
    seed: int = 0,
    num_seeds: int = 1,
    run_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: str = "auto",
    progress_fn: Callable[[int, dict], None] | None = None,
    on_divergence: str = "raise",
    runs_root: str = "runs",
    env=None,
    checkpoint: int | None = None,
    loggers: Sequence = (),
    labels: Sequence[str] | None = None,
    resume_command: str | None = None,
) -> list:
    """Trains every setting of a hyperparameter grid x ``num_seeds`` seeds as ONE compiled program.

    ``sweep``: ``[(key, values), ...]`` over :data:`tr_jax.hyperparams.SWEEPABLE`
    keys (e.g. ``[("eps_cov", (1e-4, 1e-3)), ("eps_mean", (0.01, 0.03))]``);
    the grid's settings x seeds are one vmapped batch (seed ``i`` of every
    setting uses the same key as seed ``i`` of a plain :func:`run`). ``run_dir``
    (default ``runs_root/<env>-<algo>-sweep-<time>``) holds ``sweep.json`` and
    one complete run directory per setting, named by its label
    (``eps_cov=0.0001,eps_mean=0.01``): ``tr-jax eval/plot/render`` work on each,
    and ``tr-jax plot DIR/*`` draws one curve per setting. ``resume=True``
    continues all settings from their newest checkpoints (``config`` None or
    changed only in ``RESUME_SAFE`` fields, applied to every setting; ``checkpoint``
    as for :func:`run`). The sweep directory and every setting's are locked.
    ``progress_fn`` gets ``[settings * num_seeds, n]`` arrays, setting-major;
    ``env`` and ``loggers`` as for :func:`run`. ``labels`` given: not a grid but one setting per label, setting
    ``i`` taking value ``i`` of every key (:func:`tr_jax.hyperparams.sweep_configs`). ``resume_command``: what
    a stop signal's message says to continue with (default ``tr-jax train --resume DIR``; tr-jax tune's batches
    name ``tr-jax tune --resume``, since a batch resumed on its own would leave its search behind).

    Returns one :class:`RunResult` per setting, in grid order.
    """
    from tr_jax.hyperparams import sweep_configs

    _check_options(on_divergence, num_seeds, resume, run_dir, config, checkpoint)
    if resume:
        assert run_dir is not None  # _check_options: resume needs run_dir
        path = os.path.abspath(run_dir)
        try:
            meta = R.read_json(os.path.join(path, SWEEP_FILE))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is not a sweep directory: {SWEEP_FILE} is missing") from None
        seed, num_seeds = int(meta["seed"]), int(meta["num_seeds"])
        swept = [k for k, _ in meta["sweep"]]
        groups_now = []
        for label in meta["settings"]:
            rd = R.RunDir.existing(os.path.join(path, label))
            saved = config_from_dict(R.read_json(rd.config), where=rd.config)
            # ``config`` stands for every setting: its swept fields take each setting's value, any other
            # difference must be resume-safe (resume_config names the rest)
            given = None if config is None else config.replace(**{k: getattr(saved, k) for k in swept})
            c, changed = resume_config(saved, given)
            groups_now.append(_Group(label, c, rd, changed))
        base = groups_now[0].config

        def groups(hold):
            R.check_writable([("sweep directory", path)])
            for d in (path, *(g.rd.path for g in groups_now)):
                hold(d)
            return groups_now
    else:
        if not sweep:
            raise ValueError("run_sweep needs at least one (key, values) to sweep; use run for a single setting")
        assert config is not None  # _check_options: a new sweep needs a config
        settings = sweep_configs(config, sweep, labels)
        base = settings[0][1]

        def groups(hold):
            name = R.default_name(config).rsplit("-", 2)
            path = run_dir or os.path.join(runs_root, f"{name[0]}-sweep-{name[1]}-{name[2]}")
            R.check_writable([("sweep directory", path)])
            top = R.RunDir.create(path, overwrite, hold)
            R.write_json(
                os.path.join(top.path, SWEEP_FILE),
                {
                    "sweep": [[k, list(v)] for k, v in sweep],
                    "settings": [label for label, _ in settings],
                    "seed": seed,
                    "num_seeds": num_seeds,
                    "versions": R.versions(),
                },
            )
            out = []
            for label, c in settings:
                rd = R.RunDir.create(os.path.join(top.path, label), hold=hold)
                R.write_json(rd.config, config_to_dict(c))
                rd.write_info(seed, num_seeds, {"label": label, "sweep": os.path.basename(top.path)})
                out.append(_Group(label, c, rd, {}))
            return out

    options = LoopOptions(seed, num_seeds, resume, progress_fn, on_divergence, checkpoint, tuple(loggers))
    return _run_groups(base, groups, options._replace(resume_command=resume_command), progress, env)


def _check_options(on_divergence, num_seeds, resume, run_dir, config, checkpoint):
    if on_divergence not in ("raise", "return", "continue"):
        raise ValueError(f"on_divergence must be 'raise', 'return' or 'continue', got {on_divergence!r}")
    if resume and run_dir is None:
        raise ValueError("resume needs the run directory to continue")
    if not resume and config is None:
        raise ValueError("run needs a config (or resume=True)")
    if not isinstance(num_seeds, int) or num_seeds < 1:
        raise ValueError(f"num_seeds must be a positive int, got {num_seeds!r}")
    if checkpoint is not None and not resume:
        raise ValueError("checkpoint (--checkpoint) chooses where a resumed run continues: it needs resume")


def _run_groups(config, make_groups, options: LoopOptions, progress: str, env) -> list:
    """Builds the trainer (checking the env before any file is written), checks that the loggers' directories
    can be written, then makes the groups' directories (``make_groups(hold)`` checks that it can write them,
    then locks each by calling ``hold(directory)`` before it writes or cuts anything there), then loops with
    ``options`` (their ``programs`` set here); the locks are released at the end. A failed write becomes a
    one-line :class:`R.RunDirWriteError`; a new run that fails before it trained anything removes the
    directories it made."""
    validate(config)
    from tr_jax import compile_cache
    from tr_jax.train import make_trainer

    compile_dir = compile_cache.ensure()  # before anything compiles (on by default; docs/startup.md)
    groups = []
    try:
        with _MujocoLog() as mujoco_log, contextlib.ExitStack() as held:
            trainer = make_trainer(config, env)  # checks the env before any file is written
            programs = ProgramCache.for_run(compile_dir, config, trainer.env.env, env_given=env is not None)
            locks = []
            with par.fail_together("creating the run directory"):  # only process 0 writes: it alone can fail
                if par.is_primary():
                    R.check_writable([("log directory", d) for logger in options.loggers for d in logger.outputs()])
                groups = make_groups(lambda path: locks.append(held.enter_context(R.RunLock(path))))
            mujoco_log.path = groups[0].rd.mujoco_log
            mujoco_log.flush()
            display = (  # multi-host: progress from process 0 only; the others log their events, prefixed
                make_progress(progress) if par.is_primary() else LogOnly(f"[process {jax.process_index()}] ")
            )
            for note in (*(lock.note for lock in locks), compile_cache.note()):
                if note:
                    display.log(note)
            with _Interrupts(display.log) as interrupts:
                try:
                    return _Loop(trainer, groups, options._replace(programs=programs), display, interrupts).run()
                finally:
                    display.close()
                    for logger in options.loggers:
                        logger.close()
    except BaseException as e:
        if not options.resume and groups and par.is_primary() and all(g.rd.untrained() for g in groups):
            # (config.json, run.json and an empty checkpoints/ would make the rerun ask for --resume, and
            # --resume find no checkpoint)
            shutil.rmtree(_resume_dir(groups), ignore_errors=True)
        if not isinstance(e, OSError) or isinstance(e, R.RunDirWriteError):
            raise
        failure = (
            R.write_failure(e, groups[0].rd.checkpoints, _resume_dir(groups))
            if groups
            else R.write_failure(e, None, None)
        )
        if failure is None:
            raise
        raise R.RunDirWriteError(failure, e) from e


def _resume_dir(groups) -> str:
    """The directory ``--resume`` takes: the run directory, or a sweep's."""
    return groups[0].rd.path if len(groups) == 1 and not groups[0].label else os.path.dirname(groups[0].rd.path)


def _slice(tree, g: int, n: int):
    return jax.tree.map(lambda x: x[g * n : (g + 1) * n], tree)


class LoopOptions(NamedTuple):
    """What :func:`run`/:func:`run_sweep` ask of the host loop besides the trainer and the run directories."""

    seed: int
    num_seeds: int
    resume: bool
    progress_fn: Callable[[int, dict], None] | None
    on_divergence: str
    checkpoint: int | None
    loggers: tuple = ()  # tr_jax.loggers.Logger objects fed the rows written (closed by the caller)
    programs: ProgramCache | None = None  # traced programs kept on disk (tr_jax/programs.py); None: trace here
    resume_command: str | None = None  # what a stop's message says to continue with; None: tr-jax train --resume


class Divergence(NamedTuple):
    """One setting in which the NaN guard fired: its label ("" for a plain run), ``(seed, iteration)`` of each
    diverged seed, and the newest checkpoint kept (its path; None if none had been written)."""

    label: str
    seeds: list
    kept: str | None


def divergence_message(diverged: Sequence[Divergence], sweep: bool, frozen: bool = False) -> str:
    """The one message :class:`TrainingDiverged` carries (and the log shows) for the settings in ``diverged``
    (``sweep``: of a sweep, each named by its label; ``frozen``: on_divergence="continue", the diverged seeds
    stayed at their last good state while the others trained on)."""
    where = [", ".join(f"seed {s}: iteration {i}" for s, i in d.seeds) for d in diverged]
    where = [f"{d.label}: {w}" if sweep else w for d, w in zip(diverged, where)]
    kept = [
        f"the last good checkpoint is {d.kept}" if d.kept is not None else "no checkpoint had been written yet"
        for d in diverged
    ]
    first = min(i for d in diverged for _, i in d.seeds)
    head = f"training diverged at iteration {first} ({'; '.join(where)}): losses or parameters became non-finite; " + (
        "the seed(s) stayed at their last good state. " if frozen else "stopped at the end of the chunk. "
    )
    return head + (
        kept[0][0].upper() + kept[0][1:] + "."
        if not sweep
        else "; ".join(f"{d.label}: {k}" for d, k in zip(diverged, kept)) + "."
    )


class _Loop:
    """The host loop of one run or sweep (``S`` settings x ``n`` seeds, one vmapped batch of runs).

    :meth:`run` builds or restores the state (:meth:`restore`), then repeats :meth:`train_chunk` (compiling the
    chunk program once, :meth:`program`) and :meth:`after_chunk` (metrics rows, evaluation, checkpoint,
    progress and ``progress_fn``, stop requests) until the budget, a divergence or a stop signal, then
    :meth:`finish` writes summary.json and builds the results.
    """

    def __init__(self, trainer, groups: list, options: LoopOptions, display, interrupts: _Interrupts):
        from tr_jax.hyperparams import SWEEPABLE, Hyperparams

        self.trainer, self.groups, self.options, self.display, self.interrupts = (
            trainer,
            groups,
            options,
            display,
            interrupts,
        )
        config = self.config = trainer.config
        S, n = self.S, self.n = len(groups), options.num_seeds
        self.total_its = max(g.config.num_iterations for g in groups)
        self.steps_per_it = config.batch_size * config.action_repeat
        seed_keys = jax.random.split(jax.random.key(options.seed), n)
        self.keys = jax.random.wrap_key_data(jnp.asarray(np.tile(np.asarray(jax.random.key_data(seed_keys)), (S, 1))))
        dtype = np.dtype(config.dtype)
        # numpy on the host (self.eps reads the exact values); Trainer.init converts every field with jnp.asarray
        self.hparams = Hyperparams(
            *(
                cast(jax.Array, np.repeat(np.asarray([getattr(g.config, f) for g in groups], dtype), n))
                for f in SWEEPABLE
            )
        )
        self.shardings = trainer.state_shardings(batched=True)
        self.init_fn = jax.jit(trainer.init_runs, out_shardings=self.shardings)
        self.chunk_fn = jax.jit(jax.vmap(trainer.train_chunk, in_axes=(0, None, None)), static_argnums=1)
        self.eval_fn = jax.jit(jax.vmap(trainer.evaluate, in_axes=(0, 0, None)), static_argnums=2)
        self.eval_root = jax.random.fold_in(jax.random.key(options.seed), _EVAL_STREAM)
        self.ckpts = [Checkpoints(g.rd.checkpoints, keep=config.keep_checkpoints) for g in groups]
        self.eps = {
            b.hyperparameter: np.asarray(getattr(self.hparams, b.hyperparameter), np.float64)
            for b in BOUNDS[config.algorithm].optimised.values()
        }
        self.chunk_len = min(config.chunk_iterations, self.total_its)  # one program; a shorter last chunk runs
        # fewer of its loops
        self.state: TrainState  # the batched state, leaves [S * n, ...]: set by run() before anything reads it
        self.it, self.saved = 0, 0
        # compile_s: every program's compile time (the evaluation's in the background included); waited_s: the
        # part the loop waited for (excluded from speeds); side_s: evaluation and checkpoints (eval compile excluded)
        self.compiled: dict[str, Any] = {}  # "chunk": the compiled program; "eval": its Future, then the program
        self.compile_s, self.waited_s, self.side_s, self.run_s = 0.0, 0.0, 0.0, 0.0
        self.background = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tr_jax-compile")
        self.chunks: list[dict[str, np.ndarray]] = []  # every chunk's metrics, name -> [S * n, iterations]
        self.evals: list[list[dict]] = [[] for _ in groups]  # each setting's eval.jsonl rows
        self.latest_eval: list[dict] | None = None  # the newest evaluation's rows, all settings
        self.status = "finished"

    def where(self, g: _Group) -> str:
        return f"{g.rd.path}" if not g.label else f"{g.rd.path} ({g.label})"

    def run(self) -> list:
        self.state = self.init_fn(self.keys, self.hparams)
        if self.options.resume:
            done = self.restore()
            if done is not None:
                return done
        else:
            self.display.log(
                f"run directory {self.groups[0].rd.path}"
                if self.S == 1
                else f"sweep of {self.S} settings x {self.n} seed(s) in {os.path.dirname(self.groups[0].rd.path)}"
            )
        for logger in self.options.loggers:
            logger.open(
                [
                    LogRun(
                        g.rd.path,
                        g.label,
                        config_to_dict(g.config),
                        self.n,
                        os.path.basename(os.path.dirname(g.rd.path)) if g.label else "",
                    )
                    for g in self.groups
                ],
                self.it * self.steps_per_it,
            )
        self.display.start(self.total_its * self.steps_per_it, self.it * self.steps_per_it)
        self.saved, self.it_start, self.wall_start = self.it, self.it, time.perf_counter()
        while self.it < self.total_its:
            before = self.it
            metrics = self.train_chunk()
            if self.after_chunk(before, metrics):
                break
        return self.finish()

    def restore(self) -> list | None:
        """Restores the checkpoint to continue from and cuts the files back to it; returns the results when the run
        is at its budget already (nothing is touched then), else None."""
        groups, ckpts, n, S, display = self.groups, self.ckpts, self.n, self.S, self.display
        parts, its = [], set()
        for gi, ckpt in enumerate(ckpts):
            try:
                part, meta = ckpt.restore(self.options.checkpoint, _slice(self.state, gi, n))
            except CheckpointError as e:
                if not e.older:
                    raise
                raise CheckpointError(
                    f"{e}: resume from one with tr-jax train --resume {_resume_dir(groups)} "
                    f"--checkpoint {e.older[-1]} (the iterations after it are trained again)",
                    e.older,
                ) from e
            parts.append(part)
            its.add(int(meta["iteration"]))
        if len(its) != 1:
            raise CheckpointError(f"the settings' newest checkpoints are at different iterations {sorted(its)}")
        it = self.it = its.pop()
        self.state = par.reshard(
            jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts) if S > 1 else parts[0], self.shardings
        )
        steps_per_it = self.steps_per_it
        try:
            done = _check_budget(groups, it, steps_per_it)
        except ValueError:
            for ckpt in ckpts:
                ckpt.close()
            raise
        if done:  # nothing to do: no file is touched
            display.log(
                f"run {_resume_dir(groups)} is already finished at iteration {it} "
                f"({it * steps_per_it:,} env steps); nothing to do"
                + ("; the changed settings were not saved" if groups[0].changed else "")
            )
            for ckpt in ckpts:
                ckpt.close()
            diverged_at = par.to_host(self.state.diverged_at)
            return [
                RunResult(
                    state=_slice(self.state, gi, n),
                    metrics={},
                    evals=[],
                    status="finished",
                    iteration=it,
                    steps_per_second=float("nan"),
                    compile_seconds=0.0,
                    run_seconds=0.0,
                    loop_seconds=0.0,
                    eval_checkpoint_seconds=0.0,
                    diverged_at=diverged_at[gi * n : (gi + 1) * n],
                    run_dir=g.rd.path,
                )
                for gi, g in enumerate(groups)
            ]
        for g, ckpt in zip(groups, ckpts):  # newer than the one chosen: they would collide with the new saves
            newer = [s for s in ckpt.steps() if s > it]
            for s in newer:
                ckpt.delete(s)
            if newer:
                display.log(
                    f"removed the checkpoints newer than {it} from {self.where(g)}: {', '.join(map(str, newer))}"
                )
        for g in groups:
            notes = R.cut_jsonl(g.rd.metrics, it, n, every_iteration=True) + R.cut_jsonl(g.rd.eval, it, n, False)
            if g.changed:  # only once the checkpoint is known to restore
                R.write_json(g.rd.config, config_to_dict(g.config))
            display.log(
                f"resumed {self.where(g)} at iteration {it} ({it * steps_per_it:,} env steps)"
                + "".join(f"; {x}" for x in notes if not x.startswith("warning"))
                + (
                    f"; changed {', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in g.changed.items())}"
                    if g.changed
                    else ""
                )
            )
            for x in notes:
                if x.startswith("warning"):
                    display.log(x)
        return None

    def program(self):
        """The chunk program (compiled on the first call, which then starts the evaluation's compilation in the
        background)."""
        if "chunk" not in self.compiled:
            runs, devices = self.S * self.n, self.trainer.mesh.devices.size
            self.display.status(f"compiling a {self.chunk_len}-iteration chunk ({runs} run(s), {devices} device(s))...")
            t0 = time.perf_counter()
            like = (self.state, np.int32(self.chunk_len))
            self.compiled["chunk"], loaded = self._compile(
                "train_chunk",
                lambda state, active: self.chunk_fn(state, self.chunk_len, active),
                like,
                (self.chunk_len,),
                lambda: self.chunk_fn.lower(like[0], self.chunk_len, like[1]).compile(),
                returns_state=True,
            )
            seconds = time.perf_counter() - t0
            self.compile_s += seconds
            self.waited_s += seconds
            self.display.log(
                f"compiled a {self.chunk_len}-iteration chunk ({runs} run(s) on {devices} device(s)) in "
                f"{seconds:.1f} s{_FROM_DISK if loaded else ''}; compiling the evaluation in the background"
            )
            self.compiled["eval"] = self.background.submit(self._compile_eval, self.state, self.eval_keys(0))
        return self.compiled["chunk"]

    def _compile(self, name: str, fn, args: tuple, static: tuple, plain, returns_state: bool = False):
        """``(program, loaded)``: ``fn(*args)`` (static values bound) compiled through the program cache when
        the run has one (``loaded``: its trace came from disk), else ``plain()``, the jitted function's own
        ``lower(...).compile()``."""
        if self.options.programs is not None:
            try:
                return self.options.programs.compile(name, fn, args, static, returns_state, self.display.log)
            except NotExportable as e:
                self.display.log(f"warning: {e}; compiling it without the program cache")
        return plain(), False

    def _compile_eval(self, like, keys_like):
        """(in the background thread: tracing holds the GIL, XLA's compilation does not)"""
        t0 = time.perf_counter()
        episodes = self.config.eval_episodes
        program, loaded = self._compile(
            "evaluate",
            lambda state, keys: self.eval_fn(state, keys, episodes),
            (like, keys_like),
            (episodes,),
            lambda: self.eval_fn.lower(like, keys_like, episodes).compile(),
        )
        return program, loaded, time.perf_counter() - t0

    def eval_program(self):
        """The evaluation program, waiting for its compilation if it is still running."""
        pending = self.compiled["eval"]
        if isinstance(pending, concurrent.futures.Future):
            if not pending.done():
                self.display.status("waiting for the evaluation program to compile (in the background)...")
            t0 = time.perf_counter()
            self.compiled["eval"], loaded, seconds = pending.result()
            self.waited_s += time.perf_counter() - t0
            self.compile_s += seconds
            self.display.log(
                f"compiled the evaluation program in {seconds:.1f} s (in the background; waited "
                f"{time.perf_counter() - t0:.1f} s for it){_FROM_DISK if loaded else ''}"
            )
        return self.compiled["eval"]

    def eval_keys(self, it: int):
        keys = jax.random.split(jax.random.fold_in(self.eval_root, it), self.n)
        return jax.random.wrap_key_data(jnp.asarray(np.tile(np.asarray(jax.random.key_data(keys)), (self.S, 1))))

    def train_chunk(self) -> dict:
        """Trains the next chunk; returns its metrics, name -> ``[S * n, iterations run]`` numpy arrays."""
        k = min(self.chunk_len, self.total_its - self.it)
        fn = self.program()
        t0 = time.perf_counter()
        self.state, metrics = _wait(fn(self.state, np.int32(k)), self.interrupts)
        self.run_s += time.perf_counter() - t0
        metrics = {name: v[:, :k] for name, v in par.to_host(metrics).items()}
        self.chunks.append(metrics)
        self.it += k
        return metrics

    def write_metrics(self, metrics: dict) -> None:
        n = self.n
        for gi, g in enumerate(self.groups):
            rows = [
                {
                    "iteration": int(metrics["iteration"][r, i]),
                    "seed": s,
                    "env_steps": int(metrics["env_steps"][r, i]),
                    **{name: v[r, i] for name, v in metrics.items() if name not in ("iteration", "env_steps")},
                }
                for i in range(metrics["iteration"].shape[1])
                for s, r in ((s, gi * n + s) for s in range(n))
            ]
            R.append_jsonl(g.rd.metrics, rows)
            for logger in self.options.loggers:
                logger.metrics(gi, rows)

    def evaluate(self, it: int) -> list:
        """Evaluates every run at iteration ``it``; appends to eval.jsonl and returns the rows, per setting."""
        ekeys = self.eval_keys(it)
        fn = self.eval_program()
        t_start = time.perf_counter()
        out = par.to_host(_wait(fn(self.state, ekeys), self.interrupts))
        rows = []
        for gi, g in enumerate(self.groups):
            group_rows = []
            for s in range(self.n):
                row = {"iteration": it - 1, "env_steps": it * self.steps_per_it, "seed": s}
                for mode in ("deterministic", "stochastic"):
                    r, ln = out[f"{mode}_return"][gi * self.n + s], out[f"{mode}_length"][gi * self.n + s]
                    row.update(
                        {
                            f"{mode}_return_mean": r.mean(),
                            f"{mode}_return_std": r.std(),
                            f"{mode}_length_mean": ln.mean(),
                        }
                    )
                group_rows.append(row)
            R.append_jsonl(g.rd.eval, group_rows)
            for logger in self.options.loggers:
                logger.evals(gi, group_rows)
            rows.append(group_rows)
        self.side_s += time.perf_counter() - t_start
        return rows

    def save(self, it: int) -> None:
        t_start = time.perf_counter()
        for gi, (g, ckpt) in enumerate(zip(self.groups, self.ckpts)):
            ckpt.save(
                it,
                _slice(self.state, gi, self.n),
                {
                    "iteration": it,
                    "env_steps": it * self.steps_per_it,
                    "seed": self.options.seed,
                    "num_seeds": self.n,
                    "config": config_to_dict(g.config),
                },
            )
        self.saved = it
        self.side_s += time.perf_counter() - t_start

    def after_chunk(self, before: int, metrics: dict) -> bool:
        """Everything between two chunks (``before``: the iteration the chunk started at); True to stop."""
        it, config = self.it, self.config
        self.write_metrics(metrics)
        last = it >= self.total_its
        info = {}
        if (par.to_host(self.state.diverged_at) >= 0).any():
            self.status = "diverged"
        if self.status != "diverged" or self.options.on_divergence == "continue":  # continue: diverged seeds frozen
            if _due(config.eval_every, before, it, last):
                rows = self.evaluate(it)
                for gi in range(self.S):
                    self.evals[gi] += rows[gi]
                self.latest_eval = [r for group_rows in rows for r in group_rows]
                info = {
                    f"eval/{name}": np.array([r[name] for r in self.latest_eval])
                    for name in self.latest_eval[0]
                    if name.endswith("_mean")
                }
            if _due(config.checkpoint_every, before, it, last):
                self.save(it)
        self.report(metrics)
        if self.options.progress_fn is not None:
            self.options.progress_fn(it * self.steps_per_it, {**metrics, **info})
        if self.status == "diverged" and self.options.on_divergence != "continue":
            return True
        return self.stop_requested(last)

    def report(self, metrics: dict) -> None:
        """The progress display's update after a chunk."""
        it, total_its, runs = self.it, self.total_its, self.S * self.n
        latest = {name: v[:, -1] for name, v in metrics.items()}
        fields = {"iteration": f"{it}/{total_its}", "train return": fmt(_mean(latest["episode_return"]), ".1f")}
        if self.latest_eval:
            fields["eval return det/sto"] = fmt_parts(
                [
                    _mean([r[f"{mode}_return_mean"] for r in self.latest_eval])
                    for mode in ("deterministic", "stochastic")
                ],
                ".1f",
            )
        fields["kl_max"] = fmt(_mean(latest.get("kl_max", np.nan)), ".3g")
        fields.update(_bound_fields(self.config, latest, self.eps))
        pending = self.compiled.get("eval")
        if isinstance(pending, concurrent.futures.Future) and not pending.done():
            fields["compiling"] = "evaluation (in the background)"
        # speed over all runs and ETA from the wall time since the start, waiting for compilation excluded
        wall = time.perf_counter() - self.wall_start - self.waited_s
        speed = (it - self.it_start) * self.steps_per_it * runs / wall if wall > 0 else float("nan")
        eta = (total_its - it) * self.steps_per_it * runs / speed if speed > 0 else None
        self.display.update(it * self.steps_per_it, speed, eta, fields)

    def stop_requested(self, last: bool) -> bool:
        """True (after a checkpoint at the iteration reached) when a stop signal arrived in any process."""
        interrupts, it = self.interrupts, self.it
        interrupts.poll()
        # read once per chunk, by every process at the same point: several processes stop at the same chunk end,
        # each with the signal one of them got (a signal during the last chunk: the run is finished anyway)
        interrupts.share(par.max_process(interrupts.code))
        if not interrupts.requested or last:
            return False
        if self.saved != it:  # the signal may have come after this chunk's checkpoint decision
            self.save(it)
        self.status = interrupts.status
        self.display.log(
            f"{self.status} at iteration {it} ({it * self.steps_per_it:,} env steps) by "
            f"{interrupts.signal}; checkpoint {self.ckpts[0].path(it) if self.S == 1 else it} written; "
            f"continue with: {self.options.resume_command or f'tr-jax train --resume {_resume_dir(self.groups)}'}"
        )
        return True

    def finish(self) -> list:
        """summary.json of every setting, the results; raises :class:`TrainingDiverged` if asked to."""
        self.background.shutdown(wait=False)  # (a run stopped early: the evaluation's compilation ends on its own)
        loop_s = time.perf_counter() - self.wall_start - self.waited_s
        chunks, n, S, status = self.chunks, self.n, self.S, self.status
        metrics = {name: np.concatenate([c[name] for c in chunks], axis=1) for name in chunks[0]} if chunks else {}
        diverged_at = par.to_host(self.state.diverged_at)
        its_run = sum(c["iteration"].shape[1] for c in chunks)
        speed = its_run * self.steps_per_it * S * n / self.run_s if self.run_s > 0 else float("nan")
        results, diverged = [], []
        for gi, (g, ckpt) in enumerate(zip(self.groups, self.ckpts)):
            result = RunResult(
                state=_slice(self.state, gi, n),
                metrics=_slice(metrics, gi, n),
                evals=self.evals[gi],
                status=status,
                iteration=self.it,
                steps_per_second=speed,
                compile_seconds=self.compile_s,
                run_seconds=self.run_s,
                loop_seconds=loop_s,
                eval_checkpoint_seconds=self.side_s,
                diverged_at=diverged_at[gi * n : (gi + 1) * n],
                run_dir=g.rd.path,
                signal=self.interrupts.signal if status in ("interrupted", "preempted") else None,
            )
            _write_summary(g.rd, g.config, result, ckpt)
            seeds = [(s, int(i)) for s, i in enumerate(result.diverged_at) if i >= 0]
            if status == "diverged" and seeds:
                kept = ckpt.latest()
                diverged.append(Divergence(g.label, seeds, ckpt.path(kept) if kept is not None else None))
            ckpt.close()
            results.append(result)
        if status == "diverged":
            message = divergence_message(diverged, sweep=S > 1, frozen=self.options.on_divergence == "continue")
            self.display.log(message)
            if self.options.on_divergence == "raise":
                raise TrainingDiverged(message, results[0] if S == 1 else results, diverged)
        return results


def _write_summary(rd, config, result: RunResult, ckpt: Checkpoints):
    evals = R.read_jsonl(rd.eval)  # the whole run's, also before a resume
    per_seed = []
    for s in range(len(result.diverged_at)):
        rows = [r for r in evals if r["seed"] == s]
        det = [r["deterministic_return_mean"] for r in rows if r["deterministic_return_mean"] is not None]
        per_seed.append(
            {
                "seed": s,
                "final_eval_return": rows[-1]["deterministic_return_mean"] if rows else None,
                "final_eval_return_stochastic": rows[-1]["stochastic_return_mean"] if rows else None,
                "best_eval_return": max(det) if det else None,
                "best_eval_iteration": rows[int(np.argmax(det))]["iteration"] if det else None,
                "diverged_at": int(result.diverged_at[s]) if result.diverged_at[s] >= 0 else None,
            }
        )
    R.write_json(
        rd.summary,
        {
            "status": result.status,
            "iterations": result.iteration,
            "env_steps": result.iteration * config.batch_size * config.action_repeat,
            "env_steps_per_second": R.clean(result.steps_per_second),
            "compile_seconds": result.compile_seconds,
            "run_seconds": result.run_seconds,
            "signal": result.signal,
            "seeds": per_seed,
            "checkpoints": ckpt.steps(),
            "versions": R.versions(),
        },
    )


def load_checkpoint(run_dir: str, checkpoint: int | None = None, env=None):
    """Restores a checkpoint of ``run_dir`` (the newest by default); ``env``: the
    env object the run was trained on, if it was given one (see :func:`run`).

    Returns ``(trainer, state, meta)``: the run's :class:`~tr_jax.train.Trainer`
    (built from its ``config.json``), the TrainState with leaves
    ``[num_seeds, ...]`` and the checkpoint's metadata (``iteration``, ``env_steps``, ...).
    MuJoCo's warnings while building the env go to the run directory's ``mujoco.log``.
    """
    from tr_jax.train import make_trainer

    rd = R.RunDir.existing(run_dir)
    config = config_from_dict(R.read_json(rd.config), where=rd.config)
    num_seeds = int(rd.info()["num_seeds"])
    with _MujocoLog() as mujoco_log:
        mujoco_log.path = rd.mujoco_log
        trainer = make_trainer(config, env)
    like = jax.eval_shape(jax.vmap(trainer.init), jax.random.split(jax.random.key(0), num_seeds))
    ckpt = Checkpoints(rd.checkpoints, keep=config.keep_checkpoints)
    try:
        state, meta = ckpt.restore(checkpoint, like)
    finally:
        ckpt.close()
    return trainer, state, meta


def evaluate_run(run_dir: str, num_episodes: int = 10, checkpoint: int | None = None, seed: int = 0, env=None) -> dict:
    """Evaluates a checkpoint of ``run_dir`` (the newest by default); ``env`` as for :func:`load_checkpoint`.

    Returns a dict with ``iteration``, ``env_steps`` and numpy arrays
    ``[num_seeds, num_episodes]``: ``deterministic_return``/``_length``
    (mean action) and ``stochastic_return``/``_length`` (sampled actions).
    """
    trainer, state, meta = load_checkpoint(run_dir, checkpoint, env)
    num_seeds = state.iteration.shape[0]
    keys = jax.random.split(jax.random.key(seed), num_seeds)
    out = jax.jit(jax.vmap(trainer.evaluate, in_axes=(0, 0, None)), static_argnums=2)(state, keys, num_episodes)
    return {
        "iteration": int(meta["iteration"]),
        "env_steps": int(meta["env_steps"]),
        **{k: np.asarray(v) for k, v in out.items()},
    }
