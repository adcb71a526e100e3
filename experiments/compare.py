"""``tr-jax compare`` from a checkout, with the same options and outputs (see :mod:`tr_jax.compare`)::

    python3 experiments/compare.py --envs hopper --setups ppo trpl-kl trpl-w2 trpl-frob trpo \\
        --seeds 3 --env-steps 2000000 --out experiments/results/hopper
    python3 experiments/compare.py ... --report-only      # table and plots of what is there, no training

The default ``--configs`` is the config tree beside this script (``experiments/configs``), wherever it is run from.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, ROOT)

from tr_jax import compare  # noqa: E402


def main(argv=None) -> int:
    return compare.main(argv, "compare.py", os.path.join(ROOT, "experiments", "configs"))


if __name__ == "__main__":
    sys.exit(main())
