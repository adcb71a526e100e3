"""A trained policy as a file that needs only JAX: ``tr-jax export`` (:func:`export_policy`).

The deterministic policy of :func:`tr_jax.load_policy` -- ``act(obs [b, obs_dim]) -> action [b, k]``, the
mean action clipped to ``[-1, 1]``, observation normalisation and parameters included -- is serialised with
:mod:`jax.export` (StableHLO) with a symbolic batch dimension ``b``, for the platforms asked for. Loading it
needs jax only (not tr_jax, flax or brax)::

    from jax import export
    act = export.deserialize(open("policy.jaxexport", "rb").read())
    action = act.call(obs)   # obs float32 [b, obs_dim], any b >= 1

An ``out`` ending in ``.onnx`` writes an ONNX model of the same function instead (through ``jax2onnx``:
``pip install 'tr_jax[onnx]'``; input ``obs`` float32 ``[b, obs_dim]``, symbolic ``b``); ``platforms`` do
not apply to it. onnxruntime's actions match :func:`tr_jax.load_policy`'s to float32 rounding (the tests
allow 1e-5), not bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


class Exported(NamedTuple):
    """What :func:`export_policy` wrote: the file, its size in bytes, platforms, sizes, checkpoint."""

    path: str
    size: int
    platforms: tuple
    obs_dim: int
    action_dim: int
    iteration: int


def export_policy(
    run_dir: str, out: str, platforms: Sequence[str] = ("cpu",), seed: int = 0, checkpoint: int | None = None
) -> Exported:
    """Serialises seed ``seed``'s deterministic policy of ``run_dir``'s checkpoint (default the newest) to
    ``out`` (see the module docstring). Bad platforms fail before the run is loaded."""
    from tr_jax.inference import load_policy

    platforms = tuple(platforms)
    bad = [p for p in platforms if p not in PLATFORMS]
    if not platforms or bad:
        raise ValueError(f"--platforms {','.join(platforms)}: expected some of {', '.join(PLATFORMS)}")
    onnx = out.lower().endswith(".onnx")
    if onnx:
        try:
            import jax2onnx
        except ImportError:
            raise ValueError("the ONNX export needs jax2onnx: pip install 'tr_jax[onnx]'") from None
    policy = load_policy(run_dir, seed, checkpoint)
    if onnx:
        model = jax2onnx.to_onnx(
            lambda obs: policy.act(obs),
            [("b", policy.obs_dim)],
            model_name="tr_jax_policy",
            input_names=["obs"],
            output_names=["action"],
        )
        data, platforms = model.SerializeToString(), ("onnx",)
    else:
        (b,) = jax.export.symbolic_shape("b")
        spec = jax.ShapeDtypeStruct((b, policy.obs_dim), jnp.float32)
        data = jax.export.export(jax.jit(lambda obs: policy.act(obs)), platforms=platforms)(spec).serialize()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(data)
    return Exported(out, len(data), platforms, policy.obs_dim, policy.action_dim, policy.iteration)
