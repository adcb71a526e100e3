"""The files of a run directory ``runs/<name>/``.

    config.json     the resolved TrainConfig, every field (usable as a config file)
    run.json        seed, number of seeds, creation time, package versions
    metrics.jsonl   one line per iteration and seed: {"iteration", "seed", "env_steps", metric: value|null}
    eval.jsonl      one line per evaluation and seed: returns/lengths, mean and std over episodes
    checkpoints/    Orbax checkpoints (:mod:`tr_jax.checkpoint`)
    summary.json    written when the run stops: status, final/best eval return per seed, speed, versions
    mujoco.log      MuJoCo's own warnings, if it had any
    .lock           while a process trains in it: its host, pid and start time (:class:`RunLock`)

A sweep directory holds ``sweep.json`` and one run directory per setting.
``--overwrite`` (:meth:`RunDir.create`) empties only what is recognisably one
of these; anything else in the directory is an error that names it.

Multi-host (``jax.distributed``): only process 0 writes (every write below is
a no-op elsewhere; checkpoints are written by all processes through Orbax).
JSON files are written atomically (temporary file, then ``os.replace``);
``.jsonl`` files are appended one chunk at a time in a single write (a write
that fails, e.g. on a full disk, is truncated back: :func:`append_jsonl`) and on
resume cut back to the iterations before the checkpoint (:func:`cut_jsonl`; a torn
last line from a kill is dropped; rows before the checkpoint that are missing are named, since they
cannot be regenerated). Readers (:meth:`RunDir.read_metrics`/``read_eval``)
refuse an (iteration, seed) that appears twice; ``read_metrics`` (and
``first_metrics_row``) give old runs' rows under this version's metric names
(:func:`current_metric_names`). Values that do not exist (no
finished episode yet: NaN) are ``null``.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import math
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable
from importlib import metadata

import numpy as np

SWEEP_FILE = "sweep.json"
LOCK_FILE = ".lock"
_RUN_FILES = ("config.json", "run.json", "metrics.jsonl", "eval.jsonl", "summary.json", "mujoco.log", LOCK_FILE)
_RUN_DIRS = ("checkpoints", "tensorboard", "wandb")  # (the last two: tr_jax.loggers)


class RunDirError(ValueError):
    """A run directory's file is damaged or ambiguous (e.g. an iteration written twice)."""


class RunDirLocked(RuntimeError):
    """Another process trains in this run directory."""


