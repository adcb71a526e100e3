"""JAX's persistent compilation cache for tr_jax runs: a rerun loads its compiled programs from disk.

:func:`tr_jax.run.run` (and ``run_sweep``, ``tr-jax train``) turns it on with :func:`setup` unless it was set up
already in the process. Where it lives:

* ``$TR_JAX_COMPILE_CACHE`` if set: a directory, or ``off`` (also ``0``, ``false``, ``no``) to turn it off;
* else ``$XDG_CACHE_HOME/tr_jax/jax_compile`` (``~/.cache/tr_jax/jax_compile``);
* a directory set in JAX itself (``JAX_COMPILATION_CACHE_DIR``, ``jax.config.update("jax_compilation_cache_dir",
  ...)``) is used as it is.

``tr-jax train --no-compile-cache`` turns it off for one command. Size: JAX evicts the least recently used entries
once the directory holds more than :data:`MAX_BYTES` (``JAX_COMPILATION_CACHE_MAX_SIZE``, in bytes, overrides; -1:
no limit). JAX writes only programs that took at least ``jax_persistent_cache_min_compile_time_secs`` (1 s) to
compile, keyed by the program, the compile options, the devices and the jax/jaxlib versions: an entry of another
version is never loaded (it ages out).

A directory this process cannot write (a read-only file system, another user's cache) is used read-only: its
entries load, new programs compile in every run and are not saved (JAX's size limit, which needs a lock file in
the directory, is lifted, and its warnings about entries it could not write are silenced); one that cannot be
made turns the cache off. Either is said in one line (:func:`note`), logged by every run.
"""

from __future__ import annotations

import os
import warnings

import jax

from tr_jax.rundir import unwritable

ENV = "TR_JAX_COMPILE_CACHE"
MAX_BYTES = 2 * 1024**3
"""The cache's default size limit (2 GiB; a hopper chunk program is a few MB)."""

_OFF = ("", "0", "off", "false", "no")
_chosen: list = []  # [directory or None, note or None] once setup ran in this process


def cache_dir(environ=None) -> str | None:
    """The directory the cache goes to from ``environ`` (default ``os.environ``), None when it is turned off."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else os.path.abspath(os.path.expanduser(value))
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tr_jax", "jax_compile")


def setup(enabled: bool = True) -> str | None:
    """Turns JAX's persistent compilation cache on (in :func:`cache_dir`, or JAX's own directory if one is set),
    or off (``enabled`` False, or ``$TR_JAX_COMPILE_CACHE=off``). Returns the directory in use, None when off."""
    # jax.config's options are attributes made at run time (Config._HAS_DYNAMIC_ATTRIBUTES), unknown to its stubs
    jax_dir = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    jax_max_size = jax.config.jax_compilation_cache_max_size  # type: ignore[attr-defined]
    path = (jax_dir or cache_dir()) if enabled else None
    why = unwritable(path) if path is not None else None
    message = None
    if why is not None and path is not None and os.path.isdir(path) and os.access(path, os.R_OK | os.X_OK):
        message = (
            f"note: the compilation cache {path} is read-only ({why[1]}): its programs load, the others compile "
            f"in every run and are not saved"
        )
        # no size limit: JAX's eviction locks a file in the directory, and without the lock it reads nothing
        jax.config.update("jax_compilation_cache_max_size", -1)
        warnings.filterwarnings("ignore", "Error writing persistent compilation cache entry", UserWarning)
    elif why is not None:
        message = (
            f"note: the compilation cache {path} cannot be made ({why[1]}): running without it (set "
            f"{ENV} to a writable directory, or off)"
        )
        path = None
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
    else:
        if not jax_dir:
            os.makedirs(path, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", path)
        if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ and jax_max_size == -1 and message is None:
            jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
        jax.config.update("jax_enable_compilation_cache", True)
    _chosen[:] = [path, message]
    return path


def ensure() -> str | None:
    """:func:`setup` with the defaults, unless it ran already in this process; returns the directory in use."""
    return _chosen[0] if _chosen else setup()


def note() -> str | None:
    """The line saying the cache is read-only or could not be made (see the module docstring), else None."""
    return _chosen[1] if _chosen else None
