"""Differentiable trust-region projections for Gaussian policies.

Every projection maps a new Gaussian N(mean, scale) and an old one to the
closest Gaussian inside a trust region around the old one, with separate
bounds on a mean part and a covariance part:
``f(mean, scale, old_mean, old_scale, eps_mean, eps_cov, *, cov_type=None)``
with means ``[..., k]``, scales ``[..., k]`` (std) or ``[..., k, k]``
(``cov_type`` "full": lower Cholesky factor, "sqrt": symmetric square root),
bounds scalars or ``[...]``; jit/vmap/grad (reverse mode), float32 and float64.

The contract (shapes, ``cov_type``, bounds, what is checked and what raises,
NaN, gradients) is written once, on the documentation site's
[Projections][the-contract] page (``docs/projections.md``), and the math on
[How the projections work][how-the-projections-work]; each function's
docstring gives its own arguments.
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
