"""Vectorised env wrapper: errors, clipping, auto-reset, truncation vs termination, action repeat."""

import _line_env
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tr_jax import distributions as D
from tr_jax.algorithms import core
from tr_jax.envs import check_env, episode_stats, make_vec_env

_line_env.register()


def test_unknown_env_and_backend_list_options():
    with pytest.raises(ValueError, match="unknown env 'nope'.*inverted_pendulum"):
        check_env("nope", "positional")
    with pytest.raises(ValueError, match="unknown backend 'warp9'.*positional"):
        check_env("ant", "warp9")
    with pytest.raises(ValueError, match="unknown env"):
        make_vec_env("halfcheeta", "positional")


def _run(env, state, actions):
    """Steps through actions [S, E, k] in one scan; returns (state, StepInfo [S, E])."""
    return jax.jit(lambda s, a: jax.lax.scan(env.step, s, a))(state, actions)


def test_clipping_repeat_termination_and_reset():
    E = 3
    env = make_vec_env("tr_jax_test_line", num_envs=E, episode_length=1000, action_repeat=2)
    state = env.reset(jax.random.key(0))
    pool_obs = np.asarray(state.pool.obs)
    # action 5 is clipped to 1: pos +1 per env step, reward 1 per env step; threshold 3
    state, info = _run(env, state, jnp.full((4, E, 1), 5.0))
    np.testing.assert_allclose(info.reward[0], 2.0)  # 2 repeats x clipped 1
    np.testing.assert_array_equal(info.termination[:, 0], [0, 1, 0, 1])
    np.testing.assert_array_equal(info.truncation, 0)
    np.testing.assert_array_equal(info.ep_length[:, 0], [2, 4, 2, 4])
    # the terminal step's final_obs is pre-reset (pos > 3); the env then restarts from its pool state
    assert np.all(info.final_obs[1, :, 0] > 3.0)
    np.testing.assert_allclose(info.obs[2], pool_obs, rtol=1e-6)
    ret_sum, len_sum, count = episode_stats(info)
    assert int(count) == 2 * E
    np.testing.assert_allclose(ret_sum / count, np.asarray(info.ep_return)[1].mean(), rtol=1e-6)


def test_rewards_stop_accumulating_after_termination_inside_repeat():
    env = make_vec_env("tr_jax_test_line", num_envs=1, episode_length=1000, action_repeat=4)
    state = env.reset(jax.random.key(1))
    pos0 = float(state.obs[0, 0])
    state, info = _run(env, state, jnp.full((1, 1, 1), 1.0))
    # pos crosses 3 after the 3rd or 4th env step (pos0 in [-0.1, 0.1])
    n_counted = 3 if pos0 > 0 else 4
    assert float(info.termination[0, 0]) == 1.0
    np.testing.assert_allclose(info.reward[0, 0], float(n_counted))


def test_truncation_is_flagged_separately_from_termination():
    E, L = 2, 5
    env = make_vec_env("tr_jax_test_line", num_envs=E, episode_length=L)
    state = env.reset(jax.random.key(2))
    # tiny steps: never reaches the threshold, so only the time limit ends episodes
    state, info = _run(env, state, jnp.full((12, E, 1), 0.01))
    np.testing.assert_array_equal(info.termination, 0)
    np.testing.assert_array_equal(info.truncation[:, 0], [0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(info.done, info.truncation)
    np.testing.assert_array_equal(state.steps, [2, 2])
    # bootstrapping state of the truncated step is the pre-reset one (t = 5 / 100)
    np.testing.assert_allclose(info.final_obs[4, :, 1], 0.05, rtol=1e-6)
    np.testing.assert_allclose(info.obs[5, :, 1], 0.0)


def test_rollout_logprob_uses_unclipped_action():
    E = 4
    env = make_vec_env("tr_jax_test_line", num_envs=E, episode_length=100)
    state = env.reset(jax.random.key(3))
    apply = lambda p, o: (jnp.full(o.shape[:-1] + (1,), 10.0), jnp.full(o.shape[:-1] + (1,), 0.1))
    _, ro, info = core.rollout(jax.random.key(4), env, state, core.Behaviour(apply, None, "diag", lambda o: o), 2)
    assert np.all(ro.action > 9.0)  # stored action is the raw sample
    np.testing.assert_allclose(info.reward, 1.0)  # the env saw the clipped action
    np.testing.assert_allclose(
        ro.log_prob, D.log_prob(ro.action, ro.old_mean, ro.old_scale, "diag"), rtol=1e-5, atol=1e-5
    )


# The wrapper on a real Brax env is checked in tests/algorithms/test_train_ppo.py
# (test_brax_wrapper_random_actions), sharing that module's compile.
