"""``tr-jax compare`` (tr_jax/compare.py) and its script, experiments/compare.py: the table from real (tiny) runs,
skipping finished runs, resuming a killed one."""

import importlib.util
import json
import os
import shutil
from pathlib import Path

import _line_env
import numpy as np
import pytest

from tr_jax import cli, compare, stats
from tr_jax import rundir as R

ROOT = Path(__file__).resolve().parents[1]
ENV = "tr_jax_test_line"
# the paper's setups (experiments/configs/_algos) on the line env, shrunk to 4 iterations of 32 env steps
TINY = {
    "env_name": ENV,
    "episode_length": 20,
    "num_envs": 4,
    "unroll_length": 8,
    "total_env_steps": 128,
    "num_epochs": 2,
    "value_epochs": 1,
    "num_minibatches": 2,
    "policy_hidden": [8],
    "value_hidden": [8],
    "chunk_iterations": 2,
    "eval_every": 2,
    "checkpoint_every": 2,
    "eval_episodes": 2,
}

_line_env.register()
# one xdist worker runs this module (--dist loadgroup): its module fixture (compared) is computed once
pytestmark = pytest.mark.xdist_group("compare")


def _load():
    spec = importlib.util.spec_from_file_location("compare_script", ROOT / "experiments" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _load()  # experiments/compare.py: the runs below go through it, the CLI test through `tr-jax compare`


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    d = tmp_path_factory.mktemp("configs")
    (d / ENV).mkdir()
    for setup in ("ppo", "trpl-kl"):
        base = str(ROOT / "experiments" / "configs" / "_algos" / f"{setup}.yaml")
        (d / ENV / f"{setup}.yaml").write_text(json.dumps({"base": base, **TINY}))  # JSON is YAML
    return str(d)


def _argv(configs, out, *extra):
    return [
        "--envs",
        ENV,
        "--setups",
        "ppo",
        "trpl-kl",
        "--seeds",
        "2",
        "--configs",
        configs,
        "--out",
        str(out),
        "--progress",
        "none",
        *extra,
    ]


@pytest.fixture(scope="module")
def compared(configs, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert script.main(_argv(configs, out)) == 0
    return out


def _cells(out):
    """The table's rows as {setup: {column: cell}}."""
    lines = [ln for ln in (out / "results.md").read_text().strip().splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {r[1]: dict(zip(head, r)) for r in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:])}


@pytest.mark.slow
def test_table_holds_what_the_runs_wrote(compared):
    cells = _cells(compared)
    assert set(cells) == {"ppo", "trpl-kl"}
    for setup, row in cells.items():
        rd = R.RunDir(compared / "runs" / ENV / setup)
        evals, metrics = rd.read_eval(), rd.read_metrics()
        final = [[r for r in evals if r["seed"] == s][-1]["deterministic_return_mean"] for s in (0, 1)]
        assert row["final eval return"] == f"{np.mean(final):.1f} ± {np.std(final):.1f}"
        # the score: evaluations at >= 90% of 128 env steps, i.e. the last one (evaluations every 64 steps)
        iqm = stats.iqm(final)  # two seeds: the IQM is the mean
        assert row["score IQM [95% CI]"] == f"{iqm.point:.1f} [{iqm.low:.1f}, {iqm.high:.1f}]"
        assert iqm.point == pytest.approx(np.mean(final))
        acting = "acting_kl_max"  # the acting policy's KL (TRPL: the network output's, above the projected one)
        assert row["max acting KL"] == f"{max(r[acting] for r in metrics):.3g}"
        assert row["seeds"] == "2" and row["env steps per seed"] == "128" and row["status"] == "finished"
        assert row["env steps/s"] != "–" and float(row["env steps/s"].replace(",", "")) > 0
        assert row["wall time"].endswith("min")
    assert cells["ppo"]["bound use"] == "–"  # PPO has no trust region
    assert cells["ppo"]["P(improvement over ppo) [95% CI]"] == "–"
    ppo = [
        [r for r in R.RunDir(compared / "runs" / ENV / "ppo").read_eval() if r["seed"] == s][-1][
            "deterministic_return_mean"
        ]
        for s in (0, 1)
    ]
    trpl = [
        [r for r in R.RunDir(compared / "runs" / ENV / "trpl-kl").read_eval() if r["seed"] == s][-1][
            "deterministic_return_mean"
        ]
        for s in (0, 1)
    ]
    poi = stats.probability_of_improvement(trpl, ppo)
    assert cells["trpl-kl"]["P(improvement over ppo) [95% CI]"] == f"{poi.point:.2f} [{poi.low:.2f}, {poi.high:.2f}]"
    # the acting policy's parts over their bounds: max / mean / fraction of states over, over every update
    rows = R.RunDir(compared / "runs" / ENV / "trpl-kl").read_metrics()
    cfg = R.read_json(R.RunDir(compared / "runs" / ENV / "trpl-kl").config)
    for part, eps in (("mean_part", cfg["eps_mean"]), ("cov_part", cfg["eps_cov"])):
        want = (
            f"{max(r[f'acting_{part}_max'] for r in rows) / eps:.2f} / "
            f"{np.mean([r[f'acting_{part}_mean'] for r in rows]) / eps:.2f} / "
            f"{100 * np.mean([r[f'acting_{part}_over'] for r in rows]):.0f}%"
        )
        assert cells["trpl-kl"][f"acting {part.replace('_', ' ')} / eps_{part[:-5]}: max / mean / over"] == want
    assert cells["ppo"]["acting mean part / eps_mean: max / mean / over"] == "–"
    # both setups use the shared critic of experiments/configs/_common.yaml; the table says so
    assert "critic: the same in every run: " in (compared / "results.md").read_text()
    config = R.read_json(R.RunDir(compared / "runs" / ENV / "trpl-kl").config)
    use = max(
        max(r["mean_part_max"] / config["eps_mean"], r["cov_part_max"] / config["eps_cov"])
        for r in R.RunDir(compared / "runs" / ENV / "trpl-kl").read_metrics()
    )
    assert cells["trpl-kl"]["bound use"] == f"{use:.3f} (0 over)" and use <= 1 + compare.TOLERANCE
    assert (compared / f"{ENV}.png").stat().st_size > 10_000


@pytest.mark.slow
def test_second_invocation_skips_finished_runs(compared, configs, capsys):
    before = {s: (compared / "runs" / ENV / s / "metrics.jsonl").read_text() for s in ("ppo", "trpl-kl")}
    table = (compared / "results.md").read_text()
    assert script.main(_argv(configs, compared)) == 0
    printed = capsys.readouterr().out
    assert printed.count(": done (") == 2
    for s in ("ppo", "trpl-kl"):
        assert (compared / "runs" / ENV / s / "metrics.jsonl").read_text() == before[s]
        assert len(R.read_json(str(compared / "timings.json"))[f"{ENV}/{s}"]) == 1  # no second training
    assert (compared / "results.md").read_text() == table


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(compared, configs, tmp_path):
    # a copy of the finished TRPL run as a kill after iteration 3 leaves it: no summary, the newest
    # checkpoint (iteration 4) not yet written, metrics of iteration 3 already on disk
    out = tmp_path / "out"
    shutil.copytree(compared, out)
    run_dir = out / "runs" / ENV / "trpl-kl"
    whole = (run_dir / "metrics.jsonl").read_text()
    os.remove(run_dir / "summary.json")
    shutil.rmtree(run_dir / "checkpoints" / "4")
    config = compare.make_config(configs, ENV, "trpl-kl", None, [])
    assert compare.plan(str(run_dir), config) == "resume"
    ppo = compare.make_config(configs, ENV, "ppo", None, [])
    assert compare.plan(str(out / "runs" / ENV / "ppo"), ppo.replace(total_env_steps=256)) == "resume"  # extend
    assert compare.plan(str(out / "runs" / ENV / "ppo"), ppo) == "done"
    assert compare.plan(str(tmp_path / "nothing"), config) == "new"
    with pytest.raises(ValueError, match="eps_cov"):  # a finished run of another config is not "done"
        compare.plan(str(out / "runs" / ENV / "ppo"), ppo.replace(eps_cov=0.5))
    assert _cells(out)["trpl-kl"]["status"] == "finished"
    assert script.main(_argv(configs, out, "--report-only")) == 0
    assert _cells(out)["trpl-kl"]["status"] == "partial"

    assert script.main(_argv(configs, out)) == 0
    assert (run_dir / "metrics.jsonl").read_text() == whole  # bit-exact continuation
    assert len(R.read_json(str(out / "timings.json"))[f"{ENV}/trpl-kl"]) == 2
    assert _cells(out)["trpl-kl"]["status"] == "finished"


def test_bound_use_counts_updates_over_the_bound():
    trpl = {"algorithm": "trpl", "eps_mean": 0.1, "eps_cov": 0.01}
    rows = [
        {"mean_part_max": 0.05, "cov_part_max": 0.01},
        {"mean_part_max": 0.1005, "cov_part_max": 0.002},
        {"mean_part_max": 0.02, "cov_part_max": 0.0125},
        {"mean_part_max": None, "cov_part_max": None},
    ]
    use, over = compare._bound_use(trpl, rows)
    assert use == pytest.approx(1.25) and over == 1  # 1.005 is inside the solver tolerance, 1.25 is not
    trpo = {"algorithm": "trpo", "max_kl": 0.01}
    assert compare._bound_use(trpo, [{"kl_mean": 0.02}, {"kl_mean": 0.005}]) == (pytest.approx(2.0), 1)
    assert compare._bound_use({"algorithm": "ppo"}, [{"kl_mean": 1.0}]) == (None, 0)


def test_acting_columns_of_a_run_written_under_the_old_metric_names(tmp_path):
    """A TRPL run written before the acting policy's metrics were named ``acting_*`` (``raw_*``, as in the
    committed study) gives the table the same acting columns as one written under the current names."""
    trpl = {"algorithm": "trpl", "eps_mean": 0.1, "eps_cov": 0.01}
    new = [
        {
            "iteration": i,
            "seed": 0,
            "env_steps": 32 * (i + 1),
            "kl_max": 0.05,
            "mean_part_max": 0.1,
            "cov_part_max": 0.005,
        }
        | {"acting_kl_max": 0.2 * (i + 1), "acting_mean_part_max": 0.15 * (i + 1), "acting_mean_part_mean": 0.05}
        | {"acting_mean_part_over": 0.25 * i, "acting_cov_part_max": 0.02, "acting_cov_part_mean": 0.004}
        | {"acting_cov_part_over": 0.0}
        for i in range(3)
    ]
    summaries = {}
    for name, prefix in (("new", "acting_"), ("old", "raw_")):
        (tmp_path / name).mkdir()
        lines = [json.dumps({k.replace("acting_", prefix): v for k, v in r.items()}) + "\n" for r in new]
        (tmp_path / name / "metrics.jsonl").write_text("".join(lines))
        summaries[name] = compare.metric_summary(trpl, R.RunDir(str(tmp_path / name)).read_metrics())
    assert summaries["old"] == summaries["new"] and summaries["old"]["bound_use"] == pytest.approx(1.0)
    assert summaries["old"]["kl_max"] == pytest.approx(0.6)  # the acting KL, not the projected one (0.05)
    assert summaries["old"]["acting_mean"] == pytest.approx((4.5, 0.5, 0.25))
    assert summaries["old"]["acting_cov"] == pytest.approx((2.0, 0.4, 0.0))


def test_bad_setup_fails_before_training(configs, tmp_path, capsys):
    assert script.main(["--envs", ENV, "--setups", "ppo", "nope", "--configs", configs, "--out", str(tmp_path)]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_run_without_metrics_yet_is_restarted_and_shown_empty(compared, configs, tmp_path):
    # a kill during the first compilation leaves config.json and run.json only
    out = tmp_path / "out"
    fresh = out / "runs" / ENV / "trpl-kl"
    fresh.mkdir(parents=True)
    for name in ("config.json", "run.json"):
        shutil.copy(compared / "runs" / ENV / "trpl-kl" / name, fresh / name)
    assert compare.plan(str(fresh), compare.make_config(configs, ENV, "trpl-kl", None, [])) == "restart"
    row = compare.summarize(str(out), ENV, "trpl-kl", compare.Timings(str(out)))
    cells = compare.table([row]).splitlines()[2].strip("|").split("|")
    assert [c.strip() for c in cells] == (
        [ENV, "trpl-kl", "2", "0", "incomplete (0/2 seeds at the budget)"] + ["–"] * 8 + ["partial"]
    )


def test_concurrent_invocations_keep_each_others_timings(tmp_path):
    a, b = compare.Timings(str(tmp_path)), compare.Timings(str(tmp_path))  # two processes, one OUT
    entry_a, entry_b = a.start("env/ppo"), b.start("env/trpo")
    entry_a.update(wall_seconds=10.0, train_seconds=8.0, env_steps=800)
    a.save()
    entry_b.update(wall_seconds=20.0, train_seconds=10.0, env_steps=500)
    b.save()
    a.save()
    merged = compare.Timings(str(tmp_path))
    assert merged.totals("env/ppo") == (100.0, 10.0) and merged.totals("env/trpo") == (50.0, 20.0)
    assert np.isnan(merged.totals("env/none")[0]) and np.isnan(merged.totals("env/none")[1])


@pytest.mark.slow
def test_table_at_an_earlier_step_count(compared, configs, capsys):
    assert script.main(_argv(configs, compared, "--report-only", "--table-at", "64")) == 0
    row = _cells(compared)["trpl-kl"]
    rd = R.RunDir(compared / "runs" / ENV / "trpl-kl")
    at_64 = [r["deterministic_return_mean"] for r in rd.read_eval() if r["env_steps"] == 64]
    assert len(at_64) == 2 and row["env steps per seed"] == "64" and row["status"] == "partial"
    assert row["final eval return"] == f"{np.mean(at_64):.1f} ± {np.std(at_64):.1f}"
    assert row["max acting KL"] == f"{max(r['acting_kl_max'] for r in rd.read_metrics() if r['env_steps'] <= 64):.3g}"
    assert script.main(_argv(configs, compared, "--report-only")) == 0  # the whole runs again
    assert _cells(compared)["trpl-kl"]["env steps per seed"] == "128"


@pytest.mark.slow
def test_cli_subcommand(compared, configs, tmp_path, monkeypatch, capsys):
    table = (compared / "results.md").read_text()
    argv = [
        "compare",
        "--envs",
        ENV,
        "--setups",
        "ppo",
        "trpl-kl",
        "--seeds",
        "2",
        "--out",
        str(compared),
        "--progress",
        "none",
    ]
    assert cli.main([*argv, "--configs", configs]) == 0  # both runs done: nothing trains
    printed = capsys.readouterr().out
    assert printed.count(": done (") == 2 and table in printed
    assert (compared / "results.md").read_text() == table
    # --configs defaults to experiments/configs under the current directory
    (tmp_path / "experiments").mkdir()
    shutil.copytree(configs, tmp_path / "experiments" / "configs")
    monkeypatch.chdir(tmp_path)
    assert cli.main([*argv, "--report-only"]) == 0 and table in capsys.readouterr().out


def test_cli_without_a_config_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no experiments/configs here
    assert cli.main(["compare", "--envs", ENV, "--setups", "ppo", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tr-jax compare: error: --configs experiments/configs: no such directory"), err
    assert "--configs DIR" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_rejects_bad_smoothing(configs, tmp_path, capsys):
    assert (
        cli.main(
            [
                "compare",
                "--envs",
                ENV,
                "--setups",
                "ppo",
                "--configs",
                str(configs),
                "--smooth",
                "0",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert "--smooth must be >= 1" in capsys.readouterr().err
    assert cli.main(["plot", str(tmp_path), "--smooth", "0"]) == 2
    assert "smooth must be a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("status, code", [("preempted", 75), ("interrupted", 130)])
def test_a_run_stopped_by_a_signal_stops_compare_with_trains_exit_status(configs, tmp_path, monkeypatch, status, code):
    """A run stopped with a checkpoint (SIGTERM/SIGUSR1: preempted, Ctrl-C: interrupted; tests/test_run.py sends
    the real signals to tr-jax train) ends the comparison there, with tr-jax train's exit status, so that a batch
    script can requeue it; the setups after it are not started."""
    started = []

    def stopped(run_dir, *args, **kwargs):
        started.append(run_dir)
        return status

    monkeypatch.setattr(compare, "train", stopped)
    assert compare.main(_argv(configs, tmp_path)) == code
    assert len(started) == 1
