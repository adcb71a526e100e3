"""Tests of the KL trust-region projection (tr_jax/projections/kl.py) specific to its solver: the bound over
action dimensions and ill-conditioned, tiny, huge and nearly-met cases, optimality, the original C++ solver's
outputs, the blocked solve. The contract every projection shares (bounds, pass-through, zero bound, diagonal
matrices, bad input, NaN, gradients, batching) is tested in test_contract.py.

float64 tests run inside ``jax.enable_x64(True)`` (the x64 fixture of conftest.py) so the
global x64 flag is never flipped for other modules.
"""

from __future__ import annotations

import os

import _oracle
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tr_jax import linalg as LA
from tr_jax.projections.kl import kl_parts, kl_projection

# The original C++ solver's outputs on the first 64 of 256 random states (tests/projections/data; its README entry
# says how they were made); shipped with the tests, so these cases run in every clone
REF_PATH = os.path.join(os.path.dirname(__file__), "data", "kl_reference_cases.npz")
F32_RTOL = 5e-4  # float32: bound met to this relative accuracy for eps >= 1e-4 (measured ~2e-5 worst)


pytestmark = pytest.mark.usefixtures("x64")  # tests/conftest.py: float64 inside each test only


@pytest.fixture(scope="module")
def proj():
    return jax.jit(kl_projection)


@pytest.fixture(scope="module")
def parts():
    return jax.jit(kl_parts)


# ---------------------------------------------------------------------------
# Random problems
# ---------------------------------------------------------------------------


def random_spd(rng, k, cond):
    """SPD matrix with eigenvalues log-spread over [1/sqrt(cond), sqrt(cond)]."""
    q, _ = np.linalg.qr(rng.normal(size=(k, k)))
    ev = np.exp(rng.uniform(-0.5, 0.5, size=k) * np.log(cond))
    return (q * ev) @ q.T


def make_full(rng, n, k, cond=1e4, inside_frac=0.2):
    """Old and target (mean, Cholesky) batches; target = M Sigma_o M^T, M ill-conditioned."""
    old = np.stack([random_spd(rng, k, cond) for _ in range(n)])
    tgt = []
    for i in range(n):
        if rng.random() < inside_frac:
            m = np.eye(k) + 1e-4 * rng.normal(size=(k, k)) / np.sqrt(k)
        else:
            m = np.linalg.cholesky(random_spd(rng, k, rng.uniform(1.0, 1e2)))
        tgt.append(m @ old[i] @ m.T)
    tgt = np.stack(tgt)
    om = rng.normal(size=(n, k))
    m = om + rng.normal(size=(n, k)) * np.where(rng.random((n, 1)) < inside_frac, 1e-3, 1.0)
    return m, np.linalg.cholesky(tgt), om, np.linalg.cholesky(old)


def make_diag(rng, n, k, spread=2.0, inside_frac=0.2):
    """Old std log-uniform over 10^[-spread, spread]; target ratio 10^[-1, 1] (1e-3 for some)."""
    old = np.exp(rng.uniform(-spread, spread, size=(n, k)) * np.log(10) / 2)
    ratio = np.exp(rng.uniform(-1, 1, size=(n, k)) * np.log(10) / 2)
    ratio = np.where(rng.random((n, 1)) < inside_frac, 1.0 + 1e-3 * (ratio - 1), ratio)
    om = rng.normal(size=(n, k)) * old
    m = om + rng.normal(size=(n, k)) * old * np.where(rng.random((n, 1)) < inside_frac, 1e-3, 1.0)
    return m, old * ratio, om, old


def random_eps(rng, n, lo=1e-6, hi=1.0):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))


# ---------------------------------------------------------------------------
# Bound is met; pass-through inside the region
# ---------------------------------------------------------------------------


