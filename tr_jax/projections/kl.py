"""KL trust-region projection (Otto et al., ICLR 2021), solved inside JAX: :func:`kl_projection`, :func:`kl_parts`.

The mean part is the closed form of :mod:`tr_jax.projections.mean`. The covariance part has no closed form: per
state, a bounded, safeguarded Newton iteration finds the one scalar of the solution, so the projection jits,
vmaps and always terminates, and its gradients (reverse mode, to the new and old Gaussians and the bounds) come
from the implicit function theorem, not from unrolling the solver. The bound is met to about 1e-14 relative in
float64 and 1e-5 in float32 (at ``eps_cov = 1e-3``); a NaN in a state's inputs gives NaN in that state's
outputs.
The math, the solver and its accuracy: [How the projections work][how-the-projections-work]
(``docs/projections-math.md``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from tr_jax import distributions as D
from tr_jax import linalg as LA
from tr_jax.distributions import CovType
from tr_jax.projections import _checks
from tr_jax.projections._checks import Pair
from tr_jax.projections.mean import project_mean_part

mm = LA.matmul  # every product at Precision.HIGHEST (see tr_jax.linalg)

__all__ = ["kl_projection", "kl_parts"]

# Newton iterations of the root solve at most (before the final accurate step;
# fewer where every state of a batch has converged: 2-4 for typical bounds). Enough
# for machine precision with condition numbers of the whitened target up to
# 1e8, k <= 64 and 1e-8 <= eps <= KL(target || old) (see tests; up to 11 with
# a bound far above 1 next to a pole of g, a target std 1e4 times the old one).
_NEWTON_ITERS = 12
# Distance outside the Newton bracket, in ulps of s, still read as rounding
# of a converged iterate rather than an overshoot.
_BRACKET_SLACK_ULPS = 8
# Chunk length of the products whose logarithms give sum(log p) in float64.
_LOG_CHUNK = 8
# States per block of the diagonal root solve on CPU (see _map_states), and
# about the numbers per block of full states (see _block_full).
_BLOCK = 2048
_BLOCK_NUMBERS_FULL = 16384
_PROJECTION = _checks.Accepts("kl_projection", ("diag", "full"), "full")
_PARTS = _PROJECTION._replace(what="kl_parts")


# ---------------------------------------------------------------------------
# Scalar helpers
# ---------------------------------------------------------------------------


def _sum_log(p: jax.Array) -> jax.Array:
    """sum(log p) over the last axis of a positive ``[k]`` vector.

    float64: logs of products of chunks of ``_LOG_CHUNK`` (one log per chunk
    instead of per element); float32: plain sum of logs (range and accuracy).
    """
    k = p.shape[-1]
    if p.dtype != jnp.float64:
        return jnp.sum(jnp.log(p), axis=-1)
    if k <= _LOG_CHUNK:
        return jnp.log(jnp.prod(p, axis=-1))
    n = -(-k // _LOG_CHUNK)
    padded = jnp.concatenate([p, jnp.ones((n * _LOG_CHUNK - k,), p.dtype)])
    return jnp.sum(jnp.log(jnp.prod(padded.reshape(n, _LOG_CHUNK), axis=-1)))


def _precision(s: jax.Array, d: jax.Array, lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(y, p)``: y = s d and p = (1 - s) + s lam = 1 + y, the whitened
    projected precisions of eigenvalues ``lam`` (``d = lam - 1``).

    p is a sum of two non-negative terms, so it is correct to a few ulps
    whatever s and lam are (1 + s d would cancel to 0 where lam << 1 and
    s -> 1: a target std 1e4 times the old one in float32), and it costs about
    the same as 1 + s d (1 - s is one number per state; no select: XLA:CPU
    does not vectorise an elementwise select inside these fused reductions,
    which made such a pass 5-10 times slower).
    """
    return s * d, (1.0 - s) + s * lam


