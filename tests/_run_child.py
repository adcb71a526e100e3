"""A training process for the kill/interrupt/resume tests: ``python _run_child.py RUN_DIR [cli args...]``.

Registers the line env (tests/_line_env.py) and runs the ``tr-jax`` CLI's main
with ``train`` plus the given arguments; with ``TR_JAX_TEST_SLEEP`` set, every
chunk ends with that many seconds of sleep (so a test can kill it mid-run).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _line_env  # noqa: E402

_line_env.register()

from tr_jax import run as run_module  # noqa: E402
from tr_jax.cli import main  # noqa: E402

SLEEP = float(os.environ.get("TR_JAX_TEST_SLEEP", "0"))
if SLEEP:
    _run = run_module.run

    def slow_run(*args, **kwargs):
        return _run(*args, progress_fn=lambda steps, metrics: time.sleep(SLEEP), **kwargs)

    run_module.run = slow_run

sys.exit(main(sys.argv[1:]))
