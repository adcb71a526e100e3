"""Training configuration: one frozen dataclass for every algorithm.

``TrainConfig`` is hashable and static (closed over by ``make_train``); call
``validate(config)`` (``make_train`` does) to get a clear ``ValueError`` for a
bad config before anything is compiled.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

ALGORITHMS = ("ppo", "trpo", "trpl")
COV_TYPES = ("diag", "full", "sqrt")
PROJECTIONS = ("kl", "w2", "frob")
ACTIVATIONS = ("tanh", "relu")
ENTROPY_SCHEDULES = ("none", "linear", "exp")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # --- environment -------------------------------------------------------
    env_name: str = "inverted_pendulum"
    backend: str = "positional"
    episode_length: int = 1000
    action_repeat: int = 1
    num_envs: int = 64
    unroll_length: int = 64          # steps per env per iteration (T)
    total_env_steps: int = 1_000_000  # num_iterations = total // (num_envs * unroll_length * action_repeat)
    normalize_obs: bool = True
    reward_scaling: float = 1.0
    normalize_reward: bool = False   # divide rewards by a running std of the discounted return

    # --- algorithm -----------------------------------------------------------
    algorithm: str = "ppo"
    gamma: float = 0.99
    gae_lambda: float = 0.95
    normalize_advantage: bool = True
    num_epochs: int = 10
    num_minibatches: int = 32
    policy_lr: float = 3e-4
    value_lr: float = 3e-4
    lr_decay: bool = True            # linear decay to 0 over the run
    max_grad_norm: Optional[float] = 0.5  # None: no clipping
    value_clip: Optional[float] = 0.2     # None: no value clipping
    entropy_coef: float = 0.0

    # PPO
    clip_ratio: float = 0.2

    # TRPO
    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 0.1
    line_search_steps: int = 10
    backtrack_coef: float = 0.5

    # TRPL
    projection: str = "kl"
    eps_mean: float = 0.03
    eps_cov: float = 1e-3
    scale_prec: bool = True
    trust_region_coef: float = 1.0   # alpha of the regression loss
    entropy_schedule: str = "none"
    target_entropy: float = 0.0      # beta at the end of the run (linear/exp)
    entropy_temperature: float = 0.5  # exp schedule temperature
    entropy_equality: bool = False
    extra_regression_steps: int = 0

    # --- networks ------------------------------------------------------------
    cov_type: str = "diag"
    contextual_cov: bool = False
    policy_hidden: tuple = (64, 64)
    value_hidden: tuple = (64, 64)
    activation: str = "tanh"
    shared_trunk: bool = False
    init_std: float = 1.0
    min_std: float = 1e-4

    # --- misc -----------------------------------------------------------------
    dtype: str = "float32"

    @property
    def batch_size(self) -> int:
        """Transitions per iteration (N = num_envs * unroll_length)."""
        return self.num_envs * self.unroll_length

    @property
    def num_iterations(self) -> int:
        return self.total_env_steps // (self.batch_size * self.action_repeat)

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **kw)


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of {options}")


def _positive(config, *names):
    for n in names:
        v = getattr(config, n)
        if not (v > 0):
            raise ValueError(f"{n} must be positive, got {v}")


def validate(config: TrainConfig) -> TrainConfig:
    """Raises ``ValueError`` naming the first problem; returns ``config``.

    Environment names are checked against ``brax.envs`` by the env module.
    """
    _choice("algorithm", config.algorithm, ALGORITHMS)
    _choice("cov_type (policy parameterisation)", config.cov_type, COV_TYPES)
    _choice("projection", config.projection, PROJECTIONS)
    _choice("activation", config.activation, ACTIVATIONS)
    _choice("entropy_schedule", config.entropy_schedule, ENTROPY_SCHEDULES)
    _choice("dtype", config.dtype, ("float32", "float64"))
    _positive(config, "episode_length", "action_repeat", "num_envs", "unroll_length", "total_env_steps",
              "num_epochs", "num_minibatches", "policy_lr", "value_lr", "clip_ratio", "max_kl",
              "cg_iters", "line_search_steps", "eps_mean", "eps_cov", "init_std", "min_std",
              "reward_scaling")
    if not 0 < config.gamma <= 1 or not 0 <= config.gae_lambda <= 1:
        raise ValueError(f"need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got {config.gamma}, {config.gae_lambda}")
    if not 0 < config.backtrack_coef < 1:
        raise ValueError(f"backtrack_coef must be in (0, 1), got {config.backtrack_coef}")
    for n in ("max_grad_norm", "value_clip"):
        v = getattr(config, n)
        if v is not None and not v > 0:
            raise ValueError(f"{n} must be positive or None, got {v}")
    if config.trust_region_coef < 0 or config.extra_regression_steps < 0 or config.entropy_coef < 0:
        raise ValueError("trust_region_coef, extra_regression_steps and entropy_coef must be >= 0")
    if config.init_std <= config.min_std:
        raise ValueError(f"init_std ({config.init_std}) must exceed min_std ({config.min_std})")
    if config.batch_size % config.num_minibatches:
        raise ValueError(
            f"num_minibatches ({config.num_minibatches}) must divide the batch size "
            f"num_envs * unroll_length = {config.batch_size}"
        )
    if config.num_iterations < 1:
        raise ValueError(
            f"total_env_steps ({config.total_env_steps}) is smaller than one iteration "
            f"(num_envs * unroll_length * action_repeat = {config.batch_size * config.action_repeat})"
        )
    if config.algorithm == "trpl" and config.projection == "w2" and config.cov_type == "full":
        raise ValueError("the W2 projection on a full covariance works on the symmetric sqrt: use cov_type='sqrt'")
    return config
