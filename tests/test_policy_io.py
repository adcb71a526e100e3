"""tr_jax.load_policy (a run's policy: normalisation, mean/sampled actions, seeds) and tr-jax export (a file
that a process without tr_jax loads and that gives bit-identical actions on another batch size)."""

import logging
import os
import shutil
import subprocess
import sys

import _line_env
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tr_jax
from tr_jax import cli
from tr_jax import distributions as D
from tr_jax.checkpoint import CheckpointError

_line_env.register()
pytestmark = pytest.mark.xdist_group("policy_io")
HERE = os.path.dirname(os.path.abspath(__file__))

LINE = _line_env.line_config(4, unroll_length=4, algorithm="ppo", obs_clip=2.0, cov_type="full", contextual_cov=True)
OBS_MEAN, OBS_VAR = np.array([0.5, -1.0], np.float32), np.array([4.0, 0.25], np.float32)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-seed run directory with one checkpoint (iteration 3): fresh TrainStates with the policy's weights
    perturbed (so actions depend on the observation and differ between seeds) and observation statistics
    whose normalisation and clipping (obs_clip 2) matter."""
    from tr_jax import rundir as R
    from tr_jax.checkpoint import Checkpoints
    from tr_jax.config import config_to_dict
    from tr_jax.train import make_trainer

    rd = R.RunDir.create(str(tmp_path_factory.mktemp("runs") / "line"))
    R.write_json(rd.config, config_to_dict(LINE))
    rd.write_info(seed=0, num_seeds=2)
    state = jax.jit(make_trainer(LINE).init_runs)(jax.random.split(jax.random.key(0), 2))
    leaves, tree = jax.tree.flatten(state.algo.policy_params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [x + 0.5 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    stats = state.obs_stats._replace(mean=jnp.broadcast_to(OBS_MEAN, (2, 2)), var=jnp.broadcast_to(OBS_VAR, (2, 2)))
    state = state._replace(algo=state.algo._replace(policy_params=jax.tree.unflatten(tree, leaves)), obs_stats=stats)
    ck = Checkpoints(rd.checkpoints)
    ck.save(3, state, {"iteration": 3, "env_steps": 3 * LINE.batch_size})
    ck.close()
    return rd.path, jax.tree.map(lambda x: np.asarray(x[0]), state.algo.policy_params)


def _obs(n, seed=2):
    return np.asarray(jax.random.normal(jax.random.key(seed), (n, 2)) * 3.0, np.float32)


def test_load_policy_normalises_and_acts(run_dir):
    path, params = run_dir
    policy = tr_jax.load_policy(path)
    assert (policy.obs_dim, policy.action_dim, policy.iteration, policy.cov_type) == (2, 1, 3, "full")
    obs = _obs(64)
    z = (obs - OBS_MEAN) / np.sqrt(OBS_VAR + 1e-8)
    assert np.abs(z).max() > 2.5  # clipping matters
    from tr_jax.networks import make_policy

    mean, scale = make_policy(LINE, 2, 1).apply(params, jnp.asarray(np.clip(z, -2.0, 2.0)))
    np.testing.assert_allclose(policy.distribution(obs)[0], mean, rtol=1e-6)
    np.testing.assert_allclose(policy.distribution(obs)[1], scale, rtol=1e-6)
    act = jax.jit(policy.act)
    np.testing.assert_array_equal(act(obs), np.clip(mean, -1, 1))
    assert np.abs(mean).max() > 1  # the action clip matters
    key = jax.random.key(5)
    sampled = act(obs, key)
    np.testing.assert_allclose(sampled, np.clip(D.sample(key, mean, scale, "full"), -1, 1), atol=1e-6)
    assert not np.allclose(sampled, act(obs))
    assert not np.allclose(tr_jax.load_policy(path, seed=1).act(obs), act(obs))  # each seed its own policy


def test_load_policy_errors(run_dir, tmp_path):
    with pytest.raises(ValueError, match="policy seed 2 out of range: .* has 2 seed"):
        tr_jax.load_policy(run_dir[0], seed=2)
    with pytest.raises(FileNotFoundError):
        tr_jax.load_policy(str(tmp_path / "missing"))


CHILD = """
import sys
sys.modules["tr_jax"] = None  # tr_jax (and with it flax, brax) cannot be imported here
import numpy as np
from jax import export
try:
    import tr_jax
    raise SystemExit("tr_jax was importable")
except ImportError:
    pass
