"""Progress display (tr_jax/progress.py): missing values are blank, never 'nan'."""

import io
import math

import pytest

from tr_jax.progress import PlainProgress, fmt, make_progress, summary_line


def test_missing_values_are_blank():
    assert fmt(float("nan")) == "" and fmt(None) == "" and fmt(math.inf) == ""
    assert fmt(0.000123456, ".3g") == "0.000123" and fmt(3, ".1f") == "3.0"
    line = summary_line(2048, 10240, 5123.4, 7.9, {"train return": fmt(float("nan")), "kl_max": fmt(0.01, ".3g")})
    assert "nan" not in line.lower() and "train return" not in line
    assert "2,048/10,240 steps" in line and "5,123 steps/s" in line and "ETA  0:00:07" in line and "kl_max 0.01" in line


def test_plain_progress_prints_one_line_per_update():
    out = io.StringIO()
    p = PlainProgress(out)
    p.start(100)
    p.update(50, 10.0, 5.0, {"a": "1"})
    p.log("event")
    p.close()
    assert out.getvalue().splitlines() == [summary_line(50, 100, 10.0, 5.0, {"a": "1"}), "event"]


def test_rich_bar_runs(capsys):
    p = make_progress("bar")
    p.start(100, 10)
    p.status("compiling")
    p.update(60, 123.0, None, {"train return": "", "kl_max": "0.01"})
    p.log("evaluated")
    p.close()
    out = capsys.readouterr().out
    assert "evaluated" in out and "60/100" in out and "kl_max 0.01" in out


def test_unknown_display():
    with pytest.raises(ValueError, match="unknown progress display 'tty'"):
        make_progress("tty")
