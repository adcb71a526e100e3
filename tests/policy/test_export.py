"""tr_jax.policy.export: ``tr-jax export`` writes a file that a process without tr_jax loads and that gives
bit-identical actions on another batch size (or an ONNX model with onnxruntime's actions), quietly; what cannot
be exported or written is one line."""

import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import tr_jax
from tr_jax import cli

from ._saved_run import observations, tr_jax_process

pytestmark = pytest.mark.xdist_group("policy")


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
    obs = observations(37, seed=9)  # the export has a symbolic batch dim: any batch size
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


def test_onnx_export_matches_load_policy(run_dir, tmp_path):
    """In a new process (jax2onnx imports its plugins once per process): the export prints one line, none of
    jax2onnx's plugin-import tracebacks, and onnxruntime's actions are load_policy's."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("jax2onnx")
    path, _ = run_dir
    out = str(tmp_path / "policy.onnx")
    done = tr_jax_process("export", path, "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "" and done.stdout.startswith(f"wrote {out} (") and done.stdout.count("\n") == 1, done
    session = ort.InferenceSession(out)
    obs = observations(13, seed=4)
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
    from tr_jax.policy.export import _SkippedPlugins

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
