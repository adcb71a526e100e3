"""Trackers fed by the host loop (tr_jax/loggers.py, --log, tr-jax export-tb): TensorBoard event files and W&B
offline runs, read back and compared with metrics.jsonl / eval.jsonl."""

import glob
import json
import os
import shutil
import struct
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _line_env import line_config, register  # noqa: E402

from tr_jax.cli import main  # noqa: E402
from tr_jax.loggers import TensorBoardLogger, WandbLogger, make_loggers  # noqa: E402
from tr_jax.run import run, run_sweep  # noqa: E402
from tr_jax.rundir import RunDir  # noqa: E402

register()
pytestmark = pytest.mark.xdist_group("loggers")
LINE = line_config(
    4,
    algorithm="trpl",
    policy_lr=0.05,
    lr_decay=False,
    chunk_iterations=2,
    eval_every=2,
    checkpoint_every=2,
    eval_episodes=2,
)
EPS = (1e-3, 1e-2)
KEYS = ("iteration", "seed", "env_steps")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 2-setting x 2-seed sweep logged to TensorBoard and W&B (offline) while it trains."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    path = str(tmp_path_factory.mktemp("loggers") / "s")
    results = run_sweep(
        LINE,
        [("eps_mean", EPS)],
        num_seeds=2,
        run_dir=path,
        progress="none",
        loggers=[TensorBoardLogger(), WandbLogger()],
    )
    return path, results


def _scalars(directory: str) -> dict:
    """tag -> [(step, value)] of the event files in ``directory`` (TensorBoard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(directory, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(rows: list, seed: int, prefix: str) -> dict:
    """tag -> [(env_steps, value)] of one seed's file rows, null values left out (as the loggers do)."""
    out = {}
    for row in rows:
        if row["seed"] != seed:
            continue
        for name, v in row.items():
            if name not in KEYS and v is not None:
                out.setdefault(f"{prefix}/{name}", []).append((row["env_steps"], float(v)))
    return out


def _assert_equal(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for tag in want:
        steps, values = zip(*got[tag])
        want_steps, want_values = zip(*want[tag])
        assert steps == want_steps, tag
        np.testing.assert_allclose(values, np.float32(want_values), rtol=1e-6, err_msg=tag)


def _files(run_dir: str, seed: int) -> dict:
    rd = RunDir(run_dir)
    return {**_expected(rd.read_metrics(), seed, "train"), **_expected(rd.read_eval(), seed, "eval")}


def test_tensorboard_events_equal_the_files(sweep):
    path, results = sweep
    for r in results:
        for seed in range(2):
            d = os.path.join(r.run_dir, "tensorboard", f"seed_{seed}")
            want = _files(r.run_dir, seed)
            assert "train/episode_return" in want and "eval/deterministic_return_mean" in want
            assert len(want["eval/deterministic_return_mean"]) == 2  # evaluations at iterations 2 and 4
            _assert_equal(_scalars(d), want)


def test_tensorboard_hparams_hold_the_config_seed_and_setting(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    path, results = sweep
    for eps, r in zip(EPS, results):
        for seed in range(2):
            acc = EventAccumulator(os.path.join(r.run_dir, "tensorboard", f"seed_{seed}"))
            acc.Reload()
            content = acc.PluginTagToContent("hparams")
            start = [
                plugin_data_pb2.HParamsPluginData.FromString(c).session_start_info
                for c in content.values()
                if plugin_data_pb2.HParamsPluginData.FromString(c).HasField("session_start_info")
            ]
            assert len(start) == 1
            hp = start[0].hparams
            assert hp["eps_mean"].number_value == pytest.approx(eps)
            assert hp["seed"].number_value == seed and hp["setting"].string_value == f"eps_mean={eps:g}"
            assert hp["env_name"].string_value == "tr_jax_test_line"
            assert json.loads(hp["policy_hidden"].string_value) == [8]


def _wandb_records(path: str) -> list:
    """The protobuf Records of a W&B transaction log (``run-<id>.wandb``: a 7-byte header, then LevelDB-style
    32 KiB blocks of chunks ``crc32c(4) length(2) type(1) data``; type 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if kind == 0 and length == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def test_wandb_offline_runs_hold_the_files(sweep):
    path, results = sweep
    for eps, r in zip(EPS, results):
        found = {}
        for log in glob.glob(os.path.join(r.run_dir, "wandb", "offline-run-*", "run-*.wandb")):
            records = _wandb_records(log)
            config = {}
            for rec in records:
                if rec.WhichOneof("record_type") == "run":
                    config = {item.key: json.loads(item.value_json) for item in rec.run.config.update}
            config = {k: v.get("value", v) if isinstance(v, dict) else v for k, v in config.items()}
            history = []
            for rec in records:
                if rec.WhichOneof("record_type") == "history":
                    history.append(
                        {
                            item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in rec.history.item
                        }
                    )
            seed = config["seed"]
            assert config["eps_mean"] == pytest.approx(eps) and config["setting"] == f"eps_mean={eps:g}"
            got = {}
            for row in history:
                for k, v in row.items():
                    if "/" in k and not k.startswith("_"):
                        got.setdefault(k, []).append((row["env_steps"], v))
            found[seed] = got
        assert sorted(found) == [0, 1]
        for seed, got in found.items():
            _assert_equal(got, _files(r.run_dir, seed))


def test_export_tb_writes_the_same_events(sweep, tmp_path, capsys):
    path, results = sweep
    out = str(tmp_path / "tb")
    assert main(["export-tb", path, "--out", out]) == 0
    for r in results:
        for seed in range(2):
            live = _scalars(os.path.join(r.run_dir, "tensorboard", f"seed_{seed}"))
            exported = _scalars(os.path.join(out, os.path.basename(path), os.path.basename(r.run_dir), f"seed_{seed}"))
            _assert_equal(exported, {tag: [(s, v) for s, v in values] for tag, values in live.items()})
    capsys.readouterr()
    assert main(["export-tb", path, "--out", out]) == 2
    assert "exists already" in capsys.readouterr().err


def test_resumed_run_purges_the_events_after_its_checkpoint(tmp_path):
    """A run resumed from an older checkpoint writes its rows again; TensorBoard shows each step once, equal to
    the (cut back and rewritten) files."""
    pytest.importorskip("tensorboard")
    d = str(tmp_path / "r")
    config = LINE.replace(total_env_steps=4 * 8 * 6, eval_every=0)
    run(config, run_dir=d, progress="none", loggers=[TensorBoardLogger()])
    run(config, run_dir=d, resume=True, checkpoint=4, progress="none", loggers=[TensorBoardLogger()])
    _assert_equal(_scalars(os.path.join(d, "tensorboard", "seed_0")), _files(d, 0))


def test_log_option_errors(capsys, tmp_path):
    with pytest.raises(ValueError, match="unknown tracker 'mlflow'; choose from tensorboard, wandb"):
        make_loggers("tensorboard,mlflow")
    assert main(["train", "--log", "tb", "--run-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown tracker 'tb'" in err
    assert not os.path.exists(tmp_path / "x")
    assert main(["export-tb", str(tmp_path)]) == 2
    assert "not a tr_jax run directory" in capsys.readouterr().err


def test_overwrite_accepts_the_trackers_directories(sweep, tmp_path):
    path, results = sweep
    copy = str(tmp_path / "one")
    shutil.copytree(results[0].run_dir, copy)
    from tr_jax.rundir import foreign_entries

    assert foreign_entries(copy)[1] == []
