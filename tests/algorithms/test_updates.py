"""TRPO and TRPL updates on tiny synthetic batches (no Brax).

Every TRPL case takes two updates with a large learning rate, so the network
output leaves the trust region (checked: the raw parts exceed the bounds) and
the projection has to bring it back: the projection's own parts between the
old and the projected new policy must stay within eps (solver tolerance).
"""

import functools
import importlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tr_jax import distributions as D
from tr_jax.algorithms.base import Batch
from tr_jax.algorithms.trpl import make_trpl, projection_cov_type
from tr_jax.algorithms.trpo import conjugate_gradient, make_trpo
from tr_jax.config import TrainConfig, validate
from tr_jax.hyperparams import from_config
from tr_jax.losses import entropy_bound, gaussian_entropy
from tr_jax.networks import make_policy, make_value
from tr_jax.projections import parts, project

OBS, K, N = 3, 2, 64
EPS_MEAN, EPS_COV = 0.01, 2e-3
TOL = 1e-3  # relative, float32 solver tolerance on the bounds


def _config(**kw):
    base = dict(
        num_envs=8,
        unroll_length=8,
        num_minibatches=2,
        num_epochs=4,
        total_env_steps=64 * 10,
        policy_hidden=(16,),
        value_hidden=(16,),
        init_std=0.8,
        min_std=0.01,
    )
    base.update(kw)
    return TrainConfig(**base)


def _batch(policy, params, key):
    """On-policy synthetic batch; advantage favours actions near 0.5 * obs[:k]."""
    k1, k2 = jax.random.split(key)
    obs = jax.random.normal(k1, (N, OBS))
    mean, scale = policy.apply(params, obs)
    action = D.sample(k2, mean, scale, policy.cov_type)
    adv = -jnp.sum((action - 0.5 * obs[:, :K]) ** 2, -1)
    return Batch(
        obs, action, D.log_prob(action, mean, scale, policy.cov_type), mean, scale, adv, adv, jnp.zeros_like(adv)
    )


def _setup(cfg):
    pol, val = make_policy(cfg, OBS, K), make_value(cfg, OBS)
    return pol, val, pol.init(jax.random.PRNGKey(1)), val.init(jax.random.PRNGKey(2))


# ----------------------------------------------------------------------------- TRPO


def test_conjugate_gradient_solves_spd_system():
    a = jax.random.normal(jax.random.PRNGKey(0), (6, 6))
    a = a @ a.T + 0.5 * jnp.eye(6)
    b = jnp.arange(6.0)
    x, _, _ = conjugate_gradient(lambda v: a @ v, b, 20)
    np.testing.assert_allclose(a @ x, b, atol=1e-3)


@pytest.fixture(scope="module")
def trpo_setup():
    cfg = _config(algorithm="trpo", max_kl=0.005, cov_type="full", contextual_cov=True)
    pol, val, pp, vp = _setup(cfg)
    algo = make_trpo(cfg, pol, val)
    return cfg, pol, algo, algo.init(pp, vp), jax.jit(functools.partial(algo.update, hp=from_config(cfg)))


def test_trpo_accepted_step_respects_kl_and_improves(trpo_setup):
    cfg, pol, algo, state, update = trpo_setup
    batch = _batch(pol, state.policy_params, jax.random.PRNGKey(5))
    new, m = update(jax.random.PRNGKey(0), state, batch, 0)
    assert float(m["accepted"]) == 1.0
    # independent check of the constraint and the surrogate
    mean, scale = pol.apply(new.policy_params, batch.obs)
    kl = D.kl(mean, scale, batch.old_mean, batch.old_scale, "full")
    assert float(kl.mean()) <= cfg.max_kl
    assert float(kl.mean()) > 0.1 * cfg.max_kl  # a real step, not a no-op
    np.testing.assert_allclose(m["kl_mean"], kl.mean(), rtol=1e-5)
    adv = (batch.advantage - batch.advantage.mean()) / (batch.advantage.std() + 1e-8)

    def surr(p):
        mu, sc = pol.apply(p, batch.obs)
        return float(jnp.mean(jnp.exp(D.log_prob(batch.action, mu, sc, "full") - batch.log_prob) * adv))

    improvement = surr(new.policy_params) - surr(state.policy_params)
    assert improvement > 0
    np.testing.assert_allclose(m["surrogate_improvement"], improvement, rtol=1e-3, atol=1e-6)
    assert np.isfinite(float(m["value_loss"]))
    # value net was trained
    assert not np.allclose(jax.tree.leaves(new.value_params)[0], jax.tree.leaves(state.value_params)[0])


