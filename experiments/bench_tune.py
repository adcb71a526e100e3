"""Trials per hour: a batched search (tr-jax tune, a batch = one program) against the same trials one by one.

1. ``tr-jax tune`` of ``--trials`` trials in ONE batch (``--batch`` = ``--trials``), ``--seeds`` seeds each, random
   sampler, timed end to end (one process: imports, compile, training, evaluations, checkpoints, outputs);
2. the same trials (their ``policy_lr``/``eps_mean`` from the search's trials.csv), each trained by its own
   ``tr-jax train --set ...`` process with the same seeds, one after the other, timed end to end.

Both use the same config (the built-in quick config, TRPL-KL on Brax's inverted pendulum, shortened by
``--iterations``) and no persistent compilation cache. Prints and writes (``--json``) the wall times, the
trials per hour and the ratio, with each mode's score of every trial (they should agree: the same seeds,
the same values; a batch's lanes equal separate runs up to float rounding).

    python experiments/bench_tune.py --trials 8 --seeds 2 --iterations 20 --out /tmp/bench_tune
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time


def _run(cmd: list) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--iterations", type=int, default=20, help="training iterations per trial (32x32 env steps each)")
    p.add_argument("--out", default="bench_tune")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    sets = [
        "--set",
        f"total_env_steps={32 * 32 * a.iterations}",
        "--set",
        "eval_every=10",
        "--set",
        f"checkpoint_every={a.iterations}",
    ]
    tr = [sys.executable, "-m", "tr_jax"]
    tune_dir = os.path.join(a.out, "tune")
    batched = _run(
        tr
        + [
            "tune",
            "--param",
            "policy_lr=log:1e-4:1e-2",
            "--param",
            "eps_mean=log:0.003:0.3",
            "--trials",
            str(a.trials),
            "--batch",
            str(a.trials),
            "--seeds",
            str(a.seeds),
            "--sampler",
            "random",
            "--run-dir",
            tune_dir,
            "--progress",
            "none",
            *sets,
        ]
    )
    trials = list(csv.DictReader(open(os.path.join(tune_dir, "trials.csv"))))
    single, scores = 0.0, []
    for t in trials:
        d = os.path.join(a.out, f"single_{int(t['number']):04d}")
        single += _run(
            tr
            + [
                "train",
                "--seeds",
                str(a.seeds),
                "--run-dir",
                d,
                "--progress",
                "none",
                *sets,
                "--set",
                f"policy_lr={t['policy_lr']}",
                "--set",
                f"eps_mean={t['eps_mean']}",
            ]
        )
        from tr_jax.rundir import read_jsonl
        from tr_jax.stats import seed_scores

        evals = read_jsonl(os.path.join(d, "eval.jsonl"))
        scores.append(float(seed_scores(evals, a.seeds, max(r["env_steps"] for r in evals)).mean()))
    out = {
        "trials": a.trials,
        "seeds": a.seeds,
        "iterations": a.iterations,
        "batched_seconds": batched,
        "single_seconds": single,
        "batched_trials_per_hour": a.trials * 3600 / batched,
        "single_trials_per_hour": a.trials * 3600 / single,
        "speedup": single / batched,
        "batched_scores": [float(t["value"] or "nan") for t in trials],
        "single_scores": scores,
    }
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
