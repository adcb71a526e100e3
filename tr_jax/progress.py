"""Progress display of a training run: a live ``rich`` bar on a terminal, plain lines otherwise.

:func:`make_progress` picks the display; both kinds take the same calls:
``start(total_steps, done_steps)``, ``status(text)`` (e.g. "compiling"),
``update(done_steps, steps_per_s, eta_s, fields)`` after every chunk,
``log(text)`` for events (compilation, resume, divergence), ``close()``.
``fields`` is a dict of already-formatted strings (missing values are empty
strings, never "nan", and the field is left out; a field of several parts
shows a missing part as "-", see :func:`fmt_parts`). Speed and ETA come from the caller, which knows how
much of the wall time was compilation.
"""

from __future__ import annotations

import datetime
import math
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from rich.progress import TaskID


def fmt(value: Any, spec: str = ".4g") -> str:
    """Formats a number; None/NaN (a value that does not exist yet) gives ""."""
    if value is None:
        return ""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "" if not math.isfinite(v) else format(v, spec)


def fmt_parts(values: Iterable[object], spec: str = ".4g", suffix: str = "", sep: str = "/") -> str:
    """Several numbers as one field, e.g. ``"12%/80%"``: a missing (None/NaN) part is ``"-"``; all missing gives ""."""
    parts = [fmt(v, spec) for v in values]
    return sep.join(p + suffix if p else "-" for p in parts) if any(parts) else ""


def _eta(seconds: float | None) -> str:
    return "" if seconds is None or not math.isfinite(seconds) else str(datetime.timedelta(seconds=int(seconds)))


def summary_line(done: int, total: int, steps_per_s: float, eta_s: float | None, fields: dict[str, str]) -> str:
    """One plain line: env steps (per seed), speed (env steps/s over all seeds), ETA, then
    ``name value`` for every non-empty field."""
    parts = [
        f"{done:>{len(str(total)) + 3},}/{total:,} steps",
        f"{fmt(steps_per_s, ',.0f'):>7} steps/s",
        f"ETA {_eta(eta_s):>8}",
    ]
    parts += [f"{k} {v}" for k, v in fields.items() if v != ""]
    return " | ".join(parts)


class Progress(Protocol):
    """What every progress display takes (:class:`PlainProgress`, :class:`RichProgress`, :class:`NoProgress`)."""

    def start(self, total: int, done: int = 0) -> None:
        """Starts the display of a run of ``total`` env steps (per seed), ``done`` of them already done."""

    def status(self, text: str) -> None:
        """Shows what the run is doing now (e.g. "compiling")."""

    def log(self, text: str) -> None:
        """Reports an event (compilation, resume, divergence) on a line of its own."""

    def update(self, done: int, steps_per_s: float, eta_s: float | None, fields: dict[str, str]) -> None:
        """After a chunk: env steps done (per seed), speed (env steps/s over all seeds), ETA in seconds (None:
        unknown) and formatted fields (empty strings are left out)."""

    def close(self) -> None:
        """Ends the display."""


class PlainProgress(Progress):
    """One line per update (for logs and pipes)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def start(self, total: int, done: int = 0) -> None:
        self.total = total

    def status(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def log(self, text: str) -> None:
        self.status(text)

    def update(self, done: int, steps_per_s: float, eta_s: float | None, fields: dict[str, str]) -> None:
        print(summary_line(done, self.total, steps_per_s, eta_s, fields), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichProgress(Progress):
    """A live bar (env steps, steps/s, ETA) with the latest fields on a line below it."""

    def __init__(self) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
        from rich.text import Text

        self.console = Console()
        self._bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=self.console,
        )
        self._info = Text("")
        self._live = Live(Group(self._bar, self._info), console=self.console, refresh_per_second=4)
        self._task: TaskID | None = None

    def start(self, total: int, done: int = 0) -> None:
        self._live.start()
        self._task = self._bar.add_task("train", total=total, completed=done, speed="", eta="")

    def status(self, text: str) -> None:
        self._info.plain = text

    def log(self, text: str) -> None:
        self.console.print(text)

    def update(self, done: int, steps_per_s: float, eta_s: float | None, fields: dict[str, str]) -> None:
        if self._task is None:
            raise RuntimeError("RichProgress.update before start")
        self._bar.update(self._task, completed=done, speed=f"{fmt(steps_per_s, ',.0f')} steps/s", eta=_eta(eta_s))
        self._info.plain = "  ".join(f"{k} {v}" for k, v in fields.items() if v != "")

    def close(self) -> None:
        self._live.stop()


class NoProgress(Progress):
    """Shows nothing (``progress="none"``)."""

    def start(self, total: int, done: int = 0) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def log(self, text: str) -> None:
        pass

    def update(self, done: int, steps_per_s: float, eta_s: float | None, fields: dict[str, str]) -> None:
        pass

    def close(self) -> None:
        pass


class LogOnly(NoProgress):
    """Only the events (``log``), each line prefixed: what the secondary processes of a multi-host run show, so
    that the progress lines are not printed once per process."""

    def __init__(self, prefix: str, stream: TextIO | None = None):
        self.prefix, self.stream = prefix, stream

    def log(self, text: str) -> None:
        print(f"{self.prefix}{text}", file=self.stream or sys.stdout, flush=True)


def make_progress(kind: str = "auto") -> Progress:
    """``"auto"`` (a bar on a terminal, lines otherwise), ``"bar"``, ``"lines"`` or ``"none"``."""
    if kind == "auto":
        kind = "bar" if sys.stdout.isatty() else "lines"
    table = {"bar": RichProgress, "lines": PlainProgress, "none": NoProgress}
    if kind not in table:
        raise ValueError(f"unknown progress display {kind!r}; expected one of {('auto', *table)}")
    return table[kind]()