def test_trpo_rejects_when_no_improvement_is_possible(trpo_setup):
    _, pol, _, state, update = trpo_setup
    batch = _batch(pol, state.policy_params, jax.random.PRNGKey(6))
    batch = batch._replace(advantage=jnp.zeros_like(batch.advantage))  # surrogate is flat: nothing improves it
    new, m = update(jax.random.PRNGKey(0), state, batch, 0)
    assert float(m["accepted"]) == 0.0
    same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new.policy_params, state.policy_params)
    assert all(jax.tree.leaves(same))


def test_trpo_rejects_when_kl_bound_cannot_be_met(trpo_setup):
    """Behaviour policy far from the current one: every candidate has mean KL > max_kl."""
    cfg, pol, _, state, update = trpo_setup
    batch = _batch(pol, state.policy_params, jax.random.PRNGKey(7))
    old_mean = batch.old_mean + 1.0
    batch = batch._replace(old_mean=old_mean, log_prob=D.log_prob(batch.action, old_mean, batch.old_scale, "full"))
    new, m = update(jax.random.PRNGKey(0), state, batch, 0)
    assert float(m["accepted"]) == 0.0
    assert float(m["line_search_tries"]) == cfg.line_search_steps
    assert float(m["kl_mean"]) > cfg.max_kl  # the (unchanged) policy is still outside
    same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new.policy_params, state.policy_params)
    assert all(jax.tree.leaves(same))


# ----------------------------------------------------------------------------- TRPL

CASES = [  # (projection, cov_type, contextual)
    ("kl", "diag", True),
    ("kl", "full", True),
    ("kl", "sqrt", False),
    ("w2", "diag", False),
    ("w2", "sqrt", True),
    ("frob", "full", False),
]


@functools.cache
def _trpl_run(projection, cov_type, contextual, **kw):
    cfg = _config(
        algorithm="trpl",
        projection=projection,
        cov_type=cov_type,
        contextual_cov=contextual,
        eps_mean=EPS_MEAN,
        eps_cov=EPS_COV,
        policy_lr=1e-2,
        max_grad_norm=None,
        **kw,
    )
    pol, val, pp, vp = _setup(cfg)
    algo = make_trpl(cfg, pol, val)
    state = algo.init(pp, vp)
    update = jax.jit(functools.partial(algo.update, hp=from_config(cfg)))
    out = []
    for i in range(2):
        batch = _batch(pol, state.policy_params, jax.random.PRNGKey(10 + i))
        new, m = update(jax.random.PRNGKey(i), state, batch, i)
        out.append((state, new, batch, m))
        state = new
    return cfg, pol, out


