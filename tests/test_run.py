"""The host loop (tr_jax/run/), run directories, Orbax checkpoints, resume and the ``tr-jax`` CLI.

All on the tiny line env (tests/_line_env.py: compiles in seconds). The
kill/interrupt tests start real processes (tests/_run_child.py) and send real
signals: SIGKILL after the first checkpoint, then ``--resume`` must end with
exactly the parameters and per-iteration metrics of an uninterrupted run.
"""

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, NamedTuple

import _line_env
import jax
import numpy as np
import pytest

from tr_jax import cli
from tr_jax.checkpoint import CheckpointError, Checkpoints
from tr_jax.config import config_from_dict, config_to_dict
from tr_jax.run import TrainingDiverged, evaluate_run, run
from tr_jax.rundir import read_jsonl
from tr_jax.train import make_trainer

_line_env.register()
HERE = os.path.dirname(os.path.abspath(__file__))

# lr_decay_steps: the horizon total_env_steps gives (24 iterations), set so that a resume with another budget
# (test_resume_extends_a_finished_run) compiles the same programs (the decay's slope is a constant in them)
LINE = _line_env.line_config(
    24,
    episode_length=50,
    algorithm="trpl",
    lr_decay_steps=4 * 8 * 24,
    chunk_iterations=2,
    checkpoint_every=4,
    eval_every=4,
    eval_episodes=3,
    keep_checkpoints=2,
)


def _params(run_dir, step=None):
    """Policy and value params of a run directory's checkpoint, as numpy."""
    cfg = config_from_dict(json.load(open(os.path.join(run_dir, "config.json"))))
    num_seeds = json.load(open(os.path.join(run_dir, "run.json")))["num_seeds"]
    like = jax.eval_shape(jax.vmap(make_trainer(cfg).init), jax.random.split(jax.random.key(0), num_seeds))
    ck = Checkpoints(os.path.join(run_dir, "checkpoints"))
    state, meta = ck.restore(step, like)
    ck.close()
    return jax.tree.map(np.asarray, (state.algo.policy_params, state.algo.value_params)), meta


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """One 2-seed run through the Python API; its progress_fn calls are recorded."""
    calls = []
    d = tmp_path_factory.mktemp("runs") / "line"
    result = run(
        LINE,
        seed=3,
        num_seeds=2,
        run_dir=str(d),
        progress="lines",
        progress_fn=lambda steps, m: calls.append((steps, sorted(m))),
    )
    return result, str(d), calls


def test_run_directory_contents(two_seeds):
    result, d, calls = two_seeds
    assert result.status == "finished" and result.iteration == LINE.num_iterations == 24
    assert sorted(os.listdir(d)) == [
        "checkpoints",
        "config.json",
        "eval.jsonl",
        "metrics.jsonl",
        "run.json",
        "summary.json",
    ]
    assert config_from_dict(json.load(open(os.path.join(d, "config.json")))) == LINE
    rows = read_jsonl(os.path.join(d, "metrics.jsonl"))
    # one line per iteration and seed, none missing or repeated
    assert sorted((r["iteration"], r["seed"]) for r in rows) == [(i, s) for i in range(24) for s in range(2)]
    assert [r["env_steps"] for r in rows if r["seed"] == 0] == [(i + 1) * 32 for i in range(24)]
    # before a seed's first finished episode its return is null (not NaN), afterwards a number
    for s in range(2):
        seen = 0
        for r in (r for r in rows if r["seed"] == s):
            seen += r["episodes_finished"]
            assert (r["episode_return"] is None) == (seen == 0), r
    assert rows[-1]["episode_return"] is not None
    text = open(os.path.join(d, "metrics.jsonl")).read()
    assert "NaN" not in text and "Infinity" not in text
    evals = read_jsonl(os.path.join(d, "eval.jsonl"))
    assert [(r["iteration"], r["seed"]) for r in evals] == [(i, s) for i in (3, 7, 11, 15, 19, 23) for s in (0, 1)]
    for r in evals:
        assert r["deterministic_return_std"] >= 0 and 1 <= r["stochastic_length_mean"] <= LINE.episode_length
    summary = json.load(open(os.path.join(d, "summary.json")))
    assert summary["status"] == "finished" and summary["iterations"] == 24 and summary["env_steps"] == 24 * 32
    assert [s["final_eval_return"] for s in summary["seeds"]] == [r["deterministic_return_mean"] for r in evals[-2:]]
    assert summary["compile_seconds"] > 0 and summary["env_steps_per_second"] > 0
    assert summary["versions"]["jax"] == jax.__version__
    assert summary["checkpoints"] == [20, 24]  # keep_checkpoints=2
    # progress_fn: once per chunk, eval means after evaluations
    assert [c[0] for c in calls] == [32 * 2 * (i + 1) for i in range(12)]
    assert "eval/deterministic_return_mean" in calls[1][1] and "eval/deterministic_return_mean" not in calls[0][1]


