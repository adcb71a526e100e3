"""Copies the compact results of a study (``experiments/study.sh OUT``) into the repository::

    python3 experiments/study_export.py OUT [DEST]      # DEST default: experiments/study

For every run directory under ``OUT/runs/<env>/<setup>/``, under ``OUT/<program>/runs/<env>/<setup>/`` for each
of the study's other programs (:data:`PROGRAMS`: ``seed100``, 5 more seeds from base seed 100; ``budget3m``, the
paper's 3,000,320 env steps; ``experiments/factors.sh``) and every sweep setting under
``OUT/sensitivity/runs/<env>/<sweep>/<setting>/`` (with the sweep's ``sweep.json``), DEST gets the same path
holding:

* ``config.json``, ``run.json``, ``summary.json`` (when written) and ``eval.jsonl``, as they are;
* ``metrics.jsonl`` thinned to one row per ``BLOCK`` iterations and seed: each row is the block's mean of every
  column (``*_max`` columns: the block's max) at the block's last ``iteration``/``env_steps``, with
  ``block_rows``, floats rounded to ``DIGITS`` significant digits (a 2M-step run has ~4,900 rows of ~1 KB);
* ``metric_summary.json``: the table columns that come from the metrics (:func:`tr_jax.compare.metric_summary`),
  computed from the WHOLE metrics before thinning, so the report's acting-policy bound use and max KL are exact.

Plus ``OUT/timings.json`` (and each program's), merged into DEST's: OUT's entries replace those of the same run.
Never checkpoints, locks or logs. Runs still training are exported as they are (the report marks their cells
incomplete); running the export again replaces them. The export MERGES into DEST: a run DEST holds and OUT lacks
(exported from an earlier OUT whose raw runs are gone) is kept as it is. Reads OUT only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from tr_jax import compare  # noqa: E402
from tr_jax import rundir as R  # noqa: E402

BLOCK = 20  # iterations per exported metrics row
DIGITS = 4  # significant digits of exported floats
COPIED = ("config.json", "run.json", "summary.json", "eval.jsonl")
PROGRAMS = ("seed100", "budget3m")  # OUT/<program>/runs: the study's programs beside OUT/runs (experiments/factors.sh)
TIMINGS = "timings.json"


def _round(x):
    if isinstance(x, float):
        return float(f"{x:.{DIGITS}g}") if np.isfinite(x) else None
    return x


def _clean(obj):
    """JSON-able (NaN -> null, tuples -> lists, numpy scalars unwrapped)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return R.clean(obj)


def thin(rows: list, block: int = BLOCK) -> list:
    """``metrics.jsonl`` rows -> one row per ``block`` consecutive iterations per seed (see the module docstring)."""
    out = []
    for seed in sorted({r["seed"] for r in rows}):
        mine = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["iteration"])
        for i in range(0, len(mine), block):
            chunk = mine[i : i + block]
            row = {
                "iteration": chunk[-1]["iteration"],
                "seed": seed,
                "env_steps": chunk[-1]["env_steps"],
                "block_rows": len(chunk),
            }
            for key in chunk[0]:
                if key in row:
                    continue
                values = [
                    r[key]
                    for r in chunk
                    if isinstance(r.get(key), (int, float)) and r[key] is not None and not isinstance(r[key], bool)
                ]
                if isinstance(chunk[0][key], bool):  # e.g. "diverged": any in the block
                    row[key] = any(bool(r.get(key)) for r in chunk)
                elif values:
                    row[key] = _round(float(np.max(values) if key.endswith("_max") else np.mean(values)))
                else:
                    row[key] = None
            out.append(row)
    return out


def export_run(src: str, dest: str) -> int:
    """Exports one run directory, replacing ``dest``'s copy of it (a file the run no longer has, e.g. the
    ``summary.json`` of a finished run now resumed, goes); returns the bytes written."""
    os.makedirs(dest, exist_ok=True)
    for name in COPIED:
        if os.path.exists(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(dest, name))
        elif os.path.exists(os.path.join(dest, name)):
            os.remove(os.path.join(dest, name))
    rd = R.RunDir(src)
    metrics = rd.read_metrics()
    config = R.read_json(rd.config)
    with open(os.path.join(dest, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in thin(metrics))
    with open(os.path.join(dest, compare.METRIC_SUMMARY), "w") as f:
        json.dump(_clean(compare.metric_summary(config, metrics)), f, indent=1)
        f.write("\n")
    return sum(os.path.getsize(os.path.join(dest, n)) for n in os.listdir(dest))


def run_dirs(out: str) -> list:
    """The run directories of a study OUT, relative to it (those with config.json and run.json)."""
    found = []
    for base in ("runs", os.path.join("sensitivity", "runs"), *(os.path.join(p, "runs") for p in PROGRAMS)):
        for path, dirs, files in os.walk(os.path.join(out, base)):
            dirs[:] = sorted(d for d in dirs if d != "checkpoints")
            if "config.json" in files and "run.json" in files:
                found.append(os.path.relpath(path, out))
    return found


def export(out: str, dest: str) -> dict:
    """Exports every run of ``out`` into ``dest``; returns ``{relative path: bytes}``."""
    if not os.path.isdir(os.path.join(out, "runs")):
        raise FileNotFoundError(f"{out} holds no runs/ directory: not the OUT of experiments/study.sh")
    sizes = {}
    for rel in run_dirs(out):
        sizes[rel] = export_run(os.path.join(out, rel), os.path.join(dest, rel))
        sweep = os.path.join(out, os.path.dirname(rel), R.SWEEP_FILE)
        if os.path.exists(sweep):
            shutil.copyfile(sweep, os.path.join(dest, os.path.dirname(rel), R.SWEEP_FILE))
    for program in ("", *PROGRAMS):
        merge_timings(os.path.join(out, program, TIMINGS), os.path.join(dest, program, TIMINGS))
    return sizes


def merge_timings(src: str, dest: str) -> None:
    """Merges the ``timings.json`` at ``src`` (if any) into ``dest``'s: ``src``'s runs replace the same runs'
    entries, ``dest``'s other runs stay (their raw runs may be gone)."""
    if not os.path.exists(src):
        return
    merged = {**(R.read_json(dest) if os.path.exists(dest) else {}), **R.read_json(src)}
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    R.write_json(dest, merged)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="study_export.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out", help="the study's output directory (experiments/study.sh OUT)")
    p.add_argument(
        "dest",
        nargs="?",
        default=os.path.join(ROOT, "experiments", "study"),
        help="where to write (default experiments/study)",
    )
    args = p.parse_args(argv)
    try:
        sizes = export(args.out, args.dest)
    except (OSError, R.RunDirError) as e:
        print(f"study_export.py: error: {e}", file=sys.stderr)
        return 2
    for rel, size in sizes.items():
        print(f"{rel}: {size / 1024:.0f} KiB")
    print(f"{len(sizes)} runs, {sum(sizes.values()) / 2**20:.1f} MiB in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