def _check_bounds(proj, parts, args, eps_m, eps_c, rtol):
    m, s, om, os_ = args
    pm, ps = proj(m, s, om, os_, eps_m, eps_c)
    mp0, cp0 = parts(m, s, om, os_)
    mp, cp = parts(pm, ps, om, os_)
    mp0, cp0, mp, cp = map(np.asarray, (mp0, cp0, mp, cp))
    act_c, act_m = cp0 > eps_c, mp0 > eps_m
    assert np.all(np.isfinite(ps)) and np.all(np.isfinite(pm))
    np.testing.assert_allclose(cp[act_c], eps_c[act_c], rtol=rtol)
    np.testing.assert_allclose(mp[act_m], eps_m[act_m], rtol=rtol)
    # inactive: exactly unchanged
    np.testing.assert_array_equal(np.asarray(ps)[~act_c], np.asarray(s)[~act_c])
    np.testing.assert_array_equal(np.asarray(pm)[~act_m], np.asarray(m)[~act_m])
    return act_c.sum(), (~act_c).sum()


@pytest.mark.parametrize("k", [1, 2, 3, 6, 17, 32])
def test_bound_met_diag_float64(proj, parts, k):
    rng = np.random.default_rng(k)
    n = 96
    args = make_diag(rng, n, k, spread=4.0)
    n_act, n_in = _check_bounds(proj, parts, args, random_eps(rng, n), random_eps(rng, n), rtol=1e-9)
    assert n_act > 20 and n_in > 5


# k = 32 is covered for diagonal states; for full ones it adds ~4 min of CI compile time
# (the small-matrix routines unroll over k) and nothing k = 17 does not exercise.
@pytest.mark.parametrize("k", [1, 2, 3, 6, 17])
def test_bound_met_full_float64(proj, parts, k):
    rng = np.random.default_rng(100 + k)
    n = 48
    args = make_full(rng, n, k, cond=1e4)
    n_act, n_in = _check_bounds(proj, parts, args, random_eps(rng, n), random_eps(rng, n), rtol=1e-9)
    assert n_act > 10 and n_in >= 1


def test_bound_met_when_newton_lands_an_ulp_outside_its_bracket(proj, parts):
    """Regression: a converged Newton iterate sits on an end of its bracket, and
    rounding of exp/log (which depends on how XLA fuses the batch) can put the
    next Newton point an ulp outside. The solver used to bisect then, jumping
    to the middle of a wide bracket that the remaining iterations could not
    undo: on this draw 31 of 20,000 states missed their bound by up to 15x."""
    rng = np.random.default_rng(0)
    n, k = 20000, 17
    old = np.exp(rng.normal(size=(n, k)))
    std = old * np.exp(rng.normal(size=(n, k)))  # variance ratios e^(2z): condition numbers up to ~1e7
    eps = np.exp(rng.uniform(np.log(1e-8), 0.0, n))
    mean = np.zeros((n, k))
    _, ps = proj(mean, std, mean, old, 1.0, eps)
    _, c0 = parts(mean, std, mean, old)
    _, c1 = parts(mean, ps, mean, old)
    active = np.asarray(c0) > eps
    assert active.sum() > 19000
    np.testing.assert_allclose(np.asarray(c1)[active], eps[active], rtol=1e-9)


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_bound_met_just_below_the_targets_kl(proj, parts, kind):
    """eps a hair below KL(target || old): the root sits just under s = 1, where
    Newton from below overshoots past the bracket every time. Bisection then
    converged only linearly (2% short of the bound after the last iteration
    at eps = KL (1 - 1e-10)); the secant fallback lands on the root. With
    eps a hair above KL every state is inside: unchanged."""
    rng = np.random.default_rng(3)
    n, k = (2000, 17) if kind == "diag" else (200, 6)
    args = make_diag(rng, n, k, inside_frac=0.0) if kind == "diag" else make_full(rng, n, k, cond=1e3, inside_frac=0.0)
    m, s, om, os_ = args
    _, kl = parts(m, s, om, os_)
    kl = np.asarray(kl)
    for f in (1 - 1e-10, 1 - 1e-6, 1 - 1e-3):
        eps = kl * f
        _, ps = proj(m, s, om, os_, 1e9, eps)
        _, c1 = parts(m, ps, om, os_)
        np.testing.assert_allclose(np.asarray(c1), eps, rtol=1e-9, err_msg=f"eps = KL * {f}")
    _, ps = proj(m, s, om, os_, 1e9, kl * (1 + 1e-12))
    np.testing.assert_array_equal(np.asarray(ps), np.asarray(s))


