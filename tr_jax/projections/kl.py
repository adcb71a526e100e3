"""KL trust-region projection (Otto et al., ICLR 2021), solved inside JAX.

Per state, with old policy N(mu_o, Sigma_o = L_o L_o^T) and target
N(mu~, Sigma~):

* mean part: 0.5 (mu - mu_o)^T Sigma_o^-1 (mu - mu_o) <= eps_mean, the closed
  form of :mod:`tr_jax.projections.mean`;
* covariance part: minimise KL_Sigma(Sigma || Sigma~) subject to
  KL_Sigma(Sigma || Sigma_o) <= eps_cov, with
  KL_Sigma(Sigma || Sigma_o) = 0.5 [tr(Sigma_o^-1 Sigma) - k + log|Sigma_o| - log|Sigma|].
  The solution is Lambda = (eta Lambda_o + Lambda~) / (1 + eta), eta >= 0.

Reduction used here. Whiten by the old policy: W = L_o^T Lambda~ L_o has
eigenvalues lam_i (diagonal case: lam_i = s_o,i^2 / s~_i^2). With
s = 1 / (1 + eta) in (0, 1], the whitened projected precision is
P(s) = (1 - s) I + s W, linear in s, with eigenvalues p_i = 1 + s (lam_i - 1),
and the bound reads

    g(s) = 0.5 sum_i (1/p_i - 1 + log p_i) = eps,   g(0) = 0, g(1) = KL(Sigma~||Sigma_o),

g increasing in s. The root is found by a bracketed Newton iteration in
(log s, log g) (exactly linear for small bounds, where g ~ s^2 sum(d^2)/4),
started at that quadratic approximation, with a bisection fallback, a fixed
number of iterations (so it jits, vmaps and always terminates), one logarithm
per state and iteration (the log of a chunked product), and a last Newton
step on a cancellation-free evaluation of g.

Gradients: ``s`` is returned by a small ``jax.custom_vjp`` function whose
backward pass is the implicit function theorem on g(s; W) = eps,

    ds/dW   = -s B / tr(B D),    ds/deps = 2 / (s tr(B D)),
    D = W - I,  B = P^-1 D P^-1,

(diagonal: B = diag(d / p^2)); everything after s (P, its factorisation, the
output scale) is ordinary differentiable JAX, so gradients flow to the new
and old means and scales and to the bounds, and nothing differentiates an
eigendecomposition (safe for repeated eigenvalues).

NaN inputs: a NaN in any input of a state gives NaN in that state's outputs
(the affected part); the solver runs a fixed number of iterations, so it never
hangs, under ``jit`` or not.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from tr_jax import distributions as D
from tr_jax import linalg as LA
from tr_jax.projections import _checks
from tr_jax.projections.mean import project_mean_part

__all__ = ["kl_projection", "kl_parts"]

# Newton iterations of the root solve (before the final accurate step). Enough
# for machine precision with condition numbers of the whitened target up to
# 1e8, k <= 64 and 1e-8 <= eps <= KL(target || old) (see tests).
_NEWTON_ITERS = 7
# Chunk length of the products whose logarithms give sum(log p) in float64.
_LOG_CHUNK = 8
_COV_TYPES = ("diag", "full")  # the last one is the default for matrix scales


# ---------------------------------------------------------------------------
# Scalar helpers
# ---------------------------------------------------------------------------


def _sum_log(p):
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


def _g_terms(s, d):
    """Fast g(s) and g'(s) for whitened precisions p = 1 + s d (``d`` : ``[k]``)."""
    q = 1.0 / (1.0 + s * d)
    dq = d * q
    g = 0.5 * (_sum_log(1.0 + s * d) - s * jnp.sum(dq))
    gp = 0.5 * s * jnp.sum(dq * dq)
    return g, gp


