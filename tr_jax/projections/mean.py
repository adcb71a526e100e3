"""Mean part of every trust-region projection: :func:`mean_projection`, :func:`project_mean`,
:func:`mean_distance`.

A mean outside the bound moves on the straight line to the old mean until its distance equals the bound
exactly; a state inside passes through unchanged in value and gradient (the inactive branch gets safe inputs, so
no NaN leaks into gradients).
The math: [How the projections work][how-the-projections-work] (``docs/projections-math.md``).
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from tr_jax import distributions as D
from tr_jax.distributions import CovType
from tr_jax.projections import _checks

METRICS = ("mahalanobis", "euclidean")


def mean_distance(
    mean: ArrayLike,
    old_mean: ArrayLike,
    old_scale: ArrayLike,
    metric: Literal["mahalanobis", "euclidean"] = "mahalanobis",
    cov_type: CovType | None = None,
) -> jax.Array:
    """Squared distance between means, ``[...]``.

    Args:
      mean, old_mean: ``[..., k]``.
      old_scale: ``[..., k]`` (std vector) or ``[..., k, k]`` (a matrix factor
        of the old covariance, of ``cov_type``).
      metric: "mahalanobis": (mu - mu_o)^T Sigma_o^-1 (mu - mu_o);
        "euclidean": ||mu - mu_o||^2 (``old_scale`` unused but checked).
      cov_type: "diag", "full" (lower Cholesky factor, Sigma = L L^T) or
        "sqrt" (symmetric square root, Sigma = S S). None: "diag" for a vector
        scale; a matrix scale must say which (ValueError otherwise).
    Raises:
      ValueError: unknown metric or cov_type, mismatched shapes/dtypes, or a
        concrete matrix that is not of its ``cov_type`` (see
        :func:`tr_jax.distributions.check_scale`; under ``jit`` this cannot be
        checked: "full" then reads the lower triangle only).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown mean metric {metric!r}; expected one of {METRICS}")
    layout = _check_mean_args(mean, old_mean, old_scale, cov_type, "mean_distance")
    mean, old_mean, old_scale = jnp.asarray(mean), jnp.asarray(old_mean), jnp.asarray(old_scale)
    return _distance(mean, old_mean, old_scale, metric, layout.cov_type)


def _check_mean_args(
    mean: ArrayLike, old_mean: ArrayLike, old_scale: ArrayLike, cov_type: CovType | None, what: str
) -> _checks.Layout:
    layout = _checks.check_old(old_mean, old_scale, cov_type, _checks.Accepts(what, D.COV_TYPES, None))
    _checks._check_float("mean", mean)
    if jnp.shape(mean) != jnp.shape(old_mean) or jnp.result_type(mean) != jnp.result_type(old_mean):
        raise ValueError(
            f"mean and old_mean must have the same shapes and dtype: {jnp.shape(mean)} {jnp.result_type(mean)} "
            f"vs {jnp.shape(old_mean)} {jnp.result_type(old_mean)}"
        )
    return layout


def _distance(mean: jax.Array, old_mean: jax.Array, old_scale: jax.Array, metric: str, cov_type: CovType) -> jax.Array:
    """:func:`mean_distance` on validated inputs (no checks)."""
    diff = mean - old_mean
    if metric == "euclidean":
        return jnp.sum(diff**2, axis=-1)
    return jnp.sum(D.whiten(diff, old_scale, cov_type) ** 2, axis=-1)


def metric_name(scale_prec: bool) -> str:
    """The mean metric of the W2/Frobenius projections for a ``scale_prec`` flag."""
    return "mahalanobis" if scale_prec else "euclidean"


