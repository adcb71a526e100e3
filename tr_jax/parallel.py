"""Data parallelism over a device mesh: the mesh, and the collectives the algorithms use.

The trainer runs every training iteration inside ``jax.shard_map`` over a
one-axis mesh (axis :data:`AXIS`, ``"data"``) of ``D`` devices (every device
JAX sees by default, across hosts after ``jax.distributed.initialize()``; one
on a plain CPU). Each device steps ``num_envs / D`` of the environments;
parameters, optimiser states, statistics and keys are replicated. What crosses
devices, explicitly:

* the rollout batch, gathered once per iteration (``all_gather``) so that
  every device draws the same minibatch permutation over the *global* batch
  and then computes on its own ``1/D`` of each minibatch;
* one ``pmean`` per gradient step of all gradients raveled into one vector
  (:func:`mean_grads`), so the compiled step has a single all-reduce for all
  parameters, not one per leaf;
* scalar statistics (advantage normalisation, observation/reward statistics,
  reported metrics) with ``psum``/``pmean``/``pmax``.

So a D-device run computes what one device computes on the same total batch
(up to floating-point summation order): random numbers are drawn per global
env or row index, never per device. Every helper takes ``axis_name``; with
None (an algorithm called outside the trainer) it is the single-device
operation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

AXIS = "data"


def device_count(num_devices: int) -> int:
    """Devices a config's ``num_devices`` means: 0 -> all of ``jax.devices()``; else ``num_devices``
    (``ValueError`` if more than there are)."""
    available = jax.device_count()
    if num_devices < 0:
        raise ValueError(f"num_devices must be >= 0 (0: every device), got {num_devices}")
    if num_devices > available:
        raise ValueError(f"num_devices={num_devices} but JAX sees only {available} device(s): {jax.devices()}")
    return num_devices or available


def make_mesh(num_devices: int) -> jax.sharding.Mesh:
    """A one-axis (:data:`AXIS`) mesh over the first ``device_count(num_devices)`` devices of ``jax.devices()``."""
    n = device_count(num_devices)
    return jax.make_mesh((n,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:n])


def axis_size(axis_name: str | None) -> int:
    """The number of devices along ``axis_name`` (1 outside ``shard_map``: ``axis_name`` None)."""
    return 1 if axis_name is None else jax.lax.axis_size(axis_name)


def axis_index(axis_name: str | None) -> jax.Array:
    """This device's index along ``axis_name`` (0 when ``axis_name`` is None)."""
    return jnp.asarray(0, jnp.int32) if axis_name is None else jax.lax.axis_index(axis_name)


def psum(x: Any, axis_name: str | None) -> Any:
    """``jax.lax.psum`` over ``axis_name``; ``x`` itself when ``axis_name`` is None."""
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def pmean(x: Any, axis_name: str | None) -> Any:
    """``jax.lax.pmean`` over ``axis_name``; ``x`` itself when ``axis_name`` is None."""
    return x if axis_name is None else jax.lax.pmean(x, axis_name)


def pmax(x: Any, axis_name: str | None) -> Any:
    """``jax.lax.pmax`` over ``axis_name``; ``x`` itself when ``axis_name`` is None."""
    return x if axis_name is None else jax.lax.pmax(x, axis_name)


def mean(x: jax.Array, axis_name: str | None) -> jax.Array:
    """Mean of every entry of ``x`` over all devices (equal-sized shards)."""
    return pmean(jnp.mean(x), axis_name)


def max(x: jax.Array, axis_name: str | None) -> jax.Array:  # noqa: A001 (the collective's name)
    """Max of every entry of ``x`` over all devices."""
    return pmax(jnp.max(x), axis_name)


def mean_grads(grads: Any, axis_name: str | None) -> Any:
    """The mean of a gradient pytree over devices as ONE all-reduce (leaves raveled into one vector)."""
    if axis_name is None:
        return grads
    flat, unravel = ravel_pytree(grads)
    return unravel(jax.lax.pmean(flat, axis_name))


def gather_rows(tree: Any, axis_name: str | None) -> Any:
    """Concatenates every device's leaves ``[n, ...]`` along rows, in device order: ``[D * n, ...]``."""
    if axis_name is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.all_gather(x, axis_name, tiled=True), tree)


def local_rows(tree: Any, axis_name: str | None, axis: int = 0) -> Any:
    """This device's contiguous ``1/D`` block of every leaf along ``axis`` (its length must divide by D)."""
    if axis_name is None:
        return tree
    d, i = axis_size(axis_name), axis_index(axis_name)

    def take(x: jax.Array) -> jax.Array:
        n = x.shape[axis]
        if n % d:
            raise ValueError(f"cannot split {n} rows over {d} devices")
        return jax.lax.dynamic_slice_in_dim(x, i * (n // d), n // d, axis=axis)

    return jax.tree.map(take, tree)


def to_host(tree: Any) -> Any:
    """numpy copies of the leaves; multi-host safe: a replicated array is read from a local device, a
    sharded one is gathered from every process (``multihost_utils.process_allgather``)."""
    import numpy as np

    def get(x: Any) -> np.ndarray:
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)


def reshard(tree: Any, shardings: Any) -> Any:
    """``tree``'s arrays placed as ``shardings`` says (a matching pytree); unlike ``jax.device_put``, also
    for arrays and shardings that span several processes (multi-host: every process calls it)."""
    return jax.jit(lambda t: t, out_shardings=shardings)(tree)


def max_process(value: int) -> int:
    """The largest of every process's ``value`` (multi-host: every process calls it at the same point;
    one small ``process_allgather``). One host alone: ``value``."""
    if jax.process_count() == 1:
        return int(value)
    import numpy as np
    from jax.experimental import multihost_utils

    return int(np.asarray(multihost_utils.process_allgather(np.asarray(value, np.int32))).max())


def is_primary() -> bool:
    """True in the process that writes files (process 0; always True on one host)."""
    return jax.process_index() == 0


_MESSAGE_BYTES = 1024  # of each process's error message shared by fail_together


@contextlib.contextmanager
def fail_together(what: str) -> Iterator[None]:
    """Multi-host: the block fails in every process if it fails in any (one host alone, it is the block).

    Work only process 0 does (creating the run directory, which can fail: it exists, is locked, is
    read-only) would otherwise leave the other processes waiting in the first collective for a process
    that has exited. After the block every process shares whether, and why, it failed (one small
    ``process_allgather``); a process whose block raised re-raises its error, the others raise
    ``RuntimeError("process <i> failed <what>: <its error>")``.
    """
    if jax.process_count() == 1:
        yield
        return
    import numpy as np
    from jax.experimental import multihost_utils

    error = None
    try:
        yield
    except BaseException as e:  # noqa: BLE001 (shared, then re-raised as it is)
        error = e
    text = b"" if error is None else str(error).encode()[:_MESSAGE_BYTES] or type(error).__name__.encode()
    mine = np.zeros(_MESSAGE_BYTES + 1, np.uint8)
    mine[0], mine[1 : 1 + len(text)] = error is not None, np.frombuffer(text, np.uint8)
    everyone = np.asarray(multihost_utils.process_allgather(mine))  # [processes, 1 + _MESSAGE_BYTES]
    if error is not None:
        raise error
    failed = [i for i in range(everyone.shape[0]) if everyone[i, 0]]
    if failed:
        i = failed[0]
        message = everyone[i, 1:].tobytes().rstrip(b"\0").decode(errors="replace")
        raise RuntimeError(f"process {i} failed {what}: {message}")
