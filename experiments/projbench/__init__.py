"""Pieces of the projection benchmark (``experiments/bench_projections.py``).

* :mod:`projbench.cases`: the benchmark's inputs and its targets;
* :mod:`projbench.timing`: compiling, timing and accuracy of one case;
* :mod:`projbench.sweeps`: running many cases (in-process, in child
  processes with timeouts, over bounds);
* :mod:`projbench.report`: the table and the target summary.

``experiments/bench_compile.py`` reuses the inputs for compile times.
"""

import sys
from pathlib import Path

try:
    import tr_jax  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
