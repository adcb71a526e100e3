"""The run directory the policy tests load and export (:func:`save_run`), its observations, and ``tr-jax`` in a
new process."""

import os
import subprocess
import sys

import _line_env
import jax
import jax.numpy as jnp
import numpy as np

_line_env.register()
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = _line_env.line_config(4, unroll_length=4, algorithm="ppo", obs_clip=2.0, cov_type="full", contextual_cov=True)
OBS_MEAN, OBS_VAR = np.array([0.5, -1.0], np.float32), np.array([4.0, 0.25], np.float32)


def save_run(path: str):
    """A 2-seed run directory at ``path`` with one checkpoint (iteration 3): fresh TrainStates with the policy's
    weights perturbed (so actions depend on the observation and differ between seeds) and observation
    statistics whose normalisation and clipping (obs_clip 2) matter. Returns ``(path, seed 0's policy params)``."""
    from tr_jax import rundir as R
    from tr_jax.checkpoint import Checkpoints
    from tr_jax.config import config_to_dict
    from tr_jax.train import make_trainer

    rd = R.RunDir.create(path)
    R.write_json(rd.config, config_to_dict(LINE))
    rd.write_info(seed=0, num_seeds=2)
    state = jax.jit(make_trainer(LINE).init_runs)(jax.random.split(jax.random.key(0), 2))
    leaves, tree = jax.tree.flatten(state.algo.policy_params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [x + 0.5 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    stats = state.obs_stats._replace(mean=jnp.broadcast_to(OBS_MEAN, (2, 2)), var=jnp.broadcast_to(OBS_VAR, (2, 2)))
    state = state._replace(algo=state.algo._replace(policy_params=jax.tree.unflatten(tree, leaves)), obs_stats=stats)
    ck = Checkpoints(rd.checkpoints)
    ck.save(3, state, {"iteration": 3, "env_steps": 3 * LINE.batch_size})
    ck.close()
    return rd.path, jax.tree.map(lambda x: np.asarray(x[0]), state.algo.policy_params)


def observations(n, seed=2):
    """``n`` float32 observations ``[n, 2]``, spread wide enough that the clipping at 2 matters."""
    return np.asarray(jax.random.normal(jax.random.key(seed), (n, 2)) * 3.0, np.float32)


def tr_jax_process(*args, timeout=300):
    """``tr-jax ARGS`` in a new process (tests/_run_child.py registers the line env)."""
    return subprocess.run(
        [sys.executable, os.path.join(TESTS, "_run_child.py"), *args], capture_output=True, text=True, timeout=timeout
    )
