"""Bring your own env: any object with the Brax Env API, passed to ``make_trainer(config, env=...)``."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _line_env import DictObsLineEnv, LineEnv
from brax import envs
from brax.envs.wrappers import training as brax_training

from tr_jax.config import TrainConfig
from tr_jax.envs import wrap_env
from tr_jax.train import make_trainer

# env_name names nothing registered: with an env object it is not used
CFG = TrainConfig(
    env_name="not_a_registered_env",
    episode_length=30,
    num_envs=8,
    unroll_length=16,
    total_env_steps=8 * 16 * 40,
    num_epochs=4,
    num_minibatches=4,
    policy_hidden=(16,),
    value_hidden=(16,),
    policy_lr=3e-3,
    eval_every=0,
)


def test_an_unregistered_env_object_trains_and_evaluates():
    """LineEnv's reward is the (clipped) action: a random policy earns ~0 per step, a trained one close to 1."""
    trainer = make_trainer(CFG.replace(algorithm="ppo"), env=LineEnv(threshold=1e9))
    state, metrics = jax.jit(trainer.train)(jax.random.key(0))
    reward = np.asarray(metrics["reward_mean"])
    assert abs(reward[0]) < 0.3, reward[:3]
    assert reward[-5:].mean() > 0.6, reward[-5:]
    # evaluation builds its own batch from the same env object
    out = jax.jit(trainer.evaluate, static_argnums=2)(state, jax.random.key(1), 3)
    assert out["deterministic_return"].shape == (3,)
    np.testing.assert_array_equal(out["deterministic_length"], CFG.episode_length)  # never terminates: time limit
    assert np.all(np.asarray(out["deterministic_return"]) > 0.6 * CFG.episode_length)


def test_dict_observations_need_an_explicit_key():
    env = DictObsLineEnv()
    with pytest.raises(
        ValueError,
        match=r"observations are a dict \{'privileged_state': \(3,\), 'state': \(2,\)\}; "
        r"set obs_key",
    ):
        make_trainer(CFG, env=env)
    with pytest.raises(ValueError, match=r"obs_key 'pixels' is not in the env's observation dict"):
        make_trainer(CFG.replace(obs_key="pixels"), env=env)
    with pytest.raises(ValueError, match=r"obs_key 'state' is set but the env's observations are an array"):
        make_trainer(CFG.replace(obs_key="state"), env=LineEnv())


@pytest.mark.parametrize("obs_key, obs_dim", [("state", 2), ("privileged_state", 3)])
def test_obs_key_selects_what_the_agent_sees_and_the_env_keeps_its_dict(obs_key, obs_dim):
    vec = wrap_env(DictObsLineEnv(threshold=3.0), num_envs=2, episode_length=100, obs_key=obs_key)
    assert vec.obs_dim == obs_dim
    state = vec.reset(jax.random.key(0))
    state, info = jax.jit(lambda s, a: jax.lax.scan(vec.step, s, a))(state, jnp.full((5, 2, 1), 1.0))
    assert info.obs.shape == (5, 2, obs_dim) and info.final_obs.shape == (5, 2, obs_dim)
    # the env stepped on its own dict (DictObsLineEnv.step reads obs["state"]) and terminated at pos > 3
    np.testing.assert_array_equal(info.termination[:, 0], [0, 0, 0, 1, 0])
    inner_obs = np.asarray(state.inner.obs[obs_key])
    np.testing.assert_array_equal(np.asarray(state.obs), inner_obs)


def test_env_objects_that_do_not_fit_are_rejected_with_the_reason():
    class NoStep:
        action_size = 1

        def reset(self, key):
            return None

    with pytest.raises(ValueError, match="lacks step of the Brax Env API"):
        make_trainer(CFG, env=NoStep())
    # wrapped for Brax's own training loop: the time limit is folded into done
    wrapped = brax_training.EpisodeWrapper(
        envs.get_environment("inverted_pendulum"), episode_length=10, action_repeat=1
    )
    with pytest.raises(ValueError, match="already wrapped for a training loop.*pass the raw env"):
        make_trainer(CFG, env=wrapped)
    # batched already: observations are not one vector per env
    batched = brax_training.VmapWrapper(LineEnv(), batch_size=4)
    with pytest.raises(ValueError, match=r"one vector per env, got shape \(4, 2\)"):
        make_trainer(CFG, env=batched)


@pytest.mark.slow
def test_the_host_loop_trains_resumes_and_restores_an_env_object(tmp_path):
    from tr_jax.run import evaluate_run, run

    cfg = CFG.replace(total_env_steps=8 * 16 * 4, chunk_iterations=2, checkpoint_every=2, eval_every=2, eval_episodes=2)
    d = str(tmp_path / "own")
    first = run(cfg, run_dir=d, progress="none", env=LineEnv(threshold=1e9))
    assert first.status == "finished" and first.iteration == 4
    assert os.path.exists(os.path.join(d, "eval.jsonl"))
    longer = run(
        cfg.replace(total_env_steps=8 * 16 * 6), run_dir=d, resume=True, progress="none", env=LineEnv(threshold=1e9)
    )
    assert longer.iteration == 6
    out = evaluate_run(d, num_episodes=2, env=LineEnv(threshold=1e9))  # load_checkpoint with the env object
    assert out["iteration"] == 6 and out["deterministic_length"].shape == (1, 2)
