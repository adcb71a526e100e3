"""Environments for tr_jax: where they come from, vectorised wrapping and normalisation.

``tr_jax.envs.sources`` names and loads env objects (Brax, MuJoCo Playground);
``tr_jax.envs.wrappers`` batches any Brax-API env object into a ``VecEnv``;
``tr_jax.envs.normalize`` is the normalisation module (its ``normalize``
function is not re-exported here so the module name stays reachable).
"""

from tr_jax.envs.normalize import (
    RewardNorm,
    RunningStats,
    init_reward_norm,
    init_stats,
    scale_rewards,
    update_reward_norm,
    update_stats,
)
from tr_jax.envs.sources import (
    BACKENDS,
    PLAYGROUND_PREFIX,
    EnvUnavailableError,
    check_env,
    env_names,
    load_env,
    split_env_name,
)
from tr_jax.envs.wrappers import (
    EnvState,
    StepInfo,
    VecEnv,
    check_env_api,
    episode_stats,
    make_vec_env,
    select_obs,
    wrap_env,
)

__all__ = [
    "BACKENDS",
    "PLAYGROUND_PREFIX",
    "EnvUnavailableError",
    "check_env",
    "env_names",
    "load_env",
    "split_env_name",
    "EnvState",
    "StepInfo",
    "VecEnv",
    "check_env_api",
    "episode_stats",
    "make_vec_env",
    "select_obs",
    "wrap_env",
    "RewardNorm",
    "RunningStats",
    "init_reward_norm",
    "init_stats",
    "scale_rewards",
    "update_reward_norm",
    "update_stats",
]
