"""TRPL's building blocks and PPO's clipped surrogate as pure functions, for your own agent (what
:func:`tr_jax.algorithms.trpl.make_trpl` and :func:`tr_jax.algorithms.ppo.make_ppo` are built from).

Turning a PPO agent into TRPL (Otto et al., 2021) takes three changes per minibatch:

1. project the network's Gaussian ``p~ = (mean, scale)`` of every state onto the trust region around the
   behaviour policy ``q`` of that state (:func:`project_gaussians`);
2. replace PPO's clipped surrogate (:func:`ppo_clipped_surrogate`) by the plain importance-weighted
   surrogate on the *projected* policy (:func:`trpl_surrogate`);
3. add the trust-region regression loss (:func:`trust_region_loss`) that pulls the network's output towards
   its projection, so the policy the agent acts with (``p~``) stays close to the trust region.

Optional: an entropy bound that follows a schedule (:func:`entropy_bound`, applied inside
:func:`project_gaussians` after the trust-region projection), and, for a policy whose covariance is one
parameter shared by all states (not contextual), writing the projected covariance back into that parameter
after the update (:func:`global_scale`), so the acting covariance is the projected one.

Shapes: ``k`` action dims, any leading batch dims ``[...]`` (usually ``[N]`` states). Scales are in a
``cov_type`` of :mod:`tr_jax.distributions`: ``"diag"`` std vectors ``[..., k]``, ``"full"`` lower Cholesky
factors or ``"sqrt"`` symmetric square roots ``[..., k, k]``. The projections work on
:func:`projection_cov_type` (the policy's own ``cov_type``, except a ``"sqrt"`` policy under the KL or
Frobenius projection, which is projected in its Cholesky factor: :func:`to_projection_scale`); everything
:func:`project_gaussians` returns is in that parameterisation, and log-probabilities, entropies and the
regression loss are computed in it too.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from tr_jax import distributions as D
from tr_jax import parallel as par
from tr_jax.choices import ENTROPY_SCHEDULES as SCHEDULES
from tr_jax.distributions import CovType
from tr_jax.projections import canonical_name, entropy_projection, parts, project
from tr_jax.projections.dispatch import ProjectionName

Gaussian = tuple[jax.Array, jax.Array]  # (mean [..., k], scale [..., k] or [..., k, k])


def projection_cov_type(cov_type: CovType, projection: ProjectionName) -> CovType:
    """The scale parameterisation ``projection`` works on for a policy of ``cov_type``.

    ``"diag"`` stays ``"diag"``; a matrix policy is projected in its lower Cholesky factor (``"full"``) by the
    KL and Frobenius projections and in its symmetric square root (``"sqrt"``) by W2, which refuses
    ``"full"`` (it needs the symmetric root: use ``cov_type="sqrt"``).

    Examples:
        >>> projection_cov_type("sqrt", "kl"), projection_cov_type("sqrt", "w2"), projection_cov_type("diag", "frob")
        ('full', 'sqrt', 'diag')
    """
    name = canonical_name(projection)
    D.check_cov_type(cov_type)
    if cov_type == "diag":
        return "diag"
    if name == "w2":
        if cov_type != "sqrt":
            raise ValueError(
                "the W2 projection on a full covariance works on the symmetric sqrt: "
                "use cov_type='sqrt' (got cov_type='full')"
            )
        return "sqrt"
    return "full"


def to_projection_scale(scale: jax.Array, cov_type: CovType, projection: ProjectionName) -> jax.Array:
    """``scale`` (``[..., k]`` or ``[..., k, k]`` of ``cov_type``) in :func:`projection_cov_type`: itself, or
    for a ``"sqrt"`` scale under KL/Frobenius the Cholesky factor of the same covariance (differentiable).

    Examples:
        >>> s = jnp.array([[2.0, 1.0], [1.0, 2.0]])            # symmetric sqrt: Sigma = s @ s
        >>> L = to_projection_scale(s, "sqrt", "kl")
        >>> bool(jnp.allclose(L @ L.T, s @ s)), bool(L[0, 1] == 0)
        (True, True)
    """
    work = projection_cov_type(cov_type, projection)
    return scale if work == cov_type else D.cholesky(scale, cov_type)


def from_projection_scale(scale: jax.Array, cov_type: CovType, projection: ProjectionName) -> jax.Array:
    """Inverse of :func:`to_projection_scale`: a scale of :func:`projection_cov_type` back in the policy's
    ``cov_type`` (for a Cholesky factor to ``"sqrt"``: an eigendecomposition; use it for acting and
    write-back, not inside a loss you differentiate).

    Examples:
        >>> L = jnp.array([[2.0, 0.0], [1.0, 1.0]])
        >>> s = from_projection_scale(L, "sqrt", "kl")
        >>> bool(jnp.allclose(s @ s, L @ L.T, atol=1e-5)), bool(jnp.allclose(s, s.T))
        (True, True)
    """
    work = projection_cov_type(cov_type, projection)
    return scale if work == cov_type else D.convert_scale(scale, work, cov_type)


def _options(name: str, work: CovType, scale_prec: bool) -> dict:
    return {"cov_type": work} if name == "kl" else {"cov_type": work, "scale_prec": scale_prec}


def project_gaussians(
    projection: ProjectionName,
    mean: jax.Array,
    scale: jax.Array,
    old_mean: jax.Array,
    old_scale: jax.Array,
    eps_mean: ArrayLike,
    eps_cov: ArrayLike,
    *,
    cov_type: CovType,
    entropy_bound: ArrayLike | None = None,
    entropy_equality: bool = False,
    scale_prec: bool = True,
) -> tuple[Gaussian, Gaussian]:
    """Projects the network's Gaussians onto the trust region around the behaviour policy, state by state.

    Args:
      projection: ``"kl"``, ``"w2"`` or ``"frob"``.
      mean, old_mean: ``[..., k]`` the network's and the behaviour policy's means.
      scale, old_scale: ``[..., k]`` or ``[..., k, k]``, both of ``cov_type``.
      eps_mean, eps_cov: the bounds on the projection's mean and covariance parts (scalars or ``[...]``).
      cov_type: the policy's scale parameterisation.
      entropy_bound: None, or the entropy (nats, scalar or ``[...]``) the projected policy is kept above
        (``entropy_equality``: set to) by :func:`tr_jax.projections.entropy_projection` after the
        trust-region projection (see :func:`entropy_bound`).
      scale_prec: W2/Frobenius only: measure the mean part in the old precision (as the trainer).
    Returns:
      ``(projected, raw)``: ``(mean [..., k], scale)`` pairs in :func:`projection_cov_type` -- the projected
      policy (the one the surrogate is evaluated on) and the network's own Gaussian (``raw``; the inputs
      themselves unless a ``"sqrt"`` scale went to its Cholesky factor). Differentiable in ``mean`` and
      ``scale``.

    Examples:
        >>> old_mean, old_std = jnp.zeros((2, 1)), jnp.ones((2, 1))
        >>> mean, std = jnp.array([[0.01], [3.0]]), jnp.array([[1.0], [0.2]])
        >>> (pm, ps), (rm, rs) = project_gaussians("kl", mean, std, old_mean, old_std, 0.05, 0.05, cov_type="diag")
        >>> print(jnp.round(pm[:, 0], 3), jnp.round(ps[:, 0], 3))  # state 0 is inside: it passes unchanged
        [0.01  0.316] [1.    0.785]
        >>> from tr_jax.projections import kl_parts
        >>> mp, cp = kl_parts(pm, ps, old_mean, old_std)
        >>> print(jnp.round(mp, 3), jnp.round(cp, 3))
        [0.    0.05] [0.   0.05]
    """
    name = canonical_name(projection)
    work = projection_cov_type(cov_type, name)
    scale, old_scale = to_projection_scale(scale, cov_type, name), to_projection_scale(old_scale, cov_type, name)
    pm, ps = project(name, mean, scale, old_mean, old_scale, eps_mean, eps_cov, **_options(name, work, scale_prec))
    if entropy_bound is not None:
        ps = entropy_projection(ps, entropy_bound, entropy_equality, cov_type=work)
    return (pm, ps), (mean, scale)


def trust_region_loss(
    projection: ProjectionName, raw: Gaussian, projected: Gaussian, *, cov_type: CovType, scale_prec: bool = True
) -> jax.Array:
    """TRPL's regression loss: the mean over states of the projection's own distance (mean part + cov part)
    from the network's Gaussian ``raw`` to ``stop_gradient(projected)``.

    Args:
      projection: the projection's name (its distance is the loss).
      raw, projected: ``(mean [..., k], scale)`` pairs in :func:`projection_cov_type` of ``cov_type``, as
        :func:`project_gaussians` returns them.
      cov_type: the policy's scale parameterisation.
    Returns:
      scalar; its gradient reaches ``raw`` only.

    Examples:
        >>> raw = (jnp.array([[1.0]]), jnp.array([[1.0]]))
        >>> print(trust_region_loss("kl", raw, (jnp.zeros((1, 1)), jnp.ones((1, 1))), cov_type="diag"))
        0.5
    """
    name = canonical_name(projection)
    work = projection_cov_type(cov_type, name)
    m, c = parts(
        name,
        raw[0],
        raw[1],
        jax.lax.stop_gradient(projected[0]),
        jax.lax.stop_gradient(projected[1]),
        **_options(name, work, scale_prec),
    )
    return jnp.mean(m + c)


def trpl_surrogate(log_prob: jax.Array, old_log_prob: jax.Array, advantage: jax.Array) -> jax.Array:
    """TRPL's policy loss: ``-mean(exp(log_prob - old_log_prob) * advantage)``, no clipping (the projection
    keeps the policy in the trust region).

    Args:
      log_prob: ``[N]`` log-density of the taken actions under the *projected* policy.
      old_log_prob: ``[N]`` under the behaviour policy.
      advantage: ``[N]`` (normalise it first if you do).
    Returns:
      scalar loss to minimise.

    Examples:
        >>> print(trpl_surrogate(jnp.log(jnp.array([2.0, 0.5])), jnp.zeros(2), jnp.array([1.0, -1.0])))
        -0.75
    """
    return -jnp.mean(jnp.exp(log_prob - old_log_prob) * advantage)


def ppo_clipped_surrogate(
    log_prob: jax.Array, old_log_prob: jax.Array, advantage: jax.Array, clip_ratio: ArrayLike
) -> tuple[jax.Array, dict]:
    """PPO's clipped surrogate ``-mean(min(rho A, clip(rho, 1 - c, 1 + c) A))``, ``rho = exp(log_prob -
    old_log_prob)``.

    Args:
      log_prob, old_log_prob, advantage: ``[N]`` as in :func:`trpl_surrogate` (``log_prob`` under the
        network's policy).
      clip_ratio: ``c`` (scalar).
    Returns:
      ``(loss, metrics)``: scalar loss to minimise; ``metrics`` ``approx_kl`` (``mean((rho - 1) - log rho)``)
      and ``clip_fraction`` (fraction of ``|rho - 1| > c``), scalars.

    Examples:
        >>> loss, m = ppo_clipped_surrogate(jnp.log(jnp.array([2.0, 0.5])), jnp.zeros(2), jnp.array([1.0, -1.0]), 0.2)
        >>> print(f'{loss:.4f} {m["clip_fraction"]:.2f}')
        -0.2000 1.00
    """
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    surrogate = jnp.minimum(ratio * advantage, jnp.clip(ratio, 1 - clip_ratio, 1 + clip_ratio) * advantage)
    return -surrogate.mean(), {
        "approx_kl": ((ratio - 1) - log_ratio).mean(),
        "clip_fraction": (jnp.abs(ratio - 1) > clip_ratio).mean(),
    }


def gaussian_entropy(k: int, std: float) -> float:
    """Entropy of N(., std^2 I_k): ``0.5 k (1 + log 2 pi) + k log std`` (the initial entropy of a policy that
    starts at ``init_std``; the anchor of :func:`entropy_bound`).

    Examples:
        >>> round(gaussian_entropy(2, 1.0), 4)
        2.8379
    """
    return 0.5 * k * (1.0 + math.log(2.0 * math.pi)) + k * math.log(std)


def entropy_bound(
    schedule: str,
    initial_entropy: ArrayLike,
    target_entropy: float,
    temperature: float,
    iteration: ArrayLike,
    num_iterations: int,
) -> jax.Array:
    """The entropy bound beta at ``iteration`` of ``num_iterations`` (scalar, traced or not).

    With ``H0 = initial_entropy``, ``beta_T = target_entropy`` (total entropy, nats), ``f = iteration /
    num_iterations``: ``"none"``: -inf (no entropy projection); ``"linear"``: ``H0 + (beta_T - H0) f``;
    ``"exp"``: ``beta_T + (H0 - beta_T) temperature ** (10 f)``. Pass it to :func:`project_gaussians` as
    ``entropy_bound`` (None for ``"none"``). As in the paper's appendix and reference code, except that the
    reference's ``"exp"`` schedule takes a per-dimension target (``k * target``): here both schedules take the
    total, so ``target_entropy`` means the same for either.

    Examples:
        >>> print(f'{entropy_bound("linear", 2.0, -1.0, 0.5, 50, 100):.4f}')
        0.5000
        >>> print(f'{entropy_bound("exp", 2.0, -1.0, 0.5, 100, 100):.4f}')
        -0.9971
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown entropy_schedule {schedule!r}; expected one of {SCHEDULES}")
    initial_entropy = jnp.asarray(initial_entropy)
    frac = jnp.asarray(iteration, initial_entropy.dtype) / max(1, num_iterations)
    if schedule == "none":
        return jnp.full_like(initial_entropy, -jnp.inf)
    if schedule == "linear":
        return initial_entropy + (target_entropy - initial_entropy) * frac
    return target_entropy + (initial_entropy - target_entropy) * jnp.power(temperature, 10.0 * frac)


def global_scale(
    projected_scale: jax.Array, *, cov_type: CovType, projection: ProjectionName, axis_name: str | None = None
) -> jax.Array:
    """The covariance to write back into a non-contextual policy's global covariance parameter after an
    update: the mean over states of the projected scale (over every device's states under ``axis_name``),
    in the policy's ``cov_type``, without gradient. Writing it back (for :mod:`tr_jax.networks` policies:
    ``policy.set_global_scale(params, s)``) makes the acting covariance the projected one.

    Args:
      projected_scale: ``[N, k]`` or ``[N, k, k]`` in :func:`projection_cov_type`.
    Returns:
      ``[k]`` or ``[k, k]`` of ``cov_type``.

    Examples:
        >>> print(global_scale(jnp.array([[1.0, 2.0], [3.0, 2.0]]), cov_type="diag", projection="kl"))
        [2. 2.]
    """
    mean = par.pmean(projected_scale.mean(axis=0), axis_name)
    return jax.lax.stop_gradient(from_projection_scale(mean, cov_type, projection))


__all__ = [
    "SCHEDULES",
    "entropy_bound",
    "entropy_projection",
    "from_projection_scale",
    "gaussian_entropy",
    "global_scale",
    "ppo_clipped_surrogate",
    "project_gaussians",
    "projection_cov_type",
    "to_projection_scale",
    "trpl_surrogate",
    "trust_region_loss",
]
