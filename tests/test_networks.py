"""Policy and value networks: shapes, exact initial std, min_std, orthogonal init, write-back."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tr_jax import distributions as D
from tr_jax import linalg as LA
from tr_jax.config import TrainConfig, validate
from tr_jax.networks import make_policy, make_value, raw_to_scale, scale_to_raw, std_shift

KINDS = ("diag", "full", "sqrt")
COMBOS = list(itertools.product(KINDS, (False, True)))
OBS, K = 5, 3


def _cfg(kind, contextual, **kw):
    return TrainConfig(cov_type=kind, contextual_cov=contextual, init_std=0.7, min_std=0.05, **kw)


@pytest.mark.parametrize("kind,contextual", COMBOS)
def test_shapes_and_exact_initial_std(kind, contextual):
    pol = make_policy(_cfg(kind, contextual), OBS, K)
    assert pol.cov_type == kind and pol.contextual == contextual
    params = pol.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, 2, OBS))
    mean, scale = pol.apply(params, obs)
    assert mean.shape == (4, 2, K)
    assert scale.shape == ((4, 2, K) if kind == "diag" else (4, 2, K, K))
    # initial covariance is exactly init_std^2 I at every state
    cov = D.covariance(scale, kind)
    np.testing.assert_allclose(cov, jnp.broadcast_to(0.49 * jnp.eye(K), cov.shape), rtol=1e-6, atol=1e-7)
    if kind != "diag":
        np.testing.assert_allclose(scale, jnp.broadcast_to(0.7 * jnp.eye(K), scale.shape), atol=1e-7)
    # mean head is small (gain 0.01) but not zero
    assert 0 < float(jnp.abs(mean).max()) < 0.1
    # unbatched observations work too
    m1, s1 = pol.apply(params, obs[0, 0])
    assert m1.shape == (K,) and s1.shape == scale.shape[2:]


@pytest.mark.parametrize("kind,contextual", COMBOS)
def test_scale_valid_and_min_std_respected(kind, contextual):
    """Large random parameters: scale stays a valid factor with std >= min_std everywhere."""
    pol = make_policy(_cfg(kind, contextual), OBS, K)
    params = pol.init(jax.random.PRNGKey(0))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [x + 3.0 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, OBS))
    _, scale = pol.apply(params, obs)
    assert bool(jnp.all(jnp.isfinite(scale)))
    if kind == "diag":
        assert float(scale.min()) >= 0.05 - 1e-6
    elif kind == "full":
        np.testing.assert_array_equal(scale, jnp.tril(scale))
        assert float(jnp.diagonal(scale, axis1=-2, axis2=-1).min()) >= 0.05 - 1e-6
    else:
        np.testing.assert_allclose(scale, jnp.swapaxes(scale, -1, -2), atol=1e-5)
        w = np.linalg.eigvalsh(np.asarray(scale, np.float64))  # float64 on the host: exact enough
        assert float(w.min()) >= 0.05 * (1 - 1e-3)


def test_very_small_std_hits_min_std():
    raw = jnp.full((3,), -200.0)
    s = raw_to_scale(raw, "diag", 3, std_shift(1.0, 1e-3), 1e-3)
    np.testing.assert_allclose(s, 1e-3, rtol=1e-6)


def _orthogonal_ok(w, gain):
    w = np.asarray(w, np.float64)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=1e-4 * max(gain**2, 1))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_orthogonal_init(activation):
    cfg = _cfg("diag", True, activation=activation, policy_hidden=(32, 16), value_hidden=(8,))
    pol = make_policy(cfg, OBS, K)
    p = pol.init(jax.random.PRNGKey(0))["params"]
    _orthogonal_ok(p["trunk"]["Dense_0"]["kernel"], np.sqrt(2))
    _orthogonal_ok(p["trunk"]["Dense_1"]["kernel"], np.sqrt(2))
    _orthogonal_ok(p["mean_head"]["kernel"], 0.01)
    assert float(jnp.abs(p["cov_head"]["kernel"]).max()) == 0.0
    for leaf in (p["trunk"]["Dense_0"]["bias"], p["mean_head"]["bias"]):
        assert float(jnp.abs(leaf).max()) == 0.0
    val = make_value(cfg, OBS)
    vp = val.init(jax.random.PRNGKey(1))
    _orthogonal_ok(vp["params"]["trunk"]["Dense_0"]["kernel"], np.sqrt(2))
    _orthogonal_ok(vp["params"]["value_head"]["kernel"], 1.0)
    assert val.apply(vp, jnp.ones((4, 2, OBS))).shape == (4, 2)
    assert val.apply(vp, jnp.ones((OBS,))).shape == ()


def test_activation_changes_output():
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, OBS))
    outs = []
    for act in ("tanh", "relu"):
        pol = make_policy(_cfg("diag", False, activation=act), OBS, K)
        outs.append(pol.apply(pol.init(jax.random.PRNGKey(0)), obs)[0])
    assert not np.allclose(outs[0], outs[1])


def _random_scale(kind, key):
    if kind == "diag":
        return 0.05 + jnp.exp(jax.random.normal(key, (K,)))
    a = jax.random.normal(key, (K, K))
    cov = a @ a.T / K + 0.5 * jnp.eye(K)
    return D.convert_scale(LA.cholesky(cov), "full", kind)  # no LAPACK in test programs (see linalg.py)


@pytest.mark.parametrize("kind", KINDS)
def test_set_global_scale_round_trip(kind):
    pol = make_policy(_cfg(kind, False), OBS, K)
    params = pol.init(jax.random.PRNGKey(0))
    target = _random_scale(kind, jax.random.PRNGKey(7))
    new = jax.jit(pol.set_global_scale)(params, target)
    _, scale = pol.apply(new, jnp.ones((6, OBS)))
    np.testing.assert_allclose(scale, jnp.broadcast_to(target, scale.shape), rtol=1e-4, atol=1e-5)
    # only the covariance parameter changed
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), params["params"]["trunk"], new["params"]["trunk"])
    assert all(jax.tree_util.tree_leaves(same))
    # raw map is inverted exactly
    raw = scale_to_raw(target, kind, std_shift(0.7, 0.05), 0.05)
    np.testing.assert_allclose(raw_to_scale(raw, kind, K, std_shift(0.7, 0.05), 0.05), target, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_set_global_scale_is_noop_for_contextual(kind):
    pol = make_policy(_cfg(kind, True), OBS, K)
    params = pol.init(jax.random.PRNGKey(0))
    assert pol.set_global_scale(params, _random_scale(kind, jax.random.PRNGKey(2))) is params


def test_gradients_finite_at_init():
    """The sqrt map has smooth gradients at the isotropic init (repeated eigenvalues)."""
    for kind, contextual in COMBOS:
        pol = make_policy(_cfg(kind, contextual), OBS, K)
        params = pol.init(jax.random.PRNGKey(0))
        obs = jax.random.normal(jax.random.PRNGKey(1), (8, OBS))
        act = jax.random.normal(jax.random.PRNGKey(2), (8, K))

        def loss(p):
            m, s = pol.apply(p, obs)
            return D.log_prob(act, m, s, kind).mean()

        g = jax.grad(loss)(params)
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(g))
        cov_grad = g["params"]["cov_head" if contextual else "cov"]
        assert float(jnp.abs(jax.tree_util.tree_leaves(cov_grad)[0]).max()) > 0


def test_shared_trunk_is_not_an_option():
    with pytest.raises(TypeError, match="shared_trunk"):
        TrainConfig(shared_trunk=True)


@pytest.mark.usefixtures("x64")  # it skipped in every run before (x64 is never on globally)
def test_float64_params():
    pol = make_policy(_cfg("full", False, dtype="float64"), OBS, K)
    params = pol.init(jax.random.PRNGKey(0))
    assert all(x.dtype == jnp.float64 for x in jax.tree_util.tree_leaves(params))


def _dot_lines(fn, *args):
    module = jax.export.export(jax.jit(fn), platforms=["cuda"])(*args).mlir_module()
    return [line for line in module.splitlines() if "stablehlo.dot_general" in line]


@pytest.mark.parametrize("precision", ["default", "high", "highest"])
def test_matmul_precision_sets_the_dense_layers(precision):
    """The networks' products carry ``matmul_precision`` in the program exported for a GPU ("default": no
    field at all, the program of a config without the setting); the covariance map is always HIGHEST."""
    cfg = _cfg("sqrt", True, matmul_precision=precision)
    pol, val = make_policy(cfg, OBS, K), make_value(cfg, OBS)
    obs = jnp.ones((4, OBS))
    pol_dots = _dot_lines(
        jax.grad(lambda p, o: sum(jnp.sum(x) for x in pol.apply(p, o))), pol.init(jax.random.key(0)), obs
    )
    val_dots = _dot_lines(jax.grad(lambda p, o: jnp.sum(val.apply(p, o))), val.init(jax.random.key(1)), obs)
    cov_map = [line for line in pol_dots if "batching_dims" in line]  # [4, k, k] products; dense layers: none
    dense = [line for line in pol_dots if line not in cov_map] + val_dots
    assert cov_map and all("precision = [HIGHEST, HIGHEST]" in line for line in cov_map)
    assert len(dense) >= 10
    if precision == "default":
        assert not any("precision" in line for line in dense)
    else:
        want = {"high": "HIGH", "highest": "HIGHEST"}[precision]
        assert all(f"precision = [{want}, {want}]" in line for line in dense), dense[0]


def test_matmul_precision_is_checked():
    expected = r"unknown matmul_precision 'fast'; expected one of \('default', 'high', 'highest'\)"
    with pytest.raises(ValueError, match=expected):
        validate(TrainConfig(matmul_precision="fast"))
    with pytest.raises(ValueError, match="unknown matmul_precision 'fast'"):
        make_policy(TrainConfig(matmul_precision="fast"), OBS, K)
