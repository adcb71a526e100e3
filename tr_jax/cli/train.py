"""``tr-jax train``: train (or resume) a run or a sweep."""

from __future__ import annotations

import argparse
import os

from tr_jax.cli._common import add_checkpoint, add_progress, add_run_dir, add_seed, add_seeds, add_set, run_dir_conflict
from tr_jax.config import (
    QUICK_CONFIG,
    RESUME_SAFE,
    TrainConfig,
    apply_assignments,
    field_docs,
    field_names,
    load_config_file,
    parse_assignment,
    type_name,
)
from tr_jax.hyperparams import SWEEPABLE


def _fields_help() -> str:
    """Every TrainConfig field, one line each (name (type) = default: description), grouped as in the class."""
    lines, group = ["TrainConfig fields (--set KEY=VALUE, or a config file):"], None
    defaults = TrainConfig()
    for name in field_names():
        where, doc = field_docs()[name]
        if where != group:
            lines.append(f"  {where}:")
            group = where
        lines.append(f"    {name} ({type_name(name)}) = {getattr(defaults, name)!r}: {doc}")
    return "\n".join(lines)


def parser_options() -> dict:
    """The keyword arguments of the subparser (help, description, ...)."""
    return dict(
        help="train (or resume) a run",
        description=(
            "Trains seeds in jitted chunks, showing progress, writing metrics.jsonl/eval.jsonl, evaluating and "
            "checkpointing into a run directory."
        ),
        epilog=_fields_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_arguments(t: argparse.ArgumentParser) -> None:
    """The options of ``tr-jax train`` on ``t``."""
    t.add_argument(
        "config_file",
        nargs="?",
        default=None,
        help="config file (.json, .toml, .yaml): TrainConfig fields; default: the built-in quick config",
    )
    add_set(
        t,
        "set one TrainConfig field (repeatable), e.g. --set env_name=hopper --set eps_cov=1e-4; "
        "on --resume only " + ", ".join(RESUME_SAFE) + " may change",
    )
    t.add_argument(
        "--sweep",
        dest="sweeps",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="train every combination of these values (repeatable; keys: "
        + ", ".join(SWEEPABLE)
        + ") x --seeds seeds as ONE compiled program; RUN_DIR gets one run directory per setting, "
        "e.g. --sweep eps_cov=1e-4,1e-3,1e-2 --sweep eps_mean=0.01,0.03",
    )
    add_seeds(t, None, "seeds trained at once with jax.vmap (default 1; not with --resume)", metavar="N")
    add_seed(t, None, "base seed (default 0; not with --resume)")
    add_run_dir(t, "run directory (default runs/<env>-<algorithm>-<time>)")
    t.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue RUN_DIR (a run or a sweep directory) from its newest checkpoint",
    )
    add_checkpoint(
        t,
        "with --resume: continue from this checkpoint instead of the newest (e.g. when the newest "
        "is broken); the newer checkpoints and rows are removed",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="start an existing run directory again from scratch (only a tr_jax run or sweep "
        "directory holding nothing else; not with --resume)",
    )
    add_progress(t, "a live bar on a terminal, one line per chunk otherwise (default auto)")
    _add_logging(t)
    _add_distributed(t)


def _add_logging(t: argparse.ArgumentParser) -> None:
    t.add_argument(
        "--log",
        default=None,
        metavar="TRACKERS",
        help="also log every metrics.jsonl/eval.jsonl row to these trackers, comma-separated: tensorboard "
        "(event files), wandb (offline; wandb sync uploads); one tracker run per seed and setting",
    )
    t.add_argument(
        "--log-dir", default=None, metavar="DIR", help="where --log writes (default: inside each run directory)"
    )
    t.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (default: on, in $TR_JAX_COMPILE_CACHE or "
        "~/.cache/tr_jax/jax_compile; TR_JAX_COMPILE_CACHE=off turns it off; docs/startup.md)",
    )


def _add_distributed(t: argparse.ArgumentParser) -> None:
    d = t.add_argument_group("several hosts (jax.distributed; start the same command on every host)")
    d.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() (detects SLURM, Open MPI, TPU pods)",
    )
    d.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="coordinator address (process 0's host)")
    d.add_argument("--num-processes", type=int, default=None, metavar="N", help="number of processes (hosts)")
    d.add_argument("--process-id", type=int, default=None, metavar="I", help="this process's index, 0 .. N-1")


