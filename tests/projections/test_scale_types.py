"""Every public function that takes a matrix scale, on genuine matrix scales.

"full" scales are lower Cholesky factors of random dense covariances (far from
symmetric), "sqrt" scales are symmetric square roots with large off-diagonal
entries. Every result is compared with an independent float64 NumPy/SciPy
computation from the covariance matrices (never with tr_jax code). Also: a
concrete matrix that is not of its declared ``cov_type`` raises ValueError,
a matrix ``old_scale`` without a ``cov_type`` where none can be assumed
raises, and under ``jit`` (unchecked) a "full" scale is read as its lower
triangle everywhere.

Regression: ``mean_projection`` / ``mean_distance`` used to treat a Cholesky
factor as a symmetric square root (wrong distances, NaN); the old tests only
used diagonal "full" matrices, which are symmetric.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats

from tr_jax import distributions as D
from tr_jax import projections as P

N, K = 6, 4


pytestmark = pytest.mark.usefixtures("x64")  # tests/conftest.py: float64 inside each test only


def _covs(rng, n=N, k=K, cond=30.0):
    q, _ = np.linalg.qr(rng.standard_normal((n, k, k)))
    w = np.exp(rng.uniform(0.0, np.log(cond), (n, k))) * np.exp(rng.uniform(-1, 1, (n, 1)))
    return (q * w[:, None, :]) @ np.swapaxes(q, -1, -2)


def _np_sqrtm(cov):
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(w)[..., None, :]) @ np.swapaxes(v, -1, -2)


def _factor(cov, cov_type):
    return np.linalg.cholesky(cov) if cov_type == "full" else _np_sqrtm(cov)


def _case(cov_type, seed=0, spread=1.0):
    """New/old Gaussians (means [N, K], scales [N, K, K]) and their covariances."""
    rng = np.random.default_rng(seed)
    old_cov = _covs(rng)
    cov = _covs(rng)
    old_mean = rng.standard_normal((N, K))
    mean = old_mean + spread * rng.standard_normal((N, K))
    scale, old_scale = _factor(cov, cov_type), _factor(old_cov, cov_type)
    if cov_type == "full":
        assert np.max(np.abs(scale - np.swapaxes(scale, -1, -2))) > 0.1  # genuinely not symmetric
    else:
        assert np.max(np.abs(scale - scale[..., np.arange(K), np.arange(K)][..., None] * np.eye(K))) > 0.1
    return (mean, scale, old_mean, old_scale), (cov, old_cov)


def _maha(diff, cov):
    return np.einsum("ni,ni->n", diff, np.linalg.solve(cov, diff[..., None])[..., 0])


def _kl_cov(cov, old_cov):
    k = cov.shape[-1]
    tr = np.trace(np.linalg.solve(old_cov, cov), axis1=-2, axis2=-1)
    return 0.5 * (tr - k + np.linalg.slogdet(old_cov)[1] - np.linalg.slogdet(cov)[1])


def _np_project_mean(mean, old_mean, dist, eps):
    w = np.where(dist > eps, np.sqrt(eps / np.maximum(dist, 1e-300)), 1.0)
    return old_mean + w[:, None] * (mean - old_mean)


def _assert_close(a, b, rtol=1e-9, atol=1e-11):
    np.testing.assert_allclose(np.asarray(a), b, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------
# Mean part (the bug)


@pytest.mark.parametrize("cov_type", ["full", "sqrt"])
def test_mean_distance_and_projection(cov_type):
    (mean, _, old_mean, old_scale), (_, old_cov) = _case(cov_type)
    maha = _maha(mean - old_mean, old_cov)
    _assert_close(P.mean_distance(mean, old_mean, old_scale, cov_type=cov_type), maha)
    _assert_close(
        P.mean_distance(mean, old_mean, old_scale, "euclidean", cov_type=cov_type), np.sum((mean - old_mean) ** 2, -1)
    )
    eps = np.quantile(0.5 * maha, 0.5)  # about half the states active
    for factor in (1.0, 0.5):
        out = P.mean_projection(mean, old_mean, old_scale, eps, factor=factor, cov_type=cov_type)
        _assert_close(out, _np_project_mean(mean, old_mean, factor * maha, eps))
        _assert_close(
            np.minimum(factor * _maha(np.asarray(out) - old_mean, old_cov), eps), np.minimum(factor * maha, eps)
        )


def test_mean_functions_need_the_cov_type_of_a_matrix():
    (mean, _, old_mean, old_scale), _ = _case("full")
    for fn in (
        lambda: P.mean_distance(mean, old_mean, old_scale),
        lambda: P.mean_projection(mean, old_mean, old_scale, 0.1),
    ):
        with pytest.raises(ValueError, match="cov_type='full'"):
            fn()
    with pytest.raises(ValueError, match="cov_type='diag' needs"):
        P.mean_projection(mean, old_mean, old_scale, 0.1, cov_type="diag")
    with pytest.raises(ValueError, match="unknown scale parameterisation"):
        P.mean_projection(mean, old_mean, old_scale, 0.1, cov_type="chol")
    # vectors are std vectors: no cov_type needed
    std = np.exp(np.random.default_rng(0).standard_normal((N, K)))
    _assert_close(P.mean_distance(mean, old_mean, std), np.sum(((mean - old_mean) / std) ** 2, -1))


# ----------------------------------------------------------------------------
# Projections and parts


def _np_kl_cov_projection(cov, old_cov, eps):
    """Independent KL covariance projection of one state: bracketed root of
    KL(Sigma(eta) || Sigma_o) = eps over eta, Lambda(eta) = (eta Lo + Lt) / (1 + eta)."""
    if _kl_cov(cov[None], old_cov[None])[0] <= eps:
        return cov
    lam_o, lam_t = np.linalg.inv(old_cov), np.linalg.inv(cov)

    def sigma(eta):
        return np.linalg.inv((eta * lam_o + lam_t) / (1.0 + eta))

    def g(log_eta):
        return _kl_cov(sigma(np.exp(log_eta))[None], old_cov[None])[0] - eps

    log_eta = scipy.optimize.brentq(g, -40.0, 40.0, xtol=1e-14, rtol=1e-15, maxiter=500)
    return sigma(np.exp(log_eta))


@pytest.mark.parametrize("name", ["kl", "frob", "w2"])
def test_projections_on_matrix_scales(name):
    cov_type = "sqrt" if name == "w2" else "full"
    (mean, scale, old_mean, old_scale), (cov, old_cov) = _case(cov_type, seed=1)
    maha = _maha(mean - old_mean, old_cov)
    if name == "kl":
        mean_dist = 0.5 * maha
        cov_dist = _kl_cov(cov, old_cov)
    elif name == "frob":
        mean_dist = maha
        cov_dist = np.sum((cov - old_cov) ** 2, axis=(-2, -1))
    else:
        mean_dist = maha
        z = np.linalg.solve(old_scale, scale - old_scale)
        cov_dist = np.sum(z**2, axis=(-2, -1))
    eps_mean = np.quantile(mean_dist, 0.4) * np.ones(N)
    eps_cov = np.quantile(cov_dist, 0.4) * np.ones(N)
    args = (mean, scale, old_mean, old_scale)
    for given in (None, cov_type):  # the default for a matrix scale is the projection's own type
        pm, ps = P.project(name, *args, eps_mean, eps_cov, cov_type=given)
        _assert_close(pm, _np_project_mean(mean, old_mean, mean_dist, eps_mean))
        ps = np.asarray(ps)
        for i in range(N):
            if name == "kl":
                ref_cov = _np_kl_cov_projection(cov[i], old_cov[i], eps_cov[i])
                ref = np.linalg.cholesky(ref_cov)
                _assert_close(ps[i], ref, rtol=1e-7, atol=1e-9)
            elif name == "frob":
                w = min(1.0, np.sqrt(eps_cov[i] / cov_dist[i]))
                _assert_close(ps[i], np.linalg.cholesky(old_cov[i] + w * (cov[i] - old_cov[i])))
            else:
                w = min(1.0, np.sqrt(eps_cov[i] / cov_dist[i]))
                _assert_close(ps[i], old_scale[i] + w * (scale[i] - old_scale[i]))
        mp, cp = P.parts(name, *args, cov_type=given)
        _assert_close(mp, mean_dist)
        _assert_close(cp, cov_dist)


def test_full_scale_upper_triangle_ignored_under_jit():
    """Traced scales are not checked; a "full" scale is then read as its lower
    triangle by every function (documented), so garbage above the diagonal
    changes nothing (but is passed through where a projection is inactive)."""
    (mean, scale, old_mean, old_scale), _ = _case("full", seed=2)
    junk = np.triu(np.random.default_rng(3).standard_normal((N, K, K)), 1)
    for name in ("kl", "frob"):
        fn = jax.jit(lambda m, s, om, os, name=name: P.project(name, m, s, om, os, 0.05, 0.01))
        clean, dirty = fn(mean, scale, old_mean, old_scale), fn(mean, scale + junk, old_mean, old_scale + junk)
        _assert_close(dirty[0], np.asarray(clean[0]), rtol=1e-12, atol=1e-14)
        # (inactive states pass the input through, junk included; it is not read downstream)
        _assert_close(np.tril(dirty[1]), np.asarray(clean[1]), rtol=1e-12, atol=1e-14)
        parts = jax.jit(lambda m, s, om, os, name=name: P.parts(name, m, s, om, os))
        for a, b in zip(parts(mean, scale, old_mean, old_scale), parts(mean, scale + junk, old_mean, old_scale + junk)):
            _assert_close(b, np.asarray(a), rtol=1e-12, atol=1e-14)
    mp = jax.jit(lambda m, om, os: P.mean_projection(m, om, os, 0.05, cov_type="full"))
    _assert_close(mp(mean, old_mean, old_scale + junk), np.asarray(mp(mean, old_mean, old_scale)), rtol=1e-12)
    for f in (
        lambda s: D.covariance(s, "full"),
        lambda s: D.variance(s, "full"),
        lambda s: D.log_prob(mean, old_mean, s, "full"),
        lambda s: D.cholesky(s, "full"),
        lambda s: D.kl(mean, s, old_mean, old_scale, "full"),
    ):
        _assert_close(jax.jit(f)(scale + junk), np.asarray(jax.jit(f)(scale)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cov_type", ["full", "sqrt"])
def test_entropy_projection_on_matrix_scales(cov_type):
    (_, scale, _, _), (cov, _) = _case(cov_type, seed=4)
    h = 0.5 * (K * (1 + np.log(2 * np.pi)) + np.linalg.slogdet(cov)[1])
    beta = h + np.linspace(-1.0, 1.0, N)
    for given in (cov_type, None):
        out = np.asarray(P.entropy_projection(scale, beta, cov_type=given))
        factor = np.exp(np.maximum(beta - h, 0.0) / K)
        _assert_close(out, scale * factor[:, None, None])
    wrong = "sqrt" if cov_type == "full" else "full"
    with pytest.raises(ValueError, match="not symmetric" if wrong == "sqrt" else "above the diagonal"):
        P.entropy_projection(scale, beta, cov_type=wrong)


# ----------------------------------------------------------------------------
# distributions helpers


@pytest.mark.parametrize("cov_type", ["full", "sqrt"])
def test_distribution_helpers_on_matrix_scales(cov_type):
    (mean, scale, old_mean, old_scale), (cov, old_cov) = _case(cov_type, seed=5)
    x = np.random.default_rng(6).standard_normal((N, K))
    _assert_close(D.covariance(scale, cov_type), cov)
    _assert_close(D.variance(scale, cov_type), np.diagonal(cov, axis1=-2, axis2=-1))
    _assert_close(D.cholesky(scale, cov_type), np.linalg.cholesky(cov))
    _assert_close(D.precision(scale, cov_type), np.linalg.inv(cov), rtol=1e-8)
    _assert_close(D.log_det_cov(scale, cov_type), np.linalg.slogdet(cov)[1])
    z = np.asarray(D.whiten(x - mean, scale, cov_type))
    _assert_close(z, np.linalg.solve(scale, (x - mean)[..., None])[..., 0])
    _assert_close(D.mahalanobis(x, mean, scale, cov_type), _maha(x - mean, cov))
    ref_lp = [scipy.stats.multivariate_normal(mean[i], cov[i]).logpdf(x[i]) for i in range(N)]
    _assert_close(D.log_prob(x, mean, scale, cov_type), ref_lp)
    ref_h = [scipy.stats.multivariate_normal(mean[i], cov[i]).entropy() for i in range(N)]
    _assert_close(D.entropy(scale, cov_type), ref_h)
    key = jax.random.PRNGKey(0)
    noise = np.asarray(jax.random.normal(key, (3, N, K), dtype=jnp.float64))
    _assert_close(D.sample(key, mean, scale, cov_type, (3,)), mean + np.einsum("nij,snj->sni", scale, noise))
    kl_mean = 0.5 * _maha(mean - old_mean, old_cov)
    kl_cov = _kl_cov(cov, old_cov)
    m, c = D.kl_decomposed(mean, scale, old_mean, old_scale, cov_type)
    _assert_close(m, kl_mean)
    _assert_close(c, kl_cov, rtol=1e-8)
    _assert_close(D.kl(mean, scale, old_mean, old_scale, cov_type), kl_mean + kl_cov, rtol=1e-8)
    _assert_close(D.convert_scale(scale, cov_type, "full"), np.linalg.cholesky(cov), rtol=1e-7, atol=1e-9)
    ref_sqrt = np.stack([scipy.linalg.sqrtm(c_).real for c_ in cov])
    _assert_close(D.convert_scale(scale, cov_type, "sqrt"), ref_sqrt, rtol=1e-7, atol=1e-9)
    _assert_close(D.convert_scale(scale, cov_type, "diag"), np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)))


@pytest.mark.parametrize("declared", ["full", "sqrt"])
def test_distribution_helpers_reject_a_scale_of_another_type(declared):
    (mean, scale, old_mean, old_scale), _ = _case("sqrt" if declared == "full" else "full", seed=7)
    match = "above the diagonal" if declared == "full" else "not symmetric"
    calls = {
        "covariance": lambda: D.covariance(scale, declared),
        "variance": lambda: D.variance(scale, declared),
        "cholesky": lambda: D.cholesky(scale, declared),
        "precision": lambda: D.precision(scale, declared),
        "log_det_cov": lambda: D.log_det_cov(scale, declared),
        "whiten": lambda: D.whiten(mean, scale, declared),
        "mahalanobis": lambda: D.mahalanobis(mean, old_mean, scale, declared),
        "entropy": lambda: D.entropy(scale, declared),
        "log_prob": lambda: D.log_prob(mean, old_mean, scale, declared),
        "sample": lambda: D.sample(jax.random.PRNGKey(0), mean, scale, declared),
        "kl": lambda: D.kl(mean, scale, old_mean, old_scale, declared),
        "kl_decomposed": lambda: D.kl_decomposed(mean, scale, old_mean, old_scale, declared),
        "convert_scale": lambda: D.convert_scale(scale, declared, "diag"),
        "mean_distance": lambda: P.mean_distance(mean, old_mean, old_scale, cov_type=declared),
        "mean_projection": lambda: P.mean_projection(mean, old_mean, old_scale, 0.1, cov_type=declared),
    }
    missed = []
    for what, call in calls.items():
        try:
            call()
            missed.append(what)
        except ValueError as err:
            assert match in str(err), (what, err)
    assert not missed, f"accepted a scale that is not {declared!r}: {missed}"


@pytest.mark.parametrize("cov_type", ["full", "sqrt"])
def test_batch_dims_of_x_and_scale_broadcast(cov_type):
    """Several points under one Gaussian: log_prob/mahalanobis/whiten broadcast
    (a [n, k] x under a [k, k] scale is n points, not a matrix right-hand side,
    which would silently give k values instead of n)."""
    (mean, scale, _, _), (cov, _) = _case(cov_type, seed=8)
    x = np.random.default_rng(9).standard_normal((7, K))
    ref = [scipy.stats.multivariate_normal(mean[0], cov[0]).logpdf(xi) for xi in x]
    _assert_close(D.log_prob(x, mean[0], scale[0], cov_type), ref)
    _assert_close(D.mahalanobis(x, mean[0], scale[0], cov_type), _maha(x - mean[0], np.broadcast_to(cov[0], (7, K, K))))
