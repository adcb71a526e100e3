"""Batched linear algebra for small matrices (k <= ~64) in plain ``jax.numpy``.

Why not ``jnp.linalg`` on CPU: jaxlib 0.10.x runs batched LAPACK kernels
(cholesky, triangular solve, LU solve, eigh) by fanning the batch out over
XLA's intra-op thread pool and blocking on it. With a 2-thread pool, two such
kernels that XLA schedules concurrently wait on each other forever: a batched
``solve`` next to an independent batched ``solve_triangular`` (N = 4096,
k = 17) hangs the process. Policies use many small matrices, so tr_jax never
calls those kernels on its hot paths; the routines here are loops over the
matrix dimension, vectorised over the batch, which is also what tiny
matrices want on accelerators. The loops are rolled (``lax.fori_loop``, one
step a column or row, masked updates on the full matrix), so compile time
does not grow with k; Cholesky and triangular solves have closed-form
derivative rules (no loop is differentiated).

On GPU and TPU the deadlock does not apply: :func:`cholesky`,
:func:`solve_lower` and :func:`eigvalsh` lower to the vendor routines there
(``jax.lax.platform_dependent`` picks the branch when the program is lowered
for a platform; a CPU program contains no LAPACK call).

Every matrix product here and in the rest of the math layer (distributions,
projections, the trust-region losses) goes through :func:`matmul`, which
states ``Precision.HIGHEST``: float32 products are then float32 on every
backend, not TF32 (NVIDIA GPUs' default for float32 dots) or bfloat16
passes (TPU's), whatever ``jax_default_matmul_precision`` says. The CPU
ignores the field (its float32 products are float32 either way).

All functions take arrays with any number of leading batch dimensions;
matrices are ``[..., k, k]``. Everything is differentiable (forward and reverse mode)
except :func:`eigvalsh` (bisection; use it where no gradient flows, e.g.
inside a ``custom_vjp`` forward pass).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` (``jnp.matmul`` broadcasting) at ``Precision.HIGHEST``: full float32 on GPUs and TPUs.

    The precision is a parameter of the product itself, so it holds wherever the
    product is traced (custom VJP rules, transposes, loops), unlike a
    ``jax.default_matmul_precision`` scope, which does not reach backward passes
    traced after the scope has closed.
    """
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _mT(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, -1, -2)


def _col(x: jax.Array, j: int | jax.Array) -> jax.Array:
    """Column ``j`` (traced index) of ``[..., k, m]`` -> ``[..., k]``."""
    return jax.lax.dynamic_index_in_dim(x, j, axis=x.ndim - 1, keepdims=False)


def _row(x: jax.Array, i: int | jax.Array) -> jax.Array:
    """Row ``i`` (traced index) of ``[..., k, m]`` -> ``[..., m]``."""
    return jax.lax.dynamic_index_in_dim(x, i, axis=x.ndim - 2, keepdims=False)


# Up to this k the loops are unrolled in Python on shrinking blocks (fewer
# flops, no loop overhead: faster for small k at a small compile cost); above
# it they are rolled lax.fori_loops on the full masked matrix (compile time
# independent of k).
UNROLL_MAX_K = 8


def _cholesky_unrolled(a: jax.Array) -> jax.Array:
    """Right-looking Cholesky on shrinking trailing blocks (lower triangle read)."""
    k = a.shape[-1]
    cols = []
    rest = a
    for j in range(k):
        d = jnp.sqrt(rest[..., 0, 0])
        col = rest[..., 1:, 0] / d[..., None]
        cols.append(jnp.concatenate([jnp.zeros(d.shape + (j,), a.dtype), d[..., None], col], axis=-1))
        rest = rest[..., 1:, 1:] - col[..., :, None] * col[..., None, :]
    return jnp.stack(cols, axis=-1)


