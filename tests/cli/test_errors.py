"""tr_jax.cli._errors: the one table from exception class to exit status and line, used by every command."""

import os
import subprocess
import sys

import pytest

from tr_jax import cli
from tr_jax.cli._errors import error_line, run_command
from tr_jax.plot import PlotError
from tr_jax.run import TrainingDiverged
from tr_jax.rundir import RunDirLocked, RunDirWriteError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a command line each command parses (what it names need not exist: its run is replaced)
ARGV = {
    "train": [],
    "export-tb": ["d"],
    "tune": [],
    "eval": ["d"],
    "plot": ["d"],
    "render": ["d"],
    "export": ["d", "--out", "f.jaxexport"],
    "compare": ["--envs", "e", "--setups", "s", "--out", "o"],
}


@pytest.mark.parametrize(
    "error,status,line",
    [
        (TrainingDiverged("diverged at iteration 3", None), 1, "tr-jax train: diverged at iteration 3\n"),
        (ValueError("bad"), 2, "tr-jax train: error: bad\n"),
        (PlotError("no metric x"), 2, "tr-jax train: error: no metric x\n"),
        (TypeError("not an int"), 2, "tr-jax train: error: not an int\n"),
        (FileNotFoundError("gone"), 2, "tr-jax train: error: gone\n"),
        (RunDirWriteError("disk full", OSError(28, "No space left on device")), 2, "tr-jax train: error: disk full\n"),
        (RunDirLocked("in use"), 2, "tr-jax train: error: in use\n"),
        (RuntimeError("broken checkpoint"), 2, "tr-jax train: error: broken checkpoint\n"),
        (ImportError("pip install optuna"), 2, "tr-jax train: error: pip install optuna\n"),
    ],
)
def test_each_listed_exception_has_its_status_and_one_line(error, status, line):
    assert error_line("train", error) == (status, line)


def test_an_unlisted_exception_is_not_an_error_line():
    assert error_line("train", KeyError("x")) is None
    assert error_line("train", ZeroDivisionError()) is None


def test_a_class_of_a_module_not_imported_is_skipped(monkeypatch):
    """ "tr_jax.run:TrainingDiverged" matches only once tr_jax.run is imported; a RuntimeError is then 2."""
    monkeypatch.delitem(sys.modules, "tr_jax.run")
    assert error_line("plot", TrainingDiverged("x", None)) == (2, "tr-jax plot: error: x\n")


def test_run_command_writes_the_line_and_returns_the_status(capsys):
    args = type("Args", (), {"program": False})()

    def fails(_):
        raise TrainingDiverged("NaN at iteration 2", None)

    assert run_command("train", fails, args) == 1
    assert capsys.readouterr() == ("", "tr-jax train: NaN at iteration 2\n")
    assert run_command("eval", lambda _: 75, args) == 75  # a status returned goes through
    assert capsys.readouterr() == ("", "")


def test_run_command_lets_a_bug_raise(capsys):
    def bug(_):
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        run_command("plot", bug, type("Args", (), {"program": False})())
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", sorted(ARGV))
def test_every_command_goes_through_the_table(command, monkeypatch, capsys):
    def disk_full(args):
        raise OSError("No space left on device")

    monkeypatch.setattr(cli.COMMANDS[command], "run", disk_full)
    assert cli.main([command, *ARGV[command]]) == 2
    assert capsys.readouterr() == ("", f"tr-jax {command}: error: No space left on device\n")


def test_a_checkpoint_error_in_a_process_ends_it_with_one_line():
    """A process that is the command (``args.program``) ends with ``os._exit`` after the one line on stderr, its
    status kept, for a checkpoint error or a checkpoint error's consequence."""
    script = (
        "import sys\n"
        "from tr_jax.checkpoint import CheckpointError\n"
        "from tr_jax.cli._errors import run_command\n"
        "def fails(args):\n"
        "    try:\n"
        "        raise CheckpointError('cannot read checkpoint 4')\n"
        "    except CheckpointError as e:\n"
        "        raise ValueError('checkpoint 4 of run: unreadable') from e\n"
        "args = type('Args', (), {'program': True})()\n"
        "run_command('eval', fails, args)\n"
        "print('not reached')\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"),
        timeout=300,
    )
    assert (p.returncode, p.stdout, p.stderr) == (2, "", "tr-jax eval: error: checkpoint 4 of run: unreadable\n")
