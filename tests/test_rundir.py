"""Run-directory faults: --overwrite of what is not a run directory, the run-directory lock
(real processes and signals), duplicated rows, torn and missing rows on resume, full disk and read-only
directories (a real tmpfs where this machine lets us mount one, injected write failures elsewhere), and
corrupt checkpoints with ``--checkpoint N``."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from test_run import HERE, LINE, _child, _wait_for_checkpoint

from tr_jax import cli
from tr_jax import rundir as R
from tr_jax.checkpoint import CheckpointError
from tr_jax.config import config_to_dict
from tr_jax.run import run

CHILD = os.path.join(HERE, "_run_child.py")


def _cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, CHILD, "train", *args, "--progress", "lines"], capture_output=True, text=True, timeout=timeout
    )


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tr-jax train: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 1-seed run of 24 iterations: checkpoints 20 and 24, metrics rows 0..23."""
    d = str(tmp_path_factory.mktemp("runs") / "line")
    run(LINE, run_dir=d, progress="none")
    return d


@pytest.fixture
def copy(finished, tmp_path):
    d = str(tmp_path / "copy")
    shutil.copytree(finished, d)
    return d


# ----------------------------------------------------------------------------
# --overwrite


def _fake_run(d, extra=()):
    os.makedirs(os.path.join(d, "checkpoints", "4"), exist_ok=True)
    for name in ("config.json", "run.json", "metrics.jsonl", *extra):
        with open(os.path.join(d, name), "w") as f:
            f.write("{}\n")


def test_overwrite_refuses_what_is_not_a_run_directory(tmp_path):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "precious.txt").write_text("precious")
    with pytest.raises(
        FileExistsError,
        match=r"refusing to overwrite .*victim: not a tr_jax run directory "
        r"\(it holds precious.txt, sub/\)",
    ):
        R.RunDir.create(str(victim), overwrite=True)
    runs = tmp_path / "runs"  # a directory of runs is not a run
    _fake_run(str(runs / "a"))
    with pytest.raises(FileExistsError, match=r"not a tr_jax run directory \(it holds a/\)"):
        R.RunDir.create(str(runs), overwrite=True)
    _fake_run(str(runs / "b"), extra=("notes.md",))  # a run plus something else
    with pytest.raises(FileExistsError, match=r"besides a tr_jax run's files it holds notes.md"):
        R.RunDir.create(str(runs / "b"), overwrite=True)
    sweep = tmp_path / "sweep"  # a sweep: sweep.json and its settings' run directories
    _fake_run(str(sweep / "eps=1"))
    (sweep / "sweep.json").write_text(json.dumps({"settings": ["eps=1"]}))
    (sweep / "eps=1" / "mine.npy").write_text("x")
    with pytest.raises(FileExistsError, match=r"besides a tr_jax run's files it holds eps=1/mine.npy"):
        R.RunDir.create(str(sweep), overwrite=True)
    assert (victim / "precious.txt").read_text() == "precious" and (victim / "sub").is_dir()
    assert (runs / "a" / "config.json").exists() and (sweep / "eps=1" / "mine.npy").exists()
    # what is recognisably ours is emptied
    os.remove(sweep / "eps=1" / "mine.npy")
    for d in (runs / "a", sweep):
        rd = R.RunDir.create(str(d), overwrite=True)
        assert os.listdir(rd.path) == []


def test_cli_overwrite_of_a_foreign_directory_is_one_line_and_keeps_it(tmp_path, capsys):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "precious.txt").write_text("precious")
    cfg = tmp_path / "line.json"
    cfg.write_text(json.dumps(config_to_dict(LINE)))
    assert cli.main(["train", str(cfg), "--run-dir", str(victim), "--overwrite", "--progress", "none"]) == 2
    assert "not a tr_jax run directory (it holds precious.txt, sub/)" in _one_line_error(capsys.readouterr().err)
    assert sorted(os.listdir(victim)) == ["precious.txt", "sub"]


# ----------------------------------------------------------------------------
# the lock


def test_lock_is_exclusive_names_the_holder_and_is_released(tmp_path):
    d = str(tmp_path)
    with R.RunLock(d):
        info = json.load(open(os.path.join(d, R.LOCK_FILE)))
        assert info["pid"] == os.getpid()
        # a second open file description conflicts even within one process (flock semantics)
        with pytest.raises(R.RunDirLocked, match=f"in use by pid {os.getpid()} on host {info['host']}"):
            R.RunLock(d).acquire()
    assert not os.path.exists(os.path.join(d, R.LOCK_FILE))
    with R.RunLock(d) as again:  # released: free to take, and nothing was left over to take over
        assert again.note is None


