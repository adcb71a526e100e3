"""Checkpoints of the whole :class:`~tr_jax.train.TrainState` with Orbax.

A run directory's ``checkpoints/`` is an Orbax ``CheckpointManager``
directory: one sub-directory per saved iteration (``checkpoints/<iteration>/``)
holding ``state`` (every array of the TrainState -- params, optimiser states,
env state, observation/reward statistics, PRNG key, iteration, with a leading
seed dimension when seeds are vmapped) and ``meta`` (JSON: iteration, env
steps, seeds, the config). Orbax writes each checkpoint to a temporary
directory and renames it when complete, so a kill never leaves a checkpoint
that looks finished but is not; the newest ``keep`` are kept.

Typed PRNG keys are stored as their raw ``uint32`` key data and re-wrapped on
restore; zero-size arrays (which Orbax cannot write) are left out and
restored as empty arrays. Fields a state type gained after a checkpoint was written restore as None
when they hold None in the run restoring it (an optional part the run does not use, e.g. the value
function's own observation statistics). Every failure to restore (missing directory, no checkpoint, an
incomplete one -- without the metadata and commit marker Orbax writes last, :data:`COMPLETE_MARKERS` --, a
corrupt or incompatible one) raises :class:`CheckpointError` naming the path and the problem in one line, and
the older checkpoints there are (``.older``). A save that fails for lack of space or permission raises
``OSError`` (errno ENOSPC, EROFS, EACCES) naming the checkpoint, and removes its unfinished directory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the state it should restore; ``older``: the
    checkpoints (iterations, ascending) older than the one that failed. As after :class:`CheckpointWriteError`,
    Orbax's threads may report a failed read again at the interpreter's shutdown: a command-line program ends
    with ``os._exit`` after its one-line error."""

    def __init__(self, message: str, older: list | None = None):
        super().__init__(message)
        self.older = list(older or [])


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (``errno`` ENOSPC, EROFS, EACCES; ``filename``: the checkpoint).
    Orbax's writer threads may still report the failure while the interpreter shuts down (tracebacks of
    "Event loop is closed"): a command-line program ends with ``os._exit`` after its one-line error."""


# how TensorStore/Orbax spell the write failures an OSError would carry
_WRITE_ERRNOS = (
    ("RESOURCE_EXHAUSTED", errno.ENOSPC),
    ("No space left", errno.ENOSPC),
    ("Read-only file system", errno.EROFS),
    ("PERMISSION_DENIED", errno.EACCES),
    ("Permission denied", errno.EACCES),
)


def _write_errno(e: Exception) -> int | None:
    """The errno of a failed write (ENOSPC, EROFS, EACCES, ...), also as TensorStore spells it; else None."""
    if isinstance(e, OSError):
        return e.errno
    return next((code for text, code in _WRITE_ERRNOS if text in str(e)), None)


@contextlib.contextmanager
def _quiet_write_failures() -> Iterator[None]:
    """Holds back what is written to file descriptor 2 and passes it on, unless a write failure is raised
    (Orbax's threads, absl and asyncio then report every failed write, hundreds of lines for one full disk):
    then it is dropped, as are asyncio's later reports of the save's unretrieved futures."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        quiet = False
        try:
            yield
        except Exception as e:
            quiet = _write_errno(e) is not None
            if quiet:
                logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            if not quiet:
                held.seek(0)
                os.write(saved, held.read())
            os.close(saved)


# What Orbax writes into a checkpoint last, before it renames the checkpoint into place: its metadata (with the
# commit time) and the commit marker. A checkpoint directory without them was not finished, or not fully copied;
# Orbax itself would restore it with two warnings only.
COMPLETE_MARKERS = ("_CHECKPOINT_METADATA", "commit_success.txt")


class _MissingMetadata(logging.Filter):
    """Drops Orbax's (absl's) warning that the metadata file of a checkpoint under ``directory`` does not exist,
    logged each time the directory is listed: :meth:`Checkpoints.restore` names an incomplete checkpoint itself,
    in one line. Every other record passes."""

    def __init__(self, directory: str):
        super().__init__()
        self.prefix = os.path.join(directory, "")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.msg == "Metadata file does not exist: %s"
            and isinstance(record.args, tuple)
            and str(record.args[0]).startswith(self.prefix)
        )


