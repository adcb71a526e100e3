"""experiments/device_check.py --quick: the accelerator check runs on the CPU (in a subprocess, as on the device)
and writes a sane JSON. (Its data-parallel entries need several devices: tests/test_parallel.py covers
``num_devices``; here JAX sees one CPU device.)"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "device_check.py"
pytestmark = pytest.mark.xdist_group("device_check")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check") / "sub" / "check.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


@pytest.mark.slow
def test_quick_check_writes_every_section(quick):
    result, stdout = quick
    assert {"meta", "device", "projections", "training", "peak_memory_bytes", "total_s", "complete"} <= result.keys()
    assert result["complete"] is True and result["meta"]["quick"] is True
    dev = result["device"]
    assert dev["backend"] == "cpu" and dev["count"] == len(dev["devices"]) >= 1 and dev["kind"]
    assert result["peak_memory_bytes"] == [None] * dev["count"]  # the CPU reports no memory statistics
    assert "projections" in stdout and "training" in stdout and "wrote" in stdout  # the table was printed


@pytest.mark.slow
def test_quick_projections_are_timed_and_match_the_cpu_float64_reference(quick):
    rows = quick[0]["projections"]
    assert {(r["proj"], r["cov"], r["dtype"]) for r in rows} == {
        ("kl", "diag", "float32"),
        ("w2", "diag", "float32"),
        ("kl", "full", "float32"),
    }
    for r in rows:
        for field in ("fwd_ms", "fwd_bwd_ms", "compile_fwd_s", "compile_fwd_bwd_s"):
            assert r[field] > 0 and math.isfinite(r[field]), (field, r)
        # float32 deviates from the float64 reference by its rounding only, and meets its bounds to ~1e-5
        assert 0 < r["mean_max_abs_dev"] <= 1e-5 and 0 < r["cov_max_abs_dev"] <= 1e-5 * r["cov_max_abs"], r
        assert 0 <= r["cov_max_excess"] <= 1e-4, r


@pytest.mark.slow
def test_quick_training_is_timed(quick):
    rows = quick[0]["training"]
    assert [(r["algorithm"], r["devices"]) for r in rows] == [("ppo", 1), ("trpl-kl", 1)]
    for r in rows:
        assert r["steps_per_second"] > 0 and r["compile_s"] > 0 and r["run_s"] > 0
        assert r["env_steps"] == r["iterations"] * r["num_envs"] * r["unroll_length"]


def test_bad_flags_stop_before_anything_is_written(tmp_path):
    for flags, message in (
        (["--only", "nope"], "--only 'nope': expected some of projections,training"),
        (["--iterations", "0"], "--iterations must be >= 1"),
        (["--out", str(tmp_path)], "is a directory"),
    ):
        out = [] if "--out" in flags else ["--out", str(tmp_path / "x" / "y.json")]
        done = subprocess.run(
            [sys.executable, str(SCRIPT), *flags, *out],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []
