"""The host loop of one run or sweep: ``S`` settings x ``n`` seeds trained as one vmapped batch of runs, chunk
by chunk, with the files, evaluations, checkpoints and progress between the chunks.

How to read it: :func:`run_loop` is the whole loop, and :func:`_chunk` is one chunk top to bottom. What stays
fixed while the loop runs is a :class:`Setup` (the trainer and its jitted functions, the run directories and
their checkpoints, the options), made once by :func:`make_setup`. What changes is a :class:`Progress` record
(the batched state, the iteration, the metrics and evaluations so far, the timings): every step takes one and
returns a new one, nothing is changed in place. The chunk program is compiled before the first chunk
(:func:`_compile_programs`, giving :class:`Programs`), which starts the evaluation program's compilation in a
background thread; the first evaluation waits for it (:func:`_eval_program`). The end (:func:`_finish`) writes
``summary.json`` and builds the :class:`~tr_jax.run.RunResult` of every setting (:func:`_results`, the one
place that builds them).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from tr_jax import parallel as par
from tr_jax import rundir as R
from tr_jax.algorithms.bounds import BOUNDS
from tr_jax.checkpoint import CheckpointError, Checkpoints
from tr_jax.config import TrainConfig, config_to_dict
from tr_jax.loggers import Run as LogRun
from tr_jax.programs import NotExportable, ProgramCache
from tr_jax.progress import fmt, fmt_parts
from tr_jax.run.interrupts import Interrupts, wait_ready
from tr_jax.run.results import Divergence, RunResult, TrainingDiverged, divergence_message, write_summary

if TYPE_CHECKING:  # (at run time tr_jax.train is imported only where a trainer is built)
    from tr_jax.train import TrainState

_FROM_DISK = " (its trace loaded from the program cache)"
_EVAL_STREAM = 0x5EED  # fold_in tag: evaluation keys never touch the training key stream


class LoopOptions(NamedTuple):
    """What :func:`~tr_jax.run.run`/:func:`~tr_jax.run.run_sweep` ask of the host loop besides the trainer and
    the run directories."""

    seed: int
    num_seeds: int
    resume: bool
    progress_fn: Callable[[int, dict], None] | None
    on_divergence: str
    checkpoint: int | None
    loggers: tuple = ()  # tr_jax.loggers.Logger objects fed the rows written (closed by the caller)
    programs: ProgramCache | None = None  # traced programs kept on disk (tr_jax/programs.py); None: trace here
    resume_command: str | None = None  # what a stop's message says to continue with; None: tr-jax train --resume


class Group(NamedTuple):
    """One setting of a run: its config, run directory and (on resume) the changed safe fields."""

    label: str  # "" for a plain run, "key=value,..." for a sweep setting
    config: TrainConfig
    rd: R.RunDir
    changed: dict


def resume_dir(groups: list[Group]) -> str:
    """The directory ``--resume`` takes: the run directory, or a sweep's."""
    return groups[0].rd.path if len(groups) == 1 and not groups[0].label else os.path.dirname(groups[0].rd.path)


@dataclasses.dataclass(frozen=True)
class Setup:
    """What stays fixed while the loop runs (made by :func:`make_setup`).

    The batch of runs is setting-major: run ``g * n + s`` is seed ``s`` of setting ``g``.
    """

    trainer: Any  # tr_jax.train.Trainer of the first setting's config (the settings differ in hyperparameters)
    groups: list[Group]  # the settings, each with its run directory
    options: LoopOptions
    display: Any  # the progress display (tr_jax.progress)
    interrupts: Interrupts
    ckpts: list[Checkpoints]  # one per setting
    keys: jax.Array  # [S * n] training keys: seed s's key for every setting
    hparams: Any  # tr_jax.hyperparams.Hyperparams, every field a numpy [S * n] array (the exact values)
    eps: dict  # the optimised trust-region bounds' hyperparameters -> [S * n] float64, for the display
    shardings: Any  # the batched TrainState's shardings
    init_fn: Any  # jitted (keys, hparams) -> batched TrainState
    chunk_fn: Any  # jitted, vmapped (state, chunk length (static), active iterations) -> (state, metrics)
    eval_fn: Any  # jitted, vmapped (state, keys, episodes (static)) -> returns and lengths
    eval_root: jax.Array  # the evaluation keys' root (a stream of its own)
    total_its: int  # iterations of the longest setting
    chunk_len: int  # iterations of the chunk program (a shorter last chunk runs fewer of its loops)
    steps_per_it: int  # env steps per iteration and run

    @property
    def config(self) -> TrainConfig:
        """The trainer's config (the first setting's)."""
        return self.trainer.config

    @property
    def S(self) -> int:
        """Settings."""
        return len(self.groups)

    @property
    def n(self) -> int:
        """Seeds per setting."""
        return self.options.num_seeds