@pytest.mark.parametrize("projection,cov_type,contextual", CASES)
def test_trpl_parts_within_bounds(projection, cov_type, contextual):
    cfg, pol, out = _trpl_run(projection, cov_type, contextual)
    pkind = projection_cov_type(cov_type, projection)
    opts = {} if projection == "kl" else {"scale_prec": cfg.scale_prec}
    for _old, new, batch, m in out:
        assert all(np.isfinite(float(v)) for v in m.values())
        # recompute from the new parameters, independently of the metrics
        to = (lambda s: s) if pkind == cov_type else (lambda s: D.cholesky(s, cov_type))
        mean, scale = pol.apply(new.policy_params, batch.obs)
        old_scale = to(batch.old_scale)
        pm, ps = project(projection, mean, to(scale), batch.old_mean, old_scale, EPS_MEAN, EPS_COV, **opts)
        mp, cp = parts(projection, pm, ps, batch.old_mean, old_scale, **opts)
        assert float(mp.max()) <= EPS_MEAN * (1 + TOL), float(mp.max())
        assert float(cp.max()) <= EPS_COV * (1 + TOL), float(cp.max())
        np.testing.assert_allclose(m["mean_part_max"], mp.max(), rtol=1e-4)
        np.testing.assert_allclose(m["cov_part_max"], cp.max(), rtol=1e-4)
        assert float(m["mean_part_max"]) <= EPS_MEAN * (1 + TOL)
        assert float(m["cov_part_max"]) <= EPS_COV * (1 + TOL)
        # KL metric is KL(projected new || old)
        kl = D.kl(pm, ps, batch.old_mean, old_scale, pkind)
        np.testing.assert_allclose(m["kl_max"], kl.max(), rtol=1e-3)
        if projection == "kl":  # the KL parts are the KL decomposition
            dm, dc = D.kl_decomposed(pm, ps, batch.old_mean, old_scale, pkind)
            np.testing.assert_allclose(mp, dm, rtol=1e-3, atol=1e-7)
            np.testing.assert_allclose(cp, dc, rtol=1e-3, atol=1e-7)
    # the test is meaningful: the network output left the trust region and was projected back
    m = out[-1][3]
    assert not [k for k in m if k.startswith("raw_")]  # the network output's metrics are named acting_*
    assert float(m["acting_mean_part_max"]) > EPS_MEAN
    assert float(m["mean_part_max"]) > 0.9 * EPS_MEAN  # the mean bound is active somewhere
    if contextual:
        assert float(m["acting_cov_part_max"]) > EPS_COV


@pytest.mark.parametrize("projection,cov_type", [(p, c) for p, c, ctx in CASES if not ctx])
def test_trpl_global_scale_written_back(projection, cov_type):
    """Global covariance: after the update the network's own scale is the projected one."""
    cfg, pol, out = _trpl_run(projection, cov_type, False)
    pkind = projection_cov_type(cov_type, projection)
    to = (lambda s: s) if pkind == cov_type else (lambda s: D.cholesky(s, cov_type))
    opts = {} if projection == "kl" else {"scale_prec": cfg.scale_prec}
    for _old, new, batch, m in out:
        mean, scale = pol.apply(new.policy_params, batch.obs)
        assert not np.allclose(scale, batch.old_scale)  # the covariance moved
        _, cp = parts(projection, mean, to(scale), batch.old_mean, to(batch.old_scale), **opts)
        assert float(cp.max()) <= EPS_COV * (1 + TOL)
        np.testing.assert_allclose(m["acting_cov_part_max"], cp.max(), rtol=1e-3)
        _, ps = project(projection, mean, to(scale), batch.old_mean, to(batch.old_scale), EPS_MEAN, EPS_COV, **opts)
        np.testing.assert_allclose(to(scale), ps, rtol=1e-3, atol=1e-5)


def test_trpl_rejects_w2_with_full():
    with pytest.raises(ValueError, match="sqrt"):
        projection_cov_type("full", "w2")
    cfg = _config(algorithm="trpl", projection="w2", cov_type="full")
    pol, val = make_policy(cfg, OBS, K), make_value(cfg, OBS)
    with pytest.raises(ValueError, match="sqrt"):
        make_trpl(cfg, pol, val)


