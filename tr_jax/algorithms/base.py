"""Types shared by the rollout core and the algorithms (PPO, TRPO, TRPL).

Every algorithm is an :class:`Algorithm`: a pair of pure functions
``init(policy_params, value_params) -> AlgoState`` and
``update(key, state, batch, iteration, hparams) -> (state, metrics)``, built by a
``make_<algo>(config, policy, value, axis_name=None)`` closure. ``hparams`` is a
:class:`~tr_jax.hyperparams.Hyperparams`: the plain-number settings are read
from it, not from the config, so runs with different values share one
program. ``axis_name`` names the data-parallel mesh axis when ``update`` runs
inside the trainer's ``shard_map`` (see :mod:`tr_jax.parallel`); the batch is
then the global one on every device. The shared training loop in
``tr_jax/train.py`` collects a rollout, computes GAE, builds a :class:`Batch`
and calls ``update``; it never knows which algorithm it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Params = Any
Metrics = dict  # str -> scalar jax.Array


class Batch(NamedTuple):
    """One iteration's training data, flattened over (time, env): N = T * E.

    obs:        [N, obs_dim] normalised observations the policy saw.
    action:     [N, k] sampled (unclipped) actions.
    log_prob:   [N] log-density of ``action`` under the behaviour policy.
    old_mean:   [N, k] behaviour policy mean.
    old_scale:  [N, k] (diag) or [N, k, k] (full Cholesky / sqrt) behaviour scale.
    advantage:  [N] GAE advantages (not normalised).
    returns:    [N] value targets (advantage + old value).
    old_value:  [N] value predictions at collection time.
    value_obs:  [N, dv] normalised observations the value function saw, when it
                sees its own entry (``TrainConfig.value_obs_key``); None: ``obs``.
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    old_mean: jax.Array
    old_scale: jax.Array
    advantage: jax.Array
    returns: jax.Array
    old_value: jax.Array
    value_obs: jax.Array | None = None

    @property
    def critic_obs(self) -> jax.Array:
        """``[N, d]`` what the value function sees: ``value_obs``, or ``obs`` when it has none of its own."""
        return self.obs if self.value_obs is None else self.value_obs


class AlgoState(NamedTuple):
    """Learnable state of an algorithm.

    policy_params / value_params: Flax parameter pytrees.
    policy_opt / value_opt: Optax states (``optax.EmptyState()`` when unused).
    extra: algorithm-specific pytree (e.g. TRPL's entropy-schedule anchor).
    """

    policy_params: Params
    value_params: Params
    policy_opt: Any
    value_opt: Any
    extra: Any = ()


class Algorithm(NamedTuple):
    """init/update pair. ``update`` is pure and jittable."""

    init: Callable[[Params, Params], AlgoState]
    update: Callable[[jax.Array, AlgoState, Batch, jax.Array, Any], tuple[AlgoState, Metrics]]
