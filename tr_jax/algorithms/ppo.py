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
import optax

from tr_jax import distributions as D
from tr_jax.algorithms.base import Algorithm, AlgoState, Batch
from tr_jax.algorithms.core import minibatch_epochs, normalize_advantage


def make_optimizer(config, lr: float, steps_per_iteration: int) -> optax.GradientTransformation:
    """Adam with optional global-norm clipping and linear decay to 0 over the run.

    ``steps_per_iteration``: Optax updates per training iteration (the decay
    spans ``config.num_iterations * steps_per_iteration`` updates).
    """
    if config.lr_decay:
        lr = optax.linear_schedule(lr, 0.0, max(1, config.num_iterations * steps_per_iteration))
    parts = []
    if config.max_grad_norm is not None:
        parts.append(optax.clip_by_global_norm(config.max_grad_norm))
    parts.append(optax.adam(lr, eps=1e-5))
    return optax.chain(*parts)


def value_loss(value_fn, value_params, mb: Batch, clip):
    """0.5 * mean squared error to ``mb.returns``; clipped PPO-style if ``clip``."""
    v = value_fn(value_params, mb.obs)
    err = (v - mb.returns) ** 2
    if clip is not None:
        v_clipped = mb.old_value + jnp.clip(v - mb.old_value, -clip, clip)
        err = jnp.maximum(err, (v_clipped - mb.returns) ** 2)
    return 0.5 * err.mean()


def policy_divergence(policy, params, batch: Batch):
    """KL(new || old) per state over ``batch``: mean/max of the total and its parts, entropy."""
    mean, scale = policy.apply(params, batch.obs)
    m, c = D.kl_decomposed(mean, scale, batch.old_mean, batch.old_scale, policy.cov_type)
    kl = m + c
    return {
        "kl_mean": kl.mean(), "kl_max": kl.max(),
        "kl_mean_part_mean": m.mean(), "kl_mean_part_max": m.max(),
        "kl_cov_part_mean": c.mean(), "kl_cov_part_max": c.max(),
        "entropy": D.entropy(scale, policy.cov_type).mean(),
    }


def make_ppo(config, policy, value) -> Algorithm:
    """Builds PPO for ``config`` over a policy/value pair from :mod:`tr_jax.networks`."""
    steps = config.num_epochs * config.num_minibatches
    policy_opt = make_optimizer(config, config.policy_lr, steps)
    value_opt = make_optimizer(config, config.value_lr, steps)
    cov_type = policy.cov_type

    def init(policy_params, value_params):
        return AlgoState(policy_params, value_params, policy_opt.init(policy_params), value_opt.init(value_params))

    def loss_fn(params, mb: Batch):
        pp, vp = params
        mean, scale = policy.apply(pp, mb.obs)
        log_prob = D.log_prob(mb.action, mean, scale, cov_type)
        log_ratio = log_prob - mb.log_prob
        ratio = jnp.exp(log_ratio)
        adv = normalize_advantage(mb.advantage) if config.normalize_advantage else mb.advantage
        surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - config.clip_ratio, 1 + config.clip_ratio) * adv)
        pg_loss = -surrogate.mean()
        entropy = D.entropy(scale, cov_type).mean()
        v_loss = value_loss(value.apply, vp, mb, config.value_clip)
        total = pg_loss - config.entropy_coef * entropy + v_loss
        aux = {
            "policy_loss": pg_loss, "value_loss": v_loss,
            "approx_kl": ((ratio - 1) - log_ratio).mean(),
            "clip_fraction": (jnp.abs(ratio - 1) > config.clip_ratio).mean(),
        }
        return total, aux

    def step(carry, mb):
        pp, vp, po, vo = carry
        (loss, aux), (gp, gv) = jax.value_and_grad(loss_fn, has_aux=True)((pp, vp), mb)
        up, po = policy_opt.update(gp, po, pp)
        uv, vo = value_opt.update(gv, vo, vp)
        aux["loss"] = loss
        aux["grad_norm"] = optax.global_norm((gp, gv))
        return (optax.apply_updates(pp, up), optax.apply_updates(vp, uv), po, vo), aux

    def update(key, state: AlgoState, batch: Batch, iteration):
        del iteration  # the Optax schedules count steps themselves
        carry = (state.policy_params, state.value_params, state.policy_opt, state.value_opt)
        (pp, vp, po, vo), metrics = minibatch_epochs(key, batch, config.num_epochs, config.num_minibatches,
                                                     step, carry)
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics.update(policy_divergence(policy, pp, batch))
        return AlgoState(pp, vp, po, vo, state.extra), metrics

    return Algorithm(init, update)
