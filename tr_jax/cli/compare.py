"""``tr-jax compare``: its options; the training, table and plots are :func:`tr_jax.compare.run_compare`."""

from __future__ import annotations

import argparse

from tr_jax import compare
from tr_jax.cli._common import add_progress, add_seed, add_seeds, add_set, add_smooth
from tr_jax.compare import DEFAULT_CONFIGS


def parser_options() -> dict:
    """The keyword arguments of the subparser (help, description: tr_jax.compare's docstring)."""
    return dict(
        help="train setups x envs x seeds, then a table and plots",
        description=compare.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_arguments(p: argparse.ArgumentParser, default_configs: str = DEFAULT_CONFIGS) -> None:
    """The options of ``tr-jax compare`` (and ``experiments/compare.py``, whose ``default_configs`` is the config
    tree beside it) on ``p``."""
    p.add_argument("--envs", nargs="+", required=True, help="env names (directories of --configs)")
    p.add_argument(
        "--setups",
        nargs="+",
        required=True,
        help="setups (config file names without .yaml), e.g. ppo trpl-kl trpl-w2 trpl-frob trpo",
    )
    add_seeds(p, 3, "seeds per run, trained at once (default 3)")
    add_seed(p, 0, "base seed (default 0)")
    p.add_argument(
        "--env-steps",
        type=int,
        default=None,
        metavar="N",
        help="env steps per seed (total_env_steps; default: the config files')",
    )
    add_set(p, "set a TrainConfig field in every run (repeatable)")
    p.add_argument(
        "--configs",
        default=default_configs,
        metavar="DIR",
        help=f"config directory holding ENV/SETUP.yaml (default {default_configs})",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (runs/, results.md, plots)")
    p.add_argument("--report-only", action="store_true", help="train nothing: table and plots of what is there")
    p.add_argument(
        "--table-at",
        type=int,
        default=None,
        metavar="N",
        help="the table at a budget of N env steps per seed: seeds scored over the last 10%% of N, "
        "columns from evaluations and updates at or before N (to compare runs of which some are "
        "still going at equal env steps)",
    )
    add_progress(p, "progress display of each run (default auto)")
    add_smooth(
        p,
        10,
        "plots: per-iteration metrics (training return, KL, bounds, entropy) averaged over N trailing iterations "
        "per seed; evaluations are never smoothed (default 10; 1: raw)",
    )


def run(args) -> int:
    """Trains the runs still to train, then writes the table and plots (tr_jax.compare.run_compare); returns
    its exit status."""
    return compare.run_compare(args)
