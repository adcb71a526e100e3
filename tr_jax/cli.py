"""The ``tr-jax`` command (also ``python -m tr_jax``).

    tr-jax train [CONFIG_FILE] [--set key=value ...] [--sweep key=v1,v2 ...] [--seeds N] [--seed S] [--run-dir DIR]
    tr-jax train --resume RUN_DIR [--checkpoint ITERATION] [--set key=value ...]
    tr-jax train ... --log tensorboard[,wandb] [--log-dir DIR]
    tr-jax export-tb RUN_DIR [--out DIR]
    tr-jax tune [CONFIG_FILE] --param NAME=log:LOW:HIGH ... [--trials N] [--batch B] [--seeds N] [--sampler tpe]
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
import io
import os
import sys
import threading

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


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def build_parser() -> argparse.ArgumentParser:
    """The ``tr-jax`` argument parser (every subcommand and option)."""
    p = _Parser(prog="tr-jax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train (or resume) a run",
        description=(
            "Trains seeds in jitted chunks, showing progress, writing metrics.jsonl/eval.jsonl, evaluating and "
            "checkpointing into a run directory."
        ),
        epilog=_fields_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument(
        "config_file",
        nargs="?",
        default=None,
        help="config file (.json, .toml, .yaml): TrainConfig fields; default: the built-in quick config",
    )
    t.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one TrainConfig field (repeatable), e.g. --set env_name=hopper --set eps_cov=1e-4; "
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
    t.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="seeds trained at once with jax.vmap (default 1; not with --resume)",
    )
    t.add_argument("--seed", type=int, default=None, help="base seed (default 0; not with --resume)")
    t.add_argument(
        "--run-dir", default=None, metavar="DIR", help="run directory (default runs/<env>-<algorithm>-<time>)"
    )
    t.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue RUN_DIR (a run or a sweep directory) from its newest checkpoint",
    )
    t.add_argument(
        "--checkpoint",
        type=int,
        default=None,
        metavar="ITERATION",
        help="with --resume: continue from this checkpoint instead of the newest (e.g. when the newest "
        "is broken); the newer checkpoints and rows are removed",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="start an existing run directory again from scratch (only a tr_jax run or sweep "
        "directory holding nothing else; not with --resume)",
    )
    t.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="a live bar on a terminal, one line per chunk otherwise (default auto)",
    )
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
    d = t.add_argument_group("several hosts (jax.distributed; start the same command on every host)")
    d.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() (detects SLURM, Open MPI, TPU pods)",
    )
    d.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="coordinator address (process 0's host)")
    d.add_argument("--num-processes", type=int, default=None, metavar="N", help="number of processes (hosts)")
    d.add_argument("--process-id", type=int, default=None, metavar="I", help="this process's index, 0 .. N-1")

    x = sub.add_parser(
        "export-tb",
        help="TensorBoard event files of a run made without --log",
        description=(
            "Writes the TensorBoard event files that --log tensorboard writes (train/<metric> and eval/<column> per "
            "seed, step = env_steps, the config as HParams) from a run or sweep directory's metrics.jsonl and "
            "eval.jsonl. Then: tensorboard --logdir RUN_DIR"
        ),
    )
    x.add_argument("run_dir", help="a run (or sweep) directory written by tr-jax train")
    x.add_argument("--out", default=None, metavar="DIR", help="log directory (default: RUN_DIR/tensorboard)")

    from tr_jax.tune import OBJECTIVES, SAMPLERS

    tu = sub.add_parser(
        "tune",
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
    tu.add_argument("config_file", nargs="?", default=None, help="config file (default: the built-in quick config)")
    tu.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=SCALE:LOW:HIGH",
        help="a hyperparameter to search (repeatable), SCALE log or uniform, e.g. eps_mean=log:0.003:0.3",
    )
    tu.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a TrainConfig field of every trial (repeatable)",
    )
    tu.add_argument(
        "--trials", type=int, default=None, help="trials in all (default 16; with --resume: more to continue further)"
    )
    tu.add_argument(
        "--batch",
        type=int,
        default=None,
        help="trials trained at once, as one program (default 8; with --resume: for the batches still to be asked)",
    )
    tu.add_argument("--seeds", type=int, default=None, help="seeds per trial (default 1)")
    tu.add_argument("--objective", choices=OBJECTIVES, default=None, help="what is maximised (default eval_return)")
    tu.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help="Optuna sampler: tpe (with constant liar, for batches), random or cmaes (default tpe)",
    )
    tu.add_argument("--seed", type=int, default=None, help="training seed of every trial and the sampler's (default 0)")
    tu.add_argument("--dir", default=None, metavar="TUNE_DIR", help="default runs/tune-<env>-<algorithm>-<time>")
    tu.add_argument(
        "--resume",
        default=None,
        metavar="TUNE_DIR",
        help="continue a search: finished trials stay, a stopped batch resumes from its checkpoints",
    )
    tu.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto")

    e = sub.add_parser(
        "eval",
        help="evaluate a run's checkpoint",
        description=(
            "Loads a checkpoint of RUN_DIR and prints the deterministic (mean action) and stochastic (sampled) "
            "return, mean +- std over episodes, per seed."
        ),
    )
    e.add_argument("run_dir", help="a run directory written by tr-jax train")
    e.add_argument("--episodes", type=int, default=10, help="full episodes per seed and mode (default 10)")
    e.add_argument(
        "--checkpoint", type=int, default=None, metavar="ITERATION", help="which checkpoint (default the newest)"
    )
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes (default 0)")

    from tr_jax.plot import DERIVED, FORMATS

    pl = sub.add_parser(
        "plot",
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
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by tr-jax train")
    pl.add_argument(
        "--out",
        default="learning_curves.png",
        metavar="FILE",
        help="output file, " + "/".join(FORMATS) + " by its extension (default learning_curves.png)",
    )
    pl.add_argument(
        "--metric",
        dest="metrics",
        action="extend",
        nargs="+",
        default=None,
        metavar="NAME",
        help="metrics to plot, one panel each (repeatable)",
    )
    pl.add_argument(
        "--label",
        dest="labels",
        action="extend",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="one label per RUN_DIR, in order (default: algorithm + projection from config.json)",
    )
    pl.add_argument(
        "--smooth",
        type=int,
        default=1,
        metavar="N",
        help="average per-iteration metrics (training return, KL, bounds) over N trailing iterations "
        "per seed before the band; evaluation returns are never smoothed (default 1: raw)",
    )

    r = sub.add_parser(
        "render",
        help="one episode of a trained policy as an HTML page or a GIF",
        description=(
            "Plays one episode of the deterministic (mean action) policy of a checkpoint of RUN_DIR and writes it "
            "as Brax's HTML viewer page (--out; brax.io.html, the page loads the viewer script from Brax's CDN) "
            "and/or an animated GIF drawn on the CPU (--gif; needs pip install 'tr_jax[render]'). Brax envs only."
        ),
    )
    r.add_argument("run_dir", help="a run directory written by tr-jax train")
    r.add_argument("--out", default=None, metavar="FILE.html", help="the HTML page to write")
    r.add_argument("--gif", default=None, metavar="FILE.gif", help="the animated GIF to write")
    r.add_argument(
        "--checkpoint", type=int, default=None, metavar="ITERATION", help="which checkpoint (default the newest)"
    )
    r.add_argument(
        "--policy-seed",
        type=int,
        default=0,
        metavar="I",
        help="which of the run's seeds acts (0 .. num_seeds-1, default 0)",
    )
    r.add_argument("--seed", type=int, default=0, help="seed of the episode's initial state (default 0)")
    r.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="end the episode after at most N env steps (default the run's episode_length)",
    )
    g = r.add_argument_group("GIF")
    g.add_argument("--width", type=int, default=320, help="frame width in pixels (default 320)")
    g.add_argument("--height", type=int, default=240, help="frame height in pixels (default 240)")
    g.add_argument("--fps", type=float, default=25.0, help="frames per second, at most 50 (default 25)")
    g.add_argument(
        "--stride",
        type=int,
        default=None,
        metavar="K",
        help="one frame every K env steps (default: the K that plays the episode closest to real time)",
    )

    x = sub.add_parser(
        "export",
        help="a trained policy as a file that needs only JAX (jax.export)",
        description=(
            "Serialises the deterministic policy (mean action clipped to [-1, 1], observation normalisation "
            "included) of a checkpoint of RUN_DIR with jax.export, for any batch size; load it with "
            "jax.export.deserialize(open(FILE, 'rb').read()).call(obs)."
        ),
    )
    x.add_argument("run_dir", help="a run directory written by tr-jax train")
    x.add_argument(
        "--out",
        required=True,
        metavar="FILE.jaxexport",
        help="the file to write; FILE.onnx: an ONNX model instead (pip install 'tr_jax[onnx]')",
    )
    x.add_argument(
        "--platforms",
        default="cpu",
        metavar="P,...",
        help="comma-separated platforms it runs on: cpu, cuda, rocm, tpu (default cpu)",
    )
    x.add_argument("--seed", type=int, default=0, metavar="I", help="which of the run's seeds (default 0)")
    x.add_argument(
        "--checkpoint", type=int, default=None, metavar="ITERATION", help="which checkpoint (default the newest)"
    )

    from tr_jax import compare

    c = sub.add_parser(
        "compare",
        help="train setups x envs x seeds, then a table and plots",
        description=compare.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_arguments(c)
    return p


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


def _train(args) -> int:
    from tr_jax.hyperparams import parse_sweep
    from tr_jax.run import EXIT_STATUS, SWEEP_FILE, TrainingDiverged, run, run_sweep

    problem = _train_conflict(args)
    if problem:
        print(f"tr-jax train: error: {problem}", file=sys.stderr)
        return 2
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if any(x is not None for x in explicit) and not all(x is not None for x in explicit):
        print("tr-jax train: error: --coordinator, --num-processes and --process-id go together", file=sys.stderr)
        return 2
    try:
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
            results = [run(config, **options)]
    except TrainingDiverged as e:
        print(f"tr-jax train: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as e:
        return _failed("train", e, args)
    result = results[0]
    dirs = (
        result.run_dir if len(results) == 1 else f"{len(results)} run directories in {os.path.dirname(result.run_dir)}"
    )
    done = (
        f"{result.steps_per_second:,.0f} env steps/s (compile {result.compile_seconds:.1f} s)"
        if result.metrics
        else "nothing to do"
    )  # (no metrics: a finished run resumed, no iteration trained)
    import jax

    who = "" if jax.process_index() == 0 else f"[process {jax.process_index()}] "  # (as the run's own log lines)
    print(
        f"{who}{result.status}: {result.iteration} iterations, {done}; "
        f"{dirs if len(results) > 1 else 'run directory ' + dirs}"
    )
    return EXIT_STATUS.get(result.status, 0)


class _MainThreadOnly(io.TextIOBase):
    """``sys.stderr`` for the commands that only read a checkpoint (eval, render, export): what the main thread
    writes goes through; what other threads write is dropped. When a checkpoint cannot be read, Orbax's
    background threads print "Event loop is closed" tracebacks at unpredictable moments (before, inside or after
    the command's one-line error); nothing else of these commands writes from another thread."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        if threading.current_thread() is threading.main_thread():
            return self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()


def _failed(command: str, e: BaseException, args) -> int:
    """Prints ``tr-jax COMMAND: error: E`` (one line) and returns 2. After a checkpoint that could not be read or
    written (``e`` or its cause), a process that is this command ends here with ``os._exit(2)``: not through the
    interpreter's shutdown, where Orbax's threads report the failure again ("Event loop is closed" tracebacks)."""
    from tr_jax.checkpoint import CheckpointError, CheckpointWriteError

    message = f"tr-jax {command}: error: {e}\n"
    if args.program and any(isinstance(x, (CheckpointError, CheckpointWriteError)) for x in (e, e.__cause__)):
        # Orbax's threads may print that traceback at any moment now: their writes to sys.stderr go nowhere,
        # and the line goes out in one write, so nothing lands inside or after it
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the process ends below)
        os.write(2, message.encode())
        os._exit(2)
    sys.stderr.write(message)
    return 2


