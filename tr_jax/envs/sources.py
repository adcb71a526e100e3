"""Where environments come from: env names, their sources, and loading one env object.

Naming convention (``TrainConfig.env_name``):

* ``"hopper"``, ``"halfcheetah"``, ...: a ``brax.envs`` env, built with
  ``brax.envs.get_environment(name, backend=config.backend)``.
* ``"playground:CartpoleBalance"``: a MuJoCo Playground env
  (``mujoco_playground.registry.load(name)``; the optional extra
  ``pip install 'tr_jax[playground]'``). tr_jax loads it with MJX's JAX
  implementation (``impl="jax"``) where the task's config has one: on this
  CPU that steps ~65x faster than Playground's default Warp kernels
  (CartpoleBalance, 64 envs: 230k vs 3.5k steps/s). ``config.backend``
  selects Brax's pipeline and does not apply to Playground envs. To run a
  Playground env with other settings, load it yourself and pass the object
  to ``make_trainer(config, env=...)``.

The dm_control suite tasks ship with the package and work offline. The
locomotion and manipulation tasks need the robots of MuJoCo Menagerie,
which Playground downloads (``git clone``) the first time one is loaded;
tr_jax checks for that checkout first and raises :class:`EnvUnavailableError`
when it is missing, instead of starting a download that cannot work offline.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings

PLAYGROUND_PREFIX = "playground:"
BACKENDS = ("generalized", "positional", "spring", "mjx")
PLAYGROUND_EXTRA_HINT = "pip install 'tr_jax[playground]'"


# mujoco.mjx.warp probes for the optional Warp package on import and prints these lines to stdout when it is
# missing; tr_jax steps MJX's JAX implementation, which does not need Warp
_WARP_PROBE = re.compile(r"Failed to import (mujoco_)?warp: ")
# brax.io.mjcf warns on every env it builds that Brax's pipelines are not maintained (tr_jax knows: it offers
# MuJoCo Playground's MJX envs beside them)
_BRAX_UNMAINTAINED = r"Brax System, piplines and environments are not actively being maintained"
_log = logging.getLogger(__name__)


def _import_mjx_quietly() -> None:
    """Imports ``mujoco.mjx`` (which Brax and Playground import) with the Warp probe's lines captured.

    Only the probe's own lines are dropped (logged at debug level); anything else the import prints is
    written through, and warnings are untouched.
    """
    if "mujoco.mjx.warp" in sys.modules:
        return
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            import mujoco.mjx.warp  # noqa: F401
        except ImportError:
            pass  # the import of brax or mujoco_playground that follows reports it
    for line in out.getvalue().splitlines(keepends=True):
        if _WARP_PROBE.match(line):
            _log.debug("mujoco.mjx: %s", line.rstrip())
        else:
            sys.stdout.write(line)


def _brax_envs():
    """``brax.envs``, imported without the Warp probe's lines and with Brax's unmaintained-notice filtered
    (by its message, from ``brax.io.mjcf`` only: other warnings, Brax's included, still show)."""
    _import_mjx_quietly()
    warnings.filterwarnings("ignore", message=_BRAX_UNMAINTAINED, category=UserWarning, module=r"brax\.io\.mjcf\Z")
    from brax import envs

    return envs


class EnvUnavailableError(ValueError):
    """The env is named correctly but cannot be built on this machine (a missing
    optional extra or missing downloaded assets); the message says what to do."""


def split_env_name(env_name: str) -> tuple:
    """``(source, name)``: ``("playground", "CartpoleBalance")`` for
    ``"playground:CartpoleBalance"``, ``("brax", env_name)`` otherwise."""
    if env_name.startswith(PLAYGROUND_PREFIX):
        return "playground", env_name[len(PLAYGROUND_PREFIX) :]
    return "brax", env_name


def brax_env_names() -> tuple:
    """Names registered in ``brax.envs``."""
    envs = _brax_envs()

    registry = getattr(envs, "_envs", None)
    return tuple(sorted(registry)) if registry else ()


def _playground():
    """The ``mujoco_playground`` modules ``(registry, mjx_env, dm_control_suite)``;
    :class:`EnvUnavailableError` naming the extra when the package is missing."""
    _import_mjx_quietly()
    try:
        from mujoco_playground import registry
        from mujoco_playground._src import dm_control_suite, mjx_env
    except ImportError as e:
        raise EnvUnavailableError(
            f"MuJoCo Playground envs need the package 'playground' ({e}); install the extra: {PLAYGROUND_EXTRA_HINT}"
        ) from e
    return registry, mjx_env, dm_control_suite


def playground_env_names() -> tuple:
    """``"playground:<name>"`` for every Playground env; ``()`` without the extra."""
    try:
        registry, _, _ = _playground()
    except EnvUnavailableError:
        return ()
    return tuple(PLAYGROUND_PREFIX + n for n in registry.ALL_ENVS)


def env_names() -> tuple:
    """Every env name the installed sources provide (Brax's, then Playground's)."""
    return brax_env_names() + playground_env_names()


def _check_playground(name: str) -> None:
    registry, mjx_env, dm_control_suite = _playground()
    if name not in registry.ALL_ENVS:
        raise ValueError(
            f"unknown env {PLAYGROUND_PREFIX + name!r}; MuJoCo Playground provides "
            f"{tuple(PLAYGROUND_PREFIX + n for n in registry.ALL_ENVS)}"
        )
    if name not in dm_control_suite.ALL_ENVS and not mjx_env.MENAGERIE_PATH.exists():
        raise EnvUnavailableError(
            f"env {PLAYGROUND_PREFIX + name!r} needs the MuJoCo Menagerie robot assets, which are not on this "
            f"machine (expected at {mjx_env.MENAGERIE_PATH}); Playground would download them with git, which "
            f"needs network access. Put a checkout of mujoco_menagerie (commit {mjx_env.MENAGERIE_COMMIT_SHA}) "
            f"there, or use a dm_control suite task, which works offline: "
            f"{tuple(PLAYGROUND_PREFIX + n for n in dm_control_suite.ALL_ENVS)}"
        )


def check_env(env_name: str, backend: str) -> None:
    """Raises ``ValueError`` listing the options for an unknown env or backend, and
    :class:`EnvUnavailableError` for a known env that cannot be built here."""
    source, name = split_env_name(env_name)
    if source == "playground":
        _check_playground(name)
        return
    names = brax_env_names()
    if names and env_name not in names:
        playground = playground_env_names()
        other = (
            f"MuJoCo Playground provides {playground}"
            if playground
            else f"MuJoCo Playground envs ('{PLAYGROUND_PREFIX}<name>') need the extra: {PLAYGROUND_EXTRA_HINT}"
        )
        raise ValueError(f"unknown env {env_name!r}; brax.envs provides {names}; {other}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def load_env(env_name: str, backend: str = "positional", **env_kwargs):
    """Builds one (unbatched) env object with the Brax ``Env`` API for ``env_name``.

    ``env_kwargs`` go to ``brax.envs.get_environment`` (Brax) or become
    ``config_overrides`` of ``mujoco_playground.registry.load`` (Playground).
    """
    check_env(env_name, backend)
    source, name = split_env_name(env_name)
    if source == "playground":
        registry, _, _ = _playground()
        config = registry.get_default_config(name)
        if "impl" in config:
            config.impl = "jax"
        return registry.load(name, config=config, config_overrides=env_kwargs or None)
    return _brax_envs().get_environment(env_name, backend=backend, **env_kwargs)
