"""Entropy projection (closed form): :func:`entropy_projection`.

Scaling a Gaussian's scale factor by ``a > 0`` adds ``k log a`` to its entropy, so one factor per state sets the
entropy to ``beta`` exactly: applied where the entropy is below ``beta`` (``equality=False``, a lower bound) or
always (``equality=True``). ``beta`` can be any real number (a Gaussian's entropy can be negative). NaN inputs give
NaN in the affected states' outputs; nothing iterates, so nothing can hang.
The math: [How the projections work][how-the-projections-work] (``docs/projections-math.md``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from tr_jax import distributions as D
from tr_jax import linalg as LA
from tr_jax.distributions import CovType
from tr_jax.projections import _checks


def _log_det_factor(scale: jax.Array, cov_type: CovType) -> jax.Array:
    """log|det A| for one state's scale factor (so log det Sigma = 2 * this)."""
    if cov_type == "diag":
        return jnp.sum(jnp.log(jnp.abs(scale)))
    if cov_type == "full":
        return jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale))))
    # "sqrt": log|det A| = 0.5 log det(A A^T), valid for any non-singular factor.
    return 0.5 * LA.spd_logdet(LA.matmul(scale, scale.T))


def _entropy_state(scale: jax.Array, beta: jax.Array, *, cov_type: CovType, equality: bool) -> jax.Array:
    k = scale.shape[-1]
    entropy = 0.5 * k * (1.0 + math.log(2.0 * math.pi)) + _log_det_factor(scale, cov_type)
    gap = beta - entropy
    if equality:
        return scale * jnp.exp(gap / k)
    active = ~(gap <= 0)  # NaN counts as active: NaN in, NaN out
    # Inactive states never see exp of a large argument (double where).
    factor = jnp.exp(jnp.where(active, gap, jnp.zeros_like(gap)) / k)
    return jnp.where(active, scale * factor, scale)


def _layout(scale: ArrayLike, cov_type: str | None) -> tuple[CovType, tuple[int, ...]]:
    _checks._check_float("scale", scale)
    shape = jnp.shape(scale)
    given = cov_type is not None
    if cov_type is None:
        # Some matrix factor A: the "sqrt" formula log|det A| = 0.5 log det(A A^T) holds for all of them.
        cov_type = "sqrt" if len(shape) >= 2 and shape[-1] == shape[-2] else "diag"
    cov_type = D.check_cov_type(cov_type)
    if cov_type == "diag":
        if len(shape) < 1 or shape[-1] < 1:
            raise ValueError(f"a diagonal scale must have shape [..., k] with k >= 1, got {shape}")
        return cov_type, tuple(shape[:-1])
    if len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < 1:
        raise ValueError(f"a cov_type={cov_type!r} scale must be a square matrix [..., k, k], got shape {shape}")
    if given:
        D.check_scale(scale, cov_type)
    return cov_type, tuple(shape[:-2])


def entropy_projection(
    scale: ArrayLike, beta: ArrayLike, equality: bool = False, *, cov_type: CovType | None = None
) -> jax.Array:
    """Projects the scale so that the entropy is >= beta (or == beta).

    Args:
      scale: std vector ``[..., k]``, or a matrix factor ``[..., k, k]``
        (lower Cholesky or symmetric square root; Sigma = A A^T).
      beta: target entropy, a scalar or one per state ``[...]``; any real.
      equality: if True, always rescale to entropy beta; else only where the
        entropy is below beta.
      cov_type: "diag", "full" (lower Cholesky: log det from the diagonal) or
        "sqrt" (symmetric square root). None infers it from the shape:
        trailing dims ``[k, k]`` mean some matrix factor A with
        Sigma = A A^T (log det via a Cholesky of A A^T; right for Cholesky
        factors and symmetric roots alike), otherwise a std vector. Pass
        ``cov_type="diag"`` for a batch of std vectors whose shape happens to
        end in ``[k, k]``.
    Returns:
      The rescaled scale, same shape and parameterisation as ``scale``.
    Raises:
      ValueError: at trace time, for a non-float scale, a non-square matrix
        scale, an unknown ``cov_type``, or a ``beta`` whose shape is neither
        scalar nor the batch shape, or a concrete matrix that is not of its
        declared ``cov_type`` (:func:`tr_jax.distributions.check_scale`; not
        checked under ``jit``).
    """
    cov_type, batch_shape = _layout(scale, cov_type)
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
    fn = functools.partial(_entropy_state, cov_type=cov_type, equality=equality)
    return _checks.batched(fn, batch_shape, scale, beta)
