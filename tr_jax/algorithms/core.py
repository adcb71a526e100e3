"""The training core shared by PPO, TRPO and TRPL.

* :class:`Rollout`, :class:`Behaviour` and :func:`rollout`: collect ``T``
  steps from ``E`` vectorised environments with one ``lax.scan``.
* :func:`gae`: generalised advantage estimation that bootstraps on episode
  truncation and not on termination.
* :func:`make_batch`: values + GAE -> the flat :class:`~tr_jax.algorithms.base.Batch`.
* :func:`minibatch_epochs`: shuffled minibatch epochs as nested scans.
* :func:`normalize_advantage`: zero-mean / unit-std advantages.
* :func:`make_optimizer`, :func:`value_loss`, :func:`policy_divergence`: the
  optimiser, value loss and KL/entropy report every algorithm uses.
* :func:`actor_critic_epochs`: the minibatch actor-critic epochs shared by
  PPO and TRPL (joint policy/value steps, or separate value epochs when the
  :class:`EpochSchedule`'s value numbers differ); :func:`fit_value`: value
  epochs alone (TRPO, and the separate value pass); :class:`Critic`: the
  value function's side of both.

Shapes: ``T`` = unroll length, ``E`` = number of envs, ``N = T * E``,
``k`` = action dim, ``d`` = obs dim. Everything is pure and jittable.

Data parallelism (:mod:`tr_jax.parallel`): the functions that reduce over the
batch take ``axis_name``; inside the trainer's ``shard_map`` they see this
device's envs/rows and reduce over all devices, so the result is the
single-device one. With ``axis_name=None`` they are plain single-device code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tr_jax import distributions
from tr_jax import parallel as par
from tr_jax.algorithms.base import AlgoState, Batch


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
    value_obs, next_value_obs: [T, E, dv] the same for the value function's own
                 observation (``TrainConfig.value_obs_key``); None when it sees
                 ``obs``.
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
    value_obs: jax.Array | None = None
    next_value_obs: jax.Array | None = None

    @property
    def critic_obs(self) -> tuple[jax.Array, jax.Array]:
        """``(obs, next_obs)`` as the value function sees them, each ``[T, E, d]``."""
        if self.value_obs is None or self.next_value_obs is None:
            return self.obs, self.next_obs
        return self.value_obs, self.next_value_obs


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
    """Evaluates the value net on the rollout, runs GAE, flattens env-major to ``N = E * T``
    (row ``e * T + t``, so the rows of a block of envs are one contiguous block).

    Args:
      rollout: a :class:`Rollout` ``[T, E, ...]``.
      value_fn: ``value_fn(params, obs[..., d]) -> [...]``.
    Returns:
      :class:`~tr_jax.algorithms.base.Batch` with leading dim ``N``.
    """
    obs, next_obs = rollout.critic_obs
    value = value_fn(value_params, obs)
    next_value = value_fn(value_params, next_obs)
    advantage, returns = gae(
        rollout.reward, value, next_value, rollout.termination, rollout.truncation, gamma, gae_lambda
    )
    flat = lambda x: jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])
    return Batch(
        obs=flat(rollout.obs),
        action=flat(rollout.action),
        log_prob=flat(rollout.log_prob),
        old_mean=flat(rollout.old_mean),
        old_scale=flat(rollout.old_scale),
        advantage=flat(advantage),
        returns=flat(returns),
        old_value=flat(value),
        value_obs=None if rollout.value_obs is None else flat(rollout.value_obs),
    )


def normalize_advantage(advantage: jax.Array, eps: float = 1e-8, axis_name: str | None = None) -> jax.Array:
    """(A - mean A) / (std A + eps) over all entries of ``advantage`` ``[...]`` (on every device's part)."""
    m = par.mean(advantage, axis_name)
    std = jnp.sqrt(par.mean((advantage - m) ** 2, axis_name))
    return (advantage - m) / (std + eps)


def minibatch_epochs(
    key: jax.Array,
    batch: Any,
    num_epochs: int,
    num_minibatches: int,
    step_fn: Callable[[Any, Any], tuple[Any, Any]],
    carry: Any,
    axis_name: str | None = None,
):
    """Runs ``num_epochs`` passes of shuffled minibatches through ``step_fn``.

    Each epoch draws a fresh permutation of the ``N`` rows of ``batch`` (any
    pytree whose leaves share leading dim ``N``, e.g. a
    :class:`~tr_jax.algorithms.base.Batch`), splits it into ``num_minibatches``
    minibatches of ``N // num_minibatches`` rows and scans ``step_fn`` over
    them. Two nested ``lax.scan``; ``num_minibatches`` must divide ``N``. With
    ``axis_name`` (``batch`` is the global batch, the same on every device)
    each device gets its contiguous ``1/D`` of every minibatch.

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
    if size % par.axis_size(axis_name):
        raise ValueError(f"the minibatch size {size} does not split over {par.axis_size(axis_name)} devices")

    def epoch(carry, k):
        perm = jax.random.permutation(k, n)
        shuffled = jax.tree.map(
            lambda x: jnp.take(x, perm, axis=0).reshape((num_minibatches, size) + x.shape[1:]), batch
        )
        return jax.lax.scan(step_fn, carry, par.local_rows(shuffled, axis_name, axis=1))

    return jax.lax.scan(epoch, carry, jax.random.split(key, num_epochs))


class Behaviour(NamedTuple):
    """The behaviour policy a :func:`rollout` samples from, with how it sees observations.

    apply:          ``apply(params, obs [E, d]) -> (mean [E, k], scale [E, k] or [E, k, k])``.
    params:         the policy's parameters.
    cov_type:       scale parameterisation (:mod:`tr_jax.distributions`).
    obs_norm:       raw observations ``[..., d]`` -> what the policy sees.
    value_obs_norm: raw observations of the value function's own entry (``env_state.value_obs``, when not
                    None) -> what it sees; None when the value function sees ``obs``.
    """

    apply: Callable
    params: Any
    cov_type: distributions.CovType
    obs_norm: Callable[[jax.Array], jax.Array]
    value_obs_norm: Callable[[jax.Array], jax.Array] | None = None


def rollout(
    key: jax.Array,
    env,
    env_state,
    behaviour: Behaviour,
    num_steps: int,
    axis_name: str | None = None,
):
    """Collects ``num_steps`` vectorised env steps with the Gaussian ``behaviour`` policy.

    Args:
      key: PRNG key for action sampling.
      env: a :class:`tr_jax.envs.wrappers.VecEnv` (``step(state, action)``).
      env_state: its :class:`~tr_jax.envs.wrappers.EnvState` over ``E`` envs.
      behaviour: the policy, its parameters and observation normalisers (:class:`Behaviour`).
      num_steps: ``T``.
      axis_name: with data parallelism, ``env_state`` holds this device's
        ``E / D`` envs; actions are drawn from per-env keys of the global env
        index, so the run does not depend on ``D``.
    Returns:
      ``(env_state, rollout, raw)`` where ``rollout`` is a :class:`Rollout`
      with raw (unscaled) rewards and ``raw`` is the env's
      :class:`~tr_jax.envs.wrappers.StepInfo` stacked to ``[T, E]`` (raw
      observations, episode bookkeeping).
    """
    policy_apply, policy_params, cov_type, obs_norm, value_obs_norm = behaviour

    num_local = env_state.steps.shape[0]
    num_global = num_local * par.axis_size(axis_name)

    def step(carry, k):
        state = carry
        obs = obs_norm(state.obs)
        mean, scale = policy_apply(policy_params, obs)
        keys = par.local_rows(jax.random.split(k, num_global), axis_name)
        action = jax.vmap(lambda kk, m, s: distributions.sample(kk, m, s, cov_type))(keys, mean, scale)
        log_prob = distributions.log_prob(action, mean, scale, cov_type)
        state, info = env.step(state, action)
        tr = Rollout(
            obs=obs,
            action=action,
            log_prob=log_prob,
            old_mean=mean,
            old_scale=scale,
            reward=info.reward,
            termination=info.termination,
            truncation=info.truncation,
            next_obs=obs_norm(info.final_obs),
        )
        if info.value_obs is not None:
            if value_obs_norm is None:
                raise ValueError("the env state carries the value function's own observation: pass value_obs_norm")
            tr = tr._replace(
                value_obs=value_obs_norm(info.value_obs), next_value_obs=value_obs_norm(info.final_value_obs)
            )
        return state, (tr, info)

    env_state, (tr, info) = jax.lax.scan(step, env_state, jax.random.split(key, num_steps))
    return env_state, tr, info


def make_optimizer(config, lr: float, steps_per_iteration: int, decay: bool) -> optax.GradientTransformation:
    """Adam with optional global-norm clipping (``max_grad_norm``) and, with ``decay``, linear decay to 0.

    ``steps_per_iteration``: Optax updates per training iteration; the decay
    spans ``config.lr_decay_iterations * steps_per_iteration`` updates (the
    ``lr_decay_steps`` horizon, ``total_env_steps`` by default) and the lr
    stays 0 after it. ``decay``: ``config.lr_decay`` for the policy,
    ``config.decay_value_lr`` for the value function. ``lr`` may be a traced
    scalar (:class:`~tr_jax.hyperparams.Hyperparams`): the optimiser state does
    not depend on it, so an algorithm builds the optimiser with the config's
    value for ``init`` and with the run's value inside ``update``.
    """
    if decay:
        lr = optax.linear_schedule(lr, 0.0, max(1, config.lr_decay_iterations * steps_per_iteration))
    parts = []
    if config.max_grad_norm is not None:
        parts.append(optax.clip_by_global_norm(config.max_grad_norm))
    parts.append(optax.adam(lr, eps=1e-5))
    return optax.chain(*parts)


def value_optimizer(config, lr: float) -> optax.GradientTransformation:
    """The value function's optimiser: ``value_epochs x value_minibatches`` steps per iteration,
    decaying iff ``config.decay_value_lr``."""
    return make_optimizer(config, lr, config.num_value_epochs * config.num_value_minibatches, config.decay_value_lr)


def epoch_schedule(config) -> EpochSchedule:
    """The :class:`EpochSchedule` of ``config`` (num_epochs, num_minibatches, num_value_epochs,
    num_value_minibatches)."""
    return EpochSchedule(
        config.num_epochs, config.num_minibatches, config.num_value_epochs, config.num_value_minibatches
    )


def value_loss(value_fn, value_params, mb: Batch, clip):
    """0.5 * mean squared error to ``mb.returns`` ``[n]``; clipped PPO-style around ``mb.old_value`` if ``clip``."""
    v = value_fn(value_params, mb.critic_obs)
    err = (v - mb.returns) ** 2
    if clip is not None:
        v_clipped = mb.old_value + jnp.clip(v - mb.old_value, -clip, clip)
        err = jnp.maximum(err, (v_clipped - mb.returns) ** 2)
    return 0.5 * err.mean()


def kl_metrics(kl: jax.Array, acting_kl: jax.Array, axis_name: str | None = None) -> dict:
    """``kl_mean``/``kl_max`` of the KL per state ``kl`` of the updated policy and ``acting_kl_mean``/
    ``acting_kl_max`` of ``acting_kl``, that of the policy that acts in the next rollout (scalars; with
    ``axis_name``, over all devices' states)."""
    avg, top = (lambda x: par.mean(x, axis_name)), (lambda x: par.max(x, axis_name))
    return {"kl_mean": avg(kl), "kl_max": top(kl), "acting_kl_mean": avg(acting_kl), "acting_kl_max": top(acting_kl)}


def policy_divergence(policy, params, batch: Batch, axis_name: str | None = None):
    """KL(new || old) per state over ``batch``: mean/max of the total and its parts, entropy (scalars).

    ``acting_kl_mean``/``acting_kl_max`` repeat ``kl_mean``/``kl_max``: the name every algorithm reports for
    the KL of the policy that acts in the next rollout (TRPL's is its network output, not the projection).
    With ``axis_name``, ``batch`` is this device's rows and the statistics are over all devices'.
    """
    mean, scale = policy.apply(params, batch.obs)
    m, c = distributions.kl_decomposed(mean, scale, batch.old_mean, batch.old_scale, policy.cov_type)
    kl = m + c
    avg, top = (lambda x: par.mean(x, axis_name)), (lambda x: par.max(x, axis_name))
    return {
        **kl_metrics(kl, kl, axis_name),
        "kl_mean_part_mean": avg(m),
        "kl_mean_part_max": top(m),
        "kl_cov_part_mean": avg(c),
        "kl_cov_part_max": top(c),
        "entropy": avg(distributions.entropy(scale, policy.cov_type)),
    }


class Critic(NamedTuple):
    """The value function's side of an update.

    fn:   ``fn(params, obs [n, d]) -> [n]``.
    clip: the value clip of :func:`value_loss` (None: unclipped).
    opt:  its Optax optimiser.
    """

    fn: Callable
    clip: Any
    opt: optax.GradientTransformation


class EpochSchedule(NamedTuple):
    """How many passes over the batch, in how many minibatches, the policy and the value function take.

    Equal policy and value numbers mean joint steps (one ``value_and_grad`` per minibatch, see
    :func:`actor_critic_epochs`).
    """

    num_epochs: int
    num_minibatches: int
    value_epochs: int
    value_minibatches: int


def _minibatch_step(
    policy_loss_fn: Callable | None,
    value_fn: Callable | None,
    value_clip,
    policy_opt: optax.GradientTransformation,
    value_opt: optax.GradientTransformation,
    axis_name: str | None = None,
):
    """One Optax step on a minibatch for the policy, the value function, or both (one joint loss).

    ``policy_loss_fn`` None: value only; ``value_fn`` None: policy only.
    Returns ``step((pp, vp, po, vo), mb) -> (carry, metrics)`` for
    :func:`minibatch_epochs`; metrics: the policy loss's aux, ``loss`` (policy
    part of the loss), ``grad_norm`` (policy gradient) with a policy;
    ``value_loss`` and ``value_grad_norm`` with a value function. With
    ``axis_name`` the policy and value gradients are averaged over devices in
    one all-reduce (:func:`tr_jax.parallel.mean_grads`); metrics stay local.
    """

    def loss(params, mb):
        pp, vp = params
        total, aux = jnp.zeros(()), {}
        if policy_loss_fn is not None:
            total, aux = policy_loss_fn(pp, mb)
            aux = dict(aux, loss=total)
        if value_fn is not None:
            v = value_loss(value_fn, vp, mb, value_clip)
            total = total + v
            aux = dict(aux, value_loss=v)
        return total, aux

    def step(carry, mb):
        pp, vp, po, vo = carry
        (_, aux), grads = jax.value_and_grad(loss, has_aux=True)((pp, vp), mb)
        gp, gv = grads
        gp, gv = par.mean_grads(
            (gp if policy_loss_fn is not None else None, gv if value_fn is not None else None), axis_name
        )
        if policy_loss_fn is not None:
            up, po = policy_opt.update(gp, po, pp)
            pp = optax.apply_updates(pp, up)
            aux["grad_norm"] = optax.global_norm(gp)
        if value_fn is not None:
            uv, vo = value_opt.update(gv, vo, vp)
            vp = optax.apply_updates(vp, uv)
            aux["value_grad_norm"] = optax.global_norm(gv)
        return (pp, vp, po, vo), aux

    return step


def fit_value(
    key: jax.Array,
    state: AlgoState,
    batch: Any,
    num_epochs: int,
    num_minibatches: int,
    critic: Critic,
    axis_name: str | None = None,
):
    """``num_epochs`` x ``num_minibatches`` Optax steps on :func:`value_loss` alone (value params only).

    Args:
      key: PRNG key for the minibatch permutations.
      state: :class:`~tr_jax.algorithms.base.AlgoState`; only ``value_params``/``value_opt`` change.
      batch: :class:`~tr_jax.algorithms.base.Batch` with leaves ``[N, ...]``.
      critic: the value function, its clip and optimiser (:class:`Critic`).
      axis_name: data-parallel axis (``batch`` global, see :func:`minibatch_epochs`) or None.
    Returns:
      ``(state, metrics)``: ``value_loss``, ``value_grad_norm``, means over the steps (and devices).
    """
    step = _minibatch_step(None, critic.fn, critic.clip, None, critic.opt, axis_name)
    carry = (state.policy_params, state.value_params, state.policy_opt, state.value_opt)
    (_, vp, _, vo), metrics = minibatch_epochs(key, batch, num_epochs, num_minibatches, step, carry, axis_name)
    return state._replace(value_params=vp, value_opt=vo), par.pmean(jax.tree.map(jnp.mean, metrics), axis_name)


def actor_critic_epochs(
    key: jax.Array,
    state: AlgoState,
    batch: Any,
    schedule: EpochSchedule,
    policy_loss_fn: Callable,
    policy_opt: optax.GradientTransformation,
    critic: Critic,
    axis_name: str | None = None,
):
    """Minibatch epochs of policy and value steps (PPO's and TRPL's update).

    With ``schedule.value_epochs == num_epochs`` and ``value_minibatches ==
    num_minibatches``: ``num_epochs`` passes in which every minibatch takes one
    ``policy_opt`` step on ``policy_loss_fn`` and one ``value_opt`` step on
    :func:`value_loss` (one joint ``value_and_grad``). Otherwise (the
    reference TRPL setup: 20 policy, 10 value epochs): ``num_epochs`` passes of
    policy steps, then ``value_epochs`` passes of ``value_minibatches`` value
    steps (:func:`fit_value`) on their own permutations. Either way the policy
    optimiser takes ``num_epochs * num_minibatches`` steps and the value
    optimiser ``value_epochs * value_minibatches``.

    Args:
      key: PRNG key for the minibatch permutations.
      state: the :class:`~tr_jax.algorithms.base.AlgoState` to update (``extra`` kept).
      batch: :class:`~tr_jax.algorithms.base.Batch` with leaves ``[N, ...]``.
      schedule: the policy's and the value function's epochs and minibatches (:class:`EpochSchedule`).
      policy_loss_fn: ``policy_loss_fn(policy_params, mb) -> (loss, aux dict of scalars)``, ``mb`` with
        leaves ``[N // num_minibatches, ...]``.
      policy_opt: the policy's Optax optimiser.
      critic: the value function, its clip and optimiser (:class:`Critic`).
      axis_name: data-parallel axis (``batch`` global, see :func:`minibatch_epochs`) or None.
    Returns:
      ``(state, metrics)``: ``aux`` plus ``loss`` (the policy loss), ``grad_norm`` (policy gradient),
      ``value_loss`` and ``value_grad_norm``, each the mean over its minibatch steps (and devices).
    """
    num_epochs, num_minibatches, value_epochs, value_minibatches = schedule
    carry = (state.policy_params, state.value_params, state.policy_opt, state.value_opt)
    joint = value_epochs == num_epochs and value_minibatches == num_minibatches
    step = _minibatch_step(policy_loss_fn, critic.fn if joint else None, critic.clip, policy_opt, critic.opt, axis_name)
    if joint:
        key_policy, key_value = key, None
    else:
        key_policy, key_value = jax.random.split(key)
    (pp, vp, po, vo), metrics = minibatch_epochs(key_policy, batch, num_epochs, num_minibatches, step, carry, axis_name)
    state = AlgoState(pp, vp, po, vo, state.extra)
    metrics = par.pmean(jax.tree.map(jnp.mean, metrics), axis_name)
    if key_value is not None:  # (not joint)
        state, value_metrics = fit_value(key_value, state, batch, value_epochs, value_minibatches, critic, axis_name)
        metrics.update(value_metrics)
    return state, metrics
