"""A tiny brax-API environment for fast wrapper/training tests (compiles in a blink).

State: position ``pos`` and step counter ``t``. Each step: ``pos += action[0]``;
reward = ``action[0]`` (so clipping of actions is visible in the reward);
terminates when ``pos > threshold``; with ``nan_after`` set, the reward is NaN
from step ``t > nan_after`` on (used to trigger the NaN guard).
"""

import jax
import jax.numpy as jnp
from brax.envs import base, register_environment

from tr_jax.config import TrainConfig


class LineEnv(base.Env):
    def __init__(self, backend="positional", threshold=3.0, nan_after=None, **kwargs):
        del backend, kwargs
        self.threshold = threshold
        self.nan_after = nan_after

    def reset(self, rng):
        pos = jax.random.uniform(rng, (), minval=-0.1, maxval=0.1)
        ps = {"pos": pos, "t": jnp.zeros((), jnp.int32)}
        return base.State(
            pipeline_state=ps, obs=self._obs(ps), reward=jnp.zeros(()), done=jnp.zeros(()), metrics={}, info={}
        )

    def step(self, state, action):
        ps = state.pipeline_state
        ps = {"pos": ps["pos"] + action[0], "t": ps["t"] + 1}
        reward = action[0]
        if self.nan_after is not None:
            reward = jnp.where(ps["t"] > self.nan_after, jnp.nan, reward)
        done = (ps["pos"] > self.threshold).astype(jnp.float32)
        return state.replace(
            pipeline_state=ps,
            obs=self._obs(ps),
            reward=reward,
            done=done,
            info={**state.info, "extra_key_added_by_step": done},
        )

    @staticmethod
    def _obs(ps):
        return jnp.stack([ps["pos"], ps["t"].astype(jnp.float32) / 100.0])

    @property
    def observation_size(self):
        return 2

    @property
    def action_size(self):
        return 1

    @property
    def backend(self):
        return "positional"


def line_config(iterations: int, **fields) -> TrainConfig:
    """A config of ``iterations`` iterations on the line env: 4 envs x 8 steps an iteration, episodes of 20
    steps, 2 epochs of 2 minibatches, one hidden layer of 8 units; ``fields`` replace any of it
    (``total_env_steps`` follows ``num_envs`` and ``unroll_length``)."""
    fields = {
        **dict(
            env_name="tr_jax_test_line",
            episode_length=20,
            num_envs=4,
            unroll_length=8,
            num_epochs=2,
            num_minibatches=2,
            policy_hidden=(8,),
            value_hidden=(8,),
        ),
        **fields,
    }
    return TrainConfig(total_env_steps=fields["num_envs"] * fields["unroll_length"] * iterations, **fields)


def register():
    register_environment("tr_jax_test_line", LineEnv)
    register_environment("tr_jax_test_line_nan", lambda **kw: LineEnv(threshold=1e9, nan_after=50, **kw))
    register_environment("tr_jax_test_line_dict", lambda **kw: DictObsLineEnv(threshold=1e9, **kw))


class DictObsLineEnv(LineEnv):
    """LineEnv with dict observations, like MuJoCo Playground's locomotion tasks:
    ``"state"`` (the LineEnv observation, [2]) and ``"privileged_state"`` (the
    previous step's ``"state"`` and the position, [3]). ``step`` reads
    ``state.obs["state"]``, so it fails unless it gets its own dict back."""

    def reset(self, rng):
        s = super().reset(rng)
        return s.replace(obs=self._dict_obs(s.obs, s.obs, s.pipeline_state))

    def step(self, state, action):
        previous = state.obs["state"]
        s = super().step(state.replace(obs=previous), action)
        return s.replace(obs=self._dict_obs(s.obs, previous, s.pipeline_state))

    @staticmethod
    def _dict_obs(obs, previous, ps):
        return {"state": obs, "privileged_state": jnp.concatenate([previous, ps["pos"][None]])}

    @property
    def observation_size(self):
        return {"state": (2,), "privileged_state": (3,)}
