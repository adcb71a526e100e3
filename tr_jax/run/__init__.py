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

Where things are: :func:`run` and :func:`run_sweep` (here) check their arguments, make or reopen the run
directories and lock them; the loop itself is :mod:`tr_jax.run.loop` (one chunk: its ``_chunk``);
:mod:`tr_jax.run.interrupts` handles the stop signals and MuJoCo's warnings; :mod:`tr_jax.run.results` holds
:class:`RunResult`, ``summary.json`` and the divergence report; :mod:`tr_jax.run.load` reads a run back
(:func:`resume_config`, :func:`load_checkpoint`, :func:`evaluate_run`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from tr_jax import parallel as par
from tr_jax import rundir as R
from tr_jax.config import TrainConfig, config_from_dict, config_to_dict, validate
from tr_jax.programs import ProgramCache
from tr_jax.progress import LogOnly, make_progress
from tr_jax.run.interrupts import EXIT_STATUS, Interrupts, MujocoLog, hold_exit_status
from tr_jax.run.load import evaluate_run, load_checkpoint, resume_config
from tr_jax.run.loop import Group, LoopOptions, make_setup, resume_dir, run_loop
from tr_jax.run.loop import _bound_fields as _bound_fields
from tr_jax.run.results import Divergence, RunResult, TrainingDiverged, divergence_message

__all__ = [
    "run",
    "run_sweep",
    "RunResult",
    "TrainingDiverged",
    "Divergence",
    "divergence_message",
    "LoopOptions",
    "EXIT_STATUS",
    "SWEEP_FILE",
    "hold_exit_status",
    "resume_config",
    "load_checkpoint",
    "evaluate_run",
]

SWEEP_FILE = R.SWEEP_FILE
# the names these had before the host loop was split into modules (tests and scripts reach for them)
_Interrupts, _MujocoLog = Interrupts, MujocoLog


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
    request = _request(locals())
    _check_options(request)
    if resume:
        target = _resumed_run(request)
    else:
        assert config is not None  # _check_options: a new run needs a config
        target = _created(request, "run directory", lambda: R.default_name(config), [("", config)], sweep=None)
    return _run_groups(request, target)[0]


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

    request = _request(locals())
    _check_options(request)
    if resume:
        return _run_groups(request, _resumed_sweep(request))
    if not sweep:
        raise ValueError("run_sweep needs at least one (key, values) to sweep; use run for a single setting")
    assert config is not None  # _check_options: a new sweep needs a config

    def name() -> str:  # <env>-sweep-<algorithm...>-<time>
        parts = R.default_name(config).rsplit("-", 2)
        return f"{parts[0]}-sweep-{parts[1]}-{parts[2]}"

    settings = sweep_configs(config, sweep, labels)
    target = _created(request, "sweep directory", name, settings, sweep=[[k, list(v)] for k, v in sweep])
    return _run_groups(request, target)


class _Request(NamedTuple):
    """The arguments :func:`run` and :func:`run_sweep` share, as given (``loggers`` as a tuple)."""

    config: TrainConfig | None
    seed: int
    num_seeds: int
    run_dir: str | None
    resume: bool
    overwrite: bool
    progress: str
    progress_fn: Callable[[int, dict], None] | None
    on_divergence: str
    runs_root: str
    env: Any
    checkpoint: int | None
    loggers: tuple
    resume_command: str | None = None


def _request(arguments: dict) -> _Request:
    """The request of a call of :func:`run` or :func:`run_sweep`, from its arguments (``locals()`` at its start)."""
    request = _Request(**{name: arguments[name] for name in _Request._fields if name in arguments})
    return request._replace(loggers=tuple(request.loggers))


class _Target(NamedTuple):
    """What a request trains: the first setting's config (the trainer's), the seeds, and ``make_groups(hold)``,
    which checks that it can write the top directory, then makes (or reopens) the settings' run directories,
    calling ``hold(directory)`` on each before it writes or cuts anything there; returns the :class:`Group`s."""

    config: TrainConfig
    seed: int
    num_seeds: int
    make_groups: Callable[[Callable[[str], None]], list[Group]]


def _check_options(r: _Request) -> None:
    if r.on_divergence not in ("raise", "return", "continue"):
        raise ValueError(f"on_divergence must be 'raise', 'return' or 'continue', got {r.on_divergence!r}")
    if r.resume and r.run_dir is None:
        raise ValueError("resume needs the run directory to continue")
    if not r.resume and r.config is None:
        raise ValueError("run needs a config (or resume=True)")
    if not isinstance(r.num_seeds, int) or r.num_seeds < 1:
        raise ValueError(f"num_seeds must be a positive int, got {r.num_seeds!r}")
    if r.checkpoint is not None and not r.resume:
        raise ValueError("checkpoint (--checkpoint) chooses where a resumed run continues: it needs resume")


def _resumed_run(request: _Request) -> _Target:
    """A run directory to continue: its config (``request.config`` may change the resume-safe fields), seeds."""
    assert request.run_dir is not None  # _check_options: resume needs run_dir
    rd = R.RunDir.existing(request.run_dir)
    if os.path.exists(os.path.join(rd.path, SWEEP_FILE)):
        raise ValueError(f"{rd.path} is a sweep directory: resume it with run_sweep (tr-jax train --resume does)")
    saved = config_from_dict(R.read_json(rd.config), where=rd.config)
    config, changed = resume_config(saved, request.config)
    info = rd.info()
    seed, num_seeds = int(info["seed"]), int(info["num_seeds"])
    return _resumed("run directory", rd.path, [Group("", config, rd, changed)], seed, num_seeds)


def _resumed_sweep(request: _Request) -> _Target:
    """A sweep directory to continue: every setting's config (``request.config`` stands for every setting: its
    swept fields take each setting's value, any other difference must be resume-safe), seeds."""
    assert request.run_dir is not None  # _check_options: resume needs run_dir
    path = os.path.abspath(request.run_dir)
    try:
        meta = R.read_json(os.path.join(path, SWEEP_FILE))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is not a sweep directory: {SWEEP_FILE} is missing") from None
    seed, num_seeds = int(meta["seed"]), int(meta["num_seeds"])
    swept = [k for k, _ in meta["sweep"]]
    groups = []
    for label in meta["settings"]:
        rd = R.RunDir.existing(os.path.join(path, label))
        saved = config_from_dict(R.read_json(rd.config), where=rd.config)
        given = None if request.config is None else request.config.replace(**{k: getattr(saved, k) for k in swept})
        config, changed = resume_config(saved, given)  # (it names the fields that may not change)
        groups.append(Group(label, config, rd, changed))
    return _resumed("sweep directory", path, groups, seed, num_seeds)


def _resumed(what: str, top: str, groups: list[Group], seed: int, num_seeds: int) -> _Target:
    """Reopened ``groups`` in ``top`` (``what``: "run directory" or "sweep directory"): ``make_groups`` checks
    that ``top`` can be written and locks it and every setting's directory."""

    def make_groups(hold):
        R.check_writable([(what, top)])
        for d in dict.fromkeys((top, *(g.rd.path for g in groups))):  # (a plain run's group is in top)
            hold(d)
        return groups

    return _Target(groups[0].config, seed, num_seeds, make_groups)


def _created(request: _Request, what: str, name: Callable[[], str], settings: list, sweep: list | None) -> _Target:
    """New run directories for ``settings`` (``[(label, config)]``): ``make_groups`` makes the top directory
    (``request.run_dir``, else ``runs_root/name()``, named when it is made: the name holds the time). A plain run
    (``sweep`` None) is its one setting's run directory; a sweep's top directory holds ``sweep.json`` (``sweep``:
    ``[[key, values]]``) and a run directory per setting, named by its label."""
    seed, num_seeds = request.seed, request.num_seeds

    def make_groups(hold):
        path = request.run_dir or os.path.join(request.runs_root, name())
        R.check_writable([(what, path)])
        top = R.RunDir.create(path, request.overwrite, hold)
        if sweep is not None:
            R.write_json(
                os.path.join(top.path, SWEEP_FILE),
                {
                    "sweep": sweep,
                    "settings": [label for label, _ in settings],
                    "seed": seed,
                    "num_seeds": num_seeds,
                    "versions": R.versions(),
                },
            )
        groups = []
        for label, config in settings:
            rd = top if sweep is None else R.RunDir.create(os.path.join(top.path, label), hold=hold)
            R.write_json(rd.config, config_to_dict(config))
            rd.write_info(
                seed, num_seeds, None if sweep is None else {"label": label, "sweep": os.path.basename(top.path)}
            )
            groups.append(Group(label, config, rd, {}))
        return groups

    return _Target(settings[0][1], seed, num_seeds, make_groups)


def _run_groups(request: _Request, target: _Target) -> list:
    """Builds the trainer (checking the env before any file is written), checks that the loggers' directories
    can be written, then makes the groups' directories (``target.make_groups(hold)`` checks that it can write
    them, then locks each by calling ``hold(directory)`` before it writes or cuts anything there), then runs the
    loop; the locks are released at the end. A failed write becomes a one-line :class:`R.RunDirWriteError`; a
    new run that fails before it trained anything removes the directories it made."""
    config, env = target.config, request.env
    validate(config)
    from tr_jax import compile_cache
    from tr_jax.train import make_trainer

    options = LoopOptions(
        target.seed,
        target.num_seeds,
        request.resume,
        request.progress_fn,
        request.on_divergence,
        request.checkpoint,
        request.loggers,
        resume_command=request.resume_command,
    )
    compile_dir = compile_cache.ensure()  # before anything compiles (on by default; docs/startup.md)
    groups: list[Group] = []
    try:
        with MujocoLog() as mujoco_log, contextlib.ExitStack() as held:
            trainer = make_trainer(config, env)  # checks the env before any file is written
            programs = ProgramCache.for_run(compile_dir, config, trainer.env.env, env_given=env is not None)
            locks = []
            with par.fail_together("creating the run directory"):  # only process 0 writes: it alone can fail
                if par.is_primary():
                    R.check_writable([("log directory", d) for logger in options.loggers for d in logger.outputs()])
                groups = target.make_groups(lambda path: locks.append(held.enter_context(R.RunLock(path))))
            mujoco_log.path = groups[0].rd.mujoco_log
            mujoco_log.flush()
            display = (  # multi-host: progress from process 0 only; the others log their events, prefixed
                make_progress(request.progress) if par.is_primary() else LogOnly(f"[process {jax.process_index()}] ")
            )
            for note in (*(lock.note for lock in locks), compile_cache.note()):
                if note:
                    display.log(note)
            with Interrupts(display.log) as interrupts:
                try:
                    return run_loop(
                        make_setup(trainer, groups, options._replace(programs=programs), display, interrupts)
                    )
                finally:
                    display.close()
                    for logger in options.loggers:
                        logger.close()
    except BaseException as e:
        if not options.resume and groups and par.is_primary() and all(g.rd.untrained() for g in groups):
            # (config.json, run.json and an empty checkpoints/ would make the rerun ask for --resume, and
            # --resume find no checkpoint)
            shutil.rmtree(resume_dir(groups), ignore_errors=True)
        if not isinstance(e, OSError) or isinstance(e, R.RunDirWriteError):
            raise
        failure = (
            R.write_failure(e, groups[0].rd.checkpoints, resume_dir(groups))
            if groups
            else R.write_failure(e, None, None)
        )
        if failure is None:
            raise
        raise R.RunDirWriteError(failure, e) from e