def shrink_weight(dist: jax.Array, eps: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Interpolation weight of every closed-form projection.

    Args:
      dist: ``[...]`` the bounded distance of the unprojected input (a scaled
        squared norm of ``x~ - x_o``).
      eps: ``[...]`` or scalar bound (>= 0).
    Returns:
      ``(active, w)``, both ``[...]``: ``active = dist > eps`` and
      ``w = sqrt(eps / dist)`` where active, exactly 1 elsewhere. The projection
      is ``x_o + w (x~ - x_o)`` (= ``(x~ + eta x_o) / (1 + eta)`` with
      ``eta = sqrt(dist / eps) - 1``), whose distance is ``w^2 dist = eps``.
      Inactive states see a safe ``dist`` ("double where"), so no NaN/inf
      reaches gradients, e.g. when ``x~ == x_o``. A zero bound gives ``w = 0``
      (the old point) with finite gradients; its gradient to ``eps`` is taken
      as 0 there (the one-sided derivative is infinite). A NaN ``dist`` or
      ``eps`` counts as active, so NaN propagates instead of passing through
      silently.
    """
    active = ~(dist <= eps)
    ratio = eps / jnp.where(active, dist, 1.0)
    # a zero bound: w = 0, and sqrt's infinite slope at 0 must not meet the ratio's zero slope (inf * 0 = NaN)
    positive = ~(ratio <= 0)
    w = jnp.where(positive, jnp.sqrt(jnp.where(positive, ratio, 1.0)), 0.0)
    return active, jnp.where(active, w, jnp.ones_like(w))


def project_mean(mean: jax.Array, old_mean: jax.Array, dist: jax.Array, eps: ArrayLike) -> jax.Array:
    """Projects ``mean`` given its precomputed distance ``dist`` to ``old_mean``.

    Args:
      mean, old_mean: ``[..., k]``.
      dist: ``[...]`` the bounded distance (already scaled, e.g. 0.5 * maha for KL).
      eps: ``[...]`` or scalar bound (>= 0).
    Returns:
      ``[..., k]`` projected mean; equal to ``mean`` (value and gradient) where
      ``dist <= eps``. Computed as ``mu_o + w (mu~ - mu_o)`` with
      ``w = 1 / (1 + omega)``, which is the same point as
      ``(mu~ + omega mu_o) / (1 + omega)`` but keeps the (small) step accurate.
    """
    active, w = shrink_weight(dist, eps)
    projected = old_mean + w[..., None] * (mean - old_mean)
    return jnp.where(active[..., None], projected, mean)


def mean_projection(
    mean: ArrayLike,
    old_mean: ArrayLike,
    old_scale: ArrayLike,
    eps_mean: ArrayLike,
    metric: Literal["mahalanobis", "euclidean"] = "mahalanobis",
    factor: float = 1.0,
    *,
    cov_type: CovType | None = None,
) -> jax.Array:
    """Mean trust-region projection, ``[..., k]``.

    Bounds ``factor * mean_distance(mean, old_mean, old_scale, metric, cov_type) <= eps_mean``.
    KL uses metric="mahalanobis", factor=0.5; W2/Frobenius use factor=1 with
    "mahalanobis" (scale_prec=True) or "euclidean" (scale_prec=False).

    Args:
      mean, old_mean: ``[..., k]``.
      old_scale: ``[..., k]`` std vector or ``[..., k, k]`` matrix factor.
      eps_mean: scalar or ``[...]``, >= 0.
      cov_type: "diag", "full" (lower Cholesky) or "sqrt" (symmetric square
        root); required for a matrix ``old_scale``, as in :func:`mean_distance`.
    Raises:
      ValueError: as :func:`mean_distance`, and for bad bounds.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown mean metric {metric!r}; expected one of {METRICS}")
    layout = _check_mean_args(mean, old_mean, old_scale, cov_type, "mean_projection")
    _checks.check_bound("eps_mean", eps_mean, layout.batch_shape)
    eps = _checks.as_bound(eps_mean, layout.batch_shape, jnp.result_type(mean))
    mean, old_mean, old_scale = jnp.asarray(mean), jnp.asarray(old_mean), jnp.asarray(old_scale)
    dist = factor * _distance(mean, old_mean, old_scale, metric, layout.cov_type)
    return project_mean(mean, old_mean, dist, eps)


def project_mean_part(
    mean: jax.Array,
    old_mean: jax.Array,
    old_scale: jax.Array,
    eps: jax.Array,
    metric: str,
    cov_type: CovType,
    factor: float = 1.0,
) -> jax.Array:
    """Mean part of a projection on validated inputs: bounds
    ``factor * mean_distance(...) <= eps``; shapes as :func:`mean_projection`.

    Diagonal and Euclidean metrics go through a custom VJP whose residuals are
    the inputs and per-state scalars (see :func:`_mean_vector_metric`):
    reverse-mode differentiable only."""
    if metric == "euclidean" or cov_type == "diag":
        return _mean_vector_metric(metric, cov_type, factor, mean, old_mean, old_scale, eps)
    return project_mean(mean, old_mean, factor * _distance(mean, old_mean, old_scale, metric, cov_type), eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _mean_vector_metric(
    metric: str,
    cov_type: CovType,
    factor: float,
    mean: jax.Array,
    old_mean: jax.Array,
    old_scale: jax.Array,
    eps: jax.Array,
) -> jax.Array:
    """Mean part of one state with dist = factor * sum((mu~ - mu_o)^2 / s_o^2)
    ("diag" Mahalanobis) or factor * ||mu~ - mu_o||^2 ("euclidean": the scale,
    of any ``cov_type``, is unused). ``mean``, ``old_mean`` ``[k]``, ``eps`` ``[]``.

    The backward pass recomputes the elementwise quantities from the inputs,
    so no ``[k]``-sized intermediate of any state is kept between the passes.
    """
    return _mean_vector_metric_fwd(metric, cov_type, factor, mean, old_mean, old_scale, eps)[0]


def _mean_vector_metric_fwd(
    metric: str, cov_type: CovType, factor: float, *inputs: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """:func:`_mean_vector_metric` and its residuals; ``inputs``: its ``(mean, old_mean, old_scale, eps)``."""
    mean, old_mean, old_scale, eps = inputs
    dist = factor * _distance(mean, old_mean, old_scale, metric, cov_type)
    return project_mean(mean, old_mean, dist, eps), (mean, old_mean, old_scale, eps, dist)


def _mean_vector_metric_bwd(
    metric: str, cov_type: CovType, factor: float, res: tuple[jax.Array, ...], ct: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """With c = ct and delta = mu~ - mu_o (active states; inactive: identity):
    d(mu)/d(mu~) c = w c - (c.delta) (factor w / dist) delta / s_o^2, the rest of
    c goes to mu_o, d/d(s_o) = (c.delta) (factor w / dist) delta^2 / s_o^3 and
    d/d(eps) = (c.delta) w / (2 eps)."""
    mean, old_mean, old_scale, eps, dist = res
    euclidean = metric == "euclidean"
    active, w = shrink_weight(dist, eps)
    diff = mean - old_mean
    c_dot = jnp.sum(ct * diff)
    coef = jnp.where(active, c_dot * factor * w / jnp.where(active, dist, 1.0), 0.0)
    inv_var = 1.0 if euclidean else 1.0 / (old_scale * old_scale)
    ct_mean = w * ct - coef * diff * inv_var
    ct_old_mean = ct - ct_mean
    if euclidean:
        ct_scale = jnp.zeros_like(old_scale)
    else:
        ct_scale = coef * diff * diff * inv_var / old_scale
    ct_eps = jnp.where(active & (w > 0), 0.5 * c_dot * w / jnp.where(w > 0, eps, 1.0), 0.0)  # w = 0: a zero bound
    ct_eps = ct_eps.astype(jnp.result_type(eps))
    return ct_mean, ct_old_mean, ct_scale, ct_eps


_mean_vector_metric.defvjp(_mean_vector_metric_fwd, _mean_vector_metric_bwd)
