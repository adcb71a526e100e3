"""Deprecated alias of :mod:`tr_jax.policy.acting`, kept for one release: import from ``tr_jax.policy`` (or
``tr_jax.policy.acting``) instead (the names here are the same objects, re-exported). Importing this module emits a
``DeprecationWarning``."""

import warnings

from tr_jax.policy.acting import *  # noqa: F403  (the alias is exactly tr_jax.policy.acting's public names)
from tr_jax.policy.acting import __all__ as __all__

warnings.warn("tr_jax.acting is deprecated: import from tr_jax.policy", DeprecationWarning, stacklevel=2)
