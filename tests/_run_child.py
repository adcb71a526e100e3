"""A training process for the kill/interrupt/resume tests: ``python _run_child.py COMMAND [cli args...]``.

Registers the line env (tests/_line_env.py) and runs the ``tr-jax`` CLI's main
with the given arguments (``train ...``, or ``tune ...``); with ``TR_JAX_TEST_SLEEP`` set, every
chunk ends with that many seconds of sleep (so a test can kill it mid-run).
With ``TR_JAX_TEST_WAIT_AT=STEPS`` and ``TR_JAX_TEST_MARKER=PATH``, the chunk
that ends at env step STEPS writes ``PATH`` and then waits for
``TR_JAX_TEST_WAIT_SIGNALS`` (default 1) signals to arrive, writing
``PATH.<i>`` after the i-th (so a test signals at a known iteration, with no
timing involved). With ``TR_JAX_TEST_EVENTS=PATH``, JAX's monitoring events
(e.g. ``/jax/compilation_cache/cache_hits``; duration events that name a function
also as ``<event>:<function name>``) are counted into the JSON file ``PATH`` at exit.
"""

import os
import sys
import time

# this folder (the helpers) and the repository (tr_jax, also when it is not installed)
sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import _line_env  # noqa: E402

_line_env.register()

from tr_jax import run as run_module  # noqa: E402
from tr_jax.cli import main  # noqa: E402

if os.environ.get("TR_JAX_TEST_EVENTS"):  # JAX's monitoring events of this process, counted, to this JSON file
    import atexit
    import collections
    import json

    import jax.monitoring

    events = collections.Counter()
    jax.monitoring.register_event_listener(lambda event, **kwargs: events.update([event]))

    def traced(event, duration, **kwargs):  # "<event>:<function>" for the events that name a function
        if "fun_name" in kwargs:
            events.update([f"{event}:{kwargs['fun_name']}"])

    jax.monitoring.register_event_duration_secs_listener(traced)
    atexit.register(lambda: json.dump(events, open(os.environ["TR_JAX_TEST_EVENTS"], "w")))

SLEEP = float(os.environ.get("TR_JAX_TEST_SLEEP", "0"))
WAIT_AT = int(os.environ.get("TR_JAX_TEST_WAIT_AT", "0"))
MARKER = os.environ.get("TR_JAX_TEST_MARKER", "")
WAIT_SIGNALS = int(os.environ.get("TR_JAX_TEST_WAIT_SIGNALS", "1"))
arrived = []

if WAIT_AT:
    _handler = run_module._Interrupts._handler

    def counting_handler(self, signum, frame):
        _handler(self, signum, frame)
        arrived.append(signum)
        open(f"{MARKER}.{len(arrived)}", "w").close()

    run_module._Interrupts._handler = counting_handler


def progress_fn(steps, metrics):
    time.sleep(SLEEP)
    if steps == WAIT_AT:
        open(MARKER, "w").close()
        while len(arrived) < WAIT_SIGNALS:
            time.sleep(0.01)


if SLEEP or WAIT_AT:
    _run, _run_sweep = run_module.run, run_module.run_sweep

    def slow_run(*args, **kwargs):
        return _run(*args, progress_fn=progress_fn, **kwargs)

    def slow_run_sweep(*args, **kwargs):  # (tr-jax tune's batches)
        return _run_sweep(*args, progress_fn=progress_fn, **kwargs)

    run_module.run, run_module.run_sweep = slow_run, slow_run_sweep

sys.exit(main())  # (argv from sys.argv: the child is the command, as tr-jax is)
