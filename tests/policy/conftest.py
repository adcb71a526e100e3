"""The saved run the policy tests share (built once: the test modules share one xdist group)."""

import pytest

from ._saved_run import save_run


@pytest.fixture(scope="package")
def run_dir(tmp_path_factory):
    """``(path, seed 0's policy params)`` of the run ``_saved_run.save_run`` writes."""
    return save_run(str(tmp_path_factory.mktemp("runs") / "line"))
