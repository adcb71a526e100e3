"""``tr-jax tune``: a hyperparameter search (Optuna), each batch of trials one compiled program."""

from __future__ import annotations

import argparse

from tr_jax.cli._common import add_progress, add_run_dir, add_seed, add_seeds, add_set, run_dir_conflict
from tr_jax.config import QUICK_CONFIG, apply_assignments, load_config_file
from tr_jax.hyperparams import SWEEPABLE
from tr_jax.tune import OBJECTIVES, SAMPLERS


def parser_options() -> dict:
    """The keyword arguments of the subparser (help, description)."""
    return dict(
        help="hyperparameter search (Optuna), each batch of trials one compiled program",
        description=(
            "Asks Optuna for --batch trials at a time and trains them x --seeds seeds as ONE sweep program, until "
            "--trials trials are done; the objective is the mean over seeds of the mean deterministic eval return "
            "over the last 10% of each run (a diverged seed fails its trial). TUNE_DIR holds study.db (Optuna's "
            "SQLite storage), one sweep directory per batch, trials.csv, best_config.json (for tr-jax train) and "
            "history/importances/slice PNGs. Searchable: " + ", ".join(SWEEPABLE) + ". Needs pip install "
            "'tr_jax[tune]'."
        ),
    )


def add_arguments(tu: argparse.ArgumentParser) -> None:
    """The options of ``tr-jax tune`` on ``tu``."""
    tu.add_argument("config_file", nargs="?", default=None, help="config file (default: the built-in quick config)")
    tu.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=SCALE:LOW:HIGH",
        help="a hyperparameter to search (repeatable), SCALE log or uniform, e.g. eps_mean=log:0.003:0.3",
    )
    add_set(tu, "set a TrainConfig field of every trial (repeatable)")
    tu.add_argument(
        "--trials", type=int, default=None, help="trials in all (default 16; with --resume: more to continue further)"
    )
    tu.add_argument(
        "--batch",
        type=int,
        default=None,
        help="trials trained at once, as one program (default 8; with --resume: for the batches still to be asked)",
    )
    add_seeds(tu, None, "seeds per trial (default 1)")
    tu.add_argument("--objective", choices=OBJECTIVES, default=None, help="what is maximised (default eval_return)")
    tu.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help="Optuna sampler: tpe (with constant liar, for batches), random or cmaes (default tpe)",
    )
    add_seed(tu, None, "training seed of every trial and the sampler's (default 0)")
    add_run_dir(
        tu, "the tune directory (default runs/tune-<env>-<algorithm>-<time>)", metavar="TUNE_DIR", deprecated="--dir"
    )
    tu.add_argument(
        "--resume",
        default=None,
        metavar="TUNE_DIR",
        help="continue a search: finished trials stay, a stopped batch resumes from its checkpoints",
    )
    add_progress(tu)


def run(args) -> int:
    """Runs (or continues) the search; prints the best trial, or how to continue, and returns the exit status
    (0 done, 1 no trial finished, 130 interrupted, 75 preempted; errors are raised, see tr_jax.cli._errors)."""
    from tr_jax.run import EXIT_STATUS
    from tr_jax.tune import parse_param, saved_search, tune

    config = None  # on --resume: only what was given, which tune() checks against the search
    if args.resume:
        problem = run_dir_conflict(args)
        if problem:
            raise ValueError(problem)
        if args.config_file or args.assignments:
            base = load_config_file(args.config_file) if args.config_file else saved_search(args.resume)[1]
            config = apply_assignments(base, args.assignments)
    else:
        config = load_config_file(args.config_file) if args.config_file else QUICK_CONFIG
        config = apply_assignments(config, args.assignments)
    params = [parse_param(x, config) for x in args.params]
    result = tune(
        config,
        params,
        args.trials,
        args.batch,
        args.seeds,
        args.objective,
        args.sampler,
        args.seed,
        args.resume or args.run_dir,
        resume=bool(args.resume),
        progress=args.progress,
    )
    if result.status != "finished":
        print(f"{result.status}: continue with tr-jax tune --resume {result.directory}")
        return EXIT_STATUS[result.status]
    if result.best is None:
        print(f"no trial finished (every one failed); see {result.directory}/trials.csv")
        return 1
    print(
        f"best: trial {result.best['number']}, value {result.best['value']:.4g}; train it with: "
        f"tr-jax train {result.best_config}"
    )
    return 0
