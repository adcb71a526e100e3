"""Batched linear algebra for small matrices (k <= ~64) in plain ``jax.numpy``.

Why not ``jnp.linalg``: on CPU, jaxlib 0.10.x runs batched LAPACK kernels
(cholesky, triangular solve, LU solve, eigh) by fanning the batch out over
XLA's intra-op thread pool and blocking on it. With a 2-thread pool, two such
kernels that XLA schedules concurrently wait on each other forever: a batched
``solve`` next to an independent batched ``solve_triangular`` (N = 4096,
k = 17) hangs the process. Policies use many small matrices, so tr_jax never
calls those kernels on its hot paths; the routines here are loops over the
(static) matrix dimension, vectorised over the batch, which is also what
tiny matrices want on accelerators.

All functions take arrays with any number of leading batch dimensions;
matrices are ``[..., k, k]``. Everything is differentiable by ordinary JAX
autodiff except :func:`eigvalsh` (bisection; use it where no gradient flows,
e.g. inside a ``custom_vjp`` forward pass).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _mT(x):
    return jnp.swapaxes(x, -1, -2)


def cholesky(a: jax.Array) -> jax.Array:
    """Lower Cholesky factor of symmetric positive-definite ``a`` ``[..., k, k]``.

    Reads the lower triangle only. Not positive definite -> NaN (like LAPACK).
    """
    k = a.shape[-1]
    cols = []
    rest = a
    for j in range(k):
        d = jnp.sqrt(rest[..., 0, 0])
        col = rest[..., 1:, 0] / d[..., None]
        cols.append(jnp.concatenate([jnp.zeros(d.shape + (j,), a.dtype), d[..., None], col], axis=-1))
        rest = rest[..., 1:, 1:] - col[..., :, None] * col[..., None, :]
    return jnp.stack(cols, axis=-1)


def solve_lower(l: jax.Array, b: jax.Array, transpose: bool = False) -> jax.Array:
    """Solves ``L x = b`` (or ``L^T x = b`` with ``transpose``) for lower-triangular L.

    Args:
      l: ``[..., k, k]`` lower triangular (entries above the diagonal ignored).
      b: ``[..., k]`` or ``[..., k, m]``; batch dims broadcast against ``l``.
    Returns:
      x with the broadcast shape of ``b``.
    """
    vector = b.ndim == l.ndim - 1
    r = b[..., None] if vector else b
    k = l.shape[-1]
    xs = [None] * k
    if not transpose:
        for i in range(k):  # forward substitution, column oriented
            xi = r[..., 0, :] / l[..., i, i][..., None]
            xs[i] = xi
            r = r[..., 1:, :] - l[..., i + 1:, i][..., :, None] * xi[..., None, :]
    else:
        for i in reversed(range(k)):  # back substitution with L^T (row i of L is column i of L^T)
            xi = r[..., i, :] / l[..., i, i][..., None]
            xs[i] = xi
            r = r[..., :i, :] - l[..., i, :i][..., :, None] * xi[..., None, :]
    x = jnp.stack(jnp.broadcast_arrays(*xs), axis=-2)
    return x[..., 0] if vector else x


def cho_solve(chol: jax.Array, b: jax.Array) -> jax.Array:
    """Solves ``A x = b`` given the lower Cholesky factor of A; b ``[..., k]`` or ``[..., k, m]``."""
    return solve_lower(chol, solve_lower(chol, b), transpose=True)


def spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solves ``A x = b`` for symmetric positive-definite A ``[..., k, k]``."""
    return cho_solve(cholesky(a), b)


def tril_inverse(l: jax.Array) -> jax.Array:
    """Inverse of a lower-triangular matrix ``[..., k, k]`` (lower triangular)."""
    eye = jnp.broadcast_to(jnp.eye(l.shape[-1], dtype=l.dtype), l.shape)
    return solve_lower(l, eye)


def spd_inverse(a: jax.Array) -> jax.Array:
    """Inverse of a symmetric positive-definite matrix (symmetrised)."""
    linv = tril_inverse(cholesky(a))
    return _mT(linv) @ linv


