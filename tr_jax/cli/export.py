"""``tr-jax export``: a trained policy as a file that needs only JAX (jax.export), or an ONNX model."""

from __future__ import annotations

import argparse

from tr_jax.cli._common import add_checkpoint, add_run_dir_argument, add_seed


def parser_options() -> dict:
    """The keyword arguments of the subparser (help, description)."""
    return dict(
        help="a trained policy as a file that needs only JAX (jax.export)",
        description=(
            "Serialises the deterministic policy (mean action clipped to [-1, 1], observation normalisation "
            "included) of a checkpoint of RUN_DIR with jax.export, for any batch size; load it with "
            "jax.export.deserialize(open(FILE, 'rb').read()).call(obs)."
        ),
    )


def add_arguments(x: argparse.ArgumentParser) -> None:
    """The options of ``tr-jax export`` on ``x``."""
    add_run_dir_argument(x)
    x.add_argument(
        "--out",
        required=True,
        metavar="FILE.jaxexport",
        help="the file to write; FILE.onnx: an ONNX model instead (pip install 'tr_jax[onnx]')",
    )
    x.add_argument(
        "--platforms",
        default="cpu",
        metavar="P,...",
        help="comma-separated platforms it runs on: cpu, cuda, rocm, tpu (default cpu)",
    )
    add_seed(x, 0, "which of the run's seeds (default 0)", metavar="I")
    add_checkpoint(x)


def run(args) -> int:
    """Writes the file and describes what it computes; returns 0 (errors are raised)."""
    from tr_jax.policy.export import export_policy

    done = export_policy(
        args.run_dir, args.out, [p.strip() for p in args.platforms.split(",")], args.seed, args.checkpoint
    )
    print(
        f"wrote {done.path} ({done.size:,} bytes): seed {args.seed}, checkpoint at iteration {done.iteration}, "
        f"act(obs [b, {done.obs_dim}]) -> action [b, {done.action_dim}] on {','.join(done.platforms)}"
    )
    return 0
