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
allow 1e-5), not bit for bit. jax2onnx imports every plugin it ships and logs each one that fails to import,
with its traceback (jax2onnx 0.13 with jax 0.10: its dm_pix plugins read ``jax.interpreters.batching.not_mapped``,
which jax 0.10 removed); those plugins convert operations a policy does not use, so their import messages are
held back (:class:`_SkippedPlugins`) and named only if the conversion fails.

``out`` is checked before the run is loaded: an existing directory, a path below a regular file or in a
directory that cannot be written is a one-line error, and nothing is created.
"""

from __future__ import annotations

import contextlib
import logging
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


class _SkippedPlugins(logging.Filter):
    """Drops jax2onnx's "Skipping [pkgutil] import of <plugin> due to error" records (from the logger of its
    plugin system only) and keeps the plugin names in ``skipped``; every other record passes."""

    LOGGER = "jax2onnx.plugins.plugin_system"

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        plugin = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if (
            str(record.msg).startswith(("Skipping import of ", "Skipping pkgutil import of "))
            and isinstance(plugin, str)
            and plugin.startswith("jax2onnx.plugins.")
        ):
            self.skipped.append(plugin)
            return False
        return True


@contextlib.contextmanager
def _quiet_plugin_imports():
    """:class:`_SkippedPlugins` on jax2onnx's plugin-system logger while the block runs; yields it."""
    logger, skipped = logging.getLogger(_SkippedPlugins.LOGGER), _SkippedPlugins()
    logger.addFilter(skipped)
    try:
        yield skipped
    finally:
        logger.removeFilter(skipped)


def check_out(out: str) -> None:
    """``ValueError`` (one line) unless file ``out`` can be written: not a directory, and its nearest existing
    parent a directory this process may write in (a read-only file system included). Creates nothing."""
    path = os.path.abspath(out)
    if os.path.isdir(path):
        raise ValueError(f"--out {out} is a directory")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"--out {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK):
        why = "read-only file system" if os.statvfs(parent).f_flag & os.ST_RDONLY else "no write permission"
        raise ValueError(f"--out {out}: cannot write in {parent} ({why})")


def export_policy(
    run_dir: str, out: str, platforms: Sequence[str] = ("cpu",), seed: int = 0, checkpoint: int | None = None
) -> Exported:
    """Serialises seed ``seed``'s deterministic policy of ``run_dir``'s checkpoint (default the newest) to
    ``out`` (see the module docstring). Bad platforms and a bad ``out`` (:func:`check_out`) fail before the run
    is loaded; a write that fails later (full disk) is an ``OSError`` naming ``out``, and no part of it stays."""
    from tr_jax.policy.loading import load_policy

    platforms = tuple(platforms)
    bad = [p for p in platforms if p not in PLATFORMS]
    if not platforms or bad:
        raise ValueError(f"--platforms {','.join(platforms)}: expected some of {', '.join(PLATFORMS)}")
    check_out(out)
    onnx = out.lower().endswith(".onnx")
    with _quiet_plugin_imports() as plugins:  # (jax2onnx imports its plugins on import and on conversion)
        if onnx:
            try:
                import jax2onnx
            except ImportError:
                raise ValueError("the ONNX export needs jax2onnx: pip install 'tr_jax[onnx]'") from None
        policy = load_policy(run_dir, seed, checkpoint)
        if onnx:
            try:
                model = jax2onnx.to_onnx(
                    lambda obs: policy.act(obs),
                    [("b", policy.obs_dim)],
                    model_name="tr_jax_policy",
                    input_names=["obs"],
                    output_names=["action"],
                )
            except Exception as e:  # (named with the plugins that did not import, which are not shown otherwise)
                if not plugins.skipped:
                    raise
                raise RuntimeError(
                    f"the ONNX conversion failed ({type(e).__name__}: {(str(e).splitlines() or [''])[0]}); "
                    f"jax2onnx could not import its plugins {', '.join(plugins.skipped)}"
                ) from e
            data, platforms = model.SerializeToString(), ("onnx",)
        else:
            (b,) = jax.export.symbolic_shape("b")
            spec = jax.ShapeDtypeStruct((b, policy.obs_dim), jnp.float32)
            data = jax.export.export(jax.jit(lambda obs: policy.act(obs)), platforms=platforms)(spec).serialize()
    partial = f"{out}.tmp-{os.getpid()}"  # (renamed into place when complete: a failed write leaves no part)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, out)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise OSError(e.errno, f"cannot write {out}: {e.strerror}") from None
    return Exported(out, len(data), platforms, policy.obs_dim, policy.action_dim, policy.iteration)


__all__ = ["PLATFORMS", "Exported", "check_out", "export_policy"]
