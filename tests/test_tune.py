"""Hyperparameter search (tr_jax/tune.py, tr-jax tune): batches of Optuna trials as sweeps, resume, outputs."""

import csv
import os
import signal
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _line_env import line_config, register  # noqa: E402
from test_run import HERE, _wait_for_file  # noqa: E402

from tr_jax import run as run_module  # noqa: E402
from tr_jax.cli import main  # noqa: E402
from tr_jax.config import config_to_dict, load_config_file  # noqa: E402
from tr_jax.rundir import RunDir, append_jsonl, read_json, write_json  # noqa: E402
from tr_jax.tune import Param, parse_param, tune  # noqa: E402

register()
pytestmark = pytest.mark.xdist_group("tune")
optuna = pytest.importorskip("optuna")
# PPO on the line env: the return rises with policy_lr up to a plateau (a grid of 2 seeds, 12 iterations:
# 1e-5: 0.01, 1e-4: 0.1, 1e-3: 1.2, 1e-2: 3.4, 3e-2: 3.75, 1e-1: 3.75), so the best trials lie above 1e-2
LINE = line_config(
    8, algorithm="ppo", lr_decay=False, chunk_iterations=4, eval_every=4, checkpoint_every=4, eval_episodes=2
)
TRIALS, BATCH = 8, 4


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """A search of policy_lr, stopped by SIGINT in its first batch's first chunk, then resumed by tr-jax tune;
    ``calls``: (resume, settings) of each batch program."""
    directory = str(tmp_path_factory.mktemp("tune") / "t")
    real, calls = run_module.run_sweep, []

    def recorded(config, sweep=(), **kw):
        def stop(steps, metrics):
            if len(calls) == 1 and steps == 4 * 4 * 8:  # the first chunk of the first batch
                os.kill(os.getpid(), signal.SIGINT)

        calls.append((kw.get("resume", False), kw.get("labels")))
        return real(config, sweep, progress_fn=stop, **kw)

    run_module.run_sweep = recorded
    try:
        first = tune(
            LINE,
            [parse_param("policy_lr=log:1e-5:1e-1", LINE)],
            TRIALS,
            BATCH,
            seeds=2,
            sampler="tpe",
            directory=directory,
            progress="none",
        )
        code = main(["tune", "--resume", directory, "--progress", "none"])
    finally:
        run_module.run_sweep = real
    return directory, first, code, calls


def _study(directory):
    return optuna.load_study(study_name="tr_jax", storage=f"sqlite:///{directory}/study.db")


