"""Compiling, timing and measuring the accuracy of one benchmark case.

* forward time: ``jit(projection)``;
* forward+backward time: ``jit(grad(sum(c_mean * mean_p) + sum(c_scale * scale_p)))``
  with respect to the new mean and scale, for fixed random cotangents c;
* the achieved accuracy: over the states whose covariance (mean) part exceeds
  its bound before projection ("active"), the maximum of
  ``|part(projected) - eps| / eps``, with the parts evaluated in float64 on the
  returned values (so a float32 row states the accuracy of the float32 output).

Each function is compiled ahead of time (the compile time is reported
separately), run once to warm up, then timed ``repeats`` times with
``block_until_ready``; the median is reported (fewer repeats for very slow
cases, see ``budget_s``).

The case's floor (:func:`projbench.cases.floor_project`: a memory-bound map
for diag, one batched ``eigh`` for full) is timed in the same rounds,
interleaved with the projection (forward, forward+backward, floor forward,
floor forward+backward, repeated), so that its ratio to the floor
(``fwd_x_floor``, ``fwd_bwd_x_floor``) sees the same load on a shared machine.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp

from projbench.cases import PROJECTIONS, scales_for


def _time_compiled(calls, repeats: int, budget_s: float):
    """Median wall times in ms of each ``compiled(*args)`` in ``calls`` (a list of
    ``(compiled, args)``), after one warm-up call each, timed in interleaved
    rounds (one call of each per round); returns ``(medians, repeats)``."""
    first = 0.0
    for compiled, args in calls:
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        first += time.perf_counter() - t0
    repeats = max(1, min(repeats, int(budget_s / max(first, 1e-9))))
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for (compiled, args), out in zip(calls, times):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            out.append(time.perf_counter() - t0)
    return [1e3 * statistics.median(t) for t in times], repeats


def _compile(fn, args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def timed_functions(project, eps_mean: float, eps_cov: float, **options):
    """``(forward, forward_backward)`` of ``project`` (a projection's signature),
    the two functions the benchmark times (module docstring)."""

    def forward(mean, scale, old_mean, old_scale):
        return project(mean, scale, old_mean, old_scale, eps_mean, eps_cov, **options)

    def weighted(mean, scale, old_mean, old_scale, c_mean, c_scale):
        p_mean, p_scale = forward(mean, scale, old_mean, old_scale)
        return jnp.sum(c_mean * p_mean) + jnp.sum(c_scale * p_scale)

    return forward, jax.grad(weighted, argnums=(0, 1))


def make_functions(project, parts, eps_mean: float, eps_cov: float, cov_type: str | None = None):
    """Forward, forward+backward and accuracy functions (not yet jitted).

    ``cov_type`` is passed to ``project`` and ``parts`` (None: their default).
    """
    options = {} if cov_type is None else {"cov_type": cov_type}
    parts_fn = parts

    def parts(*args):
        return parts_fn(*args, **options)

    forward, forward_backward = timed_functions(project, eps_mean, eps_cov, **options)

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


def run_case(
    proj: str,
    fns,
    gauss: dict,
    key,
    timing: tuple[int, float] | None,
    floor=None,
    outputs: list | None = None,
) -> dict:
    """Times one projection on one input set; returns a result row.

    ``timing``: ``(repeats, budget_s)`` of the timed rounds, or None to measure accuracy (and compile time) only.
    ``floor``: ``(forward, forward_backward)`` of the case's floor (see
    :func:`timed_functions`), timed in the same rounds; None: not timed.
    ``outputs``: a list to which the inputs ``(mean, scale, old_mean, old_scale)`` and the projected
    ``(mean, scale)`` are appended (for comparisons).
    """
    forward, forward_backward, accuracy = fns
    scale, old_scale = scales_for(gauss, PROJECTIONS[proj][2])
    args = (gauss["mean"], scale, gauss["old_mean"], old_scale)
    k1, k2 = jax.random.split(key)
    cot = (jax.random.normal(k1, args[0].shape, args[0].dtype), jax.random.normal(k2, scale.shape, scale.dtype))
    row: dict = {}
    fwd_c, row["compile_fwd_s"] = _compile(forward, args)
    bwd_c, row["compile_fwd_bwd_s"] = _compile(forward_backward, args + cot)
    if timing is not None:
        repeats, budget_s = timing
        calls = [(fwd_c, args), (bwd_c, args + cot)]
        if floor is not None:
            calls += [(_compile(floor[0], args)[0], args), (_compile(floor[1], args + cot)[0], args + cot)]
        times, repeats = _time_compiled(calls, repeats, budget_s)
        row["fwd_ms"], row["fwd_bwd_ms"] = times[:2]
        row["repeats_fwd"] = row["repeats_fwd_bwd"] = repeats
        if floor is not None:
            row["floor"] = "map" if scale.ndim == 2 else "eigh"
            row["floor_fwd_ms"], row["floor_fwd_bwd_ms"] = times[2:]
            row["fwd_x_floor"] = row["fwd_ms"] / row["floor_fwd_ms"]
            row["fwd_bwd_x_floor"] = row["fwd_bwd_ms"] / row["floor_fwd_bwd_ms"]
    out = fwd_c(*args)
    if outputs is not None:
        outputs.append((args, out))
    grads = bwd_c(*args, *cot)
    acc = jax.jit(accuracy)(*args, *out, *grads)
    row.update({name: float(v) for name, v in acc.items()})
    row["status"] = "ok"
    return row


# --------------------------------------------------------------------------- sweep
