"""TRPL-KL on a Brax env in one file, PureJaxRL style: ``make_train(config) -> train(rng)``, one ``lax.scan``.

    python examples/trpl.py [ENV_NAME]        # default inverted_pendulum

``diff -u examples/ppo.py examples/trpl.py`` turns PPO into TRPL-KL with tr_jax's building blocks
(:mod:`tr_jax.losses`): the surrogate is evaluated on the network's Gaussian projected per state onto the trust
region around the behaviour policy, a regression loss pulls the network towards its projection, and the
projected (global) std is written back after each update. Actions are clipped to [-1, 1] for the env;
log-probabilities use the unclipped Gaussian sample. No observation or reward normalisation, to stay short.
"""

import sys
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from brax import envs
from brax.envs.wrappers.training import AutoResetWrapper, EpisodeWrapper, VmapWrapper

import tr_jax.projections
from tr_jax import distributions as D
from tr_jax import losses

CONFIG = dict(
    ENV_NAME="inverted_pendulum",
    BACKEND="positional",
    EPISODE_LENGTH=200,
    NUM_ENVS=32,
    NUM_STEPS=32,
    TOTAL_TIMESTEPS=32 * 32 * 40,
    UPDATE_EPOCHS=4,
    NUM_MINIBATCHES=4,
    GAMMA=0.99,
    GAE_LAMBDA=0.95,
    LR=3e-4,
    MAX_GRAD_NORM=0.5,
    VF_COEF=0.5,
    ENT_COEF=0.0,
    EPS_MEAN=0.03,
    EPS_COV=1e-3,
    TR_COEF=1.0,
)


class ActorCritic(nn.Module):
    """obs [..., d] -> (mean [..., k], std [..., k], value [...]); a global (state-independent) std."""

    action_dim: int

    @nn.compact
    def __call__(self, x):
        dense = lambda n, g: nn.Dense(n, kernel_init=nn.initializers.orthogonal(g))  # noqa: E731
        a = nn.tanh(dense(64, np.sqrt(2))(nn.tanh(dense(64, np.sqrt(2))(x))))
        mean = dense(self.action_dim, 0.01)(a)
        std = jnp.broadcast_to(jnp.exp(self.param("log_std", nn.initializers.zeros, (self.action_dim,))), mean.shape)
        v = nn.tanh(dense(64, np.sqrt(2))(nn.tanh(dense(64, np.sqrt(2))(x))))
        return mean, std, dense(1, 1.0)(v)[..., 0]


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array
    mean: jax.Array  # the behaviour policy, for the projection
    std: jax.Array


