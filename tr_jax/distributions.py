"""Gaussian helpers for the three scale parameterisations used by tr_jax.

A Gaussian N(mean, Sigma) over R^k is given by a ``mean`` of shape ``[..., k]``
and a ``scale`` whose meaning is set by ``cov_type`` (the one name for the scale
parameterisation across tr_jax, as in ``TrainConfig.cov_type``):

* ``"diag"``: std vector ``s`` of shape ``[..., k]``; Sigma = diag(s^2).
* ``"full"``: lower Cholesky factor ``L`` of shape ``[..., k, k]``; Sigma = L L^T.
* ``"sqrt"``: symmetric positive-definite square root ``S`` of shape
  ``[..., k, k]``; Sigma = S S.

All functions broadcast over leading batch dimensions and are pure
``jax.numpy`` code (jit/vmap/grad compatible). Results agree with distrax
(``MultivariateNormalDiag`` / ``MultivariateNormalTri`` /
``MultivariateNormalFullCovariance``); see ``tests/test_distributions.py``.

Every function takes ``cov_type`` explicitly. A concrete (non-traced) matrix
scale that is clearly not of its declared type raises ``ValueError``: a
``"full"`` factor with non-zero entries above the diagonal, a ``"sqrt"`` that
is not symmetric (see :func:`check_scale`). Traced scales (under ``jit``,
``grad``, ``vmap``) cannot be checked: a ``"full"`` scale is then read as
its lower triangle (entries above the diagonal are ignored), a ``"sqrt"``
one through its lower triangle where a Cholesky of it is taken (solves,
log-dets) and as given elsewhere, so a non-symmetric "sqrt" gives
meaningless results.
"""

from __future__ import annotations

import math
from typing import Literal, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from tr_jax import linalg as LA
from tr_jax.choices import COV_TYPES

CovType = Literal["diag", "full", "sqrt"]
"""A scale parameterisation: std vector, lower Cholesky factor, symmetric square root."""

_LOG_2PI = math.log(2.0 * math.pi)


def check_cov_type(cov_type: str) -> CovType:
    """Returns ``cov_type`` or raises ``ValueError`` naming the valid ones."""
    if not isinstance(cov_type, str) or cov_type not in COV_TYPES:
        raise ValueError(f"unknown scale parameterisation cov_type={cov_type!r}; expected one of {COV_TYPES}")
    return cast(CovType, cov_type)


def _is_concrete(x: object) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_scale(scale: ArrayLike, cov_type: CovType, name: str = "scale") -> None:
    """Raises ``ValueError`` if a concrete ``scale`` is clearly not of ``cov_type``.

    ``cov_type`` must be valid. Checks the rank (a vector for "diag", square
    matrices for "full"/"sqrt") always, and for concrete (non-traced) matrices
    the values: "full" must be lower triangular (exact zeros above the
    diagonal, as every Cholesky routine returns), "sqrt" symmetric up to
    ``sqrt(machine eps)`` relative to its largest entry. Traced values are not
    checked (see the module docstring for what happens then).
    """
    check_cov_type(cov_type)
    shape = jnp.shape(scale)
    if cov_type == "diag":
        if len(shape) < 1:
            raise ValueError(f"{name} with cov_type='diag' must be a std vector [..., k], got a scalar")
        return
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"{name} with cov_type={cov_type!r} must be square matrices [..., k, k], got shape {shape}")
    if not _is_concrete(scale) or shape[-1] < 2:
        return
    x = np.asarray(scale)
    if not np.issubdtype(x.dtype, np.floating):
        return  # the dtype check of the caller reports it
    if cov_type == "full":
        upper = np.abs(np.triu(x, 1))
        if np.any(upper > 0):  # NaN entries are not reported here (NaN in, NaN out)
            raise ValueError(
                f"{name} is declared cov_type='full' (a lower Cholesky factor) but has non-zero entries above "
                f"the diagonal (largest {float(np.nanmax(upper)):.3g}); pass cov_type='sqrt' for a symmetric "
                "square root, or a lower-triangular factor (e.g. distributions.cholesky(scale, 'sqrt'))"
            )
        return
    asym = np.abs(x - np.swapaxes(x, -1, -2))
    size = np.max(np.abs(x), axis=(-2, -1), keepdims=True)
    tol = np.sqrt(np.finfo(x.dtype).eps) * size
    if np.any(asym > tol):
        raise ValueError(
            f"{name} is declared cov_type='sqrt' (a symmetric square root) but is not symmetric (largest "
            f"|S - S^T| {float(np.nanmax(asym)):.3g}); pass cov_type='full' for a lower Cholesky factor"
        )


def event_dim(scale: jax.Array, cov_type: CovType) -> int:
    """Action dimension k of a scale of the given ``cov_type``."""
    check_scale(scale, cov_type)
    return scale.shape[-1]


def _diag_matrix(v: jax.Array) -> jax.Array:
    return v[..., :, None] * jnp.eye(v.shape[-1], dtype=v.dtype)


