"""``tr-jax export-tb``: the TensorBoard event files of a run made without ``--log``."""

from __future__ import annotations

import argparse

from tr_jax.cli._common import add_run_dir_argument


def parser_options() -> dict:
    """The keyword arguments of the subparser (help, description)."""
    return dict(
        help="TensorBoard event files of a run made without --log",
        description=(
            "Writes the TensorBoard event files that --log tensorboard writes (train/<metric> and eval/<column> per "
            "seed, step = env_steps, the config as HParams) from a run or sweep directory's metrics.jsonl and "
            "eval.jsonl. Then: tensorboard --logdir RUN_DIR"
        ),
    )


def add_arguments(x: argparse.ArgumentParser) -> None:
    """The options of ``tr-jax export-tb`` on ``x``."""
    add_run_dir_argument(x, "a run (or sweep) directory written by tr-jax train")
    x.add_argument("--out", default=None, metavar="DIR", help="log directory (default: RUN_DIR/tensorboard)")


def run(args) -> int:
    """Writes the event files and says how to view them; returns 0 (errors are raised)."""
    from tr_jax.loggers import export_tensorboard

    written = export_tensorboard(args.run_dir, args.out)
    print(
        f"wrote TensorBoard event files to {written[0] if len(written) == 1 else f'{len(written)} directories'}; "
        f"view with: tensorboard --logdir {args.out or args.run_dir}"
    )
    return 0
