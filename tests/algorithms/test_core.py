"""Shared training core: GAE, minibatch epochs, advantage and running normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tr_jax.algorithms import core
from tr_jax.envs import normalize as N


def test_gae_hand_computed_truncation_and_termination():
    # One env, T = 5:
    #   t=0 ordinary step, t=1 truncated (time limit), t=2 ordinary,
    #   t=3 terminated, t=4 ordinary (last step of the rollout).
    gamma, lam = 0.9, 0.8
    r = np.array([1.0, 2.0, 0.5, 3.0, 1.0])
    v = np.array([0.5, 1.0, 0.2, 0.4, 0.3])  # V(s_t)
    nv = np.array([1.0, 7.0, 0.4, 99.0, 2.0])  # V(s'_t), pre-reset next state
    term = np.array([0, 0, 0, 1, 0.0])
    trunc = np.array([0, 1, 0, 0, 0.0])
    # deltas by hand
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    d1 = 2.0 + 0.9 * 7.0 - 1.0  # 7.3   (truncation: bootstrap from V(s'_1) = 7)
    d2 = 0.5 + 0.9 * 0.4 - 0.2  # 0.66
    d3 = 3.0 + 0.0 - 0.4  # 2.6   (termination: no bootstrap, 99 ignored)
    d4 = 1.0 + 0.9 * 2.0 - 0.3  # 2.5
    a4 = d4
    a3 = d3  # episode ended at t=3: no trace from t=4
    a2 = d2 + 0.72 * a3
    a1 = d1  # episode ended at t=1
    a0 = d0 + 0.72 * a1
    expected = np.array([a0, a1, a2, a3, a4])
    np.testing.assert_allclose(expected, [1.4 + 0.72 * 7.3, 7.3, 0.66 + 0.72 * 2.6, 2.6, 2.5], rtol=1e-12)

    as_col = lambda x: jnp.asarray(x, jnp.float32)[:, None]  # [T, E=1]
    adv, ret = core.gae(as_col(r), as_col(v), as_col(nv), as_col(term), as_col(trunc), gamma, lam)
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(ret[:, 0], expected + v, rtol=1e-5)


def test_gae_lambda_one_is_discounted_return_to_episode_end():
    key = jax.random.key(0)
    T, E = 12, 3
    r = jax.random.normal(key, (T, E))
    v = jnp.zeros((T, E))
    nv = jnp.zeros((T, E))
    term = jnp.zeros((T, E)).at[4, 0].set(1.0).at[7, 2].set(1.0)
    trunc = jnp.zeros((T, E)).at[9, 1].set(1.0)
    adv, _ = core.gae(r, v, nv, term, trunc, 0.95, 1.0)
    done = np.maximum(np.asarray(term), np.asarray(trunc))
    expect = np.zeros((T, E))
    for e in range(E):
        acc = 0.0
        for t in reversed(range(T)):
            acc = float(r[t, e]) + 0.95 * (1 - done[t, e]) * acc
            expect[t, e] = acc
    np.testing.assert_allclose(adv, expect, rtol=1e-5, atol=1e-6)


def test_make_batch_flattens_env_major_and_uses_next_values():
    T, E, d, k = 4, 2, 3, 2
    key = jax.random.key(1)
    obs = jax.random.normal(key, (T, E, d))
    next_obs = obs + 1.0
    ro = core.Rollout(
        obs=obs,
        action=jnp.ones((T, E, k)),
        log_prob=jnp.zeros((T, E)),
        old_mean=jnp.zeros((T, E, k)),
        old_scale=jnp.ones((T, E, k)),
        reward=jnp.ones((T, E)),
        termination=jnp.zeros((T, E)),
        truncation=jnp.zeros((T, E)),
        next_obs=next_obs,
    )
    value_fn = lambda p, o: o.sum(-1) * p
    batch = core.make_batch(ro, value_fn, 0.5, 0.99, 0.95)
    assert batch.obs.shape == (T * E, d) and batch.advantage.shape == (T * E,)
    # env-major rows (row e * T + t): each env's steps are one contiguous block, so a block of envs on
    # one device is a block of rows
    np.testing.assert_allclose(batch.obs[1 * T + 2], obs[2, 1])
    np.testing.assert_allclose(batch.old_value, (obs.sum(-1) * 0.5).T.reshape(-1), rtol=1e-6)
    adv, _ = core.gae(ro.reward, obs.sum(-1) * 0.5, next_obs.sum(-1) * 0.5, ro.termination, ro.truncation, 0.99, 0.95)
    np.testing.assert_allclose(batch.advantage, adv.T.reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(batch.returns, batch.advantage + batch.old_value, rtol=1e-6)


def test_minibatch_epochs_visits_every_row_once_per_epoch():
    n, epochs, mbs = 24, 3, 4
    batch = {"x": jnp.arange(n, dtype=jnp.float32), "y": jnp.arange(n)[:, None] * jnp.ones((1, 2))}

    def step(carry, mb):
        assert mb["x"].shape == (n // mbs,) and mb["y"].shape == (n // mbs, 2)
        # rows stay aligned across leaves
        return carry + 1, {"x": mb["x"], "aligned": jnp.all(mb["y"][:, 0] == mb["x"])}

    count, m = core.minibatch_epochs(jax.random.key(0), batch, epochs, mbs, step, 0)
    assert int(count) == epochs * mbs
    assert m["x"].shape == (epochs, mbs, n // mbs)
    assert bool(jnp.all(m["aligned"]))
    for e in range(epochs):
        np.testing.assert_array_equal(np.sort(np.asarray(m["x"][e]).ravel()), np.arange(n))
    # shuffled, and differently per epoch
    assert not np.array_equal(np.asarray(m["x"][0]).ravel(), np.arange(n))
    assert not np.array_equal(np.asarray(m["x"][0]), np.asarray(m["x"][1]))


def test_minibatch_epochs_rejects_non_dividing():
    with pytest.raises(ValueError, match="must divide"):
        core.minibatch_epochs(jax.random.key(0), {"x": jnp.zeros(10)}, 1, 3, lambda c, b: (c, ()), 0)


def test_normalize_advantage():
    a = jax.random.normal(jax.random.key(2), (1000,)) * 5 + 3
    z = core.normalize_advantage(a)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-4


def test_running_stats_match_numpy():
    key = jax.random.key(3)
    chunks = [jax.random.normal(k, (7, 5, 3)) * 2 + 1 for k in jax.random.split(key, 4)]
    s = N.init_stats((3,))
    for c in chunks:
        s = N.update_stats(s, c)
    allx = np.concatenate([np.asarray(c).reshape(-1, 3) for c in chunks])
    np.testing.assert_allclose(s.mean, allx.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.var, allx.var(0), rtol=1e-3)
    z = N.normalize(s, jnp.asarray(allx))
    np.testing.assert_allclose(np.asarray(z).mean(0), 0, atol=1e-3)


def test_reward_normalisation_uses_discounted_return_std():
    T, E, gamma = 6, 2, 0.9
    r = jnp.arange(T * E, dtype=jnp.float32).reshape(T, E)
    done = jnp.zeros((T, E)).at[2, 0].set(1.0)
    st = N.update_reward_norm(N.init_reward_norm(E), r, done, gamma)
    rets = np.zeros((T, E))
    acc = np.zeros(E)
    for t in range(T):
        acc = acc * gamma + np.asarray(r[t])
        rets[t] = acc
        acc = acc * (1 - np.asarray(done[t]))
    np.testing.assert_allclose(st.ret, acc, rtol=1e-6)
    np.testing.assert_allclose(st.stats.var, rets.var(), rtol=1e-3)
    np.testing.assert_allclose(N.scale_rewards(st, r), r / np.sqrt(rets.var()), rtol=1e-3)
