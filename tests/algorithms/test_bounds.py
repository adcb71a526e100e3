"""The bounds table (tr_jax.algorithms.bounds) names metrics the built algorithms emit and real hyperparameters."""

import functools

import jax
import jax.numpy as jnp
import pytest

from tr_jax.algorithms import ALGORITHMS, make_algorithm
from tr_jax.algorithms.base import Batch
from tr_jax.algorithms.bounds import BOUNDS
from tr_jax.config import TrainConfig
from tr_jax.hyperparams import Hyperparams, from_config
from tr_jax.networks import make_policy, make_value

OBS, K, N = 2, 1, 16


def test_every_algorithm_has_an_entry():
    assert set(BOUNDS) == set(ALGORITHMS)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_bounded_metrics_are_emitted_by_the_update(algorithm):
    cfg = TrainConfig(
        algorithm=algorithm, num_envs=4, unroll_length=4, num_minibatches=2, num_epochs=1, policy_hidden=(4,),
        value_hidden=(4,),
    )  # fmt: skip
    policy, value = make_policy(cfg, OBS, K), make_value(cfg, OBS)
    algo = make_algorithm(cfg, policy, value)
    state = jax.eval_shape(algo.init, policy.init(jax.random.PRNGKey(0)), value.init(jax.random.PRNGKey(1)))
    mean, scale = jax.eval_shape(policy.apply, state.policy_params, jnp.zeros((N, OBS)))
    f = jax.ShapeDtypeStruct
    batch = Batch(f((N, OBS), jnp.float32), f((N, K), jnp.float32), f((N,), jnp.float32), mean, scale,
                  *(f((N,), jnp.float32),) * 3)  # fmt: skip
    update = functools.partial(algo.update, hp=from_config(cfg))
    _, metrics = jax.eval_shape(update, jax.random.PRNGKey(2), state, batch, jnp.zeros((), jnp.int32))
    for b in (*BOUNDS[algorithm].optimised.values(), *BOUNDS[algorithm].acting.values()):
        assert b.metric in metrics, (algorithm, b.metric, sorted(metrics))
        assert metrics[b.metric].shape == ()
        assert b.hyperparameter in Hyperparams._fields and hasattr(cfg, b.hyperparameter)
