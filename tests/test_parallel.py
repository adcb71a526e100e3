"""Data parallelism on 4 forced CPU devices (a subprocess: XLA_FLAGS must be set before JAX starts).

tests/_parallel_child.py trains the tiny line env with PPO, TRPL (KL, full covariance, regression
steps, separate value epochs) and TRPO on 4 devices and on 1, and reports what the
tests below check: the same result, arrays really split, one all-reduce for all gradients.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# A hang backstop, not a time limit: the child compiles three trainers on 1 and on 4 devices (minutes on a
# loaded 2-core machine; it ran out of the old 540 s there while both xdist workers ran it at once).
CHILD_TIMEOUT_S = 1800
# one xdist worker runs this module (--dist loadgroup): its module fixture (child) is computed once
pytestmark = [pytest.mark.xdist_group("parallel"), pytest.mark.timeout(CHILD_TIMEOUT_S + 60)]


@pytest.fixture(scope="module")
def child():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]),
    )
    p = subprocess.run(
        [sys.executable, os.path.join(HERE, "_parallel_child.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, p.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.parametrize("case", ["ppo", "trpl_kl_full", "trpo"])
def test_four_devices_equal_one_device(child, case):
    assert child["devices"] == 4
    c = child["cases"][case]
    assert c["mesh_devices"] == [4]
    assert c["moved"] > 1e-4  # the updates really changed the parameters ...
    assert c["param_diff"] <= 1e-5 * max(1.0, c["param_scale"])  # ... identically on 1 and 4 devices
    assert c["obs_stats_diff"] <= 1e-5
    for name, diff in c["metric_diff"].items():
        assert diff <= 1e-4, (name, diff)


def test_env_state_is_split_and_parameters_replicated(child):
    assert child["env_specs"] == ["P(None, 'data')"]  # [runs, envs]: envs over the 4 devices
    assert child["env_shard_rows"] == [2]  # 8 envs / 4 devices
    assert child["reward_ret_spec"] == "P(None, 'data')"
    assert child["param_specs"] == ["P()"]


def test_one_all_reduce_for_all_gradients(child):
    """PPO's joint policy+value step: the gradients of every parameter are averaged in ONE all-reduce of
    all of them (not one per leaf); the other all-reduces are scalars (statistics, metrics)."""
    n = child["num_params"]
    shapes = child["all_reduce_shapes"]
    full = [s for s in shapes if s.split("{")[0] == f"f32[{n}]"]
    assert len(full) == 1, shapes
    others = [s for s in shapes if s not in full]
    assert all(s.split("{")[0] in ("f32[]", "s32[]", "f32[2]", "f32[3]") for s in others), shapes
    assert child["hlo_has_all_gather"]  # the batch is gathered once per iteration


def test_clear_errors_for_device_counts(child):
    envs, too_many, minibatch = child["errors"]
    assert "num_envs (6) must divide by the number of devices (4" in envs
    assert "num_devices=8 but JAX sees only 4 device(s)" in too_many
    assert "the minibatch size (2) must divide by the number of devices (4" in minibatch  # 64 rows / 32
