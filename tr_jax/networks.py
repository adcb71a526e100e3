"""Gaussian MLP policies and value MLPs (Flax Linen) behind small functional APIs.

``make_policy(config, obs_dim, action_dim)`` returns a :class:`Policy` of pure
functions; ``make_value(config, obs_dim)`` a :class:`Value`. Parameters are
ordinary Flax pytrees (``{"params": ...}``).

Scale parameterisations (``config.cov_type``, see :mod:`tr_jax.distributions`):

* ``"diag"``: std vector ``s = min_std + softplus(x + shift)``, ``[..., k]``.
* ``"full"``: lower Cholesky ``L = diag(min_std + softplus(d + shift)) +
  strict_lower(o)``, ``[..., k, k]``.
* ``"sqrt"``: symmetric positive-definite square root
  ``S = B B^T + min_std I`` with ``B = diag(sqrt(softplus(d + shift))) +
  strict_lower(o)``, ``[..., k, k]``; ``Sigma = S S``. ``S`` is symmetric by
  construction and every eigenvalue of ``S`` is ``>= min_std`` (``B B^T`` is
  PSD), so the std along every direction is at least ``min_std``. With
  ``o = 0`` it reduces exactly to the diagonal map, ``S = diag(s)``. It costs
  one k x k matmul (no matrix square root, no eigendecomposition, smooth
  gradients even at the isotropic initialisation where eigenvalues repeat).

``shift = softplus^-1(init_std - min_std)``, and the raw covariance
parameters (``x``, ``d``, ``o``) are zero at initialisation, so the initial
covariance is exactly ``init_std^2 I`` at every state. The covariance is
either one global parameter vector (``contextual_cov=False``; parameter
``params["params"]["cov"]``) or a zero-initialised linear head on the policy
trunk (``contextual_cov=True``; module ``params["params"]["cov_head"]``).

Initialisation (``config.orthogonal_init``, default True): orthogonal, gain
sqrt(2) for hidden layers, 0.01 for the mean head, 1.0 for the value head;
zero biases. With ``orthogonal_init=False`` (the implementation-choices
ablation): Flax's default LeCun-normal kernels for every layer (no scaled
output layers), zero biases.

Matrix-product precision (``config.matmul_precision``): the dense layers of
both networks use the backend's default precision ("default": on NVIDIA GPUs
float32 products may run in TF32, on TPUs in bfloat16 passes; the CPU is
exact either way) unless the config asks for "high" or "highest"
(``jax.lax.Precision``). The covariance map (:func:`raw_to_scale`) is math,
not a layer: its products are always full float32 (:func:`tr_jax.linalg.matmul`).

The policy and value networks are always separate (there is no shared-trunk
option): TRPO's and TRPL's trust regions constrain the policy update only;
value-loss gradients flowing into a shared trunk would move the policy outside
them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, cast

import flax.linen as nn
import jax
import jax.numpy as jnp

from tr_jax import distributions as D
from tr_jax import linalg as LA
from tr_jax.choices import ACTIVATIONS, MATMUL_PRECISIONS

if TYPE_CHECKING:
    from tr_jax.config import TrainConfig

Params = dict

# one row per name of ACTIVATIONS and MATMUL_PRECISIONS (tr_jax.choices), in its order
_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}
# config.matmul_precision -> the dense layers' precision (None: the backend's default, today's program)
_PRECISIONS = {"default": None, "high": jax.lax.Precision.HIGH, "highest": jax.lax.Precision.HIGHEST}


# --------------------------------------------------------------------------------------
# scalar maps
# --------------------------------------------------------------------------------------


def softplus_inverse(y: jax.Array) -> jax.Array:
    """Inverse of softplus for y > 0 (stable for large y): x = y + log(-expm1(-y))."""
    return y + jnp.log(-jnp.expm1(-y))


def std_shift(init_std: float, min_std: float) -> float:
    """shift with ``min_std + softplus(0 + shift) == init_std``."""
    y = init_std - min_std
    if not y > 0:
        raise ValueError(f"init_std ({init_std}) must exceed min_std ({min_std})")
    return float(y + math.log(-math.expm1(-y)))


def _n_cov(cov_type: D.CovType, k: int) -> int:
    """Number of raw covariance parameters: k (diag) or k + k(k-1)/2 (full, sqrt)."""
    return k if cov_type == "diag" else k + k * (k - 1) // 2


def raw_to_scale(raw: jax.Array, cov_type: D.CovType, k: int, shift: float, min_std: float) -> jax.Array:
    """Maps raw parameters ``[..., n_cov]`` to a scale of the given cov_type.

    Returns ``[..., k]`` (diag) or ``[..., k, k]`` (full Cholesky / sqrt).
    """
    d = jax.nn.softplus(raw[..., :k] + shift)
    if cov_type == "diag":
        return min_std + d
    rows, cols = jnp.tril_indices(k, -1)
    off = jnp.zeros(raw.shape[:-1] + (k, k), raw.dtype).at[..., rows, cols].set(raw[..., k:])
    eye = jnp.eye(k, dtype=raw.dtype)
    if cov_type == "full":
        return off + (min_std + d)[..., None, :] * eye
    b = off + jnp.sqrt(d)[..., None, :] * eye
    return LA.matmul(b, jnp.swapaxes(b, -1, -2)) + min_std * eye


def scale_to_raw(scale: jax.Array, cov_type: D.CovType, shift: float, min_std: float, floor: float = 1e-6) -> jax.Array:
    """Inverse of :func:`raw_to_scale` (for one or many scales).

    Values that the forward map cannot produce are clipped to the nearest
    valid one: std / Cholesky diagonal entries below ``min_std + floor``,
    and (sqrt) eigenvalues of ``S - min_std I`` below ``floor``.
    Returns ``[..., n_cov]``.
    """
    k = scale.shape[-1]
    if cov_type == "diag":
        return softplus_inverse(jnp.maximum(scale - min_std, floor)) - shift
    if cov_type == "full":
        d = jnp.diagonal(scale, axis1=-2, axis2=-1)
        raw_d = softplus_inverse(jnp.maximum(d - min_std, floor)) - shift
        rows, cols = jnp.tril_indices(k, -1)
        return jnp.concatenate([raw_d, scale[..., rows, cols]], axis=-1)
    # sqrt: B B^T = S - min_std I  ->  B = chol(S - min_std I), softplus(d + shift) = diag(B)^2.
    m = 0.5 * (scale + jnp.swapaxes(scale, -1, -2)) - min_std * jnp.eye(k, dtype=scale.dtype)
    # Clip eigenvalues to >= floor without an eigendecomposition: with c = m - floor I,
    # |c| = sqrtm(c^2) shares c's eigenvectors, so floor I + (c + |c|) / 2 has eigenvalues max(w, floor).
    eye = jnp.eye(k, dtype=m.dtype)
    c = m - floor * eye
    c2 = LA.matmul(c, c)
    c_abs = LA.sqrtm_spd(c2 + jnp.finfo(m.dtype).eps * jnp.trace(c2, axis1=-2, axis2=-1)[..., None, None] * eye)
    m = floor * eye + 0.5 * (c + c_abs)
    b = LA.cholesky(0.5 * (m + jnp.swapaxes(m, -1, -2)))
    diag_b = jnp.diagonal(b, axis1=-2, axis2=-1)
    raw_d = softplus_inverse(jnp.maximum(diag_b**2, floor)) - shift
    rows, cols = jnp.tril_indices(k, -1)
    return jnp.concatenate([raw_d, b[..., rows, cols]], axis=-1)


# --------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------


def _dense(features: int, gain: float, dtype, name=None, orthogonal: bool = True, precision=None) -> nn.Dense:
    """A dense layer with zero biases and orthogonal kernels of ``gain`` (``orthogonal`` False: Flax's
    default LeCun-normal kernels, ``gain`` unused); ``precision`` a ``jax.lax.Precision`` or None (the
    backend's default)."""
    return nn.Dense(
        features,
        name=name,
        kernel_init=nn.initializers.orthogonal(gain) if orthogonal else nn.initializers.lecun_normal(),
        bias_init=nn.initializers.zeros,
        dtype=dtype,
        param_dtype=dtype,
        precision=precision,
    )


class MLP(nn.Module):
    """Hidden layers only: ``[..., in] -> [..., hidden[-1]]`` (identity if empty)."""

    hidden: tuple
    activation: Callable
    dtype: jnp.dtype = jnp.float32
    orthogonal: bool = True
    precision: jax.lax.Precision | None = None

    def _layer(self, features: int, gain: float, name: str | None = None) -> nn.Dense:
        """A dense layer of this network's dtype, initialisation and precision (see :func:`_dense`)."""
        return _dense(features, gain, self.dtype, name, self.orthogonal, self.precision)

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = self.activation(self._layer(h, math.sqrt(2.0))(x))
        return x


class GaussianPolicyNet(nn.Module):
    """``obs [..., obs_dim] -> (mean [..., k], raw_cov [..., n_cov])``."""

    action_dim: int
    n_cov: int
    hidden: tuple
    activation: Callable
    contextual: bool
    dtype: jnp.dtype = jnp.float32
    orthogonal: bool = True
    precision: jax.lax.Precision | None = None

    @nn.compact
    def __call__(self, obs):
        h = MLP(self.hidden, self.activation, self.dtype, self.orthogonal, self.precision, name="trunk")(obs)
        mean = _dense(self.action_dim, 0.01, self.dtype, "mean_head", self.orthogonal, self.precision)(h)
        if self.contextual:
            raw = nn.Dense(
                self.n_cov,
                kernel_init=nn.initializers.zeros,
                bias_init=nn.initializers.zeros,
                dtype=self.dtype,
                param_dtype=self.dtype,
                precision=self.precision,
                name="cov_head",
            )(h)
        else:
            raw = self.param("cov", nn.initializers.zeros, (self.n_cov,), self.dtype)
            raw = jnp.broadcast_to(raw, mean.shape[:-1] + (self.n_cov,))
        return mean, raw


class ValueNet(MLP):
    """``obs [..., obs_dim] -> value [...]``: the MLP of these fields (module ``trunk``) and a linear ``value_head``."""

    @nn.compact
    def __call__(self, obs):
        h = MLP(self.hidden, self.activation, self.dtype, self.orthogonal, self.precision, name="trunk")(obs)
        return self._layer(1, 1.0, "value_head")(h)[..., 0]


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


class Policy(NamedTuple):
    """Gaussian policy as pure functions.

    init(key) -> params.
    apply(params, obs [..., obs_dim]) -> (mean [..., k], scale [..., k] or [..., k, k]).
    cov_type: "diag", "full" (lower Cholesky) or "sqrt" (symmetric sqrt).
    contextual: whether the covariance depends on the state.
    set_global_scale(params, scale) -> params: writes one scale ([k] or [k, k])
      into the global covariance parameter (inverting the softplus/min_std
      map); returns ``params`` unchanged for a contextual policy.
    action_dim, obs_dim: sizes.
    """

    init: Callable
    apply: Callable
    cov_type: D.CovType
    contextual: bool
    set_global_scale: Callable
    action_dim: int
    obs_dim: int


class Value(NamedTuple):
    """Value function: init(key) -> params; apply(params, obs [..., obs_dim]) -> [...]."""

    init: Callable
    apply: Callable


def _precision(config: TrainConfig) -> jax.lax.Precision | None:
    """The dense layers' precision for ``config.matmul_precision`` (ValueError naming the choices)."""
    if config.matmul_precision not in _PRECISIONS:
        raise ValueError(f"unknown matmul_precision {config.matmul_precision!r}; expected one of {MATMUL_PRECISIONS}")
    return _PRECISIONS[config.matmul_precision]


def make_policy(config: TrainConfig, obs_dim: int, action_dim: int) -> Policy:
    """Builds the Gaussian MLP policy described by ``config``.

    Uses config.cov_type, contextual_cov, policy_hidden, activation,
    orthogonal_init, init_std, min_std, dtype, matmul_precision.
    """
    cov_type = D.check_cov_type(config.cov_type)
    if config.activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {config.activation!r}; expected one of {ACTIVATIONS}")
    dtype = jnp.dtype(config.dtype)
    k = int(action_dim)
    n_cov = _n_cov(cov_type, k)
    shift = std_shift(config.init_std, config.min_std)
    min_std = float(config.min_std)
    contextual = bool(config.contextual_cov)
    net = GaussianPolicyNet(
        action_dim=k,
        n_cov=n_cov,
        hidden=tuple(config.policy_hidden),
        activation=_ACTIVATIONS[config.activation],
        contextual=contextual,
        dtype=dtype,
        orthogonal=bool(config.orthogonal_init),
        precision=_precision(config),
    )

    def init(key):
        return net.init(key, jnp.zeros((1, obs_dim), dtype))

    def apply(params, obs):
        # (Module.apply returns the output alone without `mutable`; flax's annotation also covers mutable=...)
        mean, raw = cast(tuple[jax.Array, jax.Array], net.apply(params, obs))
        return mean, raw_to_scale(raw, cov_type, k, shift, min_std)

    def set_global_scale(params, scale):
        if contextual:
            return params
        raw = scale_to_raw(jnp.asarray(scale, dtype), cov_type, shift, min_std)
        if raw.shape != (n_cov,):
            raise ValueError(
                f"set_global_scale expects one scale of shape "
                f"{(k,) if cov_type == 'diag' else (k, k)}, got {jnp.shape(scale)}"
            )
        inner = dict(params["params"])
        inner["cov"] = raw.astype(inner["cov"].dtype)
        return {**params, "params": inner}

    return Policy(init, apply, cov_type, contextual, set_global_scale, k, int(obs_dim))


def make_value(config: TrainConfig, obs_dim: int) -> Value:
    """Builds the value MLP (config.value_hidden, activation, orthogonal_init, dtype, matmul_precision)."""
    if config.activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {config.activation!r}; expected one of {ACTIVATIONS}")
    dtype = jnp.dtype(config.dtype)
    net = ValueNet(
        tuple(config.value_hidden),
        _ACTIVATIONS[config.activation],
        dtype,
        bool(config.orthogonal_init),
        _precision(config),
    )

    def init(key):
        return net.init(key, jnp.zeros((1, obs_dim), dtype))

    def apply(params, obs):
        return net.apply(params, obs)

    return Value(init, apply)
