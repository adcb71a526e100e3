"""Training throughput: env steps per second, side by side, for one env and batch.

Measures, on the same env, ``num_envs``, unroll length and network sizes:

  env_raw     pure Brax stepping, ``jax.vmap(env.step)`` with random actions
              (no resets, no bookkeeping): the ceiling on this hardware
  env_wrapped the same through tr_jax's VecEnv (auto-reset, truncation,
              episode bookkeeping, pool refresh per iteration)
  ppo         tr_jax PPO (make_train: the whole run as one compiled program)
  ppo_chunked the same config through the host loop ``tr_jax.run.run`` (chunks of
              ``chunk_iterations``, metrics.jsonl, progress between chunks; its
              evaluation and checkpoint time is reported but not counted, as the
              one-program run does neither). Needs several chunks: e.g.
              ``--iterations 40 --only ppo,ppo_chunked``
  trpl_kl_diag, trpl_kl_full, trpl_w2, trpl_frob   TRPL with each projection
  trpo        tr_jax TRPO
  brax_ppo    brax.training.agents.ppo, when the installed JAX runs it

Each is compiled once (compile time reported separately) and run once to
warm up; then ``--repeats`` rounds each time every variant once, interleaved
so load drift on a shared machine hits all alike (best per variant kept). Prints steps/s and ratios
and writes JSON.

    python experiments/bench_training.py                       # CPU-sized defaults
    python experiments/bench_training.py --env halfcheetah --num-envs 2048 --iterations 20
    python experiments/bench_training.py --only env_raw,ppo,trpl_kl_diag
    python experiments/bench_training.py --devices 1,2,4   # data-parallel scaling (bench_devices.py)
    python experiments/bench_training.py --startup         # time to first step, cold/warm cache (bench_startup.py)
    # envs side by side (MuJoCo Playground next to Brax; needs the playground extra)
    python experiments/bench_training.py --only env_raw,env_wrapped,ppo \\
        --env playground:CheetahRun,halfcheetah/positional,halfcheetah/generalized
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import jax

from tr_jax.config import TrainConfig
from tr_jax.envs.sources import split_env_name
from tr_jax.envs.wrappers import make_vec_env
from tr_jax.train import make_train

VARIANTS = {
    "ppo": dict(algorithm="ppo"),
    "trpl_kl_diag": dict(algorithm="trpl", projection="kl", cov_type="diag"),
    "trpl_kl_full": dict(algorithm="trpl", projection="kl", cov_type="full"),
    "trpl_w2": dict(algorithm="trpl", projection="w2", cov_type="diag"),
    "trpl_frob": dict(algorithm="trpl", projection="frob", cov_type="diag"),
    "trpo": dict(algorithm="trpo"),
}
ALL = ("env_raw", "env_wrapped", *VARIANTS, "ppo_chunked", "brax_ppo")


def _compile(fn, arg):
    """(compile_s, thunk) where thunk() runs jit(fn)(arg) to completion once (thunks may
    instead return the seconds to count, see bench_chunked)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(arg).compile()
    compile_s = time.perf_counter() - t0
    thunk = lambda: jax.block_until_ready(compiled(arg))
    thunk()  # warm-up
    return compile_s, thunk


def bench_env(config: TrainConfig, wrapped: bool):
    """(compile_s, thunk, env steps per thunk) for pure env stepping."""
    env = make_vec_env(config.env_name, config.backend, config.num_envs, config.episode_length, config.action_repeat)
    E, T, I, k = config.num_envs, config.unroll_length, config.num_iterations, env.action_dim

    if wrapped:

        def run(key):
            def iteration(state, key):
                k_pool, k_steps = jax.random.split(key)
                state = env.refresh(state, k_pool)
                state, info = jax.lax.scan(env.random_step, state, jax.random.split(k_steps, T))
                # observations depend on the physics (inverted_pendulum's reward is constant
                # and would let XLA drop the whole simulation)
                return state, info.obs.sum() + info.reward.sum() + info.done.sum()

            return jax.lax.scan(iteration, env.placeholder(), jax.random.split(key, I))[1]
    else:
        brax_env = env.env
        v_step = jax.vmap(brax_env.step)

        def run(key):
            k0, k1 = jax.random.split(key)
            state = jax.vmap(brax_env.reset)(jax.random.split(k0, E))

            def step(state, key):
                a = jax.random.uniform(key, (E, k), minval=-1.0, maxval=1.0)
                state = v_step(state, a)
                return state, state.obs.sum() + state.reward.sum()

            def iteration(state, key):
                return jax.lax.scan(step, state, jax.random.split(key, T))

            return jax.lax.scan(iteration, state, jax.random.split(k1, I))[1]

    compile_s, thunk = _compile(run, jax.random.key(0))
    return compile_s, thunk, I * T * E * config.action_repeat


