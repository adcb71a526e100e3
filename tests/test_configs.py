"""Config files: composition with ``base``, errors naming file/key/type, every file in experiments/configs
validates; ``value_epochs`` (separate value-function epochs) in the shared core."""

import glob
import os

import _line_env
import jax
import numpy as np
import pytest

from tr_jax.config import TrainConfig, load_config_file, parse_assignment, type_name, validate
from tr_jax.hyperparams import from_config
from tr_jax.train import make_trainer

_line_env.register()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "experiments", "configs")
CONFIG_FILES = sorted(glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True))

ENVS = ("hopper", "halfcheetah", "walker2d", "ant", "humanoid")
SETUPS = ("ppo", "trpo", "trpl-kl", "trpl-w2", "trpl-frob", "trpl-kl-full", "trpl-frob-full")


# ----------------------------------------------------------------------------
# composition


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_base_chain_and_list(tmp_path):
    _write(tmp_path / "common.yaml", "num_envs: 8\nunroll_length: 16\nnum_epochs: 3\n")
    _write(tmp_path / "algo" / "trpl.yaml", "base: ../common.yaml\nalgorithm: trpl\nnum_epochs: 5\n")
    _write(tmp_path / "scale.toml", "num_envs = 1024\n")
    leaf = _write(
        tmp_path / "env" / "hopper.yaml",
        "base: [../algo/trpl.yaml, ../scale.toml]\nenv_name: hopper\nvalue_epochs: 2\n",
    )
    c = load_config_file(leaf)
    assert (c.algorithm, c.env_name, c.num_epochs, c.unroll_length, c.value_epochs, c.num_envs) == (
        "trpl",
        "hopper",
        5,
        16,
        2,
        1024,
    )  # later overrides earlier; the file itself last
    assert c.gamma == TrainConfig().gamma  # untouched fields keep their defaults
    # the optional start config applies under the whole chain
    assert load_config_file(leaf, base=TrainConfig(gamma=0.9)).gamma == 0.9


def test_base_cycle_names_the_files(tmp_path):
    a = _write(tmp_path / "a.yaml", "base: sub/b.yaml\nnum_envs: 8\n")
    _write(tmp_path / "sub" / "b.yaml", "base: ../a.yaml\n")
    with pytest.raises(ValueError, match=r"cycle: .*a\.yaml -> .*sub/b\.yaml -> .*a\.yaml"):
        load_config_file(a)
    selfref = _write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config_file(selfref)
    # a diamond (two bases sharing one) is no cycle
    _write(tmp_path / "d" / "root.yaml", "num_envs: 8\n")
    _write(tmp_path / "d" / "l.yaml", "base: root.yaml\nnum_epochs: 2\n")
    _write(tmp_path / "d" / "r.yaml", "base: root.yaml\nnum_minibatches: 4\n")
    c = load_config_file(_write(tmp_path / "d" / "top.yaml", "base: [l.yaml, r.yaml]\n"))
    assert (c.num_envs, c.num_epochs, c.num_minibatches) == (8, 2, 4)


def test_errors_name_the_file_key_and_type(tmp_path):
    _write(tmp_path / "ok.yaml", "num_envs: 8\n")
    bad_base = _write(tmp_path / "bad_base.yaml", "base: 3\n")
    with pytest.raises(TypeError, match=f"{bad_base}: base must be a path or a list of paths"):
        load_config_file(bad_base)
    missing = _write(tmp_path / "missing.yaml", "base: nope.yaml\n")
    with pytest.raises(ValueError, match=f"cannot read config file {tmp_path}/nope.yaml"):
        load_config_file(missing)
    # an error inside a base names the base file, not the one that names it
    _write(tmp_path / "wrong.yaml", "num_epochs: 2.5\n")
    leaf = _write(tmp_path / "leaf.yaml", "base: wrong.yaml\n")
    with pytest.raises(TypeError, match=f"{tmp_path}/wrong.yaml: num_epochs must be int, got float 2.5"):
        load_config_file(leaf)
    typo = _write(tmp_path / "typo.yaml", "base: ok.yaml\nvalue_epoch: 3\n")
    with pytest.raises(ValueError, match=rf"{typo}: unknown key\(s\) \['value_epoch'\]"):
        load_config_file(typo)
    wrong_type = _write(tmp_path / "vt.yaml", "value_epochs: ten\n")
    with pytest.raises(TypeError, match=f"{wrong_type}: value_epochs must be int or null, got str 'ten'"):
        load_config_file(wrong_type)


