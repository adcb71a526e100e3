"""``tr_jax.acting``, ``tr_jax.inference`` and ``tr_jax.export`` (the modules' old homes) are deprecated aliases
of tr_jax.policy's modules: the same objects, a warning on import; ``tr_jax.policy`` and ``tr_jax.load_policy``
give the modules' own objects."""

import importlib
import sys

import pytest

import tr_jax
import tr_jax.policy
from tr_jax.policy import acting, export, loading

ALIASES = [("tr_jax.acting", acting), ("tr_jax.inference", loading), ("tr_jax.export", export)]


@pytest.mark.parametrize("old,module", ALIASES, ids=[old for old, _ in ALIASES])
def test_an_old_module_is_a_deprecated_alias(old, module):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import from tr_jax.policy"):
        alias = importlib.import_module(old)
    assert alias.__all__ == module.__all__ and module.__all__
    assert all(getattr(alias, name) is getattr(module, name) for name in module.__all__)


def test_the_package_and_the_top_level_give_the_modules_objects():
    modules = (acting, loading, export)
    names = [name for m in modules for name in m.__all__ if name != "PLATFORMS"]
    assert sorted(tr_jax.policy.__all__) == sorted(names)
    assert all(getattr(tr_jax.policy, n) is next(getattr(m, n) for m in modules if n in m.__all__) for n in names)
    assert tr_jax.load_policy is loading.load_policy
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tr_jax.policy.nothing  # noqa: B018
