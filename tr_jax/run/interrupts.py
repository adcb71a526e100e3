"""What a run's process does around the training besides it: stop signals, waiting for the device while they can
arrive, and MuJoCo's warnings.

* :class:`Interrupts` turns SIGINT, SIGTERM and SIGUSR1 into a stop request that the host loop reads between
  chunks (:mod:`tr_jax.run` describes what a stop does); :func:`hold_exit_status` keeps a stopped command's exit
  status (:data:`EXIT_STATUS`) from being overwritten by a repeated signal.
* :func:`wait_ready` blocks until device work is done, polling so that a signal is logged promptly.
* :class:`MujocoLog` sends MuJoCo's warnings to the run directory's ``mujoco.log``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax

EXIT_STATUS = {"interrupted": 130, "preempted": 75}
"""Exit status of a command whose run stopped with this status (Ctrl-C: 130; SIGTERM/SIGUSR1: 75, sysexits'
EX_TEMPFAIL, "retry": a batch script requeues on it; 143 stays what a shell reports for a process that SIGTERM
killed before it could save). A checkpoint at the iteration reached was written."""


class Interrupts:
    """Stop requests by signal: SIGINT (Ctrl-C), SIGTERM and SIGUSR1 (where the platform has it).

    The first one sets ``signal`` (its name); the loop then finishes the chunk
    in flight, checkpoints and stops. After it SIGINT's default handler is back,
    so a second Ctrl-C exits at once; a repeated SIGTERM/SIGUSR1 is only noted
    (SLURM sends SIGTERM after its USR1 warning, and to the batch shell, which
    may forward it: the checkpoint must still be written; SIGKILL follows the
    grace period anyway). The handler only records: ``poll()`` (called while
    waiting for a chunk, so promptly) logs what arrived, outside the handler.
    On leaving, the handlers from before are restored, except after
    :func:`hold_exit_status` in a run stopped by a signal (see there).
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGUSR1")
    hold = False  # set by hold_exit_status(): a stopped run leaves SIGTERM/SIGUSR1 ignored

    def __init__(self, log: Callable[[str], None]):
        self.signal: str | None = None
        self._log = log
        self._previous: dict[signal.Signals, Any] = {}  # signal -> the handler it had before __enter__
        self._arrived: list[str] = []  # names of the signals in order
        self._logged = 0  # how many of them were logged

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived (in this process, or in another one through :meth:`share`)."""
        return self.signal is not None

    @property
    def code(self) -> int:
        """0 for no signal, else 1 + the signal's index in ``NAMES`` (shared between processes)."""
        return 0 if self.signal is None else 1 + self.NAMES.index(self.signal)

    def share(self, code: int) -> None:
        """Takes the signal of another process (``code`` as :attr:`code`) if this one got none."""
        if self.signal is None and code > 0:
            self.signal = self.NAMES[code - 1]

    @property
    def status(self) -> str:
        """The run's status once stopped: "interrupted" (Ctrl-C) or "preempted" (SIGTERM, SIGUSR1)."""
        return "interrupted" if self.signal == "SIGINT" else "preempted"

    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        self._arrived.append(name)
        if self.signal is None:
            self.signal = name
            signal.signal(signal.SIGINT, signal.SIG_DFL)

    def poll(self):
        """Logs the signals that arrived since the last call."""
        while self._logged < len(self._arrived):  # (the handler only appends)
            name, first = self._arrived[self._logged], self._logged == 0
            self._logged += 1
            if not first:
                self._log(f"{name}: already stopping ({self.signal}); still finishing the chunk and the checkpoint")
            else:
                self._log(
                    f"{name}: finishing this chunk and writing a checkpoint"
                    + (" (Ctrl-C again to exit at once)" if name == "SIGINT" else "")
                )

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                if hasattr(signal, name):
                    sig = getattr(signal, name)
                    self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, exc_type, *exc):
        # a stop signal and no error: the checkpoint is written and the status decided, nothing may change it
        settled = self.hold and self.signal is not None and exc_type is None
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if settled and sig != signal.SIGINT else previous)


def hold_exit_status() -> None:
    """For a process that ends when its run stops (``tr-jax train``, ``tune``, ``compare``): once a run stopped
    by a signal has written its checkpoint and decided its status (exit status 75 or 130), SIGTERM and SIGUSR1
    are ignored until the process exits, instead of killing it with 143 ("killed before saving") while JAX and
    Orbax tear down (a second or two), as a scheduler or a batch shell forwarding its signal may send them
    again. Without it (a call from Python) the handlers from before the run are restored."""
    Interrupts.hold = True


def wait_ready(tree, interrupts: Interrupts):
    """Blocks until ``tree`` is computed, polling so that a signal is handled (and logged) promptly; returns it."""
    leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "is_ready")]  # (typed PRNG keys have none)
    while not all(x.is_ready() for x in leaves):
        interrupts.poll()
        time.sleep(0.02)
    interrupts.poll()
    return jax.block_until_ready(tree)


class MujocoLog:
    """While active, MuJoCo's warnings are kept (and written to ``path`` once it is set: the run
    directory's mujoco.log) instead of going to ./MUJOCO_LOG.TXT in the working directory."""

    def __init__(self):
        self.path, self._pending, self._previous, self._mujoco = None, [], None, None

    def _warn(self, message):
        self._pending.append(str(message))
        self.flush()

    def flush(self):
        """Appends the warnings kept so far to ``path`` (once it is set)."""
        if self.path is not None and self._pending:
            with open(self.path, "a") as f:
                f.writelines(m + "\n" for m in self._pending)
            self._pending.clear()

    def __enter__(self):
        try:
            import mujoco
        except ImportError:
            return self
        self._mujoco, self._previous = mujoco, mujoco.get_mju_user_warning()
        mujoco.set_mju_user_warning(self._warn)
        return self

    def __exit__(self, *exc):
        if self._mujoco is not None:
            self._mujoco.set_mju_user_warning(self._previous)
        self.flush()
