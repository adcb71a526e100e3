"""Benchmark of the trust-region projections: speed and achieved bound accuracy.

For each projection (kl, w2, frob), covariance type (diag, full), action
dimension k, number of states N and dtype it measures forward and
forward+backward time and the achieved bound accuracy (see
``projbench/timing.py``), on the inputs of ``projbench/cases.py``, and
its ratio to the case's floor timed in the same process and rounds (``x floor``,
forward / forward+backward: a memory-bound elementwise map with the same
inputs and outputs for diag, one batched ``eigh`` of the same matrices for
full; ``projbench.cases.floor_project``).

Usage::

    python experiments/bench_projections.py                # default sweep
    python experiments/bench_projections.py --targets      # only the target cases
    python experiments/bench_projections.py --quick        # tiny smoke run
    python experiments/bench_projections.py --proj kl --cov full --k 17 --n 4096 --dtype float64

Results go to a table on stdout and to JSON (``--out``, default
``results/bench_projections.json``). Cases whose estimated peak memory
exceeds ``--max-gb`` are reported as "skipped (memory)".

On a CPU with jaxlib 0.10.x, use ``--case-timeout 300``: batched LAPACK
calls there can deadlock the XLA:CPU thread pool when two run concurrently
(seen on 2 cores with the full-covariance projections); with the flag each
case runs in a child process that is killed, retried, and reported as "hung"
instead of stalling the whole sweep.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from projbench.cases import (  # noqa: E402,F401
    DEFAULT_N,
    MEMORY_FACTOR,
    PROJECTIONS,
    QUICK,
    SLIGHT_FRACTION,
    TARGETS,
    target_cases,
)
from projbench.report import _HEADER, format_targets, target_summary  # noqa: E402
from projbench.sweeps import eps_sweep, isolated_sweep, sweep  # noqa: E402

DEFAULT_OUT = "results/bench_projections.json"


def _csv(parse):
    return lambda text: [parse(x) for x in text.split(",") if x]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--proj", type=_csv(str), default=list(PROJECTIONS), help="comma list of kl,w2,frob")
    p.add_argument("--cov", type=_csv(str), default=["diag", "full"], help="comma list of diag,full")
    p.add_argument("--k", type=_csv(int), default=None, help="action dimensions (comma list; default 6,17)")
    p.add_argument(
        "--n", type=_csv(int), default=None, help=f"numbers of states (default {','.join(map(str, DEFAULT_N))})"
    )
    p.add_argument("--dtype", type=_csv(str), default=None, help="comma list of float32,float64 (default both)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per case (median reported)")
    p.add_argument(
        "--time-budget",
        type=float,
        default=10.0,
        help="max seconds of timed calls per function (fewer repeats if slow)",
    )
    p.add_argument("--max-gb", type=float, default=8.0, help="skip cases whose estimated peak memory exceeds this")
    p.add_argument("--eps-mean", type=float, default=1e-3)
    p.add_argument("--eps-cov", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", action="store_true", help="run only the target cases (KL + W2 diag, f64 and f32)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: N=64, k=3, float64, 1 repeat, no eps sweep")
    p.add_argument(
        "--eps-sweep",
        type=_csv(float),
        default=[],
        help="also report bound accuracy for these eps (comma list), k=17, N=4096",
    )
    p.add_argument(
        "--case-timeout",
        type=float,
        default=0.0,
        help="if > 0: run each case in a child process, killed (and retried) after this many seconds "
        "(guards against a jaxlib 0.10 CPU LAPACK deadlock; see isolated_sweep)",
    )
    p.add_argument("--retries", type=int, default=1, help="retries of a hung case (with --case-timeout)")
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON output path")
    return p


def build_cases(args) -> list[tuple]:
    """``(cov, k, dtype, n, projs)`` tuples in run order."""
    for name, allowed, given in (
        ("--proj", PROJECTIONS, args.proj),
        ("--cov", ("diag", "full"), args.cov),
        ("--dtype", ("float32", "float64"), args.dtype),
    ):
        bad = [x for x in given if x not in allowed]
        if bad:
            raise SystemExit(f"{name}: unknown {bad}; expected some of {list(allowed)}")
    if args.targets:
        return target_cases()
    return [
        (cov, k, dtype, n, list(args.proj))
        for cov in args.cov
        for k in args.k
        for dtype in args.dtype
        for n in sorted(args.n)
    ]


def main(argv=None) -> dict:
    """Runs the benchmark; prints the table and returns (and writes) the JSON dict."""
    args = build_parser().parse_args(argv)
    defaults = QUICK if args.quick else dict(n=list(DEFAULT_N), k=[6, 17], dtype=["float32", "float64"])
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.repeats = 1
    cases = build_cases(args)
    load_start = list(os.getloadavg())  # these machines are shared: say how busy it was
    with jax.enable_x64(True):
        print(_HEADER)
        print("-" * len(_HEADER))
        t0 = time.perf_counter()
        log = lambda line: print(line, flush=True)  # noqa: E731
        if args.case_timeout > 0:
            options = [
                "--repeats",
                str(args.repeats),
                "--time-budget",
                str(args.time_budget),
                "--max-gb",
                str(args.max_gb),
            ]
            options += ["--eps-mean", repr(args.eps_mean), "--eps-cov", repr(args.eps_cov), "--seed", str(args.seed)]
            rows = isolated_sweep(
                cases, options=options, timeout_s=args.case_timeout, retries=args.retries, max_gb=args.max_gb, log=log
            )
        else:
            rows = sweep(
                cases,
                eps_mean=args.eps_mean,
                eps_cov=args.eps_cov,
                repeats=args.repeats,
                max_gb=args.max_gb,
                budget_s=args.time_budget,
                seed=args.seed,
                log=log,
            )
        sweep_rows = []
        if args.eps_sweep and not args.quick:
            print("\nBound accuracy by eps (N=4096, k=17; max |part - eps|/eps over active states, parts in f64):")
            sweep_rows = eps_sweep(args.proj, args.cov, [17], args.dtype, args.eps_sweep, 4096, args.seed)
        elapsed = time.perf_counter() - t0
    summary = target_summary(rows)
    print()
    print(format_targets(summary))
    print(
        f"\ntotal {elapsed:.0f} s; load average (1 min) {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    result = dict(
        meta=dict(
            argv=list(sys.argv[1:] if argv is None else argv),
            time=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            jax=jax.__version__,
            backend=jax.default_backend(),
            devices=[str(d) for d in jax.devices()],
            cpu_count=os.cpu_count(),
            load_avg_start=load_start,
            load_avg_end=list(os.getloadavg()),
            platform=platform.platform(),
            python=platform.python_version(),
            eps_mean=args.eps_mean,
            eps_cov=args.eps_cov,
            repeats=args.repeats,
            max_gb=args.max_gb,
            memory_factor=MEMORY_FACTOR,
            slight_fraction=SLIGHT_FRACTION,
            total_s=round(elapsed, 1),
        ),
        results=rows,
        targets=summary,
        eps_sweep=sweep_rows,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    print(f"wrote {out}")
    return result


def _json_default(x):
    if isinstance(x, (np.generic, jax.Array)):
        return np.asarray(x).item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


if __name__ == "__main__":
    main()
