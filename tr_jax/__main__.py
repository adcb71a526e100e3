"""``python -m tr_jax ...`` is ``python -m tr_jax.cli ...``."""

import sys

from tr_jax.cli import main

sys.exit(main())
