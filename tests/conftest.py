"""Suite-wide collection order, and the x64 fixture.

pytest-xdist (``-n 2 --dist loadgroup``, pyproject) hands out tests in collection order, after the
``xdist_group`` groups (the modules whose module fixture compiles a trainer, biggest group first). Modules with
a test marked ``slow`` go first, so that a long test does not start last and leave one worker running it alone
at the end of the run. Each module's tests stay together, in their order, so module fixtures are built once.
"""

import jax
import pytest


@pytest.fixture
def x64():
    """Runs a test with float64 enabled (``jax.enable_x64(True)`` around it only), so the global x64 flag is
    never flipped for other tests. Use it as ``pytestmark = pytest.mark.usefixtures("x64")`` for a module or
    ``@pytest.mark.usefixtures("x64")`` for one test."""
    with jax.enable_x64(True):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow_modules = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow_modules)  # stable: otherwise collection order
