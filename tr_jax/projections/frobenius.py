"""Frobenius trust-region projection (closed form): :func:`frobenius_projection`, :func:`frobenius_parts`.

A state whose covariance is outside the Frobenius ball around the old one moves on the straight line between the
two covariances to the ball (a convex combination, so positive definite); the full policy gets its Cholesky
factor back, the diagonal one its std vector. ``scale_prec`` selects the mean part's distance (Mahalanobis under
the old covariance, or squared Euclidean) and does not change the covariance part. NaN inputs give NaN in the
affected states' outputs; nothing iterates, so nothing can hang.
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

_PROJECTION = _checks.Accepts("frobenius_projection", ("diag", "full"), "full")
_PARTS = _PROJECTION._replace(what="frobenius_parts")


def _cov_diff(scale: jax.Array, old_scale: jax.Array, diag: bool) -> jax.Array:
    """Sigma~ - Sigma_o: ``[..., k]`` (diagonal entries) or ``[..., k, k]``.

    Matrix scales are Cholesky factors: only their lower triangles are read.
    """
    if diag:
        return (scale - old_scale) * (scale + old_scale)
    scale, old_scale = jnp.tril(scale), jnp.tril(old_scale)
    return LA.matmul(scale, jnp.swapaxes(scale, -1, -2)) - LA.matmul(old_scale, jnp.swapaxes(old_scale, -1, -2))


def _cov_distance(diff: jax.Array, diag: bool) -> jax.Array:
    axes = -1 if diag else (-2, -1)
    return jnp.sum(diff**2, axis=axes)


def _frobenius_state(new: Pair, old: Pair, eps: Pair, *, cov_type: CovType, scale_prec: bool) -> Pair:
    """One state: new and old ``(mean [k], scale [k] or [k, k] Cholesky)``, scalar bounds ``(eps_mean, eps_cov)``."""
    (mean, scale), (old_mean, old_scale), (eps_mean, eps_cov) = new, old, eps
    diag = cov_type == "diag"
    new_mean = project_mean_part(mean, old_mean, old_scale, eps_mean, metric_name(scale_prec), cov_type)

    diff = _cov_diff(scale, old_scale, diag)
    active, w = shrink_weight(_cov_distance(diff, diag), eps_cov)
    if diag:
        projected = jnp.sqrt(old_scale**2 + w * diff)
    else:
        old_lower = jnp.tril(old_scale)
        cov = LA.matmul(old_lower, old_lower.T) + w * diff
        # A zero bound (w = 0) gives the old factor itself, not chol(L_o L_o^T) rounded.
        projected = jnp.where(w == 0, old_lower, LA.cholesky(0.5 * (cov + cov.T)))
    return new_mean, jnp.where(active, projected, scale)


def frobenius_projection(
    mean: ArrayLike,
    scale: ArrayLike,
    old_mean: ArrayLike,
    old_scale: ArrayLike,
    eps_mean: ArrayLike,
    eps_cov: ArrayLike,
    scale_prec: bool = True,
    *,
    cov_type: Literal["diag", "full"] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Frobenius trust-region projection of N(mean, scale) around the old Gaussian.

    Args:
      mean, old_mean: ``[..., k]``.
      scale, old_scale: std vectors ``[..., k]`` (diagonal Gaussians) or lower
        Cholesky factors ``[..., k, k]`` (full covariance).
      eps_mean, eps_cov: bounds, scalars or one per state ``[...]``, > 0.
      scale_prec: bound the mean by the Mahalanobis distance under the old
        covariance (True) or by the squared Euclidean distance (False).
      cov_type: "diag" or "full" (lower Cholesky); None infers it from the
        shapes (a matrix scale is "full"). A symmetric square root is not
        accepted: convert it with ``distributions.cholesky(scale, "sqrt")``.
    Returns:
      ``(projected_mean [..., k], projected_scale)`` with ``projected_scale`` in
      the input's parameterisation (std vector or lower Cholesky). Each part
      passes through unchanged (value and gradient) where its bound holds.
    Raises:
      ValueError: at trace time, for mismatched shapes, a scale of the wrong
        rank, non-float dtypes, an unknown or unsupported ``cov_type``,
        concrete non-positive bounds, or a concrete "full" scale with non-zero
        entries above the diagonal. Under ``jit`` the values cannot be checked:
        entries above the diagonal are then ignored (read as zero), except
        that states inside both bounds pass through unchanged.
    """
    return _checks.run_projection(
        _frobenius_state,
        _PROJECTION,
        (mean, scale),
        (old_mean, old_scale),
        (eps_mean, eps_cov),
        cov_type,
        scale_prec=scale_prec,
    )


def frobenius_parts(
    mean: ArrayLike,
    scale: ArrayLike,
    old_mean: ArrayLike,
    old_scale: ArrayLike,
    scale_prec: bool = True,
    *,
    cov_type: Literal["diag", "full"] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The two distances the Frobenius projection bounds, each ``[...]``.

    mean part: (mu - mu_o)^T Sigma_o^-1 (mu - mu_o) (``scale_prec``) or
    ||mu - mu_o||^2; cov part: ||Sigma - Sigma_o||_F^2.

    Args as in :func:`frobenius_projection` (scales: std ``[..., k]`` or
    lower Cholesky ``[..., k, k]``).
    """
    layout = _checks.check_pair((mean, scale), (old_mean, old_scale), cov_type, _PARTS)
    scale_prec = _checks.check_flag("scale_prec", scale_prec)
    diag = layout.cov_type == "diag"
    mean, scale, old_mean, old_scale = (jnp.asarray(x) for x in (mean, scale, old_mean, old_scale))
    mean_part = _distance(mean, old_mean, old_scale, metric_name(scale_prec), layout.cov_type)
    cov_part = _cov_distance(_cov_diff(scale, old_scale, diag), diag)
    return mean_part, cov_part
