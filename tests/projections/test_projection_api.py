"""Public projections API: dispatch by name, the mean and entropy projections' bad input and batching, dtypes.

The contract every projection shares (bad input, batching, NaN, zero bounds) is tested in test_contract.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tr_jax import projections as P

CLOSED = {"w2": P.wasserstein_projection, "frob": P.frobenius_projection}
PARTS = {"w2": P.wasserstein_parts, "frob": P.frobenius_parts}
_FAST = {"xla_backend_optimization_level": 0}


def tjit(fn, **kw):
    return jax.jit(fn, compiler_options=_FAST, **kw)


def gaussians(batch=(3,), k=2, full=False, dtype=np.float32, seed=0, spread=1.0):
    """Random new/old Gaussians; full scales are lower triangular with a
    positive diagonal (a Cholesky factor) that is also fine as a W2 sqrt input
    for shape checks. Values are far enough apart that both parts are active
    for small bounds."""
    rng = np.random.default_rng(seed)
    old_mean = rng.standard_normal(batch + (k,))
    mean = old_mean + spread * rng.standard_normal(batch + (k,))
    old_std = np.exp(0.3 * rng.standard_normal(batch + (k,)))
    std = old_std * np.exp(spread * rng.standard_normal(batch + (k,)))
    if full:
        old_scale, scale = (np.eye(k) * s[..., None, :] for s in (old_std, std))
    else:
        old_scale, scale = old_std, std
    return tuple(np.asarray(a, dtype) for a in (mean, scale, old_mean, old_scale))


# ----------------------------------------------------------------------------
# Dispatch


@pytest.mark.parametrize("full", [False, True], ids=["diag", "full"])
def test_project_dispatch_equals_direct(full):
    args = gaussians(batch=(4,), k=3, full=full)

    @tjit
    def run(*args):
        res = {}
        for prec in (True, False):
            for name, aliases in (("w2", ("W2", "wasserstein")), ("frob", ("Frob", "frobenius"))):
                res[f"{name}|{prec}|direct"] = CLOSED[name](*args, 0.05, 0.01, scale_prec=prec)
                for n in (name,) + aliases:
                    res[f"{name}|{prec}|project:{n}"] = P.project(n, *args, 0.05, 0.01, scale_prec=prec)
                res[f"{name}|{prec}|parts"] = PARTS[name](*args, scale_prec=prec)
                res[f"{name}|{prec}|dispatch:parts"] = P.parts(name, *args, scale_prec=prec)
        # The projections' default is scale_prec=True.
        res["w2|True|project:default"] = P.project("w2", *args, 0.05, 0.01)
        return res

    res = run(*args)
    for key, val in res.items():
        name, prec, what = key.split("|")
        ref = res[f"{name}|{prec}|" + ("parts" if what.endswith("parts") else "direct")]
        np.testing.assert_array_equal(val[0], ref[0])
        np.testing.assert_array_equal(val[1], ref[1])
    for name in ("w2", "frob"):
        assert P.get_projection(name) is CLOSED[name]
        assert P.get_parts(name) is PARTS[name]


def test_project_dispatch_kl():
    args = gaussians(batch=(4,), k=3, full=True)
    run = tjit(
        lambda *a: (P.kl_projection(*a, 0.05, 0.01), P.project("kl", *a, 0.05, 0.01), P.kl_parts(*a), P.parts("KL", *a))
    )
    direct, got, dparts, gparts = run(*args)
    for a, b in ((direct, got), (dparts, gparts)):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert P.get_projection("kl") is P.kl_projection
    with pytest.raises(ValueError, match="scale_prec"):
        P.project("kl", *args, 0.05, 0.01, scale_prec=True)


def test_unknown_name_and_option():
    args = gaussians()
    for bad in ("kld", "", "wasserstein2"):
        with pytest.raises(ValueError, match="unknown projection"):
            P.project(bad, *args, 0.1, 0.1)
        with pytest.raises(ValueError, match="unknown projection"):
            P.parts(bad, *args)
    with pytest.raises(ValueError, match="must be a string"):
        P.project(None, *args, 0.1, 0.1)
    with pytest.raises(ValueError, match="does not take option"):
        P.project("w2", *args, 0.1, 0.1, scale_prec=True, temperature=2.0)
    with pytest.raises(ValueError, match="does not take option"):
        P.parts("frob", *args, eps=1.0)
    assert P.canonical_name("Wasserstein") == "w2" and P.canonical_name("FROB") == "frob"
    assert set(P.NAMES) == {"kl", "w2", "frob"}


# ----------------------------------------------------------------------------
# Bad input: ValueError at trace time, naming the problem


def _bad_inputs():
    m, s, om, os = gaussians(batch=(3,), k=2)
    _, sf, _, osf = gaussians(batch=(3,), k=2, full=True)
    ok = (m, s, om, os, 0.1, 0.1)
    cases = {
        "old_mean k": ((m, s, om[:, :1], os[:, :1], 0.1, 0.1), "shape"),
        "batch": ((m, s, om[:2], os[:2], 0.1, 0.1), "same shapes"),
        "scale rank 3": ((m, sf[..., None], om, osf[..., None], 0.1, 0.1), "wrong rank"),
        "scale rank 1": ((m, s[:, 0], om, os[:, 0], 0.1, 0.1), "wrong rank"),
        "non-square": ((m, sf[..., :1], om, osf[..., :1], 0.1, 0.1), "square"),
        "diag vs full": ((m, s, om, osf, 0.1, 0.1), "same shapes"),
        "scalar mean": ((m[0, 0], s[0, 0], om[0, 0], os[0, 0], 0.1, 0.1), "scalar"),
        "int mean": ((m.astype(np.int32), s, om, os, 0.1, 0.1), "floating dtype"),
        "int scale": ((m, s, om, os.astype(np.int32), 0.1, 0.1), "floating dtype"),
        "complex": ((m.astype(np.complex64), s, om, os, 0.1, 0.1), "floating dtype"),
        "bool mean": ((m > 0, s, om, os, 0.1, 0.1), "floating dtype"),
        "list mean": (([[0.0, 0.0]] * 3, s, om, os, 0.1, 0.1), "must be an array, got a Python list"),
        "bfloat16": (tuple(x.astype(jnp.bfloat16) for x in ok[:4]) + (0.1, 0.1), "float32 or float64 only"),
        "float16": (tuple(x.astype(np.float16) for x in ok[:4]) + (0.1, 0.1), "float32 or float64 only"),
        "negative old std": ((m, s, om, os * np.float32([[1, 1], [1, -1], [1, 1]]), 0.1, 0.1), "std <= 0"),
        "zero old std": ((m, s, om, os * np.float32([[0, 1], [1, 1], [1, 1]]), 0.1, 0.1), "std <= 0"),
        "negative new std": ((m, -s, om, os, 0.1, 0.1), "std <= 0"),
        "eps_mean 0": (ok[:4] + (0.0, 0.1), "eps_mean must be positive"),
        "eps_mean < 0": (ok[:4] + (-1.0, 0.1), "eps_mean must be positive"),
        "eps_mean nan": (ok[:4] + (float("nan"), 0.1), "eps_mean must be positive and finite"),
        "eps_mean inf": (ok[:4] + (float("inf"), 0.1), "eps_mean"),
        "eps_mean per state": (ok[:4] + (np.array([0.1, -0.1, 0.1]), 0.1), "eps_mean must be positive"),
        "eps_mean shape": (ok[:4] + (np.ones(2), 0.1), "batch shape"),
        "eps_mean bool": (ok[:4] + (True, 0.1), "boolean"),
        "eps_mean str": (ok[:4] + ("0.1", 0.1), "eps_mean"),
    }
    return cases


def test_mean_projection_bad_input_raises_value_error():
    """The bad inputs of the projections' contract (test_contract.py) that apply to mean_projection."""
    fn = lambda m, s, om, os, em, ec: P.mean_projection(m, om, os, em)  # noqa: E731
    for what, (args, match) in _bad_inputs().items():
        if what in ("diag vs full", "negative new std"):
            continue  # mean_projection takes no new scale
        if what in ("scale rank 3", "scale rank 1", "non-square", "int scale"):
            # mean_projection takes only old_scale; build the same mistake there.
            args = (args[0], args[3], args[2], args[3]) + args[4:]
        with pytest.raises((ValueError, TypeError), match=match) as info:
            fn(*args)
        assert info.type is ValueError, (what, info.value)


