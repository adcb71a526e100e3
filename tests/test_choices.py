"""``tr_jax.choices``: each tuple matches the table of the module that implements it, the config checks every
field against it, and checking a config imports none of the implementing modules."""

import pathlib
import re
import subprocess
import sys

import pytest

from tr_jax import algorithms, choices, distributions, losses, networks, projections
from tr_jax.config import TrainConfig, validate
from tr_jax.projections import dispatch


def test_each_tuple_matches_its_implementation():
    assert tuple(algorithms._BUILDERS) == choices.ALGORITHMS == algorithms.ALGORITHMS
    assert tuple(dispatch._TABLE) == choices.PROJECTIONS == projections.NAMES
    assert tuple(networks._ACTIVATIONS) == choices.ACTIVATIONS == networks.ACTIVATIONS
    assert tuple(networks._PRECISIONS) == choices.MATMUL_PRECISIONS == networks.MATMUL_PRECISIONS
    assert choices.COV_TYPES == distributions.COV_TYPES
    assert choices.ENTROPY_SCHEDULES == losses.SCHEDULES
    for schedule in choices.ENTROPY_SCHEDULES:  # every name has an implementation
        losses.entropy_bound(schedule, 1.0, 0.0, 0.5, 1, 10)


FIELDS = {
    "algorithm": choices.ALGORITHMS,
    "cov_type": choices.COV_TYPES,
    "projection": choices.PROJECTIONS,
    "activation": choices.ACTIVATIONS,
    "matmul_precision": choices.MATMUL_PRECISIONS,
    "entropy_schedule": choices.ENTROPY_SCHEDULES,
    "dtype": choices.DTYPES,
}


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_config_accepts_each_choice_and_names_them_for_another(field):
    for value in FIELDS[field]:
        validate(TrainConfig(**{field: value}))
    with pytest.raises(ValueError, match=re.escape(f"unknown {field} 'nope'; expected one of {FIELDS[field]!r}")):
        validate(TrainConfig(**{field: "nope"}))


def test_validating_a_config_imports_no_network_code():
    code = (
        "import sys; from tr_jax.config import TrainConfig, validate; validate(TrainConfig()); "
        "print(sorted(m for m in sys.modules if m.startswith('tr_jax.networks')))"
    )
    root = pathlib.Path(__file__).resolve().parents[1]  # this checkout's tr_jax
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
