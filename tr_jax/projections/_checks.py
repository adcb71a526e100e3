"""Trace-time input validation and batching shared by all projections.

Shapes and dtypes are static under ``jit``, so every check here raises a
``ValueError`` while tracing, before any computation. Bounds (``eps``) are
checked for positivity when they are concrete (Python numbers or concrete
arrays); traced bounds can only be checked for shape and dtype.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Layout(NamedTuple):
    """Static description of a batch of Gaussians.

    diag: True for std-vector scales ``[..., k]``, False for ``[..., k, k]``.
    batch_shape: the leading batch dimensions ``[...]``.
    k: the event (action) dimension.
    """

    diag: bool
    batch_shape: tuple
    k: int


def _check_float(name: str, x) -> None:
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name} must have a floating dtype (float32/float64), got {dtype}")


def check_gaussian(mean, scale, name: str = "") -> Layout:
    """Validates one batch of Gaussians; returns its :class:`Layout`.

    mean: ``[..., k]``; scale: ``[..., k]`` (diag std) or ``[..., k, k]``.
    """
    pre = f"{name} " if name else ""
    _check_float(f"{pre}mean", mean)
    _check_float(f"{pre}scale", scale)
    mean_shape, scale_shape = jnp.shape(mean), jnp.shape(scale)
    if len(mean_shape) < 1:
        raise ValueError(f"{pre}mean must have shape [..., k], got a scalar")
    k = mean_shape[-1]
    if k < 1:
        raise ValueError(f"{pre}mean has an empty event dimension: shape {mean_shape}")
    if scale_shape == mean_shape:
        return Layout(True, tuple(mean_shape[:-1]), k)
    if len(scale_shape) == len(mean_shape) + 1:
        if scale_shape[-1] != scale_shape[-2]:
            raise ValueError(f"{pre}scale matrix must be square [..., k, k], got shape {scale_shape}")
        if scale_shape != mean_shape + (k,):
            raise ValueError(
                f"{pre}scale shape {scale_shape} does not match mean shape {mean_shape}: "
                f"expected {mean_shape + (k,)} (full) or {mean_shape} (diagonal)"
            )
        return Layout(False, tuple(mean_shape[:-1]), k)
    raise ValueError(
        f"{pre}scale has the wrong rank: shape {scale_shape} for mean shape {mean_shape}; "
        f"expected {mean_shape} (diagonal std) or {mean_shape + (k,)} (full matrix)"
    )


def check_pair(mean, scale, old_mean, old_scale) -> Layout:
    """Validates new and old Gaussians and that they match in shape and dtype."""
    new = check_gaussian(mean, scale, "new")
    old = check_gaussian(old_mean, old_scale, "old")
    if jnp.shape(mean) != jnp.shape(old_mean) or jnp.shape(scale) != jnp.shape(old_scale):
        raise ValueError(
            "new and old Gaussians must have the same shapes: mean "
            f"{jnp.shape(mean)} vs old_mean {jnp.shape(old_mean)}, scale {jnp.shape(scale)} "
            f"vs old_scale {jnp.shape(old_scale)}"
        )
    dtypes = {jnp.result_type(x) for x in (mean, scale, old_mean, old_scale)}
    if len(dtypes) != 1:
        raise ValueError(f"mean, scale, old_mean and old_scale must share one dtype, got {sorted(map(str, dtypes))}")
    assert new == old
    return new


def check_bound(name: str, eps, batch_shape: tuple, allow_zero: bool = False):
    """Validates a bound: a scalar or one value per state (``batch_shape``).

    Raises ``ValueError`` for non-float/int dtypes, wrong shapes, and, when the
    value is concrete, for non-positive (or non-finite) values.
    """
    if isinstance(eps, bool) or (hasattr(eps, "dtype") and jnp.result_type(eps) == jnp.bool_):
        raise ValueError(f"{name} must be a number, got a boolean")
    if isinstance(eps, (str, bytes)) or eps is None:
        raise ValueError(f"{name} must be a number or an array of numbers, got {type(eps).__name__} {eps!r}")
    try:
        dtype = jnp.result_type(eps)
    except TypeError as err:
        raise ValueError(f"{name} must be a number or an array of numbers, got {type(eps).__name__}") from err
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise ValueError(f"{name} must be a real number, got dtype {dtype}")
    shape = jnp.shape(eps)
    if shape not in ((), tuple(batch_shape)):
        raise ValueError(
            f"{name} must be a scalar or have the batch shape {tuple(batch_shape)} (one bound per state), got shape {shape}"
        )
    if not isinstance(eps, jax.core.Tracer):
        value = np.asarray(eps, dtype=np.float64)
        lo_ok = value >= 0 if allow_zero else value > 0
        if not np.all(lo_ok & np.isfinite(value)):
            what = "non-negative" if allow_zero else "positive"
            raise ValueError(f"{name} must be {what} and finite, got {value if value.ndim == 0 else value[~(lo_ok & np.isfinite(value))][:5]}")


def as_bound(eps, batch_shape: tuple, dtype) -> jax.Array:
    """Broadcasts a validated bound to ``batch_shape`` in ``dtype``."""
    return jnp.broadcast_to(jnp.asarray(eps, dtype=dtype), batch_shape)


def batched(fn: Callable, batch_shape: tuple, *args):
    """Applies a per-state ``fn`` over any number of leading batch dims.

    Every array in ``args`` must start with ``batch_shape``; outputs are
    reshaped back to ``batch_shape + per-state shape``.
    """
    if len(batch_shape) == 0:
        return fn(*args)
    n = int(np.prod(batch_shape))
    flat = [jnp.reshape(a, (n,) + jnp.shape(a)[len(batch_shape):]) for a in args]
    out = jax.vmap(fn)(*flat)
    return jax.tree_util.tree_map(lambda o: jnp.reshape(o, tuple(batch_shape) + o.shape[1:]), out)


def check_flag(name: str, value) -> bool:
    """Validates a static boolean option (e.g. ``scale_prec``); returns it as bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a Python bool (a static option), got {type(value).__name__} {value!r}")
    return bool(value)


def check_projection(mean, scale, old_mean, old_scale, eps_mean, eps_cov):
    """Validates the arguments of a mean + covariance projection.

    Returns ``(layout, eps_mean, eps_cov)`` with both bounds broadcast to
    ``layout.batch_shape`` in the Gaussians' dtype.
    """
    layout = check_pair(mean, scale, old_mean, old_scale)
    check_bound("eps_mean", eps_mean, layout.batch_shape)
    check_bound("eps_cov", eps_cov, layout.batch_shape)
    dtype = jnp.result_type(mean)
    return (
        layout,
        as_bound(eps_mean, layout.batch_shape, dtype),
        as_bound(eps_cov, layout.batch_shape, dtype),
    )