def test_value_epochs_field():
    assert type_name("value_epochs") == "int or null" and type_name("max_grad_norm") == "float or null"
    assert parse_assignment("value_epochs=10") == ("value_epochs", 10)
    assert parse_assignment("value_epochs=none") == ("value_epochs", None)
    with pytest.raises(TypeError, match="value_epochs must be int or null"):
        parse_assignment("value_epochs=2.5")
    assert TrainConfig(num_epochs=20).num_value_epochs == 20
    assert TrainConfig(num_epochs=20, value_epochs=10).num_value_epochs == 10
    with pytest.raises(ValueError, match="value_epochs must be positive or None"):
        validate(TrainConfig(value_epochs=0))


# ----------------------------------------------------------------------------
# the shipped configs


def test_every_config_file_loads_and_validates():
    from tr_jax.envs import check_env
    from tr_jax.envs.sources import EnvUnavailableError

    assert len(CONFIG_FILES) >= 2 * len(ENVS) * len(SETUPS)
    for path in CONFIG_FILES:
        config = validate(load_config_file(path))
        try:
            check_env(config.env_name, config.backend)
        except EnvUnavailableError:  # a known name whose assets this machine lacks (Playground's Menagerie robots)
            pass
        text = open(path).read()
        assert text.lstrip().startswith("#"), f"{path}: says where its numbers come from in a leading comment"


@pytest.mark.parametrize("env", ENVS)
def test_paper_grid_is_complete(env):
    """Every env x setup has a CPU and a GPU config with what its name says."""
    want = {
        "ppo": ("ppo", None, None),
        "trpo": ("trpo", None, None),
        "trpl-kl": ("trpl", "kl", "diag"),
        "trpl-w2": ("trpl", "w2", "diag"),
        "trpl-frob": ("trpl", "frob", "diag"),
        "trpl-kl-full": ("trpl", "kl", "full"),
        "trpl-frob-full": ("trpl", "frob", "full"),
    }
    for setup, (algorithm, projection, cov_type) in want.items():
        cpu = load_config_file(os.path.join(CONFIG_DIR, env, f"{setup}.yaml"))
        gpu = load_config_file(os.path.join(CONFIG_DIR, "gpu", env, f"{setup}.yaml"))
        for c in (cpu, gpu):
            assert c.env_name == env and c.algorithm == algorithm, (env, setup)
            if projection:
                assert (c.projection, c.cov_type) == (projection, cov_type) and c.max_grad_norm is None
        # the GPU variant: thousands of envs, the same algorithm otherwise
        assert gpu.num_envs >= 1024 and cpu.num_envs < 1024
        same = (
            "algorithm",
            "projection",
            "cov_type",
            "eps_mean",
            "eps_cov",
            "num_epochs",
            "value_epochs",
            "policy_lr",
            "value_lr",
            "clip_ratio",
            "max_kl",
            "trust_region_coef",
            "env_name",
        )
        assert {k: getattr(cpu, k) for k in same} == {k: getattr(gpu, k) for k in same}, (env, setup)
        if algorithm == "trpl":  # the reference: 20 policy epochs, 10 value epochs
            assert (cpu.num_epochs, cpu.num_value_epochs) == (20, 10)


# ----------------------------------------------------------------------------
# value_epochs in the core

LINE = _line_env.line_config(4, episode_length=50, num_epochs=3)