def _cholesky_loop(a: jax.Array) -> jax.Array:
    """Left-looking Cholesky, one ``fori_loop`` step a column (lower triangle of ``a`` read)."""
    k = a.shape[-1]
    if k <= UNROLL_MAX_K:
        return _cholesky_unrolled(a)
    idx = jnp.arange(k)

    def body(j: jax.Array, l: jax.Array) -> jax.Array:
        # v = a[:, j] - L[:, :j] L[j, :j]^T; columns >= j of L are still zero.
        v = _col(a, j) - jnp.sum(l * _row(l, j)[..., None, :], axis=-1)
        d = jnp.sqrt(jax.lax.dynamic_index_in_dim(v, j, axis=v.ndim - 1, keepdims=True))
        col = jnp.where(idx > j, v / d, jnp.where(idx == j, d, 0.0))
        return jax.lax.dynamic_update_index_in_dim(l, col, j, axis=l.ndim - 1)

    return jax.lax.fori_loop(0, k, body, jnp.zeros_like(a))


def _sym_from_lower(a: jax.Array) -> jax.Array:
    """The symmetric matrix whose lower triangle is that of ``a``."""
    return jnp.tril(a) + _mT(jnp.tril(a, -1))


@jax.custom_jvp
def _cholesky_jnp(a: jax.Array) -> jax.Array:
    """Pure-jnp Cholesky: a rolled loop; derivative dL = L Phi(L^-1 dA L^-T)."""
    return _cholesky_loop(a)


@_cholesky_jnp.defjvp
def _cholesky_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    (a,), (da,) = primals, tangents
    l = _cholesky_jnp(a)
    da = _sym_from_lower(da)
    y = _solve_lower_jnp(l, da, False)  # L^-1 dA
    z = _solve_lower_jnp(l, _mT(y), False)  # L^-1 dA L^-T (dA symmetric)
    k = a.shape[-1]
    phi = jnp.tril(z) * (1.0 - 0.5 * jnp.eye(k, dtype=z.dtype))
    return l, matmul(l, phi)


def _substitute_unrolled(l: jax.Array, b: jax.Array, transpose: bool) -> jax.Array:
    """Column-oriented substitution unrolled in Python (small k)."""
    k = l.shape[-1]
    xs: list[jax.Array] = [b[..., 0, :]] * k  # every entry is replaced
    r = b
    if not transpose:
        for i in range(k):
            xi = r[..., 0, :] / l[..., i, i][..., None]
            xs[i] = xi
            r = r[..., 1:, :] - l[..., i + 1 :, i][..., :, None] * xi[..., None, :]
    else:
        for i in reversed(range(k)):  # row i of L is column i of L^T
            xi = r[..., i, :] / l[..., i, i][..., None]
            xs[i] = xi
            r = r[..., :i, :] - l[..., i, :i][..., :, None] * xi[..., None, :]
    return jnp.stack(xs, axis=-2)


def _substitute(l: jax.Array, b: jax.Array, transpose: bool) -> jax.Array:
    """Forward (``L x = b``) or back (``L^T x = b``) substitution; b ``[..., k, m]``.

    One ``fori_loop`` step a row (unrolled on shrinking blocks for small k);
    entries of ``l`` above the diagonal are ignored.
    """
    k = l.shape[-1]
    if k <= UNROLL_MAX_K:
        return _substitute_unrolled(l, b, transpose)
    idx = jnp.arange(k)

    def body(step: jax.Array, x: jax.Array) -> jax.Array:
        i = k - 1 - step if transpose else step
        if transpose:  # row i of L^T = column i of L, below the diagonal
            coeffs = jnp.where(idx > i, _col(l, i), 0.0)
        else:
            coeffs = jnp.where(idx < i, _row(l, i), 0.0)
        diag = jax.lax.dynamic_index_in_dim(_row(l, i), i, axis=l.ndim - 2, keepdims=False)
        xi = (_row(b, i) - jnp.sum(coeffs[..., :, None] * x, axis=-2)) / diag[..., None]
        return jax.lax.dynamic_update_index_in_dim(x, xi, i, axis=x.ndim - 2)

    return jax.lax.fori_loop(0, k, body, jnp.zeros_like(b))


