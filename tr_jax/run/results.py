"""What a run reports when it stops: :class:`RunResult` (returned), ``summary.json`` (written), and for a run
whose NaN guard fired, :class:`TrainingDiverged` with one :class:`Divergence` per setting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from tr_jax import rundir as R
from tr_jax.checkpoint import Checkpoints


class RunResult(NamedTuple):
    """What :func:`~tr_jax.run.run` returns.

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


class TrainingDiverged(RuntimeError):
    """Raised by :func:`~tr_jax.run.run` when the NaN guard fired; ``.result`` holds the run (a list of them for a
    sweep), ``.diverged`` a :class:`Divergence` per setting that diverged."""

    def __init__(self, message, result, diverged=()):
        super().__init__(message)
        self.result = result
        self.diverged = list(diverged)


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


def write_summary(rd: R.RunDir, config, result: RunResult, ckpt: Checkpoints) -> None:
    """Writes ``summary.json`` of the run in ``rd`` (trained with ``config``): ``result``'s status, iterations and
    timings, and per seed the final and best evaluation returns of the whole run (its ``eval.jsonl``, the rows
    from before a resume included), and the checkpoints kept."""
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