def _g_terms(s: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
    """g(s) and s g'(s) of the Newton iterations for p = 1 + y, y = s d (``d`` ``[k]``).

    s g'(s) = 0.5 sum((y / p)^2), finite where d^2 would overflow. p = 1 + y
    is rounded (no select, :func:`_precision`), which only matters where
    lam << 1 and s -> 1; the last step on :func:`_g_direct` has the exact p.
    float64: one logarithm per chunk of elements (:func:`_sum_log`; absolute
    error about k ulps of 1, refined by that last step); float32: one log1p
    per element, as accurate as :func:`_g_direct` (needed: k ulps of 1 would
    exceed bounds below about 1e-6).
    """
    y = s * d
    p = 1.0 + y
    yq = y / p
    slope = 0.5 * jnp.sum(yq * yq)
    if p.dtype != jnp.float64:
        return 0.5 * jnp.sum(jnp.log1p(y) - yq), slope
    return 0.5 * (_sum_log(p) - jnp.sum(yq)), slope


def _g_direct(s: jax.Array, d: jax.Array, lam: jax.Array) -> jax.Array:
    """g(s) for whitened precisions p = 1 + y, y = s d (``d``, ``lam`` : ``[k]``),
    without rounding p = 1 + y: 0.5 sum(log1p(y) - y / p), p from
    :func:`_precision`; for ``s < 1`` (g(1) is :func:`_g_one`).

    Its absolute error is a few ulps of sum(|y|), so its relative error is at
    most about u sqrt(8 k / g), u the unit roundoff (1e-16 in float64, about
    1e-12 at g = 1e-6; 6e-8 in float32): the same order as the rounding of the
    output scale itself, whose covariance part has that relative error
    whatever s is. (The fast float64 form rounds p = 1 + y first: an absolute
    error of about k ulps of 1, 1e-7 relative at g = 1e-8.) Where p << 1
    (lam << 1, s -> 1) the rounding of y costs log1p(y) about u / p, a few
    ulps of the term 1 / p - 1 + log p of g, and y / p uses the exact p.
    """
    y, p = _precision(s, d, lam)
    return 0.5 * jnp.sum(jnp.log1p(y) - y / p)


def _g_one(d: jax.Array, lam: jax.Array) -> jax.Array:
    """g(1) = KL_Sigma(target || old) = 0.5 sum(log lam - d / lam) for ``d``,
    ``lam`` ``[k]``: p = lam is exact there, so log lam is accurate to ulps of
    |log lam| (about |d| near lam = 1), and no log1p(d) meets d = -1 when
    lam is below the rounding of 1 (a target std 1e4 times the old one in
    float32)."""
    return 0.5 * jnp.sum(jnp.log(lam) - d / lam)


def _g_tridiagonal(s: jax.Array, c: jax.Array, b: jax.Array) -> jax.Array:
    """g(s) for P = I + s T, T symmetric tridiagonal, from the LDL^T pivots of P.

    ``c`` ``[k]`` diagonal and ``b`` ``[k-1]`` off-diagonal of T (T is the
    whitened D = W - I in a rotated basis, so g is that of the eigenvalue
    form). With pivots delta_j = 1 + u_j and unit bidiagonal L (l_j = s b_j /
    delta_j), tr(P^-1) = sum_j (1 + rho_j) / delta_j where 1 + rho_j is the
    squared norm of row j of L^-1, so

        2 g = sum_j [phi(delta_j) + rho_j / delta_j],  phi(x) = 1/x - 1 + log x,

    a sum of non-negative terms (no cancellation, O(k), no eigenvalues; P is
    positive definite for s in [0, 1], so no pivot vanishes). A pivot is
    kept >= machine eps: an eigenvalue of W below that is lost in W - I (a
    target std 1e4 times the old one in float32), and rounding would otherwise
    make the pivot of s = 1 zero or negative (NaN); the root lies where g = eps,
    far from such pivots, and only g(1) = KL(target || old) is then a lower bound.
    """
    floor = jnp.finfo(c.dtype).eps - 1.0

    def step(
        carry: tuple[jax.Array, jax.Array, jax.Array], cb: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], None]:
        u, rho, total = carry
        c_j, b_prev = cb
        sb = s * b_prev
        l = sb / (1.0 + u)
        rho = l * l * (1.0 + rho)
        u = jnp.maximum(s * c_j - sb * l, floor)
        return (u, rho, total + D.rm1_log(-u / (1.0 + u)) + rho / (1.0 + u)), None

    u = jnp.maximum(s * c[0], floor)
    init = (u, jnp.zeros_like(u), D.rm1_log(-u / (1.0 + u)))
    (_, _, total), _ = jax.lax.scan(step, init, (c[1:], b))
    return 0.5 * total


