"""Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=4 (tests/test_parallel.py).

Trains the tiny line env with every algorithm on 4 devices and on 1 (``num_devices``), 2 vmapped seeds,
and prints one JSON object: parameter/metric differences, shardings, and the all-reduces of the
compiled PPO chunk.
"""

import json
import os
import re
import sys

assert "xla_force_host_platform_device_count=4" in os.environ.get("XLA_FLAGS", "")
# this folder (the helpers) and the repository (tr_jax, also when it is not installed)
sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _line_env import line_config, register  # noqa: E402

from tr_jax.train import make_trainer  # noqa: E402

register()
BASE = line_config(3, num_envs=8, normalize_reward=True)
CASES = {
    "ppo": dict(algorithm="ppo"),
    "trpl_kl_full": dict(algorithm="trpl", projection="kl", cov_type="full", extra_regression_steps=2, value_epochs=1),
    "trpo": dict(algorithm="trpo"),
}


def flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def train(cfg, iterations=3):
    tr = make_trainer(cfg)
    keys = jax.random.split(jax.random.key(0), 2)
    state = jax.jit(tr.init_runs, out_shardings=tr.state_shardings(batched=True))(keys)
    out, metrics = jax.jit(jax.vmap(tr.train_chunk, in_axes=(0, None)), static_argnums=1)(state, iterations)
    return tr, state, out, metrics


result = {"devices": jax.device_count(), "cases": {}}
for name, kw in CASES.items():
    cfg = BASE.replace(**kw)
    tr4, init4, s4, m4 = train(cfg.replace(num_devices=4))
    _, _, s1, m1 = train(cfg.replace(num_devices=1))
    p4, p1 = flat((s4.algo.policy_params, s4.algo.value_params)), flat((s1.algo.policy_params, s1.algo.value_params))
    result["cases"][name] = {
        "param_diff": float(np.abs(p4 - p1).max()),
        "param_scale": float(np.abs(p1).max()),
        "moved": float(np.abs(p1 - flat((init4.algo.policy_params, init4.algo.value_params))).max()),
        "metric_diff": {
            k: float(np.nanmax(np.abs(np.asarray(m4[k], np.float64) - np.asarray(m1[k], np.float64))))
            for k in m4
            if np.issubdtype(np.asarray(m4[k]).dtype, np.floating) and np.isfinite(np.asarray(m1[k])).all()
        },
        "obs_stats_diff": float(np.abs(flat(s4.obs_stats) - flat(s1.obs_stats)).max()),
        "mesh_devices": [int(tr4.mesh.devices.size)],
    }
    if name == "ppo":
        leaves = jax.tree.leaves(s4.env)
        result["env_specs"] = sorted({str(x.sharding.spec) for x in leaves})
        result["env_shard_rows"] = sorted({x.addressable_shards[0].data.shape[1] for x in leaves})
        result["reward_ret_spec"] = str(s4.reward_norm.ret.sharding.spec)
        result["param_specs"] = sorted({str(x.sharding.spec) for x in jax.tree.leaves(s4.algo.policy_params)})
        # the compiled chunk of ONE run (no vmap): its all-reduces
        one = jax.tree.map(lambda x: x[0], init4)
        hlo = jax.jit(tr4.train_chunk, static_argnums=1).lower(one, 1).compile().as_text()
        shapes = re.findall(r"= (\S+) all-reduce(?:-start)?\(", hlo)
        result["all_reduce_shapes"] = shapes
        result["num_params"] = int(flat((one.algo.policy_params, one.algo.value_params)).size)
        result["leaf_shapes"] = sorted(
            {str(tuple(x.shape)) for x in jax.tree.leaves((one.algo.policy_params, one.algo.value_params))}
        )
        result["hlo_has_all_gather"] = "all-gather" in hlo
errors = []
for bad in (dict(num_envs=6, num_devices=4), dict(num_devices=8), dict(num_minibatches=32, num_devices=4)):
    try:
        make_trainer(BASE.replace(**bad))
        errors.append(None)
    except ValueError as e:
        errors.append(str(e))
result["errors"] = errors
print("RESULT " + json.dumps(result))
