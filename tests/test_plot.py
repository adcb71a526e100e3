"""``tr-jax plot``: bootstrap band math, grouping by label, files written from a real (tiny) run, errors."""

import json
import os

import _line_env
import numpy as np
import pytest

from tr_jax import cli
from tr_jax.config import TrainConfig, config_to_dict
from tr_jax.plot import PlotError, bootstrap_band, default_label, plot_runs, smooth_curve
from tr_jax.run import run

pytest.importorskip("matplotlib")
_line_env.register()
# one xdist worker runs this module (--dist loadgroup): its module fixture (line_run) is computed once
pytestmark = pytest.mark.xdist_group("plot")

LINE = _line_env.line_config(
    8, algorithm="trpl", projection="kl", chunk_iterations=4, checkpoint_every=8, eval_every=4, eval_episodes=2
)


@pytest.fixture(scope="module")
def line_run(tmp_path_factory):
    """A real 2-seed TRPL-KL run on the line env."""
    d = str(tmp_path_factory.mktemp("runs") / "line-trpl")
    run(LINE, seed=0, num_seeds=2, run_dir=d, progress="none")
    return d


def _fake_run(path, config, curves, eval_curves=None):
    """A run directory with given per-seed metric rows: ``curves[seed] = [(env_steps, {metric: value}), ...]``."""
    os.makedirs(path)
    json.dump(config_to_dict(config), open(os.path.join(path, "config.json"), "w"))
    json.dump({"seed": 0, "num_seeds": len(curves)}, open(os.path.join(path, "run.json"), "w"))
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for seed, rows in enumerate(curves):
            for i, (steps, values) in enumerate(rows):
                f.write(json.dumps({"iteration": i, "seed": seed, "env_steps": steps, **values}) + "\n")
    with open(os.path.join(path, "eval.jsonl"), "w") as f:
        for seed, rows in enumerate(eval_curves or []):
            for i, (steps, values) in enumerate(rows):
                f.write(json.dumps({"iteration": i, "seed": seed, "env_steps": steps, **values}) + "\n")
    return str(path)


