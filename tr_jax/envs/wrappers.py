"""Vectorised environments with auto-reset and episode bookkeeping.

:func:`wrap_env` wraps one env object with the Brax ``Env`` API
(``reset(key) -> State``, ``step(State, action) -> State``, ``action_size``;
``State`` a dataclass with ``obs``, ``reward``, ``done``, ``info`` and
``metrics`` and a ``replace`` method) into a :class:`VecEnv` of ``E`` copies
stepped with ``jax.vmap``; :func:`make_vec_env` does the same for an env name
(see :mod:`tr_jax.envs.sources`). The same semantics hold for every source:

* actions are clipped to ``[-1, 1]`` before stepping (log-probabilities
  elsewhere use the unclipped Gaussian sample). Brax envs and the MuJoCo
  Playground tasks both take actions in ``[-1, 1]`` (Playground's dm_control
  actuators have that control range, and MuJoCo clamps to it as well);
* ``action_repeat`` env steps per agent step (rewards summed until the
  episode ends inside the repeat);
* **termination** is the env's own ``State.done``. For Brax envs that is a
  fall or an unhealthy state; for Playground's dm_control tasks it is only a
  NaN in the physics state (their episodes otherwise end by the time limit),
  for its locomotion tasks a fall. Use the raw env, not one wrapped for
  Brax's or Playground's own training loops: those wrappers fold the time
  limit into ``done`` and reset inside ``step``, and :func:`wrap_env` rejects
  them (their ``info`` carries a ``"truncation"`` key);
* **truncation** is tr_jax's time limit, ``episode_length`` env steps
  (``TrainConfig.episode_length``), reported separately so that GAE
  bootstraps a truncated step from the value of its last state and never a
  terminated one. Playground's own ``episode_length`` config (and its
  ``info["time_out"]`` key) is not used;
* the episode return is the sum of the env's raw ``reward`` over the episode
  (before tr_jax's reward scaling or normalisation): for Brax and
  Playground alike the number the env reports per step;
* finished episodes are reset automatically, to a pool of freshly sampled
  initial states that :meth:`VecEnv.refresh` re-draws (once per training
  iteration) so no reset is computed inside the per-step loop;
* observations: a ``[d]`` vector per env. An env whose ``obs`` is a dict
  (Playground's locomotion tasks: ``"state"`` and ``"privileged_state"``)
  needs ``obs_key`` (``TrainConfig.obs_key``) naming the entry the policy
  sees, and the value function too unless ``value_obs_key``
  (``TrainConfig.value_obs_key``) names its own (an asymmetric actor-critic:
  the critic sees ``"privileged_state"``); the env itself keeps getting its
  full dict back. Observation normalisation (``TrainConfig.normalize_obs``)
  runs on each entry in the trainer, the same for every source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from tr_jax import parallel as par
from tr_jax.envs.sources import load_env


class EnvState(NamedTuple):
    """State of ``E`` environments.

    inner:     the wrapped env's ``State`` with leaves ``[E, ...]`` (current episodes).
    pool:      the same ``[E, ...]``: initial states done envs reset to.
    steps:     [E] int32 env steps taken in the current episode (-1: pending
               a reset, done by the next ``refresh``).
    ep_return: [E] raw reward accumulated in the current episode.
    obs:       [E, d] float32 raw observation of ``inner`` (its ``obs``, or
               ``obs[obs_key]`` for dict observations).
    value_obs: [E, dv] float32 raw ``obs[value_obs_key]`` of ``inner`` when the
               value function sees its own entry; None when it sees ``obs``.
    """

    inner: Any
    pool: Any
    steps: jax.Array
    ep_return: jax.Array
    obs: jax.Array
    value_obs: jax.Array | None = None


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
    value_obs, final_value_obs: [E, dv] the same as ``obs`` and ``final_obs``
                 for the value function's own entry (``value_obs_key``); None
                 when the value function sees ``obs``.
    """

    obs: jax.Array
    reward: jax.Array
    termination: jax.Array
    truncation: jax.Array
    done: jax.Array
    final_obs: jax.Array
    ep_return: jax.Array
    ep_length: jax.Array
    value_obs: jax.Array | None = None
    final_value_obs: jax.Array | None = None


