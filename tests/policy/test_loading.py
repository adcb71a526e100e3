"""tr_jax.policy.loading: ``tr_jax.load_policy`` (a run's policy: normalisation, mean/sampled actions, seeds, the
ActingPolicy it holds) and what a broken or incomplete checkpoint gives (one line, in a real process too)."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tr_jax
from tr_jax import distributions as D
from tr_jax.checkpoint import CheckpointError
from tr_jax.policy import ActingPolicy, LoadedPolicy

from ._saved_run import LINE, OBS_MEAN, OBS_VAR, observations, tr_jax_process

pytestmark = pytest.mark.xdist_group("policy")


def test_load_policy_normalises_and_acts(run_dir):
    path, params = run_dir
    policy = tr_jax.load_policy(path)
    assert (policy.obs_dim, policy.action_dim, policy.iteration, policy.cov_type) == (2, 1, 3, "full")
    obs = observations(64)
    z = (obs - OBS_MEAN) / np.sqrt(OBS_VAR + 1e-8)
    assert np.abs(z).max() > 2.5  # clipping matters
    from tr_jax.networks import make_policy

    mean, scale = make_policy(LINE, 2, 1).apply(params, jnp.asarray(np.clip(z, -2.0, 2.0)))
    np.testing.assert_allclose(policy.distribution(obs)[0], mean, rtol=1e-6)
    np.testing.assert_allclose(policy.distribution(obs)[1], scale, rtol=1e-6)
    act = jax.jit(policy.act)
    np.testing.assert_array_equal(act(obs), np.clip(mean, -1, 1))
    assert np.abs(mean).max() > 1  # the action clip matters
    key = jax.random.key(5)
    sampled = act(obs, key)
    np.testing.assert_allclose(sampled, np.clip(D.sample(key, mean, scale, "full"), -1, 1), atol=1e-6)
    assert not np.allclose(sampled, act(obs))
    assert not np.allclose(tr_jax.load_policy(path, seed=1).act(obs), act(obs))  # each seed its own policy


def test_a_loaded_policy_is_an_acting_policy_with_the_run_s_context(run_dir):
    """The acting functions are the ActingPolicy's own (not copies of its fields); the context is the run's."""
    policy = tr_jax.load_policy(run_dir[0])
    assert isinstance(policy, LoadedPolicy) and isinstance(policy.acting, ActingPolicy)
    assert (policy.act, policy.distribution, policy.cov_type) == tuple(policy.acting)
    assert policy.env_steps == 3 * LINE.batch_size and policy.config.obs_clip == 2.0
    assert (policy.env.obs_dim, policy.env.action_dim) == (policy.obs_dim, policy.action_dim) == (2, 1)


def test_load_policy_errors(run_dir, tmp_path):
    with pytest.raises(ValueError, match="policy seed 2 out of range: .* has 2 seed"):
        tr_jax.load_policy(run_dir[0], seed=2)
    with pytest.raises(FileNotFoundError):
        tr_jax.load_policy(str(tmp_path / "missing"))


@pytest.fixture
def broken(run_dir, tmp_path):
    """A copy of the run whose checkpoint's array data files are cut in half (as a full disk leaves them)."""
    d = str(tmp_path / "broken")
    shutil.copytree(run_dir[0], d)
    data = os.path.join(d, "checkpoints", "3", "state", "d")
    for name in os.listdir(data):
        with open(os.path.join(data, name), "r+b") as f:
            f.truncate(os.path.getsize(os.path.join(data, name)) // 2)
    return d


@pytest.mark.parametrize("command", [["eval", "--episodes", "1"], ["export", "--out", "OUT"]])
def test_a_broken_checkpoint_is_one_line_in_a_real_process(broken, command, tmp_path):
    """Orbax's threads reported the failed read again at the interpreter's shutdown ("Event loop is closed")."""
    out = str(tmp_path / "p.jaxexport")
    done = tr_jax_process(command[0], broken, *(out if a == "OUT" else a for a in command[1:]))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"tr-jax {command[0]}: error: checkpoint {broken}/checkpoints/3 is broken (")
    assert done.stderr.count("\n") == 1, done.stderr
    assert not os.path.exists(out)


def test_an_incomplete_checkpoint_is_refused_naming_it(run_dir, tmp_path):
    """Without Orbax's metadata and commit marker, the checkpoint loaded with two absl warnings only."""
    d = str(tmp_path / "incomplete")
    shutil.copytree(run_dir[0], d)
    for name in ("_CHECKPOINT_METADATA", "commit_success.txt"):
        os.remove(os.path.join(d, "checkpoints", "3", name))
    done = tr_jax_process("eval", d, "--episodes", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"tr-jax eval: error: checkpoint {d}/checkpoints/3 is incomplete (no _CHECKPOINT_METADATA or "
        f"commit_success.txt, which Orbax writes last: it was not finished or not fully copied); there is no "
        f"older checkpoint\n"
    ), done.stderr
    with pytest.raises(CheckpointError, match="checkpoints/3 is incomplete"):
        tr_jax.load_policy(d)
