"""A plain ``tr-jax train`` prints nothing before its run-directory line: the Warp probe of ``mujoco.mjx`` and
Brax's unmaintained-notice are silenced where tr_jax imports them (``tr_jax/envs/sources.py``), and only they.
"""

import os
import subprocess
import sys
import warnings

from tr_jax.envs import sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_prints_nothing_before_the_run_directory_line(tmp_path):
    # a fresh install without the optional Warp package: its import fails, as on a machine without warp-lang
    (tmp_path / "nowarp" / "warp").mkdir(parents=True)
    (tmp_path / "nowarp" / "warp" / "__init__.py").write_text('raise ImportError("No module named warp")\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "nowarp"), ROOT]))
    env.pop("PYTHONWARNINGS", None)
    cmd = [sys.executable, "-m", "tr_jax", "train", "--run-dir", str(tmp_path / "run"), "--progress", "lines"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    before = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the env is built (Brax imported, its System loaded) before this line
            if line.startswith("run directory "):
                break
            before.append(line)
        else:
            raise AssertionError(f"tr-jax train exited ({proc.wait()}) without a run-directory line: {before}")
    finally:
        proc.kill()  # the run itself is not the point: stop it before it compiles
        proc.wait()
    assert before == []


def test_only_brax_unmaintained_notice_is_filtered():
    notice = "Brax System, piplines and environments are not actively being maintained. Please see MJX"
    sources._brax_envs()  # imports brax (whose own import warnings are not the point here)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sources._brax_envs()  # installs the filter (idempotent)
        for message, module in [
            (notice, "brax.io.mjcf"),  # filtered
            ("another warning", "brax.io.mjcf"),  # the same module, another message: shown
            (notice, "my_module"),  # the same message from elsewhere: shown
            (notice, "brax.io.mjcf_extra"),  # the module is matched whole
        ]:
            warnings.warn_explicit(message, UserWarning, "f.py", 1, module=module)
        warnings.warn("unrelated", DeprecationWarning, stacklevel=1)
    shown = [(str(w.message)[:15], w.category) for w in caught]
    assert shown == [
        ("another warning", UserWarning),
        (notice[:15], UserWarning),
        (notice[:15], UserWarning),
        ("unrelated", DeprecationWarning),
    ]
