"""Command line: ``python -m tr_jax.cli --env hopper --algorithm trpl --projection w2 ...``.

Every :class:`~tr_jax.config.TrainConfig` field is an option (``--field-name``;
booleans as ``--flag/--no-flag``, tuples as comma-separated ints, optional
floats accept ``none``); ``--env`` is short for ``--env-name``. The whole run
is one compiled function, so the per-iteration table is printed when it
returns. ``--num-seeds N`` trains N seeds at once with ``jax.vmap`` (the table
shows the mean over seeds); ``--metrics-json`` writes every metric per seed
and iteration; ``--checkpoint`` saves the final params.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

import numpy as np

from tr_jax.config import TrainConfig

DEFAULT_COLUMNS = ("env_steps", "episode_return", "episode_length", "kl_mean", "kl_max", "entropy",
                   "policy_loss", "value_loss")


def _optional_float(text: str):
    return None if text.lower() in ("none", "null", "off") else float(text)


def _int_tuple(text: str):
    return tuple(int(x) for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tr_jax.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        names = [flag, "--env"] if f.name == "env_name" else [flag]
        default = getattr(defaults, f.name)
        hint = hints[f.name]
        if hint is bool:
            p.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            p.add_argument(*names, dest=f.name, type=_int_tuple, default=default, metavar="N,N,...")
        elif typing.get_origin(hint) is typing.Union:
            p.add_argument(*names, dest=f.name, type=_optional_float, default=default, metavar="FLOAT|none")
        else:
            p.add_argument(*names, dest=f.name, type=type(default), default=default)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-seeds", type=int, default=1, help="seeds trained at once with jax.vmap")
    p.add_argument("--metrics-json", default=None, help="write metrics and timings to this JSON file")
    p.add_argument("--checkpoint", default=None, help="save final params (+ config) here (msgpack)")
    p.add_argument("--columns", default=",".join(DEFAULT_COLUMNS), help="metrics shown in the table")
    p.add_argument("--every", type=int, default=1, help="print every n-th iteration")
    return p


def config_from_args(args) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def format_table(metrics: dict, columns, every: int = 1) -> str:
    """Per-iteration table of ``metrics`` (arrays ``[I]`` or ``[S, I]``: mean over seeds)."""
    columns = [c for c in columns if c in metrics]
    data = {c: np.asarray(metrics[c], dtype=np.float64) for c in columns}
    data = {c: (v.mean(axis=0) if v.ndim == 2 else v) for c, v in data.items()}
    n = len(next(iter(data.values()))) if data else 0
    header = f"{'iter':>6} " + " ".join(f"{c:>14}" for c in columns)
    lines = [header, "-" * len(header)]
    for i in range(n):
        if i % every and i != n - 1:
            continue
        cells = []
        for c in columns:
            v = data[c][i]
            cells.append(f"{int(v):>14d}" if c == "env_steps" and np.isfinite(v) else f"{v:>14.4g}")
        lines.append(f"{i:>6} " + " ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from tr_jax import checkpoint
    from tr_jax.config import validate
    from tr_jax.train import TrainingDiverged, run

    try:
        config = validate(config_from_args(args))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"training {config.algorithm} on {config.env_name} ({config.backend}): {config.num_iterations} iterations "
          f"x {config.batch_size * config.action_repeat} env steps, {args.num_seeds} seed(s)", flush=True)
    status = 0
    try:
        result = run(config, args.seed, num_seeds=args.num_seeds, on_divergence="raise")
    except TrainingDiverged as e:
        print(str(e), file=sys.stderr)
        result, status = e.result, 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(result.metrics, args.columns.split(","), args.every))
    print(f"compile {result.compile_seconds:.1f} s, run {result.run_seconds:.2f} s, "
          f"{result.steps_per_second:,.0f} env steps/s")
    if args.metrics_json:
        out = {
            "config": dataclasses.asdict(config),
            "seed": args.seed, "num_seeds": args.num_seeds,
            "steps_per_second": result.steps_per_second,
            "compile_seconds": result.compile_seconds, "run_seconds": result.run_seconds,
            "diverged_at": np.atleast_1d(result.diverged_at).tolist(),
            "metrics": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in result.metrics.items()},
        }
        with open(args.metrics_json, "w") as f:
            json.dump(out, f, allow_nan=True)
        print(f"metrics written to {args.metrics_json}")
    if args.checkpoint and status == 0:
        checkpoint.save(args.checkpoint, checkpoint.state_dict(result.state), config)
        print(f"checkpoint written to {args.checkpoint}")
    return status


if __name__ == "__main__":
    sys.exit(main())
