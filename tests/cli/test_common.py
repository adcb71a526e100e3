"""Options spelled the same in every ``tr-jax`` command (tr_jax.cli._common): ``--run-dir`` everywhere, with
``tr-jax tune --dir`` kept as its deprecated spelling."""

import contextlib
import io
import types

import pytest

from tr_jax import tune as tune_module
from tr_jax.cli import build_parser, main


@pytest.mark.parametrize(
    "argv,run_dir,flag",
    [
        ([], None, "--run-dir"),
        (["--run-dir", "runs/t"], "runs/t", "--run-dir"),
        (["--dir", "runs/t"], "runs/t", "--dir"),
    ],
)
def test_tune_takes_run_dir_and_its_deprecated_spelling(argv, run_dir, flag):
    args = build_parser().parse_args(["tune", *argv])
    assert (args.run_dir, args.run_dir_flag) == (run_dir, flag)


def test_train_and_tune_spell_the_run_directory_alike():
    for command in ("train", "tune"):
        assert build_parser().parse_args([command, "--run-dir", "d"]).run_dir == "d"


def test_the_help_says_dir_is_deprecated():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "--help"])
    lines = [" ".join(x.split()) for x in out.getvalue().splitlines()]
    assert "--dir TUNE_DIR deprecated spelling of --run-dir" in lines
    assert any(x.startswith("--run-dir TUNE_DIR the tune directory") for x in lines)


@pytest.mark.parametrize("flag", ["--run-dir", "--dir"])
def test_both_spellings_give_tune_the_same_directory(flag, tmp_path, monkeypatch, capsys):
    calls = []

    def stand_in(config, params, *args, **kwargs):
        calls.append(args[-1])  # the directory
        return types.SimpleNamespace(status="finished", best=None, directory=args[-1])

    monkeypatch.setattr(tune_module, "tune", stand_in)
    d = str(tmp_path / "t")
    assert main(["tune", "--param", "policy_lr=log:1e-4:1e-2", flag, d]) == 1  # (the stand-in finished no trial)
    assert calls == [d]
    out, err = capsys.readouterr()
    assert out == f"no trial finished (every one failed); see {d}/trials.csv\n" and err == ""


@pytest.mark.parametrize("flag", ["--run-dir", "--dir"])
def test_a_different_directory_than_resume_is_named_as_typed(flag, tmp_path, capsys):
    assert main(["tune", "--resume", str(tmp_path), flag, str(tmp_path / "elsewhere")]) == 2
    assert capsys.readouterr().err == f"tr-jax tune: error: {flag} and --resume name different directories\n"


def test_compare_options_moved_and_the_old_name_still_works():
    """tr_jax.compare.add_arguments (experiments' scripts may call it) is a deprecated alias of the options in
    tr_jax.cli.compare; tr_jax.compare.main (experiments/compare.py) uses the new one without a warning."""
    import argparse
    import warnings

    from tr_jax import compare
    from tr_jax.cli.compare import add_arguments

    argv = ["--envs", "hopper", "--setups", "ppo", "--out", "o", "--configs", "c"]
    new, old = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_arguments(new, "c")
    with pytest.warns(DeprecationWarning, match="use tr_jax.cli.compare.add_arguments"):
        compare.add_arguments(old)
    assert old.parse_args(argv) == new.parse_args(argv)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit):
        warnings.simplefilter("error")
        compare.main(["--help"])
