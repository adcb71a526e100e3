"""Training configuration: one frozen dataclass for every algorithm.

``TrainConfig`` is hashable and static (closed over by ``make_trainer``); call
``validate(config)`` (``make_trainer`` does) to get a clear ``ValueError`` for a
bad config before anything is compiled.

Configs come from Python, from files (:func:`load_config_file`: JSON, TOML or
YAML, a mapping of field names to values, optionally composed over ``base``
files) and from ``key=value`` strings
(:func:`parse_assignment`, the CLI's ``--set``); both check every key and the
type of every value against the dataclass and say which file/key is wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import types
import typing
from collections.abc import Sequence
from typing import Any

from tr_jax import choices as C
from tr_jax.projections import bound_floor

# field -> the names it may take (tr_jax.choices: names only, so no import of the modules implementing them)
_CHOICES = {
    "algorithm": C.ALGORITHMS,
    "cov_type": C.COV_TYPES,
    "projection": C.PROJECTIONS,
    "activation": C.ACTIVATIONS,
    "matmul_precision": C.MATMUL_PRECISIONS,
    "entropy_schedule": C.ENTROPY_SCHEDULES,
    "dtype": C.DTYPES,
}

# Host-loop fields: they change when things are reported/saved, not what is
# computed, so a resumed run may change them (and total_env_steps, to extend a run).
RESUME_SAFE = (
    "total_env_steps",
    "chunk_iterations",
    "eval_every",
    "eval_episodes",
    "checkpoint_every",
    "keep_checkpoints",
    "num_devices",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run: environment, algorithm, projection, network, optimisation and
    host-loop settings, one field each (the comment beside a field says what it is). Frozen; :func:`validate` (which
    ``make_trainer`` calls) raises ``ValueError`` naming a bad value. ``tr-jax train --set FIELD=VALUE`` sets any
    field."""

    # --- environment -------------------------------------------------------
    env_name: str = "inverted_pendulum"  # a brax.envs name, or "playground:<Name>" (tr_jax.envs.sources)
    backend: str = "positional"  # Brax's physics pipeline (Brax envs only)
    obs_key: str | None = None  # entry of dict observations the agent sees (e.g. "state"); None: array obs
    # entry of dict observations the value function sees (e.g. "privileged_state": an asymmetric actor-critic, as
    # in Brax's and Playground's value_obs_key); None: obs_key's. The policy, its export and load_policy see obs_key
    value_obs_key: str | None = None
    episode_length: int = 1000  # env steps per episode (the time limit, a truncation)
    action_repeat: int = 1  # env steps each action is held for
    num_envs: int = 64  # envs stepped in parallel per seed (E)
    unroll_length: int = 64  # steps per env per iteration (T)
    total_env_steps: int = 1_000_000  # num_iterations = total // (num_envs * unroll_length * action_repeat)
    normalize_obs: bool = True  # observations normalised by a running mean and std
    obs_clip: float | None = 10.0  # normalised observations clipped to +-obs_clip; None: no clipping
    #   (raw observations, normalize_obs=False, are never clipped)
    reward_scaling: float = 1.0  # rewards multiplied by this
    normalize_reward: bool = False  # divide rewards by a running std of the discounted return

    # --- algorithm -----------------------------------------------------------
    algorithm: str = "ppo"  # "ppo", "trpo" or "trpl"
    gamma: float = 0.99  # discount factor
    gae_lambda: float = 0.95  # GAE lambda
    normalize_advantage: bool = True  # advantages normalised per minibatch (PPO, TRPL)
    num_epochs: int = 10  # policy epochs per iteration (PPO, TRPL); TRPO: value epochs unless value_epochs
    value_epochs: int | None = None  # value-function epochs per iteration; None: num_epochs (one joint pass)
    value_minibatches: int | None = None  # minibatches per value epoch; None: num_minibatches
    num_minibatches: int = 32  # minibatches per policy epoch
    policy_lr: float = 3e-4  # policy learning rate (Adam)
    value_lr: float = 3e-4  # value-function learning rate (Adam)
    lr_decay: bool = True  # policy (and value, see value_lr_decay) lr: linear decay to 0 over lr_decay_steps
    value_lr_decay: bool | None = None  # the value lr's decay; None: as lr_decay
    # horizon of the lr decay in env steps per seed (the lr reaches 0 there and stays 0 after it); None:
    # total_env_steps. Fixing it keeps the schedule when a budget is cut or extended (a run stopped at 2M of
    # a 3M horizon ends at lr/3, not at 0).
    lr_decay_steps: int | None = None
    max_grad_norm: float | None = 0.5  # gradients clipped to this global norm; None: no clipping
    # clipped value loss (values within +-this of the old ones); None: no clipping. The clip is in units of the
    #  critic's target: with raw rewards (normalize_reward=False) a return scale of ~100 left a 0.2-clipped critic
    #  at 18% of the true value after 20 iterations (tests/test_quick_config.py), so clip only normalised returns
    value_clip: float | None = None
    entropy_coef: float = 0.0  # entropy bonus in the policy loss (PPO, TRPL)

    # PPO
    clip_ratio: float = 0.2  # PPO's ratio clipping: rho clipped to [1 - c, 1 + c]

    # TRPO
    max_kl: float = 0.01  # TRPO's bound on the mean KL over states
    cg_iters: int = 10  # conjugate-gradient iterations on Fisher-vector products
    cg_damping: float = 0.1  # damping added to the Fisher-vector products
    line_search_steps: int = 10  # backtracking line-search steps
    backtrack_coef: float = 0.5  # step shrink factor per line-search step

    # TRPL
    projection: str = "kl"  # "kl", "w2" or "frob"
    eps_mean: float = 0.03  # bound on each state's mean part
    eps_cov: float = 1e-3  # bound on each state's covariance part
    scale_prec: bool = True  # W2/Frobenius distances whitened by the old policy; False: Euclidean
    trust_region_coef: float = 1.0  # alpha of the regression loss
    entropy_schedule: str = "none"  # "none", "linear" or "exp": the entropy projection's bound beta over the run
    target_entropy: float = 0.0  # beta at the end of the run (linear/exp)
    entropy_temperature: float = 0.5  # exp schedule temperature
    entropy_equality: bool = False  # entropy projection in equality form (always rescaled to beta)
    extra_regression_steps: int = 0  # regression-loss steps after the policy epochs
    # lr of the extra regression steps' own Adam (its state kept across updates, as the reference's separate
    # regression optimiser); None: they continue the policy optimiser at policy_lr
    regression_lr: float | None = None

    # --- networks ------------------------------------------------------------
    cov_type: str = "diag"  # "diag" (std), "full" (Cholesky) or "sqrt" (symmetric square root)
    contextual_cov: bool = False  # covariance from the network per state; False: one learned global scale
    policy_hidden: tuple = (64, 64)  # policy MLP hidden layer sizes
    value_hidden: tuple = (64, 64)  # value MLP hidden layer sizes
    activation: str = "tanh"  # "tanh" or "relu"
    # orthogonal init (gain sqrt 2 hidden, 0.01 policy mean head, 1 value head), zero biases; False: Flax's
    # default (LeCun normal kernels, zero biases) with no output-layer scaling
    orthogonal_init: bool = True
    init_std: float = 1.0  # the policy's std at initialisation
    min_std: float = 1e-4  # lower bound on every std (every eigenvalue for sqrt)
    # precision of the networks' dense layers (jax.lax.Precision): "default" (the backend's: TF32 on A100/H100
    #  GPUs, one bfloat16 pass on TPUs; float32 on CPUs), "high" (TPU: 3 bfloat16 passes; GPU: as default) or
    #  "highest" (float32 everywhere; slower on GPUs and TPUs). The projections are float32 whatever this says
    matmul_precision: str = "default"

    # --- misc -----------------------------------------------------------------
    dtype: str = "float32"  # "float32" or "float64" (float64 needs jax.enable_x64)
    # devices the envs and the batch are split over (tr_jax.parallel): 0 = every device JAX sees
    # (jax.devices(), all hosts), 1 = one device; num_envs and the minibatch size must divide by it.
    # The result does not depend on it (up to summation order), so a resumed run may change it.
    num_devices: int = 0

    # --- run (host loop of tr_jax.run; see RESUME_SAFE) -------------------------
    chunk_iterations: int = 10  # iterations per compiled chunk; progress/metrics are written after each
    eval_every: int = 10  # iterations between evaluations (rounded up to a chunk end); 0: at the end only
    eval_episodes: int = 8  # full episodes per evaluation (deterministic and sampled actions each)
    checkpoint_every: int = 50  # iterations between checkpoints (rounded up to a chunk end); the end is saved
    keep_checkpoints: int = 3  # newest checkpoints kept

    @property
    def batch_size(self) -> int:
        """Transitions per iteration (N = num_envs * unroll_length)."""
        return self.num_envs * self.unroll_length

    @property
    def num_value_epochs(self) -> int:
        """Value-function epochs per iteration (``value_epochs``, or ``num_epochs`` when None)."""
        return self.num_epochs if self.value_epochs is None else self.value_epochs

    @property
    def num_value_minibatches(self) -> int:
        """Minibatches per value epoch (``value_minibatches``, or ``num_minibatches`` when None)."""
        return self.num_minibatches if self.value_minibatches is None else self.value_minibatches

    @property
    def decay_value_lr(self) -> bool:
        """Whether the value lr decays (``value_lr_decay``, or ``lr_decay`` when None)."""
        return self.lr_decay if self.value_lr_decay is None else self.value_lr_decay

    @property
    def num_iterations(self) -> int:
        """Training iterations of the run: ``total_env_steps`` // env steps per iteration."""
        return self.total_env_steps // (self.batch_size * self.action_repeat)

    @property
    def lr_decay_iterations(self) -> int:
        """Iterations the lr decay spans: ``lr_decay_steps`` (or ``total_env_steps``) // env steps per iteration."""
        steps = self.total_env_steps if self.lr_decay_steps is None else self.lr_decay_steps
        return steps // (self.batch_size * self.action_repeat)

    def replace(self, **kw) -> TrainConfig:
        """A copy with the fields ``kw`` changed."""
        return dataclasses.replace(self, **kw)


