"""The comparison protocol of issue 18: the learning-rate horizon (``lr_decay_steps``), the acting policy's
bound use, the statistics of ``tr-jax compare`` (rliable), the shared critic and the "minimal" (-m) configs of
the implementation-choices ablation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _line_env
from tr_jax.algorithms.core import make_optimizer, value_optimizer
from tr_jax.config import TrainConfig, validate

_line_env.register()

LINE = TrainConfig(env_name="tr_jax_test_line", episode_length=50, num_envs=4, unroll_length=8,
                   total_env_steps=4 * 8 * 10, num_epochs=2, num_minibatches=2, policy_hidden=(8,),
                   value_hidden=(8,))


# ----------------------------------------------------------------------------
# lr_decay_steps


def _lrs(opt, num_updates: int) -> np.ndarray:
    """The lr of each of ``num_updates`` Adam steps: with a constant gradient 1 Adam's step is -lr (1 + 1e-5)^-1."""
    params = jnp.zeros(())
    state = opt.init(params)

    def step(state, _):
        update, state = opt.update(jnp.ones(()), state, params)
        return state, -update

    return np.asarray(jax.lax.scan(step, state, None, length=num_updates)[1]) * (1 + 1e-5)


def test_lr_decay_steps_fixes_the_schedule_whatever_the_budget():
    per_it = LINE.batch_size  # env steps per iteration
    short, long = LINE.replace(total_env_steps=10 * per_it), LINE.replace(total_env_steps=20 * per_it)
    n = 10 * 4  # updates of the shorter run (4 per iteration)
    # default: the horizon is the budget, so cutting the budget changes the lr at every update
    a, b = (_lrs(make_optimizer(c, 1e-3, 4, True), n) for c in (short, long))
    assert a[-1] == pytest.approx(1e-3 / n, rel=1e-4) and b[-1] == pytest.approx(1e-3 * (1 - (n - 1) / (2 * n)),
                                                                                   rel=1e-4)
    # a fixed horizon: the same lr at every update, whatever total_env_steps is
    fixed = [c.replace(lr_decay_steps=30 * per_it) for c in (short, long)]
    a, b = (_lrs(make_optimizer(c, 1e-3, 4, True), n) for c in fixed)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, 1e-3 * (1 - np.arange(n) / (30 * 4)), rtol=1e-4)
    # ... which the horizon really sets
    c = _lrs(make_optimizer(fixed[0].replace(lr_decay_steps=5 * per_it), 1e-3, 4, True), n)
    np.testing.assert_allclose(c, 1e-3 * np.maximum(1 - np.arange(n) / (5 * 4), 0), rtol=1e-4, atol=1e-9)
    assert not np.allclose(a, c)
    # beyond the horizon the lr stays 0
    assert abs(c[-1]) < 1e-9 and _lrs(make_optimizer(fixed[0], 1e-3, 4, False), 3).tolist() == pytest.approx([1e-3] * 3, rel=1e-4)


def test_value_lr_decay_and_value_minibatches():
    c = LINE.replace(lr_decay=False, value_lr_decay=True, value_epochs=3, value_minibatches=4,
                     lr_decay_steps=2 * LINE.batch_size)
    lrs = _lrs(value_optimizer(c, 1e-3), 3 * 4 * 2 + 1)  # 12 value updates per iteration, 2 iterations
    np.testing.assert_allclose(lrs, 1e-3 * np.maximum(1 - np.arange(25) / 24, 0), rtol=1e-4, atol=1e-9)
    assert (c.num_value_minibatches, LINE.num_value_minibatches, LINE.decay_value_lr) == (4, 2, True)
    with pytest.raises(ValueError, match="value_minibatches"):
        validate(LINE.replace(value_minibatches=3))
    with pytest.raises(ValueError, match="lr_decay_steps"):
        validate(LINE.replace(lr_decay_steps=LINE.batch_size - 1))


def test_shipped_configs_share_one_lr_horizon():
    """Every shipped config anneals over the reference's 1465 iterations, whatever its budget or batch."""
    import glob
    import os

    from tr_jax.config import load_config_file

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "configs")
    paths = [p for p in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)
             if not os.path.basename(os.path.dirname(p)).startswith("_") and not os.path.basename(p).startswith("_")]
    assert len(paths) > 50
    for p in paths:
        c = load_config_file(p)
        assert c.lr_decay_iterations == 1465 and c.replace(total_env_steps=2_000_000).lr_decay_iterations == 1465, p
