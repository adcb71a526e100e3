"""Gaussian helpers for the three scale parameterisations used by tr_jax.

A Gaussian N(mean, Sigma) over R^k is given by a ``mean`` of shape ``[..., k]``
and a ``scale`` whose meaning is set by ``kind``:

* ``"diag"``: std vector ``s`` of shape ``[..., k]``; Sigma = diag(s^2).
* ``"full"``: lower Cholesky factor ``L`` of shape ``[..., k, k]``; Sigma = L L^T.
* ``"sqrt"``: symmetric positive-definite square root ``S`` of shape
  ``[..., k, k]``; Sigma = S S.

All functions broadcast over leading batch dimensions and are pure
``jax.numpy`` code (jit/vmap/grad compatible). Results agree with distrax
(``MultivariateNormalDiag`` / ``MultivariateNormalTri`` /
``MultivariateNormalFullCovariance``); see ``tests/test_distributions.py``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from tr_jax import linalg as LA

KINDS = ("diag", "full", "sqrt")

_LOG_2PI = math.log(2.0 * math.pi)


def check_kind(kind: str) -> str:
    """Returns ``kind`` or raises ``ValueError`` naming the valid kinds."""
    if kind not in KINDS:
        raise ValueError(f"unknown scale parameterisation {kind!r}; expected one of {KINDS}")
    return kind


def event_dim(scale: jax.Array, kind: str) -> int:
    """Action dimension k of a scale of the given kind."""
    check_kind(kind)
    return scale.shape[-1]


def _diag_matrix(v):
    return v[..., :, None] * jnp.eye(v.shape[-1], dtype=v.dtype)


def _mT(x):
    return jnp.swapaxes(x, -1, -2)


def _sym(x):
    return 0.5 * (x + _mT(x))


def covariance(scale: jax.Array, kind: str) -> jax.Array:
    """Covariance matrix Sigma.

    Args:
      scale: ``[..., k]`` (diag) or ``[..., k, k]`` (full, sqrt).
      kind: "diag", "full" or "sqrt".
    Returns:
      ``[..., k, k]``. (For diag, use :func:`variance` for the vector.)
    """
    check_kind(kind)
    if kind == "diag":
        return _diag_matrix(scale**2)
    if kind == "full":
        return scale @ _mT(scale)
    return _sym(scale @ scale)


def variance(scale: jax.Array, kind: str) -> jax.Array:
    """Marginal variances diag(Sigma), ``[..., k]``."""
    check_kind(kind)
    if kind == "diag":
        return scale**2
    if kind == "full":
        return jnp.sum(scale**2, axis=-1)
    return jnp.sum(scale * scale, axis=-2)


def cholesky(scale: jax.Array, kind: str) -> jax.Array:
    """Lower Cholesky factor of Sigma, ``[..., k, k]``."""
    check_kind(kind)
    if kind == "full":
        return scale
    return LA.cholesky(covariance(scale, kind))


def precision(scale: jax.Array, kind: str) -> jax.Array:
    """Precision matrix Sigma^-1, ``[..., k, k]`` (diag: a diagonal matrix)."""
    check_kind(kind)
    if kind == "diag":
        return covariance(1.0 / scale, "diag")
    if kind == "full":
        linv = LA.tril_inverse(scale)
        return _mT(linv) @ linv
    sinv = LA.spd_inverse(scale)
    return _sym(sinv @ sinv)


def log_det_cov(scale: jax.Array, kind: str) -> jax.Array:
    """log det Sigma, ``[...]``."""
    check_kind(kind)
    if kind == "diag":
        return 2.0 * jnp.sum(jnp.log(scale), axis=-1)
    if kind == "full":
        return 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale, axis1=-2, axis2=-1))), axis=-1)
    return 2.0 * LA.spd_logdet(scale)


def whiten(x: jax.Array, scale: jax.Array, kind: str) -> jax.Array:
    """Solves scale-factor systems: returns z with Sigma = A A^T and A z = x.

    For diag this is x / s, for full L^-1 x, for sqrt S^-1 x. ``x``: ``[..., k]``.
    Returns ``[..., k]`` with ||z||^2 = x^T Sigma^-1 x.
    """
    check_kind(kind)
    if kind == "diag":
        return x / scale
    if kind == "full":
        return LA.solve_lower(scale, x)
    return LA.spd_solve(scale, x)


def mahalanobis(x: jax.Array, mean: jax.Array, scale: jax.Array, kind: str) -> jax.Array:
    """Squared Mahalanobis distance (x - mean)^T Sigma^-1 (x - mean), ``[...]``."""
    z = whiten(x - mean, scale, kind)
    return jnp.sum(z**2, axis=-1)


def entropy(scale: jax.Array, kind: str) -> jax.Array:
    """Differential entropy 0.5 log det(2 pi e Sigma), ``[...]``."""
    k = event_dim(scale, kind)
    return 0.5 * (k * (1.0 + _LOG_2PI) + log_det_cov(scale, kind))


def log_prob(x: jax.Array, mean: jax.Array, scale: jax.Array, kind: str) -> jax.Array:
    """Log density of x (``[..., k]``) under N(mean, Sigma), ``[...]``."""
    k = event_dim(scale, kind)
    return -0.5 * (mahalanobis(x, mean, scale, kind) + log_det_cov(scale, kind) + k * _LOG_2PI)


def sample(key: jax.Array, mean: jax.Array, scale: jax.Array, kind: str, sample_shape=()) -> jax.Array:
    """Draws samples of shape ``sample_shape + batch + [k]`` by mean + A eps."""
    check_kind(kind)
    batch = jnp.broadcast_shapes(mean.shape, scale.shape[: mean.ndim] if kind != "diag" else scale.shape)
    eps = jax.random.normal(key, tuple(sample_shape) + batch, dtype=mean.dtype)
    if kind == "diag":
        return mean + scale * eps
    return mean + (scale @ eps[..., None])[..., 0]


def kl(mean_p, scale_p, mean_q, scale_q, kind: str) -> jax.Array:
    """KL(p || q) between two Gaussians with the same parameterisation, ``[...]``.

    Returns the total; see :func:`kl_decomposed` for the mean and covariance parts.
    """
    m, c = kl_decomposed(mean_p, scale_p, mean_q, scale_q, kind)
    return m + c


def kl_decomposed(mean_p, scale_p, mean_q, scale_q, kind: str):
    """Mean and covariance parts of KL(p || q), each ``[...]``.

    mean part: 0.5 (mu_p - mu_q)^T Sigma_q^-1 (mu_p - mu_q)
    cov part:  0.5 [tr(Sigma_q^-1 Sigma_p) - k + log|Sigma_q| - log|Sigma_p|]
    """
    check_kind(kind)
    k = event_dim(scale_p, kind)
    mean_part = 0.5 * mahalanobis(mean_p, mean_q, scale_q, kind)
    if kind == "diag":
        trace = jnp.sum((scale_p / scale_q) ** 2, axis=-1)
    elif kind == "full":
        # ||L_q^-1 L_p||_F^2 = tr(Sigma_q^-1 Sigma_p)
        m = LA.solve_lower(scale_q, scale_p)
        trace = jnp.sum(m**2, axis=(-2, -1))
    else:
        m = LA.spd_solve(scale_q, scale_p)
        trace = jnp.sum(m**2, axis=(-2, -1))
    cov_part = 0.5 * (trace - k + log_det_cov(scale_q, kind) - log_det_cov(scale_p, kind))
    return mean_part, cov_part


def sqrtm_psd(cov: jax.Array) -> jax.Array:
    """Symmetric square root of a positive-definite ``cov`` ``[..., k, k]``.

    Newton-Schulz iterations (:func:`tr_jax.linalg.sqrtm_spd`).
    """
    return LA.sqrtm_spd(cov)


def to_kind(scale: jax.Array, from_kind: str, to: str) -> jax.Array:
    """Converts a scale between parameterisations (diag -> full/sqrt is exact;
    full <-> sqrt goes through the covariance)."""
    check_kind(from_kind)
    check_kind(to)
    if from_kind == to:
        return scale
    if from_kind == "diag":
        return _diag_matrix(scale)
    if to == "diag":
        return jnp.sqrt(variance(scale, from_kind))
    cov = covariance(scale, from_kind)
    return LA.cholesky(cov) if to == "full" else sqrtm_psd(cov)
