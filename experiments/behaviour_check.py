"""Behaviour fingerprint of tiny runs, to show that a refactoring changed no number::

    python3 experiments/behaviour_check.py record FILE.json     # before the change
    python3 experiments/behaviour_check.py check FILE.json      # after: exit 1 naming every case that differs

Each case runs the ``tr-jax`` command line in a child process (as a user would) on Brax's ``fast`` env with a tiny
budget: PPO; TRPL with the KL, W2 and Frobenius projections and a diagonal, Cholesky (full) and symmetric-sqrt
covariance where the projection accepts it; TRPO; a ``--sweep`` of two settings x 2 seeds; a run stopped by SIGTERM
after its first checkpoint and resumed; ``tr-jax tune`` with 2 trials. A case's fingerprint is the SHA-256 of
every ``metrics.jsonl`` and ``eval.jsonl`` row under its output (sorted, so write order does not matter; metrics
under their current names, so that renaming a metric changes no fingerprint) and of
every run's final parameters (the newest checkpoint's TrainState leaves, bytes and shapes). Timings are not part
of it. The same code on the same machine gives the same fingerprints (XLA:CPU is deterministic); another machine
or jax version may not, so record and check on one.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = {  # compiles in seconds; 8 iterations of 32 env steps, an evaluation and a checkpoint every 4
    "env_name": "fast",
    "num_envs": 4,
    "unroll_length": 8,
    "total_env_steps": 256,
    "num_minibatches": 2,
    "num_epochs": 2,
    "chunk_iterations": 2,
    "eval_every": 4,
    "checkpoint_every": 4,
    "eval_episodes": 2,
    "episode_length": 20,
    "policy_hidden": "[8]",
    "value_hidden": "[8]",
}
TRPL = [("kl", "diag"), ("kl", "full"), ("kl", "sqrt"), ("w2", "diag"), ("w2", "sqrt")]
TRPL += [("frob", "diag"), ("frob", "full"), ("frob", "sqrt")]


def _sets(**kw) -> list:
    return [a for k, v in {**TINY, **kw}.items() for a in ("--set", f"{k}={v}")]


def cases() -> dict:
    """``{name: [argv of tr-jax, ...]}``: each case's commands, run in order in one fresh directory."""
    out = {"ppo": [["train", *_sets(algorithm="ppo"), "--run-dir", "run"]]}
    for proj, cov in TRPL:
        out[f"trpl-{proj}-{cov}"] = [
            ["train", *_sets(algorithm="trpl", projection=proj, cov_type=cov), "--run-dir", "run"]
        ]
    out["trpo"] = [["train", *_sets(algorithm="trpo"), "--run-dir", "run"]]
    out["sweep"] = [
        ["train", *_sets(algorithm="trpl"), "--sweep", "eps_mean=0.01,0.05", "--seeds", "2", "--run-dir", "sweep"]
    ]
    out["resume"] = [  # the first command is stopped by SIGTERM once its first checkpoint exists
        ["train", *_sets(algorithm="trpl", total_env_steps=512), "--run-dir", "run"],
        ["train", "--resume", "run"],
    ]
    out["tune"] = [
        ["tune", *_sets(algorithm="trpl"), "--param", "eps_mean=log:0.01:0.1", "--trials", "2", "--batch", "2"]
        + ["--dir", "tune"]
    ]
    return out


def _run(argv: list, cwd: str, stop_after_checkpoint: bool) -> None:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    extra = ["--no-compile-cache"] if argv[0] == "train" else []  # tune has no such flag
    cmd = [sys.executable, "-m", "tr_jax", *argv, "--progress", "none", *extra]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if stop_after_checkpoint:
        while proc.poll() is None and not glob.glob(os.path.join(cwd, "run", "checkpoints", "*")):
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate()
    if proc.returncode not in (0, 75) or (proc.returncode == 75 and not stop_after_checkpoint):
        raise RuntimeError(f"tr-jax {' '.join(argv)} exited {proc.returncode}:\n{out[-3000:]}")


def _rows(path: str, metrics: bool) -> list:
    """The rows of a ``.jsonl`` file as sorted canonical JSON; a ``metrics.jsonl`` row under its current metric
    names (:func:`tr_jax.rundir.current_metric_names`), so that renaming a metric changes no fingerprint."""
    from tr_jax.rundir import current_metric_names  # noqa: PLC0415 (the parent imports tr_jax only to fingerprint)

    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return sorted(json.dumps(current_metric_names(r) if metrics else r, sort_keys=True) for r in rows)


def fingerprint(directory: str) -> str:
    """SHA-256 over the metrics/eval rows and the final parameters of every run under ``directory``."""
    from tr_jax.run import load_checkpoint  # noqa: PLC0415 (jax only in the parent's fingerprint step)

    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(directory, "**", "*.jsonl"), recursive=True)):
        name = os.path.basename(path)
        if name in ("metrics.jsonl", "eval.jsonl"):
            h.update(os.path.relpath(path, directory).encode())
            for row in _rows(path, metrics=name == "metrics.jsonl"):
                h.update(row.encode())
    for ckpts in sorted(glob.glob(os.path.join(directory, "**", "checkpoints"), recursive=True)):
        import jax
        import numpy as np

        _, state, meta = load_checkpoint(os.path.dirname(ckpts))
        h.update(f"{os.path.relpath(ckpts, directory)}:{meta['iteration']}".encode())
        for leaf in jax.tree.leaves(state):
            a = np.asarray(
                jax.random.key_data(leaf) if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf
            )
            h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()


def measure(names=None) -> dict:
    results = {}
    for name, commands in cases().items():
        if names and name not in names:
            continue
        with tempfile.TemporaryDirectory(prefix=f"behaviour-{name}-") as d:
            t = time.perf_counter()
            for i, argv in enumerate(commands):
                _run(argv, d, stop_after_checkpoint=name == "resume" and i == 0)
            results[name] = fingerprint(d)
            print(f"{name:18s} {results[name][:16]}  ({time.perf_counter() - t:.0f} s)", flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="behaviour_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("record", "check"))
    p.add_argument("file", help="the fingerprints (JSON): written by record, read by check")
    p.add_argument("--cases", nargs="+", default=None, help=f"only these cases (of: {' '.join(cases())})")
    args = p.parse_args(argv)
    if args.mode == "record":
        got = measure(args.cases)
        with open(args.file, "w") as f:
            json.dump(got, f, indent=1, sort_keys=True)
        print(f"recorded {len(got)} cases in {args.file}")
        return 0
    with open(args.file) as f:
        want = json.load(f)
    got = measure(args.cases or list(want))
    differ = [n for n in got if got[n] != want.get(n)]
    print(
        f"{len(got) - len(differ)}/{len(got)} cases bit-identical"
        + (f"; differ: {', '.join(differ)}" if differ else "")
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
