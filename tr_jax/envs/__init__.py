"""Brax environments for tr_jax: vectorised wrapping and normalisation.

``tr_jax.envs.normalize`` is the normalisation module (its ``normalize``
function is not re-exported here so the module name stays reachable).
"""

from tr_jax.envs.normalize import (RewardNorm, RunningStats, init_reward_norm, init_stats,
                                   scale_rewards, update_reward_norm, update_stats)
from tr_jax.envs.wrappers import (BACKENDS, EnvState, StepInfo, VecEnv, check_env, env_names, episode_stats,
                                  make_vec_env)

__all__ = [
    "BACKENDS", "EnvState", "StepInfo", "VecEnv", "check_env", "env_names", "episode_stats", "make_vec_env",
    "RewardNorm", "RunningStats", "init_reward_norm", "init_stats", "scale_rewards",
    "update_reward_norm", "update_stats",
]
