"""Traced programs kept between runs: a rerun of a config skips JAX's tracing as well as XLA's compilation.

JAX's persistent compilation cache (:mod:`tr_jax.compile_cache`) keeps XLA's output, but every process still
traces and lowers its programs in Python first, and for a Brax env that is most of a warm start (hopper PPO:
about 5 s for the chunk and 3 s for the evaluation, against 1 s to load the compiled chunk). A
:class:`ProgramCache` keeps the lowered program itself: the first run exports it (:func:`jax.export.export`)
and writes the serialized module to disk, and every run, the first included, compiles the deserialized module,
so the XLA program is the same in every process and loads from the compilation cache.

A program is found again only for the same key, the sha256 of everything that decides what is traced:

* the source of every module of the ``tr_jax`` package, and the source file of the env's class;
* the versions of jax, jaxlib, brax, mujoco, flax, optax, numpy and mujoco_playground;
* the whole training config, the program's name and its static arguments;
* the arguments' tree structure, shapes, dtypes and shardings; the platform, device kind and device count;
* the JAX settings that change a trace (x64, the default PRNG, threefry partitioning, matmul precision).

An env object passed to ``run(env=...)`` has no such fingerprint (its constructor's arguments are unknown), so
those runs, multi-process runs and runs with the compilation cache turned off do not use this cache. Files
live in ``tr_jax_programs/`` inside the compilation cache's directory (one switch turns both off); the least
recently used are deleted beyond :data:`MAX_BYTES`.

The cache holds programs that are executed, so each file starts with the sha256 of its payload (the serialized
module), checked before the payload is deserialized: a file altered on disk (flipped bytes, even ones that still
deserialize to a program that would compute something else), truncated or foreign, or one that does not
deserialize or compile, is reported in one line naming it, removed, and the program traced again (and the file
written anew).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

import jax

from tr_jax.config import TrainConfig, config_to_dict
from tr_jax.rundir import unwritable

SUBDIR = "tr_jax_programs"
MAX_BYTES = 256 * 1024**2
"""The program directory's size limit (a hopper chunk program is about 0.3 MB)."""
FORMAT = 2  # bump when the file layout or the key's contents change
HEADER = b"tr_jax program sha256 "
"""A file is ``HEADER``, the payload's sha256 in hex, a newline, then the payload (``Exported.serialize()``)."""

_PACKAGES = ("jax", "jaxlib", "brax", "mujoco", "flax", "optax", "numpy", "playground")
_JAX_FLAGS = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable", "jax_default_matmul_precision")


