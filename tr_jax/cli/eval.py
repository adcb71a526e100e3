"""``tr-jax eval``: evaluate a run's checkpoint."""

from __future__ import annotations

import argparse

from tr_jax.cli._common import add_checkpoint, add_run_dir_argument, add_seed


def parser_options() -> dict:
    """The keyword arguments of the subparser (help, description)."""
    return dict(
        help="evaluate a run's checkpoint",
        description=(
            "Loads a checkpoint of RUN_DIR and prints the deterministic (mean action) and stochastic (sampled) "
            "return, mean +- std over episodes, per seed."
        ),
    )


def add_arguments(e: argparse.ArgumentParser) -> None:
    """The options of ``tr-jax eval`` on ``e``."""
    add_run_dir_argument(e)
    e.add_argument("--episodes", type=int, default=10, help="full episodes per seed and mode (default 10)")
    add_checkpoint(e)
    add_seed(e, 0, "seed of the evaluation episodes (default 0)")


def run(args) -> int:
    """Prints the returns of ``--episodes`` episodes per seed and mode; returns 0 (errors are raised)."""
    from tr_jax.run import evaluate_run

    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    out = evaluate_run(args.run_dir, args.episodes, args.checkpoint, args.seed)
    print(
        f"{args.run_dir}: checkpoint at iteration {out['iteration']} ({out['env_steps']:,} env steps), "
        f"{args.episodes} episodes per seed"
    )
    for s in range(out["deterministic_return"].shape[0]):
        det, sto = out["deterministic_return"][s], out["stochastic_return"][s]
        print(
            f"seed {s}: deterministic {det.mean():.2f} +- {det.std():.2f}   "
            f"stochastic {sto.mean():.2f} +- {sto.std():.2f}"
        )
    return 0
