"""Suite-wide collection order, compilation cache, and the x64 fixture.

pytest-xdist (``-n 2 --dist loadgroup``, pyproject) hands out tests in collection order, after the
``xdist_group`` groups (the modules whose module fixture compiles a trainer, biggest group first). Modules with
a test marked ``slow`` go first, so that a long test does not start last and leave one worker running it alone
at the end of the run. Each module's tests stay together, in their order. A test that uses a module-scoped
fixture joins its module's ``xdist_group`` (added here unless it has one), so that the fixture is built once, not
once per worker (the multi-host module's fixture, three rounds of process pairs, was built twice: ~75 s).
"""

import os
import pathlib
import shutil
import subprocess
import tempfile
import uuid

import jax
import pytest

_CACHE = "TR_JAX_COMPILE_CACHE"


def pytest_configure(config: pytest.Config) -> None:
    """One fresh persistent compilation cache per suite run (tr_jax/compile_cache.py), shared by the xdist
    workers and the processes the tests start (they inherit the environment): a program one of them compiled
    loads in the others (the kill/resume tests' processes), and nothing depends on, or goes to, the user's cache.
    On an xdist worker under ``--dist loadgroup``: registers _GroupSuffix."""
    if hasattr(config, "workerinput") and config.getoption("loadgroup", False):
        config.pluginmanager.register(_GroupSuffix(), "tr_jax_group_suffix")
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist), before workers start
        config._tr_jax_cache = os.environ.get(_CACHE)
        os.environ[_CACHE] = tempfile.mkdtemp(prefix="tr_jax_test_compile_cache_")


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "_tr_jax_cache"):
        shutil.rmtree(os.environ[_CACHE], ignore_errors=True)
        if config._tr_jax_cache is None:
            del os.environ[_CACHE]
        else:
            os.environ[_CACHE] = config._tr_jax_cache


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(size)``: a fresh tmpfs of ``size`` (``"160k"``, ``"64m"``) under ``tmp_path``, unmounted after
    the test; ``mount -o remount,ro PATH`` makes it a real read-only file system, which root cannot write either
    (unlike a chmod). Skips the test where mounting is not allowed (not root, a kernel or container without it)."""
    mounted = []

    def mount(size: str) -> pathlib.Path:
        d = tmp_path / f"tmpfs{len(mounted)}"
        d.mkdir()
        name = f"tr_jax_test_{uuid.uuid4().hex[:8]}"
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", name, str(d)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", str(d)], check=True)


@pytest.fixture
def x64():
    """Runs a test with float64 enabled (``jax.enable_x64(True)`` around it only), so the global x64 flag is
    never flipped for other tests. Use it as ``pytestmark = pytest.mark.usefixtures("x64")`` for a module or
    ``@pytest.mark.usefixtures("x64")`` for one test."""
    with jax.enable_x64(True):
        yield


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures is None or item.get_closest_marker("xdist_group"):
            continue
        if any(d[-1].scope == "module" for d in fixtures.name2fixturedefs.values() if d):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    slow_modules = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow_modules)  # stable: otherwise collection order


class _GroupSuffix:
    """``--dist loadgroup`` on pytest >= 9.2: xdist (3.8) marks a test's group by appending ``@GROUP`` to
    ``item._nodeid``, which pytest 9.2's structured node ids (``item._id``) no longer read, so every group was
    split over the workers and each module fixture built on both (twice the work, and twice the memory: two
    multi-host fixtures' 12 processes at once). This appends the suffix where xdist's did not take effect."""

    @pytest.hookimpl(trylast=True)  # after xdist's own hook
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            names = sorted(
                {
                    str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")
                }
            )
            if names and hasattr(item, "_id") and "@" not in item.nodeid.rpartition("]")[2]:
                item._id = type(item._id).parse(f"{item.nodeid}@{'_'.join(names)}")
