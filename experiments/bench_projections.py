"""Benchmark of the trust-region projections: speed and achieved bound accuracy.

For each projection (kl, w2, frob), covariance type (diag, full), action
dimension k, number of states N and dtype it measures

* forward time: ``jit(projection)``;
* forward+backward time: ``jit(grad(sum(c_mean * mean_p) + sum(c_scale * scale_p)))``
  with respect to the new mean and scale, for fixed random cotangents c;
* the achieved accuracy: over the states whose covariance (mean) part exceeds
  its bound before projection ("active"), the maximum of
  ``|part(projected) - eps| / eps``, with the parts evaluated in float64 on the
  returned values (so a float32 row states the accuracy of the float32 output).

Timing: inputs are generated on the device once per (cov, k, dtype, N); each
function is compiled ahead of time (the compile time is reported separately),
run once to warm up, then timed ``--repeats`` times with ``block_until_ready``;
the median is reported (fewer repeats for very slow cases, see
``--time-budget``).

Inputs follow the issue ("Targets"), so the numbers compare with the C++
reference measured on the same machine kind:

* diag: old variances log-uniform in [0.1, 10]; new = old * log-uniform
  [0.1, 10] per dimension; about 10% of the states only move slightly (log
  variance ratio uniform in +-0.006), which keeps them inside the KL region.
* full: old = (A A^T + k I) / (2k), A standard normal; new = M old M^T with
  M = I + 0.3 G / sqrt(k), G standard normal (0.003 instead of 0.3 for ~10%).
* means: old standard normal; new = old + c * scale_old @ z / sqrt(k), z
  standard normal, c = 0.3 (0.003 for the same ~10% of states).
* full scales are lower Cholesky factors for kl and frob, the symmetric
  square root for w2.

Usage::

    python experiments/bench_projections.py                # default sweep
    python experiments/bench_projections.py --targets      # only the issue's target cases
    python experiments/bench_projections.py --quick        # tiny smoke run
    python experiments/bench_projections.py --proj kl --cov full --k 17 --n 4096 --dtype float64

Results go to a table on stdout and to JSON (``--out``, default
``results/bench_projections.json``). Cases whose estimated peak memory
exceeds ``--max-gb`` are reported as "skipped (memory)".

On a CPU with jaxlib 0.10.x, use ``--case-timeout 300``: batched LAPACK
calls there can deadlock the XLA:CPU thread pool when two run concurrently
(seen on 2 cores with the full-covariance projections); with the flag each
case runs in a child process that is killed, retried, and reported as "hung"
instead of stalling the whole sweep.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

try:
    import tr_jax  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_OUT = "results/bench_projections.json"
PROJECTIONS = {
    # name: (projection function, parts function, full-scale parameterisation)
    "kl": ("kl_projection", "kl_parts", "chol"),
    "w2": ("wasserstein_projection", "wasserstein_parts", "sqrt"),
    "frob": ("frobenius_projection", "frobenius_parts", "chol"),
}
DEFAULT_N = (1024, 4096, 65536, 1048576)
QUICK = dict(n=[64], k=[3], dtype=["float64"])  # --quick defaults (explicit flags win)
SLIGHT_FRACTION = 0.1
# Rough peak memory of one forward+backward case, in units of one scale-sized
# array ([N, k] or [N, k, k]): inputs, cotangents, outputs, solver
# intermediates and backward residuals. Deliberately on the safe side.
MEMORY_FACTOR = 16


class Target(NamedTuple):
    """One of the issue's target cases: forward+backward time at most ``max_ms``."""

    name: str
    cov: str
    n: int
    k: int
    max_ms: float
    cpp_ms: float  # the C++ reference, forward + backward, measured on this machine kind


TARGETS = (
    Target("KL diag N=65536 k=17", "diag", 65536, 17, 26.0, 261.0),
    Target("KL full N=4096 k=17", "full", 4096, 17, 200.0, 1095.0),
    Target("KL full N=65536 k=6", "full", 65536, 6, 420.0, 4262.0),
)
MAX_W2_RATIO = 5.0  # KL diag fwd+bwd <= 5x W2 diag fwd+bwd on the same inputs
TARGET_ACCURACY_F64 = 1e-8


