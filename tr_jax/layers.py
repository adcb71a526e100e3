"""A trust-region projection as a Flax layer: the head of a Gaussian policy network.

:class:`TrustRegionLayer` is a Flax NNX module (NNX is the API Flax 0.12 recommends for new code). It holds
no parameters or state, only its settings, so it is also called as it is inside a Flax Linen module's
``__call__`` (no ``nnx.bridge`` needed) or in plain JAX code. It is :func:`tr_jax.losses.project_gaussians`
(one implementation): differentiable in the network's Gaussian as the projections are, jit/vmap/grad
compatible.
"""

from __future__ import annotations

import jax
from flax import nnx
from jax.typing import ArrayLike

from tr_jax.distributions import CovType
from tr_jax.losses import project_gaussians, projection_cov_type
from tr_jax.projections.dispatch import ProjectionName


class TrustRegionLayer(nnx.Module):
    """Projects a network's Gaussian per state onto the trust region around the old (behaviour) Gaussian.

    Args (constructor):
      projection: ``"kl"``, ``"w2"`` or ``"frob"`` (aliases ``"wasserstein"``, ``"frobenius"``).
      cov_type: the network's scale parameterisation, ``"diag"`` (std ``[..., k]``), ``"full"`` (lower
        Cholesky ``[..., k, k]``) or ``"sqrt"`` (symmetric square root ``[..., k, k]``).
      eps_mean, eps_cov: default bounds (scalars), used when the call does not pass its own.
      entropy_equality: with an ``entropy_bound`` at the call: set the entropy to it (True) or keep it above
        (False).
      scale_prec: W2/Frobenius: the mean part in the old precision.

    Call: ``layer(mean, scale, old_mean, old_scale, eps_mean=None, eps_cov=None, entropy_bound=None)`` with
    means ``[..., k]`` and scales of ``cov_type`` returns the projected ``(mean [..., k], scale)``, its scale
    in ``layer.output_cov_type`` (:func:`tr_jax.losses.projection_cov_type`: the same as ``cov_type`` except a
    ``"sqrt"`` network under KL/Frobenius, whose projection is its Cholesky factor). A Gaussian already inside
    the trust region passes through unchanged. Bad settings raise ValueError at construction.

    Examples:
        >>> import jax.numpy as jnp
        >>> layer = TrustRegionLayer("kl", "diag", eps_mean=0.05, eps_cov=0.05)
        >>> mean, std = layer(jnp.array([[3.0]]), jnp.array([[0.2]]), jnp.zeros((1, 1)), jnp.ones((1, 1)))
        >>> print(jnp.round(mean, 3), jnp.round(std, 3))
        [[0.316]] [[0.785]]
    """

    def __init__(
        self,
        projection: ProjectionName = "kl",
        cov_type: CovType = "diag",
        *,
        eps_mean: float | None = None,
        eps_cov: float | None = None,
        entropy_equality: bool = False,
        scale_prec: bool = True,
    ):
        self.output_cov_type = projection_cov_type(cov_type, projection)  # validates both names
        for what, eps in (("eps_mean", eps_mean), ("eps_cov", eps_cov)):
            if eps is not None and not eps > 0:
                raise ValueError(f"{what} must be > 0, got {eps}")
        self.projection, self.cov_type = projection, cov_type
        self.eps_mean, self.eps_cov = eps_mean, eps_cov
        self.entropy_equality, self.scale_prec = bool(entropy_equality), bool(scale_prec)

    def __call__(
        self,
        mean: jax.Array,
        scale: jax.Array,
        old_mean: jax.Array,
        old_scale: jax.Array,
        eps_mean: ArrayLike | None = None,
        eps_cov: ArrayLike | None = None,
        entropy_bound: ArrayLike | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        eps_mean = self.eps_mean if eps_mean is None else eps_mean
        eps_cov = self.eps_cov if eps_cov is None else eps_cov
        if eps_mean is None or eps_cov is None:
            raise ValueError("no trust-region bounds: give eps_mean and eps_cov to the layer or to the call")
        projected, _ = project_gaussians(
            self.projection,
            mean,
            scale,
            old_mean,
            old_scale,
            eps_mean,
            eps_cov,
            cov_type=self.cov_type,
            entropy_bound=entropy_bound,
            entropy_equality=self.entropy_equality,
            scale_prec=self.scale_prec,
        )
        return projected


__all__ = ["TrustRegionLayer"]
