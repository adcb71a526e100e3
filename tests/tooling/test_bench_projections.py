"""Smoke test of experiments/bench_projections.py: --quick mode, in-process.

Checks that every selected case runs (or says why not) and that the JSON has
the structure the README and later comparisons rely on.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# one xdist worker runs this module (--dist loadgroup): its module fixture (quick_result) is computed once
pytestmark = pytest.mark.xdist_group("bench_projections")


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_projections", ROOT / "experiments" / "bench_projections.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_bench()


@pytest.fixture(scope="module")
def quick_result(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    # kl and w2 cover every code path (diag, Cholesky and sqrt scales); frob
    # would only add compile time.
    result = bench.main(["--quick", "--proj", "kl,w2", "--out", str(out)])
    return result, json.loads(out.read_text())


def test_quick_writes_the_returned_json(quick_result):
    result, written = quick_result
    assert written["meta"]["argv"][0] == "--quick"
    assert len(written["results"]) == len(result["results"])


def test_quick_covers_the_selected_cases(quick_result):
    _, written = quick_result
    rows = written["results"]
    kinds = {(r["proj"], r["cov"]) for r in rows}
    assert kinds == {(p, c) for p in ("kl", "w2") for c in ("diag", "full")}
    for row in rows:
        assert {"proj", "cov", "k", "n", "dtype", "status"} <= row.keys()
        assert row["n"] == 64 and row["k"] == 3 and row["dtype"] == "float64"


def test_ok_rows_have_times_and_meet_the_bound(quick_result):
    _, written = quick_result
    ok = [r for r in written["results"] if r["status"] == "ok"]
    missing = {r["proj"] for r in written["results"] if r["status"] != "ok"}
    assert {"kl", "w2"} <= {r["proj"] for r in ok}, written["results"]
    assert not missing, [r["status"] for r in written["results"] if r["status"] != "ok"]
    for row in ok:
        for field in ("fwd_ms", "fwd_bwd_ms", "compile_fwd_s", "compile_fwd_bwd_s"):
            assert row[field] > 0 and math.isfinite(row[field]), (field, row)
        assert row["repeats_fwd"] == row["repeats_fwd_bwd"] == 1
        assert 0.0 < row["cov_active"] <= 1.0
        assert row["nonfinite_out"] == 0 and row["nonfinite_grad"] == 0
        # float64 projections hit their bounds essentially exactly.
        assert row["cov_rel_err"] < 1e-6 and row["mean_rel_err"] < 1e-6, row


def test_targets_section_lists_every_target(bench, quick_result):
    _, written = quick_result
    names = [t["name"] for t in written["targets"]]
    assert len(names) == len(bench.TARGETS)
    # Quick mode does not run the target sizes, so nothing is claimed.
    assert all(t["measured_ms"] is None and t["met"] is None for t in written["targets"])


def test_memory_limit_skips_instead_of_running(bench, tmp_path):
    out = tmp_path / "skip.json"
    result = bench.main(["--quick", "--proj", "w2", "--cov", "full", "--max-gb", "1e-9", "--out", str(out)])
    assert [r["status"] for r in result["results"]] == ["skipped (memory)"]


def test_bad_selection_is_rejected(bench, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--proj", "nope", "--out", str(tmp_path / "x.json")])


def test_isolated_cases_run_in_child_processes(bench, tmp_path):
    out = tmp_path / "iso.json"
    result = bench.main(["--quick", "--proj", "w2", "--cov", "diag", "--case-timeout", "300", "--out", str(out)])
    (row,) = result["results"]
    assert row["status"] == "ok" and row["attempts"] == 1 and row["fwd_ms"] > 0


def test_ok_rows_carry_their_floor(quick_result):
    _, written = quick_result
    for row in (r for r in written["results"] if r["status"] == "ok"):
        assert row["floor"] == ("map" if row["cov"] == "diag" else "eigh"), row
        for field in ("floor_fwd_ms", "floor_fwd_bwd_ms"):
            assert row[field] > 0 and math.isfinite(row[field]), (field, row)
        assert row["fwd_x_floor"] == pytest.approx(row["fwd_ms"] / row["floor_fwd_ms"])
        assert row["fwd_bwd_x_floor"] == pytest.approx(row["fwd_bwd_ms"] / row["floor_fwd_bwd_ms"])


def test_table_shows_the_floor_ratios(bench):
    from projbench.report import format_row

    assert "x floor" in bench._HEADER
    row = dict(proj="kl", cov="diag", k=17, n=65536, dtype="float64", status="ok", fwd_ms=30.0, fwd_bwd_ms=37.4)
    row.update(fwd_x_floor=12.5, fwd_bwd_x_floor=3.75)
    line = format_row(row)
    bars = lambda text: [i for i, c in enumerate(text) if c == "|"]  # noqa: E731
    assert bars(line) == bars(bench._HEADER)  # the columns line up
    assert line.split("|")[2].strip() == "12.5/3.75"
    del row["fwd_x_floor"], row["fwd_bwd_x_floor"]  # not timed: a dash, same columns
    assert bars(format_row(row)) == bars(bench._HEADER) and format_row(row).split("|")[2].strip() == "-"


def test_targets_report_the_floor_and_w2_ratios(bench):
    from projbench.report import format_targets, target_summary

    base = dict(cov="diag", n=65536, k=17, status="ok", fwd_ms=1.0, cov_rel_err=1e-14, floor="map")
    rows = [
        dict(base, proj="kl", dtype="float64", fwd_bwd_ms=12.0, floor_fwd_bwd_ms=4.0, fwd_bwd_x_floor=3.0),
        dict(base, proj="w2", dtype="float64", fwd_bwd_ms=3.0, floor_fwd_bwd_ms=4.0, fwd_bwd_x_floor=0.75),
        dict(base, proj="kl", dtype="float32", fwd_bwd_ms=10.0, floor_fwd_bwd_ms=2.0, fwd_bwd_x_floor=5.0),
        dict(base, proj="w2", dtype="float32", fwd_bwd_ms=2.0, floor_fwd_bwd_ms=2.0, fwd_bwd_x_floor=1.0),
    ]
    (diag, *_) = target_summary(rows)
    assert diag["ratio_to_floor"] == 3.0 and diag["floor_ratio_met"] is True
    assert diag["ratio_to_floor_f32"] == 5.0
    assert diag["ratio_to_w2"] == 4.0 and diag["ratio_met"] is False  # target: at most 3x W2
    assert diag["ratio_to_w2_f32"] == 5.0
    text = format_targets([diag])
    assert "ratio to its floor (map, same process): 3.00x" in text and "target <= 4x) MET" in text
    assert "ratio to W2 diag on the same inputs: 4.00x" in text and "MISSED" in text