def _cov_part_f64(parts, ps, os_):
    """KL_Sigma(projected || old) of float32 results, evaluated in float64."""
    zeros = np.zeros(os_.shape[:2])
    return np.asarray(parts(zeros, np.asarray(ps, np.float64), zeros, np.asarray(os_, np.float64))[1])


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_tiny_bound_met_float32(proj, parts, kind):
    """At eps_cov = 1e-8 (the float32 floor) the covariance part stays within 1%
    of the bound (a g that cancels in float32 overshoots it by a factor 1.7e6, diag)."""
    rng = np.random.default_rng(3)
    n, k = 256, 6
    args = make_diag(rng, n, k, inside_frac=0.0) if kind == "diag" else make_full(rng, n, k, cond=1e2, inside_frac=0.0)
    m, s, om, os_ = (np.asarray(a, np.float32) for a in args)
    eps = np.float32([1e-8, 1e-7, 1e-6, 1e-8])[np.arange(n) % 4]
    ratio = _cov_part_f64(parts, proj(m, s, om, os_, 0.03, eps)[1], os_) / eps
    assert np.all(np.abs(ratio - 1.0) <= 1e-2), (ratio.min(), ratio.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bound_below_the_floor_raises(dtype):
    from tr_jax.projections import bound_floor

    m, s, om, os_ = (np.asarray(a, dtype) for a in make_diag(np.random.default_rng(0), 4, 3))
    floor = bound_floor(dtype)
    kl_projection(m, s, om, os_, 0.1, floor)
    with pytest.raises(ValueError, match="eps_cov = .* is below"):
        kl_projection(m, s, om, os_, 0.1, floor / 10)


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_large_std_ratios_float32(proj, parts, kind):
    """A target std 1e4 (and up to 1e8, or 1e-8) times the old one: the bound is
    met in float32, without the NaN of p = 1 + s d cancelling to 0."""
    ratios = np.array([1e4, 1e6, 1e8, 1e-4, 1e-8, 3.0], np.float64)
    n, k = ratios.size, 3
    old = np.array([1.0, 0.5, 2.0])
    std = np.stack([old * np.array([r, 1.0, 1.5]) for r in ratios])
    os_ = np.broadcast_to(old, (n, k))
    if kind == "full":  # Cholesky factors that are not diagonal
        low = np.tril(np.full((k, k), 0.2), -1)
        std, os_ = (np.eye(k) * x[:, None, :] + low for x in (std, os_))
    m, s, om, o = (np.asarray(a, np.float32) for a in (np.zeros((n, k)), std, np.zeros((n, k)), os_))
    eps = 0.05
    ps = proj(m, s, om, o, 0.1, eps)[1]
    assert np.all(np.isfinite(np.asarray(ps)))
    np.testing.assert_allclose(_cov_part_f64(parts, ps, o), eps, rtol=1e-4)


def _large_bound_states(kind, dtype):
    """Whitened target eigenvalues lam = (1/r^2, 1, 1/2.25) for r in 1e2..1e6
    (a target std r times the old one along one direction) times bounds eps in
    0.1..100 (at most KL(target || old)); "full": a rotated basis and an old
    factor that is not diagonal. Returns ``(std, old_std, eps)``, 16 states, k = 3."""
    rng = np.random.default_rng(11)
    k = 3
    rs, epss = np.repeat([1e2, 1e3, 1e4, 1e6], 4), np.tile([0.1, 1.0, 10.0, 100.0], 4)
    old_std = np.exp(rng.uniform(-1, 1, (rs.size, k)))
    if kind == "diag":
        return old_std * np.stack([rs, np.ones_like(rs), np.full_like(rs, 1.5)], -1), old_std, epss
    old = np.eye(k) * old_std[:, None, :] + np.tril(rng.normal(size=(rs.size, k, k)) * 0.3, -1)
    q = np.linalg.qr(rng.normal(size=(rs.size, k, k)))[0]
    inv_lam = np.stack([rs**2, np.ones_like(rs), np.full_like(rs, 2.25)], -1)
    target = old @ (q * inv_lam[:, None, :]) @ np.swapaxes(q, 1, 2) @ np.swapaxes(old, 1, 2)
    return np.linalg.cholesky(target), old, epss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["diag", "full"])
