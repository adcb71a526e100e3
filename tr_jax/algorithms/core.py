"""The training core shared by PPO, TRPO and TRPL.

* :class:`Rollout` and :func:`rollout`: collect ``T`` steps from ``E``
  vectorised environments with one ``lax.scan``.
* :func:`gae`: generalised advantage estimation that bootstraps on episode
  truncation and not on termination.
* :func:`make_batch`: values + GAE -> the flat :class:`~tr_jax.algorithms.base.Batch`.
* :func:`minibatch_epochs`: shuffled minibatch epochs as nested scans.
* :func:`normalize_advantage`: zero-mean / unit-std advantages.

Shapes: ``T`` = unroll length, ``E`` = number of envs, ``N = T * E``,
``k`` = action dim, ``d`` = obs dim. Everything is pure and jittable.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from tr_jax import distributions
from tr_jax.algorithms.base import Batch


class Rollout(NamedTuple):
    """Data of one rollout, time-major.

    obs:         [T, E, d] normalised observation the policy acted on.
    action:      [T, E, k] sampled, unclipped action.
    log_prob:    [T, E] log-density of ``action`` under (old_mean, old_scale).
    old_mean:    [T, E, k] behaviour mean.
    old_scale:   [T, E, k] or [T, E, k, k] behaviour scale.
    reward:      [T, E] (scaled / normalised) reward.
    termination: [T, E] 1.0 where the episode ended by a terminal state.
    truncation:  [T, E] 1.0 where the episode was cut by the time limit (and
                 did not terminate).
    next_obs:    [T, E, d] normalised observation reached by the step *before*
                 any auto-reset (the state to bootstrap from).
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    old_mean: jax.Array
    old_scale: jax.Array
    reward: jax.Array
    termination: jax.Array
    truncation: jax.Array
    next_obs: jax.Array


def gae(reward, value, next_value, termination, truncation, gamma: float, gae_lambda: float):
    """Generalised advantage estimation with truncation bootstrapping.

    For step t with ``done_t = termination_t or truncation_t``:

        delta_t = r_t + gamma * (1 - termination_t) * V(s'_t) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

    where ``s'_t`` is the state reached by step t before any reset. So a
    terminal step never bootstraps, a truncated step bootstraps from the value
    of its last state, and no trace crosses an episode boundary. The last step
    of the rollout bootstraps from ``next_value[-1]`` (its own next state).

    Args:
      reward, value, next_value, termination, truncation: ``[T, ...]``
        (``value`` = V(s_t), ``next_value`` = V(s'_t)); float arrays.
      gamma, gae_lambda: discount and GAE lambda.
    Returns:
      ``(advantage, returns)``, each ``[T, ...]``; ``returns = advantage + value``.
    """
    termination = termination.astype(value.dtype)
    done = jnp.maximum(termination, truncation.astype(value.dtype))
    delta = reward + gamma * (1.0 - termination) * next_value - value

    def step(carry, x):
        d, nd = x
        adv = d + gamma * gae_lambda * nd * carry
        return adv, adv

    _, advantage = jax.lax.scan(step, jnp.zeros_like(value[0]), (delta, 1.0 - done), reverse=True)
    return advantage, advantage + value


def make_batch(rollout: Rollout, value_fn: Callable, value_params, gamma: float, gae_lambda: float) -> Batch:
    """Evaluates the value net on the rollout, runs GAE, flattens to ``N = T * E``.

    Args:
      rollout: a :class:`Rollout` ``[T, E, ...]``.
      value_fn: ``value_fn(params, obs[..., d]) -> [...]``.
    Returns:
      :class:`~tr_jax.algorithms.base.Batch` with leading dim ``N``.
    """
    value = value_fn(value_params, rollout.obs)
    next_value = value_fn(value_params, rollout.next_obs)
    advantage, returns = gae(rollout.reward, value, next_value, rollout.termination, rollout.truncation,
                             gamma, gae_lambda)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    return Batch(
        obs=flat(rollout.obs), action=flat(rollout.action), log_prob=flat(rollout.log_prob),
        old_mean=flat(rollout.old_mean), old_scale=flat(rollout.old_scale),
        advantage=flat(advantage), returns=flat(returns), old_value=flat(value),
    )


