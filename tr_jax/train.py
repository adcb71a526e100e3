"""The trainer: ``make_trainer(config) -> Trainer``, a NamedTuple of pure, jittable functions.

* ``init(key, hparams=None) -> TrainState``: a fresh run (the iteration
  counter and the :class:`~tr_jax.hyperparams.Hyperparams` live in the state;
  :meth:`Trainer.init_runs` ``(keys, hparams)`` starts runs with different
  settings that then train in one program; it maps ``init`` over the runs
  rather than vmapping it, see its docstring).
* ``train_chunk(state, num_iterations, active=None) -> (state, metrics)``:
  ``num_iterations`` (static) iterations as one loop; metrics stacked
  ``[num_iterations]``. ``active`` (an int32 scalar, may be traced) runs only
  the first ``active`` of them in the same compiled program (a ``while_loop``):
  the metrics' rows from ``active`` on are padding (NaN, ``diverged`` True) to
  drop. ``jax.vmap(train_chunk, in_axes=(0, None, None))`` trains several
  seeds at once; the host loop compiles one chunk program per run this way.
* ``evaluate(state, key, num_episodes) -> dict``: full episodes on their own
  envs with the deterministic (mean) and the sampled action.
* ``train(key) -> (state, metrics)``: the whole run as one jittable function
  (chunks of ``config.chunk_iterations`` in a ``lax.scan``, the last one
  running only the rest; what ``make_train``
  returns).

One iteration: re-draw the reset pool, collect ``unroll_length`` steps from
``num_envs`` envs with the current policy, scale/normalise rewards, compute
values and GAE, call ``algorithm.update``, update the observation
statistics. A NaN guard keeps the last good state as soon as the update's
metrics or the new parameters are non-finite and records the iteration in
``TrainState.diverged_at``; the rest of that chunk is discarded (metrics read
NaN) and a chunk that starts diverged is not computed at all (``lax.cond``;
under ``vmap`` over seeds JAX turns it into a select, so there only a run whose
every seed diverged saves the work -- the host loop in :mod:`tr_jax.run` stops
at the end of the chunk in which any seed diverged).

Data parallelism (:mod:`tr_jax.parallel`): ``train_chunk`` runs inside
``jax.shard_map`` over a one-axis mesh of ``config.num_devices`` devices (0:
every device JAX sees). The env state and the per-env reward statistics are
split along the env axis (:meth:`Trainer.state_specs`), everything else is
replicated; each device steps its ``num_envs / D`` envs, the batch is gathered
once per iteration and every gradient step averages gradients in one
all-reduce. The result does not depend on ``D`` (up to summation order).

The host loop (progress, metrics files, evaluation, checkpoints, resume) is
:func:`tr_jax.run.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tr_jax import distributions
from tr_jax import hyperparams as H
from tr_jax import parallel as par
from tr_jax.algorithms import Algorithm, make_algorithm
from tr_jax.algorithms.base import AlgoState
from tr_jax.algorithms.core import Behaviour, make_batch, rollout
from tr_jax.config import TrainConfig, validate
from tr_jax.envs import normalize as N
from tr_jax.envs.wrappers import EnvState, VecEnv, episode_stats, make_vec_env, wrap_env
from tr_jax.policy import acting


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
    iteration: int32, iterations done so far (the next one's index).
    hparams: :class:`~tr_jax.hyperparams.Hyperparams` the updates read.
    value_obs_stats: running statistics ``[value_obs_dim]`` of the value
      function's own observation (``config.value_obs_key``); None when it sees
      the policy's.
    """

    algo: AlgoState
    env: EnvState
    obs_stats: N.RunningStats
    reward_norm: N.RewardNorm
    key: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    diverged_at: jax.Array
    iteration: jax.Array
    hparams: H.Hyperparams
    value_obs_stats: N.RunningStats | None = None


