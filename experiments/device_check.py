"""One-command check of an accelerator: what it is, how fast the projections and training run, how exact.

Written for the few minutes a GPU or TPU is lent (at most 8 minutes on one H100 with the defaults). It
measures, in one process, and writes JSON (``--out``) and a short table:

* **device**: ``jax.devices()``, their kind and count, the backend, jax's version;
* **projections**: the projection benchmark's target cases (``projbench.cases.TARGETS``: KL diag N=65536
  k=17, KL full N=4096 k=17 and N=65536 k=6, and W2 diag beside KL diag) in float32 and float64, timed by the
  benchmark's own functions (``projbench.timing``: forward and forward+backward, compile seconds). Every
  case's projected means and covariances are compared with a float64 computation **on the CPU** of the same
  inputs (the device's inputs, upcast): the largest absolute deviation of the means and of the covariances
  (``scale scale^T``), and the bound excess (the largest ``(part - eps) / eps`` of the device's output,
  parts in float64). On a GPU a float32 matrix product may be computed in TF32 (about 1e-3 relative):
  these deviations show whether the projections are exact there;
* **training**: hopper PPO and TRPL-KL with ``experiments/configs/gpu/hopper/`` settings (2048 envs x 16
  steps, generalized backend) for ``--iterations`` iterations: env steps per second (best of ``--repeats``)
  and compile seconds, each on 1 device and on all devices (data parallel, ``num_devices=0``; one entry when
  JAX sees one device), timed as ``bench_training.py`` times a whole run;
* **memory**: the device's peak bytes in use (``Device.memory_stats()``; None where the backend has no
  statistics, as on the CPU).

Usage::

    python3 experiments/device_check.py                        # on the accelerator; ~8 min on one H100
    python3 experiments/device_check.py --out results/h100.json
    python3 experiments/device_check.py --only projections     # or training
    python3 experiments/device_check.py --quick --out /tmp/x.json   # tiny (seconds), any machine: the suite runs it

``--quick`` shrinks everything: N=64, k=3, float32 only for the projections and 2 iterations of 4 envs on
brax's "fast" test env for training. docs/devices.md has the CPU figures to compare against. The
JSON is written after each section (``"complete": false`` until the end), so a run cut short keeps what it
measured.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # projbench, bench_training
sys.path.insert(0, str(HERE.parent))  # tr_jax from a checkout

import jax  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_OUT = "results/device_check.json"
GPU_CONFIGS = HERE / "configs" / "gpu" / "hopper"
ALGORITHMS = ("ppo", "trpl-kl")
SECTIONS = ("projections", "training")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds on a CPU): a smoke run")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    p.add_argument("--iterations", type=int, default=None, help="training iterations per timed run (5; quick: 2)")
    p.add_argument(
        "--repeats", type=int, default=None, help="timed calls per projection / training run (best kept; 3, quick: 1)"
    )
    p.add_argument("--time-budget", type=float, default=5.0, help="max seconds of timed calls per projection")
    p.add_argument("--eps-mean", type=float, default=1e-3)
    p.add_argument("--eps-cov", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON output path")
    return p


def check_args(args) -> list[str]:
    """The sections to run (and the defaults of ``args`` filled in); ``SystemExit`` with one line for bad flags
    or an unwritable ``--out`` (before any work, and before anything is created)."""
    sections = [x for x in args.only.split(",") if x]
    bad = [x for x in sections if x not in SECTIONS]
    if bad or not sections:
        raise SystemExit(f"--only {args.only!r}: expected some of {','.join(SECTIONS)}")
    for name, full, quick in (("iterations", 5, 2), ("repeats", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    out = Path(args.out)
    if out.is_dir():
        raise SystemExit(f"--out {out} is a directory; give a file path")
    parent = next((p for p in (out.parent, *out.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise SystemExit(f"--out {out}: {parent} is not a writable directory")
    return sections


# --------------------------------------------------------------------------- device


def device_info() -> dict:
    devices = jax.devices()
    return dict(
        backend=jax.default_backend(),
        devices=[str(d) for d in devices],
        kind=devices[0].device_kind,
        count=len(devices),
        jax=jax.__version__,
        host=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        compile_cache=jax.config.jax_compilation_cache_dir,
    )


def peak_memory() -> list:
    """Peak bytes in use per device (``memory_stats()["peak_bytes_in_use"]``), None where not reported."""
    out = []
    for d in jax.local_devices():
        stats = d.memory_stats() if hasattr(d, "memory_stats") else None
        out.append(None if not stats else stats.get("peak_bytes_in_use"))
    return out


# --------------------------------------------------------------------------- projections


def projection_cases(quick: bool) -> list[tuple]:
    """``(cov, k, dtype, n, projs)`` tuples: the benchmark's target cases (tiny ones with ``quick``)."""
    from projbench.cases import target_cases

    cases = target_cases()
    if quick:  # one tiny float32 case per covariance type, the same projections (float64: the same code)
        seen: dict = {}
        for cov, _, dtype, _, projs in cases:
            if dtype == "float32":
                seen.setdefault(cov, (cov, 3, dtype, 64, projs))
        cases = list(seen.values())
    return cases