act = export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
np.save(sys.argv[3], np.asarray(act.call(np.load(sys.argv[2]))))
assert not any(m.split(".")[0] in ("tr_jax", "flax", "brax") for m in sys.modules if sys.modules[m] is not None)
"""


def test_export_loads_without_tr_jax_and_acts_bit_identically(run_dir, tmp_path, capsys):
    path, _ = run_dir
    out = str(tmp_path / "policy.jaxexport")
    assert cli.main(["export", path, "--out", out, "--platforms", "cpu,cuda", "--seed", "1"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    obs = _obs(37, seed=9)  # the export has a symbolic batch dim: any batch size
    np.save(tmp_path / "obs.npy", obs)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    subprocess.run(
        [sys.executable, str(script), out, str(tmp_path / "obs.npy"), str(tmp_path / "act.npy")],
        check=True,
        cwd=str(tmp_path),
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    got = np.load(tmp_path / "act.npy")
    expected = np.asarray(jax.jit(tr_jax.load_policy(path, seed=1).act)(obs))
    assert got.shape == (37, 1)
    np.testing.assert_array_equal(got, expected)


def _tr_jax(*args, timeout=300):
    """``tr-jax ARGS`` in a new process (tests/_run_child.py registers the line env)."""
    return subprocess.run(
        [sys.executable, os.path.join(HERE, "_run_child.py"), *args], capture_output=True, text=True, timeout=timeout
    )


def test_onnx_export_matches_load_policy(run_dir, tmp_path):
    """In a new process (jax2onnx imports its plugins once per process): the export prints one line, none of
    jax2onnx's plugin-import tracebacks, and onnxruntime's actions are load_policy's."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("jax2onnx")
    path, _ = run_dir
    out = str(tmp_path / "policy.onnx")
    done = _tr_jax("export", path, "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "" and done.stdout.startswith(f"wrote {out} (") and done.stdout.count("\n") == 1, done
    session = ort.InferenceSession(out)
    obs = _obs(13, seed=4)
    got = session.run(["action"], {"obs": obs})[0]
    expected = np.asarray(jax.jit(tr_jax.load_policy(path).act)(obs))
    assert got.shape == (13, 1) and np.abs(expected).max() > 0.01
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)  # float32 rounding, not bit-exact


@pytest.mark.parametrize(
    "args,message",
    [(["--platforms", "gpu"], "--platforms gpu: expected some of"), (["--seed", "5"], "policy seed 5 out of range")],
)
def test_export_errors(run_dir, tmp_path, capsys, args, message):
    assert cli.main(["export", run_dir[0], "--out", str(tmp_path / "p.jaxexport"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tr-jax export: error: ") and message in err and err.count("\n") == 1


def test_a_plugin_that_does_not_import_is_dropped_only_from_jax2onnx_plugin_logger():
    from tr_jax.export import _SkippedPlugins

    def record(name, msg, *args):
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)

    skipped = _SkippedPlugins()
    plugin_log = _SkippedPlugins.LOGGER
    assert not skipped.filter(record(plugin_log, "Skipping import of %s due to error: %s", "jax2onnx.plugins.a", "e"))
    assert not skipped.filter(
        record(plugin_log, "Skipping pkgutil import of %s due to error: %s", "jax2onnx.plugins.b", 1)
    )
    assert skipped.filter(record(plugin_log, "Skipping import of %s due to error: %s", "mine.plugin", "e"))
    assert skipped.filter(record(plugin_log, "conversion of %s failed", "jax2onnx.plugins.a"))
    assert skipped.skipped == ["jax2onnx.plugins.a", "jax2onnx.plugins.b"]


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs mounted read-only (root and a kernel that allow it; skipped elsewhere)."""
    d = tmp_path / "ro"
    d.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,ro", f"tr_jax_test_{os.getpid()}", str(d)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    yield d
    subprocess.run(["umount", str(d)], check=True)


def test_export_to_a_path_that_cannot_be_written_is_one_line(run_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    cases = [
        (str(tmp_path / "file" / "sub" / "p.jaxexport"), f"{tmp_path / 'file'} is a file, not a directory"),
        (str(tmp_path / "dir"), f"--out {tmp_path / 'dir'} is a directory"),
    ]
    for out, message in cases:
        assert cli.main(["export", run_dir[0], "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tr-jax export: error: ") and message in err and err.count("\n") == 1, err
    assert sorted(os.listdir(tmp_path)) == ["dir", "file"] and os.listdir(tmp_path / "dir") == []


def test_export_to_a_read_only_file_system_is_one_line(run_dir, tmpfs, capsys):
    out = str(tmpfs / "new" / "p.onnx")
    assert cli.main(["export", run_dir[0], "--out", out]) == 2
    err = capsys.readouterr().err
    assert err == f"tr-jax export: error: --out {out}: cannot write in {tmpfs} (read-only file system)\n", err


@pytest.fixture
def broken(run_dir, tmp_path):
    """A copy of the run whose checkpoint's array data files are cut in half (as a full disk leaves them)."""
    d = str(tmp_path / "broken")
    shutil.copytree(run_dir[0], d)
    data = os.path.join(d, "checkpoints", "3", "state", "d")
    for name in os.listdir(data):
        with open(os.path.join(data, name), "r+b") as f:
            f.truncate(os.path.getsize(os.path.join(data, name)) // 2)
    return d


@pytest.mark.parametrize("command", [["eval", "--episodes", "1"], ["export", "--out", "OUT"]])
def test_a_broken_checkpoint_is_one_line_in_a_real_process(broken, command, tmp_path):
    """Orbax's threads reported the failed read again at the interpreter's shutdown ("Event loop is closed")."""
    out = str(tmp_path / "p.jaxexport")
    done = _tr_jax(command[0], broken, *(out if a == "OUT" else a for a in command[1:]))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"tr-jax {command[0]}: error: checkpoint {broken}/checkpoints/3 is broken (")
    assert done.stderr.count("\n") == 1, done.stderr
    assert not os.path.exists(out)


def test_an_incomplete_checkpoint_is_refused_naming_it(run_dir, tmp_path):
    """Without Orbax's metadata and commit marker, the checkpoint loaded with two absl warnings only."""
    d = str(tmp_path / "incomplete")
    shutil.copytree(run_dir[0], d)
    for name in ("_CHECKPOINT_METADATA", "commit_success.txt"):
        os.remove(os.path.join(d, "checkpoints", "3", name))
    done = _tr_jax("eval", d, "--episodes", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"tr-jax eval: error: checkpoint {d}/checkpoints/3 is incomplete (no _CHECKPOINT_METADATA or "
        f"commit_success.txt, which Orbax writes last: it was not finished or not fully copied); there is no "
        f"older checkpoint\n"
    ), done.stderr
    with pytest.raises(CheckpointError, match="checkpoints/3 is incomplete"):
        tr_jax.load_policy(d)
