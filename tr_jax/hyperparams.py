"""Hyperparameters as data: the plain-number settings an update reads from arrays, not from the config.

:class:`Hyperparams` holds ``eps_mean``, ``eps_cov``, ``policy_lr``,
``value_lr``, ``entropy_coef``, ``trust_region_coef``, ``clip_ratio`` and
``max_kl`` as scalar arrays. They live in the
:class:`~tr_jax.train.TrainState` (so checkpoints keep them) and every
algorithm reads them from there; the :class:`~tr_jax.config.TrainConfig`
only gives their defaults. A sweep over them is therefore one compiled
program: ``jax.vmap`` over runs whose states carry different values.

:func:`parse_sweep` reads ``"eps_cov=1e-4,1e-3"``; :func:`sweep_configs`
expands sweeps into the grid of configs (one per setting) with a label each.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import jax.numpy as jnp

if TYPE_CHECKING:  # config imports this module
    from tr_jax.config import TrainConfig


class Hyperparams(NamedTuple):
    """Scalars (or ``[runs]`` under vmap), dtype of the config's ``dtype``."""

    eps_mean: jnp.ndarray
    eps_cov: jnp.ndarray
    policy_lr: jnp.ndarray
    value_lr: jnp.ndarray
    entropy_coef: jnp.ndarray
    trust_region_coef: jnp.ndarray
    clip_ratio: jnp.ndarray
    max_kl: jnp.ndarray


SWEEPABLE = Hyperparams._fields


def from_config(config: TrainConfig) -> Hyperparams:
    """The config's values as scalar arrays of ``config.dtype``."""
    dtype = jnp.dtype(config.dtype)
    return Hyperparams(*(jnp.asarray(getattr(config, f), dtype) for f in SWEEPABLE))


def parse_sweep(text: str) -> tuple[str, tuple]:
    """``"eps_cov=1e-4,1e-3"`` -> ``("eps_cov", (1e-4, 1e-3))``; ``ValueError`` naming what is wrong."""
    if "=" not in text:
        raise ValueError(f"--sweep {text!r}: expected key=value1,value2,...")
    key, values = (x.strip() for x in text.split("=", 1))
    if key not in SWEEPABLE:
        raise ValueError(f"--sweep {text!r}: {key!r} cannot be swept in one program; sweepable: {list(SWEEPABLE)}")
    out = []
    for v in values.split(","):
        try:
            x = json.loads(v.strip())
        except json.JSONDecodeError:
            x = None
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ValueError(f"--sweep {text!r}: {v.strip()!r} is not a number")
        out.append(float(x))
    if len(set(out)) != len(out):
        raise ValueError(f"--sweep {text!r}: a value is repeated")
    return key, tuple(out)


def sweep_configs(
    base: TrainConfig, sweeps: Sequence[tuple[str, Sequence[float]]], labels: Sequence[str] | None = None
) -> list[tuple[str, TrainConfig]]:
    """The grid of ``sweeps`` (``[(key, values), ...]``, each key once) over ``base``.

    Returns ``[(label, config), ...]`` in row-major order of ``sweeps``; the label
    is ``"key=value,key=value"`` (``""`` for no sweep). Each config is validated.
    ``labels`` given (one per setting, distinct): no grid, setting ``i`` takes value ``i`` of every key (all
    ``values`` as long as ``labels``) and is named ``labels[i]``. A key that ``base.algorithm`` never reads is a
    ``ValueError`` (:func:`tr_jax.config.validate`).
    """
    from tr_jax.config import validate

    keys = [k for k, _ in sweeps]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key is swept twice: {keys}")
    if labels is None:
        combos = list(itertools.product(*(v for _, v in sweeps)))
        labels = [",".join(f"{k}={v:g}" for k, v in zip(keys, values)) for values in combos]
    else:
        if any(len(v) != len(labels) for _, v in sweeps) or len(set(labels)) != len(labels):
            raise ValueError(
                f"{len(labels)} labels (distinct) need as many values of every key: {[(k, len(v)) for k, v in sweeps]}"
            )
        combos = list(zip(*(v for _, v in sweeps)))
    return [
        (label, validate(base.replace(**dict(zip(keys, values))), given=keys)) for label, values in zip(labels, combos)
    ]