def bench_train(config: TrainConfig):
    """(compile_s, thunk, env steps per thunk) for a whole training run."""
    compile_s, thunk = _compile(make_train(config), jax.random.key(0))
    return compile_s, thunk, config.num_iterations * config.batch_size * config.action_repeat


def bench_chunked(config: TrainConfig):
    """(compile_s, thunk, env steps per thunk) for the host loop; thunk() returns the seconds
    of its loop minus evaluation/checkpoint time (compilation is excluded by run itself)."""
    import tempfile

    from tr_jax.run import run

    config = config.replace(eval_every=0, checkpoint_every=0)  # evaluation/checkpoint only at the end
    side = []

    def thunk():
        with tempfile.TemporaryDirectory() as d:
            r = run(config, run_dir=os.path.join(d, "run"), progress="none")
        side.append(r.eval_checkpoint_seconds)
        thunk.compile_seconds = r.compile_seconds
        return r.loop_seconds - r.eval_checkpoint_seconds

    thunk()  # warm-up (and its compile time)
    return thunk.compile_seconds, thunk, config.num_iterations * config.batch_size * config.action_repeat


def bench_brax_ppo(config: TrainConfig):
    """Brax's own PPO at the same env / num_envs / batch / network; None + reason if it can't run."""
    try:
        from brax import envs
        from brax.training.agents.ppo import networks as ppo_networks
        from brax.training.agents.ppo import train as ppo
    except Exception as e:  # noqa: BLE001
        return None, f"brax.training.agents.ppo not importable: {type(e).__name__}: {e}"
    if not hasattr(jax, "device_put_replicated"):
        return None, (
            f"brax.training.agents.ppo.train calls jax.device_put_replicated, which jax "
            f"{jax.__version__} no longer has (brax's PPO needs jax <= 0.9.2)"
        )
    if config.num_envs % config.num_minibatches:
        return None, "num_envs must be divisible by num_minibatches for brax's batch_size mapping"
    env = envs.get_environment(config.env_name, backend=config.backend)
    steps_per_iter = config.batch_size * config.action_repeat
    times = []

    def progress(step, metrics):
        times.append((step, time.perf_counter()))

    try:
        make_networks = lambda *a, **kw: ppo_networks.make_ppo_networks(
            *a, policy_hidden_layer_sizes=config.policy_hidden, value_hidden_layer_sizes=config.value_hidden, **kw
        )
        t0 = time.perf_counter()
        ppo.train(
            environment=env,
            num_timesteps=config.num_iterations * steps_per_iter,
            episode_length=config.episode_length,
            action_repeat=config.action_repeat,
            num_envs=config.num_envs,
            batch_size=config.num_envs // config.num_minibatches,
            unroll_length=config.unroll_length,
            num_minibatches=config.num_minibatches,
            num_updates_per_batch=config.num_epochs,
            learning_rate=config.policy_lr,
            discounting=config.gamma,
            normalize_observations=config.normalize_obs,
            num_evals=2,
            network_factory=make_networks,
            progress_fn=progress,
            seed=0,
        )
        total = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001
        return None, f"brax PPO failed with jax {jax.__version__}: {type(e).__name__}: {e}"
    if len(times) >= 2:
        (s0, t0_), (s1, t1_) = times[0], times[-1]
        sps = (s1 - s0) / max(t1_ - t0_, 1e-9)
    else:
        sps = config.num_iterations * steps_per_iter / total
    return dict(steps_per_second=sps, compile_seconds=float("nan"), run_seconds=total), None


