"""End-to-end training: ``make_train(config) -> train(key)`` and the host-side ``run``.

``train(key)`` runs every iteration of one seed inside one jittable function
(``lax.scan`` over iterations; inside, a scan over env steps and the
algorithm's scans over epochs and minibatches) and returns
``(TrainState, metrics)`` where ``metrics`` is a dict of arrays
``[num_iterations]``. ``jax.vmap(train)(keys)`` trains several seeds at once;
the same key gives the same result.

One iteration: re-draw the reset pool, collect ``unroll_length`` steps from
``num_envs`` envs with the current policy, scale/normalise rewards, compute
values and GAE, call ``algorithm.update``, update the observation
statistics. A NaN guard keeps the last good state as soon as the update's
metrics or the new parameters are non-finite, records the iteration in
``TrainState.diverged_at`` and discards every later iteration (its metrics
read NaN, the state stays the last good one).

``run(config, key)`` jit-compiles, times compile and execution separately,
reports env steps per second and handles divergence on the host.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from tr_jax.algorithms import make_algorithm
from tr_jax.algorithms.base import AlgoState
from tr_jax.algorithms.core import make_batch, rollout
from tr_jax.config import TrainConfig, validate
from tr_jax.envs import normalize as N
from tr_jax.envs.wrappers import EnvState, check_env, episode_stats, make_vec_env


class TrainState(NamedTuple):
    """Everything one seed carries across iterations (scalars unless noted).

    algo: the algorithm's :class:`~tr_jax.algorithms.base.AlgoState`.
    env: :class:`~tr_jax.envs.wrappers.EnvState` of ``num_envs`` envs.
    obs_stats: running observation statistics ``[obs_dim]``.
    reward_norm: running discounted-return statistics.
    key: PRNG key.
    episode_return, episode_length: mean over the episodes that finished in
      the latest iteration that finished any (NaN before the first).
    diverged_at: iteration at which the NaN guard fired, -1 if never.
    """

    algo: AlgoState
    env: EnvState
    obs_stats: N.RunningStats
    reward_norm: N.RewardNorm
    key: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    diverged_at: jax.Array


def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def make_train(config: TrainConfig, env=None):
    """Builds ``train(key) -> (TrainState, metrics)`` for ``config``.

    Validates ``config`` and the env name/backend first (``ValueError`` before
    anything is compiled). ``env``: an optional prebuilt
    :class:`~tr_jax.envs.wrappers.VecEnv` matching the config.

    The returned function carries the pieces it closes over as attributes:
    ``train.env``, ``train.policy``, ``train.value``, ``train.algorithm``,
    ``train.init(key) -> TrainState``, ``train.config``.
    """
    from tr_jax.networks import make_policy, make_value

    validate(config)
    check_env(config.env_name, config.backend)
    if env is None:
        env = make_vec_env(config.env_name, config.backend, config.num_envs, config.episode_length,
                           config.action_repeat)
    policy = make_policy(config, env.obs_dim, env.action_dim)
    value = make_value(config, env.obs_dim)
    algorithm = make_algorithm(config, policy, value)
    dtype = jnp.dtype(config.dtype)
    steps_per_iteration = config.batch_size * config.action_repeat

    def init(key) -> TrainState:
        k_pol, k_val, key = jax.random.split(key, 3)
        return TrainState(
            algo=algorithm.init(policy.init(k_pol), value.init(k_val)),
            env=env.placeholder(),  # reset by the first iteration's refresh
            obs_stats=N.init_stats((env.obs_dim,), dtype),
            reward_norm=N.init_reward_norm(config.num_envs, dtype),
            key=key,
            episode_return=jnp.asarray(jnp.nan, jnp.float32),
            episode_length=jnp.asarray(jnp.nan, jnp.float32),
            diverged_at=jnp.asarray(-1, jnp.int32),
        )

    def live(ts: TrainState, it):
        key, k_pool, k_roll, k_upd = jax.random.split(ts.key, 4)
        env_state = env.refresh(ts.env, k_pool)
        if config.normalize_obs:
            obs_norm = lambda o: N.normalize(ts.obs_stats, o.astype(dtype))
        else:
            obs_norm = lambda o: o.astype(dtype)
        env_state, ro, info = rollout(k_roll, env, env_state, policy.apply, ts.algo.policy_params, policy.cov_type,
                                      obs_norm, config.unroll_length)
        reward = (info.reward * config.reward_scaling).astype(dtype)
        reward_norm = ts.reward_norm
        if config.normalize_reward:
            reward_norm = N.update_reward_norm(reward_norm, reward, info.done, config.gamma)
            reward = N.scale_rewards(reward_norm, reward)
        ro = ro._replace(reward=reward, termination=info.termination.astype(dtype),
                         truncation=info.truncation.astype(dtype))
        batch = make_batch(ro, value.apply, ts.algo.value_params, config.gamma, config.gae_lambda)
        algo, metrics = algorithm.update(k_upd, ts.algo, batch, it)

        ok = _all_finite(metrics) & _all_finite((algo.policy_params, algo.value_params))

        ret_sum, len_sum, count = episode_stats(info)
        has = count > 0
        ep_ret = jnp.where(has, ret_sum / jnp.maximum(count, 1), ts.episode_return)
        ep_len = jnp.where(has, len_sum / jnp.maximum(count, 1), ts.episode_length)
        new = TrainState(
            algo=algo, env=env_state,
            obs_stats=N.update_stats(ts.obs_stats, info.obs) if config.normalize_obs else ts.obs_stats,
            reward_norm=reward_norm, key=key, episode_return=ep_ret, episode_length=ep_len,
            diverged_at=ts.diverged_at,
        )
        metrics = dict(metrics)
        metrics.update({
            "env_steps": ((it + 1) * steps_per_iteration).astype(jnp.int32),
            "episode_return": ep_ret, "episode_length": ep_len, "episodes_finished": count,
            "reward_mean": info.reward.mean(), "diverged": jnp.logical_not(ok),
        })
        return new, metrics

    def iteration(ts: TrainState, it):
        # NaN guard: an iteration whose update is non-finite is discarded whole
        # (params, optimiser, env and normalisation statistics stay as they
        # were) and every later one too; later metrics read NaN. A select rather
        # than lax.cond: under vmap a cond is a select anyway, and this traces
        # the (slow to trace) env step only once.
        new, metrics = live(ts, it)
        stopped = ts.diverged_at >= 0
        keep = stopped | metrics["diverged"]
        new = jax.tree.map(lambda old, x: jnp.where(keep, old, x), ts, new)
        new = new._replace(diverged_at=jnp.where(keep & ~stopped, it.astype(jnp.int32), ts.diverged_at))
        metrics = {k: (jnp.where(stopped, jnp.nan, v) if jnp.issubdtype(v.dtype, jnp.inexact) else v)
                   for k, v in metrics.items()}
        metrics["diverged"] = metrics["diverged"] | stopped
        return new, metrics

    def train(key):
        ts = init(key)
        return jax.lax.scan(iteration, ts, jnp.arange(config.num_iterations, dtype=jnp.int32))

    train.env, train.policy, train.value, train.algorithm = env, policy, value, algorithm
    train.init, train.config = init, config
    return train


def make_random_baseline(config: TrainConfig, num_steps: int = 200, env=None):
    """Builds ``baseline(key) -> (mean episode return, episodes)`` of uniform random
    actions in [-1, 1] on ``config``'s env (``num_envs`` envs, ``num_steps`` steps).

    Jittable; only finished episodes count (NaN if none finished).
    """
    validate(config)
    check_env(config.env_name, config.backend)
    if env is None:
        env = make_vec_env(config.env_name, config.backend, config.num_envs, config.episode_length,
                           config.action_repeat)

    def baseline(key):
        k0, k1 = jax.random.split(key)
        _, info = jax.lax.scan(env.random_step, env.reset(k0), jax.random.split(k1, num_steps))
        ret_sum, _, count = episode_stats(info)
        return ret_sum / count, count

    return baseline


class TrainingDiverged(RuntimeError):
    """Raised by :func:`run` when the NaN guard fired; ``.result`` holds the run."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