def test_config_refuses_bounds_below_the_floor():
    import dataclasses

    from tr_jax.config import TrainConfig, validate

    validate(dataclasses.replace(TrainConfig(), eps_cov=1e-8, eps_mean=1e-8))
    validate(dataclasses.replace(TrainConfig(), eps_cov=1e-12, dtype="float64"))
    for field in ("eps_cov", "eps_mean"):
        with pytest.raises(ValueError, match=f"{field} = 1e-09 is below 1e-08"):
            validate(dataclasses.replace(TrainConfig(), **{field: 1e-9}))


def test_entropy_bad_input():
    s = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="floating"):
        P.entropy_projection(s.astype(np.int32), 0.0)
    with pytest.raises(ValueError, match="square"):
        P.entropy_projection(s, 0.0, cov_type="full")
    with pytest.raises(ValueError, match="square"):
        P.entropy_projection(np.ones(3, np.float32), 0.0, cov_type="sqrt")
    with pytest.raises(ValueError, match="unknown scale parameterisation"):
        P.entropy_projection(s, 0.0, cov_type="chol")
    with pytest.raises(ValueError, match="batch shape"):
        P.entropy_projection(s, np.zeros(2), cov_type="diag")
    with pytest.raises(ValueError, match="boolean"):
        P.entropy_projection(s, True)
    with pytest.raises(ValueError, match="equality must be a Python bool"):
        P.entropy_projection(s, 0.0, equality="no")
    with pytest.raises(ValueError, match="k >= 1"):
        P.entropy_projection(np.ones((3, 0), np.float32), 0.0)
    # Any real beta is fine, negative included.
    assert P.entropy_projection(s, -5.0).shape == s.shape


