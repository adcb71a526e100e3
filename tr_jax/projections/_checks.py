"""Trace-time input validation and batching shared by all projections.

Shapes and dtypes are static under ``jit``, so every check here raises a
``ValueError`` while tracing, before any computation. Bounds (``eps``) are
checked for positivity when they are concrete (Python numbers or concrete
arrays); traced bounds can only be checked for shape and dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from tr_jax import distributions as D
from tr_jax.distributions import CovType


class Layout(NamedTuple):
    """Static description of a batch of Gaussians.

    cov_type: the scale parameterisation, "diag" (std vectors ``[..., k]``),
      "full" (lower Cholesky factors ``[..., k, k]``) or "sqrt" (symmetric
      square roots ``[..., k, k]``); see :mod:`tr_jax.distributions`.
    batch_shape: the leading batch dimensions ``[...]``.
    """

    cov_type: CovType
    batch_shape: tuple[int, ...]


Pair = tuple[jax.Array, jax.Array]
"""Two arrays of one projection problem: a Gaussian's ``(mean, scale)`` or the bounds ``(eps_mean, eps_cov)``."""


class Accepts(NamedTuple):
    """What a function checked here takes, for :func:`resolve_cov_type`.

    what: the function's name, for messages.
    allowed: the cov_types it accepts.
    matrix_default: the cov_type a matrix scale gets when ``cov_type`` is
      None, or None if the caller must say it.
    """

    what: str
    allowed: tuple[str, ...]
    matrix_default: CovType | None


# The smallest bounds (eps_mean, eps_cov) each dtype meets: below them the
# rounding of the outputs alone is about 1% of the bound or more (float32:
# 0.3% at 1e-8, 3% at 1e-10, 30% at 1e-12; see tr_jax.projections.kl).
BOUND_FLOOR = {"float32": 1e-8, "float64": 1e-12}
_DTYPES = tuple(BOUND_FLOOR)


def _check_float(name: str, x: Any) -> None:
    if isinstance(x, (list, tuple)):
        raise ValueError(f"{name} must be an array, got a Python {type(x).__name__}; convert it with jnp.asarray")
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name} must have a floating dtype (float32/float64), got {dtype}")
    if str(dtype) not in _DTYPES:
        raise ValueError(
            f"{name} has dtype {dtype}; the projections compute in float32 or float64 only (their bounds are not "
            "met in lower precision): cast the inputs with .astype(jnp.float32)"
        )


def bound_floor(dtype: DTypeLike) -> float:
    """The smallest bound the projections meet in ``dtype`` (float32: 1e-8, float64: 1e-12)."""
    return BOUND_FLOOR[str(jnp.dtype(dtype))]


def check_bound_floor(name: str, eps: Any, dtype: DTypeLike, what: str) -> None:
    """Raises ``ValueError`` if a concrete positive bound is below :func:`bound_floor` of ``dtype``."""
    if isinstance(eps, jax.core.Tracer):
        return
    floor = bound_floor(dtype)
    value = np.asarray(eps, dtype=np.float64)
    if np.any(value < floor):
        raise ValueError(
            f"{what}: {name} = {float(np.min(value)):.3g} is below {floor:g}, the smallest bound it meets in "
            f"{jnp.dtype(dtype)} (rounding alone would break it); use a larger bound or float64"
        )


def check_positive_scale(scale: Any, cov_type: CovType, name: str) -> None:
    """Raises ``ValueError`` if a concrete ``scale`` has a std (diagonal) or a
    diagonal entry of its factor (full, sqrt) that is <= 0. NaN passes (NaN
    in, NaN out); traced scales cannot be checked."""
    if isinstance(scale, jax.core.Tracer):
        return
    x = np.asarray(scale)
    diag = x if cov_type == "diag" else np.diagonal(x, axis1=-2, axis2=-1)
    bad = diag <= 0
    if np.any(bad):
        what = "std" if cov_type == "diag" else f"diagonal entry of a cov_type={cov_type!r} factor"
        raise ValueError(f"{name} has a {what} <= 0 (smallest {float(np.min(diag[bad])):.3g}); scales must be positive")


def resolve_cov_type(cov_type: str | None, is_matrix: bool, accepts: Accepts) -> CovType:
    """The scale parameterisation of a function's input.

    Args:
      cov_type: the caller's ``cov_type`` argument (None: infer).
      is_matrix: whether the scale is ``[..., k, k]`` (from the shapes).
      accepts: what the function takes and its name.
    """
    what, allowed, matrix_default = accepts
    if cov_type is None:
        if not is_matrix:
            return "diag"
        if matrix_default is None:
            raise ValueError(
                f"{what}: the scale is a matrix [..., k, k]; say what it is with cov_type='full' "
                "(lower Cholesky factor, Sigma = L L^T) or cov_type='sqrt' (symmetric square root, Sigma = S S)"
            )
        return matrix_default
    cov_type = D.check_cov_type(cov_type)
    if cov_type not in allowed:
        raise ValueError(f"{what} does not take cov_type={cov_type!r}; it takes one of {allowed}")
    if (cov_type != "diag") != is_matrix:
        shape = "[..., k, k] matrices" if cov_type != "diag" else "[..., k] std vectors (same shape as the mean)"
        raise ValueError(f"{what}: cov_type={cov_type!r} needs scales of shape {shape}")
    return cov_type


def check_gaussian(mean: Any, scale: Any, name: str = "") -> bool:
    """Validates the shapes and dtypes of one batch of Gaussians.

    mean: ``[..., k]``; scale: ``[..., k]`` (diag std) or ``[..., k, k]``.
    Returns whether the scale is a matrix (``[..., k, k]``).
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
        return False
    if len(scale_shape) == len(mean_shape) + 1:
        if scale_shape[-1] != scale_shape[-2]:
            raise ValueError(f"{pre}scale matrix must be square [..., k, k], got shape {scale_shape}")
        if scale_shape != mean_shape + (k,):
            raise ValueError(
                f"{pre}scale shape {scale_shape} does not match mean shape {mean_shape}: "
                f"expected {mean_shape + (k,)} (full) or {mean_shape} (diagonal)"
            )
        return True
    raise ValueError(
        f"{pre}scale has the wrong rank: shape {scale_shape} for mean shape {mean_shape}; "
        f"expected {mean_shape} (diagonal std) or {mean_shape + (k,)} (full matrix)"
    )


def check_old(old_mean: Any, old_scale: Any, cov_type: str | None, accepts: Accepts) -> Layout:
    """Validates one (old) Gaussian and resolves its ``cov_type``; checks concrete values."""
    is_matrix = check_gaussian(old_mean, old_scale, "old")
    if jnp.result_type(old_scale) != jnp.result_type(old_mean):
        raise ValueError(
            f"old_scale dtype {jnp.result_type(old_scale)} differs from old_mean {jnp.result_type(old_mean)}"
        )
    cov_type = resolve_cov_type(cov_type, is_matrix, accepts)
    D.check_scale(old_scale, cov_type, "old_scale")
    check_positive_scale(old_scale, cov_type, "old_scale")
    return Layout(cov_type, tuple(jnp.shape(old_mean)[:-1]))


def check_pair(new: tuple[Any, Any], old: tuple[Any, Any], cov_type: str | None, accepts: Accepts) -> Layout:
    """Validates new and old Gaussians, ``(mean, scale)`` each, that they match in
    shape and dtype, and resolves their ``cov_type`` (see :func:`resolve_cov_type`).

    Concrete matrix scales are checked against the cov_type
    (:func:`tr_jax.distributions.check_scale`).
    """
    (mean, scale), (old_mean, old_scale) = new, old
    is_matrix = check_gaussian(mean, scale, "new")
    old_is_matrix = check_gaussian(old_mean, old_scale, "old")
    if jnp.shape(mean) != jnp.shape(old_mean) or jnp.shape(scale) != jnp.shape(old_scale):
        raise ValueError(
            "new and old Gaussians must have the same shapes: mean "
            f"{jnp.shape(mean)} vs old_mean {jnp.shape(old_mean)}, scale {jnp.shape(scale)} "
            f"vs old_scale {jnp.shape(old_scale)}"
        )
    dtypes = {jnp.result_type(x) for x in (mean, scale, old_mean, old_scale)}
    if len(dtypes) != 1:
        raise ValueError(f"mean, scale, old_mean and old_scale must share one dtype, got {sorted(map(str, dtypes))}")
    assert is_matrix == old_is_matrix
    cov_type = resolve_cov_type(cov_type, is_matrix, accepts)
    for value, name in ((scale, "scale"), (old_scale, "old_scale")):
        D.check_scale(value, cov_type, name)
        check_positive_scale(value, cov_type, name)
    return Layout(cov_type, tuple(jnp.shape(mean)[:-1]))


def check_bound(name: str, eps: Any, batch_shape: tuple[int, ...]) -> None:
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
            f"{name} must be a scalar or have the batch shape {tuple(batch_shape)} (one bound per state), "
            f"got shape {shape}"
        )
    if not isinstance(eps, jax.core.Tracer):
        value = np.asarray(eps, dtype=np.float64)
        ok = (value > 0) & np.isfinite(value)
        if not np.all(ok):
            raise ValueError(f"{name} must be positive and finite, got {value if value.ndim == 0 else value[~ok][:5]}")


def as_bound(eps: ArrayLike, batch_shape: tuple[int, ...], dtype: DTypeLike) -> jax.Array:
    """Broadcasts a validated bound to ``batch_shape`` in ``dtype``."""
    return jnp.broadcast_to(jnp.asarray(eps, dtype=dtype), batch_shape)


def batched(fn: Callable[..., Any], batch_shape: tuple[int, ...], *args: Any) -> Any:
    """Applies a per-state ``fn`` over any number of leading batch dims.

    Every array in ``args`` (arrays or tuples of arrays) must start with
    ``batch_shape``; outputs are reshaped back to ``batch_shape + per-state shape``.
    """
    if len(batch_shape) == 0:
        return fn(*args)
    return batched_flat(jax.vmap(fn), batch_shape, *args)


def batched_flat(fn: Callable[..., Any], batch_shape: tuple[int, ...], *args: Any) -> Any:
    """Applies ``fn`` to ``args`` with their batch dims flattened to one of
    ``n`` states (a scalar state counts as ``n = 1``); outputs are reshaped back
    to ``batch_shape + per-state shape``. Unlike :func:`batched`, ``fn`` maps
    whole ``[n, ...]`` batches.
    """
    n = int(np.prod(batch_shape))
    flat = jax.tree_util.tree_map(lambda a: jnp.reshape(a, (n,) + jnp.shape(a)[len(batch_shape) :]), args)
    out = fn(*flat)
    return jax.tree_util.tree_map(lambda o: jnp.reshape(o, tuple(batch_shape) + o.shape[1:]), out)


def check_flag(name: str, value: object) -> bool:
    """Validates a static boolean option (e.g. ``scale_prec``); returns it as bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a Python bool (a static option), got {type(value).__name__} {value!r}")
    return bool(value)