class RunDirWriteError(OSError):
    """A write into a run directory failed (full disk, read-only, no permission); ``str()`` is one line
    naming the file and what the run directory still holds."""

    def __init__(self, message: str, cause: OSError):
        super().__init__(cause.errno, message, cause.filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


VERSIONED = ("tr_jax", "jax", "jaxlib", "flax", "optax", "brax", "mujoco", "orbax-checkpoint", "numpy")


def versions() -> dict[str, str | None]:
    """The installed versions of tr_jax and the packages it runs on (``run.json``; None: not installed)."""
    out: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def default_name(config) -> str:
    """``<env>-<algorithm>[-<projection>-<cov_type>]-<YYYYmmdd-HHMMSS>`` (a source prefix's ':' becomes '-')."""
    label = config.algorithm + (f"-{config.projection}-{config.cov_type}" if config.algorithm == "trpl" else "")
    return f"{config.env_name.replace(':', '-')}-{label}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def clean(value):
    """A JSON-able Python value: numpy scalars unwrapped, NaN/inf -> None."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _writer() -> bool:
    from tr_jax.parallel import is_primary

    return is_primary()


def write_json(path: str, obj) -> None:
    """Writes ``obj`` to ``path`` atomically (a kill or a failed write leaves the old file or the new one)."""
    if _writer():
        _replace(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _replace(path: str, text: str) -> None:
    """Writes ``text`` to a temporary file, then renames it to ``path``; an ``OSError`` names ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise OSError(e.errno, e.strerror, path) from None


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def read_json(path: str):
    """The JSON document in ``path``."""
    with open(path) as f:
        return json.load(f)


def read_jsonl(path: str) -> list:
    """Every complete line of ``path`` (a torn last line is skipped); [] if missing; ``RunDirError``
    naming the file and line for a complete line that is not JSON."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break  # torn by a kill
            rows.append(_row(path, number, line))
    return rows


OLD_METRIC_PREFIXES = {"raw_": "acting_"}  # a metric name's old prefix -> its current one


def current_metric_names(row: dict) -> dict:
    """A ``metrics.jsonl`` row with this version's metric names, its keys in their order.

    Runs written before TRPL's network output (the policy that acts) was named ``acting_*`` in every metric call
    it ``raw_*``: ``raw_mean_part_max`` -> ``acting_mean_part_max``, ``raw_cov_part_over`` ->
    ``acting_cov_part_over``, ``raw_kl_max`` -> ``acting_kl_max`` (:data:`OLD_METRIC_PREFIXES`). A row holding
    both names of one metric keeps the current one. Readers of ``metrics.jsonl`` rows
    (:meth:`RunDir.read_metrics`) pass every row through this, so old run directories read like new ones.

        >>> current_metric_names({"iteration": 0, "raw_mean_part_max": 0.2, "kl_max": 0.1})
        {'iteration': 0, 'acting_mean_part_max': 0.2, 'kl_max': 0.1}
    """
    out = {}
    for key, value in row.items():
        old = next((p for p in OLD_METRIC_PREFIXES if key.startswith(p)), None)
        if old is None:
            out[key] = value
            continue
        new = OLD_METRIC_PREFIXES[old] + key[len(old) :]
        if new not in row:
            out[new] = value
    return out


def first_row(path: str) -> dict:
    """The first row of ``path`` without reading the rest ({} if the file is missing or has no complete line)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        line = f.readline()
    return _row(path, 1, line) if line.endswith("\n") else {}


def _row(path: str, number: int, line: str) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}, line {number}: not a JSON row ({e})") from None


def _keys(rows: Iterable[tuple]) -> str:
    """``(iteration, seed)`` pairs as ``iteration 8 (seeds 0, 1), iteration 9 (seed 0)``, at most 6 iterations."""
    by_it: dict = {}
    for i, s in sorted(set(rows)):
        by_it.setdefault(i, []).append(s)
    parts = [
        f"iteration {i} (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})" for i, s in list(by_it.items())[:6]
    ]
    more = len(by_it) - 6
    return ", ".join(parts) + (f" and {more} more iterations up to {max(by_it)}" if more > 0 else "")


def unique_rows(path: str, rows: list) -> list:
    """``rows`` (of ``path``), or ``RunDirError`` naming every (iteration, seed) that appears more than once."""
    seen, twice = set(), []
    for r in rows:
        key = (r["iteration"], r["seed"])
        (twice.append(key) if key in seen else seen.add(key))
    if twice:
        raise RunDirError(
            f"{path} holds {len(twice)} duplicated (iteration, seed) rows: {_keys(twice)} "
            f"(did two processes write this run directory at once?)"
        )
    return rows


def foreign_entries(path: str) -> tuple[bool, list]:
    """``(ours, foreign)``: whether directory ``path`` is a tr_jax run or sweep directory (config.json and
    run.json, or sweep.json), and its entries that such a directory does not hold (``name`` or ``name/``)."""
    names = sorted(os.listdir(path))
    show = lambda n: n + "/" if os.path.isdir(os.path.join(path, n)) else n
    tmp = lambda n: re.search(r"\.tmp-\d+$", n) is not None
    if SWEEP_FILE in names:
        try:
            settings = set(read_json(os.path.join(path, SWEEP_FILE))["settings"])
        except (OSError, ValueError, KeyError, TypeError):
            return False, [show(n) for n in names]
        foreign = []
        for n in names:
            sub = os.path.join(path, n)
            if n in settings and os.path.isdir(sub):
                foreign += [f"{n}/{x}" for x in foreign_entries(sub)[1]]
            elif n not in (SWEEP_FILE, LOCK_FILE) and not tmp(n):
                foreign.append(show(n))
        return True, foreign
    ours = "config.json" in names and "run.json" in names
    known = lambda n: (
        (n in _RUN_FILES and os.path.isfile(os.path.join(path, n)))
        or (n in _RUN_DIRS and os.path.isdir(os.path.join(path, n)))
        or tmp(n)
    )
    return ours, [show(n) for n in names if not known(n)] if ours else [show(n) for n in names if n != LOCK_FILE]