def critic(config) -> dict:
    """The critic's settings that take effect for ``config`` (a TrainConfig or its dict): network, value lr and
    its schedule, reward normalisation/scaling, value clipping, value epochs and minibatches, gradient clipping
    (shared with the policy). Two runs with equal ``critic`` train their value functions alike."""
    c = config if isinstance(config, TrainConfig) else config_from_dict(config)
    return {
        "value_hidden": list(c.value_hidden),
        "value_lr": c.value_lr,
        "value_lr_decay": c.decay_value_lr,
        "lr_decay_steps": c.lr_decay_steps if c.decay_value_lr else None,
        "normalize_reward": c.normalize_reward,
        "reward_scaling": c.reward_scaling,
        "value_clip": c.value_clip,
        "value_epochs": c.num_value_epochs,
        "value_minibatches": c.num_value_minibatches,
        "max_grad_norm": c.max_grad_norm,
        "orthogonal_init": c.orthogonal_init,
    }


# The built-in config of `tr-jax train` without a config file: TRPL with the KL
# projection on Brax's inverted pendulum with a 200-step time limit (maximum
# return 200), so that it visibly learns within a few minutes on two CPU cores
# (compilation included). With the usual 1000-step limit the pendulum needs
# millions of steps (the cart drifts into its end stop).
# Its critic is the shared one of the shipped setups (experiments/configs/_common.yaml): reward normalisation,
# value clipping 0.2, Adam 2.5e-4 annealed, 10 value epochs of 32 minibatches. The defaults' critic (16 joint
# value steps per iteration, value clipping 0.2 on raw returns) cannot reach the pendulum's values (~100) in 60
# iterations (~15 at the end): the advantages then see a fall only ~20 steps ahead, the policy drifts into
# leaning and accelerating the cart into its end stop ~100 steps after a reset, and its return falls from 200.
QUICK_CONFIG = TrainConfig(
    env_name="inverted_pendulum",
    backend="positional",
    episode_length=200,
    algorithm="trpl",
    projection="kl",
    num_envs=32,
    unroll_length=32,
    total_env_steps=32 * 32 * 60,
    num_epochs=4,
    num_minibatches=4,
    normalize_reward=True,
    value_clip=0.2,
    value_lr=2.5e-4,
    value_epochs=10,
    value_minibatches=32,
    chunk_iterations=5,
    eval_every=10,
    checkpoint_every=20,
)


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of {options}")