class VecEnv(NamedTuple):
    """``E`` vectorised copies of an env; all functions pure and jittable.

    reset(key) -> EnvState  (= refresh(placeholder(), key))
    placeholder() -> EnvState  (every env pending a reset; no reset computed)
    refresh(state, key, axis_name=None) -> EnvState  (re-draws the reset pool
      and resets pending envs; the only place a reset is computed; with
      ``axis_name`` the state holds this device's block of the envs and the
      keys are those of the same envs in a single-device run)
    step(state, action [E, k]) -> (EnvState, StepInfo)
    random_step(state, key) -> (EnvState, StepInfo)  (uniform actions in [-1, 1])
    resized(num_envs) -> VecEnv  (the same env and settings with another batch
      size, e.g. for evaluation; not jittable: it builds a VecEnv)
    env: the wrapped (unbatched) env object.
    obs_dim: size of the policy's observation; value_obs_dim: size of the value
      function's own observation (``value_obs_key``), None when it sees ``obs``.
    """

    reset: Callable
    placeholder: Callable
    step: Callable
    refresh: Callable
    random_step: Callable
    resized: Callable
    obs_dim: int
    action_dim: int
    num_envs: int
    env: Any
    value_obs_dim: int | None = None


def _where(mask, a, b):
    """Per-env select over two pytrees with leaves ``[E, ...]``."""
    return jax.tree.map(lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y), a, b)


def check_env_api(env) -> None:
    """Raises ``ValueError`` naming what ``env`` lacks of the Brax ``Env`` API."""
    missing = [name for name in ("reset", "step") if not callable(getattr(env, name, None))]
    if not hasattr(env, "action_size"):
        missing.append("action_size")
    if missing:
        raise ValueError(
            f"env {type(env).__name__} lacks {', '.join(missing)} of the Brax Env API "
            "(reset(key) -> State, step(State, action) -> State, action_size, observation_size)"
        )


def select_obs(obs, obs_key: str | None, name: str = "obs_key"):
    """The observation the agent sees: ``obs`` itself (an array), or
    ``obs[obs_key]`` when the env gives a dict; ``ValueError`` when ``obs_key``
    does not fit the observation's kind (``name``: the setting the message names)."""
    if isinstance(obs, Mapping):
        shapes = {k: tuple(getattr(v, "shape", ())) for k, v in obs.items()}
        if obs_key is None:
            raise ValueError(
                f"the env's observations are a dict {shapes}; set obs_key to the entry the agent "
                "should see (e.g. TrainConfig(obs_key='state'))"
            )
        if obs_key not in obs:
            raise ValueError(f"{name} {obs_key!r} is not in the env's observation dict {shapes}")
        return obs[obs_key]
    if obs_key is not None:
        raise ValueError(
            f"{name} {obs_key!r} is set but the env's observations are an array, not a dict; leave {name} unset (None)"
        )
    return obs


def _obs_dim(obs, obs_key: str | None, name: str, who: str) -> int:
    """Size of ``select_obs(obs, obs_key, name)`` (abstract ``obs``); ``ValueError`` unless it is one vector."""
    shape = select_obs(obs, obs_key, name).shape
    if len(shape) != 1:
        raise ValueError(
            f"{who} observation must be one vector per env, got shape {shape} "
            "(pass an unbatched env; pixel observations are not supported)"
        )
    return int(shape[0])


class _EnvSpec(NamedTuple):
    """What :func:`wrap_env` reads off an env before compiling anything."""

    action_dim: int
    obs_dim: int
    value_obs_key: str | None  # None when the value function sees the policy's entry
    value_obs_dim: int | None
    template: Any  # the shapes of one step's State: the union of reset's and step's info/metrics keys


