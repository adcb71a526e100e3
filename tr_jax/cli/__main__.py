"""``python -m tr_jax.cli ...`` is ``tr-jax ...``."""

import sys

from tr_jax.cli import main

sys.exit(main())
