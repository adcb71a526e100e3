"""The host loop: ``run(config, ...)`` trains in jitted chunks and reports, evaluates and saves between them.

One compiled program per chunk length (``config.chunk_iterations``; a shorter
last chunk compiles once more), all seeds vmapped. After every chunk:

* ``metrics.jsonl`` gets one line per iteration and seed (flushed);
* every ``eval_every`` iterations (at the first chunk end at or after each
  multiple, and at the end) ``evaluate`` runs ``eval_episodes`` full episodes
  per seed, deterministic and sampled, into ``eval.jsonl``;
* every ``checkpoint_every`` iterations (likewise, and at the end) the whole
  TrainState goes to an Orbax checkpoint;
* the progress display and ``progress_fn`` are updated.

Faults: a NaN (the trainer's guard) stops the run at the end of its chunk
(:class:`TrainingDiverged`, naming the iteration; the last good checkpoint
stays). The first Ctrl-C (SIGINT) finishes the chunk in flight, writes a
checkpoint and returns (status "interrupted"); a second one exits at once.
A resumed run (``resume=True``) restores the newest checkpoint, cuts the
``.jsonl`` files back to it and continues bit-exactly: the same parameters and
metrics as a run that was never stopped.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from tr_jax import rundir as R
from tr_jax.checkpoint import Checkpoints
from tr_jax.config import RESUME_SAFE, TrainConfig, config_from_dict, config_to_dict, validate
from tr_jax.progress import fmt, make_progress

_EVAL_STREAM = 0x5EED  # fold_in tag: evaluation keys never touch the training key stream


class TrainingDiverged(RuntimeError):
    """Raised by :func:`run` when the NaN guard fired; ``.result`` holds the run."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


