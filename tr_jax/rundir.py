"""The files of a run directory ``runs/<name>/``.

    config.json     the resolved TrainConfig, every field (usable as a config file)
    run.json        seed, number of seeds, creation time, package versions
    metrics.jsonl   one line per iteration and seed: {"iteration", "seed", "env_steps", metric: value|null}
    eval.jsonl      one line per evaluation and seed: returns/lengths, mean and std over episodes
    checkpoints/    Orbax checkpoints (:mod:`tr_jax.checkpoint`)
    summary.json    written when the run stops: status, final/best eval return per seed, speed, versions
    mujoco.log      MuJoCo's own warnings, if it had any

Multi-host (``jax.distributed``): only process 0 writes (every write below is
a no-op elsewhere; checkpoints are written by all processes through Orbax).
JSON files are written atomically (temporary file, then ``os.replace``);
``.jsonl`` files are appended and flushed line by line, and on resume cut back
to the iterations before the checkpoint (a torn last line from a kill is
dropped). Values that do not exist (no finished episode yet: NaN) are ``null``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
from importlib import metadata
from typing import Iterable, Optional

import numpy as np

VERSIONED = ("tr_jax", "jax", "jaxlib", "flax", "optax", "brax", "mujoco", "orbax-checkpoint", "numpy")


def versions() -> dict:
    out = {}
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
    """Writes ``obj`` to ``path`` atomically (a kill leaves the old file or the new one)."""
    if not _writer():
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def read_jsonl(path: str) -> list:
    """Every complete line of ``path`` (a torn last line is skipped); [] if missing."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn by a kill
            rows.append(json.loads(line))
    return rows


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
    def create(cls, path: str, overwrite: bool = False) -> "RunDir":
        """A new, empty run directory; an existing non-empty one is an error unless ``overwrite``."""
        rd = cls(path)
        if not _writer():
            return rd
        if os.path.exists(rd.path) and os.listdir(rd.path):
            if not overwrite:
                raise FileExistsError(f"run directory {rd.path} exists: pass --resume to continue it "
                                      f"or --overwrite to start it again")
            shutil.rmtree(rd.path)
        os.makedirs(rd.path, exist_ok=True)
        return rd

    @classmethod
    def existing(cls, path: str) -> "RunDir":
        """A run directory to resume or evaluate; errors name what is missing."""
        rd = cls(path)
        if not os.path.isdir(rd.path):
            raise FileNotFoundError(f"no run directory {rd.path}")
        for f in (rd.config, rd.run):
            if not os.path.exists(f):
                raise FileNotFoundError(f"{rd.path} is not a tr_jax run directory: {os.path.basename(f)} is missing")
        return rd

    def append(self, path: str, rows: Iterable[dict]) -> None:
        """Appends one JSON line per row and flushes them to disk."""
        if not _writer():
            return
        text = "".join(json.dumps({k: clean(v) for k, v in row.items()}, allow_nan=False) + "\n" for row in rows)
        with open(path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def cut(self, path: str, before_iteration: int) -> int:
        """Keeps only the rows of ``path`` with ``iteration < before_iteration`` (and drops a torn
        last line); returns how many lines were dropped."""
        if not os.path.exists(path) or not _writer():
            return 0
        with open(path) as f:
            lines = f.readlines()
        keep = [ln for ln in lines if ln.endswith("\n") and json.loads(ln)["iteration"] < before_iteration]
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.writelines(keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return len(lines) - len(keep)

    def read_metrics(self) -> list:
        return read_jsonl(self.metrics)

    def read_eval(self) -> list:
        return read_jsonl(self.eval)

    def info(self) -> dict:
        return read_json(self.run)

    def write_info(self, seed: int, num_seeds: int, extra: Optional[dict] = None) -> None:
        write_json(self.run, {"seed": seed, "num_seeds": num_seeds,
                              "created": datetime.datetime.now().isoformat(timespec="seconds"),
                              "versions": versions(), **(extra or {})})