@functools.cache
def code_hash() -> str:
    """sha256 of the source of every module of the ``tr_jax`` package (paths and contents)."""
    root = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(base, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _versions() -> dict:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def env_fingerprint(env: Any) -> str:
    """The env object's class and the sha256 of the file that defines it (``"?"`` where it has none)."""
    cls = type(env)
    try:
        path = inspect.getsourcefile(cls)
        with open(path or "", "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except (OSError, TypeError):
        digest = "?"
    return f"{cls.__module__}.{cls.__qualname__}:{digest}"


class NotExportable(RuntimeError):
    """A program ``jax.export`` cannot export or serialize (a host callback, a custom call outside its stable
    list, an output of unregistered types): the caller compiles it the plain way instead."""


def _arg_spec(leaves) -> list:
    return [
        [list(x.shape), str(x.dtype), str(getattr(x, "sharding", None)) if isinstance(x, jax.Array) else None]
        for x in leaves
    ]


class ProgramCache:
    """Exported programs of one training config on disk (see the module docstring).

    Args:
      directory: where the files go (created when the first is written; one that cannot be written or made is
        only read).
      config: the config the trainer was built from; part of every key.
      env: the trainer's (unbatched) env object, built from ``config.env_name``.
    """

    def __init__(self, directory: str, config: TrainConfig, env: Any):
        self.directory = directory
        self.read_only = unwritable(directory) is not None  # (a read-only cache: load, never write)
        self._base = {
            "format": FORMAT,
            "code": code_hash(),
            "versions": _versions(),
            "config": config_to_dict(config),
            "env": env_fingerprint(env),
        }

    @classmethod
    def for_run(cls, compile_dir: str | None, config: TrainConfig, env: Any, env_given: bool) -> ProgramCache | None:
        """The cache of a run, or None where it does not apply: the compilation cache off (``compile_dir``
        None), an env object passed by the caller (``env_given``), or more than one process."""
        if compile_dir is None or env_given or jax.process_count() > 1:
            return None
        return cls(os.path.join(compile_dir, SUBDIR), config, env)

    def key(self, name: str, static: tuple, in_tree, leaves) -> str:
        """The hex sha256 naming the program ``name`` for these static values and argument leaves."""
        device = jax.devices()[0]
        spec = dict(
            self._base,
            name=name,
            static=repr(static),
            tree=str(in_tree),
            args=_arg_spec(leaves),
            platform=device.platform,
            device_kind=device.device_kind,
            devices=jax.device_count(),
            flags={f: str(getattr(jax.config, f)) for f in _JAX_FLAGS},
        )
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()

    def compile(
        self, name: str, fn: Callable, args: tuple, static: tuple = (), returns_state: bool = False, log=None
    ) -> tuple[Callable, bool]:
        """Compiles ``fn(*args)`` through an exported program, loading it from disk when a run traced it before.

        Args:
          name: the program's name (``"train_chunk"``, ``"evaluate"``); its jit is named ``cached_<name>``.
          fn: a function of ``args`` (pytrees of arrays) alone; static values already bound into it, and
            given again in ``static`` for the key.
          args: example arguments (their shapes, dtypes and shardings are the program's).
          returns_state: ``fn`` returns ``(state, outputs)`` where ``state`` has the structure of ``args[0]``
            (a ``TrainState``) and ``outputs`` is made of dicts, lists and tuples of arrays; otherwise ``fn``
            returns such builtin containers only.
          log: ``log(message)`` for a file that did not load or could not be written.
        Returns:
          ``(program, loaded)``: ``program(*args)`` runs the compiled program on arguments shaped like
          ``args``; ``loaded`` is True when the traced program came from disk (no tracing in this process).
        Raises:
          NotExportable: ``jax.export`` cannot export the program (nothing is written; an error of ``fn``
            itself surfaces the same way, and again when the caller compiles it without the cache).
        """
        leaves, in_tree = jax.tree.flatten(args)
        state_tree = jax.tree.structure(args[0]) if returns_state else None
        path = os.path.join(self.directory, f"{name}-{self.key(name, static, in_tree, leaves)}.jaxexport")
        exported = self._read(path, log)
        if exported is not None:
            try:
                return _compiled(name, exported, leaves, state_tree), True
            except Exception as e:  # a payload that deserializes into something this JAX cannot lower or compile
                _discard(path, f"did not compile ({_first_line(e)})", log)

        def flat(*xs):
            out = fn(*jax.tree.unflatten(in_tree, xs))
            if returns_state:
                state, rest = out
                if jax.tree.structure(state) != state_tree:
                    raise ValueError(f"{name} returned a state of another structure than its first argument")
                return jax.tree.leaves(state), rest
            return out

        flat.__name__ = flat.__qualname__ = name  # JAX's trace events name it
        try:
            exported = jax.export.export(jax.jit(flat))(*leaves)
            data = exported.serialize()
        except Exception as e:  # e.g. a host callback or a custom call (an env's Warp/FFI kernels)
            raise NotExportable(f"the {name} program cannot be exported ({_first_line(e)})") from e
        self._write(path, data, log)
        return _compiled(name, exported, leaves, state_tree), False

    def _read(self, path: str, log) -> jax.export.Exported | None:
        """The program in ``path``, None when there is none or it is damaged (then reported and removed)."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        head, _, payload = data.partition(b"\n")
        if not head.startswith(HEADER):
            _discard(path, "is not a tr_jax program file (no sha256 header)", log)
            return None
        if hashlib.sha256(payload).hexdigest().encode() != head[len(HEADER) :]:
            _discard(path, "does not match the sha256 written with it (altered or truncated on disk)", log)
            return None
        try:
            exported = jax.export.deserialize(bytearray(payload))
        except Exception as e:
            _discard(path, f"did not deserialize ({_first_line(e)})", log)
            return None
        try:
            os.utime(path)  # least recently used goes first
        except OSError:
            pass
        return exported

    def _write(self, path: str, data: bytes | bytearray, log) -> None:
        if self.read_only:
            return
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(HEADER + hashlib.sha256(data).hexdigest().encode() + b"\n")
                f.write(data)
            os.replace(tmp, path)
            self._evict(keep=path)
        except OSError as e:  # a read-only or full disk costs the next run a trace, nothing more
            if log:
                log(f"warning: could not write the cached program {path} ({e}); the next run traces it again")

    def _evict(self, keep: str) -> None:
        """Deletes the least recently used files (never ``keep``, the one just written) beyond :data:`MAX_BYTES`."""
        entries = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".jaxexport") and entry.path != keep:
                st = entry.stat()
                entries.append((st.st_mtime, st.st_size, entry.path))
        total = sum(size for _, size, _ in entries) + os.path.getsize(keep)
        for _, size, path in sorted(entries):
            if total <= MAX_BYTES:
                break
            try:
                os.remove(path)
            except OSError:
                pass
            total -= size


def _first_line(e: BaseException) -> str:
    """``Type: the first line of the message`` (at most 200 characters)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def _discard(path: str, problem: str, log) -> None:
    """Removes the damaged program file ``path`` and reports it in one line through ``log``."""
    try:
        os.remove(path)
        done = "removed it"
    except FileNotFoundError:
        done = "it is gone"
    except OSError as e:
        done = f"could not remove it ({e.strerror})"
    if log:
        log(f"warning: the cached program {path} {problem}; {done}, tracing the program again")


def _compiled(name: str, exported: jax.export.Exported, leaves: list, state_tree) -> Callable:
    """``exported`` compiled for arguments like ``leaves``, called with the original pytrees; a state tree given:
    its first output is rebuilt as that tree (see :meth:`ProgramCache.compile`)."""
    call = exported.call

    def run_leaves(*xs):
        return call(*xs)

    run_leaves.__name__ = run_leaves.__qualname__ = f"cached_{name}"
    compiled = jax.jit(run_leaves).lower(*leaves).compile()
    if state_tree is None:
        return lambda *a: compiled(*jax.tree.leaves(a))

    def program(*a):
        state_leaves, rest = compiled(*jax.tree.leaves(a))
        return jax.tree.unflatten(state_tree, state_leaves), rest

    return program