def _root_s(lam, eps):
    """Solves g(s) = eps for s = 1/(1+eta) in (0, 1]; per state.

    Args:
      lam: ``[k]`` eigenvalues of the whitened target precision W.
      eps: ``[]`` covariance bound.
    Returns:
      ``[]`` s; exactly 1 where KL(target || old) <= eps (inactive), NaN if
      ``lam`` or ``eps`` is NaN.
    """
    dtype = lam.dtype
    d = lam - 1.0
    kl_target = 0.5 * jnp.sum(D.rm1_log(-d / lam))
    active = jnp.logical_not(kl_target <= eps)  # NaN counts as active -> NaN out
    log_eps = jnp.log(eps)
    sum_d2 = jnp.sum(d * d)
    s0 = 2.0 * jnp.sqrt(eps / jnp.where(sum_d2 > 0, sum_d2, 1.0))
    s0 = jnp.clip(s0, jnp.finfo(dtype).tiny, 1.0)

    def newton(_, carry):
        s, lo, hi = carry
        g, gp = _g_terms(s, d)
        above = g > eps
        hi = jnp.where(above, s, hi)
        lo = jnp.where(above, lo, s)
        # Newton on log g as a function of log s.
        step = (jnp.log(g) - log_eps) * g / (s * gp)
        sn = s * jnp.exp(-step)
        ok = (sn >= lo) & (sn <= hi)  # False for NaN; closed: a converged s sits on an end
        return jnp.where(ok, sn, 0.5 * (lo + hi)), lo, hi

    zero, one = jnp.zeros((), dtype), jnp.ones((), dtype)
    s, lo, hi = jax.lax.fori_loop(0, _NEWTON_ITERS, newton, (s0, zero, one), unroll=True)

    # Final Newton step on the cancellation-free g.
    q = 1.0 / (1.0 + s * d)
    dq = d * q
    g = 0.5 * jnp.sum(D.rm1_log(-s * dq))
    gp = 0.5 * s * jnp.sum(dq * dq)
    sn = s - (g - eps) / gp
    s = jnp.where(jnp.isfinite(sn) & (sn > 0) & (sn <= 1), sn, s)

    s = jnp.where(active, s, one)
    return jnp.where(jnp.isnan(kl_target) | jnp.isnan(eps), jnp.nan, s)


# ---------------------------------------------------------------------------
# s with implicit gradients
# ---------------------------------------------------------------------------


@jax.custom_vjp
def _s_diag(lam, eps):
    """s for a diagonal state: ``lam`` ``[k]`` = s_o^2 / s~^2, ``eps`` ``[]``."""
    return _root_s(lam, eps)


def _s_diag_fwd(lam, eps):
    s = _root_s(lam, eps)
    return s, (lam, s)


def _s_diag_bwd(res, ct):
    lam, s = res
    active = s < 1.0
    d = lam - 1.0
    q = 1.0 / (1.0 + s * d)
    a = d * q * q  # B = diag(d / p^2)
    denom = jnp.where(active, jnp.sum(d * a), 1.0)
    ct_lam = jnp.where(active, -ct * s / denom, 0.0) * a
    ct_eps = jnp.where(active, 2.0 * ct / (s * denom), 0.0)
    return ct_lam, ct_eps


_s_diag.defvjp(_s_diag_fwd, _s_diag_bwd)


@jax.custom_vjp
def _s_full(w, eps):
    """s for a full state: ``w`` ``[k, k]`` whitened target precision, ``eps`` ``[]``."""
    return _root_s(LA.eigvalsh(w), eps)


def _s_full_fwd(w, eps):
    s = _s_full(w, eps)
    return s, (w, s)


def _s_full_bwd(res, ct):
    w, s = res
    k = w.shape[-1]
    eye = jnp.eye(k, dtype=w.dtype)
    active = s < 1.0
    dmat = w - eye
    p = (1.0 - s) * eye + s * w
    chol = LA.cholesky(p)
    # X = C^-1 D C^-T, B = P^-1 D P^-1 = C^-T X C^-1, tr(B D) = ||X||_F^2.
    y = LA.solve_lower(chol, dmat)
    x = LA.solve_lower(chol, y.T)
    z = LA.solve_lower(chol, x, transpose=True)
    b = LA.solve_lower(chol, z.T, transpose=True)
    denom = jnp.where(active, jnp.sum(x * x), 1.0)
    b = 0.5 * (b + b.T)
    ct_w = jnp.where(active, -ct * s / denom, 0.0) * b
    ct_eps = jnp.where(active, 2.0 * ct / (s * denom), 0.0)
    return ct_w, ct_eps


_s_full.defvjp(_s_full_fwd, _s_full_bwd)


# ---------------------------------------------------------------------------
# Per-state projections
# ---------------------------------------------------------------------------


