"""The names each ``TrainConfig`` field with a fixed set of choices may take: one tuple per field.

Names only, no tr_jax import: :mod:`tr_jax.config` checks a config against them without importing the modules
that implement the choices (the networks, the algorithms, the projections), and each of those modules takes its
tuple from here (``tr_jax.algorithms.ALGORITHMS``, ``tr_jax.projections.NAMES``, ...), so there is one list of
each. The order is the one error messages show.
"""

ALGORITHMS = ("ppo", "trpo", "trpl")  # TrainConfig.algorithm: tr_jax.algorithms
PROJECTIONS = ("kl", "w2", "frob")  # projection (canonical names; aliases: tr_jax.projections.canonical_name)
COV_TYPES = ("diag", "full", "sqrt")  # cov_type: tr_jax.distributions
ACTIVATIONS = ("tanh", "relu")  # activation: tr_jax.networks
MATMUL_PRECISIONS = ("default", "high", "highest")  # matmul_precision: tr_jax.networks
ENTROPY_SCHEDULES = ("none", "linear", "exp")  # entropy_schedule: tr_jax.losses.entropy_bound
DTYPES = ("float32", "float64")  # dtype

__all__ = ["ACTIVATIONS", "ALGORITHMS", "COV_TYPES", "DTYPES", "ENTROPY_SCHEDULES", "MATMUL_PRECISIONS", "PROJECTIONS"]
