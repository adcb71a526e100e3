"""Differentiable trust-region projections for Gaussian policies.

Every projection maps a new Gaussian N(mean, scale) and an old one to the
closest Gaussian inside a trust region around the old one, with separate
bounds on a mean part and a covariance part. Shapes: means ``[..., k]``;
scales ``[..., k]`` (diagonal std) or ``[..., k, k]``; bounds scalars or
``[...]``. Any number of leading batch dims; jit/vmap/grad compatible; float32
and float64.

The scale parameterisation is ``cov_type`` (as everywhere in tr_jax):
"diag" (std vector), "full" (lower Cholesky factor) or "sqrt" (symmetric
square root). KL and Frobenius take "diag"/"full", W2 "diag"/"sqrt"; their
``cov_type=None`` default reads a matrix as their own type. ``mean_distance``
and ``mean_projection`` need the ``cov_type`` of a matrix scale. Concrete
matrices that are not of their ``cov_type`` raise ValueError; traced ones
cannot be checked (a "full" scale is then read as its lower triangle).

Bad input (mismatched shapes, a scale of the wrong rank, non-float dtypes,
non-positive or non-finite concrete bounds, unknown names or cov_types) raises ValueError
while tracing. Bounds that are traced (e.g. jit arguments) cannot be checked:
a zero bound gives (about) the old Gaussian, a negative or NaN one gives NaN.
NaN in a state's inputs gives NaN in that state's outputs, under jit too; the
closed forms do not iterate and the KL solver runs a bounded number of
iterations, so nothing hangs.
"""

from tr_jax.projections.dispatch import NAMES, canonical_name, get_parts, get_projection, parts, project
from tr_jax.projections.entropy import entropy_projection
from tr_jax.projections.frobenius import frobenius_parts, frobenius_projection
from tr_jax.projections.kl import kl_parts, kl_projection
from tr_jax.projections.mean import mean_distance, mean_projection, project_mean
from tr_jax.projections.wasserstein import wasserstein_parts, wasserstein_projection

__all__ = [
    "NAMES",
    "canonical_name",
    "entropy_projection",
    "frobenius_parts",
    "frobenius_projection",
    "get_parts",
    "get_projection",
    "kl_parts",
    "kl_projection",
    "mean_distance",
    "mean_projection",
    "parts",
    "project",
    "project_mean",
    "wasserstein_parts",
    "wasserstein_projection",
]
