"""tr_jax.distributions agrees with distrax for all three parameterisations."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tr_jax import distributions as D

pytestmark = pytest.mark.usefixtures("x64")  # tests/conftest.py: float64 inside each test only


def _random_cov(rng, batch, k, cond=100.0):
    q, _ = np.linalg.qr(rng.normal(size=batch + (k, k)))
    w = np.exp(rng.uniform(0, np.log(cond), size=batch + (k,)))
    return (q * w[..., None, :]) @ np.swapaxes(q, -1, -2)


def _cases(kind, rng, batch=(3, 2), k=5):
    cov = _random_cov(rng, batch, k)
    if kind == "diag":
        std = np.exp(rng.normal(size=batch + (k,)))
        return std, np.eye(k) * (std**2)[..., None, :]
    if kind == "full":
        return np.linalg.cholesky(cov), cov
    return np.asarray(D.sqrtm_psd(cov)), cov


@pytest.mark.parametrize("kind", D.COV_TYPES)
def test_matches_distrax(kind):
    rng = np.random.default_rng(0)
    scale, cov = _cases(kind, rng)
    mean = rng.normal(size=cov.shape[:-1])
    x = rng.normal(size=cov.shape[:-1])
    ref = distrax.MultivariateNormalFullCovariance(mean, cov)
    np.testing.assert_allclose(D.covariance(scale, kind), cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(D.variance(scale, kind), np.diagonal(cov, axis1=-2, axis2=-1), rtol=1e-10)
    np.testing.assert_allclose(D.precision(scale, kind), np.linalg.inv(cov), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(D.log_det_cov(scale, kind), np.linalg.slogdet(cov)[1], rtol=1e-10)
    np.testing.assert_allclose(D.log_prob(x, mean, scale, kind), ref.log_prob(x), rtol=1e-10)
    np.testing.assert_allclose(D.entropy(scale, kind), ref.entropy(), rtol=1e-10)
    np.testing.assert_allclose(
        D.mahalanobis(x, mean, scale, kind),
        np.einsum("...i,...ij,...j->...", x - mean, np.linalg.inv(cov), x - mean),
        rtol=1e-8,
    )
    np.testing.assert_allclose(D.cholesky(scale, kind), np.linalg.cholesky(cov), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("kind", D.COV_TYPES)
def test_kl_matches_distrax(kind):
    rng = np.random.default_rng(1)
    sp, cp = _cases(kind, rng)
    sq, cq = _cases(kind, rng)
    mp, mq = rng.normal(size=cp.shape[:-1]), rng.normal(size=cq.shape[:-1])
    ref = distrax.MultivariateNormalFullCovariance(mp, cp).kl_divergence(
        distrax.MultivariateNormalFullCovariance(mq, cq)
    )
    np.testing.assert_allclose(D.kl(mp, sp, mq, sq, kind), ref, rtol=1e-8)
    m, c = D.kl_decomposed(mp, sp, mq, sq, kind)
    np.testing.assert_allclose(m, 0.5 * D.mahalanobis(mp, mq, sq, kind), rtol=1e-12)
    np.testing.assert_allclose(D.kl_decomposed(mp, sp, mp, sp, kind)[1], 0.0, atol=1e-10)
    assert np.all(np.asarray(c) >= 0)


def test_diag_agrees_with_distrax_diag():
    rng = np.random.default_rng(2)
    std = np.exp(rng.normal(size=(4, 3)))
    mean, x = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ref = distrax.MultivariateNormalDiag(mean, std)
    np.testing.assert_allclose(D.log_prob(x, mean, std, "diag"), ref.log_prob(x), rtol=1e-12)
    np.testing.assert_allclose(D.entropy(std, "diag"), ref.entropy(), rtol=1e-12)


@pytest.mark.parametrize("kind", D.COV_TYPES)
def test_sampling_moments(kind):
    rng = np.random.default_rng(3)
    scale, cov = _cases(kind, rng, batch=(), k=3)
    mean = rng.normal(size=3)
    xs = D.sample(jax.random.PRNGKey(0), mean, scale, kind, sample_shape=(200_000,))
    assert xs.shape == (200_000, 3)
    np.testing.assert_allclose(xs.mean(0), mean, atol=0.05 * np.sqrt(cov.diagonal().max()))
    np.testing.assert_allclose(np.cov(np.asarray(xs).T), cov, rtol=0.05, atol=0.02 * np.abs(cov).max())


@pytest.mark.parametrize("kind", D.COV_TYPES)
def test_conversions_roundtrip(kind):
    rng = np.random.default_rng(4)
    scale, cov = _cases(kind, rng)
    for to in ("full", "sqrt"):
        if kind == "diag":
            continue
        np.testing.assert_allclose(D.covariance(D.convert_scale(scale, kind, to), to), cov, rtol=1e-8, atol=1e-10)
    std = np.exp(rng.normal(size=(2, 4)))
    for to in ("full", "sqrt"):
        np.testing.assert_allclose(D.covariance(D.convert_scale(std, "diag", to), to), D.covariance(std, "diag"))


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown scale parameterisation"):
        D.entropy(jnp.ones(3), "cholesky")


def test_grad_log_prob_finite_at_identity():
    for kind in ("full", "sqrt"):
        g = jax.grad(lambda s: D.log_prob(jnp.ones(3), jnp.zeros(3), s, kind))(jnp.eye(3))
        assert np.all(np.isfinite(g))
