"""MuJoCo Playground (the ``playground`` extra, part of the ``test`` extra): one dm_control task,
CartpoleBalance, loaded once for the module (its env and step compile for ~40 s on a CPU).

Checks the semantics mapping of tr_jax.envs.wrappers on a Playground env (termination from the env's
``done``, truncation from tr_jax's time limit, bootstrapping only on truncation, episode returns, auto-reset)
and that PPO and TRPL-KL beat the random policy on it with tiny budgets.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mujoco_playground")  # installed by the test extra, so CI runs this module
pytestmark = pytest.mark.xdist_group("playground")  # one worker compiles the env once (pyproject: --dist loadgroup)

from tr_jax.algorithms import core  # noqa: E402
from tr_jax.config import TrainConfig  # noqa: E402
from tr_jax.envs import episode_stats, load_env, wrap_env  # noqa: E402
from tr_jax.train import make_trainer  # noqa: E402

NAME = "playground:CartpoleBalance"
L = 100  # time limit (env steps); Playground's own episode_length (1000) is not used
E = 8
BROKEN_ENV, BROKEN_AT = 0, 10  # env 0 gets a NaN action at step 10: NaN physics, Playground's done = 1


@pytest.fixture(scope="module")
def cartpole():
    """(env object, StepInfo [L + 1, E] of random actions with one NaN action, random policy's mean return)."""
    env = load_env(NAME)
    vec = wrap_env(env, E, episode_length=L)
    actions = jax.random.uniform(jax.random.key(1), (L + 1, E, vec.action_dim), minval=-1.0, maxval=1.0)
    actions = actions.at[BROKEN_AT, BROKEN_ENV].set(jnp.nan)
    _, info = jax.jit(lambda s, a: jax.lax.scan(vec.step, s, a))(vec.reset(jax.random.key(0)), actions)
    info = jax.tree.map(np.asarray, info)
    ok = np.arange(E) != BROKEN_ENV
    ret_sum, _, count = episode_stats(jax.tree.map(lambda x: x[:, ok], info))
    return env, info, float(ret_sum / count)


def test_playground_env_loads_with_the_jax_implementation(cartpole):
    env, info, _ = cartpole
    assert env.mjx_model.impl.value == "jax"
    assert info.obs.shape == (L + 1, E, 5) and info.obs.dtype == np.float32


def test_termination_truncation_returns_and_reset_on_playground(cartpole):
    _, info, random_return = cartpole
    ok = np.arange(E) != BROKEN_ENV
    # the NaN state ends env 0's episode as a termination (Playground's done), not a truncation
    assert info.termination[BROKEN_AT, BROKEN_ENV] == 1 and info.truncation[BROKEN_AT, BROKEN_ENV] == 0
    assert info.ep_length[BROKEN_AT, BROKEN_ENV] == BROKEN_AT + 1
    assert np.all(np.isfinite(info.obs[BROKEN_AT + 1 :, BROKEN_ENV]))  # auto-reset to a fresh state
    assert info.termination.sum() == 1
    # every other episode ends by tr_jax's time limit after L steps, as a truncation
    np.testing.assert_array_equal(info.truncation[:, ok].sum(0), 1)
    np.testing.assert_array_equal(info.truncation[L - 1, ok], 1)
    np.testing.assert_array_equal(info.ep_length[L - 1, ok], L)
    # the episode return is the sum of the env's raw rewards (dense, in [0, 1] per step)
    np.testing.assert_allclose(info.ep_return[L - 1, ok], info.reward[:L, ok].sum(0), rtol=1e-5)
    assert 0 < random_return < L
    # GAE bootstraps the truncated step from V(s') and never the terminated one (V = 1, r = 0, lambda = 0)
    ones = np.ones(info.reward.shape, np.float32)
    adv, _ = core.gae(np.zeros_like(ones), ones, ones, info.termination, info.truncation, gamma=0.99, gae_lambda=0.0)
    np.testing.assert_allclose(adv[BROKEN_AT, BROKEN_ENV], -1.0)
    np.testing.assert_allclose(adv[L - 1, ok], 0.99 - 1.0, rtol=1e-5)


def _config(**algorithm) -> TrainConfig:
    return TrainConfig(
        env_name=NAME,
        episode_length=L,
        num_envs=16,
        unroll_length=32,
        total_env_steps=200_000,
        num_epochs=4,
        num_minibatches=4,
        eval_every=0,
        **algorithm,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm", [dict(algorithm="ppo"), dict(algorithm="trpl", projection="kl")], ids=["ppo", "trpl-kl"]
)
def test_ppo_and_trpl_kl_beat_random_on_cartpole_balance(cartpole, algorithm):
    """~190 iterations (3-4 s once compiled): the random policy earns ~76 per 100-step episode, these ~90."""
    env, _, random_return = cartpole
    trainer = make_trainer(_config(**algorithm), env=env)
    state, metrics = jax.jit(trainer.train)(jax.random.key(0))
    assert not np.any(np.asarray(metrics["diverged"]))
    trained = float(np.asarray(metrics["episode_return"])[-5:].mean())
    assert trained > random_return + 6, (trained, random_return)
    if algorithm["algorithm"] == "ppo":  # evaluation builds its own batch of the same Playground env
        out = jax.jit(trainer.evaluate, static_argnums=2)(state, jax.random.key(1), 2)
        np.testing.assert_array_equal(out["deterministic_length"], L)
        assert np.all(np.asarray(out["deterministic_return"]) > random_return + 6), (out, random_return)