def _counts(opt_state) -> set:
    """The distinct Optax step counters (Adam's and the schedule's) in an optimiser state."""
    found = set()
    for path, leaf in jax.tree_util.tree_leaves_with_path(opt_state):
        if any(getattr(p, "name", None) == "count" for p in path):
            found.add(int(leaf))
    return found


def _batch(n, obs_dim, action_dim, key):
    """A random :class:`~tr_jax.algorithms.base.Batch` of ``n`` states (diagonal behaviour scales ``[n, k]``)."""
    from tr_jax.algorithms.base import Batch

    k = jax.random.split(key, 5)
    mean = 0.1 * jax.random.normal(k[0], (n, action_dim))
    scale = jax.numpy.ones((n, action_dim))
    action = mean + jax.random.normal(k[1], (n, action_dim))
    log_prob = -0.5 * jax.numpy.sum((action - mean) ** 2, -1) - 0.5 * action_dim * np.log(2 * np.pi)
    return Batch(
        obs=jax.random.normal(k[2], (n, obs_dim)),
        action=action,
        log_prob=log_prob,
        old_mean=mean,
        old_scale=scale,
        advantage=jax.random.normal(k[3], (n,)),
        returns=jax.random.normal(k[4], (n,)),
        old_value=jax.numpy.zeros((n,)),
    )


@pytest.mark.parametrize("algorithm, value_epochs", [("ppo", None), ("ppo", 5), ("trpl", 5), ("trpo", 5)])
def test_value_epochs_sets_the_value_step_count(algorithm, value_epochs):
    """One update on a random batch: the value optimiser counts value_epochs x num_minibatches steps, the policy
    optimiser num_epochs x num_minibatches (one update, so the counters are exactly these)."""
    cfg = LINE.replace(algorithm=algorithm, value_epochs=value_epochs)
    trainer = make_trainer(cfg)
    k_pol, k_val, k_batch, k_upd = jax.random.split(jax.random.key(0), 4)
    state = trainer.algorithm.init(trainer.policy.init(k_pol), trainer.value.init(k_val))
    batch = _batch(cfg.batch_size, trainer.env.obs_dim, trainer.env.action_dim, k_batch)
    new, metrics = jax.jit(trainer.algorithm.update)(k_upd, state, batch, 0, from_config(cfg))
    assert _counts(new.value_opt) == {(value_epochs or cfg.num_epochs) * cfg.num_minibatches}
    if algorithm != "trpo":  # TRPO's policy step has no optimiser
        assert _counts(new.policy_opt) == {cfg.num_epochs * cfg.num_minibatches}
    for k in ("value_loss", "value_grad_norm", "grad_norm"):
        assert np.isfinite(float(metrics[k])), k
    # both nets moved
    for a, b in ((state.policy_params, new.policy_params), (state.value_params, new.value_params)):
        assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_the_playground_locomotion_configs_give_the_critic_the_privileged_state():
    """Playground's own PPO config for the task is where the numbers come from: it names the same entries."""
    pytest.importorskip("mujoco_playground")
    from mujoco_playground.config import locomotion_params

    ppo = locomotion_params.brax_ppo_config("Go1JoystickFlatTerrain")
    for name in ("ppo", "trpl-kl"):
        c = load_config_file(os.path.join(CONFIG_DIR, "playground", "go1-joystick", f"{name}.yaml"))
        assert (
            (c.obs_key, c.value_obs_key)
            == (
                ppo.network_factory.policy_obs_key,
                ppo.network_factory.value_obs_key,
            )
            == ("state", "privileged_state")
        )
        assert (c.num_envs, c.unroll_length, c.num_minibatches, c.num_epochs, c.gamma) == (
            ppo.num_envs,
            ppo.unroll_length,
            ppo.num_minibatches,
            ppo.num_updates_per_batch,
            ppo.discounting,
        )
        assert c.policy_hidden == tuple(ppo.network_factory.policy_hidden_layer_sizes)