def _listing(names: list, limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def append_jsonl(path: str, rows: Iterable[dict]) -> None:
    """Appends to the ``.jsonl`` file ``path`` one JSON line per row in a single write and flushes it to disk; a
    write that fails (a full disk) is truncated back, so no partial line stays behind."""
    if not _writer():
        return
    data = "".join(json.dumps({k: clean(v) for k, v in row.items()}, allow_nan=False) + "\n" for row in rows).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise OSError(e.errno, e.strerror, path) from None
    finally:
        os.close(fd)


def cut_jsonl(path: str, before_iteration: int, num_seeds: int, every_iteration: bool) -> list:
    """Keeps only the rows of the ``.jsonl`` file ``path`` (a run's metrics or evaluations) with ``iteration <
    before_iteration`` (and drops a torn last line).

    Returns what happened, as lines to show: rows dropped from after the
    checkpoint, and rows missing from before it (a torn or removed line
    cannot be regenerated). Missing rows are every (iteration, seed) pair
    with ``iteration < before_iteration`` that is absent if
    ``every_iteration`` (metrics.jsonl), otherwise the seeds absent from an
    iteration that has rows (eval.jsonl) and the iteration of a torn line.
    """
    if not os.path.exists(path) or not _writer():
        return []
    with open(path) as f:
        lines = f.readlines()
    torn = lines.pop() if lines and not lines[-1].endswith("\n") else None
    rows = [_row(path, number, ln) for number, ln in enumerate(lines, 1)]
    keep = [ln for ln, r in zip(lines, rows) if r["iteration"] < before_iteration]
    if len(keep) < len(lines) or torn is not None:
        _replace(path, "".join(keep))
    name, notes = os.path.basename(path), []
    after = sorted({r["iteration"] for r in rows if r["iteration"] >= before_iteration})
    if after:
        notes.append(
            f"{name}: dropped {len(lines) - len(keep)} rows written after that checkpoint "
            f"(iterations {after[0]}-{after[-1]})"
        )
    present = {(r["iteration"], r["seed"]) for r in rows if r["iteration"] < before_iteration}
    its = range(before_iteration) if every_iteration else sorted({i for i, _ in present})
    missing = {(i, s) for i in its for s in range(num_seeds)} - present
    torn_it = re.match(r'\{"iteration": (\d+)', torn or "")
    if torn is not None:
        when = (
            ""
            if torn_it is None
            else f" (iteration {torn_it[1]}, "
            + ("before" if int(torn_it[1]) < before_iteration else "after")
            + " that checkpoint)"
        )
        notes.append(f"{name}: dropped a torn last line{when}")
        if torn_it is not None and int(torn_it[1]) < before_iteration and not every_iteration:
            missing |= {(int(torn_it[1]), s) for s in range(num_seeds)} - present
    if missing:
        notes.append(
            f"warning: {name} lacks rows from before the checkpoint at {before_iteration}: "
            f"{_keys(missing)}; they cannot be regenerated, the file keeps this gap"
        )
    return notes


class RunDir:
    """Paths and file operations of one run directory (see the module docstring)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.config = os.path.join(self.path, "config.json")
        self.run = os.path.join(self.path, "run.json")
        self.metrics = os.path.join(self.path, "metrics.jsonl")
        self.eval = os.path.join(self.path, "eval.jsonl")
        self.summary = os.path.join(self.path, "summary.json")
        self.checkpoints = os.path.join(self.path, "checkpoints")
        self.mujoco_log = os.path.join(self.path, "mujoco.log")

    @classmethod
    def create(cls, path: str, overwrite: bool = False, hold: Callable[[str], None] | None = None) -> RunDir:
        """A new, empty run directory.

        An existing one with anything in it is an error unless ``overwrite``,
        and even then it must be recognisably a tr_jax run or sweep directory
        holding nothing else (``FileExistsError`` names what is there). ``hold``
        (e.g. taking the directory's :class:`RunLock`) is called with the path
        once the directory exists and before anything in it is removed.
        """
        rd = cls(path)
        if not _writer():
            return rd
        entries = [n for n in os.listdir(rd.path) if n != LOCK_FILE] if os.path.isdir(rd.path) else []
        if entries:
            if not overwrite:
                raise FileExistsError(
                    f"run directory {rd.path} exists: pass --resume to continue it or --overwrite to start it again"
                )
            ours, foreign = foreign_entries(rd.path)
            if not ours:
                raise FileExistsError(
                    f"refusing to overwrite {rd.path}: not a tr_jax run directory (it holds {_listing(foreign)})"
                )
            if foreign:
                raise FileExistsError(
                    f"refusing to overwrite {rd.path}: besides a tr_jax run's files it holds "
                    f"{_listing(foreign)} (move them away first)"
                )
        os.makedirs(rd.path, exist_ok=True)
        if hold is not None:
            hold(rd.path)
        for n in entries:
            target = os.path.join(rd.path, n)
            shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)
        return rd

    @classmethod
    def existing(cls, path: str) -> RunDir:
        """A run directory to resume or evaluate; errors name what is missing."""
        rd = cls(path)
        if not os.path.isdir(rd.path):
            raise FileNotFoundError(f"no run directory {rd.path}")
        for f in (rd.config, rd.run):
            if not os.path.exists(f):
                raise FileNotFoundError(f"{rd.path} is not a tr_jax run directory: {os.path.basename(f)} is missing")
        return rd

    def untrained(self) -> bool:
        """True while the run directory holds no training yet: no ``metrics.jsonl``, no checkpoint."""
        steps = [n for n in os.listdir(self.checkpoints) if n.isdigit()] if os.path.isdir(self.checkpoints) else []
        return not os.path.exists(self.metrics) and not steps

    def read_metrics(self) -> list:
        """The rows of metrics.jsonl under this version's metric names (:func:`current_metric_names`: a run
        written by an older version reads like a new one); ``RunDirError`` if an (iteration, seed) appears twice."""
        return [current_metric_names(r) for r in unique_rows(self.metrics, read_jsonl(self.metrics))]

    def first_metrics_row(self) -> dict:
        """The first row of metrics.jsonl under this version's metric names, without reading the rest ({} if
        there is none yet): which metrics the run records."""
        return current_metric_names(first_row(self.metrics))

    def read_eval(self) -> list:
        """The rows of eval.jsonl (``RunDirError`` if an (iteration, seed) appears twice)."""
        return unique_rows(self.eval, read_jsonl(self.eval))

    def info(self) -> dict:
        """The contents of ``run.json``."""
        return read_json(self.run)

    def write_info(self, seed: int, num_seeds: int, extra: dict | None = None) -> None:
        """Writes ``run.json``: seed, number of seeds, creation time, package versions and ``extra``."""
        write_json(
            self.run,
            {
                "seed": seed,
                "num_seeds": num_seeds,
                "created": datetime.datetime.now().isoformat(timespec="seconds"),
                "versions": versions(),
                **(extra or {}),
            },
        )


class RunLock:
    """An exclusive lock on a run (or sweep) directory, held by the process that trains in it.

    ``fcntl.flock`` on ``DIR/.lock``, which records the holder's host, pid and
    start time. A second process fails at once with :class:`RunDirLocked`
    naming the holder (a process stopped with SIGSTOP still holds it). The
    kernel releases the lock when its holder dies, so the lock of a killed
    process is taken over (``note`` then says so); a clean release removes
    the file. Only the primary process locks (a no-op elsewhere, like every
    write of this module). flock may not work on some network filesystems
    (older NFS): there it either fails (an ``OSError`` naming the file) or
    locks only against processes on the same host.
    """

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)
        self.path = os.path.join(self.directory, LOCK_FILE)
        self.note: str | None = None  # set when a lock left by a process that is gone was taken over
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Takes the lock (raises :class:`RunDirLocked` naming the holder when another process has it); returns self."""
        if not _writer():
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunDirLocked(
                    f"run directory {self.directory} is in use by {_who(holder)}: wait for that "
                    f"process to end or stop it first (a stopped process still holds it)"
                ) from None
            except OSError as e:
                os.close(fd)
                raise OSError(
                    e.errno, f"cannot lock {self.path}: {e.strerror} (flock may not work on this network filesystem)"
                ) from None
            try:  # released (and the file removed) between our open and flock: lock the new file instead
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        previous = _holder(fd)
        if previous:
            gone = previous.get("host") == socket.gethostname() and not _alive(previous.get("pid"))
            self.note = f"took over the lock of {self.directory} left by {_who(previous)}" + (
                ": that process is gone" if gone else ", which no longer holds it"
            )
        me = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
            }
        ).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me + b"\n", 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Releases the lock and removes the lock file (no-op when not held)."""
        if self._fd is None:
            return
        _remove(self.path)  # before unlocking: a process that opened the old file sees it gone and retries
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> dict | None:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"null")
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _who(info: dict | None) -> str:
    if not info:
        return "another process (not yet recorded in its .lock)"
    return f"pid {info.get('pid')} on host {info.get('host')} (since {info.get('started')})"


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, TypeError, ValueError):
        return True
    return True


_WRITE_ERRORS = {
    errno.ENOSPC: "disk full while writing",
    errno.EDQUOT: "disk quota exceeded while writing",
    errno.EROFS: "read-only file system: cannot write",
    errno.EACCES: "permission denied writing",
    errno.EPERM: "permission denied writing",
}


def write_failure(e: OSError, checkpoints: str | None, resume: str | None) -> str | None:
    """One line for a failed write ``e`` (a full disk, a read-only or forbidden directory) in a run whose
    checkpoints are in ``checkpoints`` and which resumes from directory ``resume`` (None: nothing written yet);
    None for other errors."""
    if e.errno not in _WRITE_ERRORS:
        return None
    steps = (
        sorted(int(n) for n in os.listdir(checkpoints) if n.isdigit())
        if checkpoints and os.path.isdir(checkpoints)
        else []
    )
    intact = (
        f"the run directory holds checkpoints up to iteration {steps[-1]} ({', '.join(map(str, steps))}); "
        f"resume with tr-jax train --resume {resume} once it can be written"
        if steps
        else "no checkpoint had been written"
    )
    return f"{_WRITE_ERRORS[e.errno]} {e.filename or 'the run directory'} ({e.strerror}); {intact}"


def unwritable(path: str) -> tuple[int, str] | None:
    """``(errno, why)`` when directory ``path`` cannot be written, or made where it does not exist yet (the
    nearest of its parents that exists is a file, on a read-only file system, or not writable); None if it can."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return errno.ENOTDIR, f"{existing} is a file, not a directory"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return errno.EROFS, f"{existing} is on a read-only file system"
    return errno.EACCES, f"{existing} is not writable"


def check_writable(outputs: Iterable[tuple[str, str]]) -> None:
    """Raises :class:`RunDirWriteError` (one line naming the directory and why) unless every ``(what,
    directory)`` of ``outputs`` can be written (:func:`unwritable`). Called before anything is created, so
    that a run that could not write an output fails before it leaves a half-made run directory behind."""
    for what, path in outputs:
        why = unwritable(path)
        if why is not None:
            code, problem = why
            raise RunDirWriteError(
                f"cannot write the {what} {os.path.abspath(path)}: {problem} (nothing was written)",
                OSError(code, os.strerror(code), path),
            )