def _env_spec(env, obs_key: str | None, value_obs_key: str | None) -> _EnvSpec:
    """Checks ``env``'s API and observations (``ValueError``, see :func:`wrap_env`) and reads its sizes."""
    check_env_api(env)
    action_dim = int(env.action_size)

    first = jax.eval_shape(env.reset, jax.random.key(0))
    for field in ("obs", "reward", "done", "info", "metrics"):
        if not hasattr(first, field):
            raise ValueError(f"env {type(env).__name__}'s State lacks the field {field!r} of the Brax State API")
    if "truncation" in first.info:
        raise ValueError(
            f"env {type(env).__name__} is already wrapped for a training loop (its info has "
            "'truncation': the time limit is folded into done and it resets itself); pass the raw "
            "env: tr_jax applies the time limit (episode_length) and auto-reset itself"
        )
    obs_dim = _obs_dim(first.obs, obs_key, "obs_key", "the agent's")
    if value_obs_key == obs_key:
        value_obs_key = None
    value_obs_dim = (
        None if value_obs_key is None else _obs_dim(first.obs, value_obs_key, "value_obs_key", "the value function's")
    )
    # Envs may add info/metrics keys in step() that reset() lacks; carry the
    # union (as produced by step) so the scan carry keeps one structure.
    template = jax.eval_shape(lambda key: env.step(env.reset(key), jnp.zeros((action_dim,))), jax.random.key(0))
    return _EnvSpec(action_dim, obs_dim, value_obs_key, value_obs_dim, template)


def _canonicaliser(template) -> Callable:
    """``canon(state) -> state`` with float32 obs/reward/done and every info/metrics key of ``template``
    (missing ones zero), so reset and step states share one structure in a scan carry."""

    def canon(s):
        def fill(d, t):
            return {k: (jnp.asarray(d[k], t[k].dtype) if k in d else jnp.zeros(t[k].shape, t[k].dtype)) for k in t}

        return s.replace(
            obs=jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), s.obs),
            reward=jnp.asarray(s.reward, jnp.float32),
            done=jnp.asarray(s.done, jnp.float32),
            info=fill(s.info, template.info),
            metrics=fill(s.metrics, template.metrics),
        )

    return canon