def _train_conflict(args) -> str:
    """The problem with ``tr-jax train``'s flags taken together ("" if none)."""
    if args.seeds is not None and args.seeds < 1:
        return "--seeds must be >= 1"
    if not args.resume:
        return ""
    again = f"to start {args.resume} again from scratch, leave out --resume and pass --run-dir and --overwrite"
    if args.overwrite:
        return f"--overwrite cannot be given with --resume ({again})"
    if args.run_dir and os.path.abspath(args.run_dir) != os.path.abspath(args.resume):
        return "--run-dir and --resume name different directories"
    return _resume_mismatch(args, f"a resumed run keeps its seeds and sweep; {again}")


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


def _export_tb(args) -> int:
    from tr_jax.loggers import export_tensorboard

    try:
        written = export_tensorboard(args.run_dir, args.out)
    except (ValueError, OSError, ImportError) as e:
        print(f"tr-jax export-tb: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote TensorBoard event files to {written[0] if len(written) == 1 else f'{len(written)} directories'}; "
        f"view with: tensorboard --logdir {args.out or args.run_dir}"
    )
    return 0


def _tune(args) -> int:
    from tr_jax.run import EXIT_STATUS
    from tr_jax.tune import parse_param, saved_search, tune

    try:
        config = None  # on --resume: only what was given, which tune() checks against the search
        if args.resume:
            if args.dir and os.path.abspath(args.dir) != os.path.abspath(args.resume):
                raise ValueError("--dir and --resume name different directories")
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
            args.resume or args.dir,
            resume=bool(args.resume),
            progress=args.progress,
        )
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as e:
        print(f"tr-jax tune: error: {e}", file=sys.stderr)
        return 2
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