def _norm(x: jax.Array) -> jax.Array:
    """Euclidean norm of ``x`` ``[m]`` without overflow of the squares."""
    big = jnp.max(jnp.abs(x))
    scale = jnp.where(big > 0, big, 1.0)
    scaled = x * (1.0 / scale)  # one division per vector, not per element
    return scale * jnp.sqrt(jnp.sum(scaled * scaled))


def _solve_s(
    g_fast: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    g_last: Callable[[jax.Array], tuple[jax.Array, jax.Array | None]],
    norm_d: jax.Array,
    kl_target: jax.Array,
    eps: jax.Array,
) -> jax.Array:
    """Solves g(s) = eps for s = 1/(1+eta) in (0, 1]; per state.

    Args:
      g_fast: s -> (g(s), s g'(s)), used by the bracketed Newton iterations
        (s g'(s) rather than g'(s): it stays finite where d^2 overflows).
      g_last: s -> (g(s), s g'(s) or None), as accurate as the inputs allow,
        for the last Newton step (None: that step uses the slope of the last
        iteration, which is converged to sqrt(machine eps) relative).
      norm_d: ``[]`` ||D||_F, the norm of the eigenvalues of D = W - I.
      kl_target: ``[]`` g(1) = KL_Sigma(target || old).
      eps: ``[]`` covariance bound.
    Returns:
      ``[]`` s; exactly 1 where KL(target || old) <= eps (inactive), exactly 0
      where eps = 0 < KL(target || old), NaN if the inputs or ``eps`` are NaN.
    """
    dtype = norm_d.dtype
    solve = kl_target > eps  # NaN: not solved, and NaN out below
    log_eps = jnp.log(eps)
    slack = _BRACKET_SLACK_ULPS * jnp.finfo(dtype).eps
    tol = jnp.sqrt(jnp.finfo(dtype).eps)
    # t = s / (1 - s) = 1 / eta from the quadratic g ~ t^2 ||D||^2 / 4 (never s = 1,
    # where Newton next to a pole of g, lam << 1, would crawl).
    t0 = 2.0 * jnp.sqrt(eps) / jnp.where(norm_d > 0, norm_d, 1.0)
    s0 = jnp.clip(t0 / (1.0 + t0), jnp.finfo(dtype).tiny, 1.0)

    def newton(carry: tuple[Any, ...]) -> tuple[Any, ...]:
        i, s, lo, hi, g_lo, g_hi, _, _ = carry
        g, sgp = g_fast(s)
        above = g > eps
        hi, g_hi = jnp.where(above, s, hi), jnp.where(above, g, g_hi)
        lo, g_lo = jnp.where(above, lo, s), jnp.where(above, g_lo, g)
        # Newton on log g as a function of log s.
        log_ratio = jnp.log(g) - log_eps
        step = log_ratio * g / sgp
        sn = s * jnp.exp(-step)
        # A converged s sits on an end of the bracket, and rounding can put the
        # Newton point an ulp outside it: that is not a reason to leave Newton.
        clipped = jnp.clip(sn, lo, hi)
        ok = jnp.abs(sn - clipped) <= slack * s
        # Outside by more (g convex in log s: Newton from below overshoots, e.g. a
        # root just under s = 1 or next to a pole 1 + s d_i = 0 of g), or NaN: the
        # larger of two points that fall short of such a root, the secant of the
        # bracket (g convex in s; lands on a root just under s = 1 at once) and
        # Newton in log t, t = s / (1 - s) (g ~ t / 2 near a pole); bisection if
        # neither is inside. Every iterate stays inside the bracket.
        secant = lo + (eps - g_lo) * (hi - lo) / (g_hi - g_lo)
        inside = (secant > lo) & (secant < hi)  # False for NaN
        newton_t = s / (s + (1.0 - s) * jnp.exp(step / (1.0 - s)))
        inside_t = (newton_t > lo) & (newton_t < hi)
        short = jnp.maximum(jnp.where(inside, secant, lo), jnp.where(inside_t, newton_t, lo))
        fallback = jnp.where(inside | inside_t, short, 0.5 * (lo + hi))
        # Converged: the Newton step and log(g / eps) are below sqrt(machine eps),
        # so the last step below (quadratic convergence) reaches machine precision
        # (a small step alone is not enough next to a pole, where the step in log s
        # is about (1 - s) log(g / eps)).
        done = ok & (jnp.abs(step) <= tol) & (jnp.abs(log_ratio) <= 2.0 * tol)
        return i + 1, jnp.where(ok, clipped, fallback), lo, hi, g_lo, g_hi, sgp, done

    def running(carry: tuple[Any, ...]) -> jax.Array:
        return (carry[0] < _NEWTON_ITERS) & jnp.logical_not(carry[-1])

    # At most _NEWTON_ITERS iterations; under vmap the loop runs until every
    # state to solve has converged (a converged state keeps its value). The
    # bracket [lo, hi] starts at [0, 1] with g(0) = 0, g(1) = kl_target.
    zero, one = jnp.zeros_like(s0), jnp.ones_like(s0)
    init = (jnp.zeros((), jnp.int32), s0, zero, one, zero, kl_target + zero, one, jnp.logical_not(solve))
    out = jax.lax.while_loop(running, newton, init)
    s, sgp_last = jnp.where(solve, out[1], one), out[-2]

    # Last Newton step on the accurate g.
    g, sgp = g_last(s)
    sgp = sgp_last if sgp is None else sgp
    sn = s - s * (g - eps) / sgp
    s = jnp.where(solve & jnp.isfinite(sn) & (sn > 0) & (sn <= 1), sn, s)
    # s = 1 means "inside" (the target comes back): a state to solve stays below it,
    # on the safe side of the bound where no s < 1 reaches it (float32: p_min >=
    # 2^-24, so g(s < 1) stays below about 2^23 per tiny lam_i while g(1) is larger).
    s = jnp.where(solve, jnp.minimum(s, jnp.nextafter(one, zero)), s)
    s = jnp.where(jnp.isnan(g) | jnp.isnan(kl_target) | jnp.isnan(eps), jnp.nan, s)
    # A zero bound (possible when traced): s = 0 exactly, P = I, the old covariance.
    return jnp.where((eps == 0) & solve, 0.0, s)


