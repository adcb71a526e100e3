"""Closed-form projections (W2, Frobenius, entropy): correctness.

Random cases (k from 1 to 32, old covariances with condition numbers up to 1e4,
new = perturbed old, ~1/8 of states equal to the old Gaussian, ~1/8 a scaled
copy) are checked against independent numpy distances, an independent
constrained solver (scipy SLSQP). The contract every projection shares (bounds on general
inputs, pass-through values and gradients, zero bound, diagonal matrices, bad input, NaN,
gradients against finite differences, batching) is tested in test_contract.py.
"""

from __future__ import annotations

import functools
import zlib

import _oracle
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from tr_jax import projections as P

K_LIST = (1, 2, 5, 17, 32)
N_PER_K = 64
CONFIGS = [(proj, diag, prec) for proj in ("w2", "frob") for diag in (True, False) for prec in (True, False)]
CONFIG_IDS = [f"{p}-{'diag' if d else 'full'}-{'prec' if s else 'eucl'}" for p, d, s in CONFIGS]
# float32 (measured in float64 on the float32 outputs): the relative error of an
# active bounded part is limited by the rounding of the output itself, roughly
# ulp(|x|) / |x - x_o| for a projected step x - x_o. With step = |x - x_o| / max|x_o|
# (x the mean or the scale factor), measured over these cases (cond to 1e4):
# err * step <= 3.1e-5 (full, scale_prec; <= 1e-5 elsewhere), and err <= 1.3e-4
# where step >= 1e-2 (<= 6e-5 except the diagonal W2 mean, whose Mahalanobis
# weights make the Euclidean step a loose proxy). Tiny steps (down to 1e-4
# here) give errors up to ~7e-2 in float32: use float64 for tiny trust regions.
F32_TOL_SCALED = 1e-4
F32_TOL_BIG_STEP = 5e-4

# Tests compile many small programs; XLA's backend optimisations cost more time
# than they save here, so most test programs are compiled without them.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def tjit(fn, **kw):
    return jax.jit(fn, compiler_options=_FAST_COMPILE, **kw)


_FNS = {"w2": P.wasserstein_projection, "frob": P.frobenius_projection}
_JIT = {name: tjit(fn, static_argnames=("scale_prec",)) for name, fn in _FNS.items()}
_PARTS = {
    "w2": tjit(P.wasserstein_parts, static_argnames=("scale_prec",)),
    "frob": tjit(P.frobenius_parts, static_argnames=("scale_prec",)),
}


# ----------------------------------------------------------------------------
# Independent numpy reference (float64)


def _mT(x):
    return np.swapaxes(x, -1, -2)


def _np_cov(scale, proj, diag):
    if diag:
        return scale**2
    return scale @ _mT(scale) if proj == "frob" else scale @ scale


def ref_parts(proj, diag, prec, mean, scale, old_mean, old_scale):
    """(mean_part, cov_part) in numpy float64, written independently of tr_jax."""
    mean, scale, old_mean, old_scale = (np.asarray(a, np.float64) for a in (mean, scale, old_mean, old_scale))
    diff = mean - old_mean
    if not prec:
        mean_part = np.sum(diff**2, -1)
    elif diag:
        mean_part = np.sum(diff**2 / old_scale**2, -1)
    else:
        old_cov = _np_cov(old_scale, proj, diag)
        mean_part = np.einsum("...i,...i->...", diff, np.linalg.solve(old_cov, diff[..., None])[..., 0])
    if proj == "frob":
        cov_part = np.sum(
            (_np_cov(scale, proj, diag) - _np_cov(old_scale, proj, diag)) ** 2, axis=-1 if diag else (-2, -1)
        )
    else:
        d = scale - old_scale
        if prec:
            d = d / old_scale if diag else np.linalg.solve(old_scale, d)
        cov_part = np.sum(d**2, axis=-1 if diag else (-2, -1))
    return mean_part, cov_part