def _env_specs(text: str, backend: str) -> list:
    """``[(label, env_name, backend)]`` from ``--env``: comma-separated ``name`` or ``name/backend``."""
    specs = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, _, b = item.partition("/")
        specs.append((item, name, b or backend))
    return specs


def _build(base: TrainConfig, only: list, results: dict, notes: dict) -> dict:
    """Compiles every variant in ``only`` for ``base``'s env: ``{name: (compile_s, thunk, steps)}``
    (``brax_ppo`` goes straight to ``results``; failures to ``notes``)."""
    runners = {}
    for name in only:
        try:
            if name == "env_raw":
                runners[name] = bench_env(base, wrapped=False)
            elif name == "env_wrapped":
                runners[name] = bench_env(base, wrapped=True)
            elif name == "brax_ppo":
                res, why = (
                    bench_brax_ppo(base)
                    if split_env_name(base.env_name)[0] == "brax"
                    else (None, "Brax's PPO trains brax.envs envs only")
                )
                if res is None:
                    notes[name] = why
                    print(f"{name:>14}: not run: {why}", flush=True)
                else:
                    results[name] = res
                continue
            elif name == "ppo_chunked":
                runners[name] = bench_chunked(base.replace(**VARIANTS["ppo"]))
            else:
                runners[name] = bench_train(base.replace(**VARIANTS[name]))
            print(f"{name:>14}: compiled in {runners[name][0]:.1f} s", flush=True)
        except Exception as e:  # noqa: BLE001
            notes[name] = f"{type(e).__name__}: {e}"
            print(f"{name:>14}: failed: {notes[name]}", flush=True)
            traceback.print_exc()
    return runners


