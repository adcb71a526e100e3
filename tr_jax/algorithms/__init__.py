"""Policy-gradient algorithms over one shared core: PPO, TRPO, TRPL."""

import importlib

from tr_jax.algorithms.base import Algorithm, AlgoState, Batch
from tr_jax.choices import ALGORITHMS

# name -> (module, builder), one row per name of ALGORITHMS (tr_jax.choices), in its order
_BUILDERS = {
    "ppo": ("tr_jax.algorithms.ppo", "make_ppo"),
    "trpo": ("tr_jax.algorithms.trpo", "make_trpo"),
    "trpl": ("tr_jax.algorithms.trpl", "make_trpl"),
}


def make_algorithm(config, policy, value, axis_name=None) -> Algorithm:
    """Dispatches on ``config.algorithm`` (one of :data:`ALGORITHMS`); ``axis_name``: the data-parallel axis."""
    if config.algorithm not in _BUILDERS:
        raise ValueError(f"unknown algorithm {config.algorithm!r}; expected one of {ALGORITHMS}")
    module, builder = _BUILDERS[config.algorithm]
    return getattr(importlib.import_module(module), builder)(config, policy, value, axis_name)


def reads(name: str) -> tuple[str, ...]:
    """The ``TrainConfig`` fields algorithm ``name`` (one of :data:`ALGORITHMS`) reads that not every algorithm
    does: its module's ``READS``. Every other field is read whatever the algorithm (or by none of them)."""
    return importlib.import_module(_BUILDERS[name][0]).READS


__all__ = ["ALGORITHMS", "Algorithm", "AlgoState", "Batch", "make_algorithm", "reads"]