def test_trpl_module_is_a_deprecated_alias_of_losses():
    """``tr_jax.trpl`` (the building blocks' old home) re-exports the very objects of ``tr_jax.losses``, warns
    on import, and is reachable as ``tr_jax.trpl`` and ``tr_jax.losses``."""
    import tr_jax
    from tr_jax import losses

    sys.modules.pop("tr_jax.trpl", None)
    with pytest.warns(DeprecationWarning, match="tr_jax.losses"):
        trpl = importlib.import_module("tr_jax.trpl")
    assert sorted(trpl.__all__) == sorted(losses.__all__)
    assert all(getattr(trpl, name) is getattr(losses, name) for name in losses.__all__)
    assert tr_jax.trpl is trpl and tr_jax.losses is losses


# ----------------------------------------------------------------------------- entropy


def test_entropy_schedule_values():
    h0, target, T = 3.0, -1.0, 10
    lin = [float(entropy_bound("linear", h0, target, 0.5, t, T)) for t in (0, 5, 10)]
    np.testing.assert_allclose(lin, [3.0, 1.0, -1.0], rtol=1e-6)
    exp = [float(entropy_bound("exp", h0, target, 0.5, t, T)) for t in (0, 1, 10)]
    np.testing.assert_allclose(exp, [3.0, -1.0 + 4.0 * 0.5, -1.0 + 4.0 * 0.5**10], rtol=1e-6)
    assert float(entropy_bound("none", h0, target, 0.5, 3, T)) == -np.inf
    # monotone towards the target
    vals = np.array([float(entropy_bound("exp", h0, target, 0.7, t, T)) for t in range(T + 1)])
    assert np.all(np.diff(vals) < 0)
    with pytest.raises(ValueError):
        entropy_bound("cosine", h0, target, 0.5, 0, T)
    np.testing.assert_allclose(gaussian_entropy(2, 0.8), float(D.entropy(jnp.full((2,), 0.8), "diag")), rtol=1e-6)


def test_trpl_entropy_projection_equality():
    """Equality form: the projected policy's entropy equals the scheduled bound."""
    cfg, pol, out = _trpl_run("kl", "diag", True, entropy_schedule="linear", target_entropy=-2.0, entropy_equality=True)
    h0 = gaussian_entropy(K, cfg.init_std)
    for i, (*_, m) in enumerate(out):
        beta = h0 + (-2.0 - h0) * i / cfg.num_iterations
        np.testing.assert_allclose(m["entropy_bound"], beta, rtol=1e-5)
        np.testing.assert_allclose(m["entropy"], beta, rtol=1e-4, atol=1e-5)


def _adam_count(opt_state) -> int:
    """Updates an Optax Adam state has taken."""
    is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)  # noqa: E731
    (adam,) = [x for x in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(x)]
    return int(adam.count)


@pytest.mark.parametrize("regression_lr", [None, 1e-3])
def test_trpl_extra_regression_steps_optimiser(regression_lr):
    """The extra regression steps continue the policy optimiser, or with ``regression_lr`` step an Adam of
    their own whose state persists across updates; either way they lower the regression loss they step on."""
    n_reg = 3
    cfg, pol, out = _trpl_run("kl", "diag", True, extra_regression_steps=n_reg, regression_lr=regression_lr)
    policy_steps = cfg.num_epochs * cfg.num_minibatches
    for i, (_old, new, _batch, m) in enumerate(out):
        assert np.isfinite(float(m["regression_loss"])) and float(m["regression_loss"]) > 0
        policy_count = _adam_count(new.policy_opt)
        if regression_lr is None:
            assert "regression_opt" not in new.extra
            assert policy_count == (i + 1) * (policy_steps + n_reg)
        else:
            assert policy_count == (i + 1) * policy_steps
            assert _adam_count(new.extra["regression_opt"]) == (i + 1) * n_reg


def test_trpl_regression_lr_needs_regression_steps():
    with pytest.raises(ValueError, match="regression_lr"):
        validate(_config(algorithm="trpl", regression_lr=1e-4))
