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

``--breakdown`` instead measures, in this process with no cache, the seconds of tracing, lowering and XLA's
compilation of each of a run's programs (init, chunk, evaluation) and of a program that holds only the env
(a reset and a ``unroll_length``-step scan of the env step with zero actions): how much of a cold compile is
the physics, which both the chunk and the evaluation contain.

    python experiments/bench_training.py --startup --breakdown --configs hopper_ppo
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


def breakdown(config_path: str) -> dict:
    """Trace / lower / XLA-compile seconds of each program of ``config_path``'s run, in this process, cache off."""
    sys.path.insert(0, os.path.dirname(HERE))
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_compilation_cache", False)
    from tr_jax.config import load_config_file
    from tr_jax.hyperparams import SWEEPABLE, Hyperparams
    from tr_jax.train import make_trainer

    config = load_config_file(config_path)
    t0 = time.perf_counter()
    trainer = make_trainer(config)
    out = {"make_trainer": {"seconds": time.perf_counter() - t0}}
    keys = jax.random.split(jax.random.key(0), 1)
    hp = Hyperparams(*(np.asarray([getattr(config, f)], np.dtype(config.dtype)) for f in SWEEPABLE))
    env = trainer.env

    def env_only(key):
        state = env.reset(key)

        def step(s, _):
            s, info = env.step(s, jnp.zeros((env.num_envs, env.action_dim)))
            return s, info.reward

        return jax.lax.scan(step, state, None, length=config.unroll_length)[1].sum()

    state = None
    programs = [
        ("init", jax.jit(trainer.init_runs), lambda: (keys, hp)),
        ("chunk", jax.jit(jax.vmap(trainer.train_chunk, in_axes=(0, None)), static_argnums=1), lambda: (state, 10)),
        (
            "evaluate",
            jax.jit(jax.vmap(trainer.evaluate, in_axes=(0, 0, None)), static_argnums=2),
            lambda: (state, keys, config.eval_episodes),
        ),
        ("env only", jax.jit(env_only), lambda: (jax.random.key(0),)),
    ]
    for name, fn, args in programs:
        t0 = time.perf_counter()
        traced = fn.trace(*args())
        t1 = time.perf_counter()
        lowered = traced.lower()
        t2 = time.perf_counter()
        compiled = lowered.compile()
        t3 = time.perf_counter()
        out[name] = {"trace": t1 - t0, "lower": t2 - t1, "xla": t3 - t2}
        if name == "init":
            state = compiled(keys, hp)
    return out


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
    p.add_argument("--breakdown", action="store_true", help="seconds per program and phase, in this process")
    args = p.parse_args(argv)
    if args.breakdown:
        out = {}
        for name in args.configs.split(","):
            out[name] = breakdown(os.path.join(HERE, "configs", CONFIGS[name][0]))
            print(f"{name} (load {os.getloadavg()[0]:.1f}); seconds:")
            for program, phases in out[name].items():
                print(f"  {program:>12}: " + ", ".join(f"{k} {v:5.1f}" for k, v in phases.items()), flush=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        return 0
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
