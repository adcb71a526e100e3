"""TrainConfig's field documentation (its source comments, tr_jax.config.field_docs) and ``tr-jax train --help``."""

import contextlib
import io

import pytest

from tr_jax.cli import build_parser
from tr_jax.config import field_docs, field_names

GROUPS = {"environment", "algorithm", "algorithm: PPO", "algorithm: TRPO", "algorithm: TRPL", "networks", "misc", "run"}


def test_every_field_has_a_group_and_a_description():
    docs = field_docs()
    assert list(docs) == list(field_names())
    assert {group for group, _ in docs.values()} <= GROUPS
    undocumented = [name for name, (_, doc) in docs.items() if not doc]
    assert not undocumented, f"TrainConfig fields without a comment: {undocumented}"
    # the groups are the class's headings, the descriptions its comments (trailing, above, continued below)
    assert docs["eps_cov"] == ("algorithm: TRPL", "bound on each state's covariance part")
    assert docs["clip_ratio"][0] == "algorithm: PPO" and docs["keep_checkpoints"][0] == "run"
    assert docs["obs_clip"][1].endswith("(raw observations, normalize_obs=False, are never clipped)")
    assert docs["lr_decay_steps"][1].startswith("horizon of the lr decay in env steps per seed")


def test_train_help_prints_one_line_per_field_grouped():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = out.getvalue()
    fields = text[text.index("TrainConfig fields") :].splitlines()
    for name in field_names():
        (line,) = [f for f in fields if f.startswith(f"    {name} (")]
        assert line.endswith(field_docs()[name][1])
    assert "    eps_cov (float) = 0.001: bound on each state's covariance part" in fields
    assert fields.index("  algorithm: TRPL:") < fields.index(
        "    eps_cov (float) = 0.001: bound on each state's covariance part"
    )


def test_optional_fields_read_in_both_spellings():
    """``Optional[X]`` and ``X | None`` (what ``ruff check --fix`` writes, UP045) are the same field type."""
    from typing import Optional

    from tr_jax.config import _optional

    assert _optional(Optional[float]) is float  # noqa: UP045 (the spelling under test)
    assert _optional(float | None) is float
    assert _optional(float) is None
