"""The built-in quick config's critic reaches the scale of its returns within the run.

On the inverted pendulum (reward 1 per step, values ~1/(1-gamma) = 100) a critic that is still far below that
scale late in the run leaves the advantages blind to a fall more than ~20 steps ahead; the quick config's policy
then drifted into leaning and accelerating the cart into its end stop, and its return fell from 200 to ~100.
This checks the mechanism on a trivial survival task (no physics): the quick config's own critic, trained for a
third of its run, predicts at least half of the true value. The old critic (16 joint value steps per iteration,
value clipping 0.2 on raw returns) was at ~5% there. The same holds for ``TrainConfig``'s default critic, whose
value clipping on raw returns held it at 18% (85% without it).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _line_env import LineEnv
from brax.envs import base

from tr_jax.config import QUICK_CONFIG, TrainConfig
from tr_jax.envs import normalize as N
from tr_jax.train import make_trainer


class SurviveEnv(LineEnv):
    """Reward 1 every step, never terminates (only the time limit cuts it): the value of every state is
    1 / (1 - gamma). Observation: a small random offset drawn at reset (like a balanced pendulum's state);
    action size and backend as LineEnv's."""

    def reset(self, rng):
        obs = jax.random.uniform(rng, (4,), minval=-0.01, maxval=0.01)
        return base.State(
            pipeline_state={"x": obs}, obs=obs, reward=jnp.zeros(()), done=jnp.zeros(()), metrics={}, info={}
        )

    def step(self, state, action):
        del action
        return state.replace(reward=jnp.ones(()), done=jnp.zeros(()))

    @property
    def observation_size(self):
        return 4


# TrainConfig's defaults on the same small batch: the default critic (10 epochs x 32 minibatches, raw rewards)
# had value clipping 0.2 on raw returns until it was turned off by default; it then reached 18% of the value
DEFAULTS = TrainConfig(episode_length=200, num_envs=32, unroll_length=32, total_env_steps=32 * 32 * 60)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quick", "defaults"])
def test_quick_config_critic_reaches_the_return_scale(name):
    config = (QUICK_CONFIG if name == "quick" else DEFAULTS).replace(num_devices=1)
    iterations = config.num_iterations // 3
    trainer = make_trainer(config, SurviveEnv())
    state, _ = jax.jit(trainer.train_chunk, static_argnums=1)(trainer.init(jax.random.key(0)), iterations)
    obs = jax.random.uniform(jax.random.key(1), (256, 4), minval=-0.01, maxval=0.01)
    obs = N.normalize(state.obs_stats, obs, config.obs_clip) if config.normalize_obs else obs
    pred = trainer.value.apply(state.algo.value_params, obs)
    if config.normalize_reward:  # the critic predicts returns in units of the running return std
        pred = pred * jnp.sqrt(state.reward_norm.stats.var + 1e-8)
    true_value = 1.0 / (1.0 - config.gamma)
    assert np.median(np.asarray(pred)) > 0.5 * true_value, (np.median(np.asarray(pred)), true_value)
