"""Vectorised Brax environments with auto-reset and episode bookkeeping.

:func:`make_vec_env` wraps one ``brax.envs`` environment into a
:class:`VecEnv` of ``E`` copies stepped with ``jax.vmap``:

* actions are clipped to Brax's action range ``[-1, 1]`` before stepping
  (log-probabilities elsewhere use the unclipped Gaussian sample);
* ``action_repeat`` physics-level env steps per agent step (rewards summed
  until the episode ends inside the repeat);
* the time limit (``episode_length`` env steps) is reported as
  ``truncation``, separate from the environment's own ``termination``;
* finished episodes are reset automatically, to a pool of freshly sampled
  initial states that :meth:`VecEnv.refresh` re-draws (once per training
  iteration) so no reset is computed inside the per-step loop;
* the return and length of every finished episode are reported.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from tr_jax import parallel as par

BACKENDS = ("generalized", "positional", "spring", "mjx")


def env_names() -> tuple:
    """Names registered in ``brax.envs``."""
    from brax import envs

    registry = getattr(envs, "_envs", None)
    return tuple(sorted(registry)) if registry else ()


def check_env(env_name: str, backend: str) -> None:
    """Raises ``ValueError`` listing the options for an unknown env or backend."""
    names = env_names()
    if names and env_name not in names:
        raise ValueError(f"unknown env {env_name!r}; brax.envs provides {names}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


class EnvState(NamedTuple):
    """State of ``E`` environments.

    brax:      brax ``State`` with leaves ``[E, ...]`` (current episodes).
    pool:      brax ``State`` ``[E, ...]``: initial states done envs reset to.
    steps:     [E] int32 env steps taken in the current episode (-1: pending
               a reset, done by the next ``refresh``).
    ep_return: [E] raw reward accumulated in the current episode.
    """

    brax: Any
    pool: Any
    steps: jax.Array
    ep_return: jax.Array

    @property
    def obs(self) -> jax.Array:
        """[E, d] raw observations."""
        return self.brax.obs


class StepInfo(NamedTuple):
    """What one vectorised agent step reports, each ``[E, ...]``.

    obs:         [E, d] raw observation the action was taken in.
    reward:      [E] raw reward (summed over the action repeat).
    termination: [E] 1.0 where the env reached a terminal state.
    truncation:  [E] 1.0 where the time limit cut the episode (and it did not
                 terminate).
    done:        [E] max(termination, truncation); those envs were reset.
    final_obs:   [E, d] raw observation reached before any reset.
    ep_return:   [E] return of the episode that just finished (valid where done).
    ep_length:   [E] its length in env steps (valid where done).
    """

    obs: jax.Array
    reward: jax.Array
    termination: jax.Array
    truncation: jax.Array
    done: jax.Array
    final_obs: jax.Array
    ep_return: jax.Array
    ep_length: jax.Array


class VecEnv(NamedTuple):
    """``E`` vectorised copies of a Brax env; all functions pure and jittable.

    reset(key) -> EnvState  (= refresh(placeholder(), key))
    placeholder() -> EnvState  (every env pending a reset; no reset computed)
    refresh(state, key, axis_name=None) -> EnvState  (re-draws the reset pool
      and resets pending envs; the only place a reset is computed; with
      ``axis_name`` the state holds this device's block of the envs and the
      keys are those of the same envs in a single-device run)
    step(state, action [E, k]) -> (EnvState, StepInfo)
    random_step(state, key) -> (EnvState, StepInfo)  (uniform actions in [-1, 1])
    """

    reset: Callable
    placeholder: Callable
    step: Callable
    refresh: Callable
    random_step: Callable
    obs_dim: int
    action_dim: int
    num_envs: int
    env: Any


def _where(mask, a, b):
    """Per-env select over two pytrees with leaves ``[E, ...]``."""
    return jax.tree.map(lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y), a, b)


def make_vec_env(env_name: str, backend: str = "positional", num_envs: int = 64, episode_length: int = 1000,
                 action_repeat: int = 1, **env_kwargs) -> VecEnv:
    """Builds a :class:`VecEnv` from ``brax.envs.get_environment(env_name, backend=...)``."""
    check_env(env_name, backend)
    from brax import envs

    env = envs.get_environment(env_name, backend=backend, **env_kwargs)
    action_dim = int(env.action_size)
    obs_dim = int(env.observation_size)

    # Brax envs may add info/metrics keys in step() that reset() lacks; carry the
    # union (as produced by step) so the scan carry keeps one structure.
    def _template():
        s = env.reset(jax.random.key(0))
        return env.step(s, jnp.zeros((action_dim,)))

    template = jax.eval_shape(_template)

    def canon(s):
        def fill(d, t):
            return {k: (jnp.asarray(d[k], t[k].dtype) if k in d else jnp.zeros(t[k].shape, t[k].dtype)) for k in t}

        return s.replace(
            obs=jnp.asarray(s.obs, jnp.float32),
            reward=jnp.asarray(s.reward, jnp.float32),
            done=jnp.asarray(s.done, jnp.float32),
            info=fill(s.info, template.info),
            metrics=fill(s.metrics, template.metrics),
        )

    v_reset = jax.vmap(lambda k: canon(env.reset(k)))
    v_step = jax.vmap(lambda s, a: canon(env.step(s, a)))

    def placeholder():
        """All envs pending a reset (steps == -1); zeros in the brax state."""

        def zeros(x):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                return jax.random.wrap_key_data(jnp.zeros(jax.random.key_data(jax.random.key(0)).shape, jnp.uint32))
            return jnp.zeros(x.shape, x.dtype)

        # canon() gives reset and step states one structure: reuse step's shapes
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_envs,) + x.shape, x.dtype), template)
        bs = canon(jax.tree.map(zeros, shapes))
        return EnvState(brax=bs, pool=bs, steps=jnp.full((num_envs,), -1, jnp.int32),
                        ep_return=jnp.zeros((num_envs,), jnp.float32))

    def refresh(state, key, axis_name=None):
        # One vmapped reset draws the new pool and, for envs pending a reset
        # (steps < 0), a first state from the pool key of the env before, so env
        # i's first state differs from the state it resets to. Keeping this the
        # only reset call site keeps a single copy of the (slow to compile) reset
        # in a training HLO. Keys are per global env index: no device dependence.
        n = state.steps.shape[0]
        keys = jax.random.split(key, n * par.axis_size(axis_name))
        both = v_reset(jnp.concatenate([par.local_rows(keys, axis_name),
                                        par.local_rows(jnp.roll(keys, 1, axis=0), axis_name)]))
        pool, shifted = (jax.tree.map(lambda x: x[i * n:(i + 1) * n], both) for i in range(2))
        pending = state.steps < 0
        return EnvState(brax=_where(pending, shifted, state.brax), pool=pool,
                        steps=jnp.where(pending, 0, state.steps), ep_return=state.ep_return)

    def reset(key):
        return refresh(placeholder(), key)

    def physics(bs, action):
        if action_repeat == 1:
            bs = v_step(bs, action)
            return bs, bs.reward, bs.done

        def rep(carry, _):
            s, r, d = carry
            s = v_step(s, action)
            return (s, r + (1.0 - d) * s.reward, jnp.maximum(d, s.done)), None

        zero = jnp.zeros(action.shape[:1], jnp.float32)
        (bs, reward, done), _ = jax.lax.scan(rep, (bs, zero, zero), None, length=action_repeat)
        return bs, reward, done

    def step(state, action):
        action = jnp.clip(action, -1.0, 1.0)
        bs, reward, termination = physics(state.brax, action)
        steps = state.steps + action_repeat
        ep_return = state.ep_return + reward
        truncation = jnp.where(steps >= episode_length, 1.0 - termination, 0.0)
        done = jnp.maximum(termination, truncation)
        info = StepInfo(obs=state.brax.obs, reward=reward, termination=termination, truncation=truncation,
                        done=done, final_obs=bs.obs, ep_return=ep_return, ep_length=steps)
        is_done = done > 0
        new = EnvState(brax=_where(is_done, state.pool, bs), pool=state.pool,
                       steps=jnp.where(is_done, 0, steps), ep_return=jnp.where(is_done, 0.0, ep_return))
        return new, info

    def random_step(state, key):
        return step(state, jax.random.uniform(key, (num_envs, action_dim), minval=-1.0, maxval=1.0))

    return VecEnv(reset=reset, placeholder=placeholder, step=step, refresh=refresh, random_step=random_step, obs_dim=obs_dim,
                  action_dim=action_dim, num_envs=num_envs, env=env)


def episode_stats(info: StepInfo):
    """Sum and count of finished episodes' returns/lengths over any leading dims.

    Returns ``(return_sum, length_sum, count)`` scalars.
    """
    done = info.done
    return jnp.sum(done * info.ep_return), jnp.sum(done * info.ep_length), jnp.sum(done)
