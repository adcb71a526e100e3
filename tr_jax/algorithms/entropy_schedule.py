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

from tr_jax.losses import SCHEDULES, entropy_bound, gaussian_entropy  # the one implementation (public)

__all__ = ["SCHEDULES", "entropy_bound", "gaussian_entropy"]