class RunResult(NamedTuple):
    """What :func:`run` returns.

    state: final TrainState, leaves with a leading ``[num_seeds]`` dim.
    metrics: dict of numpy arrays ``[num_seeds, iterations run by this call]``.
    evals: the rows written to ``eval.jsonl`` by this call.
    status: "finished", "interrupted" or "diverged".
    iteration: iterations done (the checkpoint step at the end).
    steps_per_second: env steps per second of training (compile excluded).
    compile_seconds: compiling the chunk(s) and the evaluation.
    run_seconds: wall time of the training chunks.
    loop_seconds: wall time of the whole loop, compilation excluded (chunks, files,
      progress, evaluations, checkpoints).
    eval_checkpoint_seconds: the part of ``loop_seconds`` spent evaluating and checkpointing.
    diverged_at: ``[num_seeds]`` iteration where the NaN guard fired, -1 where fine.
    run_dir: the run directory.
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


def resume_config(saved: TrainConfig, given: Optional[TrainConfig]) -> tuple[TrainConfig, dict]:
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
    """First SIGINT sets ``requested``; after it the default handler is back, so a second one exits at once."""

    def __init__(self, log: Callable[[str], None]):
        self.requested = False
        self._log = log
        self._previous = None

    def _handler(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        self._log("interrupt: finishing this chunk and writing a checkpoint (Ctrl-C again to exit at once)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _wait(tree, interrupts: _Interrupts):
    """Blocks until ``tree`` is computed, polling so that a SIGINT is handled promptly."""
    leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "is_ready")]  # (typed PRNG keys have none)
    while not all(x.is_ready() for x in leaves):
        time.sleep(0.02)
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


def _bound_fields(config: TrainConfig, m: dict) -> dict:
    """Trust-region usage of the latest iteration (mean over seeds), as display strings."""
    if config.algorithm == "trpl":
        return {"mean/cov part": f"{fmt(100 * m['mean_part_max'] / config.eps_mean, '.0f')}%/"
                                 f"{fmt(100 * m['cov_part_max'] / config.eps_cov, '.0f')}% of bound"}
    if config.algorithm == "trpo":
        return {"kl/max_kl": fmt(m["kl_mean"] / config.max_kl, ".2f")}
    return {}


def _mean(x):
    x = np.asarray(x, np.float64)
    return float(np.nanmean(x)) if np.any(np.isfinite(x)) else float("nan")


def run(config: Optional[TrainConfig] = None, seed: int = 0, num_seeds: int = 1, run_dir: Optional[str] = None,
        resume: bool = False, overwrite: bool = False, progress: str = "auto",
        progress_fn: Optional[Callable[[int, dict], None]] = None, on_divergence: str = "raise",
        runs_root: str = "runs", env=None) -> RunResult:
    """Trains ``config`` for ``num_seeds`` seeds (vmapped) with progress, metrics files, evaluation and checkpoints.

    Args:
      config: the training config; with ``resume`` it may be None (continue as
        saved) or differ from the saved one only in ``RESUME_SAFE`` fields.
      seed: int; the seeds' keys are ``jax.random.split(jax.random.key(seed), num_seeds)``.
      num_seeds: seeds trained at once.
      run_dir: the run directory (default ``runs_root/<env>-<algo>-<time>``).
      resume: continue ``run_dir`` from its newest checkpoint (seed and
        num_seeds come from the run directory).
      overwrite: start ``run_dir`` again even if it exists.
      progress: "auto" (a bar on a terminal, lines otherwise), "bar", "lines", "none".
      progress_fn: ``progress_fn(env_steps, metrics)`` after every chunk, where
        ``metrics`` maps names to the chunk's ``[num_seeds, n]`` arrays and, after
        an evaluation, ``eval/<name>`` to ``[num_seeds]`` means.
      on_divergence: "raise" (:class:`TrainingDiverged`) or "return".
      env: an env object with the Brax ``Env`` API to train on instead of
        ``config.env_name`` (see :func:`tr_jax.train.make_trainer`); the run
        directory records only the config, so pass the same env again to
        resume (and to :func:`load_checkpoint`).
    Returns:
      :class:`RunResult`.
    """
    if on_divergence not in ("raise", "return"):
        raise ValueError(f"on_divergence must be 'raise' or 'return', got {on_divergence!r}")
    if resume:
        if run_dir is None:
            raise ValueError("resume needs the run directory to continue")
        rd = R.RunDir.existing(run_dir)
        saved = config_from_dict(R.read_json(rd.config), where=rd.config)
        config, changed = resume_config(saved, config)
        info = rd.info()
        seed, num_seeds = int(info["seed"]), int(info["num_seeds"])
    else:
        if config is None:
            raise ValueError("run needs a config (or resume=True)")
        changed = {}
    validate(config)
    if not isinstance(num_seeds, int) or num_seeds < 1:
        raise ValueError(f"num_seeds must be a positive int, got {num_seeds!r}")

    from tr_jax.train import make_trainer

    with _MujocoLog() as mujoco_log:
        trainer = make_trainer(config, env)  # checks the env before any file is written
        if not resume:
            rd = R.RunDir.create(run_dir or os.path.join(runs_root, R.default_name(config)), overwrite=overwrite)
            R.write_json(rd.config, config_to_dict(config))
            rd.write_info(seed, num_seeds)
        mujoco_log.path = rd.mujoco_log
        mujoco_log.flush()
        display = make_progress(progress)
        with _Interrupts(display.log) as interrupts:
            try:
                return _loop(config, trainer, rd, seed, num_seeds, resume, changed, display, interrupts, progress_fn,
                             on_divergence)
            finally:
                display.close()


def _loop(config, trainer, rd, seed, num_seeds, resume, changed, display, interrupts, progress_fn, on_divergence):
    total_its = config.num_iterations
    steps_per_it = config.batch_size * config.action_repeat
    keys = jax.random.split(jax.random.key(seed), num_seeds)
    init = jax.jit(jax.vmap(trainer.init))
    chunk_fn = jax.jit(jax.vmap(trainer.train_chunk, in_axes=(0, None)), static_argnums=1)
    eval_fn = jax.jit(jax.vmap(trainer.evaluate, in_axes=(0, 0, None)), static_argnums=2)
    eval_root = jax.random.fold_in(jax.random.key(seed), _EVAL_STREAM)
    ckpt = Checkpoints(rd.checkpoints, keep=config.keep_checkpoints)

    state = init(keys)
    it = 0
    if resume:
        state, meta = ckpt.restore(None, state)
        it = int(meta["iteration"])
        dropped = rd.cut(rd.metrics, it) + rd.cut(rd.eval, it)
        if changed:  # only once the checkpoint is known to restore
            R.write_json(rd.config, config_to_dict(config))
        display.log(f"resumed {rd.path} at iteration {it} ({it * steps_per_it:,} env steps)"
                    + (f"; dropped {dropped} lines written after that checkpoint" if dropped else "")
                    + (f"; changed {', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changed.items())}"
                       if changed else ""))
    else:
        display.log(f"run directory {rd.path}")

    compiled, compile_s, side_s = {}, 0.0, 0.0  # side: evaluation and checkpoints (eval compile excluded)

    def program(n):
        nonlocal compile_s
        if n not in compiled:
            display.status(f"compiling a {n}-iteration chunk ({num_seeds} seed(s))...")
            t0 = time.perf_counter()
            compiled[n] = chunk_fn.lower(state, n).compile()
            compile_s += time.perf_counter() - t0
            display.log(f"compiled a {n}-iteration chunk in {time.perf_counter() - t0:.1f} s")
        return compiled[n]

    def evaluate(it):
        nonlocal compile_s, side_s
        ekeys = jax.random.split(jax.random.fold_in(eval_root, it), num_seeds)
        if "eval" not in compiled:
            t0 = time.perf_counter()
            compiled["eval"] = eval_fn.lower(state, ekeys, config.eval_episodes).compile()
            compile_s += time.perf_counter() - t0
        t_start = time.perf_counter()
        out = {k: np.asarray(v) for k, v in _wait(compiled["eval"](state, ekeys), interrupts).items()}
        rows = []
        for s in range(num_seeds):
            row = {"iteration": it - 1, "env_steps": it * steps_per_it, "seed": s}
            for mode in ("deterministic", "stochastic"):
                r, ln = out[f"{mode}_return"][s], out[f"{mode}_length"][s]
                row.update({f"{mode}_return_mean": r.mean(), f"{mode}_return_std": r.std(),
                            f"{mode}_length_mean": ln.mean()})
            rows.append(row)
        rd.append(rd.eval, rows)
        side_s += time.perf_counter() - t_start
        return rows

    def save(it):
        nonlocal side_s
        t_start = time.perf_counter()
        ckpt.save(it, state, {"iteration": it, "env_steps": it * steps_per_it, "seed": seed, "num_seeds": num_seeds,
                              "config": config_to_dict(config)})
        side_s += time.perf_counter() - t_start

    display.start(total_its * steps_per_it, it * steps_per_it)
    chunks, evals, status, run_s = [], [], "finished", 0.0
    it_start, wall_start = it, time.perf_counter()
    latest_eval = None
    while it < total_its:
        n = min(config.chunk_iterations, total_its - it)
        fn = program(n)
        t0 = time.perf_counter()
        state, metrics = _wait(fn(state), interrupts)
        run_s += time.perf_counter() - t0
        metrics = {k: np.asarray(v) for k, v in metrics.items()}
        chunks.append(metrics)
        rd.append(rd.metrics, ({"iteration": int(metrics["iteration"][s, i]), "seed": s,
                                "env_steps": int(metrics["env_steps"][s, i]),
                                **{k: v[s, i] for k, v in metrics.items() if k not in ("iteration", "env_steps")}}
                               for i in range(n) for s in range(num_seeds)))
        before, it = it, it + n
        diverged_at = np.asarray(state.diverged_at)
        last = it >= total_its
        info = {}
        if (diverged_at >= 0).any():
            status = "diverged"
        else:
            if _due(config.eval_every, before, it, last):
                rows = evaluate(it)
                evals += rows
                latest_eval = rows
                info = {f"eval/{k}": np.array([r[k] for r in rows]) for k in rows[0] if k.endswith("_mean")}
            if _due(config.checkpoint_every, before, it, last) or interrupts.requested:
                save(it)
        latest = {k: _mean(v[:, -1]) for k, v in metrics.items()}
        fields = {"iteration": f"{it}/{total_its}", "train return": fmt(latest["episode_return"], ".1f")}
        if latest_eval:
            fields["eval return det/sto"] = (f"{fmt(_mean([r['deterministic_return_mean'] for r in latest_eval]), '.1f')}/"
                                             f"{fmt(_mean([r['stochastic_return_mean'] for r in latest_eval]), '.1f')}")
        fields["kl_max"] = fmt(latest.get("kl_max"), ".3g")
        fields.update(_bound_fields(config, latest))
        # speed over all seeds and ETA from the wall time since the start, compilation excluded
        wall = time.perf_counter() - wall_start - compile_s
        speed = (it - it_start) * steps_per_it * num_seeds / wall if wall > 0 else float("nan")
        eta = (total_its - it) * steps_per_it * num_seeds / speed if speed > 0 else None
        display.update(it * steps_per_it, speed, eta, fields)
        if progress_fn is not None:
            progress_fn(it * steps_per_it, {**metrics, **info})
        if status == "diverged":
            break
        if interrupts.requested:
            status = "interrupted"
            display.log(f"interrupted at iteration {it}; checkpoint written to {ckpt.path(it)}; "
                        f"continue with: tr-jax train --resume {rd.path}")
            break

    loop_s = time.perf_counter() - wall_start - compile_s
    metrics = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]} if chunks else {}
    diverged_at = np.asarray(state.diverged_at)
    steps_run = sum(c["iteration"].shape[1] for c in chunks) * steps_per_it * num_seeds
    result = RunResult(state=state, metrics=metrics, evals=evals, status=status, iteration=it,
                       steps_per_second=steps_run / run_s if run_s > 0 else float("nan"),
                       compile_seconds=compile_s, run_seconds=run_s, loop_seconds=loop_s,
                       eval_checkpoint_seconds=side_s, diverged_at=diverged_at, run_dir=rd.path)
    _write_summary(rd, config, result, ckpt)
    ckpt.close()
    if status == "diverged":
        where = ", ".join(f"seed {s}: iteration {i}" for s, i in enumerate(diverged_at) if i >= 0)
        kept = ckpt.latest()
        message = (f"training diverged at iteration {int(diverged_at[diverged_at >= 0].min())} ({where}): losses or "
                   f"parameters became non-finite; stopped at the end of the chunk. "
                   + (f"The last good checkpoint is {ckpt.path(kept)}." if kept is not None
                      else "No checkpoint had been written yet."))
        display.log(message)
        if on_divergence == "raise":
            raise TrainingDiverged(message, result)
    return result


def _write_summary(rd, config, result: RunResult, ckpt: Checkpoints):
    evals = R.read_jsonl(rd.eval)  # the whole run's, also before a resume
    per_seed = []
    for s in range(len(result.diverged_at)):
        rows = [r for r in evals if r["seed"] == s]
        det = [r["deterministic_return_mean"] for r in rows if r["deterministic_return_mean"] is not None]
        per_seed.append({
            "seed": s,
            "final_eval_return": rows[-1]["deterministic_return_mean"] if rows else None,
            "final_eval_return_stochastic": rows[-1]["stochastic_return_mean"] if rows else None,
            "best_eval_return": max(det) if det else None,
            "best_eval_iteration": rows[int(np.argmax(det))]["iteration"] if det else None,
            "diverged_at": int(result.diverged_at[s]) if result.diverged_at[s] >= 0 else None,
        })
    R.write_json(rd.summary, {
        "status": result.status, "iterations": result.iteration,
        "env_steps": result.iteration * config.batch_size * config.action_repeat,
        "env_steps_per_second": R.clean(result.steps_per_second), "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds, "seeds": per_seed, "checkpoints": ckpt.steps(),
        "versions": R.versions(),
    })


def load_checkpoint(run_dir: str, checkpoint: Optional[int] = None, env=None):
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


def evaluate_run(run_dir: str, num_episodes: int = 10, checkpoint: Optional[int] = None, seed: int = 0,
                 env=None) -> dict:
    """Evaluates a checkpoint of ``run_dir`` (the newest by default); ``env`` as for :func:`load_checkpoint`.

    Returns a dict with ``iteration``, ``env_steps`` and numpy arrays
    ``[num_seeds, num_episodes]``: ``deterministic_return``/``_length``
    (mean action) and ``stochastic_return``/``_length`` (sampled actions).
    """
    trainer, state, meta = load_checkpoint(run_dir, checkpoint, env)
    num_seeds = state.iteration.shape[0]
    keys = jax.random.split(jax.random.key(seed), num_seeds)
    out = jax.jit(jax.vmap(trainer.evaluate, in_axes=(0, 0, None)), static_argnums=2)(state, keys, num_episodes)
    return {"iteration": int(meta["iteration"]), "env_steps": int(meta["env_steps"]),
            **{k: np.asarray(v) for k, v in out.items()}}