def make_states(seed, n, k, proj, diag, max_cond=1e4):
    """Random new/old Gaussians (numpy float64) in the parameterisation of ``proj``."""
    rng = np.random.default_rng(seed)
    cond = 10 ** rng.uniform(0, np.log10(max_cond), n)
    level = 10 ** rng.uniform(-1, 1, n)
    t = rng.uniform(0, 1, (n, k))
    if k > 1:
        t[:, 0], t[:, 1] = 0.0, 1.0
    lam = level[:, None] * cond[:, None] ** (t - 0.5)  # old eigenvalues, cond(Sigma_o) = cond
    step = rng.choice([0.003, 0.03, 0.3, 1.0], n)
    mstep = rng.choice([0.01, 0.1, 1.0, 3.0], n)
    old_mean = rng.standard_normal((n, k))
    z = rng.standard_normal((n, k))
    same, scaled = slice(0, n // 8), slice(n // 8, n // 4)
    if diag:
        old_scale = np.sqrt(lam)
        scale = old_scale * np.exp(step[:, None] * rng.standard_normal((n, k)))
        scale[same], scale[scaled] = old_scale[same], 2.0 * old_scale[scaled]
        mean = old_mean + mstep[:, None] * old_scale * z
    else:
        q, r = np.linalg.qr(rng.standard_normal((n, k, k)))
        q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
        old_cov = (q * lam[:, None, :]) @ _mT(q)
        m = np.eye(k) + step[:, None, None] * rng.standard_normal((n, k, k)) / np.sqrt(k)
        cov = m @ old_cov @ _mT(m)
        cov[same], cov[scaled] = old_cov[same], 4.0 * old_cov[scaled]
        old_chol = np.linalg.cholesky(0.5 * (old_cov + _mT(old_cov)))
        mean = old_mean + mstep[:, None] * (old_chol @ z[..., None])[..., 0]
        if proj == "frob":
            scale, old_scale = np.linalg.cholesky(0.5 * (cov + _mT(cov))), old_chol
        else:
            scale, old_scale = _np_sqrtm(cov), _np_sqrtm(old_cov)
    mean[same] = old_mean[same]
    return mean, scale, old_mean, old_scale


def _np_sqrtm(cov):
    w, v = np.linalg.eigh(0.5 * (cov + _mT(cov)))
    s = (v * np.sqrt(w)[..., None, :]) @ _mT(v)
    return 0.5 * (s + _mT(s))


def make_bounds(seed, parts, lo=0.05, hi=3.0):
    """Bounds = part * u, u log-uniform in [lo, hi] but never within 25% of 1."""
    rng = np.random.default_rng(seed + 7)
    u = np.exp(rng.uniform(np.log(lo), np.log(hi), parts.shape))
    u = np.where((u > 0.8) & (u < 1.0), 0.8, np.where((u >= 1.0) & (u < 1.25), 1.25, u))
    return np.where(parts > 0, parts * u, 0.1 * u)


@functools.cache
def cases(proj, diag, prec, k, n=N_PER_K, max_cond=1e4):
    """(args, active_mean, active_cov), args in float64 numpy."""
    seed = zlib.crc32(repr((proj, diag, prec, k, n)).encode())
    state = make_states(seed, n, k, proj, diag, max_cond)
    mp, cp = ref_parts(proj, diag, prec, *state)
    eps_m, eps_c = make_bounds(seed, mp), make_bounds(seed + 1, cp)
    return state + (eps_m, eps_c), mp > eps_m, cp > eps_c


def _rel_errors(proj, diag, prec, out, args, active_m, active_c):
    """Relative bound errors of active parts, and the relative step sizes
    |x - x_o| / max|x_o| (x: mean, or the scale factor) of those parts."""
    mean, scale, old_mean, old_scale, eps_m, eps_c = args
    mp, cp = ref_parts(proj, diag, prec, out[0], out[1], old_mean, old_scale)
    axes = -1 if diag else (-2, -1)
    step_m = np.linalg.norm(out[0] - old_mean, axis=-1) / np.abs(old_mean).max(-1)
    step_c = np.sqrt(np.sum((out[1] - old_scale) ** 2, axis=axes)) / np.abs(old_scale).max(axis=axes)
    return (
        (np.abs(mp - eps_m) / eps_m)[active_m],
        (np.abs(cp - eps_c) / eps_c)[active_c],
        step_m[active_m],
        step_c[active_c],
    )


# ----------------------------------------------------------------------------
# Bounds met, pass-through


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("proj,diag,prec", CONFIGS, ids=CONFIG_IDS)
def test_bound_met_float64(proj, diag, prec):
    n_active = [0, 0]
    for k in K_LIST:
        args, act_m, act_c = cases(proj, diag, prec, k)
        out = _JIT[proj](*args, scale_prec=prec)
        assert out[0].dtype == jnp.float64 and out[1].dtype == jnp.float64
        err_m, err_c, _, _ = _rel_errors(proj, diag, prec, out, args, act_m, act_c)
        assert np.all(err_m < 1e-6), (k, err_m.max())
        assert np.all(err_c < 1e-6), (k, err_c.max())
        # Inactive parts pass through bit for bit.
        np.testing.assert_array_equal(np.asarray(out[0])[~act_m], args[0][~act_m])
        np.testing.assert_array_equal(np.asarray(out[1])[~act_c], args[1][~act_c])
        n_active[0] += act_m.sum()
        n_active[1] += act_c.sum()
    total = len(K_LIST) * N_PER_K
    assert 0.3 * total < n_active[0] < 0.9 * total and 0.3 * total < n_active[1] < 0.9 * total


@pytest.mark.parametrize("proj,diag,prec", CONFIGS, ids=CONFIG_IDS)
def test_bound_met_float32(proj, diag, prec):
    worst, worst_scaled = 0.0, 0.0
    for k in K_LIST:
        args, act_m, act_c = cases(proj, diag, prec, k)
        args32 = [np.asarray(a, np.float32) for a in args]
        out = _JIT[proj](*args32, scale_prec=prec)
        assert out[0].dtype == jnp.float32 and out[1].dtype == jnp.float32
        assert np.all(np.isfinite(out[0])) and np.all(np.isfinite(out[1]))
        # Measure in float64 against the float32 inputs and bounds the projection saw.
        args_meas = [np.asarray(a, np.float64) for a in args32]
        out64 = [np.asarray(o, np.float64) for o in out]
        err_m, err_c, step_m, step_c = _rel_errors(proj, diag, prec, out64, args_meas, act_m, act_c)
        err, step = np.concatenate([err_m, err_c]), np.concatenate([step_m, step_c])
        worst = max(worst, err[step >= 1e-2].max(initial=0))
        worst_scaled = max(worst_scaled, (err * step).max(initial=0))
        np.testing.assert_array_equal(np.asarray(out[0])[~act_m], args32[0][~act_m])
        np.testing.assert_array_equal(np.asarray(out[1])[~act_c], args32[1][~act_c])
    print(f"float32 {proj} diag={diag} prec={prec}: rel err (step >= 1e-2) {worst:.1e}, err*step {worst_scaled:.1e}")
    assert worst < F32_TOL_BIG_STEP and worst_scaled < F32_TOL_SCALED, (worst, worst_scaled)


# ----------------------------------------------------------------------------
# Optimality against an independent solver


def _sym_from_vec(v, k):
    m = np.zeros((k, k))
    m[np.triu_indices(k)] = v
    return m + np.triu(m, 1).T


def _on_segment(ours, target, old, dist, eps, what):
    """Optimality without an external solver (float64): for min d(x, x~) s.t. d(x, x_o) <= eps
    with one quadratic norm d and x~ outside the ball, the KKT conditions say the optimum is
    x = x_o + t (x~ - x_o) with 0 < t <= 1 (x = (x~ + eta x_o)/(1 + eta), eta = 1/t - 1 >= 0)
    and the bound active."""
    step, ours_step = target - old, ours - old
    t = np.sum(ours_step * step) / np.sum(step * step)
    residual = np.linalg.norm(ours_step - t * step)
    assert 0 < t <= 1 + 1e-12, f"{what}: not between the old and the new Gaussian (t={t})"
    assert residual <= 1e-10 * np.linalg.norm(step), f"{what}: off the segment old -> new, residual {residual:.3g}"
    np.testing.assert_allclose(dist(ours, old), eps, rtol=1e-9, err_msg=f"{what}: bound not active")


def _check_against_oracle(what, ours, target, old, dist, eps, x0, unpack=lambda x: x):
    """``ours`` minimises dist(., target) s.t. dist(., old) <= eps: the KKT check, then scipy
    (tests/projections/_oracle.py) judged by feasibility and objective. Returns True if scipy reached ours."""
    _on_segment(ours, target, old, dist, eps, what)
    sc = max(dist(target, old), 1e-300)
    ours_f = dist(ours, target) / sc
    pack = functools.partial(_pack_like, like=x0)
    ref = _oracle.solve(
        lambda x: dist(unpack(x), target) / sc,
        lambda x: 1 - dist(unpack(x), old) / eps,
        starts=[x0, 0.5 * (x0 + pack(target))],
        good_enough=lambda f: f <= ours_f * (1 + 1e-6) + 1e-12,
        restore=lambda x: pack(_feasible(unpack(x), old, dist, eps)),
    )
    assert ref.x is not None, f"{what}: no feasible reference point: {ref.describe()}"
    x = unpack(ref.x)
    # no feasible point the reference found is better than ours
    assert dist(ours, target) <= dist(x, target) * (1 + 1e-9) + 1e-15 * sc, (
        f"{what}: the reference found a better feasible point: {ref.describe()}"
    )
    if not ref.reached:
        _oracle.warn_unreached(what, ref)
        return False
    np.testing.assert_allclose(
        ours, x, rtol=1e-4, atol=1e-4 * np.sqrt(eps) + 1e-4 * np.abs(old).max(), err_msg=f"{what}: {ref.describe()}"
    )
    return True


def _pack_like(a, like):
    """The solver variables of ``a`` (a vector, or the upper triangle of a symmetric matrix)."""
    return a if a.shape == like.shape else a[np.triu_indices(a.shape[0])]


def _feasible(x, center, dist, eps):
    """Pulls a solver's point (which may violate the bound slightly) into the
    ball dist(., center) <= eps along the ray from center (dist is quadratic)."""
    return center + (x - center) * min(1.0, np.sqrt(eps / dist(x, center)) * (1 - 1e-12))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("proj,diag,prec", CONFIGS, ids=CONFIG_IDS)
def test_optimal_vs_scipy(proj, diag, prec):
    """Each part minimises the projection's own distance to the new Gaussian
    subject to the bound on the distance to the old one (KKT check, and scipy, small k)."""
    compared = checked = 0
    for k in (1, 2, 3):
        args, act_m, act_c = cases(proj, diag, prec, k, n=16, max_cond=1e2)
        mean, scale, old_mean, old_scale, eps_m, eps_c = args
        out_m, out_s = (np.asarray(o) for o in _JIT[proj](*args, scale_prec=prec))
        for i in np.flatnonzero(act_m | act_c)[:5]:
            # Mean: min d(mu, mu~) s.t. d(mu, mu_o) <= eps (d from the projection's metric).
            if prec:
                cov_o = _np_cov(old_scale[i], proj, diag)
                metric = np.diag(1 / cov_o) if diag else np.linalg.inv(cov_o)
            else:
                metric = np.eye(k)
            dm = lambda x, y: (x - y) @ metric @ (x - y)  # noqa: E731
            if act_m[i]:
                compared += _check_against_oracle(
                    f"k={k} state {i} mean", out_m[i], mean[i], old_mean[i], dm, eps_m[i], old_mean[i]
                )
            else:
                np.testing.assert_array_equal(out_m[i], mean[i])
            # Covariance part in the projection's own variables.
            if diag:
                to_var = (lambda v: v**2) if proj == "frob" else (lambda v: v)
                unpack = lambda x: x  # noqa: E731
                x0 = to_var(old_scale[i])
                target, old, ours = to_var(scale[i]), to_var(old_scale[i]), to_var(out_s[i])
                w = 1 / old**2 if (proj == "w2" and prec) else np.ones(k)
                dc = lambda a, b: np.sum(w * (a - b) ** 2)  # noqa: E731
            else:
                unpack = lambda x: _sym_from_vec(x, k)  # noqa: E731
                if proj == "frob":
                    target, old, ours = (a @ a.T for a in (scale[i], old_scale[i], out_s[i]))
                    dc = lambda a, b: np.sum((a - b) ** 2)  # noqa: E731
                else:
                    target, old, ours = scale[i], old_scale[i], out_s[i]
                    sinv = np.linalg.inv(old) if prec else np.eye(k)
                    dc = lambda a, b: np.sum((sinv @ (a - b)) ** 2)  # noqa: E731
                x0 = old[np.triu_indices(k)]
            if act_c[i]:
                compared += _check_against_oracle(f"k={k} state {i} cov", ours, target, old, dc, eps_c[i], x0, unpack)
                assert dc(ours, old) <= eps_c[i] * (1 + 1e-9)
            else:
                np.testing.assert_array_equal(out_s[i], scale[i])
            checked += 1
    assert checked >= 8 and compared >= 8, (checked, compared)


def test_checks_reject_a_wrong_projection():
    """A point that meets the bound but is not the optimum (here: the mean moved along
    the Euclidean instead of the Mahalanobis direction) fails both checks."""
    rng = np.random.default_rng(4)
    metric = np.array([[4.0, 1.0], [1.0, 0.5]])
    dm = lambda x, y: (x - y) @ metric @ (x - y)  # noqa: E731
    old, target, eps = np.zeros(2), np.array([1.0, -2.0]), 0.1
    right = old + (target - old) * np.sqrt(eps / dm(target, old))
    _check_against_oracle("right", right, target, old, dm, eps, old)
    direction = target / np.linalg.norm(target) + 0.3 * rng.standard_normal(2)
    wrong = old + direction * np.sqrt(eps / dm(direction, old))  # on the boundary, off the segment
    with pytest.raises(AssertionError, match="off the segment"):
        _on_segment(wrong, target, old, dm, eps, "wrong")
    with pytest.raises(AssertionError, match="better feasible point"):  # the oracle alone catches it too
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(__import__(__name__), "_on_segment", lambda *a: None)
            _check_against_oracle("wrong", wrong, target, old, dm, eps, old)


# ----------------------------------------------------------------------------
# The parts


@pytest.mark.usefixtures("x64")
def test_parts_match_design_formulas():
    """wasserstein_parts/frobenius_parts equal the trace formulas of DESIGN.md."""
    for k in (1, 3, 6):
        for diag in (True, False):
            # W2: tr(I + S_o^-1 Sigma S_o^-1 - 2 S_o^-1 S) and tr(Sigma_o + Sigma - 2 S_o S).
            args, _, _ = cases("w2", diag, True, k, n=8, max_cond=10.0)
            mean, s, old_mean, so = args[:4]
            S, So = (np.apply_along_axis(np.diag, -1, a) if diag else a for a in (s, so))
            soi = np.linalg.inv(So)
            eye = np.eye(k)
            prec = np.trace(eye + soi @ S @ S @ soi - 2 * soi @ S, axis1=-2, axis2=-1)
            eucl = np.trace(So @ So + S @ S - 2 * So @ S, axis1=-2, axis2=-1)
            maha = np.einsum("ni,nij,nj->n", mean - old_mean, soi @ soi, mean - old_mean)
            m1, c1 = _PARTS["w2"](mean, s, old_mean, so, scale_prec=True)
            m2, c2 = _PARTS["w2"](mean, s, old_mean, so, scale_prec=False)
            np.testing.assert_allclose(c1, prec, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(c2, eucl, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(m1, maha, rtol=1e-10)
            np.testing.assert_allclose(m2, np.sum((mean - old_mean) ** 2, -1), rtol=1e-12)
            # Frobenius.
            args, _, _ = cases("frob", diag, True, k, n=8, max_cond=10.0)
            mean, s, old_mean, so = args[:4]
            cov, cov_o = (np.apply_along_axis(np.diag, -1, a**2) if diag else a @ _mT(a) for a in (s, so))
            m1, c1 = _PARTS["frob"](mean, s, old_mean, so)
            np.testing.assert_allclose(c1, np.sum((cov - cov_o) ** 2, axis=(-2, -1)), rtol=1e-10, atol=1e-14)
            maha = np.einsum("ni,nij,nj->n", mean - old_mean, np.linalg.inv(cov_o), mean - old_mean)
            np.testing.assert_allclose(m1, maha, rtol=1e-9)


# ----------------------------------------------------------------------------
# Entropy projection


_ENT = tjit(P.entropy_projection, static_argnames=("equality", "cov_type"))


def _np_entropy(scale, kind):
    """0.5 log det(2 pi e Sigma) in numpy float64."""
    scale = np.asarray(scale, np.float64)
    k = scale.shape[-1]
    if kind == "diag":
        logdet = np.sum(np.log(scale**2), -1)
    else:
        cov = scale @ _mT(scale) if kind == "full" else scale @ scale
        logdet = np.linalg.slogdet(cov)[1]
    return 0.5 * (k * (1 + np.log(2 * np.pi)) + logdet)


def _entropy_cases(kind, n=24, k=5, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "diag":
        scale = np.exp(rng.uniform(-2, 2, (n, k)))
    else:
        a = rng.standard_normal((n, k, k))
        cov = a @ _mT(a) + 0.1 * np.eye(k)
        scale = np.linalg.cholesky(cov) if kind == "full" else _np_sqrtm(cov)
    h = _np_entropy(scale, kind)
    beta = h + rng.choice([-1.0, 1.0], n) * rng.uniform(0.05, 3.0, n)
    return scale, beta, h


@pytest.mark.parametrize("kind", ["diag", "full", "sqrt"])
def test_entropy_projection(kind):
    """Inequality form: rescaled to entropy beta only below beta, else bit-exact
    pass-through; equality form: always entropy beta. kind given or inferred."""
    with jax.enable_x64(True):
        scale, beta, h = _entropy_cases(kind)
        below = h < beta
        assert 4 < below.sum() < len(below) - 4
        for pass_kind in (kind, None):
            out = np.asarray(_ENT(scale, beta, cov_type=pass_kind))
            np.testing.assert_allclose(_np_entropy(out, kind)[below], beta[below], rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(out[~below], scale[~below])
            eq = np.asarray(_ENT(scale, beta, equality=True, cov_type=pass_kind))
            np.testing.assert_allclose(_np_entropy(eq, kind), beta, rtol=1e-12, atol=1e-12)
    # Scalar beta, float32.
    out32 = _ENT(scale.astype(np.float32), 1.5, equality=True, cov_type=kind)
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(_np_entropy(out32, kind), 1.5, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("kind", ["diag", "full", "sqrt"])
def test_entropy_gradients(kind):
    scale, beta, h = _entropy_cases(kind, n=4, k=3, seed=1)
    below = h < beta
    for eq in (False, True):
        fn = jax.jit(functools.partial(P.entropy_projection, equality=eq, cov_type=kind))
        check_grads(fn, (scale, beta), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
    # Pass-through gradient at or above beta is exact; no NaN at H == beta.
    vjp = tjit(lambda ct, s, b: jax.vjp(lambda s, b: P.entropy_projection(s, b, cov_type=kind), s, b)[1](ct))
    ct = np.random.default_rng(2).standard_normal(scale.shape)
    gs, gb = vjp(ct, scale, beta)
    np.testing.assert_array_equal(np.asarray(gs)[~below], ct[~below])
    np.testing.assert_array_equal(np.asarray(gb)[~below], 0.0)
    gs, gb = vjp(ct, scale, h)
    assert np.all(np.isfinite(gs)) and np.all(np.isfinite(gb))
