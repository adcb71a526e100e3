"""Trained policies: how a policy acts, loading one out of a run directory, exporting it as a file.

Three modules on three layers (docs/getting-started.md, "Code layout and layers"):

* :mod:`tr_jax.policy.acting` (RL core): :class:`~tr_jax.policy.acting.ActingPolicy`,
  :func:`~tr_jax.policy.acting.acting_policy`, :func:`~tr_jax.policy.acting.obs_normalizer` -- how a policy
  acts; the trainer's rollouts and evaluation act through it.
* :mod:`tr_jax.policy.loading` (runs): :class:`~tr_jax.policy.loading.LoadedPolicy`,
  :func:`~tr_jax.policy.loading.load_policy` (also ``tr_jax.load_policy``) -- one seed of a run directory's
  checkpoint as an ``ActingPolicy`` with the run's context.
* :mod:`tr_jax.policy.export` (tools): :func:`~tr_jax.policy.export.export_policy` (``tr-jax export``),
  :class:`~tr_jax.policy.export.Exported`, :func:`~tr_jax.policy.export.check_out` -- the policy as a file that
  needs only JAX (or an ONNX model).

The names here are imported on first use, so importing :mod:`tr_jax.policy.acting` (as the trainer does) loads
neither the loading nor the export module. ``tr_jax.acting``, ``tr_jax.inference`` and ``tr_jax.export`` are
deprecated aliases of the three modules, kept for one release.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (for type checkers; at run time __getattr__ imports each name's module on first use)
    from tr_jax.policy.acting import ActingPolicy, acting_policy, obs_normalizer
    from tr_jax.policy.export import Exported, check_out, export_policy
    from tr_jax.policy.loading import LoadedPolicy, load_policy

_MODULE = {
    "ActingPolicy": "acting",
    "acting_policy": "acting",
    "obs_normalizer": "acting",
    "LoadedPolicy": "loading",
    "load_policy": "loading",
    "Exported": "export",
    "check_out": "export",
    "export_policy": "export",
}


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(f"module 'tr_jax.policy' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tr_jax.policy.{_MODULE[name]}"), name)


__all__ = [
    "ActingPolicy",
    "acting_policy",
    "obs_normalizer",
    "LoadedPolicy",
    "load_policy",
    "Exported",
    "check_out",
    "export_policy",
]