class Times(NamedTuple):
    """Seconds this call spent so far."""

    compile: float = 0.0  # every program's compilation (the evaluation's, in the background, included)
    waited: float = 0.0  # the part of it the loop waited for (excluded from the speeds)
    side: float = 0.0  # evaluations and checkpoints (the evaluation's compilation excluded)
    run: float = 0.0  # the training chunks

    def plus(self, **seconds: float) -> Times:
        """These times with ``seconds`` added to the fields named."""
        return self._replace(**{name: getattr(self, name) + s for name, s in seconds.items()})


class Progress(NamedTuple):
    """Where the loop stands: what every step takes and returns (a new record, never changed in place)."""

    state: TrainState  # the batched state, leaves [S * n, ...]
    it: int  # iterations done
    saved: int  # the iteration of the newest checkpoint (at the start: the one the call began at)
    evals: tuple  # per setting, the eval.jsonl rows this call wrote
    status: str = "finished"  # or "diverged", "interrupted", "preempted"
    chunks: tuple = ()  # every chunk's metrics, name -> [S * n, iterations] numpy
    latest_eval: tuple = ()  # the newest evaluation's rows, all settings
    eval_program: Any = None  # the compiled evaluation, once the loop has waited for it (_eval_program)
    times: Times = Times()


class Programs(NamedTuple):
    """The compiled programs (:func:`_compile_programs`)."""

    chunk: Any  # (state, active iterations) -> (state, metrics [S * n, chunk_len])
    evaluation: concurrent.futures.Future  # the evaluation's compilation: -> (program, loaded from disk, seconds)


class Start(NamedTuple):
    """Where and when this call's training began (for the speeds)."""

    it: int
    wall: float  # time.perf_counter()


def make_setup(trainer, groups: list[Group], options: LoopOptions, display, interrupts: Interrupts) -> Setup:
    """The :class:`Setup` of a run (one group) or sweep: its keys, hyperparameters, jitted functions and
    checkpoint managers."""
    from tr_jax.hyperparams import SWEEPABLE, Hyperparams

    config = trainer.config
    S, n = len(groups), options.num_seeds
    total_its = max(g.config.num_iterations for g in groups)
    keys = _per_run(jax.random.split(jax.random.key(options.seed), n), S)
    # numpy on the host (eps reads the exact values); Trainer.init converts every field with jnp.asarray
    dtype = np.dtype(config.dtype)
    hparams = Hyperparams(
        *(cast(jax.Array, np.repeat(np.asarray([getattr(g.config, f) for g in groups], dtype), n)) for f in SWEEPABLE)
    )
    shardings = trainer.state_shardings(batched=True)
    return Setup(
        trainer=trainer,
        groups=groups,
        options=options,
        display=display,
        interrupts=interrupts,
        keys=keys,
        hparams=hparams,
        shardings=shardings,
        init_fn=jax.jit(trainer.init_runs, out_shardings=shardings),
        chunk_fn=jax.jit(jax.vmap(trainer.train_chunk, in_axes=(0, None, None)), static_argnums=1),
        eval_fn=jax.jit(jax.vmap(trainer.evaluate, in_axes=(0, 0, None)), static_argnums=2),
        eval_root=jax.random.fold_in(jax.random.key(options.seed), _EVAL_STREAM),
        ckpts=[Checkpoints(g.rd.checkpoints, keep=config.keep_checkpoints) for g in groups],
        eps={
            b.hyperparameter: np.asarray(getattr(hparams, b.hyperparameter), np.float64)
            for b in BOUNDS[config.algorithm].optimised.values()
        },
        total_its=total_its,
        chunk_len=min(config.chunk_iterations, total_its),
        steps_per_it=config.batch_size * config.action_repeat,
    )


