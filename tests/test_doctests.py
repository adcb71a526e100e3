"""The docstring examples of the public building blocks run (``doctest``), and every public function has one."""

import doctest
import importlib
import inspect

import pytest

MODULES = ["tr_jax.losses", "tr_jax.layers", "tr_jax.policy.acting"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
    missing = [
        f
        for f in module.__all__
        if (inspect.isfunction(getattr(module, f)) or inspect.isclass(getattr(module, f)))
        and getattr(module, f).__module__ == name
        and ">>>" not in (getattr(module, f).__doc__ or "")
    ]
    assert not missing, f"public functions and classes of {name} without a docstring example: {missing}"
