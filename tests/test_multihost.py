"""Several processes (``jax.distributed``) for real: two ``tr-jax train`` processes on localhost, one CPU device each.

Each process is tests/_multihost_child.py (the CLI's ``main`` with the line env registered), started with
``--coordinator localhost:PORT --num-processes 2 --process-id I``; their collectives go through JAX's CPU
implementation for several processes (gloo, JAX's default ``jax_cpu_collectives_implementation``). Checked
against ONE process with two forced CPU devices (the same total device count, the same sharded program):

* the same per-iteration metrics, evaluations and checkpointed TrainState, bit for bit (the reductions run in
  the same order: one local device per process, XLA's CPU all-reduce and gloo's sum two operands alike);
* only process 0 writes the run directory: process 1 runs with umask 077, so what it creates is recognisable
  (mode 0600/0700); the only such files are its own shards of the Orbax checkpoints (``*process_1*``), and its
  working directory stays empty;
* the checkpoints restore, in one process (1 device) and as ``--resume`` of both processes, ending with exactly
  the uninterrupted run;
* an error that only process 0 can meet (the run directory exists) ends both processes at once with its message,
  instead of leaving process 1 waiting in a collective;
* a SIGINT that reaches process 0 alone (after its first chunk) stops both at the same chunk end, checkpointed.

Two rounds of processes (7 in all; each imports JAX and brax, and the first round compiles): the one-process
reference, the two-process run that process 0's SIGINT stops at iteration 2 and the two processes meeting an
existing run directory run at once; then both processes resume the stopped run to its end (from the first
round's compiled programs, in the persistent compilation cache). The resumed run is THE two-process run the
first checks compare with the reference: its iterations 0-1 ran in the first pair, 2-5 (and two chunk ends) in
the second.
"""

import json
import os
import socket
import subprocess
import sys
import time

import _line_env
import jax
import numpy as np
import pytest

from tr_jax.checkpoint import Checkpoints
from tr_jax.config import config_from_dict
from tr_jax.train import make_trainer

_line_env.register()
HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "_multihost_child.py")
CONFIG = dict(
    env_name="tr_jax_test_line",
    episode_length=20,
    num_envs=8,
    unroll_length=8,
    total_env_steps=8 * 8 * 6,
    num_epochs=2,
    num_minibatches=2,
    policy_hidden=[8],
    value_hidden=[8],
    normalize_reward=True,
    chunk_iterations=2,
    eval_every=2,
    eval_episodes=2,
    checkpoint_every=2,
)  # 6 iterations, 3 chunks
TIMEOUT = 400