def run_loop(setup: Setup) -> list[RunResult]:
    """Trains until the budget, a divergence or a stop signal; returns one :class:`~tr_jax.run.RunResult` per
    setting (raises :class:`~tr_jax.run.TrainingDiverged` if the options ask for it)."""
    state, it = setup.init_fn(setup.keys, setup.hparams), 0
    if setup.options.resume:
        state, it = _restore(setup, state)
        if _finished_already(setup, it):  # nothing to do: no file is touched
            return _results(setup, Progress(state, it, saved=it, evals=((),) * setup.S), loop_seconds=0.0)
        _cut_back(setup, it)
    else:
        where = os.path.dirname(setup.groups[0].rd.path)
        setup.display.log(
            f"run directory {setup.groups[0].rd.path}"
            if setup.S == 1
            else f"sweep of {setup.S} settings x {setup.n} seed(s) in {where}"
        )
    _open_loggers(setup, it)
    setup.display.start(setup.total_its * setup.steps_per_it, it * setup.steps_per_it)
    start, p = Start(it, time.perf_counter()), Progress(state, it, saved=it, evals=((),) * setup.S)
    if p.it < setup.total_its:
        programs, p = _compile_programs(setup, p)
        stop = False
        while not stop and p.it < setup.total_its:
            p, stop = _chunk(setup, programs, start, p)
    return _finish(setup, start, p)


def _chunk(setup: Setup, programs: Programs, start: Start, p: Progress) -> tuple[Progress, bool]:
    """One chunk and everything after it: metrics rows, the NaN guard, evaluation and checkpoint when due,
    progress display and ``progress_fn``, stop signals. Returns the progress and whether to stop."""
    before, config, options = p.it, setup.config, setup.options
    p, metrics = _train(setup, programs, p)
    _write_metrics(setup, metrics)
    last = p.it >= setup.total_its
    if (par.to_host(p.state.diverged_at) >= 0).any():
        p = p._replace(status="diverged")
    info: dict = {}  # the evaluation's means for progress_fn
    if p.status != "diverged" or options.on_divergence == "continue":  # continue: the diverged seeds are frozen
        if _due(config.eval_every, before, p.it, last):
            p, info = _evaluate(setup, programs, p)
        if _due(config.checkpoint_every, before, p.it, last):
            p = _save(setup, p)
    _report(setup, programs, start, p, metrics)
    if options.progress_fn is not None:
        options.progress_fn(p.it * setup.steps_per_it, {**metrics, **info})
    if p.status == "diverged" and options.on_divergence != "continue":
        return p, True
    return _stop_requested(setup, p, last)


# --- starting: restoring a checkpoint, the loggers ------------------------------------------------------------


def _restore(setup: Setup, state) -> tuple[Any, int]:
    """The batched state restored from the checkpoint to continue from (``state``: a template), and its
    iteration (the same in every setting)."""
    n, parts, its = setup.n, [], set()
    for gi, ckpt in enumerate(setup.ckpts):
        try:
            part, meta = ckpt.restore(setup.options.checkpoint, _slice(state, gi, n))
        except CheckpointError as e:
            if not e.older:
                raise
            raise CheckpointError(
                f"{e}: resume from one with tr-jax train --resume {resume_dir(setup.groups)} "
                f"--checkpoint {e.older[-1]} (the iterations after it are trained again)",
                e.older,
            ) from e
        parts.append(part)
        its.add(int(meta["iteration"]))
    if len(its) != 1:
        raise CheckpointError(f"the settings' newest checkpoints are at different iterations {sorted(its)}")
    state = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts) if setup.S > 1 else parts[0]
    return par.reshard(state, setup.shardings), its.pop()


