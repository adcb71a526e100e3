"""Executes every notebook in notebooks/ top to bottom with nbclient.

A notebook that raises in any cell fails the test (cells may assert what they
show), and so does a cell that calls ``plt.show()`` or ``display(...)``
without leaving a figure (an embedded PNG) in its outputs. The kernel gets the
repository root on PYTHONPATH, so this also works from a checkout where tr_jax
is not installed. Skipped, with the reason, where nbformat/nbclient/ipykernel
are missing (they are in the `test` extra).
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Hang backstops only, far above the normal times: each cell needs at most about a minute of CPU (training.ipynb
# compiles two trainers; the executed cells store their timings), a whole notebook about two minutes.
CELL_TIMEOUT_S = 900
NOTEBOOK_TIMEOUT_S = 1800

nbformat = pytest.importorskip("nbformat", reason="nbformat not installed (pip install -e '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="nbclient not installed (pip install -e '.[test]')")
pytest.importorskip("ipykernel", reason="ipykernel not installed, no python3 kernel (pip install -e '.[test]')")


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.slow
@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}", pytrace=False)
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and ("plt.show()" in cell.source or "display(" in cell.source):
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert images, f"{path.name}: cell {i} shows no figure: {cell.outputs}"