def test_only_the_primary_process_locks(tmp_path, monkeypatch):
    """Multi-host: process 0 holds the lock; the others take none (tests/test_multihost.py runs two processes)."""
    d = str(tmp_path)
    with R.RunLock(d):
        monkeypatch.setattr(R, "_writer", lambda: False)
        with R.RunLock(d) as other:  # would raise RunDirLocked if it tried
            assert other._fd is None


def test_a_second_process_on_a_locked_run_fails_and_takes_over_after_kill(config_file, tmp_path):
    """The first process is stopped (SIGSTOP, a job the scheduler believes dead); a resume of
    its directory must fail naming it, and, once it is killed, take its lock over and finish the run."""
    d = str(tmp_path / "run")
    p = _child(d, config_file, sleep=0.5)
    _wait_for_checkpoint(d, p)
    p.send_signal(signal.SIGSTOP)
    try:
        before = open(os.path.join(d, "metrics.jsonl")).read()
        second = _cli("--resume", d)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"run directory {d} is in use by pid {p.pid} on host " in _one_line_error(second.stderr)
        assert open(os.path.join(d, "metrics.jsonl")).read() == before  # nothing cut or written
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    third = _cli("--resume", d)
    assert third.returncode == 0, third.stdout + third.stderr
    assert f"took over the lock of {d} left by pid {p.pid}" in third.stdout and "that process is gone" in third.stdout
    rows = R.RunDir(d).read_metrics()  # one row per iteration
    assert [r["iteration"] for r in rows] == list(range(LINE.num_iterations))
    assert not os.path.exists(os.path.join(d, R.LOCK_FILE))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "line.json"
    path.write_text(json.dumps(config_to_dict(LINE)))
    return str(path)


# ----------------------------------------------------------------------------
# readers refuse duplicated rows


def test_plot_refuses_duplicated_iterations(copy, tmp_path, capsys):
    path = os.path.join(copy, "metrics.jsonl")
    lines = open(path).readlines()
    with open(path, "a") as f:  # what two processes on one directory wrote: iterations 8-23 twice
        f.writelines(lines[8:])
    with pytest.raises(
        R.RunDirError,
        match=r"metrics.jsonl holds 16 duplicated \(iteration, seed\) rows: "
        r"iteration 8 \(seed 0\), iteration 9 \(seed 0\)",
    ):
        R.RunDir(copy).read_metrics()
    assert cli.main(["plot", copy, "--out", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path} holds 16 duplicated" in err, err


# ----------------------------------------------------------------------------
# metric names of older versions


def test_an_old_runs_metrics_read_under_the_current_names(tmp_path):
    # a TRPL row as versions before the acting_* names wrote it (the committed study's runs, for one)
    old = {"iteration": 0, "seed": 0, "acting_kl_max": 0.62, "kl_max": 0.3, "mean_part_max": 0.3}
    old |= {"raw_mean_part_max": 0.621, "raw_mean_part_mean": 0.22, "raw_mean_part_over": 0.25}
    old |= {"raw_cov_part_max": 4e-4, "raw_cov_part_mean": 2e-4, "raw_cov_part_over": 0.0, "entropy": 8.5}
    want = {"iteration": 0, "seed": 0, "acting_kl_max": 0.62, "kl_max": 0.3, "mean_part_max": 0.3}
    want |= {"acting_mean_part_max": 0.621, "acting_mean_part_mean": 0.22, "acting_mean_part_over": 0.25}
    want |= {"acting_cov_part_max": 4e-4, "acting_cov_part_mean": 2e-4, "acting_cov_part_over": 0.0, "entropy": 8.5}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(old) + "\n" + json.dumps({**old, "iteration": 1}) + "\n")
    rd = R.RunDir(str(tmp_path))
    rows = rd.read_metrics()
    assert rows == [want, {**want, "iteration": 1}] and list(rows[0]) == list(want)  # renamed in place
    assert rd.first_metrics_row() == want
    # the oldest TRPL runs also called the acting KL raw_kl_*; a current row is left as it is
    assert R.current_metric_names({"raw_kl_mean": 0.1, "raw_kl_max": 0.5}) == {
        "acting_kl_mean": 0.1,
        "acting_kl_max": 0.5,
    }
    assert R.current_metric_names(want) == want
    # a row holding both names of a metric keeps the current one
    assert R.current_metric_names({"raw_mean_part_max": 1.0, "acting_mean_part_max": 2.0}) == {
        "acting_mean_part_max": 2.0
    }
    assert R.RunDir(str(tmp_path / "none")).first_metrics_row() == {}