@pytest.mark.slow
def test_search_finds_the_best_region_and_writes_its_outputs(search):
    directory, first, code, calls = search
    assert code == 0
    study = _study(directory)
    trials = study.get_trials()
    assert len(trials) == TRIALS and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(t.user_attrs["batch"] for t in trials) == [0] * BATCH + [1] * BATCH
    best = study.best_trial
    assert best.params["policy_lr"] >= 1e-2, [(t.params, t.value) for t in trials]
    assert best.value > 3.0
    # the value is the protocol's score of the trial's own run directory, averaged over its seeds
    from tr_jax.stats import seed_scores

    rd = RunDir(best.user_attrs["run_dir"])
    assert os.path.basename(rd.path) == f"trial_{best.number:04d}"
    evals = rd.read_eval()
    assert best.value == pytest.approx(np.mean(seed_scores(evals, 2, max(r["env_steps"] for r in evals))))
    assert load_config_file(rd.config).policy_lr == best.params["policy_lr"]
    # outputs: a config tr-jax train accepts, the table, the plots
    config = load_config_file(os.path.join(directory, "best_config.json"))
    assert config == LINE.replace(policy_lr=best.params["policy_lr"])
    rows = list(csv.DictReader(open(os.path.join(directory, "trials.csv"))))
    assert len(rows) == TRIALS and {r["state"] for r in rows} == {"COMPLETE"}
    assert float(rows[best.number]["value"]) == pytest.approx(best.value)
    for name in ("history", "importances", "slice"):
        with open(os.path.join(directory, f"{name}.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_stopped_batch_resumes_from_its_checkpoint(search):
    directory, first, code, calls = search
    assert first.status == "interrupted" and first.best is None
    labels = [f"trial_{i:04d}" for i in range(TRIALS)]
    # batch 0 stopped, then continued from its checkpoint (not trained again), then batch 1
    assert calls == [(False, labels[:BATCH]), (True, None), (False, labels[BATCH:])]
    trials = _study(directory).get_trials()
    assert [t.number for t in trials if t.user_attrs["batch"] == 0] == list(range(BATCH))  # told once each
    for t in trials:
        rd = RunDir(t.user_attrs["run_dir"])
        rows = rd.read_metrics()  # (refuses an iteration written twice)
        assert sorted((r["iteration"], r["seed"]) for r in rows) == [(i, s) for i in range(8) for s in range(2)]
        assert sorted(int(x) for x in os.listdir(rd.checkpoints) if x.isdigit()) == [4, 8]


def test_a_diverged_seed_fails_its_trial(tmp_path):
    """A seed that diverged fails the trial even though its frozen state evaluated finite returns."""
    from tr_jax.tune import _tell

    class Result(NamedTuple):
        run_dir: str
        diverged_at: np.ndarray

    study = optuna.create_study(direction="maximize")
    rows = [{"iteration": 3, "seed": s, "env_steps": 128, "deterministic_return_mean": 2.0} for s in range(2)]
    for diverged_at, state in (([-1, -1], "COMPLETE"), ([-1, 2], "FAIL")):
        d = str(tmp_path / state)
        os.makedirs(d)
        append_jsonl(os.path.join(d, "eval.jsonl"), rows)
        trial = study.ask({"eps_mean": optuna.distributions.FloatDistribution(0.01, 0.1)})
        _tell(optuna, study, trial, Result(d, np.array(diverged_at)), 2)
        frozen = study.trials[-1]
        assert frozen.state.name == state
        assert frozen.value == (2.0 if state == "COMPLETE" else None)
    assert study.trials[-1].user_attrs["failure"] == "seed 1 diverged at iteration 2"


def test_parameters_that_cannot_be_searched(capsys):
    assert parse_param("eps_mean=log:0.003:0.3") == Param("eps_mean", "log", 0.003, 0.3)
    for text, message in (
        ("num_envs=log:4:64", "num_envs: cannot be searched: a batch of trials is one compiled program"),
        ("eps_mean=0.01", "expected NAME=SCALE:LOW:HIGH"),
        ("eps_mean=exp:0.01:0.1", "scale 'exp' is not one of log, uniform"),
        ("eps_mean=log:0:0.1", "a log scale needs LOW > 0"),
        ("eps_mean=uniform:0.1:0.01", "LOW < HIGH"),
        ("policy_lr=uniform:-0.1:0.1", "policy_lr must be positive"),
        ("eps_mean=log:0.01:0.1", "ppo does not read eps_mean"),
    ):
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            parse_param(text, LINE)
    assert main(["tune", "--param", "gamma=uniform:0.9:0.999"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gamma: cannot be searched" in err and "set gamma with --set" in err
    assert main(["tune", "--resume", "x", "--param", "eps_mean=log:0.01:0.1"]) == 2
    assert "x is not a tune directory: tune.json is missing" in capsys.readouterr().err


@pytest.fixture
def stored_search(tmp_path, monkeypatch):
    """A tune directory holding only its tune.json (policy_lr, 6 trials, batch 4, 2 seeds, random sampler, seed
    3; killed before its first batch), and run_sweep replaced by a stand-in that records each batch's trial
    labels and stops at once (as a Ctrl-C would), so that a resume shows what it would train."""
    from tr_jax.tune import _new_spec

    d = tmp_path / "t"
    d.mkdir()
    spec = _new_spec(LINE, [parse_param("policy_lr=log:1e-5:1e-1")], 6, 4, 2, "eval_return", "random", 3)
    write_json(str(d / "tune.json"), spec)
    config_file = tmp_path / "line.json"
    write_json(str(config_file), spec["config"])
    batches = []

    class Stopped(NamedTuple):
        status: str

    def stand_in(config, sweep=(), labels=None, **kw):
        batches.append(labels)
        return [Stopped("interrupted")] * len(labels)

    monkeypatch.setattr(run_module, "run_sweep", stand_in)
    return str(d), str(config_file), batches


@pytest.mark.parametrize(
    "flags,stored",
    [
        (["--seeds", "3"], "has --seeds 2"),
        (["--seed", "0"], "has --seed 3"),
        (["--sampler", "tpe"], "has --sampler random"),
        (["--param", "policy_lr=log:1e-4:1e-1"], "has --param policy_lr=log:1e-05:0.1"),
        (["--param", "value_lr=log:1e-4:1e-1"], "has --param policy_lr=log:1e-05:0.1"),
        (["--set", "value_lr=0.001"], "has value_lr=0.0003"),
        (["CONFIG", "--set", "num_envs=8"], "has num_envs=4"),
        (["--dir", "elsewhere"], "--dir and --resume name different directories"),
    ],
)
def test_a_resumed_search_refuses_another_value_naming_the_stored_one(stored_search, flags, stored, capsys):
    d, config_file, batches = stored_search
    flags = [config_file if f == "CONFIG" else f for f in flags]
    before = open(os.path.join(d, "tune.json")).read()
    assert main(["tune", "--resume", d, *flags, "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tr-jax tune: error: ") and err.count("\n") == 1 and stored in err, err
    assert "--dir" in flags or "a resumed search keeps it (only --trials and --batch may change)" in err
    assert batches == [] and open(os.path.join(d, "tune.json")).read() == before
    assert sorted(os.listdir(d)) == ["tune.json"]


def test_a_resumed_search_takes_its_own_values_and_a_new_batch_size(stored_search, capsys):
    d, config_file, batches = stored_search
    same = ["--seeds", "2", "--seed", "3", "--sampler", "random", "--objective", "eval_return"]
    same += [config_file, "--set", "policy_lr=3e-4", "--param", "policy_lr=log:1e-5:1e-1", "--dir", d]
    assert main(["tune", "--resume", d, *same, "--batch", "2", "--progress", "none"]) == 130
    assert f"interrupted: continue with tr-jax tune --resume {d}" in capsys.readouterr().out
    assert batches == [["trial_0000", "trial_0001"]]  # the new batch size
    spec = read_json(os.path.join(d, "tune.json"))
    assert (spec["batch"], spec["seeds"], spec["trials"], spec["sampler"]) == (2, 2, 6, "random")


def test_tune_directory_errors(tmp_path, capsys):
    d = tmp_path / "t"
    d.mkdir()
    write_json(str(d / "tune.json"), {})
    with pytest.raises(ValueError, match="holds a search already: continue it with tr-jax tune --resume"):
        tune(LINE, [Param("policy_lr", "log", 0.01, 0.1)], directory=str(d))
    assert main(["tune", "--resume", str(tmp_path)]) == 2
    assert "is not a tune directory: tune.json is missing" in capsys.readouterr().err


def test_a_preempted_batch_names_only_tune_resume(tmp_path):
    """A real process: SIGTERM at the end of its batch's first chunk; the stop message names tr-jax tune --resume
    of the search, never tr-jax train --resume of the batch (which would go around the search). Its batch is the
    search fixture's (4 trials of 2 seeds): the same program, from the suite's compilation cache."""
    d, marker, config_file = str(tmp_path / "t"), str(tmp_path / "marker"), str(tmp_path / "line.json")
    write_json(config_file, config_to_dict(LINE))
    p = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "_run_child.py"), "tune", config_file, "--param", "policy_lr=log:1e-3:0.1"]
        + ["--trials", str(BATCH), "--batch", str(BATCH), "--seeds", "2", "--dir", d, "--progress", "lines"],
        env=dict(os.environ, TR_JAX_TEST_WAIT_AT=str(4 * 4 * 8), TR_JAX_TEST_MARKER=marker),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for_file(marker, p)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 75, out
    assert "checkpoint 4 written; continue with: tr-jax tune --resume " + d in out, out
    assert "train --resume" not in out and f"preempted: continue with tr-jax tune --resume {d}" in out, out