def test_bootstrap_band_by_hand():
    # two seeds a < b: a resample's mean is a (prob 1/4), (a+b)/2 (1/2) or b (1/4), so the 2.5% and
    # 97.5% percentiles of the resampled means are a and b
    mean, lo, hi = bootstrap_band(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(lo, [1.0, 5.0])
    np.testing.assert_allclose(hi, [3.0, 5.0])  # equal values: a band of width 0
    # seeds (0, 0, 0, 1): a resample's mean is k/4 with k ~ Binomial(4, 1/4): P(k <= 2) = 0.949,
    # P(k <= 3) = 0.996, so the 97.5% percentile is 3/4 and the 2.5% percentile 0 (P(k = 0) = 0.316)
    mean, lo, hi = bootstrap_band(np.array([[0.0], [0.0], [0.0], [1.0]]), num_resamples=20000)
    assert mean[0] == 0.25 and lo[0] == 0.0 and hi[0] == 0.75
    # a 50% band is narrower: the 25% / 75% percentiles are 0 (P(k=0)=0.316) and 1/4 (P(k<=1)=0.738 < 0.75 ->
    # k=2: 1/2)
    _, lo, hi = bootstrap_band(np.array([[0.0], [0.0], [0.0], [1.0]]), confidence=0.5, num_resamples=20000)
    assert lo[0] == 0.0 and hi[0] == 0.5
    # one seed: the band is the curve; deterministic for a given seed
    np.testing.assert_array_equal(bootstrap_band(np.array([[1.0, 2.0]]))[1], [1.0, 2.0])
    x = np.random.default_rng(1).normal(size=(5, 7))
    np.testing.assert_array_equal(bootstrap_band(x)[1], bootstrap_band(x)[1])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_band(x, confidence=1.5)


def test_default_labels():
    assert default_label(config_to_dict(TrainConfig(algorithm="ppo"))) == "ppo"
    assert default_label(config_to_dict(TrainConfig(algorithm="trpl", projection="w2"))) == "trpl-w2"
    assert (
        default_label(config_to_dict(TrainConfig(algorithm="trpl", projection="kl", cov_type="full"))) == "trpl-kl-full"
    )


def test_grouping_pools_seeds_and_scales_bounds(tmp_path):
    trpl = LINE.replace(eps_mean=0.5, eps_cov=0.1)
    row = lambda v, mp, cp: {"episode_return": v, "kl_max": 0.01, "mean_part_max": mp, "cov_part_max": cp}
    a = _fake_run(tmp_path / "a", trpl, [[(10, row(None, 0.5, 0.1)), (20, row(1.0, 0.25, 0.05))]])
    b = _fake_run(tmp_path / "b", trpl, [[(10, row(2.0, 0.5, 0.1)), (20, row(3.0, 0.5, 0.0))]])
    c = _fake_run(tmp_path / "c", LINE.replace(algorithm="ppo"), [[(10, row(5.0, 0, 0)), (30, row(7.0, 0, 0))]])
    drawn = plot_runs([a, b, c], str(tmp_path / "x.svg"), ["return", "mean_bound", "cov_bound", "kl_max"])
    assert sorted(drawn["return"]) == ["ppo", "trpl-kl"] and sorted(drawn["mean_bound"]) == ["trpl-kl"]
    r = drawn["return"]["trpl-kl"]  # run a has no return at 10 steps (null): its curve covers [20, 20] only
    assert r.num_seeds == 2 and list(r.x) == [20.0] and list(r.mean) == [2.0]
    m = drawn["mean_bound"]["trpl-kl"]  # fractions of eps_mean = 0.5
    np.testing.assert_allclose(m.mean, [1.0, 0.75])
    np.testing.assert_allclose(drawn["cov_bound"]["trpl-kl"].mean, [1.0, 0.25])
    assert list(drawn["return"]["ppo"].x) == [10, 30]
    svg = open(tmp_path / "x.svg").read()
    assert svg.startswith("<?xml") and "trpl-kl (n=2)" in svg and "ppo (n=1)" in svg
    # explicit labels regroup
    drawn = plot_runs([a, b, c], str(tmp_path / "y.png"), ["kl_max"], labels=["x", "y", "x"])
    assert {k: v.num_seeds for k, v in drawn["kl_max"].items()} == {"x": 2, "y": 1}


def test_smoothing_and_bound_panel_headroom(tmp_path):
    np.testing.assert_allclose(smooth_curve(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_array_equal(smooth_curve(np.array([1.0, 3.0]), 1), [1.0, 3.0])
    trpl = LINE.replace(eps_mean=0.5, eps_cov=0.1)
    row = lambda v: {"episode_return": v, "kl_max": 0.01, "mean_part_max": 0.5, "cov_part_max": 0.01}
    run = _fake_run(
        tmp_path / "a",
        trpl,
        [[(10, row(0.0)), (20, row(4.0)), (30, row(8.0))]],
        eval_curves=[[(10, {"deterministic_return_mean": 0.0}), (30, {"deterministic_return_mean": 9.0})]],
    )
    drawn = plot_runs([run], str(tmp_path / "s.png"), ["return", "eval_return", "mean_bound"], smooth=2)
    np.testing.assert_allclose(drawn["return"]["trpl-kl"].mean, [0.0, 2.0, 6.0])  # trailing 2-point mean
    np.testing.assert_allclose(drawn["eval_return"]["trpl-kl"].mean, [0.0, 9.0])  # evaluations: never smoothed
    with pytest.raises(PlotError, match="smooth"):
        plot_runs([run], str(tmp_path / "s.png"), ["return"], smooth=0)
    # a bound panel whose curve sits on the bound (1.0) leaves room above it
    from matplotlib.figure import Figure

    seen = {}
    orig = Figure.savefig

    def savefig(self, *a, **k):
        seen["axes"] = {ax.get_title(): (ax.get_yscale(), ax.get_ylim()) for ax in self.axes if ax.get_visible()}
        return orig(self, *a, **k)

    Figure.savefig = savefig
    try:
        plot_runs([run], str(tmp_path / "b.png"), ["mean_bound", "kl_max"])
        assert seen["axes"]["max mean part / eps_mean"] == ("linear", (0.0, 1.1))
        assert seen["axes"]["max KL(new || old) per update"][0] == "linear"
        # a curve 40x over its bound, and KLs from 0.01 to 50: log axes, so that the other curves stay readable
        far = lambda v, kl: {"episode_return": v, "kl_max": kl, "mean_part_max": 20.0, "cov_part_max": 0.01}
        wide = _fake_run(tmp_path / "w", trpl, [[(10, far(0.0, 0.01)), (20, far(1.0, 50.0))]])
        plot_runs([run, wide], str(tmp_path / "c.png"), ["mean_bound", "kl_max"], labels=["a", "w"])
        assert seen["axes"]["max mean part / eps_mean"][0] == "log"
        assert seen["axes"]["max KL(new || old) per update"][0] == "log"
    finally:
        Figure.savefig = orig


def test_plot_a_real_run(line_run, tmp_path, capsys):
    out = str(tmp_path / "curves.png")
    assert cli.main(["plot", line_run, "--out", out]) == 0
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(out) > 10_000
    assert (
        "return, eval_return, kl_max, mean_bound, cov_bound, acting_mean_bound, acting_cov_bound for trpl-kl"
        in capsys.readouterr().out
    )
    drawn = plot_runs([line_run], str(tmp_path / "c.pdf"), ["eval_return", "entropy"])
    e = drawn["eval_return"]["trpl-kl"]
    assert e.num_seeds == 2 and list(e.x) == [4 * 32, 8 * 32]  # evaluations at iterations 4 and 8
    assert np.all(e.low <= e.mean + 1e-12) and np.all(e.mean <= e.high + 1e-12)
    assert open(tmp_path / "c.pdf", "rb").read(5) == b"%PDF-"
    # the TRPL bounds hold: every fraction <= 1 (solver tolerance)
    for m in ("mean_bound", "cov_bound"):
        assert np.all(plot_runs([line_run], str(tmp_path / "b.svg"), [m])[m]["trpl-kl"].high <= 1.0 + 1e-3)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--metric", "retrun"], r"unknown metric\(s\) \['retrun'\] for these runs; available: \['return', "),
        (["--out", "x.jpg"], "unknown file type '.jpg'"),
        (["--label", "a", "b"], "got 2 labels for 1 run directories"),
    ],
)
def test_plot_errors_exit_2(line_run, argv, match, capsys, tmp_path):
    argv = [a if a != "x.jpg" else str(tmp_path / a) for a in argv]
    assert cli.main(["plot", line_run, *argv] + ([] if "--out" in argv else ["--out", str(tmp_path / "p.png")])) == 2
    err = capsys.readouterr().err
    assert "tr-jax plot: error: " in err and len(err.strip().splitlines()) == 1
    import re

    assert re.search(match, err), err
    assert not os.path.exists(tmp_path / "p.png")


def test_plot_missing_run_dir(capsys, tmp_path):
    assert cli.main(["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "p.png")]) == 2
    assert "no run directory" in capsys.readouterr().err


def test_plot_and_render_help(capsys):
    for argv in (["plot", "--help"], ["render", "--help"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--out",
        "--metric",
        "--label",
        "eval_return",
        "mean_bound",
        "95% bootstrap",
        "--checkpoint",
        "--policy-seed",
        "FILE.html",
        "FILE.gif",
        "--max-steps",
        "--fps",
        "--stride",
        "tr_jax[render]",
    ):
        assert option in text, option