def test_result_matches_files_and_checkpoint(two_seeds):
    result, d, _ = two_seeds
    assert result.metrics["kl_max"].shape == (2, 24)
    rows = read_jsonl(os.path.join(d, "metrics.jsonl"))
    ours = np.array([[r["kl_max"] for r in rows if r["seed"] == s] for s in (0, 1)])
    np.testing.assert_array_equal(ours, result.metrics["kl_max"].astype(np.float64))
    (pp, vp), meta = _params(d)
    assert meta["iteration"] == 24 and meta["num_seeds"] == 2
    jax.tree.map(np.testing.assert_array_equal, pp, jax.tree.map(np.asarray, result.state.algo.policy_params))
    # the two seeds really differ
    assert not np.allclose(result.metrics["kl_max"][0], result.metrics["kl_max"][1])


def test_chunked_run_matches_single_jit(two_seeds):
    """The host loop computes what the one-program ``train`` computes (same seed keys)."""
    result, _, _ = two_seeds
    keys = jax.random.split(jax.random.key(3), 2)
    state, metrics = jax.jit(jax.vmap(make_trainer(LINE).train))(keys)
    for k in ("kl_max", "policy_loss", "value_loss", "entropy"):
        np.testing.assert_allclose(np.asarray(metrics[k]), result.metrics[k], rtol=1e-5, atol=1e-7, err_msg=k)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        state.algo.policy_params,
        result.state.algo.policy_params,
    )


def test_evaluate_episode_bookkeeping(two_seeds):
    """Line env: reward = clipped action in [-1, 1], terminal when pos > 3, from |pos_0| <= 0.1: an
    episode that ended before the time limit returned more than 2.9, and none more than 4.1 (a
    return counted past its episode's end would restart from pos ~ 0 and could exceed it)."""
    _, d, _ = two_seeds
    out = evaluate_run(d, num_episodes=16, seed=1)
    assert out["iteration"] == 24 and out["deterministic_return"].shape == (2, 16)
    for mode in ("deterministic", "stochastic"):
        ret, length = out[f"{mode}_return"], out[f"{mode}_length"]
        assert np.all((length >= 1) & (length <= LINE.episode_length))
        assert np.all(ret[length < LINE.episode_length] > 2.9)
        assert np.all(ret <= 4.1 + 1e-5)
    assert np.any(out["stochastic_length"] < LINE.episode_length)  # lengths recorded at the episode's end
    # the mean action is deterministic given the start state; sampling adds spread
    assert out["stochastic_return"].std() > out["deterministic_return"].std()
    with pytest.raises(CheckpointError, match="no checkpoint 5 in .*checkpoints; there are \\[20, 24\\]"):
        evaluate_run(d, num_episodes=2, checkpoint=5)


