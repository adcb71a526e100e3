"""tr_jax: differentiable trust-region projection layers for Gaussian policies in JAX.

Public entry points (imported on first use, so ``import tr_jax`` stays light): :mod:`tr_jax.trpl` (TRPL's
building blocks for your own agent), :mod:`tr_jax.projections`, ``tr_jax.TrustRegionLayer`` (a Flax policy
head) and ``tr_jax.load_policy`` (a trained policy out of a run directory).
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "trpl": ("tr_jax.trpl", None),
    "projections": ("tr_jax.projections", None),
    "TrustRegionLayer": ("tr_jax.layers", "TrustRegionLayer"),
    "load_policy": ("tr_jax.inference", "load_policy"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'tr_jax' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)


__all__ = ["TrustRegionLayer", "load_policy", "projections", "trpl"]