def test_large_bounds_with_large_std_ratios(proj, parts, kind, dtype):
    """Bounds up to 100 with target stds up to 1e6 times the old ones (whitened
    condition numbers up to 1e12): Newton started at s = 1 next to the pole of g
    (p = 1 + s d -> 0) stopped on a tiny step in log s; the cov part was 10.27
    at eps = 10, r = 1e3 (float64), 5e7 (the target itself) at r = 1e4
    (float32). Now met from both sides, with finite gradients."""
    std, old, eps = _large_bound_states(kind, np.float64)
    zeros = np.zeros(std.shape[:2])
    eps = np.minimum(eps, np.asarray(parts(zeros, std, zeros, old)[1]))
    s, o, e, z = (np.asarray(a, dtype) for a in (std, old, eps, zeros))
    kl0 = _cov_part_f64(parts, s, o)
    ps = proj(z, s, z, o, 0.1, e)[1]
    cov = _cov_part_f64(parts, ps, o)
    tol = 1e-9 if dtype == np.float64 else F32_RTOL
    e64 = e.astype(np.float64)
    assert np.all(kl0 > e64)
    assert np.all(cov <= e64 * (1 + tol)), (cov / e64).max()
    assert np.all(cov >= e64 * (1 - tol)), (cov / e64).min()
    ct = np.asarray(np.random.default_rng(1).normal(size=s.shape), dtype)
    grads = jax.grad(lambda *a: jnp.sum(ct * proj(*a)[1]), argnums=(1, 3, 5))(z, s, z, o, 0.1, e)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def test_bound_out_of_float32_reach_is_kept_not_the_target(proj, parts):
    """Float32, target std 1e4 times the old one (KL 5e7): no s < 1 reaches
    bounds between about 8e6 and the KL (p_min >= 2^-24); the projection stays
    below the bound instead of returning the target (s = 1: cov part 1.11 eps)."""
    old = np.ones((2, 3))
    std = old * np.array([1e4, 1.0, 1.5])
    z = np.zeros((2, 3), np.float32)
    kl = _cov_part_f64(parts, std, old)
    eps = np.float32(kl * np.array([0.9, 1 - 1e-6]))
    cov = _cov_part_f64(parts, proj(z, np.float32(std), z, np.float32(old), 0.1, eps)[1], old)
    assert np.all(cov <= eps), cov / eps


# ---------------------------------------------------------------------------
# Optimality against a generic constrained solver
# ---------------------------------------------------------------------------


def _kl_cov(sig, sig_o):
    """KL_Sigma(Sigma || Sigma_o) in numpy."""
    k = sig.shape[0]
    return 0.5 * (np.trace(np.linalg.solve(sig_o, sig)) - k + np.linalg.slogdet(sig_o)[1] - np.linalg.slogdet(sig)[1])