def normalize_advantage(advantage: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(A - mean A) / (std A + eps) over all entries of ``advantage`` ``[...]``."""
    return (advantage - advantage.mean()) / (advantage.std() + eps)


def minibatch_epochs(key: jax.Array, batch: Any, num_epochs: int, num_minibatches: int,
                     step_fn: Callable[[Any, Any], tuple[Any, Any]], carry: Any):
    """Runs ``num_epochs`` passes of shuffled minibatches through ``step_fn``.

    Each epoch draws a fresh permutation of the ``N`` rows of ``batch`` (any
    pytree whose leaves share leading dim ``N``, e.g. a
    :class:`~tr_jax.algorithms.base.Batch`), splits it into ``num_minibatches``
    minibatches of ``N // num_minibatches`` rows and scans ``step_fn`` over
    them. Two nested ``lax.scan``; ``num_minibatches`` must divide ``N``.

    Args:
      key: PRNG key for the permutations.
      batch: pytree with leaves ``[N, ...]``.
      step_fn: ``step_fn(carry, minibatch) -> (carry, metrics)`` where
        ``minibatch`` has leaves ``[N // num_minibatches, ...]`` and
        ``metrics`` is a pytree of arrays (typically scalars).
      carry: initial carry (e.g. params and optimiser states).
    Returns:
      ``(carry, metrics)`` with metrics leaves stacked to
      ``[num_epochs, num_minibatches, ...]``.
    """
    n = jax.tree.leaves(batch)[0].shape[0]
    if n % num_minibatches:
        raise ValueError(f"num_minibatches ({num_minibatches}) must divide the batch size {n}")
    size = n // num_minibatches

    def epoch(carry, k):
        perm = jax.random.permutation(k, n)
        shuffled = jax.tree.map(
            lambda x: jnp.take(x, perm, axis=0).reshape((num_minibatches, size) + x.shape[1:]), batch)
        return jax.lax.scan(step_fn, carry, shuffled)

    return jax.lax.scan(epoch, carry, jax.random.split(key, num_epochs))


def rollout(key: jax.Array, env, env_state, policy_apply: Callable, policy_params, cov_type: str,
            obs_norm: Callable[[jax.Array], jax.Array], num_steps: int):
    """Collects ``num_steps`` vectorised env steps with the Gaussian policy.

    Args:
      key: PRNG key for action sampling.
      env: a :class:`tr_jax.envs.wrappers.VecEnv` (``step(state, action)``).
      env_state: its :class:`~tr_jax.envs.wrappers.EnvState` over ``E`` envs.
      policy_apply: ``policy_apply(params, obs[E, d]) -> (mean [E, k], scale)``.
      cov_type: scale parameterisation for :mod:`tr_jax.distributions`.
      obs_norm: maps raw observations ``[..., d]`` to what the policy sees.
      num_steps: ``T``.
    Returns:
      ``(env_state, rollout, raw)`` where ``rollout`` is a :class:`Rollout`
      with raw (unscaled) rewards and ``raw`` is the env's
      :class:`~tr_jax.envs.wrappers.StepInfo` stacked to ``[T, E]`` (raw
      observations, episode bookkeeping).
    """

    def step(carry, k):
        state = carry
        obs = obs_norm(state.obs)
        mean, scale = policy_apply(policy_params, obs)
        action = distributions.sample(k, mean, scale, cov_type)
        log_prob = distributions.log_prob(action, mean, scale, cov_type)
        state, info = env.step(state, action)
        tr = Rollout(obs=obs, action=action, log_prob=log_prob, old_mean=mean, old_scale=scale,
                     reward=info.reward, termination=info.termination, truncation=info.truncation,
                     next_obs=obs_norm(info.final_obs))
        return state, (tr, info)

    env_state, (tr, info) = jax.lax.scan(step, env_state, jax.random.split(key, num_steps))
    return env_state, tr, info
