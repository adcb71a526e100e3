"""How a ``tr-jax`` command ends on an exception: one table from exception class to exit status and the one line
on stderr (:data:`ERRORS`), used by every command (:func:`run_command`)."""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Callable

_ERROR = "tr-jax {command}: error: {error}"

ERRORS: tuple[tuple[type[BaseException] | str, int, str], ...] = (
    # (the class, or "module:Class" for one of a module that is imported only by the commands raising it; the
    # exit status; the line on stderr). The first class the exception is an instance of decides.
    ("tr_jax.run:TrainingDiverged", 1, "tr-jax {command}: {error}"),  # the NaN guard fired (a RuntimeError)
    (ValueError, 2, _ERROR),  # bad arguments, config values or files (RunDirError, PlotError, ...)
    (TypeError, 2, _ERROR),  # a config value of the wrong type
    (OSError, 2, _ERROR),  # a missing file; a write that failed (full disk, read-only; CheckpointWriteError)
    (RuntimeError, 2, _ERROR),  # a run directory in use (RunDirLocked), an unreadable checkpoint (CheckpointError)
    (ImportError, 2, _ERROR),  # an optional dependency that is not installed (Optuna, TensorBoard, W&B)
)
"""Exit status 1: training diverged; 2: bad arguments or files, a run directory in use by another process, a
write that failed. Any other exception is a bug and ends the command with its traceback."""

_CHECKPOINT_ERRORS = ("tr_jax.checkpoint:CheckpointError", "tr_jax.checkpoint:CheckpointWriteError")


def _class(spec: type[BaseException] | str) -> type[BaseException] | None:
    """The class ``spec`` names; None for ``"module:Class"`` of a module not imported (nothing can have raised
    it, and importing it here would only slow the error down: tr_jax.run and tr_jax.checkpoint load JAX and
    Orbax)."""
    if isinstance(spec, type):
        return spec
    module, name = spec.split(":")
    return getattr(sys.modules[module], name) if module in sys.modules else None


def _is(e: BaseException | None, specs) -> bool:
    return e is not None and any((c := _class(s)) is not None and isinstance(e, c) for s in specs)


def error_line(command: str, e: BaseException) -> tuple[int, str] | None:
    """``(exit status, the line on stderr, newline included)`` for ``e`` raised by ``tr-jax COMMAND``, from
    :data:`ERRORS`; None for an exception it does not list."""
    for spec, status, line in ERRORS:
        if _is(e, [spec]):
            return status, line.format(command=command, error=e) + "\n"
    return None


def run_command(command: str, run: Callable[..., int], args) -> int:
    """``run(args)``, the exit status it returns, or the one from :data:`ERRORS` for what it raised, after the
    error's line on stderr. After a checkpoint that could not be read or written (the exception or its cause),
    a process that is this command (``args.program``) ends here with ``os._exit``: not through the interpreter's
    shutdown, where Orbax's threads report the failure again ("Event loop is closed" tracebacks)."""
    try:
        return run(args)
    except Exception as e:
        found = error_line(command, e)
        if found is None:
            raise
        status, line = found
        if args.program and (_is(e, _CHECKPOINT_ERRORS) or _is(e.__cause__, _CHECKPOINT_ERRORS)):
            # Orbax's threads may print that traceback at any moment now: their writes to sys.stderr go
            # nowhere, and the line goes out in one write, so nothing lands inside or after it
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the process ends below)
            os.write(2, line.encode())
            os._exit(status)
        sys.stderr.write(line)
        return status


class MainThreadOnly(io.TextIOBase):
    """``sys.stderr`` for the commands that only read a checkpoint (eval, render, export): what the main thread
    writes goes through; what other threads write is dropped. When a checkpoint cannot be read, Orbax's
    background threads print "Event loop is closed" tracebacks at unpredictable moments (before, inside or after
    the command's one-line error); nothing else of these commands writes from another thread."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        if threading.current_thread() is threading.main_thread():
            return self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()
