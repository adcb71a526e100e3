"""Env names and sources: the naming convention, unknown names, the missing-extra and offline-asset errors.

Nothing here compiles an env (the Playground env itself is trained in tests/envs/test_playground.py).
"""

import subprocess
import sys

import pytest

from tr_jax.config import TrainConfig
from tr_jax.envs import EnvUnavailableError, check_env, env_names, load_env, split_env_name
from tr_jax.train import make_trainer


def test_names_split_into_source_and_name():
    assert split_env_name("hopper") == ("brax", "hopper")
    assert split_env_name("playground:CheetahRun") == ("playground", "CheetahRun")


def test_env_names_list_both_sources():
    pytest.importorskip("mujoco_playground")
    names = env_names()
    assert "halfcheetah" in names and "playground:CartpoleBalance" in names and "playground:CheetahRun" in names


def test_unknown_playground_name_lists_playground_envs():
    pytest.importorskip("mujoco_playground")
    with pytest.raises(ValueError, match=r"unknown env 'playground:CartpoleBalanse'.*'playground:CartpoleBalance'"):
        check_env("playground:CartpoleBalanse", "positional")


def test_unknown_brax_name_points_to_playground_names():
    pytest.importorskip("mujoco_playground")
    with pytest.raises(ValueError, match=r"unknown env 'CheetahRun'.*brax.envs provides.*'playground:CheetahRun'"):
        check_env("CheetahRun", "positional")


@pytest.fixture
def no_playground(monkeypatch):
    """Makes ``import mujoco_playground`` fail as it does without the extra installed."""
    for name in [m for m in sys.modules if m == "mujoco_playground" or m.startswith("mujoco_playground.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mujoco_playground", None)  # None in sys.modules: ImportError on import


def test_playground_name_without_the_extra_names_the_extra(no_playground):
    with pytest.raises(EnvUnavailableError, match=r"pip install 'tr_jax\[playground\]'"):
        check_env("playground:CartpoleBalance", "positional")
    # the trainer fails the same way before compiling anything
    with pytest.raises(EnvUnavailableError, match=r"tr_jax\[playground\]"):
        make_trainer(TrainConfig(env_name="playground:CartpoleBalance"))
    # Brax names still work and the unknown-name error says how to get Playground's
    check_env("hopper", "positional")
    with pytest.raises(
        ValueError, match=r"unknown env 'CheetahRun'.*need the extra: pip install 'tr_jax\[playground\]'"
    ):
        check_env("CheetahRun", "positional")
    assert not any(n.startswith("playground:") for n in env_names())


def test_menagerie_task_without_assets_fails_fast_without_downloading(monkeypatch, tmp_path):
    pytest.importorskip("mujoco_playground")
    from mujoco_playground._src import mjx_env

    monkeypatch.setattr(mjx_env, "MENAGERIE_PATH", tmp_path / "mujoco_menagerie")

    def no_download(*args, **kwargs):
        raise AssertionError(f"tried to run {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", no_download)
    monkeypatch.setattr(subprocess, "run", no_download)
    for name in ("Go1JoystickFlatTerrain", "PandaPickCube"):
        with pytest.raises(
            EnvUnavailableError,
            match=r"needs the MuJoCo Menagerie robot assets.*not on this machine"
            r".*'playground:CartpoleBalance'",
        ):
            load_env("playground:" + name)
        with pytest.raises(EnvUnavailableError, match="Menagerie"):
            make_trainer(TrainConfig(env_name="playground:" + name))
    # the dm_control suite ships with the package: loading one needs no assets
    env = load_env("playground:CartpoleBalance")
    assert env.action_size == 1 and env.mjx_model.impl.value == "jax"


def test_obs_key_must_be_a_nonempty_string_or_none():
    from tr_jax.config import validate

    with pytest.raises(ValueError, match="obs_key must be a non-empty key"):
        validate(TrainConfig(obs_key=""))