class Trainer(NamedTuple):
    """What :func:`make_trainer` builds; every function is pure and jittable.

    init(key, hparams=None) -> TrainState  (hparams None: the config's values)
    train_chunk(state, num_iterations: int, active=None) -> (state, metrics: dict of [num_iterations] arrays);
      ``active`` (int32, may be traced): run only the first ``active`` iterations, the other rows are padding
    evaluate(state, key, num_episodes: int) -> dict of [num_episodes] arrays:
      ``deterministic_return``, ``deterministic_length``, ``stochastic_return``,
      ``stochastic_length`` (one full episode per env, at most ``episode_length`` env steps)
    train(key) -> (state, metrics: dict of [num_iterations] arrays): the whole run
    config, env, policy, value, algorithm, mesh: the pieces the functions close over
      (``algorithm`` is the plain single-device :class:`~tr_jax.algorithms.base.Algorithm`,
      callable outside the mesh; ``train_chunk`` runs its data-parallel twin).
    state_specs(batched=False) -> TrainState of PartitionSpecs (``batched``:
      with a leading unsharded runs dim); state_shardings(batched=False): the
      same as NamedShardings on ``mesh``.
    """

    init: Callable[..., TrainState]
    train_chunk: Callable[[TrainState, int], tuple]
    evaluate: Callable[[TrainState, jax.Array, int], dict]
    train: Callable[[jax.Array], tuple]
    config: TrainConfig
    env: VecEnv
    policy: Any
    value: Any
    algorithm: Algorithm
    mesh: jax.sharding.Mesh

    def init_runs(self, keys: jax.Array, hparams=None) -> TrainState:
        """``init`` for a batch of runs: ``keys`` ``[R]`` (and ``hparams`` with a leading ``[R]``, or None) ->
        TrainState with leaves ``[R, ...]``, one run after another (``lax.map``). Not ``jax.vmap(init)``: that
        batches the orthogonal initialiser's LAPACK QR, and on CPU (jaxlib 0.10) two batched LAPACK kernels
        scheduled at once can deadlock (seen: a 2-seed run hung at its first chunk, two threads in
        ``lapack_sgeqrf``; :mod:`tr_jax.linalg` keeps the training step free of such kernels)."""
        if hparams is None:
            return jax.lax.map(self.init, keys)
        return jax.lax.map(lambda a: self.init(*a), (keys, hparams))

    def state_specs(self, batched: bool = False) -> TrainState:
        """The TrainState of PartitionSpecs (``batched``: with a leading unsharded runs dim)."""
        like = jax.eval_shape(self.init, jax.random.key(0))
        return _state_specs(like, batched)

    def state_shardings(self, batched: bool = False) -> TrainState:
        """:meth:`state_specs` as NamedShardings on ``mesh``."""
        return jax.tree.map(lambda p: NamedSharding(self.mesh, p), self.state_specs(batched))


def _state_specs(like: Any, batched: bool) -> Any:
    """Env state and per-env reward statistics split along their env axis; the rest replicated.

    ``like``: a TrainState of ShapeDtypeStructs (``jax.eval_shape`` of ``init``) -> the same TrainState with
    PartitionSpec leaves (``Any``: the NamedTuples' fields are typed as the arrays they hold in training)."""
    lead = (None,) if batched else ()
    split = lambda tree: jax.tree.map(lambda _: P(*lead, par.AXIS), tree)
    rest = jax.tree.map(lambda _: P(), like._replace(env=None, reward_norm=None))
    return rest._replace(
        env=split(like.env),
        reward_norm=like.reward_norm._replace(
            ret=P(*lead, par.AXIS), stats=jax.tree.map(lambda _: P(), like.reward_norm.stats)
        ),
    )


def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _vec_env(config: TrainConfig, env=None) -> VecEnv:
    """The training :class:`VecEnv` of ``config.num_envs`` envs: built from
    ``config.env_name`` when ``env`` is None, ``env`` itself when it is a
    ``VecEnv`` (its batch must match), else ``env`` is an env object with the
    Brax ``Env`` API, wrapped with the config's time limit, action repeat,
    ``obs_key`` and ``value_obs_key``."""
    if env is None:
        return make_vec_env(
            config.env_name,
            config.backend,
            config.num_envs,
            config.episode_length,
            config.action_repeat,
            config.obs_key,
            config.value_obs_key,
        )
    if isinstance(env, VecEnv):
        if env.num_envs != config.num_envs:
            raise ValueError(f"the VecEnv passed has {env.num_envs} envs but config.num_envs is {config.num_envs}")
        return env
    return wrap_env(
        env, config.num_envs, config.episode_length, config.action_repeat, config.obs_key, config.value_obs_key
    )