def _ratios_and_targets(results: dict, notes: dict):
    """Adds ``env_ceiling`` to ``results``; returns ``(ratios, targets)`` (see the module docstring)."""

    def ratio(a, b):
        if a in results and b in results:
            return results[a]["steps_per_second"] / results[b]["steps_per_second"]
        return None

    # the ceiling: the faster of the two pure-stepping measurements (raw stepping
    # without resets can be slower: e.g. a fallen pendulum keeps colliding)
    envs_measured = [results[n] for n in ("env_raw", "env_wrapped") if n in results]
    if envs_measured:
        results["env_ceiling"] = dict(max(envs_measured, key=lambda r: r["steps_per_second"]))
    ratios = {}
    for name in results:
        if name == "env_ceiling":
            continue
        for ref in ("env_ceiling",) if name.startswith("env_") else ("env_ceiling", "ppo"):
            r = ratio(name, ref)
            if r is not None and name != ref:
                ratios[f"{name}/{ref}"] = r
    targets = {
        "ppo/env_ceiling >= 0.5": (ratio("ppo", "env_ceiling"), 0.5),
        "trpl_kl_diag/ppo >= 0.9": (ratio("trpl_kl_diag", "ppo"), 0.9),
        "trpl_kl_full/ppo >= 0.8": (ratio("trpl_kl_full", "ppo"), 0.8),
        "ppo/brax_ppo >= 1.0": (ratio("ppo", "brax_ppo"), 1.0),
        "ppo_chunked/ppo >= 0.95": (ratio("ppo_chunked", "ppo"), 0.95),
    }
    target_out = {}
    for k, (v, need) in targets.items():
        status = "not measured" if v is None else ("ok" if v >= need else "MISSED")
        target_out[k] = {"value": v, "status": status}
    return ratios, target_out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--devices" or a.startswith("--devices=") for a in argv):
        # data-parallel scaling (experiments/bench_devices.py, its own flags)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_devices

        return bench_devices.main(argv)
    if "--startup" in argv:  # time to first step, cold and warm compilation cache (experiments/bench_startup.py)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_startup

        return bench_startup.main(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--env",
        default="inverted_pendulum",
        help="env name, or several comma-separated to compare envs in one process; each NAME or "
        "NAME/BACKEND, e.g. playground:CheetahRun,halfcheetah/positional,halfcheetah/generalized",
    )
    p.add_argument("--backend", default="positional", help="Brax backend of envs named without one")
    p.add_argument("--num-envs", type=int, default=128)
    p.add_argument("--unroll-length", type=int, default=32)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--num-epochs", type=int, default=4)
    p.add_argument("--num-minibatches", type=int, default=8)
    p.add_argument("--hidden", default="64,64", help="policy and value hidden sizes")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds (best kept)")
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {ALL}")
    p.add_argument("--json", default="bench_training.json")
    args = p.parse_args(argv)
    hidden = tuple(int(x) for x in args.hidden.split(","))
    only = [x for x in args.only.split(",") if x]
    unknown = set(only) - set(ALL)
    if unknown:
        raise SystemExit(f"unknown --only entries {sorted(unknown)}; choose from {ALL}")
    specs = _env_specs(args.env, args.backend)

    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}); "
        f"num_envs={args.num_envs}, unroll={args.unroll_length}, iterations={args.iterations}, "
        f"epochs={args.num_epochs}, minibatches={args.num_minibatches}, hidden={hidden}",
        flush=True,
    )
    # compile everything first (every env), then time in rounds (each round runs
    # every env's every variant once; best per variant kept) so load drift hits all alike
    runners, results, notes = {}, {}, {}
    for label, env_name, backend in specs:
        print(f"{label}:", flush=True)
        base = TrainConfig(
            env_name=env_name,
            backend=backend,
            num_envs=args.num_envs,
            unroll_length=args.unroll_length,
            num_epochs=args.num_epochs,
            num_minibatches=args.num_minibatches,
            policy_hidden=hidden,
            value_hidden=hidden,
            total_env_steps=args.iterations * args.num_envs * args.unroll_length,
        )
        results[label], notes[label] = {}, {}
        runners[label] = _build(base, only, results[label], notes[label])
    best = {(label, name): float("inf") for label in runners for name in runners[label]}
    for _ in range(args.repeats):
        for label in runners:
            for name, (_, thunk, _) in runners[label].items():
                t0 = time.perf_counter()
                counted = thunk()
                elapsed = counted if isinstance(counted, float) else time.perf_counter() - t0
                best[label, name] = min(best[label, name], elapsed)
    out_envs = {}
    for label in runners:
        res = results[label]
        for name, (compile_s, _, steps) in runners[label].items():
            res[name] = dict(
                steps_per_second=steps / best[label, name], compile_seconds=compile_s, run_seconds=best[label, name]
            )
        print(f"\n{label}:")
        for name, r in res.items():
            print(
                f"{name:>14}: {r['steps_per_second']:>12,.0f} steps/s  (compile {r['compile_seconds']:.1f} s, "
                f"run {r['run_seconds']:.3f} s)",
                flush=True,
            )
        ratios, targets = _ratios_and_targets(res, notes[label])
        print("ratios:")
        for k, v in ratios.items():
            print(f"  {k:>26}: {v:.3f}")
        print("targets:")
        for k, t in targets.items():
            v = t["value"]
            print(
                f"  {k:>26}: {'-' if v is None else f'{v:.3f}'}  {t['status']}"
                + (
                    f"  ({notes[label]['brax_ppo']})"
                    if v is None and "brax" in k and "brax_ppo" in notes[label]
                    else ""
                )
            )
        out_envs[label] = {"results": res, "ratios": ratios, "targets": targets, "notes": notes[label]}
    if len(specs) > 1:  # the envs side by side, steps/s
        names = [n for n in (*only, "env_ceiling") if any(n in results[label] for label in results)]
        width = max(len(label) for label in results) + 2
        print("\nsteps/s".ljust(width + 1) + "".join(f"{n:>14}" for n in names))
        for label in results:
            print(
                label.ljust(width)
                + "".join(
                    f"{results[label][n]['steps_per_second']:>14,.0f}" if n in results[label] else f"{'-':>14}"
                    for n in names
                )
            )
    out = {"jax": jax.__version__, "device": str(jax.devices()[0]), "args": vars(args), "envs": out_envs}
    if len(specs) == 1:  # the single-env layout, as before
        out.update(out_envs[specs[0][0]])
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    sys.exit(main())