pytestmark = pytest.mark.slow  # 2 rounds of process starts, one of compiles: ~1-2 minutes on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(tmp, devices: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), env.get("PYTHONPATH", "")]),
        JAX_COMPILATION_CACHE_DIR=str(tmp / "jax-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _start(args, cwd, env, umask="022"):
    os.makedirs(cwd, exist_ok=True)
    return subprocess.Popen(
        ["sh", "-c", f'umask {umask} && exec "$0" "$@"', sys.executable, CHILD, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pair(tmp, name, args, env0=()):
    """Starts processes 0 and 1 of ``tr-jax ARGS`` (process 1 with umask 077, each in its own empty cwd;
    ``env0``: extra environment of process 0)."""
    port = _free_port()
    extra = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--progress", "lines"]
    return [
        _start(
            [*args, *extra, "--process-id", str(i)],
            str(tmp / f"{name}-cwd{i}"),
            {**_env(tmp), **(dict(env0) if i == 0 else {})},
            umask="077" if i else "022",
        )
        for i in (0, 1)
    ]


def _finish(procs):
    """[(returncode, stdout, stderr)] of every process (all killed TIMEOUT seconds from now: a process waiting
    in a collective for one that has gone ignores SIGTERM, which JAX's preemption notifier catches)."""
    out, deadline = [], time.monotonic() + TIMEOUT
    for p in procs:
        try:
            o, e = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            o, e = p.communicate()
        out.append((p.returncode, o, e))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihost")
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(CONFIG))
    d = {"single": tmp / "single", "two": tmp / "two", "taken": tmp / "taken", "tmp": tmp}
    d["taken"].mkdir()
    (d["taken"] / "notes.txt").write_text("not a run\n")  # a run directory that exists: only process 0 sees it
    single = _start(
        ["train", str(cfg), "--run-dir", str(d["single"]), "--progress", "lines"],
        str(tmp / "single-cwd"),
        _env(tmp, devices=2),
    )
    # process 0 alone gets a SIGINT after its first chunk
    two = _pair(tmp, "two", ["train", str(cfg), "--run-dir", str(d["two"])], {"TR_JAX_TEST_SIGINT": "1"})
    exists = _pair(tmp, "exists", ["train", str(cfg), "--run-dir", str(d["taken"])])
    d["single_out"], d["sigint_out"], d["exists_out"] = _finish([single])[0], _finish(two), _finish(exists)
    assert d["single_out"][0] == 0 and [r[0] for r in d["sigint_out"]] == [130, 130], (d["single_out"], d["sigint_out"])
    d["sigint_summary"] = json.loads((d["two"] / "summary.json").read_text())  # (the resumed run rewrites them)
    d["sigint_metrics"] = (d["two"] / "metrics.jsonl").read_text()
    d["sigint_checkpoints"] = sorted(os.listdir(d["two"] / "checkpoints"))
    d["resumed_out"] = _finish(_pair(tmp, "resumed", ["train", "--resume", str(d["two"])]))
    return d


def _restore(run_dir, step):
    """Every leaf of the TrainState in checkpoint ``step`` of ``run_dir``, restored in this (1-device) process."""
    config = config_from_dict(json.loads((run_dir / "config.json").read_text()))
    like = jax.eval_shape(jax.vmap(make_trainer(config).init), jax.random.split(jax.random.key(0), 1))
    ckpt = Checkpoints(str(run_dir / "checkpoints"))
    try:
        state, meta = ckpt.restore(step, like)
    finally:
        ckpt.close()
    state = jax.tree.map(
        lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x, state
    )
    return [np.asarray(x) for x in jax.tree.leaves(state)], meta


def _assert_same_checkpoints(a, b, steps):
    for step in steps:
        (xs, meta_a), (ys, meta_b) = _restore(a, step), _restore(b, step)
        assert meta_a["iteration"] == meta_b["iteration"] == step
        assert len(xs) == len(ys)
        for x, y in zip(xs, ys):
            np.testing.assert_array_equal(x, y)


def test_two_processes_equal_one_process_on_two_devices(runs):
    single, two = runs["single"], runs["two"]
    assert [r[0] for r in runs["resumed_out"]] == [0, 0], runs["resumed_out"]
    # in both pairs, the program runs over the global 2-device mesh; process 0 alone shows progress (process 1
    # printed every progress line again before); process 1 logs its events, each line marked as its own
    for (_, out0, err0), (_, out1, _) in (runs["sigint_out"], runs["resumed_out"]):
        assert "2 device(s)" in out0 + err0
        ours = [line for line in out1.splitlines() if not line.startswith("[Gloo]")]  # (gloo's connection notes)
        assert " steps/s | " in out0 and "[process" not in out0
        assert all(line.startswith("[process 1] ") for line in ours) and " steps/s | " not in out1, out1
    assert "[process 1] compiled a 2-iteration chunk" in runs["sigint_out"][1][1]
    assert "[process 1] finished: 6 iterations" in runs["resumed_out"][1][1]
    metrics = (two / "metrics.jsonl").read_text()
    assert len(metrics.splitlines()) == 6
    assert metrics == (single / "metrics.jsonl").read_text()
    assert (two / "eval.jsonl").read_text() == (single / "eval.jsonl").read_text()
    assert sorted(os.listdir(two / "checkpoints")) == sorted(os.listdir(single / "checkpoints")) == ["2", "4", "6"]
    _assert_same_checkpoints(single, two, [2, 6])  # written by 2 processes, restored by one on 1 device
    assert json.loads((two / "summary.json").read_text())["status"] == "finished"


def test_only_process_0_writes_the_run_directory(runs):
    tmp, two = runs["tmp"], runs["two"]
    for pair in ("two", "resumed"):
        assert os.listdir(tmp / f"{pair}-cwd1") == [] and os.listdir(tmp / f"{pair}-cwd0") == []
    by_process_1 = []  # what process 1 (umask 077, in both pairs) created: group/other get no permission bits
    for root, dirs, files in os.walk(two):
        for name in dirs + files:
            path = os.path.join(root, name)
            if os.stat(path).st_mode & 0o077 == 0:
                by_process_1.append(os.path.relpath(path, two))
    assert by_process_1  # the check sees process 1's files at all ...
    # ... and they are only its shards of each checkpoint's arrays (Orbax writes from every process)
    assert all(p.startswith("checkpoints/") and "process_1" in p for p in by_process_1), by_process_1
    assert {p.split("/")[1] for p in by_process_1} == {"2", "4", "6"}  # the stopped pair's and the resumed pair's
    top = {"config.json", "run.json", "metrics.jsonl", "eval.jsonl", "summary.json", "checkpoints"}
    assert top <= set(os.listdir(two))
    # the run-directory lock (tr_jax.rundir.RunLock, DIR/.lock) is taken by process 0 alone: both processes
    # ended as they should (a second taker would have failed with "in use by pid ..."), and a clean release
    # removes the file
    assert [r[0] for r in runs["sigint_out"] + runs["resumed_out"]] == [130, 130, 0, 0]
    assert not [n for n in os.listdir(two) if "lock" in n.lower()]


def test_resume_by_both_processes_ends_like_the_uninterrupted_run(runs):
    single, two = runs["single"], runs["two"]
    assert [r[0] for r in runs["resumed_out"]] == [0, 0], runs["resumed_out"]
    assert "resumed" in runs["resumed_out"][0][1] + runs["resumed_out"][0][2]
    assert (two / "metrics.jsonl").read_text() == (single / "metrics.jsonl").read_text()
    assert (two / "eval.jsonl").read_text() == (single / "eval.jsonl").read_text()
    _assert_same_checkpoints(single, two, [4])  # the resumed pair's first checkpoint


def test_an_error_only_process_0_meets_stops_both(runs):
    (rc0, _, err0), (rc1, _, err1) = runs["exists_out"]
    assert (rc0, rc1) == (2, 2), runs["exists_out"]
    taken = runs["taken"]
    assert err0.strip().splitlines()[-1].startswith(f"tr-jax train: error: run directory {taken} exists")
    assert (
        err1.strip()
        .splitlines()[-1]
        .startswith(f"tr-jax train: error: process 0 failed creating the run directory: run directory {taken} exists")
    )
    assert os.listdir(taken) == ["notes.txt"]


def test_sigint_to_process_0_alone_stops_both_at_the_same_chunk(runs):
    """Process 0 gets a SIGINT after chunk 1 (iterations 0-1, from progress_fn); the request is shared at the
    end of that chunk, so both save checkpoint 2 and stop there, as interrupted (before: process 0 stopped
    alone and process 1 waited in chunk 2's collectives for it). What the run directory held then was read
    before the resumed pair ran."""
    assert [r[0] for r in runs["sigint_out"]] == [130, 130], runs["sigint_out"]
    for _rc, out, err in runs["sigint_out"]:
        assert "interrupted at iteration 2 (128 env steps) by SIGINT; checkpoint" in out + err
    summary = runs["sigint_summary"]
    assert summary["status"] == "interrupted" and summary["iterations"] == 2 and summary["checkpoints"][-1] == 2
    assert runs["sigint_checkpoints"] == ["2"]
    rows = runs["sigint_metrics"].splitlines()
    assert rows == (runs["single"] / "metrics.jsonl").read_text().splitlines()[:2]
