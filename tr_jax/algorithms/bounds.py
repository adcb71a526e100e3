"""Which update metric each algorithm bounds, and by which hyperparameter: the one table of trust regions.

:data:`BOUNDS` maps an algorithm name (see :data:`tr_jax.algorithms.ALGORITHMS`) to its :class:`Bounds`:

* TRPL projects every state's policy onto the trust region, so the *optimised* (projected) policy's
  largest per-state mean part ``mean_part_max`` is bounded by ``eps_mean`` and its cov part
  ``cov_part_max`` by ``eps_cov``; the *acting* policy (the network output, not projected) has the
  same parts ``acting_mean_part_max`` / ``acting_cov_part_max`` against the same bounds, which it may exceed;
* TRPO bounds the mean KL over the batch's states, ``kl_mean``, by ``max_kl`` (its acting policy is the
  optimised one);
* PPO has no bound.

The metrics are keys of the metrics that ``Algorithm.update`` returns (``metrics.jsonl`` columns), the
hyperparameters fields of :class:`~tr_jax.hyperparams.Hyperparams` (and of the run's config). The run's
progress line, ``tr-jax compare`` and ``tr-jax plot`` read this table.
"""

from __future__ import annotations

from typing import NamedTuple


class Bound(NamedTuple):
    """One bounded metric: ``metric <= hyperparameter`` (per update; a scalar each)."""

    metric: str
    hyperparameter: str


class Bounds(NamedTuple):
    """An algorithm's bounds, keyed by a short name of the bounded quantity (``"mean"``, ``"cov"``, ``"kl"``).

    optimised: bounds on the policy the update optimised (they hold by construction, up to solver tolerance).
    acting: the same quantities of the policy that acts next, where it differs from the optimised one
      (TRPL's unprojected network output; the bound is a reference there, not a guarantee).
    """

    optimised: dict[str, Bound]
    acting: dict[str, Bound]


BOUNDS: dict[str, Bounds] = {
    "ppo": Bounds(optimised={}, acting={}),
    "trpo": Bounds(optimised={"kl": Bound("kl_mean", "max_kl")}, acting={}),
    "trpl": Bounds(
        optimised={"mean": Bound("mean_part_max", "eps_mean"), "cov": Bound("cov_part_max", "eps_cov")},
        acting={"mean": Bound("acting_mean_part_max", "eps_mean"), "cov": Bound("acting_cov_part_max", "eps_cov")},
    ),
}
