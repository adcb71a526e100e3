"""The ``tr-jax`` command (also ``python -m tr_jax``).

    tr-jax train [CONFIG_FILE] [--set key=value ...] [--sweep key=v1,v2 ...] [--seeds N] [--seed S] [--run-dir DIR]
    tr-jax train --resume RUN_DIR [--checkpoint ITERATION] [--set key=value ...]
    tr-jax train ... --log tensorboard[,wandb] [--log-dir DIR]
    tr-jax export-tb RUN_DIR [--out DIR]
    tr-jax tune [CONFIG_FILE] --param NAME=log:LOW:HIGH ... [--trials N] [--batch B] [--seeds N] [--sampler tpe]
        [--run-dir TUNE_DIR]
    tr-jax tune --resume TUNE_DIR [--trials N] [--batch B]
    tr-jax eval RUN_DIR [--episodes N] [--checkpoint ITERATION]
    tr-jax plot RUN_DIR... [--out FILE] [--metric NAME ...] [--label LABEL ...]
    tr-jax render RUN_DIR [--out FILE.html] [--gif FILE.gif] [--checkpoint ITERATION] [--max-steps N]
    tr-jax export RUN_DIR --out FILE.jaxexport [--platforms cpu,cuda,tpu] [--seed S] [--checkpoint ITERATION]
    tr-jax compare --envs ENV... --setups SETUP... --out DIR [--seeds N] [--env-steps N] [--report-only]

``train`` with no config file runs a built-in quick config (TRPL with the KL
projection on Brax's inverted pendulum, 200-step episodes) that learns in a
few minutes on two CPU cores. Exit status of ``train``: 0 done (or nothing left to do), 1
training diverged, 2 bad arguments or files, a run directory in use by another process, or a write
that failed (full disk, read-only), 130 interrupted by Ctrl-C, 75 stopped by SIGTERM or SIGUSR1
(preempted). After 130 and 75 a checkpoint at the iteration reached was written: continue with
``--resume``. 75 is sysexits' EX_TEMPFAIL ("temporary failure; retry"): a batch script can requeue
on it, and it differs from 143, which a shell reports for a process that SIGTERM killed before it
could save anything.
"""

from __future__ import annotations

import argparse
import sys

from tr_jax.cli import compare, export, export_tb, plot, render, train, tune
from tr_jax.cli import eval as eval_
from tr_jax.cli._common import Parser
from tr_jax.cli._errors import MainThreadOnly, run_command

COMMANDS = {
    "train": train,
    "export-tb": export_tb,
    "tune": tune,
    "eval": eval_,
    "plot": plot,
    "render": render,
    "export": export,
    "compare": compare,
}
"""Each command's module (tr_jax.cli.<name>): ``parser_options()`` (its subparser's help and description),
``add_arguments(parser)`` and ``run(args) -> exit status``."""

_STOPPABLE = ("train", "tune", "compare")  # a run stopped by a signal exits with 75 or 130 (tr_jax.run)
_READ_CHECKPOINTS = ("eval", "render", "export")  # only read a checkpoint (see MainThreadOnly)


def build_parser() -> argparse.ArgumentParser:
    """The ``tr-jax`` argument parser (every subcommand and option)."""
    p = Parser(prog="tr-jax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, **module.parser_options()))
    return p


def main(argv=None) -> int:
    """Runs ``tr-jax`` with ``argv`` (None: the command line) and returns its exit status."""
    args = build_parser().parse_args(argv)
    args.program = argv is None  # the process is this command (not a call from Python): it may end it
    if args.program and args.command in _STOPPABLE:
        from tr_jax.run import hold_exit_status

        hold_exit_status()  # a SIGTERM after the checkpoint cannot turn exit status 75 into 143
    if args.program and args.command in _READ_CHECKPOINTS:
        sys.stderr = MainThreadOnly(sys.stderr)
    return run_command(args.command, COMMANDS[args.command].run, args)