def _reason(e: Exception, limit: int = 200) -> str:
    """The first line of an (Orbax/TensorStore) error, at most ``limit`` characters."""
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: " + (text if len(text) <= limit else text[:limit] + "...")


def _is_key(x: object) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def _is_empty(x: object) -> bool:
    return 0 in tuple(getattr(x, "shape", ()))


def _to_saveable(tree: Any) -> Any:
    # Orbax cannot save zero-size arrays (MuJoCo states have some, e.g. MJX's
    # Data.act of a model without activations): they are stored as None and
    # rebuilt from ``like`` on restore
    return jax.tree.map(lambda x: None if _is_empty(x) else jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_saveable(tree: Any, like: Any) -> Any:
    # the key implementation comes from the dtype, which abstract (eval_shape) leaves have too
    def leaf(l: Any, x: Any) -> Any:
        if _is_empty(l):
            return jax.numpy.zeros(l.shape, l.dtype)
        return jax.random.wrap_key_data(x, impl=l.dtype._impl.name) if _is_key(l) else x

    return jax.tree.map(leaf, like, tree)


def _name(key: Any) -> str:
    """A key-path entry (attribute, dict key or index) as the name Orbax stores it under."""
    for attr in ("name", "key", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _leaf_paths(tree: Any) -> dict:
    """``{(name, ...): leaf}`` of every leaf of ``tree``, None leaves included."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
    return {tuple(_name(k) for k in path): leaf for path, leaf in flat}


def _as_dicts(tree: Any, drop: set, prefix: tuple = ()) -> Any:
    """``tree`` with every NamedTuple turned into a dict of its fields and the None leaves at the paths in
    ``drop`` left out (Orbax restores a NamedTuple's saved fields into a dict target)."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        fields = {f: getattr(tree, f) for f in tree._fields if prefix + (f,) not in drop}
        return {f: _as_dicts(v, drop, prefix + (f,)) for f, v in fields.items()}
    if isinstance(tree, dict):
        return {k: _as_dicts(v, drop, prefix + (str(k),)) for k, v in tree.items() if prefix + (str(k),) not in drop}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_as_dicts(v, drop, prefix + (str(i),)) for i, v in enumerate(tree))
    return tree


class Checkpoints:
    """Saves and restores TrainStates in ``directory`` (Orbax, synchronous).

    save(step, state, meta): writes checkpoint ``step`` (an iteration count).
    steps(): the complete checkpoints, ascending. latest(): the newest or None.
    restore(step, like) -> (state, meta): ``like`` is a TrainState (or its
      ``jax.eval_shape``) with the expected structure, shapes and dtypes.
    """

    def __init__(self, directory: str, keep: int = 3):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = os.path.abspath(directory)
        self._quiet = _MissingMetadata(self.directory)
        logging.getLogger("absl").addFilter(self._quiet)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def save(self, step: int, state: Any, meta: dict) -> str:
        """Writes checkpoint ``step`` (an iteration count) of ``state`` with the JSON-able ``meta``; returns its
        path. A write that fails for lack of space or permission raises :class:`CheckpointWriteError` and leaves
        no unfinished checkpoint."""
        ocp = self._ocp
        try:
            with _quiet_write_failures():
                self._manager.save(
                    int(step),
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(_to_saveable(state)), meta=ocp.args.JsonSave(meta)
                    ),
                    force=True,
                )
                self._manager.wait_until_finished()
        except Exception as e:
            code = _write_errno(e)
            if code is None:
                raise
            for name in os.listdir(self.directory):  # Orbax's unfinished "<step>.orbax-checkpoint-tmp..."
                if name.startswith(f"{int(step)}.orbax-checkpoint-tmp"):
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
            raise CheckpointWriteError(code, os.strerror(code), self.path(step)) from None
        return self.path(step)

    def delete(self, step: int) -> None:
        """Removes checkpoint ``step``."""
        self._manager.delete(int(step))

    def path(self, step: int) -> str:
        """The directory of checkpoint ``step``."""
        return os.path.join(self.directory, str(int(step)))

    def steps(self) -> list[int]:
        """The steps of the complete checkpoints on disk, ascending."""
        self._manager.reload()
        return sorted(int(s) for s in self._manager.all_steps())

    def latest(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        steps = self.steps()
        return steps[-1] if steps else None

    def restore(self, step: int | None, like: Any) -> tuple[Any, dict]:
        """Restores checkpoint ``step`` (None: the newest) into the structure of ``like``."""
        ocp = self._ocp
        steps = self.steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no checkpoint in {self.directory}")
            step = steps[-1]
        if step not in steps:
            raise CheckpointError(f"no checkpoint {step} in {self.directory}; there are {steps or 'none'}")
        older = [s for s in steps if s < step]
        missing = [m for m in COMPLETE_MARKERS if not os.path.exists(os.path.join(self.path(step), m))]
        if missing:
            raise CheckpointError(
                f"checkpoint {self.path(step)} is incomplete (no {' or '.join(missing)}, which Orbax writes last: "
                f"it was not finished or not fully copied); "
                + (f"older checkpoints: {', '.join(map(str, older))}" if older else "there is no older checkpoint"),
                older,
            )
        # restore onto the devices of ``like`` (concrete arrays) or the first device (abstract ones), whatever
        # the mesh that saved it: a checkpoint written on 4 devices restores on 1 and vice versa
        first = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.tree.map(
            lambda a, x: (
                None
                if a is None
                else jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=x.sharding if isinstance(x, jax.Array) else first)
            ),
            jax.eval_shape(_to_saveable, like),
            like,
            is_leaf=lambda v: v is None,
        )  # (None: a zero-size leaf)
        try:
            target, added = abstract, self._added_fields(step, abstract)
            if added:  # written before the state gained these (unused, None) fields: restore without them
                target = _as_dicts(abstract, added)
            out = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
            )
            state = out["state"]
            if added:
                restored = _leaf_paths(state)
                state = jax.tree_util.tree_map_with_path(
                    lambda path, _: restored.get(tuple(_name(k) for k in path)), abstract, is_leaf=lambda x: x is None
                )
        except Exception as e:  # Orbax raises many types; all mean "this checkpoint cannot be used"
            raise CheckpointError(
                f"checkpoint {self.path(step)} is broken ({_reason(e)}); "
                + (f"older checkpoints: {', '.join(map(str, older))}" if older else "there is no older checkpoint"),
                older,
            ) from e
        got = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), state)
        want = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), abstract)
        if jax.tree.structure(state) != jax.tree.structure(abstract) or got != want:  # type: ignore[operator]
            raise CheckpointError(
                f"checkpoint {self.path(step)} does not fit this run's state (different config or tr_jax version?)",
                older,
            )
        return _from_saveable(state, like), dict(out["meta"])

    def _added_fields(self, step: int, abstract: Any) -> set:
        """The paths of ``abstract``'s None leaves that checkpoint ``step`` does not have (fields added to the
        state types since it was written, unused by this run)."""
        saved = _leaf_paths(self._manager.item_metadata(step)["state"].tree)
        return {path for path, leaf in _leaf_paths(abstract).items() if leaf is None and path not in saved}

    def close(self) -> None:
        """Releases Orbax's checkpoint manager."""
        self._manager.close()
        logging.getLogger("absl").removeFilter(self._quiet)
