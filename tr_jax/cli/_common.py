"""What several ``tr-jax`` commands share: the parser class and the options spelled the same in each.

One flag name per idea: the directory a command writes its run (or search) into is ``--run-dir`` in every
command; an older spelling stays accepted as a deprecated alias (:func:`add_run_dir`).
"""

from __future__ import annotations

import argparse
import os

PROGRESS = ("auto", "bar", "lines", "none")
"""``--progress`` choices (tr_jax.progress: a live bar on a terminal, one line per chunk, nothing)."""


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Spelled(argparse.Action):
    """Stores the value like ``store`` and, in ``<dest>_flag``, the option string it was given with (so that an
    error names the flag the user typed, the deprecated spelling included)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_flag", option_string)


def add_run_dir(p: argparse.ArgumentParser, help: str, metavar: str = "DIR", deprecated: str | None = None) -> None:
    """``--run-dir`` (into ``args.run_dir``, default None; ``args.run_dir_flag``: the spelling given) on ``p``,
    and ``deprecated`` (e.g. ``"--dir"``), if given, as an alias of it that still works and says so in the help."""
    p.add_argument("--run-dir", dest="run_dir", default=None, metavar=metavar, action=_Spelled, help=help)
    if deprecated:
        p.add_argument(
            deprecated,
            dest="run_dir",
            default=argparse.SUPPRESS,  # (--run-dir's default stands)
            metavar=metavar,
            action=_Spelled,
            help="deprecated spelling of --run-dir",
        )
    p.set_defaults(run_dir_flag="--run-dir")


def run_dir_conflict(args) -> str:
    """The problem when ``--run-dir`` (or its deprecated spelling) and ``--resume`` name different directories
    ("" if they do not)."""
    if args.run_dir and os.path.abspath(args.run_dir) != os.path.abspath(args.resume):
        return f"{args.run_dir_flag} and --resume name different directories"
    return ""


def add_set(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable, into ``args.assignments``): a TrainConfig field."""
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_progress(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--progress`` (one of :data:`PROGRESS`, default auto)."""
    p.add_argument("--progress", choices=PROGRESS, default="auto", help=help)


def add_seed(p: argparse.ArgumentParser, default: int | None, help: str, metavar: str | None = None) -> None:
    """``--seed`` (an int into ``args.seed``): a base seed, or which seed, as ``help`` says for the command."""
    p.add_argument("--seed", type=int, default=default, metavar=metavar, help=help)


def add_seeds(p: argparse.ArgumentParser, default: int | None, help: str, metavar: str | None = None) -> None:
    """``--seeds`` (an int into ``args.seeds``): how many seeds the command trains."""
    p.add_argument("--seeds", type=int, default=default, metavar=metavar, help=help)


def add_checkpoint(p: argparse.ArgumentParser, help: str = "which checkpoint (default the newest)") -> None:
    """``--checkpoint ITERATION`` (default None: the newest)."""
    p.add_argument("--checkpoint", type=int, default=None, metavar="ITERATION", help=help)


def add_run_dir_argument(p: argparse.ArgumentParser, help: str = "a run directory written by tr-jax train") -> None:
    """The positional ``run_dir`` of a command that reads a run."""
    p.add_argument("run_dir", help=help)


def add_smooth(p: argparse.ArgumentParser, default: int, help: str) -> None:
    """``--smooth N`` (into ``args.smooth``): trailing iterations the plots average per-iteration metrics over."""
    p.add_argument("--smooth", type=int, default=default, metavar="N", help=help)
