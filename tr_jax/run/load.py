"""Reading a run directory back: the config a resumed run continues with (:func:`resume_config`), a checkpoint
with the trainer it belongs to (:func:`load_checkpoint`), and a checkpoint's evaluation (:func:`evaluate_run`)."""

from __future__ import annotations

import jax
import numpy as np

from tr_jax import rundir as R
from tr_jax.checkpoint import Checkpoints
from tr_jax.config import RESUME_SAFE, TrainConfig, config_from_dict, config_to_dict
from tr_jax.run.interrupts import MujocoLog


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


def load_checkpoint(run_dir: str, checkpoint: int | None = None, env=None):
    """Restores a checkpoint of ``run_dir`` (the newest by default); ``env``: the
    env object the run was trained on, if it was given one (see :func:`~tr_jax.run.run`).

    Returns ``(trainer, state, meta)``: the run's :class:`~tr_jax.train.Trainer`
    (built from its ``config.json``), the TrainState with leaves
    ``[num_seeds, ...]`` and the checkpoint's metadata (``iteration``, ``env_steps``, ...).
    MuJoCo's warnings while building the env go to the run directory's ``mujoco.log``.
    """
    from tr_jax.train import make_trainer

    rd = R.RunDir.existing(run_dir)
    config = config_from_dict(R.read_json(rd.config), where=rd.config)
    num_seeds = int(rd.info()["num_seeds"])
    with MujocoLog() as mujoco_log:
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