def _kl_kkt(sig, sig_t, sig_o, eps):
    """Optimality of Sigma for min KL(Sigma||Sigma~) s.t. KL(Sigma||Sigma_o) <= eps, with
    Sigma~ outside the bound, without an external solver (float64): the precision is the
    convex combination Lambda = (eta Lambda_o + Lambda~) / (1 + eta) with eta >= 0 (the
    stationarity condition of the Lagrangian) and the bound is active. Returns eta."""
    lam, lam_t, lam_o = (np.linalg.inv(a) for a in (sig, sig_t, sig_o))
    d = lam - lam_o
    eta = np.sum((lam_t - lam) * d) / np.sum(d * d)  # least-squares multiplier
    residual = (1 + eta) * lam - eta * lam_o - lam_t
    assert eta >= 0, f"negative multiplier eta={eta}"
    assert np.linalg.norm(residual) <= 1e-9 * (1 + eta) * np.linalg.norm(lam), (
        f"projected precision is not (eta Lambda_o + Lambda~)/(1+eta): residual {np.linalg.norm(residual):.3g}"
    )
    np.testing.assert_allclose(_kl_cov(sig, sig_o), eps, rtol=1e-9, err_msg="KL bound not active")
    return eta


def _scipy_projection(sig_t, sig_o, eps, diag, ours_objective):
    """min KL(Sigma||Sigma~) s.t. KL(Sigma||Sigma_o) <= eps with scipy (tests/projections/_oracle.py),
    independent of kl.py; judged by feasibility and objective, never by scipy's flag."""
    k = sig_t.shape[0]
    idx = np.tril_indices(k)

    def unpack(x):
        if diag:
            return np.diag(np.exp(x))
        l = np.zeros((k, k))
        l[idx] = x
        l[np.diag_indices(k)] = np.exp(np.diag(l))
        return l @ l.T

    def pack(sig):
        if diag:
            return np.log(np.diag(sig))
        l = np.linalg.cholesky(sig)
        return np.where(idx[0] == idx[1], np.log(np.abs(l[idx]) + 1e-300), l[idx])

    # starts: the old covariance (feasible) and the midpoint of old and target precisions
    mid = np.linalg.inv(0.5 * (np.linalg.inv(sig_o) + np.linalg.inv(sig_t)))
    ref = _oracle.solve(
        lambda x: _kl_cov(unpack(x), sig_t),
        lambda x: 1.0 - _kl_cov(unpack(x), sig_o) / eps,
        starts=[pack(sig_o), pack(mid)],
        good_enough=lambda f: f <= ours_objective * (1 + 1e-6) + 1e-12,
        feasible_tol=1e-8,
    )
    return ref, (None if ref.x is None else unpack(ref.x))


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_optimal_vs_scipy(proj, kind):
    rng = np.random.default_rng(11)
    n, k = 12, 3
    m, s, om, os_ = (
        make_diag(rng, n, k, inside_frac=0.0) if kind == "diag" else make_full(rng, n, k, cond=10.0, inside_frac=0.0)
    )
    eps = random_eps(rng, n, 1e-3, 0.3)
    _, ps = proj(m, s, om, os_, 1.0, eps)
    ps = np.asarray(ps)
    compared = 0
    for i in range(n):
        if kind == "diag":
            sig_t, sig_o, sig = np.diag(s[i] ** 2), np.diag(os_[i] ** 2), np.diag(ps[i] ** 2)
        else:
            sig_t, sig_o, sig = s[i] @ s[i].T, os_[i] @ os_[i].T, ps[i] @ ps[i].T
        if _kl_cov(sig_t, sig_o) <= eps[i]:
            continue
        _kl_kkt(sig, sig_t, sig_o, eps[i])  # needs no external solver
        ours = _kl_cov(sig, sig_t)
        ref, ref_sig = _scipy_projection(sig_t, sig_o, eps[i], kind == "diag", ours)
        assert ref_sig is not None, f"state {i}: no feasible reference point: {ref.describe()}"
        # no feasible point the reference found is better than ours
        assert ours <= ref.objective * (1 + 1e-6) + 1e-12, (
            f"state {i}: the reference found a better feasible point: {ref.describe()}"
        )
        if not ref.reached:
            _oracle.warn_unreached(f"{kind} state {i}", ref)
            continue
        np.testing.assert_allclose(
            sig, ref_sig, rtol=2e-4, atol=2e-4 * np.abs(ref_sig).max(), err_msg=f"state {i}: {ref.describe()}"
        )
        compared += 1
    assert compared >= 8, f"the reference solver reached our optimum on only {compared} states"


