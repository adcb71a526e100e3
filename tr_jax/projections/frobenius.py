"""Frobenius trust-region projection (closed form).

Per state, with the covariance distance c = ||Sigma~ - Sigma_o||_F^2 and a bound
eps_cov: if c > eps_cov,
    eta = sqrt(c / eps_cov) - 1,   Sigma = (Sigma~ + eta Sigma_o) / (1 + eta),
which is the Euclidean projection of Sigma~ onto the Frobenius ball of radius
sqrt(eps_cov) around Sigma_o (the argmin of ||Sigma - Sigma~||_F^2 subject to
||Sigma - Sigma_o||_F^2 <= eps_cov). It is computed as
Sigma_o + w (Sigma~ - Sigma_o), w = 1 / (1 + eta), which is the same point with
less cancellation. Sigma is a convex combination of two positive-definite
matrices, so it is positive definite; the full policy gets chol(Sigma) back
(differentiable), the diagonal one sqrt(diag Sigma).

The mean part bounds the Mahalanobis distance under the old covariance
(``scale_prec=True``) or the squared Euclidean distance (``scale_prec=False``);
``scale_prec`` does not change the covariance part.

NaN inputs: NaN is propagated to the outputs of the affected states (under
``jit`` too); nothing iterates, so nothing can hang.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from tr_jax import linalg as LA
from tr_jax.projections import _checks
from tr_jax.projections.mean import mean_distance, project_mean, shrink_weight


def _mean_metric(scale_prec: bool) -> str:
    return "mahalanobis" if scale_prec else "euclidean"


def _cov_diff(scale, old_scale, diag: bool):
    """Sigma~ - Sigma_o: ``[..., k]`` (diagonal entries) or ``[..., k, k]``."""
    if diag:
        return (scale - old_scale) * (scale + old_scale)
    return scale @ jnp.swapaxes(scale, -1, -2) - old_scale @ jnp.swapaxes(old_scale, -1, -2)


def _cov_distance(diff, diag: bool):
    axes = -1 if diag else (-2, -1)
    return jnp.sum(diff**2, axis=axes)


def _frobenius_state(mean, scale, old_mean, old_scale, eps_mean, eps_cov, *, diag: bool, scale_prec: bool):
    """One state: mean ``[k]``, scale ``[k]`` or ``[k, k]``, scalar bounds."""
    dist = mean_distance(mean, old_mean, old_scale, _mean_metric(scale_prec), diag=diag, lower=True)
    new_mean = project_mean(mean, old_mean, dist, eps_mean)

    diff = _cov_diff(scale, old_scale, diag)
    active, w = shrink_weight(_cov_distance(diff, diag), eps_cov)
    if diag:
        projected = jnp.sqrt(old_scale**2 + w * diff)
    else:
        old_cov = old_scale @ old_scale.T
        cov = old_cov + w * diff
        projected = LA.cholesky(0.5 * (cov + cov.T))
    return new_mean, jnp.where(active, projected, scale)


def frobenius_projection(mean, scale, old_mean, old_scale, eps_mean, eps_cov, scale_prec=True):
    """Frobenius trust-region projection of N(mean, scale) around the old Gaussian.

    Args:
      mean, old_mean: ``[..., k]``.
      scale, old_scale: std vectors ``[..., k]`` (diagonal Gaussians) or lower
        Cholesky factors ``[..., k, k]`` (full covariance).
      eps_mean, eps_cov: bounds, scalars or one per state ``[...]``, > 0.
      scale_prec: bound the mean by the Mahalanobis distance under the old
        covariance (True) or by the squared Euclidean distance (False).
    Returns:
      ``(projected_mean [..., k], projected_scale)`` with ``projected_scale`` in
      the input's parameterisation (std vector or lower Cholesky). Each part
      passes through unchanged (value and gradient) where its bound holds.
    Raises:
      ValueError: at trace time, for mismatched shapes, a scale of the wrong
        rank, non-float dtypes, or concrete non-positive bounds.
    """
    layout, eps_m, eps_c = _checks.check_projection(mean, scale, old_mean, old_scale, eps_mean, eps_cov)
    scale_prec = _checks.check_flag("scale_prec", scale_prec)
    fn = functools.partial(_frobenius_state, diag=layout.diag, scale_prec=scale_prec)
    return _checks.batched(fn, layout.batch_shape, mean, scale, old_mean, old_scale, eps_m, eps_c)


def frobenius_parts(mean, scale, old_mean, old_scale, scale_prec=True):
    """The two distances the Frobenius projection bounds, each ``[...]``.

    mean part: (mu - mu_o)^T Sigma_o^-1 (mu - mu_o) (``scale_prec``) or
    ||mu - mu_o||^2; cov part: ||Sigma - Sigma_o||_F^2.

    Args as in :func:`frobenius_projection` (scales: std ``[..., k]`` or
    Cholesky ``[..., k, k]``).
    """
    layout = _checks.check_pair(mean, scale, old_mean, old_scale)
    scale_prec = _checks.check_flag("scale_prec", scale_prec)
    mean_part = mean_distance(mean, old_mean, old_scale, _mean_metric(scale_prec), diag=layout.diag, lower=True)
    cov_part = _cov_distance(_cov_diff(scale, old_scale, layout.diag), layout.diag)
    return mean_part, cov_part
