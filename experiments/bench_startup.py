"""Time to first step: ``python experiments/bench_training.py --startup`` (or this file).

Starts ``tr-jax train CONFIG --set total_env_steps=STEPS`` as a new process, once with an empty persistent
compilation cache (cold) and once more with the cache that run left (warm), and reports per run:

  first_chunk_s  seconds from starting the process to the first finished chunk (its progress line; what a user
                 waits for before the first numbers): imports, env and trainer build, compilation, one chunk
  compile_s      the run's compile seconds (summary.json: the chunk program(s) and the evaluation)
  total_s        the whole process, wall time
  train_s        the training chunks' wall time (summary.json's run_seconds)
  cpu_s          the process's CPU seconds (user + system, all threads): the work done, much less sensitive to
                 the load of a shared machine than the wall times

``--code LABEL=DIR`` (repeatable) runs the same with the tr_jax of another checkout (e.g. ``before=/work/main``)
first, back to back, so that before/after figures meet the same machine load; the load average is recorded
before and after each run. Code without the cache (no tr_jax/compile_cache.py: older checkouts) runs cold only.

    python experiments/bench_training.py --startup
    python experiments/bench_training.py --startup --code before=/work/main --code after=. --configs hopper_ppo
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = {  # label: (config file under experiments/configs, total_env_steps)
    "hopper_ppo": ("hopper/ppo.yaml", 100_000),
    "hopper_trpl_kl": ("hopper/trpl-kl.yaml", 100_000),
    "humanoid_trpl_kl_full": ("humanoid/trpl-kl-full.yaml", 100_000),
}


def startup_run(code: str, config: str, steps: int, cache: str, run_dir: str) -> dict:
    """One ``tr-jax train`` process with the tr_jax of ``code`` and the compilation cache in ``cache``."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(code), TR_JAX_COMPILE_CACHE=cache)
    load = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tr_jax",
            "train",
            config,
            "--set",
            f"total_env_steps={steps}",
            "--run-dir",
            run_dir,
            "--progress",
            "lines",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=os.path.abspath(code),
    )
    first, lines = None, []
    for line in p.stdout:
        lines.append(line)
        if first is None and " steps/s " in line:  # the first progress line: the first chunk finished
            first = time.perf_counter() - t0
    if p.wait() != 0:
        raise RuntimeError(f"tr-jax train failed ({p.returncode}):\n{''.join(lines[-20:])}")
    total = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    compiles = [x.strip() for x in lines if x.startswith("compiled")]
    return dict(
        first_chunk_s=first,
        compile_s=summary["compile_seconds"],
        total_s=total,
        train_s=summary["run_seconds"],
        cpu_s=cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
        load_before=load,
        load_after=os.getloadavg()[0],
        compiles=compiles,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--startup", action="store_true", help="(what bench_training.py passes on)")
    p.add_argument(
        "--code",
        action="append",
        default=None,
        metavar="LABEL=DIR",
        help="a checkout whose tr_jax to run (default: this one, as 'this')",
    )
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {list(CONFIGS)}")
    p.add_argument("--steps", type=int, default=None, help="total_env_steps of every run (default per config)")
    p.add_argument("--json", default="bench_startup.json")
    args = p.parse_args(argv)
    codes = [tuple(c.split("=", 1)) for c in (args.code or [f"this={os.path.dirname(HERE)}"])]
    out = {}
    with tempfile.TemporaryDirectory(prefix="tr_jax_startup_") as tmp:
        for name in args.configs.split(","):
            path, steps = CONFIGS[name]
            config = os.path.join(HERE, "configs", path)
            for label, code in codes:
                cache = os.path.join(tmp, f"cache-{name}-{label}")  # empty: the first run is cold
                cached = os.path.exists(os.path.join(code, "tr_jax", "compile_cache.py"))
                for mode in ("cold", "warm") if cached else ("cold",):
                    r = startup_run(
                        code, config, args.steps or steps, cache, os.path.join(tmp, f"{name}-{label}-{mode}")
                    )
                    out[f"{name}/{label}/{mode}"] = r
                    print(
                        f"{name:>22} {label:>8} {mode}: first chunk {r['first_chunk_s']:6.1f} s, compile "
                        f"{r['compile_s']:5.1f} s, train {r['train_s']:5.1f} s, process {r['total_s']:6.1f} s, "
                        f"cpu {r['cpu_s']:6.1f} s "
                        f"(load {r['load_before']:.1f} -> {r['load_after']:.1f}); " + "; ".join(r["compiles"]),
                        flush=True,
                    )
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