def _positive(config, *names):
    for n in names:
        v = getattr(config, n)
        if not (v > 0):
            raise ValueError(f"{n} must be positive, got {v}")


def _finite(config):
    """``ValueError`` naming the first float field that is NaN or infinite (no bound, rate or scale may be)."""
    for n in field_names():
        v = getattr(config, n)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{n} must be a finite number, got {v}")


def unread(algorithm: str, fields: Sequence[str]) -> list[str]:
    """The ``fields`` that ``algorithm`` never reads: those only other algorithms read
    (:func:`tr_jax.algorithms.reads`, each algorithm's own table)."""
    from tr_jax.algorithms import reads

    own = reads(algorithm)
    others = {f for a in C.ALGORITHMS if a != algorithm for f in reads(a)}
    return [f for f in fields if f in others and f not in own]


def validate(config: TrainConfig, given: Sequence[str] = ()) -> TrainConfig:
    """Raises ``ValueError`` naming the first problem; returns ``config``.

    ``given``: the fields a user set explicitly (``--set``, ``--sweep``, ``--param``); one that
    ``config.algorithm`` never reads (:func:`unread`) is an error, since it would change nothing. The fields a
    config file sets are not checked (a file may be composed over one written for another algorithm).
    Environment names are checked against the installed sources by
    :func:`tr_jax.envs.sources.check_env` when the env is built.
    """
    _check_names(config, given)
    _check_ranges(config)
    _check_obs_keys(config)
    _check_schedule(config)
    _check_batch(config)
    return config