def run(args) -> int:
    """Trains what ``args`` asks for; prints one line on how it ended and returns the exit status (0 done or
    nothing left to do, 130 interrupted, 75 preempted; errors are raised, see tr_jax.cli._errors)."""
    from tr_jax.hyperparams import parse_sweep
    from tr_jax.run import EXIT_STATUS, SWEEP_FILE, run_sweep
    from tr_jax.run import run as run_one

    problem = _train_conflict(args)
    if problem:
        raise ValueError(problem)
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if any(x is not None for x in explicit) and not all(x is not None for x in explicit):
        raise ValueError("--coordinator, --num-processes and --process-id go together")
    if args.distributed or args.coordinator is not None:
        import jax

        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    if args.no_compile_cache:
        from tr_jax import compile_cache

        compile_cache.setup(enabled=False)
    config = _config(args)
    sweep = [parse_sweep(x) for x in args.sweeps]
    from tr_jax.loggers import make_loggers

    options = dict(
        seed=args.seed or 0,
        num_seeds=args.seeds or 1,
        run_dir=args.resume or args.run_dir,
        resume=bool(args.resume),
        overwrite=args.overwrite,
        progress=args.progress,
        checkpoint=args.checkpoint,
        loggers=make_loggers(args.log, args.log_dir) if args.log else (),
    )
    if sweep or (args.resume and os.path.exists(os.path.join(args.resume, SWEEP_FILE))):
        results = run_sweep(config, sweep, **options)
    else:
        results = [run_one(config, **options)]
    _print_result(results)
    return EXIT_STATUS.get(results[0].status, 0)


def _print_result(results: list) -> None:
    """One line: how the run (or the sweep's first setting) ended, its speed and where it is."""
    import jax

    result = results[0]
    dirs = (
        result.run_dir if len(results) == 1 else f"{len(results)} run directories in {os.path.dirname(result.run_dir)}"
    )
    done = (
        f"{result.steps_per_second:,.0f} env steps/s (compile {result.compile_seconds:.1f} s)"
        if result.metrics
        else "nothing to do"
    )  # (no metrics: a finished run resumed, no iteration trained)
    who = "" if jax.process_index() == 0 else f"[process {jax.process_index()}] "  # (as the run's own log lines)
    print(
        f"{who}{result.status}: {result.iteration} iterations, {done}; "
        f"{dirs if len(results) > 1 else 'run directory ' + dirs}"
    )


def _config(args):
    """The TrainConfig from the file (or the quick one; None when resuming without changes) and --set."""
    if args.resume and not args.config_file and not args.assignments:
        return None
    if args.resume and not args.config_file:
        from tr_jax.config import config_from_dict
        from tr_jax.run import SWEEP_FILE
        from tr_jax.rundir import RunDir, read_json

        path = args.resume
        if os.path.exists(os.path.join(path, SWEEP_FILE)):  # a sweep: the first setting's config carries the rest
            meta = read_json(os.path.join(path, SWEEP_FILE))
            swept = sorted({k for k, _ in meta["sweep"]} & {parse_assignment(a)[0] for a in args.assignments})
            if swept:
                raise ValueError(f"--set {', '.join(swept)}: swept in {path}; a resumed sweep keeps its values")
            path = os.path.join(path, meta["settings"][0])
        rd = RunDir.existing(path)
        config = config_from_dict(read_json(rd.config), where=rd.config)
    else:
        config = load_config_file(args.config_file) if args.config_file else QUICK_CONFIG
    return apply_assignments(config, args.assignments)


def _train_conflict(args) -> str:
    """The problem with ``tr-jax train``'s flags taken together ("" if none)."""
    if args.seeds is not None and args.seeds < 1:
        return "--seeds must be >= 1"
    if not args.resume:
        return ""
    again = f"to start {args.resume} again from scratch, leave out --resume and pass --run-dir and --overwrite"
    if args.overwrite:
        return f"--overwrite cannot be given with --resume ({again})"
    return run_dir_conflict(args) or _resume_mismatch(args, f"a resumed run keeps its seeds and sweep; {again}")


def _resume_mismatch(args, keep: str) -> str:
    """The first of ``--seeds``, ``--seed``, ``--sweep`` given to ``train --resume`` with another value than
    the run or sweep directory holds, as a problem naming the stored value ("" if none; an equal value is
    fine; a directory that is not a run is left to the run to report)."""
    from tr_jax.hyperparams import parse_sweep
    from tr_jax.run import SWEEP_FILE
    from tr_jax.rundir import RunDir, read_json

    path = args.resume
    try:
        if os.path.exists(os.path.join(path, SWEEP_FILE)):
            stored = read_json(os.path.join(path, SWEEP_FILE))
            sweep = [(k, tuple(v)) for k, v in stored["sweep"]]
        else:
            stored, sweep = RunDir.existing(path).info(), []
        seeds, seed = int(stored["num_seeds"]), int(stored["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    try:
        given = [parse_sweep(x) for x in args.sweeps]
    except ValueError as e:
        return str(e)
    for flag, value, saved in (("--seeds", args.seeds, seeds), ("--seed", args.seed, seed)):
        if value is not None and value != saved:
            return f"{flag} {value}: {path} holds {flag} {saved}; {keep}"
    if given and given != sweep:
        held = " ".join(f"--sweep {k}={','.join(f'{x:g}' for x in v)}" for k, v in sweep)
        return f"--sweep {' '.join(args.sweeps)}: {path} holds {held or 'a single run, no sweep'}; {keep}"
    return ""