def _solve_lower_jnp(l: jax.Array, r: jax.Array, transpose: bool) -> jax.Array:
    """Pure-jnp triangular solve, l ``[..., k, k]``, r ``[..., k, m]`` (same batch dims).

    The substitution loop runs inside ``lax.custom_linear_solve``:
    derivatives (forward and reverse, w.r.t. ``l`` and ``r``) are triangular
    solves themselves, the loop is never differentiated.
    """
    lower = jnp.tril(l)

    def matvec(x: jax.Array) -> jax.Array:
        return matmul(_mT(lower) if transpose else lower, x)

    return jax.lax.custom_linear_solve(
        matvec,
        r,
        solve=lambda _, rhs: _substitute(l, rhs, transpose),
        transpose_solve=lambda _, rhs: _substitute(l, rhs, not transpose),
    )


def _cholesky_vendor(a: jax.Array) -> jax.Array:
    return jax.lax.linalg.cholesky(_sym_from_lower(a), symmetrize_input=False)


def _solve_lower_vendor(l: jax.Array, r: jax.Array, transpose: bool) -> jax.Array:
    return jax.lax.linalg.triangular_solve(l, r, left_side=True, lower=True, transpose_a=transpose)


def cholesky(a: jax.Array) -> jax.Array:
    """Lower Cholesky factor of symmetric positive-definite ``a`` ``[..., k, k]``.

    Reads the lower triangle only (its derivative too: the tangent of ``a`` is
    the symmetric matrix built from the lower triangle of the tangent). Not
    positive definite -> NaN (like LAPACK). CPU: a rolled loop over the columns
    (compile time independent of k) with the closed-form derivative
    dL = L Phi(L^-1 dA L^-T); GPU/TPU: ``lax.linalg.cholesky`` (cuSOLVER
    potrf, XLA's Cholesky on TPU). Chosen at lowering time.
    """
    return jax.lax.platform_dependent(a, cpu=_cholesky_jnp, default=_cholesky_vendor)


def solve_lower(l: jax.Array, b: jax.Array, transpose: bool = False) -> jax.Array:
    """Solves ``L x = b`` (or ``L^T x = b`` with ``transpose``) for lower-triangular L.

    Args:
      l: ``[..., k, k]`` lower triangular (entries above the diagonal ignored).
      b: ``[..., k]`` or ``[..., k, m]``; batch dims broadcast against ``l``.
    Returns:
      x with the broadcast shape of ``b``.

    CPU: a rolled loop over the rows (compile time independent of k) whose
    derivatives are triangular solves (``lax.custom_linear_solve``); GPU/TPU:
    ``lax.linalg.triangular_solve`` (cuBLAS trsm, XLA's TriangularSolve on
    TPU). Chosen at lowering time.
    """
    vector = b.ndim == l.ndim - 1
    r = b[..., None] if vector else b
    batch = jnp.broadcast_shapes(l.shape[:-2], r.shape[:-2])
    l = jnp.broadcast_to(l, batch + l.shape[-2:])
    r = jnp.broadcast_to(r, batch + r.shape[-2:])
    x = jax.lax.platform_dependent(
        l,
        r,
        cpu=lambda l, r: _solve_lower_jnp(l, r, transpose),
        default=lambda l, r: _solve_lower_vendor(l, r, transpose),
    )
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
    return matmul(_mT(linv), linv)


