"""Choosing a projection by name (for configs).

Names: "kl", "w2" (alias "wasserstein") and "frob" (alias "frobenius").
Names are resolved in Python, at trace time, so a jitted caller pays nothing.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, Literal, cast

import jax
from jax.typing import ArrayLike

from tr_jax.choices import PROJECTIONS as NAMES

ProjectionName = Literal["kl", "w2", "frob", "wasserstein", "frobenius"]
"""A projection's name: one of :data:`NAMES` or an alias (any letter case is accepted at run time)."""
_ALIASES = {"wasserstein": "w2", "frobenius": "frob"}
# name -> (module, projection function, parts function)
_TABLE = {
    "kl": ("tr_jax.projections.kl", "kl_projection", "kl_parts"),
    "w2": ("tr_jax.projections.wasserstein", "wasserstein_projection", "wasserstein_parts"),
    "frob": ("tr_jax.projections.frobenius", "frobenius_projection", "frobenius_parts"),
}


def canonical_name(name: str) -> Literal["kl", "w2", "frob"]:
    """Returns the canonical projection name or raises ``ValueError``."""
    if not isinstance(name, str):
        raise ValueError(f"projection name must be a string, got {type(name).__name__} {name!r}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _TABLE:
        raise ValueError(f"unknown projection {name!r}; expected one of {NAMES} (aliases: {sorted(_ALIASES)})")
    return cast(Literal["kl", "w2", "frob"], key)


def _lookup(name: str, which: int) -> Callable[..., Any]:
    module, *fns = _TABLE[canonical_name(name)]
    return getattr(importlib.import_module(module), fns[which])


def get_projection(name: str) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """The projection function for ``name``; signature
    ``(mean, scale, old_mean, old_scale, eps_mean, eps_cov, **options)``."""
    return _lookup(name, 0)


def get_parts(name: str) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """The distance-parts function for ``name``; signature
    ``(mean, scale, old_mean, old_scale, **options)`` -> ``(mean_part, cov_part)``."""
    return _lookup(name, 1)


def _check_options(fn: Callable[..., Any], name: str, given: dict[str, Any], positional: int) -> None:
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    allowed = {p.name for p in params[positional:] if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(
            f"projection {name!r} does not take option(s) {unknown}; its options are {sorted(allowed) or 'none'}"
        )


def project(
    name: ProjectionName,
    mean: ArrayLike,
    scale: ArrayLike,
    old_mean: ArrayLike,
    old_scale: ArrayLike,
    eps_mean: ArrayLike,
    eps_cov: ArrayLike,
    **options: Any,
) -> tuple[jax.Array, jax.Array]:
    """Trust-region projection chosen by name.

    Args:
      name: "kl", "w2" or "frob" (or "wasserstein", "frobenius").
      mean, old_mean: ``[..., k]``; scale, old_scale: ``[..., k]`` std vectors
        or ``[..., k, k]`` factors (Cholesky for "kl"/"frob", symmetric sqrt
        for "w2").
      eps_mean, eps_cov: scalars or ``[...]``.
      **options: passed on: ``cov_type`` (all), ``scale_prec`` ("w2"/"frob").
    Returns:
      ``(projected_mean, projected_scale)`` as the chosen projection.
    Raises:
      ValueError: for an unknown name or an option the projection does not take
        (plus every input error of the projection itself).
    """
    fn = get_projection(name)
    _check_options(fn, name, options, positional=6)
    return fn(mean, scale, old_mean, old_scale, eps_mean, eps_cov, **options)


def parts(
    name: ProjectionName, mean: ArrayLike, scale: ArrayLike, old_mean: ArrayLike, old_scale: ArrayLike, **options: Any
) -> tuple[jax.Array, jax.Array]:
    """The ``(mean_part, cov_part)`` distances, each ``[...]``, that projection
    ``name`` bounds. Arguments as in :func:`project`."""
    fn = get_parts(name)
    _check_options(fn, name, options, positional=4)
    return fn(mean, scale, old_mean, old_scale, **options)