class RunResult(NamedTuple):
    """Host-side result of :func:`run`.

    state: final :class:`TrainState` (leading seed dim if ``num_seeds > 1``).
    metrics: dict of numpy arrays ``[num_iterations]`` or ``[num_seeds, num_iterations]``.
    steps_per_second: env steps per second of execution (compile excluded).
    compile_seconds, run_seconds: wall-clock times.
    diverged_at: numpy int array (``[]`` or ``[num_seeds]``), -1 where fine.
    checkpoint: path of the last-good checkpoint written on divergence, else None.
    """

    state: Any
    metrics: dict
    steps_per_second: float
    compile_seconds: float
    run_seconds: float
    diverged_at: np.ndarray
    checkpoint: Optional[str] = None


def seed_keys(key, num_seeds: int):
    """``num_seeds`` keys from an int seed or a key (one key when num_seeds == 1)."""
    if isinstance(key, int):
        key = jax.random.key(key)
    return key if num_seeds == 1 else jax.random.split(key, num_seeds)


def run(config: TrainConfig, key=0, num_seeds: int = 1, checkpoint_path: Optional[str] = None,
        on_divergence: str = "raise", verbose: bool = False) -> RunResult:
    """Compiles and runs training, timing it on the host.

    Args:
      config: the training config (validated before compiling).
      key: int seed or PRNG key.
      num_seeds: > 1 trains ``jax.vmap(train)`` over that many seeds.
      checkpoint_path: where the last good params go if training diverges
        (default: a fresh temporary directory).
      on_divergence: "raise" (:class:`TrainingDiverged`) or "warn" (print).
      verbose: print compile/run times and throughput.
    """
    if on_divergence not in ("raise", "warn"):
        raise ValueError(f"on_divergence must be 'raise' or 'warn', got {on_divergence!r}")
    train = make_train(config)
    fn = train if num_seeds == 1 else jax.vmap(train)
    keys = seed_keys(key, num_seeds)
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(keys).compile()
    t1 = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(keys))
    t2 = time.perf_counter()
    total_steps = num_seeds * config.num_iterations * config.batch_size * config.action_repeat
    result = RunResult(state=state, metrics={k: np.asarray(v) for k, v in metrics.items()},
                       steps_per_second=total_steps / (t2 - t1), compile_seconds=t1 - t0, run_seconds=t2 - t1,
                       diverged_at=np.asarray(state.diverged_at))
    if verbose:
        print(f"compiled in {result.compile_seconds:.1f} s; {total_steps} env steps in {result.run_seconds:.2f} s "
              f"({result.steps_per_second:,.0f} steps/s)")
    if np.any(result.diverged_at >= 0):
        from tr_jax import checkpoint

        if checkpoint_path is None:
            checkpoint_path = os.path.join(tempfile.mkdtemp(prefix="tr_jax_"), "last_good.msgpack")
        checkpoint.save(checkpoint_path, checkpoint.state_dict(state), config)
        result = result._replace(checkpoint=checkpoint_path)
        its = np.atleast_1d(result.diverged_at)
        where = ", ".join(f"seed {s}: iteration {i}" for s, i in enumerate(its) if i >= 0)
        message = (f"training diverged at iteration {int(its[its >= 0].min())} ({where}): losses or parameters "
                   f"became non-finite; kept the last good state and saved its params to {checkpoint_path}")
        if on_divergence == "raise":
            raise TrainingDiverged(message, result)
        print(message)
    return result
