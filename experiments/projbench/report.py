"""The benchmark table and the summary against the targets (``cases.TARGETS``)."""

from __future__ import annotations

from projbench.cases import MAX_FLOOR_RATIO, MAX_W2_RATIO, TARGET_ACCURACY_F64, TARGETS

_HEADER = (
    f"{'proj':4s} {'cov':4s} {'k':>2s} {'N':>8s} {'dtype':7s} | {'fwd ms':>9s} {'fwd+bwd ms':>10s} | "
    f"{'x floor':>11s} | {'compile s':>9s} | {'active':>6s} {'cov relerr':>10s} {'mean relerr':>11s} | status"
)


def _fmt(value, spec):
    return (
        format(value, spec)
        if isinstance(value, (int, float))
        else format("-", ">" + spec.lstrip("<>").split(".")[0].rstrip("efg"))
    )


def _fmt_floor(row: dict) -> str:
    """``x floor``: forward and forward+backward time over the floor's
    (``map`` for diag, ``eigh`` for full; ``fwd/fwd+bwd``), 11 wide."""
    if "fwd_x_floor" not in row:
        return f"{'-':>11s}"
    ratio = lambda x: f"{x:.2f}" if x < 10 else f"{x:.1f}"  # noqa: E731
    return f"{ratio(row['fwd_x_floor']):>5s}/{ratio(row['fwd_bwd_x_floor']):<5s}"


def format_row(row: dict) -> str:
    """One table line for a result row."""
    compile_s = row.get("compile_fwd_s", 0.0) + row.get("compile_fwd_bwd_s", 0.0) if "compile_fwd_s" in row else None
    active = 100.0 * row["cov_active"] if "cov_active" in row else None
    return (
        f"{row['proj']:4s} {row['cov']:4s} {row['k']:>2d} {row['n']:>8d} {row['dtype']:7s} | "
        f"{_fmt(row.get('fwd_ms'), '9.2f')} {_fmt(row.get('fwd_bwd_ms'), '10.2f')} | "
        f"{_fmt_floor(row)} | {_fmt(compile_s, '9.1f')} | "
        f"{_fmt(active, '5.1f')}% {_fmt(row.get('cov_rel_err'), '10.1e')} "
        f"{_fmt(row.get('mean_rel_err'), '11.1e')} | {row['status']}"
    )


def _find(rows, **kw):
    for row in rows:
        if all(row.get(key) == value for key, value in kw.items()) and row.get("status") == "ok":
            return row
    return None


def target_summary(rows) -> list[dict]:
    """Checks the targets against measured rows (float64, fwd+bwd)."""
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
        if row is not None and "fwd_bwd_x_floor" in row:
            entry.update(
                floor=row["floor"], floor_fwd_bwd_ms=row["floor_fwd_bwd_ms"], ratio_to_floor=row["fwd_bwd_x_floor"]
            )
            if t.cov == "diag":
                entry.update(
                    floor_ratio_target=MAX_FLOOR_RATIO, floor_ratio_met=row["fwd_bwd_x_floor"] <= MAX_FLOOR_RATIO
                )
        row32 = _find(rows, proj="kl", cov=t.cov, n=t.n, k=t.k, dtype="float32")
        if row32 is not None:
            entry["cov_rel_err_f32"] = row32["cov_rel_err"]
            entry["fwd_bwd_ms_f32"] = row32["fwd_bwd_ms"]
            if "fwd_bwd_x_floor" in row32:
                entry["ratio_to_floor_f32"] = row32["fwd_bwd_x_floor"]
        if t.cov == "diag":
            w2 = _find(rows, proj="w2", cov="diag", n=t.n, k=t.k, dtype="float64")
            if w2 is not None and row is not None:
                ratio = row["fwd_bwd_ms"] / w2["fwd_bwd_ms"]
                entry.update(
                    w2_fwd_bwd_ms=w2["fwd_bwd_ms"],
                    ratio_to_w2=ratio,
                    ratio_target=MAX_W2_RATIO,
                    ratio_met=ratio <= MAX_W2_RATIO,
                )
            w2_32 = _find(rows, proj="w2", cov="diag", n=t.n, k=t.k, dtype="float32")
            if w2_32 is not None and row32 is not None:
                entry["ratio_to_w2_f32"] = row32["fwd_bwd_ms"] / w2_32["fwd_bwd_ms"]
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
        if "ratio_to_floor" in e:
            line = f"      ratio to its floor ({e['floor']}, same process): {e['ratio_to_floor']:.2f}x"
            line += f" (floor {e['floor_fwd_bwd_ms']:.2f} ms"
            if "floor_ratio_target" in e:
                verdict = "MET" if e["floor_ratio_met"] else "MISSED"
                line += f"; target <= {MAX_FLOOR_RATIO:g}x) {verdict}"
            else:
                line += ")"
            if "ratio_to_floor_f32" in e:
                line += f"; f32 {e['ratio_to_floor_f32']:.2f}x"
            lines.append(line)
        if "ratio_to_w2" in e:
            verdict = "MET" if e["ratio_met"] else "MISSED"
            line = (
                f"      ratio to W2 diag on the same inputs: {e['ratio_to_w2']:.2f}x "
                f"(W2 {e['w2_fwd_bwd_ms']:.2f} ms; target <= {MAX_W2_RATIO:g}x) {verdict}"
            )
            if "ratio_to_w2_f32" in e:
                line += f"; f32 {e['ratio_to_w2_f32']:.2f}x"
            lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI
