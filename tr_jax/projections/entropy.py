"""Entropy projection (closed form).

H = 0.5 log det(2 pi e Sigma). Multiplying a scale factor A (std vector,
Cholesky factor or symmetric square root; Sigma = A A^T) by a > 0 adds
k log a to H, so A exp((beta - H) / k) has entropy exactly beta.

* inequality form (``equality=False``): applied only where H < beta (a lower
  bound on the entropy); elsewhere the scale passes through unchanged, value
  and gradient;
* equality form (``equality=True``): always applied.

beta can be any real number (entropies of Gaussians can be negative).

NaN inputs: NaN is propagated to the outputs of the affected states (under
``jit`` too); nothing iterates, so nothing can hang.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp

from tr_jax import linalg as LA
from tr_jax.projections import _checks

_KINDS = ("diag", "full", "sqrt")


def _log_det_factor(scale, kind: str):
    """log|det A| for one state's scale factor (so log det Sigma = 2 * this)."""
    if kind == "diag":
        return jnp.sum(jnp.log(jnp.abs(scale)))
    if kind == "full":
        return jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale))))
    # log|det A| = 0.5 log det(A A^T), valid for any non-singular factor.
    return 0.5 * LA.spd_logdet(scale @ scale.T)


def _entropy_state(scale, beta, *, kind: str, equality: bool):
    k = scale.shape[-1]
    entropy = 0.5 * k * (1.0 + math.log(2.0 * math.pi)) + _log_det_factor(scale, kind)
    gap = beta - entropy
    if equality:
        return scale * jnp.exp(gap / k)
    active = ~(gap <= 0)  # NaN counts as active: NaN in, NaN out
    # Inactive states never see exp of a large argument (double where).
    factor = jnp.exp(jnp.where(active, gap, jnp.zeros_like(gap)) / k)
    return jnp.where(active, scale * factor, scale)


def _layout(scale, kind):
    _checks._check_float("scale", scale)
    shape = jnp.shape(scale)
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"unknown scale kind {kind!r}; expected one of {_KINDS} or None")
    if kind is None:
        kind = "sqrt" if len(shape) >= 2 and shape[-1] == shape[-2] else "diag"
    if kind == "diag":
        if len(shape) < 1 or shape[-1] < 1:
            raise ValueError(f"a diagonal scale must have shape [..., k] with k >= 1, got {shape}")
        return kind, tuple(shape[:-1])
    if len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < 1:
        raise ValueError(f"a {kind} scale must be a square matrix [..., k, k], got shape {shape}")
    return kind, tuple(shape[:-2])


def entropy_projection(scale, beta, equality=False, *, kind=None):
    """Projects the scale so that the entropy is >= beta (or == beta).

    Args:
      scale: std vector ``[..., k]``, or a matrix factor ``[..., k, k]``
        (lower Cholesky or symmetric square root; Sigma = A A^T).
      beta: target entropy, a scalar or one per state ``[...]``; any real.
      equality: if True, always rescale to entropy beta; else only where the
        entropy is below beta.
      kind: "diag", "full" (Cholesky: log det from the diagonal) or "sqrt"
        (any non-singular factor: log det via slogdet). None infers it from the
        shape: trailing dims ``[k, k]`` mean a matrix factor ("sqrt", valid
        for Cholesky factors too), otherwise a std vector. Pass
        ``kind="diag"`` for a batch of std vectors whose shape happens to end
        in ``[k, k]``.
    Returns:
      The rescaled scale, same shape and parameterisation as ``scale``.
    Raises:
      ValueError: at trace time, for a non-float scale, a non-square matrix
        scale, an unknown ``kind``, or a ``beta`` whose shape is neither
        scalar nor the batch shape.
    """
    kind, batch_shape = _layout(scale, kind)
    if isinstance(beta, bool) or jnp.result_type(beta) == jnp.bool_:
        raise ValueError("beta must be a number, got a boolean")
    beta_dtype = jnp.result_type(beta)
    if not (jnp.issubdtype(beta_dtype, jnp.floating) or jnp.issubdtype(beta_dtype, jnp.integer)):
        raise ValueError(f"beta must be a real number, got dtype {beta_dtype}")
    if jnp.shape(beta) not in ((), batch_shape):
        raise ValueError(
            f"beta must be a scalar or have the batch shape {batch_shape} (one per state), got shape {jnp.shape(beta)}"
        )
    equality = _checks.check_flag("equality", equality)
    beta = _checks.as_bound(beta, batch_shape, jnp.result_type(scale))
    fn = functools.partial(_entropy_state, kind=kind, equality=equality)
    return _checks.batched(fn, batch_shape, scale, beta)
