"""tr_jax: differentiable trust-region projection layers for Gaussian policies in JAX.

Public entry points (imported on first use, so ``import tr_jax`` stays light): :mod:`tr_jax.losses` (TRPL's
building blocks and PPO's clipped surrogate for your own agent), :mod:`tr_jax.projections`,
``tr_jax.TrustRegionLayer`` (a Flax policy head) and ``tr_jax.load_policy`` (a trained policy out of a run
directory; :mod:`tr_jax.policy` holds it, how a policy acts and its export). ``tr_jax.trpl`` is a deprecated
alias of ``tr_jax.losses``, kept for one release.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "losses": ("tr_jax.losses", None),
    "trpl": ("tr_jax.trpl", None),  # deprecated alias of losses
    "projections": ("tr_jax.projections", None),
    "TrustRegionLayer": ("tr_jax.layers", "TrustRegionLayer"),
    "load_policy": ("tr_jax.policy.loading", "load_policy"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'tr_jax' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)


__all__ = ["TrustRegionLayer", "load_policy", "losses", "projections"]  # (not the deprecated trpl)
