"""Which algorithm reads which config field (each algorithm module's ``READS``, :func:`tr_jax.algorithms.reads`),
checked against what the trainer built for it actually reads; and the refusal of a ``--set``, ``--sweep`` or
``--param`` of a field the chosen algorithm never reads (it would train identical runs)."""

import os
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: _line_env
from _line_env import LineEnv, line_config  # noqa: E402

from tr_jax import cli  # noqa: E402
from tr_jax import train as train_module  # noqa: E402
from tr_jax.algorithms import ALGORITHMS, reads  # noqa: E402
from tr_jax.algorithms.base import Batch  # noqa: E402
from tr_jax.config import TrainConfig, field_names, validate  # noqa: E402
from tr_jax.hyperparams import SWEEPABLE, from_config, sweep_configs  # noqa: E402


def _fields_read(algorithm: str, monkeypatch) -> set:
    """The TrainConfig fields read while the trainer for ``algorithm`` is built and one chunk is traced (the
    config's attribute reads, ``validate``'s aside), the :data:`SWEEPABLE` ones counted only when the update
    reads them from its Hyperparams (the config gives only their defaults)."""
    config = line_config(1, algorithm=algorithm)
    fields, seen = set(field_names()), set()

    class Recording(TrainConfig):
        def __getattribute__(self, name):
            if name in fields:
                seen.add(name)
            return super().__getattribute__(name)

    monkeypatch.setattr(train_module, "validate", lambda c: c)  # (it reads every field)
    trainer = train_module.make_trainer(Recording(**{f: getattr(config, f) for f in fields}), LineEnv())
    state = jax.eval_shape(trainer.init, jax.random.key(0))
    jax.eval_shape(lambda s: trainer.train_chunk(s, 1), state)
    hparams, read_hparams = from_config(config), set()

    class RecordingHparams:
        def __getattr__(self, name):
            read_hparams.add(name)
            return getattr(hparams, name)

    n = config.batch_size
    batch = Batch(*(jnp.ones(s) for s in ((n, 2), (n, 1), (n,), (n, 1), (n, 1), (n,), (n,), (n,))))
    algo = trainer.algorithm
    jax.eval_shape(
        lambda s: algo.update(jax.random.key(1), s, batch, jnp.int32(0), RecordingHparams()),
        jax.eval_shape(lambda: state.algo),
    )
    return (seen - set(SWEEPABLE)) | read_hparams


def test_each_algorithm_declares_the_fields_only_some_algorithms_read(monkeypatch):
    read = {a: _fields_read(a, monkeypatch) for a in ALGORITHMS}
    dependent = set.union(*read.values()) - set.intersection(*read.values())
    assert {a: sorted(read[a] & dependent) for a in ALGORITHMS} == {a: sorted(reads(a)) for a in ALGORITHMS}
    # what the issue saw: clip_ratio is PPO's, max_kl TRPO's, the bounds and the regression weight TRPL's; TRPO
    # has no policy optimiser
    assert {f for f in ("clip_ratio", "max_kl", "eps_mean", "eps_cov", "trust_region_coef") if f in reads("trpl")} == {
        "eps_mean",
        "eps_cov",
        "trust_region_coef",
    }
    assert "clip_ratio" in reads("ppo") and "max_kl" in reads("trpo") and "policy_lr" not in reads("trpo")


def test_validate_refuses_a_given_field_the_algorithm_never_reads():
    trpl = line_config(1, algorithm="trpl")
    with pytest.raises(ValueError) as e:
        validate(trpl, given=["eps_mean", "clip_ratio"])
    message = str(e.value)
    assert message.startswith("trpl does not read clip_ratio:") and "\n" not in message
    assert message.endswith("trpl reads " + ", ".join(reads("trpl")))
    for algorithm, field in (("ppo", "max_kl"), ("ppo", "eps_cov"), ("trpo", "trust_region_coef")):
        with pytest.raises(ValueError, match=f"^{algorithm} does not read {field}:"):
            validate(trpl.replace(algorithm=algorithm), given=[field])
    # a field of the algorithm, or one every algorithm reads, is fine; a config's own fields are not checked
    validate(trpl.replace(algorithm="ppo"), given=["clip_ratio", "entropy_coef", "value_lr", "num_envs"])
    validate(trpl.replace(clip_ratio=0.3))
    assert len(sweep_configs(trpl.replace(algorithm="ppo"), [("clip_ratio", (0.1, 0.3))])) == 2
    with pytest.raises(ValueError, match="^trpl does not read clip_ratio"):
        sweep_configs(trpl, [("clip_ratio", (0.1, 0.3))])


@pytest.mark.parametrize(
    "args,field",
    [
        (["train", "--sweep", "clip_ratio=0.1,0.3"], "clip_ratio"),  # the built-in config is TRPL
        (["train", "--set", "max_kl=0.02"], "max_kl"),
        (["train", "--set", "algorithm=ppo", "--sweep", "eps_mean=0.01,0.03"], "eps_mean"),
        (["tune", "--param", "clip_ratio=uniform:0.1:0.3", "--trials", "2", "--batch", "2"], "clip_ratio"),
        (["tune", "--set", "algorithm=trpo", "--param", "policy_lr=log:1e-4:1e-3"], "policy_lr"),
        (["tune", "--set", "trust_region_coef=2", "--set", "algorithm=ppo", "--param", "clip_ratio=log:0.1:0.3"], ""),
    ],
)
def test_the_cli_refuses_a_field_the_algorithm_never_reads(args, field, tmp_path, capsys):
    out = str(tmp_path / "out")
    where = ["--dir", out] if args[0] == "tune" else ["--run-dir", out]
    assert cli.main([*args, *where, "--progress", "none"]) == 2
    err = capsys.readouterr().err
    algorithm = "trpo" if "algorithm=trpo" in args else "ppo" if "algorithm=ppo" in args else "trpl"
    assert err.count("\n") == 1 and f"{algorithm} does not read {field or 'trust_region_coef'}:" in err, err
    assert f"{algorithm} reads {', '.join(reads(algorithm))}" in err
    assert not os.path.exists(out)