# ----------------------------------------------------------------------------
# Batching, dtypes


def test_entropy_batching_and_kind_inference():
    rng = np.random.default_rng(0)
    # A batch of 3 diagonal stds with k = 3 looks like one 3x3 matrix: kind says which.
    std = np.exp(rng.uniform(-1, 1, (3, 3))).astype(np.float32)
    ent = tjit(P.entropy_projection, static_argnames=("cov_type",))
    as_vectors = ent(std, np.full(3, 10.0, np.float32), cov_type="diag")
    for i in range(3):
        np.testing.assert_allclose(as_vectors[i], ent(std[i], np.float32(10.0)), rtol=1e-6)
    as_matrix = P.entropy_projection(std, 10.0)  # inferred: one matrix factor
    assert as_matrix.shape == (3, 3)
    # Leading dims and per-state beta.
    std = np.exp(rng.uniform(-1, 1, (2, 4, 5))).astype(np.float32)
    beta = rng.uniform(-1, 5, (2, 4)).astype(np.float32)
    out = tjit(P.entropy_projection)(std, beta)
    ref = ent(std.reshape(8, 5), beta.reshape(8))
    np.testing.assert_allclose(np.asarray(out).reshape(8, 5), ref, rtol=1e-6)
    chol = np.tril(rng.standard_normal((2, 4, 3, 3))) + 3 * np.eye(3)
    assert P.entropy_projection(chol.astype(np.float32), beta, cov_type="full").shape == chol.shape


@pytest.mark.parametrize("name", ["w2", "frob"])
def test_dtypes(name):
    fn = CLOSED[name]
    args32 = gaussians(dtype=np.float32, full=True)
    out = tjit(fn)(*args32, np.float64(0.1), np.array([0.01, 0.02, 0.03]))  # bounds follow the Gaussians' dtype
    assert out[0].dtype == jnp.float32 and out[1].dtype == jnp.float32
    with jax.enable_x64(True):
        args64 = gaussians(dtype=np.float64, full=True)
        out = tjit(lambda *a: fn(*a, 0.1, 1))(*args64)  # an int bound is fine
        assert out[0].dtype == jnp.float64 and out[1].dtype == jnp.float64
        # W2/Frob mean part with scale_prec == mean_projection(metric="mahalanobis").
        mean_only = tjit(lambda m, om, os: P.mean_projection(m, om, os, 0.1, cov_type="full"))(
            args64[0], args64[2], args64[3]
        )
        np.testing.assert_allclose(mean_only, out[0], rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match="floating"):
        fn(*(a.astype(np.float16).astype(np.int8) for a in args32), 0.1, 0.1)
