"""Data-parallel scaling: env steps/s of PPO on 1, 2, 4 devices, and a paper model of communication.

Run as ``python experiments/bench_training.py --devices 1,2,4`` (or this file
directly). Without that many devices it re-runs itself in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (forced CPU devices).
Every device count is measured in ONE process, interleaved over ``--repeats``
rounds, as a ratio to one device. On a CPU with fewer cores than forced
devices this measures the overhead of splitting the work (collectives,
gathers, smaller per-device batches), not a speedup.

The paper model (``communication_model``): per gradient step one all-reduce of
all ``P`` parameters (float32) and, once per iteration, an all-gather of the
batch. With a ring all-reduce each device sends and receives
``2 (D-1)/D * 4P`` bytes in ``2 (D-1)`` latency-bound hops; the step's compute
is ~``6 P`` FLOPs per row (forward + backward of dense layers) on
``rows / D`` rows per device. It prints, for the assumed link bandwidth,
latency and sustained FLOP rate (flags; defaults are assumptions for one
NVLink GPU node, not measurements), the per-device minibatch size above which
communication is under 10% of a gradient step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def communication_model(
    num_params: int,
    devices: int,
    rows_per_device: int,
    link_bytes_per_s: float,
    hop_latency_s: float,
    flops_per_s: float,
) -> dict:
    """Seconds of one gradient step's all-reduce and compute, on paper (see the module docstring)."""
    if devices < 2:
        return {"comm_s": 0.0, "compute_s": 6.0 * num_params * rows_per_device / flops_per_s, "fraction": 0.0}
    steps = 2 * (devices - 1)
    comm = steps * hop_latency_s + (steps / devices) * 4 * num_params / link_bytes_per_s
    compute = 6.0 * num_params * rows_per_device / flops_per_s
    return {"comm_s": comm, "compute_s": compute, "fraction": comm / (comm + compute)}


def rows_for_fraction(num_params: int, devices: int, target: float, **link) -> int:
    """Smallest power-of-two rows per device with communication <= ``target`` of a step."""
    rows = 1
    while communication_model(num_params, devices, rows, **link)["fraction"] > target and rows < 2**30:
        rows *= 2
    return rows


def _measure(args) -> dict:
    import jax

    from tr_jax.config import TrainConfig
    from tr_jax.train import make_train, make_trainer

    hidden = tuple(int(x) for x in args.hidden.split(","))
    base = TrainConfig(
        env_name=args.env,
        backend=args.backend,
        num_envs=args.num_envs,
        unroll_length=args.unroll_length,
        num_epochs=args.num_epochs,
        num_minibatches=args.num_minibatches,
        policy_hidden=hidden,
        value_hidden=hidden,
        total_env_steps=args.iterations * args.num_envs * args.unroll_length,
    )
    counts = [int(x) for x in args.devices.split(",")]
    runners = {}
    for d in counts:
        cfg = base.replace(num_devices=d)
        t0 = time.perf_counter()
        compiled = jax.jit(make_train(cfg)).lower(jax.random.key(0)).compile()
        compile_s = time.perf_counter() - t0
        jax.block_until_ready(compiled(jax.random.key(0)))  # warm-up
        runners[d] = (compile_s, compiled)
        print(f"{d} device(s): compiled in {compile_s:.1f} s", flush=True)
    best = {d: float("inf") for d in counts}
    for _ in range(args.repeats):
        for d, (_, compiled) in runners.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(jax.random.key(0)))
            best[d] = min(best[d], time.perf_counter() - t0)
    steps = base.num_iterations * base.batch_size
    tr = make_trainer(base.replace(num_devices=1))
    state = jax.eval_shape(tr.init, jax.random.key(0))
    num_params = sum(x.size for x in jax.tree.leaves((state.algo.policy_params, state.algo.value_params)))
    return {
        "jax": jax.__version__,
        "platform": jax.devices()[0].platform,
        "devices_visible": jax.device_count(),
        "cpu_cores": os.cpu_count(),
        "config": {
            k: getattr(base, k)
            for k in ("env_name", "backend", "num_envs", "unroll_length", "num_epochs", "num_minibatches")
        },
        "num_params": int(num_params),
        "minibatch_rows": base.batch_size // base.num_minibatches,
        "results": {
            str(d): {
                "steps_per_second": steps / best[d],
                "compile_seconds": runners[d][0],
                "ratio_to_1": best[counts[0]] / best[d],
            }
            for d in counts
        },
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default="1,2,4", help="device counts to compare (the first is the baseline)")
    p.add_argument("--env", default="inverted_pendulum")
    p.add_argument("--backend", default="positional")
    p.add_argument("--num-envs", type=int, default=128)
    p.add_argument("--unroll-length", type=int, default=32)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--num-epochs", type=int, default=4)
    p.add_argument("--num-minibatches", type=int, default=8)
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--link-gbytes", type=float, default=300.0, help="assumed all-reduce bandwidth, GB/s per device")
    p.add_argument("--hop-latency-us", type=float, default=5.0, help="assumed latency per ring hop, microseconds")
    p.add_argument("--tflops", type=float, default=20.0, help="assumed sustained TFLOP/s of the small dense layers")
    p.add_argument("--json", default="bench_devices.json")
    args = p.parse_args(argv)

    need = max(int(x) for x in args.devices.split(","))
    if os.environ.get("_TR_JAX_BENCH_CHILD") != "1":
        import jax  # noqa: F401  (only to count devices; a child gets the forced ones)

        if jax.device_count() < need:
            env = dict(
                os.environ,
                _TR_JAX_BENCH_CHILD="1",
                XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={need}"),
            )
            print(f"{jax.device_count()} device(s) visible: re-running with {need} forced CPU devices", flush=True)
            return subprocess.call(
                [sys.executable, os.path.abspath(__file__), *(argv if argv is not None else sys.argv[1:])], env=env
            )
    out = _measure(args)
    link = dict(
        link_bytes_per_s=args.link_gbytes * 1e9,
        hop_latency_s=args.hop_latency_us * 1e-6,
        flops_per_s=args.tflops * 1e12,
    )
    print(
        f"\n{out['platform']}, {out['devices_visible']} device(s) visible, {out['cpu_cores']} CPU cores; "
        f"{out['config']}; {out['num_params']} parameters, minibatch {out['minibatch_rows']} rows"
    )
    print(f"{'devices':>8} {'steps/s':>12} {'vs 1':>6} {'compile s':>10}")
    for d, r in out["results"].items():
        print(f"{d:>8} {r['steps_per_second']:>12,.0f} {r['ratio_to_1']:>6.2f} {r['compile_seconds']:>10.1f}")
    model = {}
    print(
        f"\npaper model (assumed {args.link_gbytes:g} GB/s, {args.hop_latency_us:g} us/hop, {args.tflops:g} TFLOP/s): "
        "rows per device per gradient step for communication <= 10% of the step"
    )
    for d in (2, 4, 8, 64):
        for params in (out["num_params"], 1_000_000):
            rows = rows_for_fraction(params, d, 0.10, **link)
            model[f"{d}x{params}"] = rows
            print(
                f"  {d:>3} devices, {params:>9,} parameters: >= {rows:,} rows "
                f"(this run's minibatch gives {out['minibatch_rows'] // max(1, d):,} per device)"
            )
    out["paper_model"] = {"assumptions": vars(args), "rows_per_device_for_10_percent": model}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwritten {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
