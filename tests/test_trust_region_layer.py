"""tr_jax.TrustRegionLayer: bounds hold, exact pass-through inside the trust region, gradients match finite
differences in float64 (full-covariance inputs non-diagonal; Cholesky factors not symmetric), and it works as
the head of an NNX and of a Linen policy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from tr_jax import TrustRegionLayer
from tr_jax import distributions as D
from tr_jax.losses import to_projection_scale
from tr_jax.projections import parts

K, N = 3, 16
EPS_MEAN, EPS_COV = 0.02, 0.01
CASES = [("kl", "diag"), ("kl", "full"), ("kl", "sqrt"), ("frob", "full"), ("w2", "sqrt"), ("w2", "diag")]


def _scale(key, cov_type, n=N, spread=1.0):
    """Random scales of cov_type: non-diagonal for matrices, Cholesky factors lower-triangular (not symmetric)."""
    k1, k2 = jax.random.split(key)
    if cov_type == "diag":
        return jnp.exp(spread * 0.5 * jax.random.normal(k1, (n, K)))
    diag = jnp.exp(spread * 0.3 * jax.random.normal(k1, (n, K)))
    off = spread * 0.4 * jnp.tril(jax.random.normal(k2, (n, K, K)), -1)
    chol = off + diag[..., None] * jnp.eye(K)
    return chol if cov_type == "full" else D.convert_scale(chol, "full", "sqrt")


def _inputs(seed, cov_type, spread=1.0):
    ks = jax.random.split(jax.random.key(seed), 4)
    return (
        spread * jax.random.normal(ks[0], (N, K)),
        _scale(ks[1], cov_type, spread=spread),
        0.3 * jax.random.normal(ks[2], (N, K)),
        _scale(ks[3], cov_type, spread=0.5),
    )


@pytest.mark.parametrize("projection,cov_type", CASES)
def test_bounds_hold_and_inputs_are_generic(projection, cov_type):
    mean, scale, old_mean, old_scale = _inputs(0, cov_type)
    if cov_type != "diag":
        assert np.abs(np.asarray(scale)[:, 1, 0]).min() > 0  # non-diagonal
        assert (cov_type == "full") == (np.abs(np.asarray(scale)[:, 0, 1]).max() == 0)  # Cholesky not symmetric
    layer = TrustRegionLayer(projection, cov_type, eps_mean=EPS_MEAN, eps_cov=EPS_COV)
    pm, ps = layer(mean, scale, old_mean, old_scale)
    work = layer.output_cov_type
    old = to_projection_scale(old_scale, cov_type, projection)
    raw_m, raw_c = parts(
        projection, mean, to_projection_scale(scale, cov_type, projection), old_mean, old, cov_type=work
    )
    assert (raw_m > 2 * EPS_MEAN).mean() > 0.8 and (raw_c > 2 * EPS_COV).mean() > 0.8  # projection is active
    m, c = parts(projection, pm, ps, old_mean, old, cov_type=work)
    np.testing.assert_array_less(np.asarray(m), EPS_MEAN * (1 + 1e-3))
    np.testing.assert_array_less(np.asarray(c), EPS_COV * (1 + 1e-3))
    assert np.asarray(m).max() > 0.9 * EPS_MEAN  # on the boundary, not collapsed onto the old policy


@pytest.mark.parametrize("projection,cov_type", CASES)
def test_exact_pass_through_inside_the_trust_region(projection, cov_type):
    _, _, old_mean, old_scale = _inputs(1, cov_type)
    mean = old_mean + 1e-3
    scale = old_scale * 1.001
    layer = TrustRegionLayer(projection, cov_type, eps_mean=EPS_MEAN, eps_cov=EPS_COV)
    pm, ps = layer(mean, scale, old_mean, old_scale)
    np.testing.assert_array_equal(np.asarray(pm), np.asarray(mean))
    np.testing.assert_array_equal(np.asarray(ps), np.asarray(to_projection_scale(scale, cov_type, projection)))


@pytest.mark.parametrize("projection,cov_type", CASES)
def test_gradients_match_finite_differences_float64(projection, cov_type):
    with jax.enable_x64(True):
        mean, scale, old_mean, old_scale = jax.tree.map(lambda x: x[:4].astype(jnp.float64), _inputs(2, cov_type))
        layer = TrustRegionLayer(projection, cov_type, eps_mean=EPS_MEAN, eps_cov=EPS_COV)
        w = jax.random.normal(jax.random.key(3), (2,) + scale.shape[1:], jnp.float64)

        def f(mean, scale):
            pm, ps = layer(mean, scale, old_mean, old_scale)
            return jnp.sum(jnp.sin(pm * w[0, :1] if cov_type != "diag" else pm * w[0])) + jnp.sum(ps * w[1])

        f = jax.jit(f)
        if cov_type == "full":  # perturb only the lower triangle (the factor's parameters)
            check_grads(lambda m, lo: f(m, jnp.tril(lo)), (mean, scale), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)
        elif cov_type == "sqrt":  # and keep the root symmetric
            check_grads(
                lambda m, s: f(m, 0.5 * (s + jnp.swapaxes(s, -1, -2))),
                (mean, scale),
                order=1,
                modes=["rev"],
                atol=1e-5,
                rtol=1e-5,
            )
        else:
            check_grads(f, (mean, scale), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


class _NNXPolicy(nnx.Module):
    def __init__(self, rngs):
        self.mean = nnx.Linear(2, K, rngs=rngs)
        self.log_std = nnx.Param(jnp.zeros(K))
        self.head = TrustRegionLayer("kl", "diag", eps_mean=EPS_MEAN, eps_cov=EPS_COV)

    def __call__(self, obs, old_mean, old_std):
        return self.head(self.mean(obs), jnp.broadcast_to(jnp.exp(self.log_std), old_mean.shape), old_mean, old_std)


class _LinenPolicy(nn.Module):
    @nn.compact
    def __call__(self, obs, old_mean, old_std):
        mean = nn.Dense(K)(obs)
        std = jnp.broadcast_to(jnp.exp(self.param("log_std", nn.initializers.zeros, (K,))), mean.shape)
        return TrustRegionLayer("kl", "diag")(mean, std, old_mean, old_std, EPS_MEAN, EPS_COV)


def test_policy_head_in_nnx_and_linen():
    obs = jax.random.normal(jax.random.key(4), (N, 2))
    old_mean, old_std = jnp.zeros((N, K)), jnp.full((N, K), 0.5)

    def loss(out):
        return -jnp.sum(out[0]) - jnp.sum(jnp.log(out[1]))

    model = _NNXPolicy(nnx.Rngs(0))
    g = nnx.grad(lambda m: loss(m(obs, old_mean, old_std)))(model)
    linen = _LinenPolicy()
    params = linen.init(jax.random.key(0), obs, old_mean, old_std)
    g_linen = jax.grad(lambda p: loss(linen.apply(p, obs, old_mean, old_std)))(params)
    for grads in (g, g_linen):
        leaves = jax.tree.leaves(grads)
        assert all(np.all(np.isfinite(x)) for x in leaves) and any(np.abs(x).max() > 0 for x in leaves)
    m, c = parts("kl", *model(obs, old_mean, old_std), old_mean, old_std)
    assert float(m.max()) <= EPS_MEAN * 1.001 and float(c.max()) <= EPS_COV * 1.001


def test_bad_settings_fail_at_construction():
    with pytest.raises(ValueError, match="unknown projection"):
        TrustRegionLayer("kll")
    with pytest.raises(ValueError, match="cov_type='sqrt'"):
        TrustRegionLayer("w2", "full")
    with pytest.raises(ValueError, match="eps_cov must be > 0"):
        TrustRegionLayer("kl", eps_mean=0.1, eps_cov=0.0)
    with pytest.raises(ValueError, match="no trust-region bounds"):
        TrustRegionLayer("kl")(jnp.zeros((1, K)), jnp.ones((1, K)), jnp.zeros((1, K)), jnp.ones((1, K)))