# --------------------------------------------------------------------------- inputs


def _key(seed: int, k: int):
    """PRNG key per (seed, k). "rbg" compiles much faster than threefry on CPU."""
    return jax.random.fold_in(jax.random.key(seed, impl="rbg"), k)


def make_gaussians(key, n: int, k: int, dtype, cov: str) -> dict:
    """Old and new Gaussians for ``n`` states, generated on the device.

    Returns a dict with ``mean``, ``old_mean`` ``[n, k]`` and either ``std``,
    ``old_std`` ``[n, k]`` (diag) or ``cov``, ``old_cov`` ``[n, k, k]`` (full).
    """
    return _make_gaussians(key, n, k, jnp.dtype(dtype), cov)


def _gen(n, k, dtype, cov):
    def gen(key):
        keys = jax.random.split(key, 6)
        slight = jax.random.uniform(keys[0], (n,)) < SLIGHT_FRACTION
        step = jnp.where(slight, 0.003, 0.3).astype(dtype)  # [n]
        old_mean = jax.random.normal(keys[1], (n, k), dtype)
        z = jax.random.normal(keys[2], (n, k), dtype) * (step / math.sqrt(k))[:, None]
        if cov == "diag":
            lo, hi = math.log(0.1), math.log(10.0)
            u = jax.random.uniform(keys[3], (n, k), dtype)
            old_var = jnp.exp(lo + u * (hi - lo))
            u = jax.random.uniform(keys[4], (n, k), dtype)
            log_ratio = jnp.where(slight[:, None], 0.006 * (2.0 * u - 1.0), lo + u * (hi - lo))
            old_std = jnp.sqrt(old_var)
            return dict(
                mean=old_mean + old_std * z,
                old_mean=old_mean,
                std=jnp.sqrt(old_var * jnp.exp(log_ratio)),
                old_std=old_std,
            )
        eye = jnp.eye(k, dtype=dtype)
        a = jax.random.normal(keys[3], (n, k, k), dtype)
        old_cov = (a @ jnp.swapaxes(a, -1, -2) + k * eye) / (2 * k)
        g = jax.random.normal(keys[4], (n, k, k), dtype)
        m = eye + g * (step / math.sqrt(k))[:, None, None]
        new_cov = m @ old_cov @ jnp.swapaxes(m, -1, -2)
        new_cov = 0.5 * (new_cov + jnp.swapaxes(new_cov, -1, -2))
        old_chol = jnp.linalg.cholesky(old_cov)
        return dict(
            mean=old_mean + (old_chol @ z[..., None])[..., 0],
            old_mean=old_mean,
            cov=new_cov,
            old_cov=old_cov,
        )

    return gen


_GEN_CACHE: dict = {}


def _make_gaussians(key, n, k, dtype, cov):
    sig = (n, k, str(dtype), cov)
    if sig not in _GEN_CACHE:
        _GEN_CACHE[sig] = jax.jit(_gen(n, k, dtype, cov))
    return _GEN_CACHE[sig](key)


@jax.jit
def _chol(cov):
    return jnp.linalg.cholesky(cov)


@jax.jit
def _sqrtm(cov):
    w, v = jnp.linalg.eigh(cov)
    s = (v * jnp.sqrt(jnp.clip(w, 0.0))[..., None, :]) @ jnp.swapaxes(v, -1, -2)
    return 0.5 * (s + jnp.swapaxes(s, -1, -2))


def scales_for(gauss: dict, param: str):
    """``(scale, old_scale)`` in a parameterisation: "diag", "chol" or "sqrt"."""
    if "std" in gauss:
        return gauss["std"], gauss["old_std"]
    if param not in gauss:  # cached: kl and frob share the Cholesky factors
        fn = _chol if param == "chol" else _sqrtm
        gauss[param] = jax.block_until_ready((fn(gauss["cov"]), fn(gauss["old_cov"])))
    return gauss[param]