def _check_names(config: TrainConfig, given: Sequence[str]) -> None:
    """The choice fields name an option, the numbers are finite, and no field in ``given`` is unread."""
    for name, options in _CHOICES.items():
        _choice(name, getattr(config, name), options)
    _finite(config)
    ignored = unread(config.algorithm, given)
    if ignored:
        from tr_jax.algorithms import reads

        raise ValueError(
            f"{config.algorithm} does not read {', '.join(ignored)}: setting, sweeping or searching it changes "
            f"nothing; of the fields that depend on the algorithm, {config.algorithm} reads "
            f"{', '.join(reads(config.algorithm))}"
        )


def _check_ranges(config: TrainConfig) -> None:
    """The counts, rates and bounds are positive, the bounds at least the dtype's floor."""
    _positive(
        config,
        "episode_length",
        "action_repeat",
        "num_envs",
        "unroll_length",
        "total_env_steps",
        "num_epochs",
        "num_minibatches",
        "policy_lr",
        "value_lr",
        "clip_ratio",
        "max_kl",
        "cg_iters",
        "line_search_steps",
        "eps_mean",
        "eps_cov",
        "init_std",
        "min_std",
        "reward_scaling",
        "chunk_iterations",
        "eval_episodes",
        "keep_checkpoints",
    )
    for n in ("eps_mean", "eps_cov"):
        floor = bound_floor(config.dtype)
        if getattr(config, n) < floor:
            raise ValueError(
                f"{n} = {getattr(config, n):g} is below {floor:g}, the smallest bound the projections "
                f"meet in {config.dtype} (tr_jax.projections.bound_floor)"
            )
    if config.num_devices < 0:
        raise ValueError(f"num_devices must be >= 0 (0: every device), got {config.num_devices}")