def _finished_already(setup: Setup, it: int) -> bool:
    """On resume at iteration ``it``: True (logged, the checkpoints closed) if every setting is at its budget.
    A budget below ``it`` is a ``ValueError``, raised before any file is touched."""
    try:
        done = _check_budget(setup.groups, it, setup.steps_per_it)
    except ValueError:
        for ckpt in setup.ckpts:
            ckpt.close()
        raise
    if done:
        setup.display.log(
            f"run {resume_dir(setup.groups)} is already finished at iteration {it} "
            f"({it * setup.steps_per_it:,} env steps); nothing to do"
            + ("; the changed settings were not saved" if setup.groups[0].changed else "")
        )
        for ckpt in setup.ckpts:
            ckpt.close()
    return done


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


def _cut_back(setup: Setup, it: int) -> None:
    """Before a resumed run trains on from ``it``: removes the newer checkpoints, cuts the ``.jsonl`` files back
    to ``it``, saves a changed config and logs where each setting resumed."""
    n, display = setup.n, setup.display
    for g, ckpt in zip(setup.groups, setup.ckpts):  # newer than the one chosen: they would collide with new saves
        newer = [s for s in ckpt.steps() if s > it]
        for s in newer:
            ckpt.delete(s)
        if newer:
            display.log(f"removed the checkpoints newer than {it} from {_where(g)}: {', '.join(map(str, newer))}")
    for g in setup.groups:
        notes = R.cut_jsonl(g.rd.metrics, it, n, every_iteration=True) + R.cut_jsonl(g.rd.eval, it, n, False)
        if g.changed:  # only once the checkpoint is known to restore
            R.write_json(g.rd.config, config_to_dict(g.config))
        display.log(
            f"resumed {_where(g)} at iteration {it} ({it * setup.steps_per_it:,} env steps)"
            + "".join(f"; {x}" for x in notes if not x.startswith("warning"))
            + (f"; changed {', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in g.changed.items())}" if g.changed else "")
        )
        for x in notes:
            if x.startswith("warning"):
                display.log(x)


def _open_loggers(setup: Setup, it: int) -> None:
    for logger in setup.options.loggers:
        logger.open(
            [
                LogRun(
                    g.rd.path,
                    g.label,
                    config_to_dict(g.config),
                    setup.n,
                    os.path.basename(os.path.dirname(g.rd.path)) if g.label else "",
                )
                for g in setup.groups
            ],
            it * setup.steps_per_it,
        )


# --- the programs ---------------------------------------------------------------------------------------------


def _compile_programs(setup: Setup, p: Progress) -> tuple[Programs, Progress]:
    """Compiles the chunk program, then starts the evaluation's compilation in a background thread."""
    chunk_fn, chunk_len, display = setup.chunk_fn, setup.chunk_len, setup.display
    runs, devices = setup.S * setup.n, setup.trainer.mesh.devices.size
    display.status(f"compiling a {chunk_len}-iteration chunk ({runs} run(s), {devices} device(s))...")
    t0 = time.perf_counter()
    like = (p.state, np.int32(chunk_len))
    chunk, loaded = _compile(
        setup,
        "train_chunk",
        lambda state, active: chunk_fn(state, chunk_len, active),
        like,
        (chunk_len,),
        lambda: chunk_fn.lower(like[0], chunk_len, like[1]).compile(),
        returns_state=True,
    )
    seconds = time.perf_counter() - t0
    display.log(
        f"compiled a {chunk_len}-iteration chunk ({runs} run(s) on {devices} device(s)) in "
        f"{seconds:.1f} s{_FROM_DISK if loaded else ''}; compiling the evaluation in the background"
    )
    background = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tr_jax-compile")
    evaluation = background.submit(_compile_eval, setup, p.state, _eval_keys(setup, 0))
    background.shutdown(wait=False)  # (it compiles on; a run stopped early leaves it to end on its own)
    return Programs(chunk, evaluation), p._replace(times=p.times.plus(compile=seconds, waited=seconds))