def test_existing_directory_is_not_overwritten(two_seeds, tmp_path):
    _, d, _ = two_seeds
    with pytest.raises(FileExistsError, match="exists: pass --resume to continue it or --overwrite"):
        run(LINE, run_dir=d, progress="none")


def test_resume_refuses_a_different_config(two_seeds):
    _, d, _ = two_seeds
    with pytest.raises(ValueError, match=r"num_envs: saved 4, given 8; eps_cov: saved 0.001, given 0.01"):
        run(LINE.replace(eps_cov=1e-2, num_envs=8), run_dir=d, resume=True, progress="none")


def test_resume_extends_a_finished_run(two_seeds, tmp_path):
    """total_env_steps is safe to change: a finished run continues to the new end."""
    import shutil

    _, d, _ = two_seeds
    copy = str(tmp_path / "extended")
    shutil.copytree(d, copy)
    result = run(LINE.replace(total_env_steps=4 * 8 * 28), run_dir=copy, resume=True, progress="none")
    assert result.status == "finished" and result.iteration == 28 and result.metrics["kl_max"].shape == (2, 4)
    rows = read_jsonl(os.path.join(copy, "metrics.jsonl"))
    assert sorted((r["iteration"], r["seed"]) for r in rows) == [(i, s) for i in range(28) for s in range(2)]
    assert json.load(open(os.path.join(copy, "config.json")))["total_env_steps"] == 4 * 8 * 28


def test_corrupt_or_missing_checkpoint_names_the_file(two_seeds, tmp_path):
    import shutil

    _, d, _ = two_seeds
    copy = str(tmp_path / "broken")
    shutil.copytree(d, copy)
    data = [
        os.path.join(root, f)
        for root, _, files in os.walk(os.path.join(copy, "checkpoints", "24", "state"))
        for f in files
        if os.path.getsize(os.path.join(root, f)) > 64
    ]
    assert data
    for path in data:  # garble every data file of the newest checkpoint
        with open(path, "r+b") as f:
            f.write(b"\xff" * 64)
    with pytest.raises(CheckpointError, match=f"checkpoint {copy}/checkpoints/24 is broken"):
        run(None, run_dir=copy, resume=True, progress="none")
    shutil.rmtree(os.path.join(copy, "checkpoints"))
    with pytest.raises(CheckpointError, match=f"no checkpoint in {copy}/checkpoints"):
        run(None, run_dir=copy, resume=True, progress="none")


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    # reward turns NaN after 50 env steps: iteration 6 (t = 49..56) is the first poisoned one. PPO: the guard and
    # the host loop's stop are the trainer's, the same for every algorithm, and PPO compiles in a fraction of
    # TRPL's time (NaN inputs of the projections are tested in tests/projections/)
    cfg = LINE.replace(
        algorithm="ppo",
        env_name="tr_jax_test_line_nan",
        episode_length=10_000,
        total_env_steps=4 * 8 * 12,
        chunk_iterations=2,
        checkpoint_every=2,
        eval_every=0,
        lr_decay=False,
    )
    d = str(tmp_path / "nan")
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration 6 .*last good checkpoint is .*checkpoints/6"):
        run(cfg, run_dir=d, progress="none")
    summary = json.load(open(os.path.join(d, "summary.json")))
    assert summary["status"] == "diverged" and summary["iterations"] == 8 and summary["seeds"][0]["diverged_at"] == 6
    rows = read_jsonl(os.path.join(d, "metrics.jsonl"))
    assert [r["diverged"] for r in rows] == [False] * 6 + [True] * 2  # stopped at the end of that chunk
    assert rows[6]["value_loss"] is None and rows[5]["value_loss"] is not None
    (pp, vp), meta = _params(d)
    assert meta["iteration"] == 6 and Checkpoints(os.path.join(d, "checkpoints")).steps() == [4, 6]
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves((pp, vp)))