def spd_logdet(a: jax.Array) -> jax.Array:
    """log det of a symmetric positive-definite matrix, ``[...]``."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(cholesky(a), axis1=-2, axis2=-1)), axis=-1)


def tridiagonalize(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Householder reduction of symmetric ``a`` ``[..., k, k]`` to tridiagonal form.

    Returns ``(d, e)``: the diagonal ``[..., k]`` and off-diagonal ``[..., k-1]``
    of T = Q^T A Q (Q orthogonal, not formed). Backward stable; O(k^3) work
    in a rolled loop of k - 2 reflections on the full (masked) matrix,
    vectorised over the batch.
    """
    k = a.shape[-1]
    rest = 0.5 * (a + _mT(a))
    idx = jnp.arange(k)

    def body(j: jax.Array, rest: jax.Array) -> jax.Array:
        # Reflect the column below row j onto e_{j+1}; rows/cols <= j are done
        # (the update leaves entries (i, i) and (i + 1, i), i <= j, as they are).
        x = jnp.where(idx > j, _col(rest, j), 0.0)
        norm_x = jnp.sqrt(jnp.sum(x * x, axis=-1))
        x1 = jax.lax.dynamic_index_in_dim(x, j + 1, axis=x.ndim - 1, keepdims=False)
        alpha = -jnp.where(x1 >= 0, 1.0, -1.0) * norm_x
        v = x - jnp.where(idx == j + 1, alpha[..., None], 0.0)
        norm_v = jnp.sqrt(jnp.sum(v * v, axis=-1))
        v = v / jnp.where(norm_v > 0, norm_v, 1.0)[..., None]  # v = 0: no reflection needed
        p = jnp.sum(rest * v[..., None, :], axis=-1)
        w = 2.0 * p - 2.0 * jnp.sum(v * p, axis=-1)[..., None] * v
        return rest - v[..., :, None] * w[..., None, :] - w[..., :, None] * v[..., None, :]

    if k > 2:
        rest = jax.lax.fori_loop(0, k - 2, body, rest, unroll=k <= UNROLL_MAX_K)
    d = jnp.diagonal(rest, axis1=-2, axis2=-1)
    e = jnp.diagonal(rest, offset=-1, axis1=-2, axis2=-1)
    return d, e


def _sturm_count(d: jax.Array, e2: jax.Array, x: jax.Array, pivmin: jax.Array) -> jax.Array:
    """Number of eigenvalues of the tridiagonal (d, e^2) below each ``x``.

    d ``[..., k]``, e2 ``[..., k-1]`` (squared off-diagonal), x ``[..., m]`` -> ``[..., m]``.
    """
    k = d.shape[-1]
    q = d[..., 0:1] - x
    count = (q < 0).astype(jnp.int32)
    for i in range(1, k):
        q = jnp.where(jnp.abs(q) < pivmin, -pivmin, q)
        q = d[..., i : i + 1] - x - e2[..., i - 1 : i] / q
        count = count + (q < 0)
    return count


def eigvalsh(a: jax.Array, iterations: int | None = None) -> jax.Array:
    """Eigenvalues of symmetric ``a`` ``[..., k, k]``, ascending, ``[..., k]``.

    CPU: :func:`eigvalsh_jnp`; GPU/TPU: ``jnp.linalg.eigvalsh`` (cuSOLVER
    syevj, XLA's Jacobi eigh on TPU), chosen at lowering time. Not meant to
    be differentiated (use it inside a custom_vjp or under stop_gradient).
    """
    return jax.lax.platform_dependent(
        a,
        cpu=lambda a: eigvalsh_jnp(a, iterations),
        default=lambda a: jnp.linalg.eigvalsh(0.5 * (a + _mT(a)), symmetrize_input=False),
    )


def eigvalsh_jnp(a: jax.Array, iterations: int | None = None) -> jax.Array:
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
        [jnp.zeros_like(abs_e[..., :1]), abs_e], -1
    )
    lo = jnp.min(d - radius, axis=-1, keepdims=True)
    hi = jnp.max(d + radius, axis=-1, keepdims=True)
    scale = jnp.maximum(jnp.abs(lo), jnp.abs(hi))
    lo, hi = lo - finfo.eps * scale, hi + finfo.eps * scale
    target = jnp.arange(1, k + 1, dtype=jnp.int32)
    lo = jnp.broadcast_to(lo, d.shape)
    hi = jnp.broadcast_to(hi, d.shape)
    e2 = e * e
    pivmin = jnp.maximum(finfo.tiny, finfo.eps * finfo.eps * scale * scale)

    def body(_: jax.Array, bounds: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
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

    def body(_: jax.Array, yz: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        y, z = yz
        t = 0.5 * (3.0 * eye - matmul(z, y))
        return matmul(y, t), matmul(t, z)

    y, _ = jax.lax.fori_loop(0, iterations, body, (y, z))
    y = y * jnp.sqrt(norm)
    return 0.5 * (y + _mT(y))