def _check_obs_keys(config: TrainConfig) -> None:
    """``obs_key`` and ``value_obs_key`` are None or non-empty, ``value_obs_key`` only with ``obs_key``."""
    if config.obs_key is not None and not config.obs_key:
        raise ValueError(
            "obs_key must be a non-empty key of the env's observation dict, or None for array observations"
        )
    if config.value_obs_key is not None and not (config.value_obs_key and config.obs_key):
        raise ValueError(
            "value_obs_key must be a non-empty key of the env's observation dict with obs_key set (dict "
            f"observations), or None (the value function sees obs_key's); got value_obs_key={config.value_obs_key!r}, "
            f"obs_key={config.obs_key!r}"
        )


def _check_schedule(config: TrainConfig) -> None:
    """The evaluation/checkpoint cadence, discounting, line search, value epochs, learning-rate horizon, clips,
    loss coefficients and standard deviations are in range."""
    if config.eval_every < 0 or config.checkpoint_every < 0:
        raise ValueError(
            f"eval_every and checkpoint_every must be >= 0 (0: at the end only), got "
            f"{config.eval_every}, {config.checkpoint_every}"
        )
    if not 0 < config.gamma <= 1 or not 0 <= config.gae_lambda <= 1:
        raise ValueError(f"need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got {config.gamma}, {config.gae_lambda}")
    if not 0 < config.backtrack_coef < 1:
        raise ValueError(f"backtrack_coef must be in (0, 1), got {config.backtrack_coef}")
    if config.value_epochs is not None and not config.value_epochs > 0:
        raise ValueError(f"value_epochs must be positive or None (None: num_epochs), got {config.value_epochs}")
    if config.value_minibatches is not None and (
        not config.value_minibatches > 0 or config.batch_size % config.value_minibatches
    ):
        raise ValueError(
            f"value_minibatches ({config.value_minibatches}) must be None (None: num_minibatches) or "
            f"a positive divisor of the batch size num_envs * unroll_length = {config.batch_size}"
        )
    if config.lr_decay_steps is not None and config.lr_decay_iterations < 1:
        raise ValueError(
            f"lr_decay_steps ({config.lr_decay_steps}) must be None (None: total_env_steps) or at "
            f"least one iteration (num_envs * unroll_length * action_repeat = "
            f"{config.batch_size * config.action_repeat} env steps)"
        )
    for n in ("max_grad_norm", "value_clip", "obs_clip"):
        v = getattr(config, n)
        if v is not None and not v > 0:
            raise ValueError(f"{n} must be positive or None, got {v}")
    if config.trust_region_coef < 0 or config.extra_regression_steps < 0 or config.entropy_coef < 0:
        raise ValueError("trust_region_coef, extra_regression_steps and entropy_coef must be >= 0")
    if config.regression_lr is not None and not (config.regression_lr > 0 and config.extra_regression_steps > 0):
        raise ValueError(
            f"regression_lr ({config.regression_lr}) must be None or positive, and needs extra_regression_steps > 0 "
            f"(got {config.extra_regression_steps})"
        )
    if config.init_std <= config.min_std:
        raise ValueError(f"init_std ({config.init_std}) must exceed min_std ({config.min_std})")


def _check_batch(config: TrainConfig) -> None:
    """The minibatches divide the batch, the budget holds an iteration, and the projection fits the scale."""
    if config.batch_size % config.num_minibatches:
        raise ValueError(
            f"num_minibatches ({config.num_minibatches}) must divide the batch size "
            f"num_envs * unroll_length = {config.batch_size}"
        )
    if config.num_iterations < 1:
        raise ValueError(
            f"total_env_steps ({config.total_env_steps}) is smaller than one iteration "
            f"(num_envs * unroll_length * action_repeat = {config.batch_size * config.action_repeat})"
        )
    if config.algorithm == "trpl" and config.projection == "w2" and config.cov_type == "full":
        raise ValueError("the W2 projection on a full covariance works on the symmetric sqrt: use cov_type='sqrt'")


