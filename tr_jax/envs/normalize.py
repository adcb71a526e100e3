"""Running observation normalisation and reward scaling/normalisation.

Pure init/update pairs over NamedTuple states (optax style):

* :class:`RunningStats` / :func:`init_stats` / :func:`update_stats` /
  :func:`normalize`: running mean and variance (Chan et al.'s parallel
  update), used for observations.
* :class:`RewardNorm` / :func:`init_reward_norm` / :func:`update_reward_norm` /
  :func:`scale_rewards`: divide rewards by the running std of the discounted
  return (per env), after multiplying by a constant ``reward_scaling``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from tr_jax import parallel as par


class RunningStats(NamedTuple):
    """mean, var: ``shape``; count: scalar (number of samples seen, >= eps)."""

    mean: jax.Array
    var: jax.Array
    # a field named `count` shadows tuple.count (never called on it); mypy flags the override. Renaming the
    # field would break restoring existing checkpoints: Orbax keys the saved tree by field name.
    count: jax.Array  # type: ignore[assignment]


def init_stats(shape=(), dtype=jnp.float32) -> RunningStats:
    """Running statistics of nothing yet: mean 0, variance 1, a tiny count (no division by zero)."""
    return RunningStats(mean=jnp.zeros(shape, dtype), var=jnp.ones(shape, dtype), count=jnp.asarray(1e-4, dtype))


def update_stats(stats: RunningStats, x: jax.Array, axis_name: str | None = None) -> RunningStats:
    """Merges samples ``x`` ``[..., *shape]`` (all leading dims are samples; with ``axis_name``, the
    samples of every device, which must hold equally many)."""
    nd = stats.mean.ndim
    x = x.reshape((-1,) + x.shape[x.ndim - nd :]).astype(stats.mean.dtype)
    n = jnp.asarray(x.shape[0] * par.axis_size(axis_name), stats.mean.dtype)
    b_mean = par.pmean(x.mean(axis=0), axis_name)
    b_var = par.pmean(jnp.mean((x - b_mean) ** 2, axis=0), axis_name)
    total = stats.count + n
    delta = b_mean - stats.mean
    mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + b_var * n + delta**2 * stats.count * n / total
    return RunningStats(mean=mean, var=m2 / total, count=total)


def normalize(stats: RunningStats, x: jax.Array, clip: float | None = 10.0, eps: float = 1e-8) -> jax.Array:
    """(x - mean) / sqrt(var + eps), clipped to [-clip, clip] (``clip`` None: not clipped); ``x`` ``[..., *shape]``."""
    z = (x - stats.mean) / jnp.sqrt(stats.var + eps)
    return z if clip is None else jnp.clip(z, -clip, clip)


class RewardNorm(NamedTuple):
    """ret: [E] running discounted return per env; stats: scalar RunningStats of it."""

    ret: jax.Array
    stats: RunningStats


def init_reward_norm(num_envs: int, dtype=jnp.float32) -> RewardNorm:
    """Reward normalisation state of ``num_envs`` envs: discounted returns ``[num_envs]`` zero, fresh statistics."""
    return RewardNorm(ret=jnp.zeros((num_envs,), dtype), stats=init_stats((), dtype))


def update_reward_norm(
    state: RewardNorm, reward: jax.Array, done: jax.Array, gamma: float, axis_name: str | None = None
) -> RewardNorm:
    """Advances the discounted returns through ``reward``/``done`` ``[T, E]`` and
    merges all ``T * E`` of them (of every device, with ``axis_name``) into the running statistics."""

    def step(ret, x):
        r, d = x
        ret = ret * gamma + r
        return ret * (1.0 - d), ret

    ret, rets = jax.lax.scan(step, state.ret, (reward, done))
    return RewardNorm(ret=ret, stats=update_stats(state.stats, rets, axis_name))


def scale_rewards(state: RewardNorm, reward: jax.Array, eps: float = 1e-8) -> jax.Array:
    """reward / std of the discounted return."""
    return reward / jnp.sqrt(state.stats.var + eps)