def _mT(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, -1, -2)


def _sym(x: jax.Array) -> jax.Array:
    return 0.5 * (x + _mT(x))


def covariance(scale: jax.Array, cov_type: CovType) -> jax.Array:
    """Covariance matrix Sigma.

    Args:
      scale: ``[..., k]`` (diag) or ``[..., k, k]`` (full, sqrt).
      cov_type: "diag", "full" or "sqrt".
    Returns:
      ``[..., k, k]``. (For diag, use :func:`variance` for the vector.)
    """
    check_scale(scale, cov_type)
    if cov_type == "diag":
        return _diag_matrix(scale**2)
    if cov_type == "full":
        scale = jnp.tril(scale)
        return LA.matmul(scale, _mT(scale))
    return _sym(LA.matmul(scale, scale))


def variance(scale: jax.Array, cov_type: CovType) -> jax.Array:
    """Marginal variances diag(Sigma), ``[..., k]``."""
    check_scale(scale, cov_type)
    if cov_type == "diag":
        return scale**2
    if cov_type == "full":
        return jnp.sum(jnp.tril(scale) ** 2, axis=-1)
    return jnp.sum(scale * scale, axis=-2)


def cholesky(scale: jax.Array, cov_type: CovType) -> jax.Array:
    """Lower Cholesky factor of Sigma, ``[..., k, k]``."""
    check_scale(scale, cov_type)
    if cov_type == "full":
        return jnp.tril(scale)
    return LA.cholesky(covariance(scale, cov_type))


def precision(scale: jax.Array, cov_type: CovType) -> jax.Array:
    """Precision matrix Sigma^-1, ``[..., k, k]`` (diag: a diagonal matrix)."""
    check_scale(scale, cov_type)
    if cov_type == "diag":
        return covariance(1.0 / scale, "diag")
    if cov_type == "full":
        linv = LA.tril_inverse(scale)
        return LA.matmul(_mT(linv), linv)
    sinv = LA.spd_inverse(scale)
    return _sym(LA.matmul(sinv, sinv))


def log_det_cov(scale: jax.Array, cov_type: CovType) -> jax.Array:
    """log det Sigma, ``[...]``."""
    check_scale(scale, cov_type)
    if cov_type == "diag":
        return 2.0 * jnp.sum(jnp.log(scale), axis=-1)
    if cov_type == "full":
        return 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale, axis1=-2, axis2=-1))), axis=-1)
    return 2.0 * LA.spd_logdet(scale)


def whiten(x: jax.Array, scale: jax.Array, cov_type: CovType) -> jax.Array:
    """Solves scale-factor systems: returns z with Sigma = A A^T and A z = x.

    For diag this is x / s, for full L^-1 x, for sqrt S^-1 x. ``x``: ``[..., k]``;
    the batch dims of ``x`` and ``scale`` broadcast (e.g. several actions
    ``[n, k]`` under one Gaussian ``[k, k]``). Returns the broadcast
    ``[..., k]`` with ||z||^2 = x^T Sigma^-1 x.
    """
    check_scale(scale, cov_type)
    if cov_type == "diag":
        return x / scale
    solve = LA.solve_lower if cov_type == "full" else LA.spd_solve
    return solve(scale, x[..., None])[..., 0]  # explicit column: batch dims broadcast


def mahalanobis(x: jax.Array, mean: jax.Array, scale: jax.Array, cov_type: CovType) -> jax.Array:
    """Squared Mahalanobis distance (x - mean)^T Sigma^-1 (x - mean), ``[...]``."""
    z = whiten(x - mean, scale, cov_type)
    return jnp.sum(z**2, axis=-1)


def entropy(scale: jax.Array, cov_type: CovType) -> jax.Array:
    """Differential entropy 0.5 log det(2 pi e Sigma), ``[...]``."""
    k = event_dim(scale, cov_type)
    return 0.5 * (k * (1.0 + _LOG_2PI) + log_det_cov(scale, cov_type))


def log_prob(x: jax.Array, mean: jax.Array, scale: jax.Array, cov_type: CovType) -> jax.Array:
    """Log density of x (``[..., k]``) under N(mean, Sigma), ``[...]``."""
    k = event_dim(scale, cov_type)
    return -0.5 * (mahalanobis(x, mean, scale, cov_type) + log_det_cov(scale, cov_type) + k * _LOG_2PI)


def sample(
    key: jax.Array, mean: jax.Array, scale: jax.Array, cov_type: CovType, sample_shape: tuple[int, ...] = ()
) -> jax.Array:
    """Draws samples of shape ``sample_shape + batch + [k]`` by mean + A eps."""
    check_scale(scale, cov_type)
    batch = jnp.broadcast_shapes(mean.shape, scale.shape[: mean.ndim] if cov_type != "diag" else scale.shape)
    eps = jax.random.normal(key, tuple(sample_shape) + batch, dtype=mean.dtype)
    if cov_type == "diag":
        return mean + scale * eps
    if cov_type == "full":
        scale = jnp.tril(scale)
    return mean + LA.matmul(scale, eps[..., None])[..., 0]