def check_projection(
    new: tuple[Any, Any], old: tuple[Any, Any], eps: tuple[Any, Any], cov_type: str | None, accepts: Accepts
) -> tuple[Layout, tuple[jax.Array, jax.Array]]:
    """Validates the arguments of a mean + covariance projection.

    ``new``: ``(mean, scale)`` to project, ``old``: ``(old_mean, old_scale)``,
    ``eps``: ``(eps_mean, eps_cov)``; ``cov_type``, ``accepts``: see
    :func:`resolve_cov_type`. Returns ``(layout, (eps_mean, eps_cov))`` with
    both bounds broadcast to ``layout.batch_shape`` in the Gaussians' dtype.
    """
    layout = check_pair(new, old, cov_type, accepts)
    dtype = jnp.result_type(new[0])
    for name, bound in zip(("eps_mean", "eps_cov"), eps, strict=True):
        check_bound(name, bound, layout.batch_shape)
    return layout, (as_bound(eps[0], layout.batch_shape, dtype), as_bound(eps[1], layout.batch_shape, dtype))


def run_projection(
    state_fn: Callable[..., tuple[jax.Array, jax.Array]],
    accepts: Accepts,
    new: tuple[Any, Any],
    old: tuple[Any, Any],
    eps: tuple[Any, Any],
    cov_type: str | None,
    **static: bool,
) -> tuple[jax.Array, jax.Array]:
    """Validates a projection's arguments and maps ``state_fn`` over the batch.

    ``new``, ``old``, ``eps``, ``cov_type``, ``accepts``: as in :func:`check_projection`.
    ``state_fn(new, old, eps, *, cov_type, **static)`` projects one state (the
    means ``[k]``, the scales ``[k]`` or ``[k, k]``, the bounds scalars).
    ``static`` holds boolean flags (checked with :func:`check_flag`).
    """
    layout, eps = check_projection(new, old, eps, cov_type, accepts)
    # jax arrays: NumPy constants of a jitted caller broke the diagonal mean part (a custom_vjp under vmap)
    new, old = (jnp.asarray(new[0]), jnp.asarray(new[1])), (jnp.asarray(old[0]), jnp.asarray(old[1]))
    flags = {name: check_flag(name, value) for name, value in static.items()}
    fn = functools.partial(state_fn, cov_type=layout.cov_type, **flags)
    return batched(fn, layout.batch_shape, new, old, eps)
