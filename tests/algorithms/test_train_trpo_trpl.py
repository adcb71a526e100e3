"""End-to-end TRPO and TRPL (each projection) on the cheap Brax task.

One compile and one run per algorithm (one parametrised test each; under
``pytest -n 2`` the module runs on one worker, since the random baseline is a
module fixture: tests/conftest.py groups it, so nothing compiles twice); the
same run is checked for learning (beats uniform random actions clearly),
for TRPL's bounds at every iteration and for TRPO's KL constraint on every
accepted step.
"""

import jax
import numpy as np
import pytest

from tr_jax.config import TrainConfig
from tr_jax.train import make_random_baseline, make_train

CONFIG = TrainConfig(
    env_name="inverted_pendulum",
    backend="positional",
    episode_length=200,
    num_envs=32,
    unroll_length=32,
    total_env_steps=32 * 32 * 30,
    num_epochs=4,
    num_minibatches=4,
)
TOL = 1e-3  # relative, float32 solver tolerance on the bounds

RUNS = {
    "trpo": dict(algorithm="trpo"),
    "trpl-kl": dict(algorithm="trpl", projection="kl"),
    "trpl-w2": dict(algorithm="trpl", projection="w2"),
    "trpl-frob": dict(algorithm="trpl", projection="frob"),
}


@pytest.fixture(scope="module")
def random_return():
    ret, episodes = jax.jit(make_random_baseline(CONFIG, num_steps=200))(jax.random.key(7))
    assert int(episodes) > 50
    return float(ret)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_learns_and_respects_trust_region(name, random_return):
    """One test per run (not one fixture shared by several tests): each run is
    compiled once, and a failure names its run."""
    cfg = CONFIG.replace(**RUNS[name])
    _, m = jax.jit(make_train(cfg))(jax.random.key(0))
    m = jax.tree.map(np.asarray, m)
    assert not np.any(m["diverged"])
    for key in ("kl_mean", "kl_max", "entropy", "policy_loss", "value_loss"):
        assert m[key].shape == (cfg.num_iterations,) and np.all(np.isfinite(m[key])), key
    if cfg.algorithm == "trpo":
        accepted = m["accepted"] > 0
        assert accepted.mean() > 0.5  # the line search mostly succeeds
        assert np.all(m["kl_mean"][accepted] <= cfg.max_kl), m["kl_mean"][accepted].max()
        assert np.all(m["surrogate_improvement"][accepted] > 0)
    else:
        assert np.all(m["mean_part_max"] <= cfg.eps_mean * (1 + TOL)), m["mean_part_max"].max()
        assert np.all(m["cov_part_max"] <= cfg.eps_cov * (1 + TOL)), m["cov_part_max"].max()
        assert m["mean_part_max"].max() > 0.5 * cfg.eps_mean  # the mean bound was active at some point
        for key in ("trust_region_loss", "acting_kl_max", "acting_mean_part_mean", "mean_part_mean", "cov_part_mean"):
            assert np.all(np.isfinite(m[key])), key
    ret = m["episode_return"]
    final = float(np.mean(ret[-5:]))
    best = float(np.max(np.convolve(ret, np.ones(5) / 5, mode="valid")))  # best 5-iteration average
    print(f"{name}: random {random_return:.1f} -> best {best:.1f}, final {final:.1f}")
    # learns: a sustained level well above random, and still well above random at the end (this short
    # 200-step-episode budget shows a late decline after the peak for several algorithms and seeds, e.g.
    # TRPO final 61-178 over 4 seeds with peaks of 150-190: an open question, not a divergence)
    assert best > max(3.0 * random_return, random_return + 50.0)
    assert final > 2.0 * random_return
