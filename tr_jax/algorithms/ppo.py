"""Proximal Policy Optimisation as an :class:`~tr_jax.algorithms.base.Algorithm`.

Per iteration: ``num_epochs`` x ``num_minibatches`` Optax steps (via
:func:`~tr_jax.algorithms.core.minibatch_epochs`) on

    L = -mean(min(rho A, clip(rho, 1 - c, 1 + c) A)) - entropy_coef * H
        + value loss (optionally clipped around the old value),

with per-minibatch advantage normalisation, global-norm gradient clipping and
a linear learning-rate decay to zero over the run. Policy and value have
separate parameters and optimisers (policy_lr / value_lr).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tr_jax import distributions as D
from tr_jax.algorithms.base import Algorithm, AlgoState, Batch
from tr_jax.algorithms.core import (actor_critic_epochs, make_optimizer, normalize_advantage, policy_divergence,
                                    value_loss)


def make_ppo(config, policy, value) -> Algorithm:
    """Builds PPO for ``config`` over a policy/value pair from :mod:`tr_jax.networks`."""
    steps = config.num_epochs * config.num_minibatches
    policy_opt = make_optimizer(config, config.policy_lr, steps)
    value_opt = make_optimizer(config, config.value_lr, steps)
    kind = policy.kind

    def init(policy_params, value_params):
        return AlgoState(policy_params, value_params, policy_opt.init(policy_params), value_opt.init(value_params))

    def loss_fn(params, mb: Batch):
        pp, vp = params
        mean, scale = policy.apply(pp, mb.obs)
        log_prob = D.log_prob(mb.action, mean, scale, kind)
        log_ratio = log_prob - mb.log_prob
        ratio = jnp.exp(log_ratio)
        adv = normalize_advantage(mb.advantage) if config.normalize_advantage else mb.advantage
        surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - config.clip_ratio, 1 + config.clip_ratio) * adv)
        pg_loss = -surrogate.mean()
        entropy = D.entropy(scale, kind).mean()
        v_loss = value_loss(value.apply, vp, mb, config.value_clip)
        total = pg_loss - config.entropy_coef * entropy + v_loss
        aux = {
            "policy_loss": pg_loss, "value_loss": v_loss,
            "approx_kl": ((ratio - 1) - log_ratio).mean(),
            "clip_fraction": (jnp.abs(ratio - 1) > config.clip_ratio).mean(),
        }
        return total, aux

    def update(key, state: AlgoState, batch: Batch, iteration):
        del iteration  # the Optax schedules count steps themselves
        state, metrics = actor_critic_epochs(key, state, batch, config.num_epochs, config.num_minibatches, loss_fn,
                                             policy_opt, value_opt)
        metrics.update(policy_divergence(policy, state.policy_params, batch))
        return state, metrics

    return Algorithm(init, update)