def _cov(scale: np.ndarray) -> np.ndarray:
    """Covariances ``[N, k, k]`` or variances ``[N, k]`` of scales (std, Cholesky or square root)."""
    return scale**2 if scale.ndim == 2 else scale @ np.swapaxes(scale, -1, -2)


def reference_deviation(forward, args, out) -> dict:
    """Largest absolute deviations of ``out`` (the device's projected mean and scale) from ``forward`` run in
    float64 on the CPU on the same inputs ``args`` (upcast)."""
    cpu = jax.devices("cpu")[0]
    args64 = [jax.device_put(np.asarray(x, np.float64), cpu) for x in args]
    ref_mean, ref_scale = (np.asarray(x) for x in jax.jit(forward)(*args64))
    mean, scale = (np.asarray(x, np.float64) for x in out)
    cov_ref = _cov(ref_scale)
    return dict(
        mean_max_abs_dev=float(np.max(np.abs(mean - ref_mean))),
        cov_max_abs_dev=float(np.max(np.abs(_cov(scale) - cov_ref))),
        cov_max_abs=float(np.max(np.abs(cov_ref))),
    )


def check_projections(args, log) -> list[dict]:
    from projbench.cases import _key, make_gaussians
    from projbench.sweeps import _projection_fns
    from projbench.timing import make_functions, run_case

    from tr_jax import projections

    rows = []
    with jax.enable_x64(True):
        for cov, k, dtype, n, projs in projection_cases(args.quick):
            key = _key(args.seed, k)
            gauss = jax.block_until_ready(make_gaussians(key, n, k, dtype, cov))
            for proj in projs:
                row = dict(proj=proj, cov=cov, k=k, n=n, dtype=dtype)
                fns = make_functions(*_projection_fns(projections, proj), args.eps_mean, args.eps_cov)
                outputs: list = []
                case_key = jax.random.fold_in(key, 1)
                row.update(run_case(proj, fns, gauss, case_key, (args.repeats, args.time_budget), outputs=outputs))
                row.update(reference_deviation(fns[0], *outputs[0]))
                rows.append(row)
                log(
                    f"  {proj} {cov} k={k} N={n} {dtype}: fwd+bwd {row['fwd_bwd_ms']:.2f} ms, "
                    f"mean dev {row['mean_max_abs_dev']:.1e}, cov dev {row['cov_max_abs_dev']:.1e}, "
                    f"bound excess {row['cov_max_excess']:.1e}"
                )
            del gauss
    return rows


# --------------------------------------------------------------------------- training


def training_configs(args) -> dict:
    """``{algorithm: TrainConfig}``: the GPU hopper configs for ``args.iterations`` iterations (tiny with
    ``quick``)."""
    from tr_jax.config import load_config_file

    configs = {}
    for algo in ALGORITHMS:
        c = load_config_file(str(GPU_CONFIGS / f"{algo}.yaml"))
        if args.quick:
            c = c.replace(
                env_name="fast",  # brax.envs' test env: compiles in a blink
                backend="positional",
                num_envs=4,
                unroll_length=4,
                num_epochs=1,
                num_minibatches=1,
                value_epochs=1,
                value_minibatches=1,
                policy_hidden=(8,),
                value_hidden=(8,),
            )
        steps = args.iterations * c.batch_size * c.action_repeat
        configs[algo] = c.replace(total_env_steps=steps, lr_decay_steps=None, chunk_iterations=args.iterations)
    return configs