def test_chunk_after_divergence_is_not_computed():
    """A chunk that starts diverged returns its input state untouched and NaN metrics (the trainer's lax.cond
    around any algorithm's chunk: PPO, which compiles fastest)."""
    trainer = make_trainer(LINE.replace(algorithm="ppo", env_name="tr_jax_test_line_nan", episode_length=10_000))
    state = jax.jit(trainer.init)(jax.random.key(0))
    state = state._replace(diverged_at=state.diverged_at * 0 + 3, iteration=state.iteration + 5)
    new, m = jax.jit(trainer.train_chunk, static_argnums=1)(state, 3)
    jax.tree.map(
        np.testing.assert_array_equal, jax.tree.map(np.asarray, new.algo), jax.tree.map(np.asarray, state.algo)
    )
    assert int(new.iteration) == 5 and np.all(np.asarray(m["diverged"]))
    np.testing.assert_array_equal(m["iteration"], [5, 6, 7])
    assert np.all(np.isnan(m["kl_max"])) and np.all(np.isnan(m["episode_return"]))


# ----------------------------------------------------------------------------
# Real processes: SIGTERM, SIGKILL and resume, SIGINT, SIGUSR1
#
# Every child trains LINE with --seeds 2 --seed 3, the two_seeds fixture's run: the same programs, which that
# fixture's run left in the suite's compilation cache (tests/conftest.py), so no child compiles, and two_seeds is
# the uninterrupted run a resumed one must equal.

CHILD_SEEDS = ("--seeds", "2", "--seed", "3")


def _child(run_dir, *args, sleep=0.0, **env_vars):
    """``tr-jax train ARGS --run-dir RUN_DIR`` in a child process (tests/_run_child.py); ``env_vars`` are
    ``TR_JAX_TEST_*`` settings of the child (``sleep=S``: TR_JAX_TEST_SLEEP)."""
    env = dict(
        os.environ,
        TR_JAX_TEST_SLEEP=str(sleep),
        **{f"TR_JAX_TEST_{k.upper()}": str(v) for k, v in env_vars.items()},
        PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(HERE), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "_run_child.py"),
            "train",
            *args,
            "--run-dir",
            run_dir,
            "--progress",
            "lines",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_checkpoint(run_dir, proc, step=None, timeout=300):
    """Waits until ``run_dir`` has a checkpoint (``step``: that one)."""
    ck = os.path.join(run_dir, "checkpoints")
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.isdir(ck) and any(n.isdigit() and (step is None or n == str(step)) for n in os.listdir(ck)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"child ended before the checkpoint:\n{proc.stdout.read()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no checkpoint within the timeout")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "line.json"
    path.write_text(json.dumps(config_to_dict(LINE)))
    return str(path)


def _signal_child(run_dir, marker, wait_at, *args, signals=1):
    """A child that pauses after the chunk ending at env step ``wait_at`` until ``signals`` signals arrived."""
    return _child(run_dir, *args, wait_at=wait_at, marker=marker, wait_signals=signals)


