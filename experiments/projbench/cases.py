"""Inputs of the projection benchmark and its target cases (speed against the C++ reference, accuracy).

The C++ reference was timed on the same inputs, so the numbers compare with it
measured on the same machine kind:

* diag: old variances log-uniform in [0.1, 10]; new = old * log-uniform
  [0.1, 10] per dimension; about 10% of the states only move slightly (log
  variance ratio uniform in +-0.006), which keeps them inside the KL region.
* full: old = (A A^T + k I) / (2k), A standard normal; new = M old M^T with
  M = I + 0.3 G / sqrt(k), G standard normal (0.003 instead of 0.3 for ~10%).
* means: old standard normal; new = old + c * scale_old @ z / sqrt(k), z
  standard normal, c = 0.3 (0.003 for the same ~10% of states).
* full scales are lower Cholesky factors (cov_type "full") for kl and frob,
  the symmetric square root ("sqrt") for w2.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

PROJECTIONS = {
    # name: (projection function, parts function, cov_type of its full scales)
    "kl": ("kl_projection", "kl_parts", "full"),
    "w2": ("wasserstein_projection", "wasserstein_parts", "sqrt"),
    "frob": ("frobenius_projection", "frobenius_parts", "full"),
}
DEFAULT_N = (1024, 4096, 65536, 1048576)
QUICK = dict(n=[64], k=[3], dtype=["float64"])  # --quick defaults (explicit flags win)
SLIGHT_FRACTION = 0.1
# Rough peak memory of one forward+backward case, in units of one scale-sized
# array ([N, k] or [N, k, k]): inputs, cotangents, outputs, solver
# intermediates and backward residuals. Deliberately on the safe side.
MEMORY_FACTOR = 16


class Target(NamedTuple):
    """One target case: forward+backward time at most ``max_ms``."""

    name: str
    cov: str
    n: int
    k: int
    max_ms: float
    cpp_ms: float  # the C++ reference, forward + backward, measured on this machine kind


TARGETS = (
    Target("KL diag N=65536 k=17", "diag", 65536, 17, 26.0, 261.0),
    Target("KL full N=4096 k=17", "full", 4096, 17, 219.0, 1095.0),  # 5x the C++ time
    Target("KL full N=65536 k=6", "full", 65536, 6, 420.0, 4262.0),
)


def target_cases() -> list[tuple]:
    """``(cov, k, dtype, n, projs)`` of the target cases in run order: each target in float64, then float32;
    W2 beside KL for diag (the ratio target), KL alone for full."""
    return [
        (t.cov, t.k, dtype, t.n, ["kl", "w2"] if t.cov == "diag" else ["kl"])
        for dtype in ("float64", "float32")
        for t in TARGETS
    ]


MAX_W2_RATIO = 3.0  # KL diag fwd+bwd <= 3x W2 diag fwd+bwd on the same inputs
MAX_FLOOR_RATIO = 4.0  # KL diag fwd+bwd <= 4x its floor (the elementwise map) on the same inputs
TARGET_ACCURACY_F64 = 1e-8


def _key(seed: int, k: int):
    """PRNG key per (seed, k). "rbg" compiles much faster than threefry on CPU."""
    return jax.random.fold_in(jax.random.key(seed, impl="rbg"), k)


def make_gaussians(key, n: int, k: int, dtype, cov: str) -> dict:
    """Old and new Gaussians for ``n`` states, generated on the device.

    Returns a dict with ``mean``, ``old_mean`` ``[n, k]`` and either ``std``,
    ``old_std`` ``[n, k]`` (diag) or ``cov``, ``old_cov`` ``[n, k, k]`` (full).
    """
    return _make_gaussians(key, n, k, jnp.dtype(dtype), cov)


def _gen(n, k, dtype, cov):
    def gen(key):
        keys = jax.random.split(key, 6)
        slight = jax.random.uniform(keys[0], (n,)) < SLIGHT_FRACTION
        step = jnp.where(slight, 0.003, 0.3).astype(dtype)  # [n]
        old_mean = jax.random.normal(keys[1], (n, k), dtype)
        z = jax.random.normal(keys[2], (n, k), dtype) * (step / math.sqrt(k))[:, None]
        if cov == "diag":
            lo, hi = math.log(0.1), math.log(10.0)
            u = jax.random.uniform(keys[3], (n, k), dtype)
            old_var = jnp.exp(lo + u * (hi - lo))
            u = jax.random.uniform(keys[4], (n, k), dtype)
            log_ratio = jnp.where(slight[:, None], 0.006 * (2.0 * u - 1.0), lo + u * (hi - lo))
            old_std = jnp.sqrt(old_var)
            return dict(
                mean=old_mean + old_std * z,
                old_mean=old_mean,
                std=jnp.sqrt(old_var * jnp.exp(log_ratio)),
                old_std=old_std,
            )
        eye = jnp.eye(k, dtype=dtype)
        a = jax.random.normal(keys[3], (n, k, k), dtype)
        old_cov = (a @ jnp.swapaxes(a, -1, -2) + k * eye) / (2 * k)
        g = jax.random.normal(keys[4], (n, k, k), dtype)
        m = eye + g * (step / math.sqrt(k))[:, None, None]
        new_cov = m @ old_cov @ jnp.swapaxes(m, -1, -2)
        new_cov = 0.5 * (new_cov + jnp.swapaxes(new_cov, -1, -2))
        old_chol = jnp.linalg.cholesky(old_cov)
        return dict(
            mean=old_mean + (old_chol @ z[..., None])[..., 0],
            old_mean=old_mean,
            cov=new_cov,
            old_cov=old_cov,
        )

    return gen


_GEN_CACHE: dict = {}


def _make_gaussians(key, n, k, dtype, cov):
    sig = (n, k, str(dtype), cov)
    if sig not in _GEN_CACHE:
        _GEN_CACHE[sig] = jax.jit(_gen(n, k, dtype, cov))
    return _GEN_CACHE[sig](key)


@jax.jit
def _chol(cov):
    return jnp.linalg.cholesky(cov)


@jax.jit
def _sqrtm(cov):
    w, v = jnp.linalg.eigh(cov)
    s = (v * jnp.sqrt(jnp.clip(w, 0.0))[..., None, :]) @ jnp.swapaxes(v, -1, -2)
    return 0.5 * (s + jnp.swapaxes(s, -1, -2))


def scales_for(gauss: dict, cov_type: str):
    """``(scale, old_scale)`` of a full or diag case, in ``cov_type`` ("full" or "sqrt";
    ignored for diag inputs)."""
    if "std" in gauss:
        return gauss["std"], gauss["old_std"]
    if cov_type not in gauss:  # cached: kl and frob share the Cholesky factors
        fn = _chol if cov_type == "full" else _sqrtm
        gauss[cov_type] = jax.block_until_ready((fn(gauss["cov"]), fn(gauss["old_cov"])))
    return gauss[cov_type]


def estimate_gb(n: int, k: int, dtype, cov: str) -> float:
    """Rough peak memory of one case in GB (see ``MEMORY_FACTOR``)."""
    per_state = k * (k if cov == "full" else 1) * jnp.dtype(dtype).itemsize
    return MEMORY_FACTOR * n * per_state / 1e9


def floor_project(cov: str):
    """The floor of a case: a function with a projection's signature that
    does the least work a projection of that covariance type can do.

    * diag: one product per element, ``(mean^2 old_mean, std^2 old_std)``: a
      memory-bound map with the same inputs and outputs, whose VJP reads every
      input (so forward+backward moves the same arrays as a projection's);
    * full: one batched ``jnp.linalg.eigh`` of the (symmetrised) new scale
      matrices, returning ``v diag(w)`` (and the diag map for the mean).

    A projection's time divided by its floor's, measured in the same process,
    says how far it is from that limit (``x floor`` in the table).
    """

    def floor(mean, scale, old_mean, old_scale, eps_mean, eps_cov):
        mean_out = mean * mean * old_mean
        if cov == "diag":
            return mean_out, scale * scale * old_scale
        w, v = jnp.linalg.eigh(scale)
        return mean_out, v * w[..., None, :]

    return floor


# --------------------------------------------------------------------------- timing