def _compile(setup: Setup, name: str, fn, args: tuple, static: tuple, plain, returns_state: bool = False):
    """``(program, loaded)``: ``fn(*args)`` (static values bound) compiled through the program cache when
    the run has one (``loaded``: its trace came from disk), else ``plain()``, the jitted function's own
    ``lower(...).compile()``."""
    if setup.options.programs is not None:
        try:
            return setup.options.programs.compile(name, fn, args, static, returns_state, setup.display.log)
        except NotExportable as e:
            setup.display.log(f"warning: {e}; compiling it without the program cache")
    return plain(), False


def _compile_eval(setup: Setup, like, keys_like):
    """(in the background thread: tracing holds the GIL, XLA's compilation does not)"""
    t0 = time.perf_counter()
    eval_fn, episodes = setup.eval_fn, setup.config.eval_episodes
    program, loaded = _compile(
        setup,
        "evaluate",
        lambda state, keys: eval_fn(state, keys, episodes),
        (like, keys_like),
        (episodes,),
        lambda: eval_fn.lower(like, keys_like, episodes).compile(),
    )
    return program, loaded, time.perf_counter() - t0


def _eval_program(setup: Setup, programs: Programs, p: Progress) -> Progress:
    """``p`` with the evaluation program: the first time, waits for its compilation to end (and logs it)."""
    if p.eval_program is not None:
        return p
    if not programs.evaluation.done():
        setup.display.status("waiting for the evaluation program to compile (in the background)...")
    t0 = time.perf_counter()
    program, loaded, seconds = programs.evaluation.result()
    times = p.times.plus(waited=time.perf_counter() - t0, compile=seconds)
    setup.display.log(
        f"compiled the evaluation program in {seconds:.1f} s (in the background; waited "
        f"{time.perf_counter() - t0:.1f} s for it){_FROM_DISK if loaded else ''}"
    )
    return p._replace(eval_program=program, times=times)


# --- the steps of a chunk -------------------------------------------------------------------------------------


def _train(setup: Setup, programs: Programs, p: Progress) -> tuple[Progress, dict]:
    """Trains the next chunk; returns the progress and the chunk's metrics, name -> ``[S * n, iterations run]``."""
    k = min(setup.chunk_len, setup.total_its - p.it)
    t0 = time.perf_counter()
    state, metrics = wait_ready(programs.chunk(p.state, np.int32(k)), setup.interrupts)
    times = p.times.plus(run=time.perf_counter() - t0)
    metrics = {name: v[:, :k] for name, v in par.to_host(metrics).items()}
    return p._replace(state=state, it=p.it + k, chunks=(*p.chunks, metrics), times=times), metrics


def _write_metrics(setup: Setup, metrics: dict) -> None:
    """One ``metrics.jsonl`` row per iteration and seed of every setting (and to the loggers)."""
    n = setup.n
    for gi, g in enumerate(setup.groups):
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
        for logger in setup.options.loggers:
            logger.metrics(gi, rows)