def kl(mean_p: jax.Array, scale_p: jax.Array, mean_q: jax.Array, scale_q: jax.Array, cov_type: CovType) -> jax.Array:
    """KL(p || q) between two Gaussians with the same parameterisation, ``[...]``.

    Returns the total; see :func:`kl_decomposed` for the mean and covariance parts.
    """
    m, c = kl_decomposed(mean_p, scale_p, mean_q, scale_q, cov_type)
    return m + c


def kl_decomposed(
    mean_p: jax.Array, scale_p: jax.Array, mean_q: jax.Array, scale_q: jax.Array, cov_type: CovType
) -> tuple[jax.Array, jax.Array]:
    """Mean and covariance parts of KL(p || q), each ``[...]``.

    mean part: 0.5 (mu_p - mu_q)^T Sigma_q^-1 (mu_p - mu_q)
    cov part:  0.5 [tr(Sigma_q^-1 Sigma_p) - k + log|Sigma_q| - log|Sigma_p|]

    Means ``[..., k]``; scales of ``cov_type`` (both the same). For "diag" and
    "full" the cov part is evaluated without cancellation (accurate for small
    values, never negative): with B = A_q^-1 A_p (diagonal or lower
    triangular), 2 cov = sum_{i>j} B_ij^2 + sum_i (B_ii^2 - 1 - log B_ii^2).
    """
    check_scale(scale_p, cov_type, "scale_p")
    check_scale(scale_q, cov_type, "scale_q")
    mean_part = 0.5 * mahalanobis(mean_p, mean_q, scale_q, cov_type)
    if cov_type == "diag":
        ratio = scale_p / scale_q
        return mean_part, 0.5 * jnp.sum(rm1_log((ratio - 1.0) * (ratio + 1.0)), axis=-1)
    if cov_type == "full":
        b = LA.solve_lower(scale_q, jnp.tril(scale_p))
        bd = jnp.diagonal(b, axis1=-2, axis2=-1)
        off = jnp.sum(jnp.tril(b, -1) ** 2, axis=(-2, -1))
        return mean_part, 0.5 * (off + jnp.sum(rm1_log((bd - 1.0) * (bd + 1.0)), axis=-1))
    k = scale_p.shape[-1]
    trace = jnp.sum(LA.spd_solve(scale_q, scale_p) ** 2, axis=(-2, -1))
    cov_part = 0.5 * (trace - k + log_det_cov(scale_q, cov_type) - log_det_cov(scale_p, cov_type))
    return mean_part, cov_part


def rm1_log(u: ArrayLike) -> jax.Array:
    """r - 1 - log r for r = 1 + u (elementwise), accurate for small |u|.

    With t = u / (2 + u): log r = 2 atanh t, u = 2t / (1 - t), so
    r - 1 - log r = 2 t^2 / (1 - t) - 2 t^3 (1/3 + t^2/5 + t^4/7 + ...),
    a sum without cancellation for small t; larger |t| uses the direct form.
    Both branches get safe inputs, so gradients stay finite.
    """
    t = u / (2.0 + u)
    small = jnp.abs(t) < 0.1
    ts = jnp.where(small, t, 0.0)
    t2 = ts * ts
    poly = jnp.zeros_like(t2)
    for n in (17, 15, 13, 11, 9, 7, 5, 3):  # Horner; |t| < 0.1 -> error < 1e-17
        poly = poly * t2 + 1.0 / n
    series = 2.0 * t2 / (1.0 - ts) - 2.0 * ts * t2 * poly
    ud = jnp.where(small, 1.0, u)
    direct = ud - jnp.log1p(ud)
    return jnp.where(small, series, direct)


def sqrtm_psd(cov: jax.Array) -> jax.Array:
    """Symmetric square root of a positive-definite ``cov`` ``[..., k, k]``.

    Newton-Schulz iterations (:func:`tr_jax.linalg.sqrtm_spd`).
    """
    return LA.sqrtm_spd(cov)


def convert_scale(scale: jax.Array, from_cov_type: CovType, to_cov_type: CovType) -> jax.Array:
    """Converts a scale between parameterisations (diag -> full/sqrt is exact;
    full <-> sqrt goes through the covariance; to diag keeps the marginal stds).

    ``scale``: ``[..., k]`` or ``[..., k, k]`` of ``from_cov_type``; returns the
    ``to_cov_type`` shape.
    """
    check_scale(scale, from_cov_type)
    check_cov_type(to_cov_type)
    if from_cov_type == to_cov_type:
        return scale
    if from_cov_type == "diag":
        return _diag_matrix(scale)
    if to_cov_type == "diag":
        return jnp.sqrt(variance(scale, from_cov_type))
    cov = covariance(scale, from_cov_type)
    return LA.cholesky(cov) if to_cov_type == "full" else sqrtm_psd(cov)
