"""Save and load trained parameters together with their :class:`TrainConfig`.

One msgpack file (``flax.serialization``) holding ``{"state": pytree of
arrays, "config": json string}``. :func:`state_dict` picks what is needed to
act and continue: policy/value params and the observation statistics.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np
from flax import serialization

from tr_jax.config import TrainConfig


def state_dict(train_state) -> dict:
    """Policy/value params and observation statistics of a ``TrainState``."""
    return {
        "policy_params": train_state.algo.policy_params,
        "value_params": train_state.algo.value_params,
        "obs_mean": train_state.obs_stats.mean,
        "obs_var": train_state.obs_stats.var,
        "obs_count": train_state.obs_stats.count,
    }


def config_to_json(config: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def config_from_json(text: str) -> TrainConfig:
    d = json.loads(text)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in fields}
    return TrainConfig(**d)


def save(path: str, tree, config: TrainConfig) -> str:
    """Writes ``tree`` (any pytree of arrays) and ``config`` to ``path``; returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arrays = jax.tree.map(np.asarray, tree)
    payload = serialization.to_state_dict({"state": arrays, "config": config_to_json(config)})
    with open(path, "wb") as f:
        f.write(serialization.msgpack_serialize(payload))
    return path


def load(path: str):
    """Returns ``(tree, config)``; ``tree`` is nested dicts of numpy arrays."""
    with open(path, "rb") as f:
        payload = serialization.msgpack_restore(f.read())
    return payload["state"], config_from_json(payload["config"])