def _cov_diag(std, old_std, eps):
    """``[k]`` projected std of one diagonal state."""
    lam = (old_std / std) ** 2
    s = _s_diag(lam, eps)
    active = jnp.logical_not(s >= 1.0)  # s == 1 exactly when inactive; NaN -> NaN out
    s_safe = jnp.where(active, s, 1.0)
    proj = old_std * jax.lax.rsqrt(1.0 + s_safe * (lam - 1.0))
    return jnp.where(active, proj, std)


def _cov_full(chol, old_chol, eps):
    """``[k, k]`` projected lower Cholesky factor of one full state."""
    k = chol.shape[-1]
    eye = jnp.eye(k, dtype=chol.dtype)
    old_chol = jnp.tril(old_chol)  # (solve_lower reads only the lower triangle of its matrix argument)
    m = LA.solve_lower(chol, old_chol)  # L~^-1 L_o
    w = m.T @ m  # whitened target precision L_o^T Lambda~ L_o
    s = _s_full(w, eps)
    active = jnp.logical_not(s >= 1.0)
    s_safe = jnp.where(active, s, 1.0)
    p = (1.0 - s_safe) * eye + s_safe * w  # whitened projected precision
    # P = U U^T with U upper (Cholesky of the flipped matrix); then
    # Sigma = L_o P^-1 L_o^T = (L_o U^-T)(L_o U^-T)^T and L_o U^-T is lower.
    u = LA.cholesky(p[::-1, ::-1])[::-1, ::-1]
    proj = LA.solve_lower(u.T, old_chol.T, transpose=True).T
    proj = jnp.tril(proj)
    return jnp.where(active, proj, chol)


@functools.partial(jax.jit, static_argnums=0)
def _kl_batched(layout, mean, scale, old_mean, old_scale, eps_mean, eps_cov):
    """Validated inputs -> projection; jitted so eager calls compile once per shape."""
    diag = layout.cov_type == "diag"
    cov = _cov_diag if diag else _cov_full

    def state(mean, scale, old_mean, old_scale, eps_mean, eps_cov):
        mu = project_mean_part(mean, old_mean, old_scale, eps_mean, "mahalanobis", layout.cov_type, factor=0.5)
        return mu, cov(scale, old_scale, eps_cov)

    return _checks.batched(state, layout.batch_shape, mean, scale, old_mean, old_scale, eps_mean, eps_cov)


def kl_projection(mean, scale, old_mean, old_scale, eps_mean, eps_cov, *, cov_type=None):
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
      NaN in a state's inputs gives NaN in its outputs; never hangs.
    Raises:
      ValueError: mismatched shapes or dtypes, a scale of the wrong rank,
        non-float inputs, non-positive or badly shaped bounds, an unknown or
        unsupported ``cov_type``, a concrete "full" scale with non-zero entries
        above the diagonal. Under ``jit`` the values cannot be checked: entries
        above the diagonal are then ignored (read as zero), except that states
        inside the bound pass through unchanged.
    """
    layout, em, ec = _checks.check_projection(
        mean, scale, old_mean, old_scale, eps_mean, eps_cov, cov_type, _COV_TYPES, "full", "kl_projection"
    )
    return _kl_batched(layout, mean, scale, old_mean, old_scale, em, ec)


@functools.partial(jax.jit, static_argnums=0)
def _kl_parts_batched(cov_type, mean, scale, old_mean, old_scale):
    return D.kl_decomposed(mean, scale, old_mean, old_scale, cov_type)


def kl_parts(mean, scale, old_mean, old_scale, *, cov_type=None):
    """The two quantities :func:`kl_projection` bounds, each ``[...]``.

    Args:
      mean, scale, old_mean, old_scale, cov_type: as in :func:`kl_projection`.
    Returns:
      ``(mean_part, cov_part)``: 0.5 (mu - mu_o)^T Sigma_o^-1 (mu - mu_o) and
      KL_Sigma(Sigma || Sigma_o), evaluated without cancellation for small
      values (:func:`tr_jax.distributions.kl_decomposed`).
    """
    layout = _checks.check_pair(mean, scale, old_mean, old_scale, cov_type, _COV_TYPES, "full", "kl_parts")
    if layout.cov_type == "full":
        scale, old_scale = jnp.tril(scale), jnp.tril(old_scale)
    return _kl_parts_batched(layout.cov_type, mean, scale, old_mean, old_scale)