def _zero_leaf(x: jax.ShapeDtypeStruct) -> jax.Array:
    """Zeros of ``x``'s shape and dtype; a PRNG key leaf (Playground's ``info["rng"]``) gets ``key(0)``."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jnp.broadcast_to(jax.random.key(0), x.shape)
    return jnp.zeros(x.shape, x.dtype)


def _physics(v_step: Callable, inner, action, action_repeat: int):
    """``action_repeat`` vectorised env steps with one action: ``(inner, reward [E], done [E])``, the reward
    summed until the first done."""
    if action_repeat == 1:
        inner = v_step(inner, action)
        return inner, inner.reward, inner.done

    def rep(carry, _):
        s, r, d = carry
        s = v_step(s, action)
        return (s, r + (1.0 - d) * s.reward, jnp.maximum(d, s.done)), None

    zero = jnp.zeros(action.shape[:1], jnp.float32)
    (inner, reward, done), _ = jax.lax.scan(rep, (inner, zero, zero), None, length=action_repeat)
    return inner, reward, done


def wrap_env(
    env,
    num_envs: int = 64,
    episode_length: int = 1000,
    action_repeat: int = 1,
    obs_key: str | None = None,
    value_obs_key: str | None = None,
) -> VecEnv:
    """Wraps one env object with the Brax ``Env`` API into a :class:`VecEnv` of ``num_envs`` copies.

    ``value_obs_key``: the entry of dict observations the value function sees,
    when it is not ``obs_key`` (None, or ``obs_key`` itself: it sees the
    policy's; the states then carry no second observation).
    ``ValueError`` (before anything is compiled) if the env lacks the API, its
    observations need an ``obs_key`` (or do not have one), a selected
    observation is not one vector per env, or the env is already wrapped for
    a training loop (time limit folded into ``done``).
    """
    spec = _env_spec(env, obs_key, value_obs_key)
    action_dim, value_obs_key, template = spec.action_dim, spec.value_obs_key, spec.template
    canon = _canonicaliser(template)

    def agent_obs(inner):
        return select_obs(inner.obs, obs_key)

    def value_obs(inner):
        return None if value_obs_key is None else select_obs(inner.obs, value_obs_key)

    def observed(inner, pool, steps, ep_return) -> EnvState:
        return EnvState(inner, pool, steps, ep_return, obs=agent_obs(inner), value_obs=value_obs(inner))

    v_reset = jax.vmap(lambda k: canon(env.reset(k)))
    v_step = jax.vmap(lambda s, a: canon(env.step(s, a)))

    def placeholder():
        """All envs pending a reset (steps == -1); zeros in the env state."""
        # canon() gives reset and step states one structure: reuse step's shapes
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_envs,) + x.shape, x.dtype), template)
        inner = canon(jax.tree.map(_zero_leaf, shapes))
        return observed(inner, inner, jnp.full((num_envs,), -1, jnp.int32), jnp.zeros((num_envs,), jnp.float32))

    def refresh(state, key, axis_name=None):
        # One vmapped reset draws the new pool and, for envs pending a reset
        # (steps < 0), a first state from the pool key of the env before, so env
        # i's first state differs from the state it resets to. Keeping this the
        # only reset call site keeps a single copy of the (slow to compile) reset
        # in a training HLO. Keys are per global env index: no device dependence.
        n = state.steps.shape[0]
        keys = jax.random.split(key, n * par.axis_size(axis_name))
        both = v_reset(
            jnp.concatenate([par.local_rows(keys, axis_name), par.local_rows(jnp.roll(keys, 1, axis=0), axis_name)])
        )
        pool, shifted = jax.tree.map(lambda x: x[:n], both), jax.tree.map(lambda x: x[n:], both)
        pending = state.steps < 0
        inner = _where(pending, shifted, state.inner)
        return observed(inner, pool, jnp.where(pending, 0, state.steps), state.ep_return)

    def reset(key):
        return refresh(placeholder(), key)

    def step(state, action):
        action = jnp.clip(action, -1.0, 1.0)
        inner, reward, termination = _physics(v_step, state.inner, action, action_repeat)
        steps = state.steps + action_repeat
        ep_return = state.ep_return + reward
        truncation = jnp.where(steps >= episode_length, 1.0 - termination, 0.0)
        done = jnp.maximum(termination, truncation)
        info = StepInfo(
            obs=state.obs,
            reward=reward,
            termination=termination,
            truncation=truncation,
            done=done,
            final_obs=agent_obs(inner),
            ep_return=ep_return,
            ep_length=steps,
            value_obs=state.value_obs,
            final_value_obs=value_obs(inner),
        )
        is_done = done > 0
        inner = _where(is_done, state.pool, inner)
        return observed(inner, state.pool, jnp.where(is_done, 0, steps), jnp.where(is_done, 0.0, ep_return)), info

    def random_step(state, key):
        return step(state, jax.random.uniform(key, (num_envs, action_dim), minval=-1.0, maxval=1.0))

    def resized(n: int) -> VecEnv:
        return wrap_env(env, n, episode_length, action_repeat, obs_key, value_obs_key)

    return VecEnv(
        reset=reset,
        placeholder=placeholder,
        step=step,
        refresh=refresh,
        random_step=random_step,
        resized=resized,
        obs_dim=spec.obs_dim,
        action_dim=action_dim,
        num_envs=num_envs,
        env=env,
        value_obs_dim=spec.value_obs_dim,
    )


def make_vec_env(
    env_name: str,
    backend: str = "positional",
    num_envs: int = 64,
    episode_length: int = 1000,
    action_repeat: int = 1,
    obs_key: str | None = None,
    value_obs_key: str | None = None,
    **env_kwargs,
) -> VecEnv:
    """Builds a :class:`VecEnv` for ``env_name`` (a Brax name or ``"playground:<name>"``;
    see :mod:`tr_jax.envs.sources`); ``env_kwargs`` go to the source's loader."""
    return wrap_env(
        load_env(env_name, backend, **env_kwargs), num_envs, episode_length, action_repeat, obs_key, value_obs_key
    )


def episode_stats(info: StepInfo):
    """Sum and count of finished episodes' returns/lengths over any leading dims.

    Returns ``(return_sum, length_sum, count)`` scalars.
    """
    done = info.done
    return jnp.sum(done * info.ep_return), jnp.sum(done * info.ep_length), jnp.sum(done)