# ---------------------------------------------------------------------------
# Configs as data: dicts, files, key=value strings
# ---------------------------------------------------------------------------


@functools.cache
def _hints() -> dict:
    return typing.get_type_hints(TrainConfig)


def field_names() -> tuple:
    """The names of every ``TrainConfig`` field, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig))


def _optional(hint):
    """``X`` for ``Optional[X]``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Optional[X] or X | None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def type_name(name: str) -> str:
    """Human-readable type of field ``name`` (for errors and ``--help``)."""
    hint = _hints()[name]
    if _optional(hint) is not None:
        return f"{_optional(hint).__name__} or null"
    if hint is tuple or typing.get_origin(hint) is tuple:
        return "list of ints"
    return hint.__name__


@functools.cache
def field_docs() -> dict:
    """``{field: (group, description)}`` for every ``TrainConfig`` field, read from the class's source (what
    ``tr-jax train --help`` prints): the group is the ``# --- group ---`` heading above the field (with a one-word
    sub-heading such as ``# PPO`` appended), the description the full-line comments right above the field and
    its trailing comment, continued by the comment lines right under it that start with ``#`` and two or more
    spaces (``ruff format`` keeps those; it re-indents comment lines to the field's column)."""
    import inspect
    import re

    docs: dict = {}
    group = sub = ""
    above: list = []
    last = None  # the field of the previous line, whose trailing comment a deeper-indented comment continues
    for line in inspect.getsource(TrainConfig).splitlines()[1:]:
        text = line.strip()
        field = re.match(r"(\w+): [^=]+=.*?(?:\s+#\s*(.*))?$", text)
        if text.startswith("# ---"):
            group, sub, above, last = text.strip("# -").split(" (")[0], "", [], None
        elif last is not None and (
            text.startswith("#  ") or text.startswith("#") and len(line) - len(line.lstrip()) > 4
        ):
            g, d = docs[last]
            docs[last] = (g, f"{d} {text.lstrip('# ')}".strip())
        elif re.fullmatch(r"# [A-Z]\w*", text):
            sub, above, last = text[2:], [], None
        elif text.startswith("#"):
            above.append(text.lstrip("# "))
            last = None
        elif field and field.group(1) in {f.name for f in dataclasses.fields(TrainConfig)}:
            last = field.group(1)
            docs[last] = (f"{group}: {sub}" if sub else group, " ".join(above + [field.group(2) or ""]).strip())
            above = []
        else:
            above, last = [], None
    return docs


