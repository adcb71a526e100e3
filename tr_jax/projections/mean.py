"""Mean part of every trust-region projection.

With a distance m between the new mean mu~ and the old mean mu_o and a bound
eps_mu, the projection is the identity when m <= eps_mu, else
    omega = sqrt(m / eps_mu) - 1,  mu = (mu~ + omega mu_o) / (1 + omega),
after which the distance equals eps_mu exactly (every metric used here is a
scaled squared norm of mu - mu_o). Inactive states pass through unchanged in
value and gradient; the inactive branch is fed safe inputs ("double where") so
no NaN leaks into gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tr_jax import distributions as D
from tr_jax import linalg as LA
from tr_jax.projections import _checks

METRICS = ("mahalanobis", "euclidean")


def mean_distance(
    mean, old_mean, old_scale, metric: str = "mahalanobis", diag: bool | None = None, lower: bool = False
):
    """Squared distance between means, ``[...]``.

    Args:
      mean, old_mean: ``[..., k]``.
      old_scale: ``[..., k]`` (diag std) or ``[..., k, k]`` (Cholesky or
        symmetric sqrt; both give the same Sigma^-1 metric).
      metric: "mahalanobis": (mu - mu_o)^T Sigma_o^-1 (mu - mu_o);
        "euclidean": ||mu - mu_o||^2.
      diag: whether ``old_scale`` is a std vector (inferred from ranks if None).
      lower: the matrix ``old_scale`` is lower triangular (Cholesky): use a
        triangular solve instead of a general one (same value).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown mean metric {metric!r}; expected one of {METRICS}")
    diff = mean - old_mean
    if metric == "euclidean":
        return jnp.sum(diff**2, axis=-1)
    if diag is None:
        diag = jnp.ndim(old_scale) == jnp.ndim(old_mean)
    if diag:
        return jnp.sum((diff / old_scale) ** 2, axis=-1)
    # Cholesky and symmetric sqrt both satisfy Sigma = A A^T, so A^-1 works for either.
    if lower:
        return jnp.sum(LA.solve_lower(old_scale, diff) ** 2, axis=-1)
    # symmetric sqrt S: S^-1 diff via a Cholesky solve (S is positive definite).
    return jnp.sum(LA.spd_solve(old_scale, diff) ** 2, axis=-1)


def shrink_weight(dist, eps):
    """Interpolation weight of every closed-form projection.

    Args:
      dist: ``[...]`` the bounded distance of the unprojected input (a scaled
        squared norm of ``x~ - x_o``).
      eps: ``[...]`` or scalar bound (> 0).
    Returns:
      ``(active, w)``, both ``[...]``: ``active = dist > eps`` and
      ``w = sqrt(eps / dist)`` where active, exactly 1 elsewhere. The projection
      is ``x_o + w (x~ - x_o)`` (= ``(x~ + eta x_o) / (1 + eta)`` with
      ``eta = sqrt(dist / eps) - 1``), whose distance is ``w^2 dist = eps``.
      Inactive states see a safe ``dist`` ("double where"), so no NaN/inf
      reaches gradients, e.g. when ``x~ == x_o``. A NaN ``dist`` or ``eps``
      counts as active, so NaN propagates instead of passing through silently.
    """
    active = ~(dist <= eps)
    safe_dist = jnp.where(active, dist, eps)
    w = jnp.where(active, jnp.sqrt(eps / safe_dist), jnp.ones_like(safe_dist))
    return active, w


def project_mean(mean, old_mean, dist, eps):
    """Projects ``mean`` given its precomputed distance ``dist`` to ``old_mean``.

    Args:
      mean, old_mean: ``[..., k]``.
      dist: ``[...]`` the bounded distance (already scaled, e.g. 0.5 * maha for KL).
      eps: ``[...]`` or scalar bound (> 0).
    Returns:
      ``[..., k]`` projected mean; equal to ``mean`` (value and gradient) where
      ``dist <= eps``. Computed as ``mu_o + w (mu~ - mu_o)`` with
      ``w = 1 / (1 + omega)``, which is the same point as
      ``(mu~ + omega mu_o) / (1 + omega)`` but keeps the (small) step accurate.
    """
    active, w = shrink_weight(dist, eps)
    projected = old_mean + w[..., None] * (mean - old_mean)
    return jnp.where(active[..., None], projected, mean)


def mean_projection(mean, old_mean, old_scale, eps_mean, metric: str = "mahalanobis", factor: float = 1.0):
    """Mean trust-region projection, ``[..., k]``.

    Bounds ``factor * mean_distance(mean, old_mean, old_scale, metric) <= eps_mean``.
    KL uses metric="mahalanobis", factor=0.5; W2/Frobenius use factor=1 with
    "mahalanobis" (scale_prec=True) or "euclidean" (scale_prec=False).

    Args:
      mean, old_mean: ``[..., k]``.
      old_scale: ``[..., k]`` or ``[..., k, k]``.
      eps_mean: scalar or ``[...]``, > 0.
    """
    layout = _checks.check_gaussian(old_mean, old_scale, "old")
    _checks._check_float("mean", mean)
    if jnp.shape(mean) != jnp.shape(old_mean) or jnp.result_type(mean) != jnp.result_type(old_mean):
        raise ValueError(
            f"mean and old_mean must have the same shapes and dtype: {jnp.shape(mean)} {jnp.result_type(mean)} "
            f"vs {jnp.shape(old_mean)} {jnp.result_type(old_mean)}"
        )
    if jnp.result_type(old_scale) != jnp.result_type(old_mean):
        raise ValueError(f"old_scale dtype {jnp.result_type(old_scale)} differs from old_mean {jnp.result_type(old_mean)}")
    _checks.check_bound("eps_mean", eps_mean, layout.batch_shape)
    eps = _checks.as_bound(eps_mean, layout.batch_shape, jnp.result_type(mean))
    dist = factor * mean_distance(mean, old_mean, old_scale, metric, diag=layout.diag)
    return project_mean(mean, old_mean, dist, eps)
