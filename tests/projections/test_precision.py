"""Every matrix product of the math layer is float32 on every backend.

By default a float32 dot may run in TF32 on NVIDIA GPUs and in bfloat16 passes on TPUs; only a product that
states ``Precision.HIGHEST`` is float32 there. A CPU ignores the field, so these tests read it where it is
written: the StableHLO of value-and-gradient programs exported for ``cuda`` and for ``tpu`` (no device needed).
Every ``stablehlo.dot_general`` (or ``dot``) in them must carry ``precision = [HIGHEST, HIGHEST]``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tr_jax import distributions as D
from tr_jax import losses
from tr_jax import projections as P
from tr_jax.layers import TrustRegionLayer

PLATFORMS = ("cuda", "tpu")
N, K = 64, 6
# the cov_types each projection accepts
ACCEPTS = {"kl": ("diag", "full"), "frob": ("diag", "full"), "w2": ("diag", "sqrt")}
_DOT = re.compile(r"stablehlo\.dot(_general)?\b")
_HIGHEST = "precision = [HIGHEST, HIGHEST]"


def gaussians(cov_type, seed=0):
    """New and old float32 Gaussians, ``N`` states of ``K`` dims, in ``cov_type``; the new ones are far enough
    from the old ones that both parts of every projection are active at the bounds used below."""
    rng = np.random.default_rng(seed)
    old_mean = rng.standard_normal((N, K))
    mean = old_mean + rng.standard_normal((N, K))
    if cov_type == "diag":
        old_scale = np.exp(0.3 * rng.standard_normal((N, K)))
        scale = old_scale * np.exp(rng.standard_normal((N, K)))
    else:
        covs = []
        for _ in range(2):
            a = rng.standard_normal((N, K, K))
            covs.append(a @ np.swapaxes(a, -1, -2) / K + 0.5 * np.eye(K))
        if cov_type == "full":
            scale, old_scale = (np.linalg.cholesky(c) for c in covs)
        else:
            w, v = np.linalg.eigh(np.stack(covs))
            scale, old_scale = (v * np.sqrt(w)[..., None, :]) @ np.swapaxes(v, -1, -2)
    return tuple(np.asarray(x, np.float32) for x in (mean, scale, old_mean, old_scale))


def _scalar(out) -> jax.Array:
    return sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(out))


def dots(fn, args, platform):
    """The dot lines of ``jit(value_and_grad(sum(sin(fn(*args)))))`` (w.r.t. every argument) exported for
    ``platform``."""
    program = jax.jit(jax.value_and_grad(lambda *a: _scalar(fn(*a)), argnums=tuple(range(len(args)))))
    module = jax.export.export(program, platforms=[platform])(*args).mlir_module()
    return [line.strip() for line in module.splitlines() if _DOT.search(line)]


def assert_highest(fn, args, min_dots=1):
    for platform in PLATFORMS:
        found = dots(fn, args, platform)
        assert len(found) >= min_dots, f"{platform}: expected at least {min_dots} dot(s), found {len(found)}"
        loose = [line for line in found if _HIGHEST not in line]
        assert not loose, f"{platform}: {len(loose)} of {len(found)} dots without {_HIGHEST}, e.g. {loose[0][:300]}"


def _cases():
    return [(name, ct) for name in P.NAMES for ct in ACCEPTS[name]]


@pytest.mark.parametrize(("name", "cov_type"), _cases())
def test_projection_products_are_highest(name, cov_type):
    args = gaussians(cov_type)
    # diagonal Gaussians need no matrix product; full and sqrt ones do (whitening, covariances, the KL dual)
    need = 0 if cov_type == "diag" else 1
    assert_highest(lambda *a: P.project(name, *a, 0.05, 0.01, cov_type=cov_type), args, need)
    assert_highest(lambda *a: P.parts(name, *a, cov_type=cov_type), args, need)


@pytest.mark.parametrize("cov_type", ["full", "sqrt"])
def test_entropy_and_distribution_products_are_highest(cov_type):
    mean, scale, old_mean, old_scale = gaussians(cov_type)

    def fn(mean, scale, old_mean, old_scale):
        return (
            P.entropy_projection(scale, 3.0, cov_type=cov_type),
            D.log_prob(old_mean, mean, scale, cov_type),
            D.kl(mean, scale, old_mean, old_scale, cov_type),
            D.precision(scale, cov_type),
            D.covariance(scale, cov_type),
            D.sample(jax.random.key(0), mean, scale, cov_type),
            D.convert_scale(scale, cov_type, "sqrt" if cov_type == "full" else "full"),
        )

    assert_highest(fn, (mean, scale, old_mean, old_scale))


# the policy's cov_type and the projections that take it (a "sqrt" policy is projected in its Cholesky factor
# by KL and Frobenius)
_TRPL = [(name, ct) for name in P.NAMES for ct in ("diag", "full", "sqrt") if not (name == "w2" and ct == "full")]


@pytest.mark.parametrize(("name", "cov_type"), _TRPL)
def test_trust_region_losses_are_highest(name, cov_type):
    args = gaussians(cov_type, seed=1)

    def fn(mean, scale, old_mean, old_scale):
        projected, raw = losses.project_gaussians(
            name, mean, scale, old_mean, old_scale, 0.05, 0.01, cov_type=cov_type, entropy_bound=3.0
        )
        loss = losses.trust_region_loss(name, raw, projected, cov_type=cov_type)
        work = losses.projection_cov_type(cov_type, name)
        log_prob = D.log_prob(old_mean, projected[0], projected[1], work)
        return loss + losses.trpl_surrogate(log_prob, jnp.zeros(N), jnp.ones(N)), projected

    assert_highest(fn, args, 0 if cov_type == "diag" else 1)


def test_layer_products_are_highest():
    layer = TrustRegionLayer("kl", "sqrt", eps_mean=0.05, eps_cov=0.01)
    assert_highest(layer, gaussians("sqrt", seed=2))


def test_the_check_reads_what_it_claims():
    """The same reading finds a product of the default precision (the check is not vacuous)."""
    a = np.ones((N, K, K), np.float32)
    found = {p: dots(lambda x: x @ x, (a,), p) for p in PLATFORMS}
    assert all(found.values()) and not any(_HIGHEST in line for lines in found.values() for line in lines)
