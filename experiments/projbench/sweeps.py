"""Running many benchmark cases: in-process, in child processes with a
timeout (a guard against a jaxlib CPU LAPACK deadlock), and over bounds."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import jax

from projbench.cases import PROJECTIONS, _key, estimate_gb, floor_project, make_gaussians
from projbench.report import format_row
from projbench.timing import make_functions, run_case, timed_functions

CLI = Path(__file__).resolve().parents[1] / "bench_projections.py"


def _projection_fns(module, proj: str):
    fn_name, parts_name, _ = PROJECTIONS[proj]
    project, parts = getattr(module, fn_name, None), getattr(module, parts_name, None)
    if project is None or parts is None:
        raise ImportError(f"tr_jax.projections has no {fn_name}/{parts_name} (not landed yet?)")
    return project, parts


def sweep(
    cases, *, eps_mean: float, eps_cov: float, repeats: int, max_gb: float, budget_s: float, seed: int, log=print
):
    """Runs ``cases`` (tuples ``(cov, k, dtype, n, projs)``); returns result rows."""
    from tr_jax import projections

    rows = []
    for cov, k, dtype, n, projs in cases:
        base = dict(cov=cov, k=k, n=n, dtype=dtype)
        gb = estimate_gb(n, k, dtype, cov)
        if gb > max_gb:
            for proj in projs:
                rows.append(dict(base, proj=proj, est_gb=round(gb, 3), status="skipped (memory)"))
                log(format_row(rows[-1]))
            continue
        key = _key(seed, k)
        t0 = time.perf_counter()
        gauss = jax.block_until_ready(make_gaussians(key, n, k, dtype, cov))
        gen_s = time.perf_counter() - t0
        floor = timed_functions(floor_project(cov), eps_mean, eps_cov)
        for proj in projs:
            row = dict(base, proj=proj, est_gb=round(gb, 3), inputs_s=round(gen_s, 3))
            try:
                fns = make_functions(*_projection_fns(projections, proj), eps_mean, eps_cov)
                row.update(run_case(proj, fns, gauss, jax.random.fold_in(key, 1), (repeats, budget_s), floor=floor))
            except Exception as err:  # one failing case must not end the sweep
                row["status"] = f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                row["traceback"] = traceback.format_exc(limit=3)
            rows.append(row)
            log(format_row(row))
        del gauss
    return rows


def isolated_sweep(cases, *, options: list, timeout_s: float, retries: int, max_gb: float, log=print):
    """Like :func:`sweep`, but each (case, projection) runs in a child process.

    A child that does not finish within ``timeout_s`` is killed and retried
    up to ``retries`` times; then the row says "hung". This guards the sweep
    against a jaxlib 0.10 CPU deadlock: batched LAPACK calls (cholesky, solve,
    eigh, ...) fan their batch out to the intra-op thread pool and block on
    it, so two of them running concurrently on a 2-thread pool can wait
    forever. ``options`` are the CLI flags passed through to every child.
    """
    rows = []
    for cov, k, dtype, n, projs in cases:
        for proj in projs:
            base = dict(cov=cov, k=k, n=n, dtype=dtype, proj=proj)
            gb = estimate_gb(n, k, dtype, cov)
            if gb > max_gb:
                rows.append(dict(base, est_gb=round(gb, 3), status="skipped (memory)"))
                log(format_row(rows[-1]))
                continue
            row = None
            for attempt in range(retries + 1):
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "case.json"
                    argv = [sys.executable, str(CLI), *options, "--proj", proj, "--cov", cov]
                    argv += ["--k", str(k), "--n", str(n), "--dtype", dtype, "--out", str(out)]
                    try:
                        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
                    except subprocess.TimeoutExpired:
                        row = dict(
                            base,
                            est_gb=round(gb, 3),
                            status=f"hung (killed after {timeout_s:g} s, {attempt + 1} tries)",
                        )
                        continue
                    if out.exists():
                        row = json.loads(out.read_text())["results"][0]
                    else:
                        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                        row = dict(
                            base, est_gb=round(gb, 3), status=f"error: child exited {done.returncode}: {tail[0]}"
                        )
                    row["attempts"] = attempt + 1
                    break
            rows.append(row)
            log(format_row(row))
    return rows


def eps_sweep(projs, covs, ks, dtypes, eps_values, n: int, seed: int, log=print):
    """Bound accuracy (no timing) for a list of bounds (eps_mean = eps_cov = eps)."""
    from tr_jax import projections

    rows = []
    for cov in covs:
        for k in ks:
            for dtype in dtypes:
                key = _key(seed, k)
                gauss = make_gaussians(key, n, k, dtype, cov)
                for proj in projs:
                    for eps in eps_values:
                        row = dict(proj=proj, cov=cov, k=k, n=n, dtype=dtype, eps=eps)
                        try:
                            fns = make_functions(*_projection_fns(projections, proj), eps, eps)
                            acc = run_case(proj, fns, gauss, key, None)
                            row.update({f: acc[f] for f in ("cov_rel_err", "cov_active", "mean_rel_err", "status")})
                        except Exception as err:
                            row["status"] = f"error: {type(err).__name__}: {err}"
                        rows.append(row)
                        status = row["status"] if row["status"] != "ok" else ""
                        log(
                            f"  eps-sweep {proj:4s} {cov:4s} k={k:<2d} {dtype:7s} eps={eps:8.1e}  "
                            f"cov rel err {row.get('cov_rel_err', float('nan')):9.2e}  "
                            f"mean rel err {row.get('mean_rel_err', float('nan')):9.2e}  {status}"
                        )
    return rows
