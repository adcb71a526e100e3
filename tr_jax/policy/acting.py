"""Acting with a Gaussian policy: observation normalisation, the action distribution, the action.

One implementation of how a trained policy acts, shared by the trainer's rollouts and evaluation
(:mod:`tr_jax.train`), :func:`tr_jax.load_policy` (:mod:`tr_jax.policy.loading`), ``tr-jax eval``,
``tr-jax render`` and ``tr-jax export`` (:mod:`tr_jax.policy.export`). Part of the RL core: it imports no
module of the trainer or above.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from tr_jax import distributions as D
from tr_jax.envs import normalize as N

if TYPE_CHECKING:
    from tr_jax.config import TrainConfig
    from tr_jax.networks import Policy


def obs_normalizer(
    obs_stats: N.RunningStats, normalize_obs: bool, obs_clip: float | None, dtype
) -> Callable[[jax.Array], jax.Array]:
    """``obs [..., obs_dim] -> [..., obs_dim]`` as the policy sees them: cast to ``dtype``, then (with
    ``normalize_obs``) standardised by the running statistics and clipped to ``+-obs_clip`` (None: not
    clipped).

    Examples:
        >>> stats = N.RunningStats(mean=jnp.array([1.0, 0.0]), var=jnp.array([4.0, 1.0]), count=jnp.array(10.0))
        >>> print(obs_normalizer(stats, True, 2.0, "float32")(jnp.array([[3.0, -5.0]])))
        [[ 1. -2.]]
    """
    dtype = jnp.dtype(dtype)
    if normalize_obs:
        return lambda o: N.normalize(obs_stats, o.astype(dtype), obs_clip)
    return lambda o: o.astype(dtype)


class ActingPolicy(NamedTuple):
    """A policy with its parameters and observation statistics bound; both functions are pure and jittable.

    act(obs [..., obs_dim], key=None) -> action [..., k]: the mean action when ``key`` is None, else one
      sample per state, clipped to the env's action range ``[-1, 1]`` as the training env clips it.
    distribution(obs [..., obs_dim]) -> (mean [..., k], scale [..., k] or [..., k, k] of ``cov_type``): the
      (unclipped) Gaussian the actions come from.
    cov_type: the scale parameterisation (:mod:`tr_jax.distributions`).

    Examples:
        >>> ActingPolicy._fields  # built by acting_policy (see its example)
        ('act', 'distribution', 'cov_type')
    """

    act: Callable
    distribution: Callable
    cov_type: D.CovType


def acting_policy(policy: Policy, params: Any, obs_stats: N.RunningStats, config: TrainConfig) -> ActingPolicy:
    """Binds ``policy`` (:func:`tr_jax.networks.make_policy`), its ``params`` and the run's observation
    statistics into an :class:`ActingPolicy` (``config``: normalize_obs, obs_clip, dtype).

    Examples:
        >>> from tr_jax.config import TrainConfig
        >>> from tr_jax.networks import make_policy
        >>> config = TrainConfig(policy_hidden=(8,), init_std=0.5)
        >>> policy = make_policy(config, obs_dim=3, action_dim=2)
        >>> pi = acting_policy(policy, policy.init(jax.random.key(0)), N.init_stats((3,)), config)
        >>> obs = jnp.ones((4, 3))
        >>> pi.act(obs).shape, bool(jnp.all(pi.act(obs) == jnp.clip(pi.distribution(obs)[0], -1, 1)))
        ((4, 2), True)
        >>> print(jnp.round(pi.distribution(obs)[1][0], 4))
        [0.5 0.5]
    """
    normalize = obs_normalizer(obs_stats, config.normalize_obs, config.obs_clip, config.dtype)

    def distribution(obs):
        return policy.apply(params, normalize(obs))

    def act(obs, key=None):
        mean, scale = distribution(obs)
        action = mean if key is None else D.sample(key, mean, scale, policy.cov_type)
        return jnp.clip(action, -1.0, 1.0)

    return ActingPolicy(act, distribution, policy.cov_type)


__all__ = ["ActingPolicy", "acting_policy", "obs_normalizer"]