def check_training(args, log) -> list[dict]:
    from bench_training import bench_train

    device_counts = [1] if jax.device_count() == 1 else [1, jax.device_count()]
    rows = []
    for algo, config in training_configs(args).items():
        for devices in device_counts:
            cfg = config.replace(num_devices=devices)
            compile_s, thunk, steps = bench_train(cfg)  # compiled and run once (warm-up)
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                thunk()
                best = min(best, time.perf_counter() - t0)
            rows.append(
                dict(
                    algorithm=algo,
                    devices=devices,
                    env=f"{cfg.env_name}/{cfg.backend}",
                    num_envs=cfg.num_envs,
                    unroll_length=cfg.unroll_length,
                    iterations=cfg.num_iterations,
                    env_steps=steps,
                    compile_s=compile_s,
                    run_s=best,
                    steps_per_second=steps / best,
                )
            )
            log(f"  {algo} on {devices} device(s): compiled in {compile_s:.1f} s, {steps / best:,.0f} env steps/s")
    return rows


# --------------------------------------------------------------------------- report


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    dev = result["device"]
    console = Console()
    console.print(f"[bold]{dev['count']} x {dev['kind']}[/bold] ({dev['backend']}, jax {dev['jax']})")
    if result.get("projections"):
        t = Table(title="projections (CPU float64 reference on the same inputs)")
        for col in ("case", "dtype", "fwd ms", "fwd+bwd ms", "compile s", "mean dev", "cov dev", "bound excess"):
            t.add_column(col, justify="left" if col in ("case", "dtype") else "right")
        for r in result["projections"]:
            t.add_row(
                f"{r['proj']} {r['cov']} k={r['k']} N={r['n']}",
                r["dtype"],
                f"{r['fwd_ms']:.2f}",
                f"{r['fwd_bwd_ms']:.2f}",
                f"{r['compile_fwd_s'] + r['compile_fwd_bwd_s']:.1f}",
                f"{r['mean_max_abs_dev']:.1e}",
                f"{r['cov_max_abs_dev']:.1e}",
                f"{r['cov_max_excess']:.1e}",
            )
        console.print(t)
    if result.get("training"):
        t = Table(title="training (env steps/s, best of the timed runs)")
        for col in ("algorithm", "devices", "env", "batch", "steps/s", "compile s"):
            t.add_column(col, justify="left" if col in ("algorithm", "env") else "right")
        for r in result["training"]:
            t.add_row(
                r["algorithm"],
                str(r["devices"]),
                r["env"],
                f"{r['num_envs']}x{r['unroll_length']}",
                f"{r['steps_per_second']:,.0f}",
                f"{r['compile_s']:.1f}",
            )
        console.print(t)
    peak = result["peak_memory_bytes"]
    console.print(
        "peak device memory: "
        + (", ".join("n/a" if b is None else f"{b / 2**30:.2f} GiB" for b in peak) or "n/a")
        + f"; total {result['total_s']:.0f} s"
    )


def main(argv=None) -> dict:
    """Runs the check; prints the table and returns (and writes) the JSON dict."""
    args = build_parser().parse_args(argv)
    sections = check_args(args)
    out = Path(args.out)
    t0 = time.perf_counter()
    result: dict = dict(
        meta=dict(
            argv=list(sys.argv[1:] if argv is None else argv),
            time=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            quick=args.quick,
            eps_mean=args.eps_mean,
            eps_cov=args.eps_cov,
            repeats=args.repeats,
            iterations=args.iterations,
            load_avg_start=list(os.getloadavg()),
        ),
        device=device_info(),
        projections=[],
        training=[],
        peak_memory_bytes=peak_memory(),
        total_s=0.0,
        complete=False,
    )

    def save():
        result["peak_memory_bytes"] = peak_memory()
        result["total_s"] = round(time.perf_counter() - t0, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")

    log = lambda line: print(line, flush=True)  # noqa: E731
    log(f"{result['device']['count']} x {result['device']['kind']} ({result['device']['backend']})")
    if "projections" in sections:
        log("projections:")
        result["projections"] = check_projections(args, log)
        save()
    if "training" in sections:
        log("training:")
        result["training"] = check_training(args, log)
        save()
    result["meta"]["load_avg_end"] = list(os.getloadavg())
    result["complete"] = True
    save()
    print_table(result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
