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


def test_value_obs_key_errors_name_the_setting():
    with pytest.raises(ValueError, match=r"value_obs_key 'pixels' is not in the env's observation dict"):
        make_trainer(CFG.replace(obs_key="state", value_obs_key="pixels"), env=DictObsLineEnv())
    with pytest.raises(ValueError, match=r"value_obs_key must be a non-empty key .* with obs_key set"):
        make_trainer(CFG.replace(value_obs_key="privileged_state"), env=LineEnv())
    with pytest.raises(ValueError, match=r"value_obs_key must be a non-empty key"):
        make_trainer(CFG.replace(obs_key="state", value_obs_key=""), env=DictObsLineEnv())
    # value_obs_key = obs_key is the default: no second observation in the states
    vec = wrap_env(DictObsLineEnv(), num_envs=2, obs_key="state", value_obs_key="state")
    assert vec.value_obs_dim is None and vec.reset(jax.random.key(0)).value_obs is None


@pytest.mark.slow
def test_value_obs_key_gives_the_critic_its_own_entry_and_the_policy_keeps_its_own(tmp_path):
    """The policy acts on "state" [2], the value function learns on "privileged_state" [3], each normalised by
    its own statistics; the checkpoint, load_policy and the exported program hold the policy's entry only."""
    import _line_env

    from tr_jax.policy.export import export_policy
    from tr_jax.policy.loading import load_policy
    from tr_jax.run import load_checkpoint, run

    _line_env.register()
    cfg = CFG.replace(
        env_name="tr_jax_test_line_dict",
        obs_key="state",
        value_obs_key="privileged_state",
        total_env_steps=8 * 16 * 3,
        chunk_iterations=3,
        checkpoint_every=3,
        eval_every=0,
        eval_episodes=1,
        algorithm="trpl",
    )
    d = str(tmp_path / "critic")
    result = run(cfg, run_dir=d, progress="none")
    assert result.status == "finished" and result.iteration == 3
    trainer, state, _ = load_checkpoint(d)
    assert trainer.env.obs_dim == 2 and trainer.env.value_obs_dim == 3
    policy_in = state.algo.policy_params["params"]["trunk"]["Dense_0"]["kernel"]
    value_in = jax.tree.leaves(state.algo.value_params)
    assert policy_in.shape == (1, 2, 16)  # [seeds, d, hidden]
    assert any(x.shape == (1, 3, 16) for x in value_in), [x.shape for x in value_in]
    # each entry has its own running statistics, fed by the rollouts (count grew from its initial 1e-4)
    assert state.obs_stats.mean.shape == (1, 2) and state.value_obs_stats.mean.shape == (1, 3)
    np.testing.assert_allclose(state.value_obs_stats.count, state.obs_stats.count)
    assert float(state.value_obs_stats.count[0]) > 8 * 16
    # privileged_state = (previous state, pos): its first entries lag the policy's by one step, not equal them
    assert not np.allclose(state.value_obs_stats.mean[0, :2], state.obs_stats.mean[0])
    # the policy out of the run sees "state" only
    policy = load_policy(d)
    assert policy.obs_dim == 2
    assert jax.jit(policy.act)(jnp.zeros((5, 2))).shape == (5, 1)
    exported = export_policy(d, str(tmp_path / "policy.jaxexport"))
    assert exported.obs_dim == 2
    act = jax.export.deserialize(open(exported.path, "rb").read())
    assert act.in_avals[0].shape[1:] == (2,)
    np.testing.assert_allclose(act.call(jnp.ones((4, 2))), policy.act(jnp.ones((4, 2))), rtol=1e-6)
