"""The projection contract (docs/projections.md, "The contract"), once for every projection and scale type.

Every test is parametrised over the projections in ``tr_jax.projections.NAMES`` and each ``cov_type`` the
projection accepts (read from its signature: "diag" std vectors, "full" lower Cholesky factors, "sqrt"
symmetric square roots), and over ``scale_prec`` where the projection takes it. What each projection must do:

* bounds met: after projecting, the mean part <= eps_mean and the covariance part <= eps_cov, equal to the
  bound where the part was active (float64 to 1e-9 relative, float32 to ``F32_RTOL``);
* pass-through: parts inside the trust region come back bit for bit, with an identity gradient w.r.t. the
  new Gaussian and an exactly zero one w.r.t. the old Gaussian and the bounds;
* a zero bound under ``jit`` gives the old Gaussian exactly, without NaN;
* a matrix scale that is diagonal gives the diagonal projection (values and gradients);
* bad input raises one ``ValueError`` naming the problem, at trace time;
* no NaN at degenerate inputs (new == old, new = c * old, tiny and huge scales and bounds); NaN in gives NaN
  out for that state only;
* reverse-mode gradients match float64 finite differences;
* any leading batch shape, per-state or scalar bounds, ``vmap``: the same numbers as state by state.

Inputs are general: "full" factors are lower triangular with non-zero off-diagonal entries (not symmetric),
"sqrt" factors are dense and symmetric, covariances are dense and not diagonal, and every batch mixes states
whose mean and covariance parts are inside and outside the region. The solver-specific checks (KL against the
original C++ solver and the scipy oracle, the W2/Frobenius closed forms, large k and ill-conditioned cases)
live in test_kl.py, test_closed_form.py and test_scale_types.py.

Compile count: each variant compiles one value-and-VJP program per dtype (shared by the bound, pass-through,
zero-bound and NaN tests, all on the same [N, K] shapes) plus a few for the other shapes.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from tr_jax import distributions as D
from tr_jax import projections as P

N, K = 8, 3  # states per batch, action dimension
F64_RTOL = 1e-9
# float32: an active part lands on its bound to about 1e-5 relative for the steps used here (docs/projections.md,
# "Accuracy and speed"); 5e-4 is the documented worst case at eps = 1e-4 (KL)
F32_RTOL = 5e-4
# bound multipliers: eps = part * u (u never near 1, so activity does not hinge on rounding; down to 1e-3, bounds
# down to about 1e-4). State 0 is the old Gaussian itself (both parts 0, inside); the others give every (mean, cov)
# combination of active and inactive twice
U_MEAN = np.array([1.0, 0.3, 3.0, 1e-3, 3.0, 0.05, 3.0, 0.3])
U_COV = np.array([1.0, 0.3, 1e-3, 3.0, 3.0, 0.05, 0.3, 3.0])
_FAST = {"xla_backend_optimization_level": 0}  # small programs: XLA's backend passes cost more than they save


class Variant(NamedTuple):
    name: str
    cov_type: str
    options: tuple[tuple[str, Any], ...]

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)

    def __str__(self) -> str:
        flags = ["prec" if v else "eucl" for _, v in self.options]
        return "-".join([self.name, self.cov_type] + flags)


def accepted_cov_types(name: str) -> tuple[str, ...]:
    """The cov_types projection ``name`` takes, from its signature (``cov_type: Literal[...] | None``)."""
    hint = typing.get_type_hints(P.get_projection(name))["cov_type"]
    literal = next(a for a in typing.get_args(hint) if typing.get_args(a))
    return typing.get_args(literal)


def _variants() -> list[Variant]:
    out = []
    for name in P.NAMES:
        fn = P.get_projection(name)
        flags = (
            [(("scale_prec", True),), (("scale_prec", False),)]
            if "scale_prec" in inspect.signature(fn).parameters
            else [()]
        )
        for cov_type in accepted_cov_types(name):
            out += [Variant(name, cov_type, f) for f in flags]
    return out


VARIANTS = _variants()
MATRIX_VARIANTS = [v for v in VARIANTS if v.cov_type != "diag"]
DTYPES = ["float32", "float64"]


def test_variants_cover_every_projection_and_scale_type():
    assert {v.name for v in VARIANTS} == set(P.NAMES)
    assert {v.cov_type for v in VARIANTS} == set(D.COV_TYPES)  # every scale type is some projection's
    assert all(v.cov_type in ("diag", "full", "sqrt") for v in VARIANTS)


@pytest.fixture
def dtype_scope(request):
    """float64 enabled inside a test parametrised with ``dtype="float64"`` only."""
    with jax.enable_x64(request.node.callspec.params["dtype"] == "float64"):
        yield


# ----------------------------------------------------------------------------
# Inputs


def _spd(rng: np.random.Generator, n: int, k: int, cond: float) -> np.ndarray:
    """Dense SPD matrices [n, k, k], eigenvalues log-spread over a condition number ``cond``, random rotation."""
    q, _ = np.linalg.qr(rng.standard_normal((n, k, k)))
    ev = np.exp(rng.uniform(-0.5, 0.5, (n, k)) * np.log(cond))
    return (q * ev[:, None, :]) @ np.swapaxes(q, -1, -2)


def _sqrtm(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    s = (v * np.sqrt(w)[..., None, :]) @ np.swapaxes(v, -1, -2)
    return 0.5 * (s + np.swapaxes(s, -1, -2))


def to_scale(cov: np.ndarray, cov_type: str) -> np.ndarray:
    """The factor of ``cov`` [..., k, k] in ``cov_type`` (diag: the std of the diagonal)."""
    if cov_type == "diag":
        return np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    return np.linalg.cholesky(cov) if cov_type == "full" else _sqrtm(cov)


def _assert_general(scale: np.ndarray, cov_type: str) -> None:
    off = scale - np.eye(scale.shape[-1]) * np.diagonal(scale, axis1=-2, axis2=-1)[..., None, :]
    assert np.all(np.abs(off).max(axis=(-2, -1)) > 0.05), "matrix scales must not be diagonal"
    asym = np.abs(scale - np.swapaxes(scale, -1, -2)).max()
    if cov_type == "full":
        assert np.all(np.triu(scale, 1) == 0) and asym > 0.1, "a Cholesky factor is lower triangular, not symmetric"
    else:
        assert asym < 1e-12


@functools.cache
def gaussians(cov_type: str, seed: int = 0) -> tuple[np.ndarray, ...]:
    """New and old Gaussians (float64 numpy): means [N, K], scales [N, K] or [N, K, K]. State 0: new == old;
    state 1: the new covariance 4 times the old (a repeated whitened spectrum); the rest: new = M old M^T."""
    rng = np.random.default_rng(seed)
    old_cov = _spd(rng, N, K, cond=30.0)
    m = np.eye(K) + 0.6 * rng.standard_normal((N, K, K)) / np.sqrt(K)
    cov = m @ old_cov @ np.swapaxes(m, -1, -2)
    if cov_type == "diag":  # diagonal covariances, independently drawn stds
        old_std = np.exp(rng.uniform(-1.0, 1.0, (N, K)))
        std = old_std * np.exp(0.6 * rng.standard_normal((N, K)))
        old_cov, cov = (np.eye(K) * (s**2)[..., None, :] for s in (old_std, std))
    cov[0], cov[1] = old_cov[0], 4.0 * old_cov[1]
    old_mean = rng.standard_normal((N, K))
    mean = old_mean + np.einsum("nij,nj->ni", np.linalg.cholesky(old_cov), rng.standard_normal((N, K)))
    mean[0] = old_mean[0]
    scale, old_scale = to_scale(cov, cov_type), to_scale(old_cov, cov_type)
    if cov_type != "diag":
        _assert_general(scale, cov_type)
        _assert_general(old_scale, cov_type)
    return mean, scale, old_mean, old_scale


def _parts64(v: Variant, *args: Any) -> tuple[np.ndarray, np.ndarray]:
    """The distances ``v`` bounds, in float64 numpy (arguments upcast)."""
    with jax.enable_x64(True):
        args64 = [np.asarray(a, np.float64) for a in args]
        return tuple(np.asarray(x) for x in P.parts(v.name, *args64, cov_type=v.cov_type, **v.opts))


@functools.cache
def case(v: Variant, dtype: str) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """``(args, active_mean, active_cov)``: the six projection arguments in ``dtype`` (bounds [N]) and which
    parts of each state are outside the region."""
    state = gaussians(v.cov_type)
    mp, cp = _parts64(v, *state)
    eps_m, eps_c = (np.where(p > 0, p * u, 0.1) for p, u in ((mp, U_MEAN), (cp, U_COV)))
    args = tuple(np.asarray(a, dtype) for a in state + (eps_m, eps_c))
    return args, U_MEAN < 1, U_COV < 1


# ----------------------------------------------------------------------------
# One jitted program per variant (and dtype, by tracing): the projection and its VJP


@functools.cache
def value_and_vjp(v: Variant):
    """jit ``(ct_mean, ct_scale, *args) -> ((mean, scale), grads of <ct, out> w.r.t. all six args)``."""

    def run(ct_m, ct_s, *args):
        out, vjp = jax.vjp(lambda *a: P.project(v.name, *a, cov_type=v.cov_type, **v.opts), *args)
        return out, vjp((ct_m, ct_s))

    return jax.jit(run, compiler_options=_FAST)


@functools.cache
def projected(v: Variant, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    args, _, _ = case(v, dtype)
    with jax.enable_x64(dtype == "float64"):
        (pm, ps), _ = value_and_vjp(v)(np.zeros_like(args[0]), np.zeros_like(args[1]), *args)
        assert pm.dtype == dtype and ps.dtype == dtype
        assert pm.shape == args[0].shape and ps.shape == args[1].shape
        return np.asarray(pm), np.asarray(ps)


# ----------------------------------------------------------------------------
# Bounds met, pass-through, zero bound


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("v", VARIANTS, ids=str)
def test_bounds_met(v, dtype):
    """After projecting, each part is <= its bound, and equal to it where the part was active (measured in
    float64 on the outputs and the inputs the projection saw)."""
    args, act_m, act_c = case(v, dtype)
    pm, ps = projected(v, dtype)
    assert np.all(np.isfinite(pm)) and np.all(np.isfinite(ps))
    mp, cp = _parts64(v, pm, ps, args[2], args[3])
    rtol = F64_RTOL if dtype == "float64" else F32_RTOL
    for what, part, eps, active in (("mean", mp, args[4], act_m), ("cov", cp, args[5], act_c)):
        eps = np.asarray(eps, np.float64)
        assert np.all(part <= eps * (1 + rtol)), (what, np.max(part / eps))
        np.testing.assert_allclose(part[active], eps[active], rtol=rtol, err_msg=f"{what} part not on its bound")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("v", VARIANTS, ids=str)
def test_pass_through_inside_the_region(v, dtype, dtype_scope):
    """Parts inside the region come back bit for bit; their gradient is the identity w.r.t. the new Gaussian
    and exactly zero w.r.t. the old one and the bounds."""
    args, act_m, act_c = case(v, dtype)
    pm, ps = projected(v, dtype)
    np.testing.assert_array_equal(pm[~act_m], args[0][~act_m])
    np.testing.assert_array_equal(ps[~act_c], args[1][~act_c])
    assert np.any(pm[act_m] != args[0][act_m]) and np.any(ps[act_c] != args[1][act_c])  # the others move
    rng = np.random.default_rng(1)
    ct_m, ct_s = (rng.standard_normal(a.shape).astype(dtype) for a in args[:2])
    zero_m, zero_s = np.zeros_like(ct_m), np.zeros_like(ct_s)
    # a cotangent on the mean only reaches the new mean, where the mean part is inside; likewise for the scale
    for ct, inside, own in (((ct_m, zero_s), ~act_m, 0), ((zero_m, ct_s), ~act_c, 1)):
        _, grads = value_and_vjp(v)(*ct, *args)
        for i, g in enumerate(grads):
            expect = ct[own][inside] if i == own else 0.0
            np.testing.assert_array_equal(np.asarray(g)[inside], expect, err_msg=f"gradient w.r.t. argument {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("v", VARIANTS, ids=str)
def test_zero_bound_under_jit_gives_the_old_gaussian(v, dtype, dtype_scope):
    """Traced bounds of 0 (they cannot be checked): the old mean and scale bit for bit, no NaN. The Gaussians
    are NumPy constants of the jitted function here, as in user code. The gradients are finite, and the new mean
    gets none (the output is the old Gaussian) but in the state that is the old Gaussian. A bound's gradient is
    not NaN; it may be infinite (the one-sided derivative of w = sqrt(eps / d) in eps at 0 is; the closed-form
    mean parts give 0 there)."""
    args, _, _ = case(v, dtype)
    pm, ps = jax.jit(lambda e: P.project(v.name, *args[:4], e, e, cov_type=v.cov_type, **v.opts))(
        np.zeros_like(args[4])
    )
    np.testing.assert_array_equal(np.asarray(pm), args[2])
    np.testing.assert_array_equal(np.asarray(ps), args[3])

    def total(*a):
        pm, ps = P.project(v.name, *a, cov_type=v.cov_type, **v.opts)
        return pm.sum() + ps.sum()

    zero = np.zeros_like(args[4])
    grads = jax.jit(jax.grad(total, argnums=tuple(range(6))))(*args[:4], zero, zero)
    for i, g in enumerate(grads[:4]):
        assert np.isfinite(np.asarray(g)).all(), f"gradient w.r.t. argument {i} at a zero bound: {g}"
    for i, g in enumerate(grads[4:], 4):
        assert not np.isnan(np.asarray(g)).any(), f"gradient w.r.t. argument {i} at a zero bound: {g}"
    # state 0 is the old Gaussian itself: inside a zero region, it passes through (gradient 1)
    np.testing.assert_array_equal(np.asarray(grads[0])[1:], 0.0)


# ----------------------------------------------------------------------------
# A diagonal matrix scale gives the diagonal projection


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("v", MATRIX_VARIANTS, ids=str)
def test_diagonal_matrix_equals_diag(v):
    """A "full" ("sqrt") scale that is a diagonal matrix gives the "diag" projection of its diagonal: the same
    mean, the diagonal matrix of the projected std, and the same gradients w.r.t. means and stds."""
    diag = v._replace(cov_type="diag")
    args, _, _ = case(diag, "float64")
    mean, std, old_mean, old_std, eps_m, eps_c = args
    to_matrix = functools.partial(D.convert_scale, from_cov_type="diag", to_cov_type=v.cov_type)
    mat = (mean, to_matrix(std), old_mean, to_matrix(old_std), eps_m, eps_c)
    rng = np.random.default_rng(3)
    ct_m, ct_s = rng.standard_normal(mean.shape), rng.standard_normal(std.shape)
    (dm, ds), gd = value_and_vjp(diag)(ct_m, ct_s, *args)
    (fm, fs), gf = value_and_vjp(v)(ct_m, to_matrix(ct_s), *mat)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-12, atol=1e-14)
    close(fm, dm)
    close(fs, to_matrix(ds))
    for i in (0, 2, 4, 5):
        close(gf[i], gd[i], err_msg=f"gradient w.r.t. argument {i}")
    for i in (1, 3):
        close(np.diagonal(gf[i], axis1=-2, axis2=-1), gd[i], err_msg=f"gradient w.r.t. argument {i}")


# ----------------------------------------------------------------------------
# Bad input: one ValueError naming the problem, at trace time


def _bad_inputs(v: Variant) -> dict[str, tuple[tuple[Any, ...], dict[str, Any], str]]:
    """``what -> (args, options, message pattern)`` for projection ``v`` (float32 inputs)."""
    m, s, om, os = case(v, "float32")[0][:4]
    other = "diag" if v.cov_type != "diag" else next(c for c in accepted_cov_types(v.name) if c != "diag")
    _, so, _, oso = case(v._replace(cov_type=other), "float32")[0][:4]  # the other accepted scale layout
    vec, mat = ((s, os), (so, oso)) if v.cov_type == "diag" else ((so, oso), (s, os))
    flip = np.where(np.arange(N)[:, None] == 2, -1.0, 1.0).astype(np.float32)  # state 2's std negative
    ok = (m, s, om, os)
    cases = {
        "old_mean k": ((m, s, om[:, :1], os[..., :1, :1] if s.ndim == 3 else os[:, :1]), "shape"),
        "batch": ((m, s, om[:2], os[:2]), "same shapes"),
        "scale rank 3": ((m, mat[0][..., None], om, mat[1][..., None]), "wrong rank"),
        "scale rank 1": ((m, vec[0][:, 0], om, vec[1][:, 0]), "wrong rank"),
        "non-square": ((m, mat[0][..., :1], om, mat[1][..., :1]), "square"),
        "diag vs matrix": ((m, vec[0], om, mat[1]), "same shapes"),
        "scalar mean": ((m[0, 0], vec[0][0, 0], om[0, 0], vec[1][0, 0]), "scalar"),
        "int mean": ((m.astype(np.int32), s, om, os), "floating dtype"),
        "int scale": ((m, s, om, os.astype(np.int32)), "floating dtype"),
        "complex": ((m.astype(np.complex64), s, om, os), "floating dtype"),
        "bool mean": ((m > 0, s, om, os), "floating dtype"),
        "list mean": ((m.tolist(), s, om, os), "must be an array, got a Python list"),
        "bfloat16": (tuple(x.astype(jnp.bfloat16) for x in ok), "float32 or float64 only"),
        "float16": (tuple(x.astype(np.float16) for x in ok), "float32 or float64 only"),
        "mixed dtypes": ((m.astype(np.float64), s, om, os), "share one dtype"),
        "negative old std": ((m, vec[0], om, vec[1] * flip), "std <= 0"),
        "zero old std": ((m, vec[0], om, vec[1] * (flip > 0)), "std <= 0"),
        "negative new std": ((m, -vec[0], om, vec[1]), "std <= 0"),
    }
    cases = {what: (args, {}, match) for what, (args, match) in cases.items()}
    # a matrix factor with a diagonal entry <= 0 (new or old)
    own = next(c for c in accepted_cov_types(v.name) if c != "diag")
    good = case(v._replace(cov_type=own), "float32")[0][1]
    bad = good.copy()
    bad[1, 2, 2] = -bad[1, 2, 2] if own == "full" else 0.0
    cases["old factor diagonal <= 0"] = ((m, good, om, bad), {}, "diagonal entry .* <= 0")
    cases["new factor diagonal <= 0"] = ((m, bad, om, good), {}, "diagonal entry .* <= 0")
    # a matrix of another scale type: the projection's own reading of a matrix does not fit its values
    wrong = "sqrt" if own == "full" else "full"
    cov = good @ np.swapaxes(good, -1, -2) if own == "full" else good @ good
    wrong_scale = to_scale(cov.astype(np.float64), wrong).astype(np.float32)
    match = "above the diagonal" if own == "full" else "not symmetric"
    cases["wrong scale type"] = ((m, wrong_scale, om, wrong_scale), {}, match)
    cases["wrong old scale type"] = ((m, good, om, wrong_scale), {}, match)
    cases["wrong scale type, said"] = ((m, wrong_scale, om, wrong_scale), {"cov_type": own}, match)
    cases["unsupported cov_type"] = (
        (m, wrong_scale, om, wrong_scale),
        {"cov_type": wrong},
        f"does not take cov_type='{wrong}'",
    )
    cases["unknown cov_type"] = (ok, {"cov_type": "chol"}, "unknown scale parameterisation")
    cases["cov_type of the other rank"] = (ok, {"cov_type": other}, f"cov_type='{other}' needs")
    if "scale_prec" in v.opts:
        for bad_flag in ("yes", 1, None, jnp.array(True)):
            cases[f"scale_prec {bad_flag!r}"] = (ok, {"scale_prec": bad_flag}, "scale_prec must be a Python bool")
    return cases


def _bad_bounds(v: Variant) -> dict[str, tuple[Any, Any, str]]:
    """``what -> (eps_mean, eps_cov, message pattern)``."""
    cases = {}
    for which in ("eps_mean", "eps_cov"):
        for what, eps, match in (
            ("0", 0.0, "must be positive"),
            ("< 0", -1.0, "must be positive"),
            ("nan", float("nan"), "must be positive and finite"),
            ("inf", float("inf"), "must be positive and finite"),
            ("one state < 0", np.array([0.1] * (N - 1) + [-0.1]), "must be positive"),
            ("shape", np.ones(N - 1), "batch shape"),
            ("shape [N, 1]", np.ones((N, 1)), "batch shape"),
            ("bool", True, "boolean"),
            ("str", "0.1", which),
            ("complex", 1j, which),
        ):
            pair = (eps, 0.1) if which == "eps_mean" else (0.1, eps)
            cases[f"{which} {what}"] = (*pair, f"{which}.*{match}" if match != which else which)
    return cases


@pytest.mark.usefixtures("x64")  # float64 inputs keep their dtype (the mixed-dtype case)
@pytest.mark.parametrize("v", [v for v in VARIANTS if v.options in ((), (("scale_prec", True),))], ids=str)
def test_bad_input_raises_one_value_error(v):
    """Every bad input raises ``ValueError`` (never another error) with a message naming the problem: from
    the projection, from its parts function (scale errors), and under ``jit`` (at trace time)."""
    fn = P.get_projection(v.name)
    failures = []

    def expect(what, call, match):
        with pytest.raises(Exception) as info:
            call()
        if info.type is not ValueError or not info.match(match):
            failures.append(f"{what}: {info.type.__name__}: {info.value}")

    for what, (args, opts, match) in _bad_inputs(v).items():
        expect(what, lambda: fn(*args, 0.1, 0.1, **opts), match)
        expect(f"{what} (parts)", lambda: P.parts(v.name, *args, **opts), match)
    args = case(v, "float32")[0][:4]
    for what, (eps_m, eps_c, match) in _bad_bounds(v).items():
        expect(what, lambda: fn(*args, eps_m, eps_c), match)
    # under jit: shapes are static, and a closed-over (concrete) bound is checked
    expect("jit: batch", lambda: jax.jit(fn)(args[0], args[1], args[2][:2], args[3][:2], 0.1, 0.1), "same shapes")
    expect("jit: eps_cov < 0", lambda: jax.jit(lambda *a: fn(*a, 0.1, -0.5))(*args), "eps_cov must be positive")
    expect("jit: eps shape", lambda: jax.jit(fn)(*args, 0.1, np.ones(N + 1)), "batch shape")
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------
# NaN


def _degenerate(cov_type: str, dtype: str) -> tuple[np.ndarray, ...]:
    """72 states, k = K: old scales a general factor and the identity, each times 1e-4, 1 and 1e4; new scales
    c times the old (c = 1: the old Gaussian itself; 1 + 1e-9; 2 and 1e-3: a repeated whitened spectrum), the
    mean moved by 1 unless c = 1; bounds (both) 1e-8, 1 and 1e8."""
    general = gaussians(cov_type)[3][2]
    rows = []
    for base in (general, np.ones(K) if cov_type == "diag" else np.eye(K)):
        for level in (1e-4, 1.0, 1e4):
            for c in (1.0, 1.0 + 1e-9, 2.0, 1e-3):
                for eps in (1e-8, 1.0, 1e8):
                    o = level * base
                    rows.append((np.full(K, float(c != 1.0)), c * o, np.zeros(K), o, eps, eps))
    return tuple(np.stack([r[j] for r in rows]).astype(dtype) for j in range(6))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("v", VARIANTS, ids=str)
def test_no_nan_at_degenerate_inputs(v, dtype, dtype_scope):
    """new == old, new = c * old, tiny and huge scales and bounds: finite outputs and gradients."""
    args = _degenerate(v.cov_type, dtype)
    rng = np.random.default_rng(4)
    ct = tuple(rng.standard_normal(a.shape).astype(dtype) for a in args[:2])
    out, grads = value_and_vjp(v)(*ct, *args)
    for i, x in enumerate(out):
        assert np.all(np.isfinite(np.asarray(x))), f"output {i}"
    for i, g in enumerate(grads):
        assert np.all(np.isfinite(np.asarray(g))), f"gradient w.r.t. argument {i}"


@pytest.mark.parametrize("v", VARIANTS, ids=str)
def test_nan_in_gives_nan_out_for_that_state(v):
    """NaN in a state's input or (traced) bound gives NaN in that state's output, never a silent pass-through
    (a NaN bound counts as violated); the other states come out as without the NaN."""
    args, _, _ = case(v, "float32")
    clean_m, clean_s = projected(v, "float32")
    m, s, om, os, eps_m, eps_c = (a.copy() for a in args)
    m[1, 0] = np.nan
    s[(2, 1, 1) if s.ndim == 3 else (2, 1)] = np.nan  # a diagonal entry: read by every scale type
    os[(3, 1, 1) if os.ndim == 3 else (3, 1)] = np.nan
    eps_c[4] = np.nan  # state 4: both parts inside the region
    eps_m[0] = np.nan  # state 0: the old Gaussian itself
    zeros = np.zeros_like(m), np.zeros_like(s)
    (pm, ps), _ = value_and_vjp(v)(*zeros, m, s, om, os, eps_m, eps_c)
    pm, ps = np.asarray(pm), np.asarray(ps)
    assert np.all(np.isnan(pm[1])) and np.all(np.isnan(pm[0]))
    if v.name == "kl" or v.opts.get("scale_prec"):  # the mean part's metric reads the old scale
        assert np.all(np.isnan(pm[3]))
    for i in (2, 3, 4):
        assert np.any(np.isnan(ps[i])), f"state {i}"
    assert not np.any(np.isnan(ps[0])) and not np.any(np.isnan(pm[4]))
    np.testing.assert_array_equal(pm[5:], clean_m[5:])
    np.testing.assert_array_equal(ps[5:], clean_s[5:])


# ----------------------------------------------------------------------------
# Gradients


def _differentiable(v: Variant):
    """The projection of ``v`` as a function of all six arguments whose finite differences stay in the scale
    type: a "full" factor's upper triangle and a "sqrt" factor's asymmetric part are projected out."""
    keep = {"diag": lambda a: a, "full": jnp.tril, "sqrt": lambda a: 0.5 * (a + jnp.swapaxes(a, -1, -2))}
    fix = keep[v.cov_type]

    def fn(m, s, om, os, eps_m, eps_c):
        return P.project(v.name, m, fix(s), om, fix(os), eps_m, eps_c, cov_type=v.cov_type, **v.opts)

    return jax.jit(fn)  # (check_grads nests it in its own jit: no compiler options here)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("v", VARIANTS, ids=str)
def test_gradients_match_finite_differences(v):
    """Reverse-mode gradients w.r.t. all six arguments (bounds included) against float64 finite differences,
    with active and inactive parts in the batch; the bounds' gradient is non-zero exactly where a part is
    active."""
    args, act_m, act_c = case(v, "float64")
    # the states whose bounds are not tiny (eps >= 0.3 part: finite differences stay accurate), one or more of
    # each (mean, cov) combination of active and inactive parts
    some = np.flatnonzero((U_MEAN >= 0.3) & (U_COV >= 0.3))
    assert {(act_m[i], act_c[i]) for i in some} == {(a, c) for a in (False, True) for c in (False, True)}
    # KL: the solver's root is accurate to ~1e-9 relative, so finite differences take a smaller step and tolerance
    tol = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-5} if v.name == "kl" else {"atol": 1e-6, "rtol": 1e-6}
    check_grads(_differentiable(v), tuple(a[some] for a in args), order=1, modes=["rev"], **tol)
    rng = np.random.default_rng(5)
    ct = tuple(rng.standard_normal(a.shape) for a in args[:2])
    _, grads = value_and_vjp(v)(*ct, *args)
    for g, active in ((grads[4], act_m), (grads[5], act_c)):
        g = np.asarray(g)
        assert np.all(g[active] != 0) and np.all(g[~active] == 0)


# ----------------------------------------------------------------------------
# Batch shapes, vmap


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("v", VARIANTS, ids=str)
def test_batch_shapes_and_vmap_match_state_by_state(v):
    """Any leading batch shape, a vmap over it, and one state at a time (scalar bounds) give the numbers of
    the [N] batch."""
    args, _, _ = case(v, "float64")
    ref_m, ref_s = projected(v, "float64")
    fn = functools.partial(P.project, v.name, cov_type=v.cov_type, **v.opts)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-12, atol=1e-14)
    batch = (2, 1, N // 2)
    shaped = [a.reshape(batch + a.shape[1:]) for a in args]
    for out in (jax.jit(fn)(*shaped), jax.jit(jax.vmap(fn))(*shaped)):
        assert out[0].shape == shaped[0].shape and out[1].shape == shaped[1].shape
        close(np.asarray(out[0]).reshape(ref_m.shape), ref_m)
        close(np.asarray(out[1]).reshape(ref_s.shape), ref_s)
    single = jax.jit(fn, compiler_options=_FAST)
    for i in range(N):
        pm, ps = single(*(a[i] for a in args[:4]), float(args[4][i]), float(args[5][i]))
        close(pm, ref_m[i])
        close(ps, ref_s[i])
    mp, cp = P.parts(v.name, *shaped[:4], cov_type=v.cov_type, **v.opts)
    assert mp.shape == cp.shape == batch