def _evaluate(setup: Setup, programs: Programs, p: Progress) -> tuple[Progress, dict]:
    """Evaluates every run at iteration ``p.it`` into eval.jsonl (and the loggers); returns the progress and
    ``eval/<name>``: ``[S * n]`` means for ``progress_fn``."""
    n, it = setup.n, p.it
    ekeys = _eval_keys(setup, it)
    p = _eval_program(setup, programs, p)
    t_start = time.perf_counter()
    out = par.to_host(wait_ready(p.eval_program(p.state, ekeys), setup.interrupts))
    rows = []
    for gi, g in enumerate(setup.groups):
        group_rows = []
        for s in range(n):
            row = {"iteration": it - 1, "env_steps": it * setup.steps_per_it, "seed": s}
            for mode in ("deterministic", "stochastic"):
                r, ln = out[f"{mode}_return"][gi * n + s], out[f"{mode}_length"][gi * n + s]
                row.update(
                    {f"{mode}_return_mean": r.mean(), f"{mode}_return_std": r.std(), f"{mode}_length_mean": ln.mean()}
                )
            group_rows.append(row)
        R.append_jsonl(g.rd.eval, group_rows)
        for logger in setup.options.loggers:
            logger.evals(gi, group_rows)
        rows.append(group_rows)
    times = p.times.plus(side=time.perf_counter() - t_start)
    latest = tuple(r for group_rows in rows for r in group_rows)
    info = {f"eval/{name}": np.array([r[name] for r in latest]) for name in latest[0] if name.endswith("_mean")}
    evals = tuple((*old, *new) for old, new in zip(p.evals, rows))
    return p._replace(evals=evals, latest_eval=latest, times=times), info


def _save(setup: Setup, p: Progress) -> Progress:
    """A checkpoint of every setting at iteration ``p.it``."""
    t_start = time.perf_counter()
    for gi, (g, ckpt) in enumerate(zip(setup.groups, setup.ckpts)):
        ckpt.save(
            p.it,
            _slice(p.state, gi, setup.n),
            {
                "iteration": p.it,
                "env_steps": p.it * setup.steps_per_it,
                "seed": setup.options.seed,
                "num_seeds": setup.n,
                "config": config_to_dict(g.config),
            },
        )
    return p._replace(saved=p.it, times=p.times.plus(side=time.perf_counter() - t_start))


def _report(setup: Setup, programs: Programs, start: Start, p: Progress, metrics: dict) -> None:
    """The progress display's update after a chunk."""
    it, total_its, runs, steps_per_it = p.it, setup.total_its, setup.S * setup.n, setup.steps_per_it
    latest = {name: v[:, -1] for name, v in metrics.items()}
    fields = {"iteration": f"{it}/{total_its}", "train return": fmt(_mean(latest["episode_return"]), ".1f")}
    if p.latest_eval:
        fields["eval return det/sto"] = fmt_parts(
            [_mean([r[f"{mode}_return_mean"] for r in p.latest_eval]) for mode in ("deterministic", "stochastic")],
            ".1f",
        )
    fields["kl_max"] = fmt(_mean(latest.get("kl_max", np.nan)), ".3g")
    fields.update(_bound_fields(setup.config, latest, setup.eps))
    if not programs.evaluation.done():
        fields["compiling"] = "evaluation (in the background)"
    # speed over all runs and ETA from the wall time since the start, waiting for compilation excluded
    wall = time.perf_counter() - start.wall - p.times.waited
    speed = (it - start.it) * steps_per_it * runs / wall if wall > 0 else float("nan")
    eta = (total_its - it) * steps_per_it * runs / speed if speed > 0 else None
    setup.display.update(it * steps_per_it, speed, eta, fields)


def _stop_requested(setup: Setup, p: Progress, last: bool) -> tuple[Progress, bool]:
    """Whether a stop signal arrived in any process; if so (and this was not the last chunk), after a checkpoint
    at the iteration reached, with the status the signal gives."""
    interrupts, it = setup.interrupts, p.it
    interrupts.poll()
    # read once per chunk, by every process at the same point: several processes stop at the same chunk end,
    # each with the signal one of them got (a signal during the last chunk: the run is finished anyway)
    interrupts.share(par.max_process(interrupts.code))
    if not interrupts.requested or last:
        return p, False
    if p.saved != it:  # the signal may have come after this chunk's checkpoint decision
        p = _save(setup, p)
    p = p._replace(status=interrupts.status)
    resume_command = setup.options.resume_command or f"tr-jax train --resume {resume_dir(setup.groups)}"
    setup.display.log(
        f"{p.status} at iteration {it} ({it * setup.steps_per_it:,} env steps) by "
        f"{interrupts.signal}; checkpoint {setup.ckpts[0].path(it) if setup.S == 1 else it} written; "
        f"continue with: {resume_command}"
    )
    return p, True


