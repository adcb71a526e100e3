"""Deprecated alias of :mod:`tr_jax.losses`, kept for one release: import TRPL's building blocks and
``ppo_clipped_surrogate`` from ``tr_jax.losses`` instead (the names here are the same objects, re-exported).
Importing this module emits a ``DeprecationWarning``."""

import warnings

from tr_jax.losses import *  # noqa: F403  (the alias is exactly tr_jax.losses' public names)
from tr_jax.losses import __all__ as __all__

warnings.warn("tr_jax.trpl is deprecated: import from tr_jax.losses", DeprecationWarning, stacklevel=2)
