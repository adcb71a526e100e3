"""End-to-end PPO on a cheap Brax task, vmap over seeds, config errors.

Compiles once per distinct function: the single-seed trainer (reused for the
learning, determinism and vmap-equality checks), its vmapped version and the
random-action baseline. The host loop, NaN stop and checkpoints: test_run.py.

The trainer runs in float64 (``dtype="float64"`` under ``jax.enable_x64``): a
vmapped program batches its matmuls differently from the single-seed one, and
the training dynamics amplify float32 rounding differences into 10% different
returns after 30 iterations (how much depends on the CPU and XLA's choices),
while float64 keeps them at ~1e-9, so "vmapped seeds equal separate runs" is
checked tightly over the whole run. float32 training is what test_run.py,
test_train_trpo_trpl.py and test_playground.py run.
"""

import jax
import numpy as np
import pytest

from tr_jax.config import TrainConfig
from tr_jax.envs import episode_stats
from tr_jax.run import run
from tr_jax.train import make_trainer

# one xdist worker runs this module (--dist loadgroup): its module fixture (trained) is computed once
pytestmark = pytest.mark.xdist_group("train_ppo")

CONFIG = TrainConfig(
    env_name="inverted_pendulum",
    backend="positional",
    episode_length=200,
    num_envs=32,
    unroll_length=32,
    total_env_steps=32 * 32 * 30,
    num_epochs=4,
    num_minibatches=4,
    algorithm="ppo",
    dtype="float64",
)


@pytest.fixture(scope="module")
def trained():
    with jax.enable_x64(True):
        return _train_all()


def _train_all():
    trainer = make_trainer(CONFIG)
    train = trainer.train
    jtrain = jax.jit(train)
    keys = jax.random.split(jax.random.key(0), 2)
    out0 = jax.block_until_ready(jtrain(keys[0]))
    out1 = jtrain(keys[1])
    again = jtrain(keys[0])
    vmapped = jax.jit(jax.vmap(train))(keys)
    # random-action baseline on the same vectorised env (this is also the Brax
    # integration check of the env wrapper: see test_brax_wrapper_random_actions)
    env = trainer.env

    @jax.jit
    def random_rollout(key):
        k0, k1 = jax.random.split(key)
        return jax.lax.scan(env.random_step, env.reset(k0), jax.random.split(k1, 200))[1]

    info = random_rollout(jax.random.key(7))
    ret_sum, _, count = episode_stats(info)
    return dict(
        out0=out0,
        out1=out1,
        again=again,
        vmapped=vmapped,
        random=float(ret_sum / count),
        random_episodes=int(count),
        random_info=jax.tree.map(np.asarray, info),
    )


@pytest.mark.slow
def test_ppo_improves_over_random(trained):
    _, m = trained["out0"]
    assert m["episode_return"].shape == (CONFIG.num_iterations,)
    assert trained["random_episodes"] > 50
    random_return = trained["random"]
    for _, metrics in (trained["out0"], trained["out1"]):
        final = float(np.mean(metrics["episode_return"][-5:]))
        print(f"random {random_return:.1f} -> PPO {final:.1f}")
        assert final > max(3.0 * random_return, random_return + 50.0)
    assert not np.any(m["diverged"])
    np.testing.assert_array_equal(m["env_steps"], (np.arange(CONFIG.num_iterations) + 1) * CONFIG.batch_size)


@pytest.mark.slow
def test_ppo_reports_kl_and_losses(trained):
    _, m = trained["out0"]
    for name in ("kl_mean", "kl_max", "entropy", "policy_loss", "value_loss", "clip_fraction"):
        assert m[name].shape == (CONFIG.num_iterations,) and np.all(np.isfinite(m[name])), name
    assert np.all(m["kl_mean"] >= 0) and np.all(m["kl_max"] >= m["kl_mean"])


@pytest.mark.slow
def test_same_key_same_result(trained):
    (s0, m0), (s1, m1) = trained["out0"], trained["again"]
    for k in m0:
        np.testing.assert_array_equal(m0[k], m1[k], err_msg=k)
    jax.tree.map(np.testing.assert_array_equal, s0.algo.policy_params, s1.algo.policy_params)


@pytest.mark.slow
def test_vmap_over_seeds_equals_separate_runs(trained):
    # float64: the two programs differ only by rounding (measured: episode returns
    # equal, parameters within 3e-9), so seeds that share keys or state, or a vmap
    # over the wrong axis, show as O(1) differences.
    vs, vm = trained["vmapped"]
    for i, (s, m) in enumerate((trained["out0"], trained["out1"])):
        assert m["policy_loss"].dtype == np.float64
        for k in ("episode_return", "kl_mean", "value_loss", "entropy", "policy_loss"):
            scale = float(np.max(np.abs(m[k])))
            np.testing.assert_allclose(vm[k][i], m[k], rtol=1e-6, atol=1e-6 * scale, err_msg=k)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7),
            vs.algo.policy_params,
            s.algo.policy_params,
        )
    # the two seeds really differ
    assert not np.allclose(vm["episode_return"][0], vm["episode_return"][1])


@pytest.mark.slow
def test_brax_wrapper_random_actions(trained):
    info = trained["random_info"]
    assert np.all(np.isfinite(info.obs)) and info.obs.shape == (200, CONFIG.num_envs, 4)
    done = info.done > 0
    # random actions topple the pendulum well before the time limit
    assert info.termination.sum() > 50 and info.truncation.sum() == 0
    assert np.all(info.ep_length[done] >= 1) and np.all(info.ep_length[done] < CONFIG.episode_length)
    np.testing.assert_allclose(info.ep_return[done], info.ep_length[done])  # reward 1 per step
    # terminal states are tilted past 0.2 rad; after a done the pendulum restarts near upright
    assert np.all(np.abs(info.final_obs[done][:, 1]) > 0.2)
    t, e = np.nonzero(done[:-1])
    assert np.all(np.abs(info.obs[t + 1, e, 1]) < 0.05)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(env_name="halfcheeta"), "unknown env 'halfcheeta'"),
        (dict(backend="warp9"), "unknown backend"),
        (dict(algorithm="a2c"), "unknown algorithm"),
        (dict(algorithm="trpl", projection="w3"), "unknown projection"),
        (dict(cov_type="cholesky"), "unknown cov_type"),
        (dict(eps_mean=0.0), "eps_mean must be positive"),
        (dict(eps_cov=-1e-3), "eps_cov must be positive"),
        (dict(max_kl=0.0), "max_kl must be positive"),
        (dict(num_minibatches=7), "must divide"),
        (dict(total_env_steps=10), "smaller than one iteration"),
    ],
)
def test_bad_config_raises_before_compiling(monkeypatch, change, match, tmp_path):
    def no_compile(*a, **k):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(jax, "jit", no_compile)
    with pytest.raises(ValueError, match=match):
        run(CONFIG.replace(**change), run_dir=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()  # nothing written either
