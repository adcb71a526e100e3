"""One process of the multi-host test (tests/test_multihost.py): registers the line env and runs ``tr-jax``'s
``main`` with the arguments given (e.g. ``train ... --coordinator localhost:PORT --num-processes 2 --process-id I``).

Environment: XLA_FLAGS / JAX_PLATFORMS as the test sets them, before JAX is imported here. With
TR_JAX_TEST_SIGINT set, the process sends itself a real SIGINT after its first chunk (from ``progress_fn``).
"""

import os
import signal
import sys

# this folder (the helpers) and the repository (tr_jax, also when it is not installed)
sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

from _line_env import register  # noqa: E402

from tr_jax import run as run_module  # noqa: E402
from tr_jax.cli import main  # noqa: E402

register()
if os.environ.get("TR_JAX_TEST_SIGINT"):
    _run = run_module.run

    def interrupted_run(*args, **kwargs):
        sent = []

        def interrupt(steps, metrics):
            if not sent:
                sent.append(steps)
                os.kill(os.getpid(), signal.SIGINT)

        return _run(*args, progress_fn=interrupt, **kwargs)

    run_module.run = interrupted_run
sys.exit(main(sys.argv[1:]))
