"""Hyperparameter sweeps as one compiled program (tr_jax/hyperparams.py, tr_jax.run.run_sweep, --sweep)."""

import json
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _line_env import line_config, register  # noqa: E402

from tr_jax.cli import main  # noqa: E402
from tr_jax.hyperparams import SWEEPABLE, parse_sweep, sweep_configs  # noqa: E402
from tr_jax.plot import load_run  # noqa: E402
from tr_jax.run import run, run_sweep  # noqa: E402
from tr_jax.rundir import read_jsonl  # noqa: E402

register()
# one xdist worker runs this module (--dist loadgroup): its module fixture (sweep) is computed once
pytestmark = pytest.mark.xdist_group("sweep")
# large steps so that the mean bound is active at every setting
LINE = line_config(
    4,
    algorithm="trpl",
    policy_lr=0.05,
    lr_decay=False,
    chunk_iterations=2,
    eval_every=0,
    checkpoint_every=2,
    eval_episodes=2,
)
EPS = (1e-4, 1e-3, 1e-2)


def _flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    results = run_sweep(LINE, [("eps_mean", EPS)], seed=1, num_seeds=2, run_dir=str(root / "s"), progress="none")
    return root, results


@pytest.mark.slow
def test_a_sweep_equals_separate_runs(sweep):
    root, results = sweep
    assert [os.path.basename(r.run_dir) for r in results] == [f"eps_mean={e:g}" for e in EPS]
    for eps, r in zip(EPS, results):
        alone = run(
            LINE.replace(eps_mean=eps), seed=1, num_seeds=2, run_dir=str(root / f"alone{eps:g}"), progress="none"
        )
        np.testing.assert_allclose(_flat(r.state.algo), _flat(alone.state.algo), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r.metrics["mean_part_max"], alone.metrics["mean_part_max"], rtol=1e-4, atol=1e-9)
        # each setting kept its own bound, and the bound was active (so the settings really differ)
        assert np.all(r.metrics["mean_part_max"] <= eps * (1 + 1e-3))
        assert np.max(r.metrics["mean_part_max"]) >= 0.5 * eps, (eps, r.metrics["mean_part_max"])
        assert float(r.state.hparams.eps_mean[0]) == pytest.approx(eps)


def test_sweep_directory_has_one_labelled_run_per_setting(sweep):
    root, results = sweep
    top = root / "s"
    meta = json.load(open(top / "sweep.json"))
    assert meta["settings"] == [f"eps_mean={e:g}" for e in EPS] and meta["num_seeds"] == 2
    labels = set()
    for eps, r in zip(EPS, results):
        config = json.load(open(os.path.join(r.run_dir, "config.json")))
        assert config["eps_mean"] == eps
        rows = read_jsonl(os.path.join(r.run_dir, "metrics.jsonl"))
        assert sorted((x["iteration"], x["seed"]) for x in rows) == [(i, s) for i in range(4) for s in range(2)]
        assert json.load(open(os.path.join(r.run_dir, "summary.json")))["status"] == "finished"
        labels.add(load_run(r.run_dir).label)
    assert labels == {f"trpl-kl eps_mean={e:g}" for e in EPS}  # tr-jax plot draws one curve per setting


def test_sweep_resumes_every_setting(sweep, tmp_path):
    import shutil

    root, results = sweep
    copy = str(tmp_path / "s")
    shutil.copytree(root / "s", copy)
    again = run_sweep(LINE.replace(total_env_steps=4 * 8 * 6), run_dir=copy, resume=True, progress="none")
    assert [r.iteration for r in again] == [6, 6, 6]
    for r in again:
        rows = read_jsonl(os.path.join(r.run_dir, "metrics.jsonl"))
        assert sorted((x["iteration"], x["seed"]) for x in rows) == [(i, s) for i in range(6) for s in range(2)]
    with pytest.raises(ValueError, match="cannot resume with a different config"):
        run_sweep(LINE.replace(num_envs=8), run_dir=copy, resume=True, progress="none")


def test_parse_sweep_and_grid():
    assert parse_sweep("eps_cov=1e-4, 1e-3") == ("eps_cov", (1e-4, 1e-3))
    with pytest.raises(ValueError, match="cannot be swept.*sweepable"):
        parse_sweep("num_envs=4,8")
    with pytest.raises(ValueError, match="not a number"):
        parse_sweep("eps_cov=1e-4,big")
    with pytest.raises(ValueError, match="repeated"):
        parse_sweep("eps_cov=1e-4,1e-4")
    grid = sweep_configs(LINE, [("eps_cov", (1e-4, 1e-3, 1e-2)), ("eps_mean", (0.01, 0.03))])
    assert len(grid) == 6 and grid[1][0] == "eps_cov=0.0001,eps_mean=0.03" and grid[1][1].eps_mean == 0.03
    with pytest.raises(ValueError, match="eps_cov must be positive"):
        sweep_configs(LINE, [("eps_cov", (1e-3, -1.0))])
    assert set(SWEEPABLE) >= {
        "eps_mean",
        "eps_cov",
        "policy_lr",
        "value_lr",
        "entropy_coef",
        "trust_region_coef",
        "clip_ratio",
        "max_kl",
    }


def test_cli_sweep_and_distributed_errors(capsys):
    assert main(["train", "--coordinator", "10.0.0.1:8476"]) == 2
    assert "go together" in capsys.readouterr().err
    assert main(["train", "--sweep", "gamma=0.9,0.99"]) == 2
    assert "cannot be swept" in capsys.readouterr().err
    assert main(["train", "--resume", "x", "--sweep", "eps_cov=1e-3,1e-2"]) == 2
    assert "x is not a sweep directory: sweep.json is missing" in capsys.readouterr().err
