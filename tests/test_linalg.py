"""tr_jax.linalg (pure-jnp small-matrix routines) against numpy/LAPACK."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tr_jax import linalg as _LA


class _Jitted:
    """tr_jax.linalg with every function jitted (eager dispatch of unrolled loops is slow)."""

    def __getattr__(self, name):
        return jax.jit(getattr(_LA, name), static_argnames=("transpose",) if name == "solve_lower" else ())


LA = _Jitted()


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _spd(rng, n, k, cond):
    q, _ = np.linalg.qr(rng.normal(size=(n, k, k)))
    w = np.exp(rng.uniform(0, np.log(cond), size=(n, k)))
    a = (q * w[:, None, :]) @ q.transpose(0, 2, 1)
    return 0.5 * (a + a.transpose(0, 2, 1))


@pytest.mark.parametrize("k", [1, 2, 6])
def test_against_numpy(k):
    rng = np.random.default_rng(k)
    a = _spd(rng, 20, k, 1e4)
    l = np.linalg.cholesky(a)
    b = rng.normal(size=(20, k, 3))
    np.testing.assert_allclose(LA.cholesky(a), l, atol=1e-12 * np.abs(l).max())
    np.testing.assert_allclose(LA.solve_lower(l, b), np.linalg.solve(l, b), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(LA.solve_lower(l, b, transpose=True), np.linalg.solve(np.swapaxes(l, 1, 2), b),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(LA.solve_lower(l, b[..., 0]), np.linalg.solve(l, b)[..., 0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(LA.spd_solve(a, b), np.linalg.solve(a, b), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(LA.spd_logdet(a), np.linalg.slogdet(a)[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(LA.spd_inverse(a), np.linalg.inv(a), rtol=1e-7, atol=1e-9 * np.abs(np.linalg.inv(a)).max())
    ev = np.linalg.eigvalsh(a)
    np.testing.assert_allclose(LA.eigvalsh(a), ev, atol=4e-15 * ev.max() * k)
    s = LA.sqrtm_spd(a)
    np.testing.assert_allclose(s @ s, a, atol=1e-11 * ev.max())
    np.testing.assert_allclose(s, np.swapaxes(s, 1, 2), atol=1e-12 * ev.max())


def test_tridiagonal_preserves_spectrum_and_float32():
    rng = np.random.default_rng(0)
    a = _spd(rng, 10, 6, 1e3)
    d, e = LA.tridiagonalize(a)
    t = np.zeros_like(a)
    idx = np.arange(6)
    t[:, idx, idx] = d
    t[:, idx[:-1], idx[1:]] = e
    t[:, idx[1:], idx[:-1]] = e
    np.testing.assert_allclose(np.linalg.eigvalsh(t), np.linalg.eigvalsh(a), atol=1e-12 * 1e3)
    ev32 = LA.eigvalsh(a.astype(np.float32))
    assert ev32.dtype == jnp.float32
    np.testing.assert_allclose(ev32, np.linalg.eigvalsh(a), atol=2e-6 * np.abs(a).max() * 6)


def test_repeated_eigenvalues_nan_and_grad():
    k = 5
    np.testing.assert_allclose(LA.eigvalsh(3.0 * jnp.eye(k)), 3.0 * np.ones(k), rtol=1e-14)
    np.testing.assert_allclose(LA.eigvalsh(jnp.zeros((k, k))), np.zeros(k), atol=1e-300)
    assert np.all(np.isnan(LA.eigvalsh(jnp.full((2, k, k), jnp.nan))))  # terminates, NaN out
    a = jnp.asarray(_spd(np.random.default_rng(1), 1, k, 10.0)[0])
    g = jax.grad(lambda a: jnp.sum(jnp.sin(LA.cholesky(a))))(a)
    g_ref = jax.grad(lambda a: jnp.sum(jnp.sin(jnp.linalg.cholesky(a))))(a)
    # both read one triangle: compare in symmetric directions
    np.testing.assert_allclose(g + g.T, g_ref + g_ref.T, rtol=1e-10, atol=1e-12)
    assert np.all(np.isfinite(jax.grad(lambda a: LA.spd_logdet(a))(jnp.eye(k))))


@pytest.mark.parametrize("name", ["kl", "w2", "frob"])
def test_projections_lower_to_no_lapack_calls(name):
    """Forward+backward of every full-covariance projection contains no LAPACK call.

    With jaxlib 0.10.x on a 2-thread CPU pool, two batched LAPACK kernels that
    XLA runs concurrently deadlock (seen: N=4096, k=17 hangs). tr_jax avoids
    them; checking the lowered program is exact and costs no compile.
    """
    from tr_jax import distributions as D
    from tr_jax.projections import parts, project

    n, k = 4096, 6
    mean = jnp.zeros((n, k))
    scale = jnp.broadcast_to(jnp.eye(k), (n, k, k))

    def loss(m, s, om, os):
        pm, ps = project(name, m, s, om, os, 0.01, 0.001)
        mp, cp = parts(name, pm, ps, om, os)
        kind = "sqrt" if name == "w2" else "full"
        return jnp.sum(pm) + jnp.sum(ps) + jnp.sum(mp + cp) + jnp.sum(D.log_prob(m, pm, ps, kind) + D.entropy(ps, kind))

    text = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(mean, scale, mean, scale).as_text()
    assert "lapack" not in text.lower()
