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

Bad input (mismatched shapes, a scale of the wrong rank, Python lists,
dtypes other than float32/float64 (bfloat16 and float16 are refused: the
bounds are not met in them), non-positive or non-finite concrete bounds,
concrete stds or factor diagonals <= 0, unknown names or cov_types) raises
ValueError while tracing. KL also refuses a concrete eps_cov below
:func:`bound_floor` (float32 1e-8, float64 1e-12), where rounding alone breaks
the bound. Bounds that are traced (e.g. jit arguments) cannot be checked:
a zero bound gives the old covariance exactly (every projection, under jit
too), a negative or NaN one gives NaN; traced stds <= 0 are not checked
(meaningless output).
NaN in a state's inputs gives NaN in that state's outputs, under jit too; the
closed forms do not iterate and the KL solver runs a bounded number of
iterations, so nothing hangs.
"""

from tr_jax.projections._checks import bound_floor
from tr_jax.projections.dispatch import NAMES, canonical_name, get_parts, get_projection, parts, project
from tr_jax.projections.entropy import entropy_projection
from tr_jax.projections.frobenius import frobenius_parts, frobenius_projection
from tr_jax.projections.kl import kl_parts, kl_projection
from tr_jax.projections.mean import mean_distance, mean_projection, project_mean
from tr_jax.projections.wasserstein import wasserstein_parts, wasserstein_projection

__all__ = [
    "NAMES",
    "bound_floor",
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
