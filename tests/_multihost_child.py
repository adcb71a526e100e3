"""One process of the multi-host test (tests/test_multihost.py): registers the line env and runs ``tr-jax``'s
``main`` with the arguments given (e.g. ``train ... --coordinator localhost:PORT --num-processes 2 --process-id I``).

Environment: XLA_FLAGS / JAX_PLATFORMS as the test sets them, before JAX is imported here.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _line_env import register  # noqa: E402

from tr_jax.cli import main  # noqa: E402

register()
sys.exit(main(sys.argv[1:]))