def _eval(args) -> int:
    from tr_jax.run import evaluate_run

    if args.episodes < 1:
        print("tr-jax eval: error: --episodes must be >= 1", file=sys.stderr)
        return 2
    try:
        out = evaluate_run(args.run_dir, args.episodes, args.checkpoint, args.seed)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        return _failed("eval", e, args)
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


def _plot(args) -> int:
    from tr_jax.plot import PlotError, plot_runs

    try:
        drawn = plot_runs(args.run_dirs, args.out, args.metrics, args.labels, smooth=args.smooth)
    except PlotError as e:
        print(f"tr-jax plot: error: {e}", file=sys.stderr)
        return 2
    groups = sorted({label for bands in drawn.values() for label in bands})
    print(f"wrote {args.out}: {', '.join(drawn)} for {', '.join(groups)}")
    return 0


def _render(args) -> int:
    from tr_jax.render import render_run

    try:
        done = render_run(
            args.run_dir,
            args.out,
            args.checkpoint,
            args.policy_seed,
            args.seed,
            gif=args.gif,
            max_steps=args.max_steps,
            width=args.width,
            height=args.height,
            fps=args.fps,
            stride=args.stride,
        )
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        return _failed("render", e, args)
    ep = done.episode
    end = "a terminal state" if ep.terminated else f"the {ep.length}-step limit"
    print(
        f"wrote {', '.join(f for f in (args.out, args.gif) if f)}: checkpoint at iteration {ep.iteration}, one "
        f"deterministic episode of {ep.length} env steps (ended by {end}), return {ep.episode_return:.2f}"
    )
    if args.gif:
        print(
            f"{args.gif}: {done.gif_frames} frames of {args.width}x{args.height} pixels (one every {done.stride} "
            f"env steps) at {args.fps:g} frames per second"
        )
    return 0


