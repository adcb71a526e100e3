"""Trained policies out of run directories: :func:`load_policy` (``tr_jax.load_policy``).

A run directory (``tr-jax train``) holds checkpoints of every seed; :func:`load_policy` restores one seed of
one checkpoint as a :class:`LoadedPolicy`: its :class:`~tr_jax.policy.acting.ActingPolicy` (the functions with
the parameters and the observation statistics bound in, ready for ``jax.jit``, ``jax.vmap`` or ``jax.export``:
``tr-jax export``) and what the run directory adds (sizes, the checkpoint's iteration, the run's config and env).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

from tr_jax.config import TrainConfig
from tr_jax.distributions import CovType
from tr_jax.envs.wrappers import VecEnv
from tr_jax.policy.acting import ActingPolicy, acting_policy


class LoadedPolicy(NamedTuple):
    """One seed's policy of a checkpoint: its :class:`~tr_jax.policy.acting.ActingPolicy` and the run's context.

    acting, act, distribution, cov_type: the ActingPolicy and its fields (``policy.act`` is ``policy.acting.act``).
    obs_dim, action_dim: sizes (``obs`` as the run's env gives them).
    iteration, env_steps: of the checkpoint.
    config: the run's :class:`~tr_jax.config.TrainConfig`.
    env: the run's :class:`~tr_jax.envs.wrappers.VecEnv` (its ``env`` attribute: the raw env).
    """

    acting: ActingPolicy
    obs_dim: int
    action_dim: int
    iteration: int
    env_steps: int
    config: TrainConfig
    env: VecEnv

    @property
    def act(self) -> Callable:
        """``act(obs [..., obs_dim], key=None) -> action [..., k]``: jittable; observation normalisation
        included; the mean action when ``key`` is None, else a sample; clipped to ``[-1, 1]`` (the env's
        action range)."""
        return self.acting.act

    @property
    def distribution(self) -> Callable:
        """``distribution(obs [..., obs_dim]) -> (mean [..., k], scale)``: the action distribution (scale of
        :attr:`cov_type`)."""
        return self.acting.distribution

    @property
    def cov_type(self) -> CovType:
        """The scale parameterisation: ``"diag"``, ``"full"`` or ``"sqrt"``."""
        return self.acting.cov_type


def load_policy(run_dir: str, seed: int = 0, checkpoint: int | None = None, env=None) -> LoadedPolicy:
    """Restores seed ``seed`` (``0 .. num_seeds - 1``) of ``run_dir``'s checkpoint ``checkpoint`` (its
    iteration; default the newest) as a :class:`LoadedPolicy`.

    ``env``: the env object the run was trained on, if it was given one (as for :func:`tr_jax.run.run`).
    Example::

        policy = tr_jax.load_policy("runs/ant")
        action = jax.jit(policy.act)(obs)                      # mean action, obs [..., obs_dim]
        action = jax.jit(policy.act)(obs, jax.random.key(0))   # sampled
    """
    from tr_jax.run import load_checkpoint

    trainer, state, meta = load_checkpoint(run_dir, checkpoint, env)
    num_seeds = state.iteration.shape[0]
    if not 0 <= seed < num_seeds:
        raise ValueError(f"policy seed {seed} out of range: {run_dir} has {num_seeds} seed(s)")
    state = jax.tree.map(lambda x: x[seed], state)
    return LoadedPolicy(
        acting_policy(trainer.policy, state.algo.policy_params, state.obs_stats, trainer.config),
        trainer.policy.obs_dim,
        trainer.policy.action_dim,
        int(meta["iteration"]),
        int(meta["env_steps"]),
        trainer.config,
        trainer.env,
    )


__all__ = ["LoadedPolicy", "load_policy"]