def spd_logdet(a: jax.Array) -> jax.Array:
    """log det of a symmetric positive-definite matrix, ``[...]``."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(cholesky(a), axis1=-2, axis2=-1)), axis=-1)


def tridiagonalize(a: jax.Array):
    """Householder reduction of symmetric ``a`` ``[..., k, k]`` to tridiagonal form.

    Returns ``(d, e)``: the diagonal ``[..., k]`` and off-diagonal ``[..., k-1]``
    of T = Q^T A Q (Q orthogonal, not formed). Backward stable; O(k^3) work
    in k static steps vectorised over the batch.
    """
    k = a.shape[-1]
    rest = 0.5 * (a + _mT(a))
    ds, es = [], []
    for _ in range(k - 2):
        ds.append(rest[..., 0, 0])
        x = rest[..., 1:, 0]
        norm_x = jnp.sqrt(jnp.sum(x * x, axis=-1))
        alpha = -jnp.where(x[..., 0] >= 0, 1.0, -1.0) * norm_x
        v = x.at[..., 0].add(-alpha)
        norm_v = jnp.sqrt(jnp.sum(v * v, axis=-1))
        v = v / jnp.where(norm_v > 0, norm_v, 1.0)[..., None]  # v = 0: no reflection needed
        es.append(alpha)
        a22 = rest[..., 1:, 1:]
        p = jnp.einsum("...ij,...j->...i", a22, v)
        w = 2.0 * p - 2.0 * jnp.sum(v * p, axis=-1)[..., None] * v
        rest = a22 - v[..., :, None] * w[..., None, :] - w[..., :, None] * v[..., None, :]
    if k >= 2:
        ds += [rest[..., 0, 0], rest[..., 1, 1]]
        es.append(rest[..., 1, 0])
    else:
        ds.append(rest[..., 0, 0])
    d = jnp.stack(ds, axis=-1)
    e = jnp.stack(es, axis=-1) if es else jnp.zeros(a.shape[:-2] + (0,), a.dtype)
    return d, e


def _sturm_count(d, e2, x, pivmin):
    """Number of eigenvalues of the tridiagonal (d, e^2) below each ``x``.

    d ``[..., k]``, e2 ``[..., k-1]`` (squared off-diagonal), x ``[..., m]`` -> ``[..., m]``.
    """
    k = d.shape[-1]
    q = d[..., 0:1] - x
    count = (q < 0).astype(jnp.int32)
    for i in range(1, k):
        q = jnp.where(jnp.abs(q) < pivmin, -pivmin, q)
        q = d[..., i:i + 1] - x - e2[..., i - 1:i] / q
        count = count + (q < 0)
    return count


def eigvalsh(a: jax.Array, iterations: int | None = None) -> jax.Array:
    """Eigenvalues of symmetric ``a`` ``[..., k, k]``, ascending, ``[..., k]``.

    Householder tridiagonalisation, then bisection on Sturm counts for all k
    eigenvalues at once (a fixed number of iterations: always terminates; NaN
    in -> NaN out). Absolute accuracy about machine epsilon times ||a||. Not
    meant to be differentiated; use it inside a custom_vjp or stop_gradient.
    """
    k = a.shape[-1]
    d, e = tridiagonalize(a)
    if k == 1:
        return d
    finfo = jnp.finfo(a.dtype)
    if iterations is None:
        iterations = finfo.nmant + 8
    abs_e = jnp.abs(e)
    radius = jnp.concatenate([abs_e, jnp.zeros_like(abs_e[..., :1])], -1) + jnp.concatenate(
        [jnp.zeros_like(abs_e[..., :1]), abs_e], -1)
    lo = jnp.min(d - radius, axis=-1, keepdims=True)
    hi = jnp.max(d + radius, axis=-1, keepdims=True)
    scale = jnp.maximum(jnp.abs(lo), jnp.abs(hi))
    lo, hi = lo - finfo.eps * scale, hi + finfo.eps * scale
    target = jnp.arange(1, k + 1, dtype=jnp.int32)
    lo = jnp.broadcast_to(lo, d.shape)
    hi = jnp.broadcast_to(hi, d.shape)
    e2 = e * e
    pivmin = jnp.maximum(finfo.tiny, finfo.eps * finfo.eps * scale * scale)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = _sturm_count(d, e2, mid, pivmin) >= target
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, iterations, body, (lo, hi))
    return 0.5 * (lo + hi)


def sqrtm_spd(a: jax.Array, iterations: int = 40) -> jax.Array:
    """Symmetric square root of symmetric positive-definite ``a`` ``[..., k, k]``.

    Coupled Newton-Schulz iteration (matrix products only; differentiable by
    unrolling). Converges for condition numbers up to ~1e6 within the default
    iteration count.
    """
    k = a.shape[-1]
    eye = jnp.eye(k, dtype=a.dtype)
    a = 0.5 * (a + _mT(a))
    norm = jnp.sqrt(jnp.sum(a * a, axis=(-2, -1)))[..., None, None]
    y, z = a / norm, jnp.broadcast_to(eye, a.shape)

    def body(_, yz):
        y, z = yz
        t = 0.5 * (3.0 * eye - z @ y)
        return y @ t, t @ z

    y, _ = jax.lax.fori_loop(0, iterations, body, (y, z))
    y = y * jnp.sqrt(norm)
    return 0.5 * (y + _mT(y))
