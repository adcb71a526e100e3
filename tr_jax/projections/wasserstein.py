"""Wasserstein-2 trust-region projection, commutative form (closed form): :func:`wasserstein_projection`,
:func:`wasserstein_parts`.

The covariance is handled through its symmetric square root (for diagonal Gaussians, the std vector); a state
outside the bound moves on the straight line between the new and the old square root to the bound, so the result
stays positive definite. ``scale_prec=True`` whitens both parts by the old policy (the mean part is then the
Mahalanobis distance), ``False`` uses plain Euclidean distances. NaN inputs give NaN in the affected states'
outputs; nothing iterates, so nothing can hang.
The math: [How the projections work][how-the-projections-work] (``docs/projections-math.md``).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from tr_jax import linalg as LA
from tr_jax.distributions import CovType
from tr_jax.projections import _checks
from tr_jax.projections._checks import Pair
from tr_jax.projections.mean import _distance, metric_name, project_mean_part, shrink_weight

_PROJECTION = _checks.Accepts("wasserstein_projection", ("diag", "sqrt"), "sqrt")
_PARTS = _PROJECTION._replace(what="wasserstein_parts")


def _cov_distance(scale: jax.Array, old_scale: jax.Array, diag: bool, scale_prec: bool) -> jax.Array:
    """Commutative squared W2 covariance distance, ``[...]``."""
    diff = scale - old_scale
    if diag:
        if scale_prec:
            diff = diff / old_scale
        return jnp.sum(diff**2, axis=-1)
    if scale_prec:
        diff = LA.spd_solve(old_scale, diff)  # S_o^-1 (S~ - S_o); Cholesky-based
    return jnp.sum(diff**2, axis=(-2, -1))


def _wasserstein_state(new: Pair, old: Pair, eps: Pair, *, cov_type: CovType, scale_prec: bool) -> Pair:
    """One state: new and old ``(mean [k], scale [k] or [k, k] sqrt)``, scalar bounds ``(eps_mean, eps_cov)``."""
    (mean, scale), (old_mean, old_scale), (eps_mean, eps_cov) = new, old, eps
    new_mean = project_mean_part(mean, old_mean, old_scale, eps_mean, metric_name(scale_prec), cov_type)
    active, w = shrink_weight(_cov_distance(scale, old_scale, cov_type == "diag", scale_prec), eps_cov)
    projected = old_scale + w * (scale - old_scale)
    return new_mean, jnp.where(active, projected, scale)


def wasserstein_projection(
    mean: ArrayLike,
    scale: ArrayLike,
    old_mean: ArrayLike,
    old_scale: ArrayLike,
    eps_mean: ArrayLike,
    eps_cov: ArrayLike,
    scale_prec: bool = True,
    *,
    cov_type: Literal["diag", "sqrt"] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """W2 (commutative) trust-region projection of N(mean, scale) around the old Gaussian.

    Args:
      mean, old_mean: ``[..., k]``.
      scale, old_scale: std vectors ``[..., k]`` (diagonal Gaussians) or
        symmetric positive-definite square roots ``[..., k, k]`` of the
        covariance (full; Sigma = S S, not a Cholesky factor).
      eps_mean, eps_cov: bounds, scalars or one per state ``[...]``, > 0.
      scale_prec: measure both parts in the old policy's metric (Mahalanobis
        mean distance, whitened covariance distance) if True, else Euclidean.
      cov_type: "diag" or "sqrt" (symmetric square root); None infers it from
        the shapes (a matrix scale is "sqrt"). A Cholesky factor is not
        accepted: convert it with ``distributions.convert_scale(L, "full", "sqrt")``.
    Returns:
      ``(projected_mean [..., k], projected_scale)``, the scale as a std vector
      or a symmetric square root like the input. Each part passes through
      unchanged (value and gradient) where its bound holds.
      Derivatives w.r.t. the matrix scales are exact along symmetric
      perturbations (the tangent space of the sqrt parameterisation).
    Raises:
      ValueError: at trace time, for mismatched shapes, a scale of the wrong
        rank, non-float dtypes, an unknown or unsupported ``cov_type``,
        concrete non-positive bounds, or a concrete "sqrt" scale that is not
        symmetric. Under ``jit`` the values cannot be checked: a non-symmetric
        scale then gives a meaningless result.
    """
    return _checks.run_projection(
        _wasserstein_state,
        _PROJECTION,
        (mean, scale),
        (old_mean, old_scale),
        (eps_mean, eps_cov),
        cov_type,
        scale_prec=scale_prec,
    )


def wasserstein_parts(
    mean: ArrayLike,
    scale: ArrayLike,
    old_mean: ArrayLike,
    old_scale: ArrayLike,
    scale_prec: bool = True,
    *,
    cov_type: Literal["diag", "sqrt"] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The two distances the W2 projection bounds, each ``[...]``.

    mean part: (mu - mu_o)^T Sigma_o^-1 (mu - mu_o) (``scale_prec``) or
    ||mu - mu_o||^2; cov part: ||S_o^-1 (S - S_o)||_F^2 (``scale_prec``) or
    ||S - S_o||_F^2, the commutative squared W2 distance.

    Args as in :func:`wasserstein_projection` (scales: std ``[..., k]`` or
    symmetric sqrt ``[..., k, k]``).
    """
    layout = _checks.check_pair((mean, scale), (old_mean, old_scale), cov_type, _PARTS)
    scale_prec = _checks.check_flag("scale_prec", scale_prec)
    mean, scale, old_mean, old_scale = (jnp.asarray(x) for x in (mean, scale, old_mean, old_scale))
    mean_part = _distance(mean, old_mean, old_scale, metric_name(scale_prec), layout.cov_type)
    cov_part = _cov_distance(scale, old_scale, layout.cov_type == "diag", scale_prec)
    return mean_part, cov_part
