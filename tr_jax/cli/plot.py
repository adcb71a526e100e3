"""``tr-jax plot``: learning curves of run directories."""

from __future__ import annotations

import argparse

from tr_jax.cli._common import add_smooth
from tr_jax.plot import DERIVED, FORMATS


def parser_options() -> dict:
    """The keyword arguments of the subparser (help, description)."""
    return dict(
        help="learning curves of run directories",
        description=(
            "Plots learning curves over env steps: the mean over seeds and a 95% bootstrap confidence band, "
            "runs grouped by label (algorithm + projection by default; runs with the same label are pooled). "
            "Metrics: "
            + "; ".join(f"{k}: {v[2]}" for k, v in DERIVED.items())
            + "; or any column of metrics.jsonl / eval.jsonl. Default: return, eval_return, kl_max and, with "
            "TRPL runs, mean_bound and cov_bound."
        ),
    )


def add_arguments(pl: argparse.ArgumentParser) -> None:
    """The options of ``tr-jax plot`` on ``pl``."""
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by tr-jax train")
    pl.add_argument(
        "--out",
        default="learning_curves.png",
        metavar="FILE",
        help="output file, " + "/".join(FORMATS) + " by its extension (default learning_curves.png)",
    )
    _add_list(pl, "--metric", "metrics", "NAME", "metrics to plot, one panel each (repeatable)")
    _add_list(
        pl,
        "--label",
        "labels",
        "LABEL",
        "one label per RUN_DIR, in order (default: algorithm + projection from config.json)",
    )
    add_smooth(
        pl,
        1,
        "average per-iteration metrics (training return, KL, bounds) over N trailing iterations per seed before the "
        "band; evaluation returns are never smoothed (default 1: raw)",
    )


def _add_list(pl: argparse.ArgumentParser, flag: str, dest: str, metavar: str, help: str) -> None:
    """A list option: one or more values after ``flag``, the flag repeatable; ``args.<dest>`` None if not given."""
    pl.add_argument(flag, dest=dest, action="extend", nargs="+", default=None, metavar=metavar, help=help)


def run(args) -> int:
    """Writes the plot and names its panels and groups; returns 0 (errors are raised)."""
    from tr_jax.plot import plot_runs

    drawn = plot_runs(args.run_dirs, args.out, args.metrics, args.labels, smooth=args.smooth)
    groups = sorted({label for bands in drawn.values() for label in bands})
    print(f"wrote {args.out}: {', '.join(drawn)} for {', '.join(groups)}")
    return 0