def _export(args) -> int:
    from tr_jax.policy.export import export_policy

    try:
        done = export_policy(
            args.run_dir, args.out, [p.strip() for p in args.platforms.split(",")], args.seed, args.checkpoint
        )
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        return _failed("export", e, args)
    print(
        f"wrote {done.path} ({done.size:,} bytes): seed {args.seed}, checkpoint at iteration {done.iteration}, "
        f"act(obs [b, {done.obs_dim}]) -> action [b, {done.action_dim}] on {','.join(done.platforms)}"
    )
    return 0


def _compare(args) -> int:
    from tr_jax.compare import run_compare

    return run_compare(args)


def main(argv=None) -> int:
    """Runs ``tr-jax`` with ``argv`` (None: the command line) and returns its exit status."""
    args = build_parser().parse_args(argv)
    args.program = argv is None  # the process is this command (not a call from Python): it may end it
    if args.program and args.command in ("train", "tune", "compare"):
        from tr_jax.run import hold_exit_status

        hold_exit_status()  # a SIGTERM after the checkpoint cannot turn exit status 75 into 143
    if args.program and args.command in ("eval", "render", "export"):
        sys.stderr = _MainThreadOnly(sys.stderr)
    return {
        "train": _train,
        "export-tb": _export_tb,
        "tune": _tune,
        "eval": _eval,
        "plot": _plot,
        "render": _render,
        "export": _export,
        "compare": _compare,
    }[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