# --- the end --------------------------------------------------------------------------------------------------


def _finish(setup: Setup, start: Start, p: Progress) -> list[RunResult]:
    """summary.json of every setting, the results; raises :class:`~tr_jax.run.TrainingDiverged` if asked to."""
    results = _results(setup, p, loop_seconds=time.perf_counter() - start.wall - p.times.waited)
    diverged = []
    for g, ckpt, result in zip(setup.groups, setup.ckpts, results):
        write_summary(g.rd, g.config, result, ckpt)
        seeds = [(s, int(i)) for s, i in enumerate(result.diverged_at) if i >= 0]
        if p.status == "diverged" and seeds:
            kept = ckpt.latest()
            diverged.append(Divergence(g.label, seeds, ckpt.path(kept) if kept is not None else None))
        ckpt.close()
    if p.status == "diverged":
        frozen = setup.options.on_divergence == "continue"
        message = divergence_message(diverged, sweep=setup.S > 1, frozen=frozen)
        setup.display.log(message)
        if setup.options.on_divergence == "raise":
            raise TrainingDiverged(message, results[0] if setup.S == 1 else results, diverged)
    return results


def _results(setup: Setup, p: Progress, loop_seconds: float) -> list[RunResult]:
    """One :class:`~tr_jax.run.RunResult` per setting for the loop at ``p``."""
    n = setup.n
    metrics = {name: np.concatenate([c[name] for c in p.chunks], axis=1) for name in p.chunks[0]} if p.chunks else {}
    diverged_at = par.to_host(p.state.diverged_at)
    its_run = sum(c["iteration"].shape[1] for c in p.chunks)
    runs = setup.S * n
    speed = its_run * setup.steps_per_it * runs / p.times.run if p.times.run > 0 else float("nan")
    return [
        RunResult(
            state=_slice(p.state, gi, n),
            metrics=_slice(metrics, gi, n),
            evals=list(p.evals[gi]),
            status=p.status,
            iteration=p.it,
            steps_per_second=speed,
            compile_seconds=p.times.compile,
            run_seconds=p.times.run,
            loop_seconds=loop_seconds,
            eval_checkpoint_seconds=p.times.side,
            diverged_at=diverged_at[gi * n : (gi + 1) * n],
            run_dir=g.rd.path,
            signal=setup.interrupts.signal if p.status in ("interrupted", "preempted") else None,
        )
        for gi, g in enumerate(setup.groups)
    ]


# --- small helpers --------------------------------------------------------------------------------------------


def _per_run(keys, S: int):
    """The seeds' keys ``[n]`` for every run ``[S * n]`` (setting-major): seed ``s`` of every setting gets key
    ``s``, as in a plain run."""
    return jax.random.wrap_key_data(jnp.asarray(np.tile(np.asarray(jax.random.key_data(keys)), (S, 1))))


def _eval_keys(setup: Setup, it: int):
    """The evaluation keys ``[S * n]`` at iteration ``it``."""
    return _per_run(jax.random.split(jax.random.fold_in(setup.eval_root, it), setup.n), setup.S)


def _slice(tree, g: int, n: int):
    """Setting ``g``'s runs of a batched tree (leaves ``[S * n, ...]`` -> ``[n, ...]``)."""
    return jax.tree.map(lambda x: x[g * n : (g + 1) * n], tree)


def _where(g: Group) -> str:
    return f"{g.rd.path}" if not g.label else f"{g.rd.path} ({g.label})"


def _due(every: int, before: int, after: int, last: bool) -> bool:
    """True if a multiple of ``every`` lies in (before, after], or at the end of the run."""
    return last or (every > 0 and after // every > before // every)


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
