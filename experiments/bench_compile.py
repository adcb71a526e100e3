"""Compile time of the KL projection (full covariance, forward + backward).

For each action dimension k it traces, lowers and compiles
``jit(grad(sum(c_mean * mean_p) + sum(c_scale * scale_p)))`` of
``kl_projection`` on N states (float64, the benchmark's inputs), then runs it
once and checks that the result is finite. Reported per k: trace+lower time,
compile time, the size of the lowered program (StableHLO lines) and one run.

Usage::

    python experiments/bench_compile.py                  # k = 6, 17, 32; N = 1024
    python experiments/bench_compile.py --k 17 --n 4096 --proj kl,frob
    python experiments/bench_compile.py --json results/bench_compile.json

Each case runs in a fresh child process (``--no-isolate`` to run in this
one), so no compilation cache is shared between cases.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from projbench.cases import PROJECTIONS, _key, make_gaussians, scales_for  # noqa: E402


def measure(proj: str, k: int, n: int, seed: int = 0) -> dict:
    """Compile-time figures of one case (float64, full covariance)."""
    from tr_jax import projections

    fn_name, _, cov_type = PROJECTIONS[proj]
    project = getattr(projections, fn_name)
    with jax.enable_x64(True):
        key = _key(seed, k)
        gauss = make_gaussians(key, n, k, jnp.float64, "full")
        scale, old_scale = scales_for(gauss, cov_type)
        args = (gauss["mean"], scale, gauss["old_mean"], old_scale)
        k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
        cot = (jax.random.normal(k1, args[0].shape, jnp.float64), jax.random.normal(k2, scale.shape, jnp.float64))

        def weighted(mean, scale, old_mean, old_scale, c_mean, c_scale):
            p_mean, p_scale = project(mean, scale, old_mean, old_scale, 1e-3, 1e-3)
            return jnp.sum(c_mean * p_mean) + jnp.sum(c_scale * p_scale)

        fwd_bwd = jax.jit(jax.grad(weighted, argnums=(0, 1)))
        t0 = time.perf_counter()
        lowered = fwd_bwd.lower(*args, *cot)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        grads = jax.block_until_ready(compiled(*args, *cot))
        t3 = time.perf_counter()
        finite = bool(all(np.all(np.isfinite(np.asarray(g))) for g in grads))
    return dict(
        proj=proj,
        k=k,
        n=n,
        lower_s=round(t1 - t0, 2),
        compile_s=round(t2 - t1, 2),
        hlo_lines=lowered.as_text().count("\n"),
        first_run_s=round(t3 - t2, 3),
        finite=finite,
    )


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--k", default="6,17,32", help="comma list of action dimensions")
    p.add_argument("--n", type=int, default=1024, help="number of states")
    p.add_argument("--proj", default="kl", help="comma list of kl,w2,frob")
    p.add_argument("--no-isolate", action="store_true", help="measure in this process")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    ks = [int(x) for x in args.k.split(",") if x]
    projs = [x for x in args.proj.split(",") if x]
    bad = [x for x in projs if x not in PROJECTIONS]
    if bad:
        raise SystemExit(f"--proj: unknown {bad}; expected some of {list(PROJECTIONS)}")
    rows = []
    if not args.child:
        print(
            f"{'proj':4s} {'k':>3s} {'N':>6s} | {'lower s':>7s} {'compile s':>9s} {'HLO lines':>9s} {'1st run s':>9s}"
        )
    for proj in projs:
        for k in ks:
            if args.no_isolate or args.child:
                row = measure(proj, k, args.n)
            else:
                cmd = [sys.executable, __file__, "--child", "--proj", proj, "--k", str(k), "--n", str(args.n)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                row = json.loads(out.strip().splitlines()[-1])[0]
            rows.append(row)
            if args.child:
                continue
            print(
                f"{row['proj']:4s} {row['k']:>3d} {row['n']:>6d} | {row['lower_s']:7.2f} {row['compile_s']:9.2f} "
                f"{row['hlo_lines']:9d} {row['first_run_s']:9.3f}" + ("" if row["finite"] else "  NON-FINITE"),
                flush=True,
            )
    if args.child:
        print(json.dumps(rows))
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