def make_train(config):
    num_updates = config["TOTAL_TIMESTEPS"] // (config["NUM_ENVS"] * config["NUM_STEPS"])
    minibatch_size = config["NUM_ENVS"] * config["NUM_STEPS"] // config["NUM_MINIBATCHES"]
    env = envs.get_environment(config["ENV_NAME"], backend=config["BACKEND"])
    env = VmapWrapper(AutoResetWrapper(EpisodeWrapper(env, config["EPISODE_LENGTH"], 1)))
    net = ActorCritic(env.action_size)
    tx = optax.chain(optax.clip_by_global_norm(config["MAX_GRAD_NORM"]), optax.adam(config["LR"], eps=1e-5))

    def train(rng):
        rng, k_init, k_env = jax.random.split(rng, 3)
        params = net.init(k_init, jnp.zeros((1, env.observation_size)))
        env_state = env.reset(jax.random.split(k_env, config["NUM_ENVS"]))
        ep_ret = jnp.zeros(config["NUM_ENVS"])

        def update_step(runner, _):
            def env_step(carry, _):
                params, env_state, ep_ret, rng = carry
                rng, k = jax.random.split(rng)
                mean, std, value = net.apply(params, env_state.obs)
                action = D.sample(k, mean, std, "diag")
                next_state = env.step(env_state, jnp.clip(action, -1.0, 1.0))
                t = Transition(
                    env_state.obs,
                    action,
                    D.log_prob(action, mean, std, "diag"),
                    value,
                    next_state.reward,
                    next_state.done,
                    mean,
                    std,
                )
                ep_ret = ep_ret + next_state.reward
                finished = (ep_ret * next_state.done, next_state.done)
                return (params, next_state, ep_ret * (1 - next_state.done), rng), (t, finished)

            params, opt_state, env_state, ep_ret, rng = runner
            (_, env_state, ep_ret, rng), (traj, finished) = jax.lax.scan(
                env_step, (params, env_state, ep_ret, rng), None, config["NUM_STEPS"]
            )

            # GAE (a time-limit end counts as terminal here, as in PureJaxRL)
            last_value = net.apply(params, env_state.obs)[2]

            def gae_step(carry, t):
                gae, next_value = carry
                delta = t.reward + config["GAMMA"] * next_value * (1 - t.done) - t.value
                gae = delta + config["GAMMA"] * config["GAE_LAMBDA"] * (1 - t.done) * gae
                return (gae, t.value), gae

            _, adv = jax.lax.scan(gae_step, (jnp.zeros_like(last_value), last_value), traj, reverse=True)
            batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), (traj, adv, adv + traj.value))

            def loss_fn(params, mb):
                t, adv, target = mb
                mean, std, value = net.apply(params, t.obs)
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                (mean, std), raw = losses.project_gaussians(
                    "kl", mean, std, t.mean, t.std, config["EPS_MEAN"], config["EPS_COV"], cov_type="diag"
                )
                log_prob = D.log_prob(t.action, mean, std, "diag")
                pg_loss = losses.trpl_surrogate(log_prob, t.log_prob, adv)
                pg_loss += config["TR_COEF"] * losses.trust_region_loss("kl", raw, (mean, std), cov_type="diag")
                entropy = D.entropy(std, "diag").mean()
                return pg_loss + config["VF_COEF"] * jnp.mean((value - target) ** 2) - config["ENT_COEF"] * entropy

            def epoch(carry, k):
                def minibatch(carry, mb):
                    params, opt_state = carry
                    grads = jax.grad(loss_fn)(params, mb)
                    updates, opt_state = tx.update(grads, opt_state)
                    return (optax.apply_updates(params, updates), opt_state), None

                perm = jax.random.permutation(k, minibatch_size * config["NUM_MINIBATCHES"])
                mbs = jax.tree.map(lambda x: x[perm].reshape((config["NUM_MINIBATCHES"], -1) + x.shape[1:]), batch)
                return jax.lax.scan(minibatch, carry, mbs)[0], None

            rng, k = jax.random.split(rng)
            (params, opt_state), _ = jax.lax.scan(
                epoch, (params, opt_state), jax.random.split(k, config["UPDATE_EPOCHS"])
            )
            # write the mean projected std back into the global log_std: the acting std is the projected one
            traj = batch[0]
            mean, std, _ = net.apply(params, traj.obs)
            (_, proj_std), _ = losses.project_gaussians(
                "kl", mean, std, traj.mean, traj.std, config["EPS_MEAN"], config["EPS_COV"], cov_type="diag"
            )
            std = losses.global_scale(proj_std, cov_type="diag", projection="kl")
            params = {"params": {**params["params"], "log_std": jnp.log(std)}}
            mean, std, _ = net.apply(params, traj.obs)  # the acting policy: its per-state distance to the old one
            mp, cp = tr_jax.projections.kl_parts(mean, std, traj.mean, traj.std)  # mean / cov part per state
            ret_sum, count = jax.tree.map(jnp.sum, finished)
            metrics = {"episode_return": ret_sum / jnp.maximum(count, 1), "episodes": count}
            metrics.update(acting_mean_part_max=mp.max(), acting_mean_part_mean=mp.mean(), acting_cov_part_max=cp.max())
            return (params, opt_state, env_state, ep_ret, rng), metrics

        runner = (params, tx.init(params), env_state, ep_ret, rng)
        runner, metrics = jax.lax.scan(update_step, runner, None, num_updates)
        return runner[0], metrics

    return train


if __name__ == "__main__":
    config = {**CONFIG, "ENV_NAME": sys.argv[1] if len(sys.argv) > 1 else CONFIG["ENV_NAME"]}
    params, metrics = jax.jit(make_train(config))(jax.random.key(0))
    ret = np.asarray(metrics["episode_return"])
    print(f"episode return: first iteration {ret[0]:.1f}, last {ret[-1]:.1f}")