def _root_s(lam: jax.Array, eps: jax.Array) -> jax.Array:
    """s for whitened-target eigenvalues ``lam`` ``[k]`` (diagonal states: s_o^2 / s~^2).

    The Newton iterations use :func:`_g_terms`; the last step the accurate
    :func:`_g_direct` and KL(target || old) = g(1) :func:`_g_one`.
    """
    d = lam - 1.0
    return _solve_s(lambda s: _g_terms(s, d), lambda s: (_g_direct(s, d, lam), None), _norm(d), _g_one(d, lam), eps)


def _root_s_full(w: jax.Array, eps: jax.Array) -> jax.Array:
    """s for a whitened target precision ``w`` ``[k, k]``, without eigenvalues.

    Householder-reduces D = W - I to tridiagonal T (same eigenvalues), then
    runs the Newton iteration on g evaluated from T's LDL^T recurrence
    (:func:`_g_tridiagonal`, derivative by forward-mode differentiation).
    """
    k = w.shape[-1]
    c, b = LA.tridiagonalize(w - jnp.eye(k, dtype=w.dtype))

    def g_and_slope(s: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jax.jvp(lambda s: _g_tridiagonal(s, c, b), (s,), (s,))  # (g, s g'(s))

    kl_target = _g_tridiagonal(jnp.ones((), w.dtype), c, b)
    norm_d = _norm(jnp.concatenate([c, jnp.sqrt(2.0) * b]))
    return _solve_s(g_and_slope, g_and_slope, norm_d, kl_target, eps)


# ---------------------------------------------------------------------------
# s with implicit gradients
# ---------------------------------------------------------------------------


def _upper_inverse_factor(p: jax.Array) -> jax.Array:
    """``y = U^-1`` ``[k, k]`` (upper triangular) for SPD ``p = U U^T``, U upper.

    U is the Cholesky factor of the flipped matrix, flipped back, so that
    ``L U^-T`` is lower triangular for any lower L.
    """
    return LA.tril_inverse(LA.cholesky(p[::-1, ::-1]))[::-1, ::-1]


def _factor_vjp(w: jax.Array, s: jax.Array, y: jax.Array, ct_y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """VJP of ``y = U^-1`` (P(s) = (1 - s) I + s W = U U^T, s the root of g(s; W)
    = eps) with respect to ``w`` ``[k, k]`` and ``eps`` ``[]``, given ``ct_y``;
    closed form, matrix products only.

    y: with Z = Y dP Y^T, dY = -Psi(Z) Y (Psi: upper triangle, halved
    diagonal), so P_bar = -sym(Y^T Psi(Y_bar Y^T) Y); P = (1-s) I + s W gives
    W_bar = s P_bar and s_bar = <P_bar, W - I>.
    s: implicit function theorem on g(s; W) = eps (module docstring) with
    B = P^-1 D P^-1 = Y^T X Y, X = Y D Y^T, tr(B D) = ||X||_F^2.
    Returns ``(ct_w, ct_eps)``; zero through s for inactive states (s = 1).
    """
    k = w.shape[-1]
    eye = jnp.eye(k, dtype=w.dtype)
    active = s < 1.0
    dmat = w - eye
    g = mm(ct_y, y.T)
    psi = jnp.triu(g) - 0.5 * jnp.diag(jnp.diagonal(g))
    p_bar = -mm(mm(y.T, psi), y)
    p_bar = 0.5 * (p_bar + p_bar.T)
    ct_s = jnp.sum(p_bar * dmat)
    x = mm(mm(y, dmat), y.T)
    b = mm(mm(y.T, x), y)
    denom = jnp.where(active, jnp.sum(x * x), 1.0)
    b = 0.5 * (b + b.T)
    ct_w = s * p_bar + jnp.where(active, -ct_s * s / denom, 0.0) * b
    ct_eps = jnp.where(active, 2.0 * ct_s / (s * denom), 0.0)
    return ct_w, ct_eps


# ---------------------------------------------------------------------------
# Per-state projections
# ---------------------------------------------------------------------------


def _map_states(fn: Callable[..., Any], *args: jax.Array, block: int | None = None) -> Any:
    """``vmap(fn)`` over the leading (state) axis of ``args``.

    On CPU in blocks of ``block`` states (default ``_BLOCK``; ``lax.map``): a
    block's working set stays in cache, the program's temporary memory is a
    block's, and each block iterates only as long as its own states need. One
    block on GPU/TPU.
    """
    block = _BLOCK if block is None else block

    def blocked(*a: jax.Array) -> Any:
        return jax.lax.map(lambda x: fn(*x), a, batch_size=block)

    def whole(*a: jax.Array) -> Any:
        return jax.vmap(fn)(*a)

    if args[0].shape[0] <= block:
        return whole(*args)
    return jax.lax.platform_dependent(*args, cpu=blocked, default=whole)


def _root_s_diag(std: jax.Array, old_std: jax.Array, eps: jax.Array) -> jax.Array:
    """``[]`` s of one diagonal state (``std``, ``old_std`` ``[k]``, ``eps`` ``[]``)."""
    return _root_s((old_std / std) ** 2, eps)


def _cov_diag_parts(
    std: jax.Array, old_std: jax.Array, s: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """lam = s_o^2 / s~^2, d = lam - 1, p = 1 + s d and the projected std
    s_o / sqrt(p) of active states; ``s`` ``[]`` or ``[n, 1]`` broadcasts
    against ``[k]`` or ``[n, k]``."""
    lam = (old_std / std) ** 2
    d = lam - 1.0
    p = _precision(s, d, lam)[1]
    # sqrt of a quotient, not rsqrt: the same rounding, and XLA:CPU's rsqrt is several times slower
    return lam, d, p, jnp.sqrt(old_std * old_std / p)


@jax.custom_vjp
def _cov_diag(std: jax.Array, old_std: jax.Array, eps: jax.Array) -> jax.Array:
    """``[n, k]`` projected stds of ``n`` diagonal states (``std``, ``old_std``
    ``[n, k]``, ``eps`` ``[n]``).

    The per-state work runs in blocks of states (:func:`_map_states`): the
    root s in the forward pass (the projected stds are then one pass over the
    batch), the whole backward pass (its per-state sums and the elementwise
    cotangents that need them, so the second read of a block's inputs comes
    from cache). A custom VJP whose residuals are the inputs and ``s``, so no
    ``[n, k]`` intermediate stays alive between the passes.
    """
    return _cov_diag_fwd(std, old_std, eps)[0]


def _cov_diag_fwd(std: jax.Array, old_std: jax.Array, eps: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    s = _map_states(_root_s_diag, std, old_std, eps)[:, None]
    active = jnp.logical_not(s >= 1.0)  # s == 1 exactly when inactive; NaN -> NaN out
    proj = _cov_diag_parts(std, old_std, jnp.where(active, s, 1.0))[-1]
    return jnp.where(active, proj, std), (std, old_std, eps, s)


def _cov_diag_state_vjp(
    std: jax.Array, old_std: jax.Array, eps: jax.Array, s: jax.Array, ct: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """VJP of one diagonal state (``std``, ``old_std``, ``ct`` ``[k]``, ``eps``,
    ``s`` ``[]``) w.r.t. ``(std, old_std, eps)``: the chain rule through
    proj = s_o p^(-1/2), p = 1 + s d, and the implicit s:

    ds/dlam = -s a / B, ds/deps = 2 / (s B), a = d / p^2, B = sum(d a);
    with A = sum(ct proj d / p) and kappa = -A / (2 B):
    dL/dlam = s (-ct proj / (2 p) - kappa a), then lam = (s_o / s~)^2.
    Inactive states (s = 1): the identity to ``std``, zero to the rest.
    """
    active = jnp.logical_not(s >= 1.0)
    s_safe = jnp.where(active, s, 0.5)
    # Two divisions and a square root per element: with 1 / s~, r = s_o / s~, lam = r^2
    # and 1 / p, proj = s_o sqrt(1 / p), lam / s~ = lam (1 / s~) and lam / s_o = r (1 / s~).
    inv_std = 1.0 / std
    r = old_std * inv_std
    lam = r * r
    d = lam - 1.0
    inv_p = 1.0 / _precision(s_safe, d, lam)[1]
    root = jnp.sqrt(inv_p)
    ct_proj = ct * old_std * root
    u = d * inv_p
    sum_a = jnp.sum(ct_proj * u)
    sum_b = jnp.where(active, jnp.sum(u * u), 1.0)
    kappa = -0.5 * sum_a / sum_b
    ct_lam = s_safe * inv_p * (-0.5 * ct_proj - kappa * u)
    ct_std = jnp.where(active, -2.0 * ct_lam * lam * inv_std, ct)
    ct_old = jnp.where(active, ct * root + 2.0 * ct_lam * r * inv_std, 0.0)
    ct_eps = jnp.where(active, -sum_a / (s_safe * sum_b), 0.0)
    return ct_std, ct_old, ct_eps.astype(eps.dtype)


def _cov_diag_bwd(res: tuple[jax.Array, ...], ct: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per state (:func:`_cov_diag_state_vjp`), in blocks of states."""
    std, old_std, eps, s = res
    out: tuple[jax.Array, jax.Array, jax.Array] = _map_states(_cov_diag_state_vjp, std, old_std, eps, s[:, 0], ct)
    return out


_cov_diag.defvjp(_cov_diag_fwd, _cov_diag_bwd)


def _whitened(chol: jax.Array, old_chol: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(L_o, M, W)`` of one full state: L_o = tril(old_chol), M = L~^-1 L_o and
    the whitened target precision W = M^T M = L_o^T Lambda~ L_o, all ``[k, k]``."""
    old_chol = jnp.tril(old_chol)  # (solve_lower reads only the lower triangle of its matrix argument)
    m = LA.solve_lower(chol, old_chol)
    return old_chol, m, mm(m.T, m)


def _cov_full_state(chol: jax.Array, old_chol: jax.Array, eps: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One full state: ``(projected factor [k, k], s [], y [k, k])``."""
    old_chol, _, w = _whitened(chol, old_chol)
    s = _root_s_full(w, eps)
    y = _upper_inverse_factor((1.0 - s) * jnp.eye(w.shape[-1], dtype=w.dtype) + s * w)
    active = jnp.logical_not(s >= 1.0)
    # Sigma = L_o P^-1 L_o^T = (L_o U^-T)(L_o U^-T)^T and L_o U^-T = L_o Y^T is lower.
    return jnp.where(active, jnp.tril(mm(old_chol, y.T)), chol), s, y


def _cov_full_state_vjp(
    chol: jax.Array, old_chol: jax.Array, eps: jax.Array, s: jax.Array, y: jax.Array, ct: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """VJP of one full state w.r.t. ``(chol, old_chol, eps)``, recomputing L_o,
    M and W: with C = tril(ct), Y_bar = C^T L_o, (W_bar, eps_bar) from
    :func:`_factor_vjp`, M_bar = M (W_bar + W_bar^T), G = L~^-T M_bar:
    L_o_bar = tril(C Y + G), L~_bar = -tril(G M^T)."""
    old_chol, m, w = _whitened(chol, old_chol)
    active = jnp.logical_not(s >= 1.0)
    c = jnp.tril(ct)
    ct_w, ct_eps = _factor_vjp(w, s, y, mm(c.T, old_chol))
    g = LA.solve_lower(chol, mm(m, ct_w + ct_w.T), transpose=True)
    return (
        jnp.where(active, -jnp.tril(mm(g, m.T)), ct),
        jnp.where(active, jnp.tril(mm(c, y) + g), 0.0),
        jnp.where(active, ct_eps, 0.0),
    )


@jax.custom_vjp
def _cov_full(chol: jax.Array, old_chol: jax.Array, eps: jax.Array) -> jax.Array:
    """``[n, k, k]`` projected lower Cholesky factors of ``n`` full states
    (``chol``, ``old_chol`` ``[n, k, k]``, ``eps`` ``[n]``).

    Per-state work in blocks of states on CPU (:func:`_map_states`), forward
    and backward. A custom VJP whose residuals are the inputs, ``s`` and
    ``Y``: the backward pass recomputes the whitening (one triangular solve)
    instead of keeping its intermediates of every state alive.
    """
    return _cov_full_fwd(chol, old_chol, eps)[0]


def _block_full(k: int) -> int:
    """States per CPU block for full ``[k, k]`` states: the power of two nearest
    below 16384 / k^2 (at least 16), so batches of power-of-two sizes split
    without a remainder block."""
    n = max(16, _BLOCK_NUMBERS_FULL // (k * k))
    return 1 << (n.bit_length() - 1)


def _cov_full_fwd(chol: jax.Array, old_chol: jax.Array, eps: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    proj, s, y = _map_states(_cov_full_state, chol, old_chol, eps, block=_block_full(chol.shape[-1]))
    return proj, (chol, old_chol, eps, s, y)


def _cov_full_bwd(res: tuple[jax.Array, ...], ct: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    k = ct.shape[-1]
    ct_chol, ct_old, ct_eps = _map_states(_cov_full_state_vjp, *res, ct, block=_block_full(k))
    return ct_chol, ct_old, ct_eps.astype(res[2].dtype)


_cov_full.defvjp(_cov_full_fwd, _cov_full_bwd)


@functools.partial(jax.jit, static_argnums=0)
def _kl_batched(layout: _checks.Layout, new: Pair, old: Pair, eps: Pair) -> Pair:
    """Validated inputs -> projection; jitted so eager calls compile once per shape.

    ``new``, ``old``: ``(mean, scale)``; ``eps``: ``(eps_mean, eps_cov)``. The
    mean part per state, the covariance part on the whole batch
    (:func:`_cov_diag`, :func:`_cov_full`).
    """
    cov = _cov_diag if layout.cov_type == "diag" else _cov_full

    def states(new: Pair, old: Pair, eps: Pair) -> Pair:
        (mean, scale), (old_mean, old_scale), (eps_mean, eps_cov) = new, old, eps
        mu = jax.vmap(functools.partial(_kl_mean, cov_type=layout.cov_type))(mean, old_mean, old_scale, eps_mean)
        return mu, cov(scale, old_scale, eps_cov)

    return _checks.batched_flat(states, layout.batch_shape, new, old, eps)


def _kl_mean(
    mean: jax.Array, old_mean: jax.Array, old_scale: jax.Array, eps_mean: jax.Array, cov_type: CovType
) -> jax.Array:
    """Mean part of one state: 0.5 (mu - mu_o)^T Sigma_o^-1 (mu - mu_o) <= eps_mean."""
    return project_mean_part(mean, old_mean, old_scale, eps_mean, "mahalanobis", cov_type, factor=0.5)


def kl_projection(
    mean: ArrayLike,
    scale: ArrayLike,
    old_mean: ArrayLike,
    old_scale: ArrayLike,
    eps_mean: ArrayLike,
    eps_cov: ArrayLike,
    *,
    cov_type: Literal["diag", "full"] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """KL trust-region projection of a batch of Gaussians.

    Args:
      mean: ``[..., k]`` target (network) mean mu~.
      scale: ``[..., k]`` target std vector (diagonal) or ``[..., k, k]``
        lower Cholesky factor (full covariance).
      old_mean, old_scale: old policy, same shapes and dtype.
      eps_mean: scalar or ``[...]`` bound on 0.5 (mu - mu_o)^T Sigma_o^-1 (mu - mu_o).
      eps_cov: scalar or ``[...]`` bound on KL_Sigma(Sigma || Sigma_o).
      cov_type: "diag" or "full" (lower Cholesky); None infers it from the
        shapes (a matrix scale is "full"). A symmetric square root is not
        accepted: convert it with ``distributions.cholesky(scale, "sqrt")``.
    Returns:
      ``(projected_mean [..., k], projected_scale)`` with the scale in the input
      parameterisation (std vector or lower Cholesky). States inside a bound
      are returned unchanged in value and gradient. Differentiable (reverse
      mode) w.r.t. all inputs including the bounds; the covariance bound is met
      to about 1e-12 relative in float64 (see the module docstring for float32).
      A traced zero ``eps_cov`` returns the old scale exactly.
      NaN in a state's inputs gives NaN in its outputs; never hangs.
    Raises:
      ValueError: mismatched shapes or dtypes, a scale of the wrong rank,
        non-float inputs, non-positive or badly shaped bounds, a concrete
        ``eps_cov`` below ``bound_floor(dtype)`` (float32 1e-8, float64 1e-12),
        dtypes other than float32/float64, concrete stds (or diagonal
        entries of factors) <= 0, an unknown or
        unsupported ``cov_type``, a concrete "full" scale with non-zero entries
        above the diagonal. Under ``jit`` the values cannot be checked: entries
        above the diagonal are then ignored (read as zero), except that states
        inside the bound pass through unchanged.
    """
    new, old = (mean, scale), (old_mean, old_scale)
    layout, eps = _checks.check_projection(new, old, (eps_mean, eps_cov), cov_type, _PROJECTION)
    _checks.check_bound_floor("eps_cov", eps_cov, eps[1].dtype, _PROJECTION.what)
    return _kl_batched(layout, new, old, eps)


@functools.partial(jax.jit, static_argnums=0)
def _kl_parts_batched(
    cov_type: CovType, mean: jax.Array, scale: jax.Array, old_mean: jax.Array, old_scale: jax.Array
) -> tuple[jax.Array, jax.Array]:
    return D.kl_decomposed(mean, scale, old_mean, old_scale, cov_type)


def kl_parts(
    mean: ArrayLike,
    scale: ArrayLike,
    old_mean: ArrayLike,
    old_scale: ArrayLike,
    *,
    cov_type: Literal["diag", "full"] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The two quantities :func:`kl_projection` bounds, each ``[...]``.

    Args:
      mean, scale, old_mean, old_scale, cov_type: as in :func:`kl_projection`.
    Returns:
      ``(mean_part, cov_part)``: 0.5 (mu - mu_o)^T Sigma_o^-1 (mu - mu_o) and
      KL_Sigma(Sigma || Sigma_o), evaluated without cancellation for small
      values (:func:`tr_jax.distributions.kl_decomposed`).
    """
    layout = _checks.check_pair((mean, scale), (old_mean, old_scale), cov_type, _PARTS)
    if layout.cov_type == "full":
        scale, old_scale = jnp.tril(scale), jnp.tril(old_scale)
    return _kl_parts_batched(layout.cov_type, mean, scale, old_mean, old_scale)