# ----------------------------------------------------------------------------
# torn and missing rows on resume


def _rows(d, *pairs):
    path = os.path.join(d, "m.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps({"iteration": i, "seed": s}) + "\n" for i, s in pairs)
    return path


def test_cut_names_missing_rows_and_never_calls_them_later(tmp_path):
    # the last row before the checkpoint at 4 (iteration 3, seed 1) was torn
    path = _rows(tmp_path, *[(i, s) for i in range(4) for s in (0, 1)])
    with open(path, "r+") as f:
        f.truncate(os.path.getsize(path) - 5)
    notes = R.cut_jsonl(path, 4, 2, every_iteration=True)
    assert notes == [
        "m.jsonl: dropped a torn last line (iteration 3, before that checkpoint)",
        "warning: m.jsonl lacks rows from before the checkpoint at 4: iteration 3 (seed 1); they "
        "cannot be regenerated, the file keeps this gap",
    ]
    assert [(r["iteration"], r["seed"]) for r in R.read_jsonl(path)] == [(i, s) for i in range(4) for s in (0, 1)][:7]
    # rows after the checkpoint are dropped and called that; a gap in the middle is named
    path = _rows(tmp_path, (0, 0), (2, 0), (3, 0), (4, 0), (5, 0))
    assert R.cut_jsonl(path, 4, 1, every_iteration=True) == [
        "m.jsonl: dropped 2 rows written after that checkpoint (iterations 4-5)",
        "warning: m.jsonl lacks rows from before the checkpoint at 4: iteration 1 (seed 0); they cannot be "
        "regenerated, the file keeps this gap",
    ]
    # eval.jsonl: an evaluation that lost a seed's row, and one lost to a torn line
    path = _rows(tmp_path, (3, 0), (7, 0), (7, 1), (11, 0))
    with open(path, "a") as f:
        f.write('{"iteration": 15, "env_st')
    assert R.cut_jsonl(path, 16, 2, every_iteration=False)[1:] == [
        "warning: m.jsonl lacks rows from before the checkpoint at 16: iteration 3 (seed 1), iteration 11 "
        "(seed 1), iteration 15 (seeds 0, 1); they cannot be regenerated, the file keeps this gap"
    ]
    assert R.cut_jsonl(_rows(tmp_path, (0, 0), (1, 0)), 2, 1, every_iteration=True) == []  # intact: nothing to say


def test_resume_after_a_torn_row_before_the_checkpoint_says_it_is_missing(copy, capsys):
    path = os.path.join(copy, "metrics.jsonl")
    with open(path, "r+") as f:  # iteration 23's row, from before the checkpoint at 24, is torn
        f.truncate(os.path.getsize(path) - 300)
    result = run(
        LINE.replace(total_env_steps=LINE.total_env_steps + 4 * 32), run_dir=copy, resume=True, progress="lines"
    )
    out = capsys.readouterr().out
    assert "written after that checkpoint" not in out, out
    assert "dropped a torn last line (iteration 23, before that checkpoint)" in out
    assert "warning: metrics.jsonl lacks rows from before the checkpoint at 24: iteration 23 (seed 0)" in out
    assert result.iteration == 28
    assert [r["iteration"] for r in R.RunDir(copy).read_metrics()] == [*range(23), *range(24, 28)]


# ----------------------------------------------------------------------------
# full disk, read-only


def test_a_failed_append_leaves_no_partial_line(tmp_path, monkeypatch):
    rd = R.RunDir(str(tmp_path))
    R.append_jsonl(rd.metrics, [{"iteration": 0, "seed": 0}])
    before = open(rd.metrics).read()
    real = os.write

    def half_then_full(fd, data):  # the disk fills up halfway through the chunk's rows
        real(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(R.os, "write", half_then_full)
    with pytest.raises(OSError) as e:
        R.append_jsonl(rd.metrics, [{"iteration": i, "seed": 0, "x": "y" * 100} for i in range(1, 5)])
    assert e.value.errno == errno.ENOSPC and e.value.filename == rd.metrics
    assert open(rd.metrics).read() == before


def test_read_only_run_directory_is_one_line(copy, monkeypatch, capsys):
    """An injected EROFS on the first write of a resume (root ignores chmod; the tmpfs test below is the real one)."""

    def read_only(path, rows):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(R, "append_jsonl", read_only)
    assert (
        cli.main(
            ["train", "--resume", copy, "--set", f"total_env_steps={LINE.total_env_steps + 64}", "--progress", "none"]
        )
        == 2
    )
    err = _one_line_error(capsys.readouterr().err)
    assert err == (
        f"tr-jax train: error: read-only file system: cannot write {copy}/metrics.jsonl (Read-only file "
        f"system); the run directory holds checkpoints up to iteration 24 (20, 24); resume with tr-jax "
        f"train --resume {copy} once it can be written"
    ), err


@pytest.fixture
def tmpfs(mount_tmpfs):
    """A 160 KiB tmpfs (root and a kernel that allow it; skipped elsewhere)."""
    return mount_tmpfs("160k")


def test_full_disk_and_read_only_on_a_real_tmpfs(tmpfs, config_file):
    d = str(tmpfs / "run")
    full = _cli(config_file, "--run-dir", d)
    assert full.returncode == 2, full.stdout + full.stderr
    err = _one_line_error(full.stderr)
    assert f"disk full while writing {d}/" in err and "(No space left on device)" in err, err
    for name in ("metrics.jsonl", "eval.jsonl"):  # no half-written line stays behind
        text = open(os.path.join(d, name)).read() if os.path.exists(os.path.join(d, name)) else ""
        assert text == "" or text.endswith("\n"), name
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    ro = _cli("--resume", d)
    assert ro.returncode == 2, ro.stdout + ro.stderr
    assert _one_line_error(ro.stderr) == (
        f"tr-jax train: error: cannot write the run directory {d}: {d} is on a read-only file system "
        f"(nothing was written)"
    )


def _refused_before_anything_is_written(config_file, tmp_path, capsys, *args):
    """``tr-jax train CONFIG --run-dir tmp/run ARGS`` fails with one line, and creates nothing."""
    before = sorted(os.listdir(tmp_path))
    code = cli.main(["train", config_file, "--run-dir", str(tmp_path / "run"), "--progress", "none", *args])
    err = _one_line_error(capsys.readouterr().err)
    assert code == 2 and sorted(os.listdir(tmp_path)) == before, err
    return err


def test_an_output_below_a_file_is_refused_before_anything_is_written(config_file, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    logs = tmp_path / "file" / "logs"
    err = _refused_before_anything_is_written(
        config_file, tmp_path, capsys, "--log", "tensorboard", "--log-dir", str(logs)
    )
    assert err == (
        f"tr-jax train: error: cannot write the log directory {logs}: {tmp_path / 'file'} is a file, not a "
        f"directory (nothing was written)"
    )
    run_dir = tmp_path / "file" / "run"
    code = cli.main(["train", config_file, "--run-dir", str(run_dir), "--progress", "none"])
    assert code == 2 and "cannot write the run directory" in _one_line_error(capsys.readouterr().err)
    code = cli.main(["train", config_file, "--sweep", "eps_mean=0.01,0.02", "--run-dir", str(run_dir)])
    assert code == 2 and "cannot write the sweep directory" in _one_line_error(capsys.readouterr().err)


def test_a_log_dir_on_a_read_only_file_system_is_refused_before_anything_is_written(
    tmpfs, config_file, tmp_path, capsys
):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    for log in ("tensorboard", "wandb"):
        err = _refused_before_anything_is_written(
            config_file, tmp_path, capsys, "--log", log, "--log-dir", str(tmpfs / "logs")
        )
        assert err == (
            f"tr-jax train: error: cannot write the log directory {tmpfs / 'logs'}: {tmpfs} is on a read-only "
            f"file system (nothing was written)"
        )


def test_a_non_finite_bound_is_refused_by_name(config_file, tmp_path, capsys):
    for value, shown in (("nan", "nan"), ("inf", "inf"), ("-Infinity", "-inf")):
        err = _refused_before_anything_is_written(config_file, tmp_path, capsys, "--set", f"eps_mean={value}")
        assert err == f"tr-jax train: error: eps_mean must be a finite number, got {shown}"


def test_a_start_that_fails_before_training_removes_the_run_directory_it_made(tmp_path):
    """A failure between making the run directory and the first chunk (here a logger that cannot open) leaves
    no config.json/run.json/checkpoints stub behind: a rerun would ask for --resume, and --resume find no
    checkpoint. A sweep's directory goes the same way."""
    from tr_jax.loggers import Logger
    from tr_jax.run import run_sweep

    class Broken(Logger):
        def open(self, runs, env_steps):
            raise RuntimeError("the tracker is down")

    for start in (
        lambda d: run(LINE, run_dir=d, progress="none", loggers=[Broken()]),
        lambda d: run_sweep(LINE, [("eps_mean", (0.01, 0.02))], run_dir=d, progress="none", loggers=[Broken()]),
    ):
        with pytest.raises(RuntimeError, match="the tracker is down"):
            start(str(tmp_path / "run"))
        assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------
# corrupt checkpoints and --checkpoint N


def _array_files(step_dir):
    return sorted(
        os.path.join(root, f)
        for root, _, files in os.walk(os.path.join(step_dir, "state"))
        for f in files
        if os.path.getsize(os.path.join(root, f)) > 64
    )


def test_a_truncated_checkpoint_is_named_and_resume_continues_from_an_older_one(finished, copy, capsys):
    files = _array_files(os.path.join(copy, "checkpoints", "24"))
    assert files
    with open(files[0], "r+b") as f:  # as a full disk or a lost machine would leave it
        f.truncate(os.path.getsize(files[0]) // 2)
    assert cli.main(["train", "--resume", copy, "--progress", "none"]) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert f"checkpoint {copy}/checkpoints/24 is broken (" in err and len(err) < 600, err
    assert err.endswith(
        f"); older checkpoints: 20: resume from one with tr-jax train --resume {copy} --checkpoint "
        f"20 (the iterations after it are trained again)"
    ), err
    with pytest.raises(ValueError, match="needs resume"):
        run(LINE, run_dir=copy + "x", checkpoint=20)
    # --checkpoint 20: the broken 24 is removed, the run continues from 20 and ends as the unbroken one did
    assert cli.main(["train", "--resume", copy, "--checkpoint", "20", "--progress", "lines"]) == 0
    out = capsys.readouterr().out
    assert "removed the checkpoints newer than 20 from" in out and "resumed" in out and "at iteration 20" in out
    assert R.RunDir(copy).read_metrics() == R.RunDir(finished).read_metrics()
    assert R.RunDir(copy).read_eval() == R.RunDir(finished).read_eval()


def test_a_deleted_checkpoint_file_is_named(copy):
    os.remove(_array_files(os.path.join(copy, "checkpoints", "24"))[0])
    with pytest.raises(CheckpointError, match=f"checkpoint {copy}/checkpoints/24 is broken .*older checkpoints: 20"):
        run(None, run_dir=copy, resume=True, progress="none")


def test_resume_takes_the_stored_seeds_and_sweep_and_refuses_others(copy, capsys):
    """--seeds/--seed/--sweep equal to what the run holds are fine; another value is one line naming it."""
    assert cli.main(["train", "--resume", copy, "--seeds", "1", "--seed", "0", "--progress", "none"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    for flags, problem in (
        (["--seeds", "3"], f"--seeds 3: {copy} holds --seeds 1; a resumed run keeps its seeds and sweep"),
        (["--seed", "5"], f"--seed 5: {copy} holds --seed 0;"),
        (["--sweep", "eps_mean=0.01,0.1"], f"--sweep eps_mean=0.01,0.1: {copy} holds a single run, no sweep;"),
    ):
        assert cli.main(["train", "--resume", copy, *flags, "--progress", "none"]) == 2
        assert problem in _one_line_error(capsys.readouterr().err)


def test_an_incomplete_checkpoint_is_refused_and_an_older_one_named(copy, capsys):
    """Checkpoint 24 without Orbax's metadata and commit marker (written last): refused in one line naming it,
    with the older complete one to resume from."""
    for name in ("_CHECKPOINT_METADATA", "commit_success.txt"):
        os.remove(os.path.join(copy, "checkpoints", "24", name))
    assert cli.main(["train", "--resume", copy, "--set", "total_env_steps=1024", "--progress", "none"]) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert f"checkpoint {copy}/checkpoints/24 is incomplete (no _CHECKPOINT_METADATA or commit_success.txt" in err
    assert err.endswith(
        f"resume from one with tr-jax train --resume {copy} --checkpoint 20 (the iterations after it are trained again)"
    ), err
