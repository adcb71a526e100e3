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


pytestmark = pytest.mark.usefixtures("x64")  # tests/conftest.py: float64 inside each test only


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
    np.testing.assert_allclose(
        LA.solve_lower(l, b, transpose=True), np.linalg.solve(np.swapaxes(l, 1, 2), b), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(LA.solve_lower(l, b[..., 0]), np.linalg.solve(l, b)[..., 0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(LA.spd_solve(a, b), np.linalg.solve(a, b), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(LA.spd_logdet(a), np.linalg.slogdet(a)[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        LA.spd_inverse(a), np.linalg.inv(a), rtol=1e-7, atol=1e-9 * np.abs(np.linalg.inv(a)).max()
    )
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


def _fd(f, x, t, h=1e-6):
    return (np.asarray(f(x + h * t)) - np.asarray(f(x - h * t))) / (2 * h)


def test_derivative_rules_forward_reverse_and_second_order():
    """Cholesky and triangular solves have closed-form derivative rules (the
    loops are never differentiated): check forward mode against central finite
    differences, reverse mode against forward mode (<ct, J t> = <J^T ct, t>),
    and forward-over-reverse (as in TRPO's Fisher-vector products)."""
    rng = np.random.default_rng(0)
    k = 5
    a = _spd(rng, 1, k, 20.0)[0]
    l = np.linalg.cholesky(a)
    b = rng.normal(size=(k, 2))
    ta = rng.normal(size=(k, k))
    ta = ta + ta.T  # symmetric: cholesky reads the lower triangle
    tl = np.tril(rng.normal(size=(k, k)))
    tb = rng.normal(size=(k, 2))
    for transpose in (False, True):
        f = lambda l, b, transpose=transpose: _LA.solve_lower(l, b, transpose=transpose)  # noqa: E731
        _, jt = jax.jvp(f, (l, b), (tl, tb))
        fd = _fd(lambda s: f(l + s * tl, b + s * tb), 0.0, 1.0)
        np.testing.assert_allclose(jt, fd, rtol=1e-7, atol=1e-8)
        ct = rng.normal(size=(k, 2))
        gl, gb = jax.vjp(f, l, b)[1](ct)
        np.testing.assert_allclose(np.sum(gl * tl) + np.sum(gb * tb), np.sum(ct * np.asarray(jt)), rtol=1e-10)
        np.testing.assert_array_equal(np.triu(gl, 1), 0.0)  # the upper triangle is not read
    _, jt = jax.jvp(_LA.cholesky, (a,), (ta,))
    np.testing.assert_allclose(jt, _fd(lambda s: _LA.cholesky(a + s * ta), 0.0, 1.0), rtol=1e-7, atol=1e-8)
    ct = np.tril(rng.normal(size=(k, k)))
    (ga,) = jax.vjp(_LA.cholesky, a)[1](ct)
    np.testing.assert_allclose(np.sum(ga * ta), np.sum(ct * np.asarray(jt)), rtol=1e-10)

    def loss(a):
        return jnp.sum(jnp.sin(_LA.spd_solve(a, b))) + _LA.spd_logdet(a)

    hvp = jax.jvp(jax.grad(loss), (a,), (ta,))[1]
    fd = _fd(lambda s: jax.grad(loss)(a + s * ta), 0.0, 1.0, h=1e-5)
    np.testing.assert_allclose(np.tril(hvp) + np.tril(hvp, -1).T, np.tril(fd) + np.tril(fd, -1).T, rtol=1e-6, atol=1e-7)


def test_program_size_does_not_grow_with_k():
    """The loops are rolled: the lowered KL full-covariance forward+backward
    program has (about) the same size at k = 3 and k = 24 (no timing)."""
    from tr_jax.projections import kl_projection

    def lines(k):
        n = 8
        m = jnp.zeros((n, k))
        s = jnp.broadcast_to(jnp.eye(k), (n, k, k))

        def loss(m, s, om, os):
            pm, ps = kl_projection(m, s, om, os, 0.01, 0.001)
            return jnp.sum(pm) + jnp.sum(ps)

        return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(m, s, m, s).as_text().count("\n")

    small, large = lines(3), lines(24)
    assert large < 1.3 * small, (small, large)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_projections_lower_for_gpu_and_tpu_with_vendor_routines(platform):
    """Without a GPU: every full-covariance projection (fwd+bwd, with its parts
    and the distributions helpers) and ``linalg.eigvalsh`` export for cuda and
    tpu, and the program uses the vendor routines chosen there (cuSOLVER
    Cholesky and eigh, XLA's Cholesky / TriangularSolve ops) instead of the
    CPU loops."""
    from tr_jax import distributions as D
    from tr_jax.projections import parts, project

    n, k = 64, 6
    mean = jnp.zeros((n, k))
    scale = jnp.broadcast_to(jnp.eye(k), (n, k, k))
    texts = []
    for name in ("kl", "w2", "frob"):
        cov_type = "sqrt" if name == "w2" else "full"

        def loss(m, s, om, os, name=name, cov_type=cov_type):
            pm, ps = project(name, m, s, om, os, 0.01, 0.001)
            mp, cp = parts(name, pm, ps, om, os)
            # (eigvalsh: no projection needs it since KL solves on the tridiagonal form; exported here
            # so its vendor branch stays checked; its value enters the gradient w.r.t. m)
            ev = _LA.eigvalsh(jax.lax.stop_gradient(os @ jnp.swapaxes(os, -1, -2)))
            return (
                jnp.sum(mp + cp)
                + jnp.sum(D.log_prob(m, pm, ps, cov_type) + D.entropy(ps, cov_type))
                + jnp.sum(m) * jnp.sum(ev)
            )

        fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
        exported = jax.export.export(fn, platforms=[platform])(mean, scale, mean, scale)
        assert exported.platforms == (platform,)
        texts.append(exported.mlir_module())
    text = "\n".join(texts)
    assert "lapack" not in text.lower()
    assert "stablehlo.triangular_solve" in text
    if platform == "cuda":
        assert "cusolver_potrf" in text and "cusolver_syevd" in text
    else:
        assert "stablehlo.cholesky" in text and "Eigh" in text
    # The CPU program of the same function has none of them (pure-jnp loops).
    cpu = jax.export.export(fn, platforms=["cpu"])(mean, scale, mean, scale).mlir_module()
    assert not any(op in cpu for op in ("stablehlo.triangular_solve", "stablehlo.cholesky", "stablehlo.custom_call"))


def test_vendor_branch_agrees_with_the_jnp_branch():
    """The GPU/TPU branch (lax.linalg) computes what the CPU loops compute,
    value and gradient, reading the lower triangle only. Run here on single
    (unbatched) matrices, which never reach a batched LAPACK kernel."""
    rng = np.random.default_rng(3)
    k = 5
    a = _spd(rng, 1, k, 50.0)[0]
    junk = np.triu(rng.normal(size=(k, k)), 1)
    b = rng.normal(size=(k, 2))
    l = np.linalg.cholesky(a)
    np.testing.assert_allclose(_LA._cholesky_vendor(a + junk), _LA._cholesky_jnp(a + junk), rtol=1e-12, atol=1e-13)
    for t in (False, True):
        np.testing.assert_allclose(
            _LA._solve_lower_vendor(l + junk, b, t), _LA._solve_lower_jnp(l + junk, b, t), rtol=1e-12, atol=1e-13
        )
        gv = jax.grad(lambda l: jnp.sum(jnp.sin(_LA._solve_lower_vendor(l, b, t))))(l + junk)
        gj = jax.grad(lambda l: jnp.sum(jnp.sin(_LA._solve_lower_jnp(l, b, t))))(l + junk)
        np.testing.assert_allclose(gv, gj, rtol=1e-10, atol=1e-12)
    gv = jax.grad(lambda a: jnp.sum(jnp.sin(_LA._cholesky_vendor(a))))(a + junk)
    gj = jax.grad(lambda a: jnp.sum(jnp.sin(_LA._cholesky_jnp(a))))(a + junk)
    np.testing.assert_allclose(gv, gj, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(np.triu(gj, 1), 0.0)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_trpl_update_lowers_for_gpu_and_tpu(platform):
    """A whole TRPL update (KL projection, full covariance) exports for cuda/tpu."""
    from tr_jax import distributions as D
    from tr_jax.algorithms.base import Batch
    from tr_jax.algorithms.trpl import make_trpl
    from tr_jax.config import TrainConfig
    from tr_jax.hyperparams import from_config
    from tr_jax.networks import make_policy, make_value

    obs_dim, k, n = 3, 4, 32
    cfg = TrainConfig(
        num_envs=8,
        unroll_length=4,
        num_minibatches=2,
        num_epochs=1,
        total_env_steps=64,
        policy_hidden=(8,),
        value_hidden=(8,),
        algorithm="trpl",
        projection="kl",
        cov_type="full",
        contextual_cov=True,
    )
    pol, val = make_policy(cfg, obs_dim, k), make_value(cfg, obs_dim)
    algo = make_trpl(cfg, pol, val)
    state = algo.init(pol.init(jax.random.PRNGKey(0)), val.init(jax.random.PRNGKey(1)))
    obs = jnp.zeros((n, obs_dim))
    mean, scale = pol.apply(state.policy_params, obs)
    act = mean + 0.1
    zeros = jnp.zeros((n,))
    batch = Batch(obs, act, D.log_prob(act, mean, scale, "full"), mean, scale, zeros, zeros, zeros)
    exported = jax.export.export(jax.jit(algo.update), platforms=[platform])(
        jax.random.PRNGKey(2), state, batch, jnp.int32(0), from_config(cfg)
    )
    text = exported.mlir_module()
    assert "lapack" not in text.lower() and "stablehlo.triangular_solve" in text
