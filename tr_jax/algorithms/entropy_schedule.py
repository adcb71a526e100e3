"""Entropy-bound schedules beta(t) for TRPL's entropy projection.

With ``H0`` the initial policy entropy, ``beta_T = config.target_entropy``
(the *total* entropy of the Gaussian, nats), iteration ``t`` of ``T =
config.num_iterations``:

* ``"none"``:   beta = -inf (the entropy projection is not applied);
* ``"linear"``: beta = H0 + (beta_T - H0) * t / T;
* ``"exp"``:    beta = beta_T + (H0 - beta_T) * temperature ** (10 t / T)
  (``config.entropy_temperature``; with 0.5 the remaining gap at the end of
  the run is 0.5**10 ~ 1e-3 of the initial one).

These follow the paper's appendix / reference code, except that the
reference's exp schedule takes a *per-dimension* target (``k * target``);
here both schedules take the total, so ``target_entropy`` means the same thing
for either. Inequality form (``entropy_equality=False``): the entropy is kept
>= beta; equality form: it is set to beta.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

SCHEDULES = ("none", "linear", "exp")


def gaussian_entropy(k: int, std: float) -> float:
    """Entropy of N(., std^2 I_k): 0.5 k (1 + log 2 pi) + k log std."""
    return 0.5 * k * (1.0 + math.log(2.0 * math.pi)) + k * math.log(std)


def entropy_bound(schedule: str, initial_entropy, target_entropy: float, temperature: float,
                  iteration, num_iterations: int):
    """beta at ``iteration`` (scalar, traced or not); -inf for ``"none"``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown entropy_schedule {schedule!r}; expected one of {SCHEDULES}")
    initial_entropy = jnp.asarray(initial_entropy)
    frac = jnp.asarray(iteration, initial_entropy.dtype) / max(1, num_iterations)
    if schedule == "none":
        return jnp.full_like(initial_entropy, -jnp.inf)
    if schedule == "linear":
        return initial_entropy + (target_entropy - initial_entropy) * frac
    return target_entropy + (initial_entropy - target_entropy) * jnp.power(temperature, 10.0 * frac)