def _wait_for_file(path, proc, timeout=300):
    t0 = time.time()
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(f"child ended before writing {path}:\n{proc.stdout.read()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"no {path} within the timeout")
        time.sleep(0.02)


def test_sigterm_then_sigkill_then_resume_is_bit_exact(two_seeds, config_file, tmp_path):
    """One run directory, three processes, ending exactly as the uninterrupted run (two_seeds):

    1. SIGTERM after iteration 6 (checkpoint_every 4), twice (as a scheduler's batch shell may forward it):
       checkpoint 6, summary "preempted", exit 75;
    2. ``--resume``, SIGKILL once checkpoint 8 is written (mid-run: the metrics of iterations past it may be
       written, and a line torn by the kill is added), nothing else written (summary.json stays at 6);
    3. ``--resume`` to the end: every metric of every iteration and seed, every evaluation and the parameters
       equal the uninterrupted run's."""
    _, ref, _ = two_seeds
    d, marker = str(tmp_path / "term"), str(tmp_path / "marker")
    p = _signal_child(d, marker, 6 * 32, config_file, *CHILD_SEEDS, signals=2)
    _wait_for_file(marker, p)
    p.send_signal(signal.SIGTERM)
    _wait_for_file(marker + ".1", p)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 75, out
    assert "SIGTERM: finishing this chunk and writing a checkpoint" in out
    assert "SIGTERM: already stopping (SIGTERM)" in out
    assert (
        f"preempted at iteration 6 (192 env steps) by SIGTERM; checkpoint {d}/checkpoints/6 written; "
        f"continue with: tr-jax train --resume {d}" in out
    )
    summary = json.load(open(os.path.join(d, "summary.json")))
    assert (summary["status"], summary["signal"], summary["iterations"]) == ("preempted", "SIGTERM", 6)
    assert summary["checkpoints"] == [4, 6]  # 6: written because of the signal
    assert [(r["iteration"], r["seed"]) for r in read_jsonl(os.path.join(d, "metrics.jsonl"))] == [
        (i, s) for i in range(6) for s in range(2)
    ]

    p_kill = _child(d, "--resume", d, sleep=0.5)
    _wait_for_checkpoint(d, p_kill, step=8)
    p_kill.send_signal(signal.SIGKILL)
    p_kill.wait()
    assert p_kill.returncode == -signal.SIGKILL
    assert json.load(open(os.path.join(d, "summary.json")))["iterations"] == 6  # (no summary after a SIGKILL)
    with open(os.path.join(d, "metrics.jsonl"), "a") as f:
        f.write('{"iteration": 99, "se')  # a line torn by the kill

    p_res = subprocess.run(
        [sys.executable, os.path.join(HERE, "_run_child.py"), "train", "--resume", d, "--progress", "lines"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p_res.returncode == 0, p_res.stdout + p_res.stderr
    assert "resumed" in p_res.stdout and "finished: 24 iterations" in p_res.stdout
    a, b = read_jsonl(os.path.join(ref, "metrics.jsonl")), read_jsonl(os.path.join(d, "metrics.jsonl"))
    assert len(a) == len(b) == 48
    assert a == b  # every metric of every iteration and seed, exactly
    assert read_jsonl(os.path.join(ref, "eval.jsonl")) == read_jsonl(os.path.join(d, "eval.jsonl"))
    jax.tree.map(np.testing.assert_array_equal, _params(ref)[0], _params(d)[0])
    summary = json.load(open(os.path.join(d, "summary.json")))
    assert (summary["status"], summary["signal"], summary["iterations"]) == ("finished", None, 24)


def test_sigint_writes_a_checkpoint_and_exits_cleanly(config_file, tmp_path):
    d = str(tmp_path / "int")
    p = _child(d, config_file, *CHILD_SEEDS, sleep=0.5)
    _wait_for_checkpoint(d, p)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 130, out
    assert "interrupted at iteration" in out and "--resume" in out
    summary = json.load(open(os.path.join(d, "summary.json")))
    assert summary["status"] == "interrupted" and summary["checkpoints"][-1] == summary["iterations"]
    assert 4 <= summary["iterations"] < 24
    rows = read_jsonl(os.path.join(d, "metrics.jsonl"))
    assert [(r["iteration"], r["seed"]) for r in rows] == [(i, s) for i in range(summary["iterations"]) for s in (0, 1)]


def test_sigterms_after_the_checkpoint_keep_exit_status_75(config_file, tmp_path):
    """A scheduler (or a batch shell forwarding it) may send SIGTERM again while the process tears down after the
    checkpoint (JAX and Orbax take a second or two): SIGTERM every 10 ms from the first one until the process
    exits hits every window (the chunk, the checkpoint, summary.json, the teardown); the exit status stays 75."""
    d, marker = str(tmp_path / "storm"), str(tmp_path / "marker")
    p = _signal_child(d, marker, 2 * 32, config_file, *CHILD_SEEDS)
    _wait_for_file(marker, p)
    sent = 0
    while p.poll() is None:
        p.send_signal(signal.SIGTERM)
        sent += 1
        time.sleep(0.01)
    out = p.stdout.read()
    assert os.path.isdir(os.path.join(d, "checkpoints", "2")), out
    assert p.returncode == 75, f"exit {p.returncode} after {sent} SIGTERMs although checkpoint 2 was written:\n{out}"
    assert sent > 20 and "preempted: 2 iterations" in out


def test_sigusr1_stops_with_a_checkpoint(config_file, tmp_path):
    """SLURM's --signal=USR1@T warning: the same as SIGTERM, after the first chunk (iteration 2)."""
    d, marker = str(tmp_path / "usr1"), str(tmp_path / "marker")
    p = _signal_child(d, marker, 2 * 32, config_file, *CHILD_SEEDS)
    _wait_for_file(marker, p)
    p.send_signal(signal.SIGUSR1)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 75, out
    assert "SIGUSR1: finishing this chunk" in out and "preempted at iteration 2 (64 env steps) by SIGUSR1" in out
    assert "preempted: 2 iterations" in out
    summary = json.load(open(os.path.join(d, "summary.json")))
    assert (summary["status"], summary["signal"], summary["checkpoints"]) == ("preempted", "SIGUSR1", [2])


def _snapshot(path):
    """Every file under ``path``: its bytes and modification time."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            out[os.path.relpath(full, path)] = (open(full, "rb").read(), os.stat(full).st_mtime_ns)
    return out


def test_resuming_a_finished_run_changes_nothing(two_seeds, tmp_path, capsys):
    import shutil

    _, d, _ = two_seeds
    copy = str(tmp_path / "done")
    shutil.copytree(d, copy)
    before = _snapshot(copy)
    assert cli.main(["train", "--resume", copy, "--progress", "lines"]) == 0
    out = capsys.readouterr().out
    assert f"run {copy} is already finished at iteration 24 (768 env steps); nothing to do" in out
    assert f"finished: 24 iterations, nothing to do; run directory {copy}" in out and "nan" not in out
    assert _snapshot(copy) == before
    # a budget below the iteration reached is an error, before config.json is touched
    assert cli.main(["train", "--resume", copy, "--set", "total_env_steps=320", "--progress", "lines"]) == 2
    err = capsys.readouterr().err
    assert f"{copy} is at iteration 24 (768 env steps): total_env_steps=320 (10 iterations) is below that" in err
    assert len(err.strip().splitlines()) == 1 and _snapshot(copy) == before


def test_bound_fields_after_a_nan():
    from tr_jax.run import _bound_fields

    eps = {"eps_mean": np.array([0.1, 0.1]), "eps_cov": np.array([0.01, 0.01]), "max_kl": np.array([0.1, 0.1])}
    nan = np.array([np.nan, np.nan])
    assert _bound_fields(LINE, {"mean_part_max": nan, "cov_part_max": nan}, eps) == {"mean/cov part": ""}
    assert _bound_fields(LINE, {"mean_part_max": nan, "cov_part_max": np.array([0.005, np.nan])}, eps) == {
        "mean/cov part": "-/50% of bound"
    }
    assert _bound_fields(
        LINE, {"mean_part_max": np.array([0.02, 0.04]), "cov_part_max": np.array([0.01, 0.01])}, eps
    ) == {"mean/cov part": "30%/100% of bound"}
    assert _bound_fields(LINE.replace(algorithm="trpo"), {"kl_mean": nan}, eps) == {"kl/max_kl": ""}


# ----------------------------------------------------------------------------
# CLI


def test_cli_help_and_bad_arguments(capsys):
    for argv in (["--help"], ["train", "--help"], ["eval", "--help"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # (argparse wraps the text at the terminal's width)
    for option in (
        "--set",
        "--seeds",
        "--run-dir",
        "--resume",
        "--overwrite",
        "--episodes",
        "--checkpoint",
        "eps_cov (float)",
        "max_grad_norm (float or null)",
        "policy_hidden (list of ints)",
    ):
        assert option in text, option
    for argv, match in (
        (["train", "--seeds", "x"], "invalid int value"),
        (["fly"], "invalid choice"),
        (["train", "--bogus"], "unrecognized arguments"),
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and match in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "--set", "eps_kov=1"], "unknown key 'eps_kov'"),
        (["train", "--set", "num_envs=1.5"], "num_envs must be int"),
        (["train", "--set", "env_name=halfcheeta"], "unknown env 'halfcheeta'"),
        (["train", "/nonexistent/c.toml"], "cannot read config file /nonexistent/c.toml"),
        (["eval", "/nonexistent/run"], "no run directory /nonexistent/run"),
    ],
)
def test_cli_errors_are_one_line(argv, match, capsys, tmp_path):
    assert cli.main(argv + (["--run-dir", str(tmp_path / "r")] if argv[0] == "train" else [])) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "r")  # nothing written for a bad config


def test_config_file_errors_name_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('env_name = "hopper"\nnum_envs = "many"\n')
    assert cli.main(["train", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert f"{bad}: num_envs must be int, got str 'many'" in capsys.readouterr().err
    bad.write_text('env_name = "hopper"\nnum_env = 8\n')
    assert cli.main(["train", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert f"{bad}: unknown key(s) ['num_env']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--seeds", "3"], "--seeds 3: {d} holds --seeds 1; a resumed run keeps its seeds and sweep"),
        (["--seed", "7"], "--seed 7: {d} holds --seed 0; a resumed run keeps"),
        (["--overwrite"], "--overwrite cannot be given with --resume"),
        (["--seed", "0", "--seeds", "2"], "--seeds 2: {d} holds --seeds 1"),  # (--seed 0 is the stored one)
        (["--sweep", "eps_cov=1e-3,0.1"], "--sweep eps_cov=1e-3,0.1: {d} holds --sweep eps_cov=0.001,0.01;"),
        (["--run-dir", "elsewhere"], "--run-dir and --resume name different directories"),
        (["--set", "eps_cov=0.5"], "--set eps_cov: swept in"),
    ],
)
def test_cli_flags_that_conflict_with_resume(flags, match, tmp_path, capsys):
    d = tmp_path / "sweep"
    d.mkdir()
    (d / "sweep.json").write_text(
        json.dumps(
            {
                "sweep": [["eps_cov", [1e-3, 1e-2]]],
                "seed": 0,
                "num_seeds": 1,
                "settings": ["eps_cov=0.001", "eps_cov=0.01"],
            }
        )
    )
    before = sorted(os.listdir(d))
    assert cli.main(["train", "--resume", str(d), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tr-jax train: error: ") and match.format(d=d) in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(d)) == before


def test_malformed_config_files_are_named(tmp_path, capsys):
    cases = {
        "bad.toml": 'env_name = "hopper"\nnum_envs = ?\n',
        "bad.json": '{"env_name": "hopper",\n "num_envs": }',
        "top.yaml": "base: bad.json\neps_cov: 0.001\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    for name, bad in (("bad.toml", "bad.toml"), ("bad.json", "bad.json"), ("top.yaml", "bad.json")):
        assert cli.main(["train", str(tmp_path / name), "--run-dir", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert f"error: config file {tmp_path / bad} does not parse: " in err and "line 2" in err, err
        assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "r")


def test_cli_eval(two_seeds, capsys):
    _, d, _ = two_seeds
    assert cli.main(["eval", d, "--episodes", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "checkpoint at iteration 24" in out[0]
    assert out[1].startswith("seed 0: deterministic ") and out[2].startswith("seed 1: ") and "stochastic" in out[2]


def test_the_run_package_keeps_its_names():
    """tr_jax.run is a package of modules (loop, interrupts, results, load); the names users and scripts import
    from tr_jax.run stay there, the same objects as in the module that defines them."""
    import tr_jax.run as run_module
    from tr_jax.run import interrupts, load, loop, results

    assert set(run_module.__all__) <= set(vars(run_module))
    assert run_module.RunResult is results.RunResult and run_module.load_checkpoint is load.load_checkpoint
    assert run_module._Interrupts is interrupts.Interrupts and run_module._MujocoLog is interrupts.MujocoLog
    assert run_module.LoopOptions is loop.LoopOptions and run_module.hold_exit_status is interrupts.hold_exit_status


def test_mujoco_warnings_go_to_the_run_directory(tmp_path, monkeypatch):
    mujoco = pytest.importorskip("mujoco")
    from tr_jax.run import _MujocoLog

    monkeypatch.chdir(tmp_path)
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><joint/><geom size="1"/></body></worldbody></mujoco>'
    )
    data = mujoco.MjData(model)
    with _MujocoLog() as log:
        data.qpos[:] = float("nan")
        mujoco.mj_step(model, data)  # warns before the run directory exists: kept until it does
        log.path = str(tmp_path / "run" / "mujoco.log")
        os.makedirs(tmp_path / "run")
        log.flush()
    assert "Nan, Inf or huge value in QPOS" in open(tmp_path / "run" / "mujoco.log").read()
    assert os.listdir(tmp_path) == ["run"]  # no MUJOCO_LOG.TXT in the working directory


def test_checkpoints_keep_zero_size_arrays_and_keys(tmp_path):
    """MJX states (Playground envs) hold zero-size arrays, which Orbax cannot write: they round-trip as empty."""
    state = {"params": jax.numpy.arange(3.0), "act": jax.numpy.zeros((2, 0)), "key": jax.random.key(1)}
    ck = Checkpoints(str(tmp_path / "ck"))
    ck.save(1, state, {"iteration": 1})
    out, meta = ck.restore(1, jax.eval_shape(lambda: state))
    ck.close()
    assert out["act"].shape == (2, 0) and out["act"].dtype == np.float32 and meta["iteration"] == 1
    np.testing.assert_array_equal(out["params"], state["params"])
    np.testing.assert_array_equal(jax.random.key_data(out["key"]), jax.random.key_data(state["key"]))


class _Before(NamedTuple):
    params: jax.Array
    stats: dict


class _After(NamedTuple):  # _Before with two optional fields added since
    params: jax.Array
    stats: dict
    extra: Any = None
    more_stats: Any = None


def test_checkpoints_written_before_optional_fields_were_added_restore_them_as_none(tmp_path):
    """A state type that gained fields holding None (unused parts, e.g. the value function's own observation
    statistics) restores the checkpoints written before; a field the run uses is still missing from them."""
    ck = Checkpoints(str(tmp_path / "ck"))
    old = _Before(jax.numpy.arange(3.0), {"mean": jax.numpy.ones(2)})
    ck.save(1, old, {"iteration": 1})
    out, _ = ck.restore(1, jax.eval_shape(lambda: _After(old.params, old.stats)))
    assert isinstance(out, _After) and out.extra is None and out.more_stats is None
    np.testing.assert_array_equal(out.params, old.params)
    np.testing.assert_array_equal(out.stats["mean"], old.stats["mean"])
    # and a checkpoint written with the new fields (None) restores as before
    ck.save(2, _After(old.params, old.stats), {"iteration": 2})
    assert ck.restore(2, _After(old.params, old.stats))[0].extra is None
    with pytest.raises(CheckpointError, match=r"checkpoint .*ck/1 is broken"):
        ck.restore(1, _After(old.params, old.stats, extra=jax.numpy.zeros(2)))
    ck.close()