def estimate_gb(n: int, k: int, dtype, cov: str) -> float:
    """Rough peak memory of one case in GB (see ``MEMORY_FACTOR``)."""
    per_state = k * (k if cov == "full" else 1) * jnp.dtype(dtype).itemsize
    return MEMORY_FACTOR * n * per_state / 1e9


# --------------------------------------------------------------------------- timing


def _time_compiled(compiled, args, repeats: int, budget_s: float):
    """Median wall time in ms of ``compiled(*args)`` after one warm-up call."""
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    first = time.perf_counter() - t0
    repeats = max(1, min(repeats, int(budget_s / max(first, 1e-9))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), repeats


def _compile(fn, args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def make_functions(project, parts, eps_mean: float, eps_cov: float):
    """Forward, forward+backward and accuracy functions (not yet jitted)."""

    def forward(mean, scale, old_mean, old_scale):
        return project(mean, scale, old_mean, old_scale, eps_mean, eps_cov)

    def weighted(mean, scale, old_mean, old_scale, c_mean, c_scale):
        p_mean, p_scale = forward(mean, scale, old_mean, old_scale)
        return jnp.sum(c_mean * p_mean) + jnp.sum(c_scale * p_scale)

    forward_backward = jax.grad(weighted, argnums=(0, 1))

    def accuracy(mean, scale, old_mean, old_scale, p_mean, p_scale, g_mean, g_scale):
        f64 = lambda *xs: [x.astype(jnp.float64) for x in xs]  # noqa: E731
        old = f64(old_mean, old_scale)
        m_in, c_in = parts(*f64(mean, scale), *old)
        m_out, c_out = parts(*f64(p_mean, p_scale), *old)

        def rel(before, after, eps):
            active = before > eps
            err = jnp.where(active, jnp.abs(after - eps) / eps, 0.0)
            return jnp.max(err, initial=0.0), jnp.mean(active)

        cov_err, cov_active = rel(c_in, c_out, eps_cov)
        mean_err, mean_active = rel(m_in, m_out, eps_mean)
        finite = lambda *xs: sum(jnp.sum(~jnp.isfinite(x)) for x in xs)  # noqa: E731
        # Largest bound violation over all states (should be ~0 relative).
        excess = jnp.max(jnp.maximum(c_out - eps_cov, 0.0)) / eps_cov
        return dict(
            cov_rel_err=cov_err,
            cov_active=cov_active,
            mean_rel_err=mean_err,
            mean_active=mean_active,
            cov_max_excess=excess,
            nonfinite_out=finite(p_mean, p_scale),
            nonfinite_grad=finite(g_mean, g_scale),
        )

    return forward, forward_backward, accuracy


def run_case(proj: str, fns, gauss: dict, key, repeats: int, budget_s: float, timing: bool = True) -> dict:
    """Times one projection on one input set; returns a result row."""
    forward, forward_backward, accuracy = fns
    scale, old_scale = scales_for(gauss, PROJECTIONS[proj][2])
    args = (gauss["mean"], scale, gauss["old_mean"], old_scale)
    k1, k2 = jax.random.split(key)
    cot = (jax.random.normal(k1, args[0].shape, args[0].dtype), jax.random.normal(k2, scale.shape, scale.dtype))
    row: dict = {}
    fwd_c, row["compile_fwd_s"] = _compile(forward, args)
    bwd_c, row["compile_fwd_bwd_s"] = _compile(forward_backward, args + cot)
    if timing:
        row["fwd_ms"], row["repeats_fwd"] = _time_compiled(fwd_c, args, repeats, budget_s)
        row["fwd_bwd_ms"], row["repeats_fwd_bwd"] = _time_compiled(bwd_c, args + cot, repeats, budget_s)
    out = fwd_c(*args)
    grads = bwd_c(*args, *cot)
    acc = jax.jit(accuracy)(*args, *out, *grads)
    row.update({name: float(v) for name, v in acc.items()})
    row["status"] = "ok"
    return row


# --------------------------------------------------------------------------- sweep


def _projection_fns(module, proj: str):
    fn_name, parts_name, _ = PROJECTIONS[proj]
    project, parts = getattr(module, fn_name, None), getattr(module, parts_name, None)
    if project is None or parts is None:
        raise ImportError(f"tr_jax.projections has no {fn_name}/{parts_name} (not landed yet?)")
    return project, parts


def sweep(cases, *, eps_mean: float, eps_cov: float, repeats: int, max_gb: float, budget_s: float, seed: int, log=print):
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
        for proj in projs:
            row = dict(base, proj=proj, est_gb=round(gb, 3), inputs_s=round(gen_s, 3))
            try:
                fns = make_functions(*_projection_fns(projections, proj), eps_mean, eps_cov)
                row.update(run_case(proj, fns, gauss, jax.random.fold_in(key, 1), repeats, budget_s))
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
                    argv = [sys.executable, str(Path(__file__).resolve()), *options, "--proj", proj, "--cov", cov]
                    argv += ["--k", str(k), "--n", str(n), "--dtype", dtype, "--out", str(out)]
                    try:
                        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
                    except subprocess.TimeoutExpired:
                        row = dict(base, est_gb=round(gb, 3), status=f"hung (killed after {timeout_s:g} s, {attempt + 1} tries)")
                        continue
                    if out.exists():
                        row = json.loads(out.read_text())["results"][0]
                    else:
                        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                        row = dict(base, est_gb=round(gb, 3), status=f"error: child exited {done.returncode}: {tail[0]}")
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
                            acc = run_case(proj, fns, gauss, key, 1, 0.0, timing=False)
                            row.update({f: acc[f] for f in ("cov_rel_err", "cov_active", "mean_rel_err", "status")})
                        except Exception as err:
                            row["status"] = f"error: {type(err).__name__}: {err}"
                        rows.append(row)
                        log(
                            f"  eps-sweep {proj:4s} {cov:4s} k={k:<2d} {dtype:7s} eps={eps:8.1e}  "
                            f"cov rel err {row.get('cov_rel_err', float('nan')):9.2e}  "
                            f"mean rel err {row.get('mean_rel_err', float('nan')):9.2e}  {row['status'] if row['status'] != 'ok' else ''}"
                        )
    return rows


# --------------------------------------------------------------------------- reporting

_HEADER = (
    f"{'proj':4s} {'cov':4s} {'k':>2s} {'N':>8s} {'dtype':7s} | {'fwd ms':>9s} {'fwd+bwd ms':>10s} | "
    f"{'compile s':>9s} | {'active':>6s} {'cov relerr':>10s} {'mean relerr':>11s} | status"
)


def _fmt(value, spec):
    return format(value, spec) if isinstance(value, (int, float)) else format("-", ">" + spec.lstrip("<>").split(".")[0].rstrip("efg"))


def format_row(row: dict) -> str:
    """One table line for a result row."""
    compile_s = row.get("compile_fwd_s", 0.0) + row.get("compile_fwd_bwd_s", 0.0) if "compile_fwd_s" in row else None
    active = 100.0 * row["cov_active"] if "cov_active" in row else None
    return (
        f"{row['proj']:4s} {row['cov']:4s} {row['k']:>2d} {row['n']:>8d} {row['dtype']:7s} | "
        f"{_fmt(row.get('fwd_ms'), '9.2f')} {_fmt(row.get('fwd_bwd_ms'), '10.2f')} | "
        f"{_fmt(compile_s, '9.1f')} | {_fmt(active, '5.1f')}% {_fmt(row.get('cov_rel_err'), '10.1e')} "
        f"{_fmt(row.get('mean_rel_err'), '11.1e')} | {row['status']}"
    )


def _find(rows, **kw):
    for row in rows:
        if all(row.get(key) == value for key, value in kw.items()) and row.get("status") == "ok":
            return row
    return None


def target_summary(rows) -> list[dict]:
    """Checks the issue's targets against measured rows (float64, fwd+bwd)."""
    summary = []
    for t in TARGETS:
        row = _find(rows, proj="kl", cov=t.cov, n=t.n, k=t.k, dtype="float64")
        entry = dict(name=t.name + " f64 fwd+bwd", target_ms=t.max_ms, cpp_ms=t.cpp_ms)
        if row is None:
            entry.update(measured_ms=None, met=None)
        else:
            entry.update(
                measured_ms=row["fwd_bwd_ms"],
                fwd_ms=row["fwd_ms"],
                met=row["fwd_bwd_ms"] <= t.max_ms,
                speedup_vs_cpp=t.cpp_ms / row["fwd_bwd_ms"],
                cov_rel_err_f64=row["cov_rel_err"],
                accuracy_met=row["cov_rel_err"] <= TARGET_ACCURACY_F64,
            )
        row32 = _find(rows, proj="kl", cov=t.cov, n=t.n, k=t.k, dtype="float32")
        if row32 is not None:
            entry["cov_rel_err_f32"] = row32["cov_rel_err"]
            entry["fwd_bwd_ms_f32"] = row32["fwd_bwd_ms"]
        if t.cov == "diag":
            w2 = _find(rows, proj="w2", cov="diag", n=t.n, k=t.k, dtype="float64")
            if w2 is not None and row is not None:
                ratio = row["fwd_bwd_ms"] / w2["fwd_bwd_ms"]
                entry.update(w2_fwd_bwd_ms=w2["fwd_bwd_ms"], ratio_to_w2=ratio, ratio_target=MAX_W2_RATIO, ratio_met=ratio <= MAX_W2_RATIO)
        summary.append(entry)
    return summary


def format_targets(summary) -> str:
    lines = ["Targets (KL, float64, forward+backward; C++ reference on this machine kind in brackets):"]
    for e in summary:
        if e["measured_ms"] is None:
            lines.append(f"  {e['name']:32s} not measured in this run")
            continue
        verdict = "MET" if e["met"] else f"MISSED by {e['measured_ms'] / e['target_ms']:.2f}x"
        line = (
            f"  {e['name']:32s} {e['measured_ms']:9.2f} ms (fwd {e['fwd_ms']:.2f})  target <= {e['target_ms']:g} ms  "
            f"[C++ {e['cpp_ms']:g} ms, {e['speedup_vs_cpp']:.1f}x faster]  {verdict}"
        )
        lines.append(line)
        acc = f"      bound accuracy max|KL_cov - eps|/eps: f64 {e['cov_rel_err_f64']:.1e}"
        acc += " (target 1e-8 " + ("MET)" if e["accuracy_met"] else "MISSED)")
        if "cov_rel_err_f32" in e:
            acc += f", f32 {e['cov_rel_err_f32']:.1e}"
        lines.append(acc)
        if "ratio_to_w2" in e:
            verdict = "MET" if e["ratio_met"] else "MISSED"
            lines.append(
                f"      ratio to W2 diag on the same inputs: {e['ratio_to_w2']:.2f}x "
                f"(W2 {e['w2_fwd_bwd_ms']:.2f} ms; target <= {MAX_W2_RATIO:g}x) {verdict}"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proj", type=_csv(str), default=list(PROJECTIONS), help="comma list of kl,w2,frob")
    p.add_argument("--cov", type=_csv(str), default=["diag", "full"], help="comma list of diag,full")
    p.add_argument("--k", type=_csv(int), default=None, help="action dimensions (comma list; default 6,17)")
    p.add_argument("--n", type=_csv(int), default=None, help=f"numbers of states (default {','.join(map(str, DEFAULT_N))})")
    p.add_argument("--dtype", type=_csv(str), default=None, help="comma list of float32,float64 (default both)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per case (median reported)")
    p.add_argument("--time-budget", type=float, default=10.0, help="max seconds of timed calls per function (fewer repeats if slow)")
    p.add_argument("--max-gb", type=float, default=8.0, help="skip cases whose estimated peak memory exceeds this")
    p.add_argument("--eps-mean", type=float, default=1e-3)
    p.add_argument("--eps-cov", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", action="store_true", help="run only the issue's target cases (KL + W2 diag, f64 and f32)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: N=64, k=3, float64, 1 repeat, no eps sweep")
    p.add_argument(
        "--eps-sweep", type=_csv(float), default=[], help="also report bound accuracy for these eps (comma list), k=17, N=4096"
    )
    p.add_argument(
        "--case-timeout",
        type=float,
        default=0.0,
        help="if > 0: run each case in a child process, killed (and retried) after this many seconds "
        "(guards against a jaxlib 0.10 CPU LAPACK deadlock; see isolated_sweep)",
    )
    p.add_argument("--retries", type=int, default=1, help="retries of a hung case (with --case-timeout)")
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON output path")
    return p


def build_cases(args) -> list[tuple]:
    """``(cov, k, dtype, n, projs)`` tuples in run order."""
    for name, allowed, given in (
        ("--proj", PROJECTIONS, args.proj),
        ("--cov", ("diag", "full"), args.cov),
        ("--dtype", ("float32", "float64"), args.dtype),
    ):
        bad = [x for x in given if x not in allowed]
        if bad:
            raise SystemExit(f"{name}: unknown {bad}; expected some of {list(allowed)}")
    if args.targets:
        cases = []
        for dtype in ("float64", "float32"):
            for t in TARGETS:
                cases.append((t.cov, t.k, dtype, t.n, ["kl", "w2"] if t.cov == "diag" else ["kl"]))
        return cases
    return [(cov, k, dtype, n, list(args.proj)) for cov in args.cov for k in args.k for dtype in args.dtype for n in sorted(args.n)]


def main(argv=None) -> dict:
    """Runs the benchmark; prints the table and returns (and writes) the JSON dict."""
    args = build_parser().parse_args(argv)
    defaults = QUICK if args.quick else dict(n=list(DEFAULT_N), k=[6, 17], dtype=["float32", "float64"])
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.repeats = 1
    cases = build_cases(args)
    load_start = list(os.getloadavg())  # these machines are shared: say how busy it was
    with jax.enable_x64(True):
        print(_HEADER)
        print("-" * len(_HEADER))
        t0 = time.perf_counter()
        log = lambda line: print(line, flush=True)  # noqa: E731
        if args.case_timeout > 0:
            options = ["--repeats", str(args.repeats), "--time-budget", str(args.time_budget), "--max-gb", str(args.max_gb)]
            options += ["--eps-mean", repr(args.eps_mean), "--eps-cov", repr(args.eps_cov), "--seed", str(args.seed)]
            rows = isolated_sweep(
                cases, options=options, timeout_s=args.case_timeout, retries=args.retries, max_gb=args.max_gb, log=log
            )
        else:
            rows = sweep(
                cases,
                eps_mean=args.eps_mean,
                eps_cov=args.eps_cov,
                repeats=args.repeats,
                max_gb=args.max_gb,
                budget_s=args.time_budget,
                seed=args.seed,
                log=log,
            )
        sweep_rows = []
        if args.eps_sweep and not args.quick:
            print("\nBound accuracy by eps (N=4096, k=17; max |part - eps|/eps over active states, parts in f64):")
            sweep_rows = eps_sweep(args.proj, args.cov, [17], args.dtype, args.eps_sweep, 4096, args.seed)
        elapsed = time.perf_counter() - t0
    summary = target_summary(rows)
    print()
    print(format_targets(summary))
    print(f"\ntotal {elapsed:.0f} s; load average (1 min) {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    result = dict(
        meta=dict(
            argv=list(sys.argv[1:] if argv is None else argv),
            time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            jax=jax.__version__,
            backend=jax.default_backend(),
            devices=[str(d) for d in jax.devices()],
            cpu_count=os.cpu_count(),
            load_avg_start=load_start,
            load_avg_end=list(os.getloadavg()),
            platform=platform.platform(),
            python=platform.python_version(),
            eps_mean=args.eps_mean,
            eps_cov=args.eps_cov,
            repeats=args.repeats,
            max_gb=args.max_gb,
            memory_factor=MEMORY_FACTOR,
            slight_fraction=SLIGHT_FRACTION,
            total_s=round(elapsed, 1),
        ),
        results=rows,
        targets=summary,
        eps_sweep=sweep_rows,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    print(f"wrote {out}")
    return result


def _json_default(x):
    if isinstance(x, (np.generic, jax.Array)):
        return np.asarray(x).item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


if __name__ == "__main__":
    main()