def _coerce(name: str, value: Any, where: str):
    """``value`` as the type of field ``name``; ``TypeError`` naming ``where``, the key and the type."""
    hint = _hints()[name]
    bad = TypeError(f"{where}: {name} must be {type_name(name)}, got {type(value).__name__} {value!r}")
    if _optional(hint) is not None:  # Optional[float], Optional[int]
        if value is None:
            return None
        hint = _optional(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if hint is tuple or typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise bad
        return tuple(value)
    raise bad


def config_to_dict(config: TrainConfig) -> dict:
    """Plain JSON-able dict of every field (tuples as lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def config_from_dict(d: dict, where: str = "config", base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default ``TrainConfig()``) with the fields in ``d`` replaced.

    Raises ``ValueError`` for an unknown key (listing the known ones) and
    ``TypeError`` for a value of the wrong type; both name ``where``.
    """
    known = field_names()
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; TrainConfig fields are {list(known)}")
    values = {k: _coerce(k, v, where) for k, v in d.items()}
    return dataclasses.replace(base or TrainConfig(), **values)


def _read_mapping(path: str) -> dict:
    """The mapping in config file ``path`` (``.json``, ``.toml``, ``.yaml``/``.yml``); ``ValueError`` naming it."""
    ext = os.path.splitext(path)[1].lower()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"cannot read config file {path}: {e.strerror}") from None
    if ext not in (".json", ".toml", ".yaml", ".yml"):
        raise ValueError(f"config file {path}: unknown format {ext!r}; use .json, .toml or .yaml")
    try:
        if ext == ".json":
            d = json.loads(raw)
        elif ext == ".toml":
            import tomllib

            d = tomllib.loads(raw.decode())
        else:
            import yaml

            d = yaml.safe_load(raw)
    except Exception as e:  # a parser's own error (JSON's and TOML's are ValueErrors), or bad UTF-8
        raise ValueError(f"config file {path} does not parse: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"config file {path} must hold a mapping of TrainConfig fields, got {type(d).__name__}")
    return d


BASE_KEY = "base"


def load_config_file(path: str, base: TrainConfig | None = None, _chain: tuple = ()) -> TrainConfig:
    """Reads a config file (``.json``, ``.toml``, ``.yaml``/``.yml``): a mapping of field names to values.

    Composition: the key ``base`` names another config file (a path relative
    to this file's directory) or a list of them; they are loaded in order, each
    over the previous, and this file's fields are applied last. The first base
    (or, without one, this file) starts from ``base`` (default ``TrainConfig()``).
    A file that is its own base, directly or through others, is a ``ValueError``
    naming the chain of files; an unknown key or a wrong type is an error naming
    the file, the key and the expected type.
    """
    real = os.path.realpath(path)
    if real in _chain:
        cycle = " -> ".join(list(_chain[_chain.index(real) :]) + [real])
        raise ValueError(f"config file {path}: its bases form a cycle: {cycle}")
    d = _read_mapping(path)
    if BASE_KEY in d:
        bases = d.pop(BASE_KEY)
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
            raise TypeError(
                f"{path}: {BASE_KEY} must be a path or a list of paths (relative to the file), "
                f"got {type(bases).__name__} {bases!r}"
            )
        for b in bases:
            base = load_config_file(os.path.join(os.path.dirname(path), b), base, _chain + (real,))
    return config_from_dict(d, where=path, base=base)


def parse_assignment(text: str) -> tuple:
    """``"key=value"`` -> ``(key, value)`` typed as the field (``ValueError``/``TypeError`` naming it).

    Values are read as JSON where they parse (numbers, true/false, null, lists);
    bare words are strings; ``none``/``null`` mean None; ``64,64`` is a list; a float
    field reads ``nan`` and ``inf`` too (for :func:`validate` to refuse by name).
    """
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected key=value")
    key, value = (x.strip() for x in text.split("=", 1))
    if key not in field_names():
        raise ValueError(f"--set {text!r}: unknown key {key!r}; TrainConfig fields are {list(field_names())}")
    v: Any
    if value.lower() in ("none", "null"):
        v = None
    elif type_name(key) == "list of ints":
        try:
            v = [int(x) for x in value.strip("[]()").split(",") if x.strip()]
        except ValueError:
            raise TypeError(f"--set {text!r}: {key} must be a list of ints like 64,64") from None
    else:
        try:
            v = json.loads(value.lower() if value.lower() in ("true", "false") else value)
        except json.JSONDecodeError:
            v = value
        if isinstance(v, str) and float in (_hints()[key], _optional(_hints()[key])):
            try:
                v = float(v)  # nan, inf, -infinity (JSON spells them NaN, Infinity)
            except ValueError:
                pass
    return key, _coerce(key, v, f"--set {text!r}")


def apply_assignments(config: TrainConfig, texts: Sequence[str]) -> TrainConfig:
    """``config`` with the ``key=value`` strings ``texts`` (the CLI's ``--set``, :func:`parse_assignment`)
    applied and validated; a key that ``config.algorithm`` never reads is a ``ValueError`` (:func:`validate`)."""
    values = dict(parse_assignment(t) for t in texts)
    config = config.replace(**values)
    return validate(config, given=list(values)) if values else config