def make_trainer(config: TrainConfig, env=None) -> Trainer:
    """Builds the :class:`Trainer` for ``config``.

    Validates ``config`` and the env first (``ValueError`` before anything is
    compiled). ``env``: None to build ``config.env_name`` (a Brax name or
    ``"playground:<name>"``, see :mod:`tr_jax.envs.sources`); or any env
    object with the Brax ``Env`` API (``reset(key) -> State``,
    ``step(State, action) -> State``, ``action_size``), which is then trained
    on instead (``config.env_name`` and ``config.backend`` are not used; dict
    observations need ``config.obs_key``); or a prebuilt
    :class:`~tr_jax.envs.wrappers.VecEnv` of ``config.num_envs`` envs.
    Evaluation runs the same env object in a batch of its own
    (``VecEnv.resized``).
    """
    from tr_jax.networks import make_policy, make_value

    validate(config)
    mesh = par.make_mesh(config.num_devices)
    num_devices = mesh.devices.size
    for what, n in (("num_envs", config.num_envs), ("the minibatch size", config.batch_size // config.num_minibatches)):
        if n % num_devices:
            raise ValueError(
                f"{what} ({n}) must divide by the number of devices ({num_devices}; "
                f"num_devices={config.num_devices}, 0 means every device)"
            )
    env = _vec_env(config, env)
    policy = make_policy(config, env.obs_dim, env.action_dim)
    value_obs_dim = env.value_obs_dim  # None: the value function sees the policy's observation
    value = make_value(config, env.obs_dim if value_obs_dim is None else value_obs_dim)
    algorithm = make_algorithm(config, policy, value)  # exposed: plain single-device functions
    local_algorithm = make_algorithm(config, policy, value, par.AXIS)  # what each device runs in shard_map
    dtype = jnp.dtype(config.dtype)
    steps_per_iteration = config.batch_size * config.action_repeat

    def obs_normalizer(obs_stats):
        return acting.obs_normalizer(obs_stats, config.normalize_obs, config.obs_clip, dtype)

    def init(key, hparams=None) -> TrainState:
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
            iteration=jnp.asarray(0, jnp.int32),
            hparams=H.from_config(config)
            if hparams is None
            else H.Hyperparams(*(jnp.asarray(x, dtype) for x in hparams)),
            value_obs_stats=None if value_obs_dim is None else N.init_stats((value_obs_dim,), dtype),
        )

    axis = par.AXIS

    def live(ts: TrainState):
        """One iteration on this device's envs (inside shard_map)."""
        it = ts.iteration
        key, k_pool, k_roll, k_upd = jax.random.split(ts.key, 4)
        env_state = env.refresh(ts.env, k_pool, axis)
        behaviour = Behaviour(
            policy.apply,
            ts.algo.policy_params,
            policy.cov_type,
            obs_normalizer(ts.obs_stats),
            None if ts.value_obs_stats is None else obs_normalizer(ts.value_obs_stats),
        )
        env_state, ro, info = rollout(k_roll, env, env_state, behaviour, config.unroll_length, axis)
        reward = (info.reward * config.reward_scaling).astype(dtype)
        reward_norm = ts.reward_norm
        if config.normalize_reward:
            reward_norm = N.update_reward_norm(reward_norm, reward, info.done, config.gamma, axis)
            reward = N.scale_rewards(reward_norm, reward)
        ro = ro._replace(
            reward=reward, termination=info.termination.astype(dtype), truncation=info.truncation.astype(dtype)
        )
        batch = par.gather_rows(
            make_batch(ro, value.apply, ts.algo.value_params, config.gamma, config.gae_lambda), axis
        )
        algo, metrics = local_algorithm.update(k_upd, ts.algo, batch, it, ts.hparams)

        ok = _all_finite(metrics) & _all_finite((algo.policy_params, algo.value_params))

        ret_sum, len_sum, count = par.psum(episode_stats(info), axis)
        has = count > 0
        ep_ret = jnp.where(has, ret_sum / jnp.maximum(count, 1), ts.episode_return)
        ep_len = jnp.where(has, len_sum / jnp.maximum(count, 1), ts.episode_length)
        new = TrainState(
            algo=algo,
            env=env_state,
            obs_stats=N.update_stats(ts.obs_stats, info.obs, axis) if config.normalize_obs else ts.obs_stats,
            reward_norm=reward_norm,
            key=key,
            episode_return=ep_ret,
            episode_length=ep_len,
            diverged_at=ts.diverged_at,
            iteration=it + 1,
            hparams=ts.hparams,
            value_obs_stats=N.update_stats(ts.value_obs_stats, info.value_obs, axis)
            if config.normalize_obs and ts.value_obs_stats is not None
            else ts.value_obs_stats,
        )
        metrics = dict(metrics)
        metrics.update(
            {
                "iteration": it,
                "env_steps": ((it + 1) * steps_per_iteration).astype(jnp.int32),
                "episode_return": ep_ret,
                "episode_length": ep_len,
                "episodes_finished": count,
                "reward_mean": par.mean(info.reward, axis),
                "diverged": jnp.logical_not(ok),
            }
        )
        return new, metrics

    def iteration(ts: TrainState, _=None):
        # NaN guard: an iteration whose update is non-finite is discarded whole
        # (params, optimiser, env and normalisation statistics stay as they
        # were) and every later one in the chunk too; later metrics read NaN. A
        # select rather than lax.cond: under vmap a cond is a select anyway, and
        # this traces the (slow to trace) env step only once.
        new, metrics = live(ts)
        stopped = ts.diverged_at >= 0
        keep = stopped | metrics["diverged"]
        new = jax.tree.map(lambda old, x: jnp.where(keep, old, x), ts, new)
        new = new._replace(
            diverged_at=jnp.where(keep & ~stopped, ts.iteration, ts.diverged_at), iteration=ts.iteration + 1
        )
        metrics = {
            k: (jnp.where(stopped, jnp.nan, v) if jnp.issubdtype(v.dtype, jnp.inexact) else v)
            for k, v in metrics.items()
        }
        metrics["diverged"] = metrics["diverged"] | stopped
        return new, metrics

    metric_shapes: dict[str, jax.ShapeDtypeStruct] = {}  # filled on first trace: the per-iteration metric structure

    def skipped_metrics(ts: TrainState, num_iterations: int) -> dict:
        """What a chunk that starts diverged reports (and the padding rows after ``active``): NaN, ``diverged``
        True, the step counters."""
        its = ts.iteration + jnp.arange(num_iterations, dtype=jnp.int32)
        out = {}
        for k, sd in metric_shapes.items():
            if jnp.issubdtype(sd.dtype, jnp.inexact):
                out[k] = jnp.full((num_iterations,), jnp.nan, sd.dtype)
            else:
                out[k] = jnp.zeros((num_iterations,), sd.dtype)
        out.update(
            iteration=its,
            env_steps=((its + 1) * steps_per_iteration).astype(jnp.int32),
            diverged=jnp.ones((num_iterations,), bool),
        )
        return out

    def sharded(fn, *replicated):
        """``fn(ts, *replicated) -> (ts, metrics)`` on each device's part of the state (``replicated`` and the
        metrics: the same on every device)."""
        specs = _state_specs(jax.eval_shape(init, jax.random.key(0)), batched=False)
        return jax.shard_map(
            fn, mesh=mesh, in_specs=(specs, *(P() for _ in replicated)), out_specs=(specs, P()), check_vma=False
        )

    def train_chunk(ts: TrainState, num_iterations: int, active=None):
        if not isinstance(num_iterations, int) or num_iterations < 1:
            raise ValueError(f"num_iterations must be a positive Python int (static), got {num_iterations!r}")
        if not metric_shapes:
            metric_shapes.update(jax.eval_shape(sharded(iteration), ts)[1])

        def run(ts, count):
            # rows from ``count`` on keep skipped_metrics' padding; a Python-int count makes fori_loop a scan,
            # a traced one a while loop (the same program for any count up to num_iterations)
            def body(i, carry):
                ts, rows = carry
                ts, m = iteration(ts)
                return ts, jax.tree.map(lambda r, x: r.at[i].set(x), rows, m)

            return jax.lax.fori_loop(0, count, body, (ts, skipped_metrics(ts, num_iterations)))

        def chunk(ts, *active_arg):
            count = jnp.minimum(active_arg[0], num_iterations) if active_arg else num_iterations
            return jax.lax.cond(
                ts.diverged_at >= 0, lambda ts: (ts, skipped_metrics(ts, num_iterations)), lambda ts: run(ts, count), ts
            )

        if active is None:
            return sharded(chunk)(ts)
        return sharded(chunk, active)(ts, jnp.asarray(active, jnp.int32))

    def evaluate(ts: TrainState, key, num_episodes: int) -> dict:
        if not isinstance(num_episodes, int) or num_episodes < 1:
            raise ValueError(f"num_episodes must be a positive Python int (static), got {num_episodes!r}")
        # one env batch (and one env step in the program) for both modes: the
        # first num_episodes envs act with the mean, the others sample
        n = 2 * num_episodes
        eval_env = env.resized(n)
        deterministic = (jnp.arange(n) < num_episodes)[:, None]
        pi = acting.acting_policy(policy, ts.algo.policy_params, ts.obs_stats, config)
        num_steps = -(-config.episode_length // config.action_repeat)

        def step(carry, k):
            state, alive, ret, length = carry
            mean, scale = pi.distribution(state.obs)
            action = jnp.where(deterministic, mean, distributions.sample(k, mean, scale, policy.cov_type))
            state, info = eval_env.step(state, action)
            ret = ret + jnp.where(alive, info.reward, 0.0)
            length = jnp.where(alive & (info.done > 0), info.ep_length, length)
            return (state, alive & (info.done == 0), ret, length), None

        k_reset, k_act = jax.random.split(key)
        carry = (
            eval_env.reset(k_reset),
            jnp.ones((n,), bool),
            jnp.zeros((n,), jnp.float32),
            jnp.full((n,), num_steps * config.action_repeat, jnp.int32),
        )
        (_, _, ret, length), _ = jax.lax.scan(step, carry, jax.random.split(k_act, num_steps))
        return {
            "deterministic_return": ret[:num_episodes],
            "deterministic_length": length[:num_episodes],
            "stochastic_return": ret[num_episodes:],
            "stochastic_length": length[num_episodes:],
        }

    def train(key):
        ts = init(key)
        total = config.num_iterations
        chunk = min(config.chunk_iterations, total)
        n_chunks = -(-total // chunk)  # the last one runs the rest: the same chunk program, fewer iterations
        ts, metrics = jax.lax.scan(
            lambda s, c: train_chunk(s, chunk, jnp.minimum(chunk, total - c * chunk)),
            ts,
            jnp.arange(n_chunks, dtype=jnp.int32),
        )
        return ts, jax.tree.map(lambda x: x.reshape((n_chunks * chunk,) + x.shape[2:])[:total], metrics)

    return Trainer(
        init=init,
        train_chunk=train_chunk,
        evaluate=evaluate,
        train=train,
        config=config,
        env=env,
        policy=policy,
        value=value,
        algorithm=algorithm,
        mesh=mesh,
    )


def make_train(config: TrainConfig, env=None) -> Callable:
    """``make_trainer(config, env).train``: one jittable ``train(key) -> (TrainState, metrics)``
    for the whole run (metrics: dict of ``[num_iterations]`` arrays)."""
    return make_trainer(config, env).train


def make_random_baseline(config: TrainConfig, num_steps: int = 200, env=None):
    """Builds ``baseline(key) -> (mean episode return, episodes)`` of uniform random
    actions in [-1, 1] on ``config``'s env (``num_envs`` envs, ``num_steps`` steps).

    ``env``: as for :func:`make_trainer`. Jittable; only finished episodes
    count (NaN if none finished).
    """
    validate(config)
    env = _vec_env(config, env)

    def baseline(key):
        k0, k1 = jax.random.split(key)
        _, info = jax.lax.scan(env.random_step, env.reset(k0), jax.random.split(k1, num_steps))
        ret_sum, _, count = episode_stats(info)
        return ret_sum / count, count

    return baseline
