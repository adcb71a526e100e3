"""Proximal Policy Optimisation as an :class:`~tr_jax.algorithms.base.Algorithm`.

Per iteration: ``num_epochs`` x ``num_minibatches`` Optax steps (via
:func:`~tr_jax.algorithms.core.actor_critic_epochs`; the value function takes
``value_epochs`` x ``value_minibatches``, jointly when the counts agree) on

    L = -mean(min(rho A, clip(rho, 1 - c, 1 + c) A)) - entropy_coef * H
        + value loss (optionally clipped around the old value),

(:func:`tr_jax.losses.ppo_clipped_surrogate`) with per-minibatch advantage normalisation, global-norm gradient
clipping and a linear learning-rate decay to zero over ``lr_decay_steps`` (each as configured). Policy and
value have separate parameters and optimisers (policy_lr / value_lr).
"""

from __future__ import annotations

from tr_jax import distributions as D
from tr_jax import parallel as par
from tr_jax.algorithms.base import Algorithm, AlgoState, Batch
from tr_jax.algorithms.core import (
    Critic,
    actor_critic_epochs,
    epoch_schedule,
    make_optimizer,
    normalize_advantage,
    policy_divergence,
    value_optimizer,
)
from tr_jax.losses import ppo_clipped_surrogate

# The TrainConfig fields PPO reads that not every algorithm does: tr_jax.config.validate refuses to set, sweep or
# search another algorithm's field (tests/algorithms/test_reads.py checks this against what make_ppo and its
# update read).
READS = ("clip_ratio", "policy_lr")


def make_ppo(config, policy, value, axis_name=None) -> Algorithm:
    """Builds PPO for ``config`` over a policy/value pair from :mod:`tr_jax.networks`.

    Reads clip_ratio, entropy_coef, policy_lr and value_lr from the update's
    :class:`~tr_jax.hyperparams.Hyperparams`.
    """
    policy_steps = config.num_epochs * config.num_minibatches
    cov_type = policy.cov_type

    def init(policy_params, value_params):
        return AlgoState(
            policy_params,
            value_params,
            make_optimizer(config, config.policy_lr, policy_steps, config.lr_decay).init(policy_params),
            value_optimizer(config, config.value_lr).init(value_params),
        )

    def loss_fn(pp, mb: Batch, hp):
        mean, scale = policy.apply(pp, mb.obs)
        adv = normalize_advantage(mb.advantage, axis_name=axis_name) if config.normalize_advantage else mb.advantage
        pg_loss, aux = ppo_clipped_surrogate(
            D.log_prob(mb.action, mean, scale, cov_type), mb.log_prob, adv, hp.clip_ratio
        )
        entropy = D.entropy(scale, cov_type).mean()
        total = pg_loss - hp.entropy_coef * entropy
        return total, {"policy_loss": pg_loss, **aux}

    def update(key, state: AlgoState, batch: Batch, iteration, hp):
        del iteration  # the Optax schedules count steps themselves
        state, metrics = actor_critic_epochs(
            key,
            state,
            batch,
            epoch_schedule(config),
            lambda pp, mb: loss_fn(pp, mb, hp),
            make_optimizer(config, hp.policy_lr, policy_steps, config.lr_decay),
            Critic(value.apply, config.value_clip, value_optimizer(config, hp.value_lr)),
            axis_name,
        )
        metrics.update(policy_divergence(policy, state.policy_params, par.local_rows(batch, axis_name), axis_name))
        return state, metrics

    return Algorithm(init, update)