def test_kkt_check_rejects_a_wrong_projection():
    """The KKT check catches the classic mistake of interpolating covariances
    instead of precisions (which also meets the bound, at a different eta)."""
    rng = np.random.default_rng(2)
    sig_o = random_spd(rng, 3, 10.0)
    l = np.linalg.cholesky(random_spd(rng, 3, 30.0))
    sig_t = l @ sig_o @ l.T
    eps = 0.2 * _kl_cov(sig_t, sig_o)
    lo, hi = 0.0, 1.0  # bisection on the covariance interpolation weight so that the bound is met
    for _ in range(200):
        t = 0.5 * (lo + hi)
        lo, hi = (t, hi) if _kl_cov((1 - t) * sig_o + t * sig_t, sig_o) < eps else (lo, t)
    wrong = (1 - lo) * sig_o + lo * sig_t
    np.testing.assert_allclose(_kl_cov(wrong, sig_o), eps, rtol=1e-9)
    with pytest.raises(AssertionError, match="residual"):
        _kl_kkt(wrong, sig_t, sig_o, eps)


# ---------------------------------------------------------------------------
# The parts
# ---------------------------------------------------------------------------


def test_kl_parts_matches_direct_formula(parts):
    rng = np.random.default_rng(13)
    m, s, om, os_ = make_full(rng, 10, 4, cond=100.0)
    mp, cp = parts(m, s, om, os_)
    for i in range(10):
        so = os_[i] @ os_[i].T
        d = m[i] - om[i]
        np.testing.assert_allclose(mp[i], 0.5 * d @ np.linalg.solve(so, d), rtol=1e-10)
        np.testing.assert_allclose(cp[i], _kl_cov(s[i] @ s[i].T, so), rtol=1e-8, atol=1e-14)


# ---------------------------------------------------------------------------
# The original C++ solver's outputs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REF_PATH))  # no skip: a clone without the file fails here


@pytest.mark.parametrize("eps", ["0.001", "0.05"])
def test_reference_diag(reference, eps):
    p = f"diag_eps{eps}_"
    ov, tv, pv, e, dv, gv, pr = (
        reference[p + n] for n in ("old_var", "target_var", "proj_var", "eps", "d_var", "grad_target_var", "projected")
    )
    z = jnp.zeros(ov.shape)

    def f(tv):
        return kl_projection(z, jnp.sqrt(tv), z, jnp.sqrt(ov), 1.0, e)[1] ** 2

    out, vjp = jax.vjp(f, jnp.asarray(tv))
    (g,) = vjp(jnp.asarray(dv))
    _, cp0 = kl_parts(z, jnp.sqrt(tv), z, jnp.sqrt(ov))
    np.testing.assert_array_equal(np.asarray(cp0) > e, pr)
    np.testing.assert_allclose(out, pv, rtol=1e-4)
    np.testing.assert_allclose(g, gv, rtol=1e-4, atol=1e-4 * np.abs(gv).max())


@pytest.mark.parametrize("eps", ["0.001", "0.05"])
def test_reference_full(reference, eps):
    p = f"full_eps{eps}_"
    tc, pc, e, dc, gc, ol, pr = (
        reference[p + n] for n in ("target_cov", "proj_cov", "eps", "d_cov", "grad_target_cov", "old_chol", "projected")
    )
    z = jnp.zeros(ol.shape[:2])

    def f(tc):
        tc = 0.5 * (tc + jnp.swapaxes(tc, -1, -2))
        chol = kl_projection(z, LA.cholesky(tc), z, jnp.asarray(ol), 1.0, e)[1]  # batched: no LAPACK
        return chol @ jnp.swapaxes(chol, -1, -2)

    out, vjp = jax.vjp(f, jnp.asarray(tc))
    (g,) = vjp(jnp.asarray(dc))
    _, cp0 = kl_parts(z, reference[p + "target_chol"], z, ol)
    np.testing.assert_array_equal(np.asarray(cp0) > e, pr)
    np.testing.assert_allclose(out, pc, rtol=1e-4, atol=1e-4 * np.abs(pc).max())
    np.testing.assert_allclose(g, gc, rtol=1e-4, atol=1e-4 * np.abs(gc).max())


# ---------------------------------------------------------------------------
# States in blocks (CPU) and the hand-written VJPs of the covariance parts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_blocked_solve_matches_one_block(monkeypatch, kind):
    """On CPU the covariance parts solve their states in blocks (``lax.map``
    with a remainder block) and have hand-written VJPs for the whole batch.
    Blocks of 8 (diag) or 16 (full) states over 37 give the values and the
    gradients w.r.t. all three inputs (scale, old scale, bound) of a single
    block, active and inactive states, also under vmap (e.g. seeds vmapped
    around a training step)."""
    from tr_jax.projections import kl as K

    rng = np.random.default_rng(11)
    n, k = 37, (5 if kind == "diag" else 3)
    if kind == "diag":
        _, s, _, os_ = make_diag(rng, n, k, inside_frac=0.3)
        cov, knob, small = K._cov_diag, "_BLOCK", 8
    else:
        _, s, _, os_ = make_full(rng, n, k, cond=1e3, inside_frac=0.3)
        cov, knob, small = K._cov_full, "_BLOCK_NUMBERS_FULL", 1  # -> blocks of 16
    eps = random_eps(rng, n, lo=1e-6, hi=0.3)
    w = rng.normal(size=s.shape)
    loss = lambda *a: jnp.sum(w * cov(*a))  # noqa: E731

    def run(eps):  # a fresh trace, so the block size in effect is read again
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(s, os_, eps)

    monkeypatch.setattr(K, knob, 10**9)
    one_value, one_grads = run(eps)
    _, two_grads = run(2.0 * eps)
    monkeypatch.setattr(K, knob, small)
    value, grads = run(eps)
    np.testing.assert_allclose(value, one_value, rtol=1e-12)
    for g, g1 in zip(grads, one_grads):
        np.testing.assert_allclose(g, g1, rtol=1e-9, atol=1e-12)
    z = np.zeros(s.shape[:2])
    _, c0 = kl_parts(z, s, z, os_)
    inside = np.asarray(c0) <= eps
    assert 0 < inside.sum() < n  # both kinds of states are in the batch
    np.testing.assert_array_equal(np.asarray(grads[2])[inside], 0.0)
    vmapped = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(None, None, 0)))
    for g, g1, g2 in zip(vmapped(s, os_, np.stack([eps, 2.0 * eps])), one_grads, two_grads):
        np.testing.assert_allclose(g, np.stack([g1, g2]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_blocks_only_on_cpu(kind):
    """The blocks are for CPU caches: the cuda and tpu programs of the same
    KL projection (fwd+bwd, more states than one block) solve all states in
    one loop, the CPU program loops over blocks around it."""
    from tr_jax.projections import kl as K

    k = 3
    n = (K._BLOCK if kind == "diag" else K._block_full(k)) + 5
    x = jnp.ones((n, k))
    scale = x if kind == "diag" else jnp.broadcast_to(jnp.eye(k), (n, k, k))

    def loss(m, s, om, os_):
        pm, ps = kl_projection(m, s, om, os_, 1e-3, 1e-3)
        return jnp.sum(pm) + jnp.sum(ps)

    fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
    loops = {
        p: jax.export.export(fn, platforms=[p])(x, scale, x, scale).mlir_module().count("stablehlo.while")
        for p in ("cpu", "cuda", "tpu")
    }
    if kind == "diag":
        assert loops["cuda"] == loops["tpu"] == 1 and loops["cpu"] > 1, loops
    else:  # (full: also the loops of the small-matrix routines)
        assert loops["cuda"] == loops["tpu"] and loops["cpu"] > loops["cuda"], loops
