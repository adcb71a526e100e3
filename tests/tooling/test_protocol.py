"""The comparison protocol of the study (docs/results.md): the learning-rate horizon (``lr_decay_steps``), the
acting policy's bound use, the statistics of ``tr-jax compare`` (rliable), the shared critic and the "minimal"
(-m) configs of the implementation-choices ablation."""

import glob
import os

import _line_env
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tr_jax import compare
from tr_jax.algorithms.core import make_optimizer, value_optimizer
from tr_jax.config import TrainConfig, critic, load_config_file, validate

_line_env.register()

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "experiments", "configs")
LINE = _line_env.line_config(10, episode_length=50)


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
    assert a[-1] == pytest.approx(1e-3 / n, rel=1e-4) and b[-1] == pytest.approx(
        1e-3 * (1 - (n - 1) / (2 * n)), rel=1e-4
    )
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
    assert abs(c[-1]) < 1e-9
    assert _lrs(make_optimizer(fixed[0], 1e-3, 4, False), 3).tolist() == pytest.approx([1e-3] * 3, rel=1e-4)


def test_value_lr_decay_and_value_minibatches():
    c = LINE.replace(
        lr_decay=False, value_lr_decay=True, value_epochs=3, value_minibatches=4, lr_decay_steps=2 * LINE.batch_size
    )
    lrs = _lrs(value_optimizer(c, 1e-3), 3 * 4 * 2 + 1)  # 12 value updates per iteration, 2 iterations
    np.testing.assert_allclose(lrs, 1e-3 * np.maximum(1 - np.arange(25) / 24, 0), rtol=1e-4, atol=1e-9)
    assert (c.num_value_minibatches, LINE.num_value_minibatches, LINE.decay_value_lr) == (4, 2, True)
    with pytest.raises(ValueError, match="value_minibatches"):
        validate(LINE.replace(value_minibatches=3))
    with pytest.raises(ValueError, match="lr_decay_steps"):
        validate(LINE.replace(lr_decay_steps=LINE.batch_size - 1))


def test_shipped_configs_share_one_lr_horizon():
    """Every shipped config of the paper's benchmarks anneals over the reference's 1465 iterations, whatever its
    budget or batch (a Playground task's config keeps Playground's own schedule, so it is not one of them)."""
    paths = [
        p
        for p in glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True)
        if not os.path.basename(os.path.dirname(p)).startswith("_") and not os.path.basename(p).startswith("_")
    ]
    assert len(paths) > 50
    for p in paths:
        c = load_config_file(p)
        if c.env_name.startswith("playground:"):
            continue
        assert c.lr_decay_iterations == 1465 and c.replace(total_env_steps=2_000_000).lr_decay_iterations == 1465, p


# ----------------------------------------------------------------------------
# the acting policy's bound use


def test_bound_metrics_over_states_of_every_device():
    from tr_jax.algorithms.trpl import BOUND_TOLERANCE, bound_metrics

    eps_m, eps_c = 0.1, 0.01
    mean_part = eps_m * jnp.array([0.5, 1.0, 1 + BOUND_TOLERANCE / 2, 1.2, 3.0, 0.0])  # 2 of 6 over
    cov_part = eps_c * jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 2.0])  # 1 of 6 over
    want = {
        "x_mean_part_mean": float(mean_part.mean()),
        "x_mean_part_max": 0.3,
        "x_mean_part_over": 2 / 6,
        "x_cov_part_mean": float(cov_part.mean()),
        "x_cov_part_max": 0.02,
        "x_cov_part_over": 1 / 6,
    }
    got = bound_metrics("x_", mean_part, cov_part, eps_m, eps_c)
    assert {k: float(v) for k, v in got.items()} == pytest.approx(want, rel=1e-6)
    # data parallelism: two devices (a named vmap axis) with 3 states each report the statistics of all 6
    split = jax.vmap(lambda m, c: bound_metrics("x_", m, c, eps_m, eps_c, "d"), axis_name="d")(
        mean_part.reshape(2, 3), cov_part.reshape(2, 3)
    )
    for k, v in split.items():
        np.testing.assert_allclose(np.asarray(v), want[k], rtol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def runaway_trpl():
    """Two TRPL iterations whose network output leaves the trust region: no regression loss, a huge lr."""
    from tr_jax.train import make_trainer

    config = LINE.replace(
        algorithm="trpl",
        projection="kl",
        trust_region_coef=0.0,
        policy_lr=0.3,
        eps_mean=1e-3,
        eps_cov=1e-4,
        num_epochs=4,
        contextual_cov=True,
        lr_decay=False,
    )
    trainer = make_trainer(config)
    _, metrics = jax.jit(trainer.train_chunk, static_argnums=1)(trainer.init(jax.random.key(0)), 2)
    return config, {k: np.asarray(v) for k, v in metrics.items()}


def test_acting_bound_metrics_detect_a_network_outside_the_trust_region(runaway_trpl):
    from tr_jax.algorithms.trpl import BOUND_TOLERANCE

    config, m = runaway_trpl
    tol = 1 + BOUND_TOLERANCE
    for part, eps in (("mean_part", config.eps_mean), ("cov_part", config.eps_cov)):
        # the projected policy meets its bounds in every state ...
        assert np.all(m[f"{part}_max"] <= eps * tol) and np.all(m[f"{part}_over"] == 0), part
        assert np.all(m[f"{part}_mean"] <= m[f"{part}_max"])
        # ... the acting one (the network output) does not
        assert np.all(m[f"acting_{part}_max"] > eps * tol) and np.all(m[f"acting_{part}_over"] > 0.5), part
        assert np.all(m[f"acting_{part}_mean"] > eps) and np.all(m[f"acting_{part}_over"] <= 1)
    assert np.all(m["acting_kl_max"] > m["kl_max"]) and np.all(m["acting_kl_mean"] >= m["acting_mean_part_mean"])
    assert np.all(m["kl_max"] <= (config.eps_mean + config.eps_cov) * tol)


# ----------------------------------------------------------------------------
# statistics (tr_jax.stats)

X = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
Y = np.array([0.5, 2.5, 3.5, 1.0, 2.0])


def test_statistics_agree_with_rliable():
    from rliable import library, metrics

    from tr_jax import stats

    est = stats.iqm(X, reps=300, seed=3)
    assert est.point == pytest.approx(3.0)  # the middle three of five
    np.random.seed(3)  # noqa: NPY002 (rliable resamples with numpy's global generator)
    points, cis = library.get_interval_estimates(
        {"x": X[:, None]},
        lambda s: np.array([metrics.aggregate_iqm(s)]),
        reps=300,
        random_state=np.random.RandomState(3),
    )
    assert (est.low, est.high) == (cis["x"][0, 0], cis["x"][1, 0]) and est.low < 3.0 < est.high

    poi = stats.probability_of_improvement(X, Y, reps=300, seed=3)
    assert poi.point == pytest.approx(18 / 25)  # 17 pairs won, 2 ties, of 25
    np.random.seed(3)  # noqa: NPY002
    points, cis = library.get_interval_estimates(
        {"xy": [X[:, None], Y[:, None]]},
        lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
        reps=300,
        random_state=np.random.RandomState(3),
    )
    assert (poi.low, poi.high) == (cis["xy"][0, 0], cis["xy"][1, 0]) and poi.low < 18 / 25 < poi.high
    # (stats counts the pairs itself: on equal cells, which rliable answers with 0.5 without its test, too)
    assert (
        stats.probability_of_improvement(X, X, reps=50, seed=3).point
        == 0.5
        == metrics.probability_of_improvement(X[:, None], X[:, None])
    )
    # a seed without a score (short of the budget) is never dropped: the cell has no statistic
    assert all(np.isnan(stats.iqm(np.append(X, np.nan), reps=300, seed=3)))
    assert all(np.isnan(stats.probability_of_improvement(X, np.append(Y, np.nan), reps=10)))
    # a failed seed must be imputed first
    with pytest.raises(ValueError, match="impute_failures"):
        stats.iqm(np.append(X, stats.FAILED))


def test_statistics_without_rliable_say_what_to_install(monkeypatch):
    import sys

    from tr_jax import stats

    monkeypatch.setitem(sys.modules, "rliable", None)
    with pytest.raises(ImportError, match=r"pip install 'tr_jax\[stats\]'"):
        stats.iqm(X)


def test_seed_score_at_the_common_budget():
    from tr_jax import stats

    def evals(*pairs):
        return [{"env_steps": s, "deterministic_return_mean": r} for s, r in pairs]

    done = evals((100, 100.0), (850, 1.0), (900, 2.0), (950, 4.0), (1000, 6.0))
    # the last 10% of the budget: 900, 950 and 1000 count, 850 does not
    assert stats.seed_score(done, 1000) == pytest.approx(4.0)
    # a seed that stopped at 500 is short of the budget (its own last 10% would have scored 4.0): no score
    short = evals((400, 1.0), (450, 3.0), (500, 5.0))
    assert np.isnan(stats.seed_score(short, 1000)) and np.isnan(stats.seed_score([], 1000))
    # ... but it is scored at a budget it reached (--table-at), from evaluations up to that budget only
    assert stats.seed_score(evals((400, 1.0), (450, 3.0), (500, 5.0), (600, 9.0)), 500) == pytest.approx(4.0)
    # diverged at or before the budget: a failure, however well it did before (its last finite window was 4.0)
    assert stats.seed_score(done, 1000, diverged_at=1000) == stats.FAILED
    assert stats.seed_score(short, 1000, diverged_at=600) == stats.FAILED
    assert stats.seed_score(evals((900, 1.0), (1000, None)), 1000) == stats.FAILED  # a NaN evaluation
    # diverged after the budget: scored at the budget
    assert stats.seed_score(done, 1000, diverged_at=1100) == pytest.approx(4.0)
    # reached the budget but no evaluation in the window (500 is past it; 100 before it): no score
    assert np.isnan(stats.seed_score(done, 450)) and stats.seed_score(done, 100) == 100.0
    # a cell: per seed, with divergence steps
    rows = [{**r, "seed": 0} for r in done] + [{**r, "seed": 1} for r in short] + [{**r, "seed": 2} for r in done]
    got = stats.seed_scores(rows, 4, 1000, diverged_at=[None, None, 950, None])
    assert got[0] == pytest.approx(4.0) and np.isnan(got[1]) and got[2] == stats.FAILED and np.isnan(got[3])
    assert not stats.complete(got) and stats.complete([1.0, stats.FAILED])
    # worst-case imputation; the lowest evaluation return at or before the budget
    assert stats.lowest_return(done) == 1.0 and stats.lowest_return(done, 800) == 100.0
    assert stats.lowest_return(evals((1, None))) != stats.lowest_return(evals((1, None)))  # NaN: none
    np.testing.assert_array_equal(stats.impute_failures([3.0, stats.FAILED, np.nan], -5.0), [3.0, -5.0, np.nan])
    # the same rule on the stochastic evaluation's return (a sampled action): its own column, the same window
    both = [{**r, "seed": 0, "stochastic_return_mean": -r["deterministic_return_mean"]} for r in done]
    assert stats.seed_score(both, 1000, column=stats.STOCHASTIC) == pytest.approx(-4.0)
    assert stats.seed_scores(both, 1, 1000, column=stats.STOCHASTIC)[0] == pytest.approx(-4.0)
    assert stats.lowest_return(both, column=stats.STOCHASTIC) == -100.0 and stats.seed_score(both, 1000) == 4.0


def _row(setup, scores, floor=0.0, budget=1000, env="e"):
    from tr_jax.config import TrainConfig

    return compare.Row(
        env,
        setup,
        "finished",
        len(scores),
        budget,
        budget,
        np.array(scores, float),
        floor,
        np.zeros(len(scores)),
        np.nan,
        None,
        0,
        None,
        None,
        critic(TrainConfig()),
        np.nan,
        np.nan,
    )


def _table_cells(text):
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {r[1]: dict(zip(head, r)) for r in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:])}


def test_table_scores_failed_seeds_as_failures_and_marks_incomplete_cells():
    from tr_jax import stats

    ppo = [10.0, 20.0, 30.0, 40.0, 50.0]
    # trpl: four good seeds and one that diverged; the env's lowest evaluation (floor) is 1.0 (in ppo's run)
    rows = [
        _row("ppo", ppo, floor=1.0),
        _row("trpl", [60.0, 70.0, 80.0, 90.0, stats.FAILED], floor=5.0),
        _row("short", [60.0, 70.0, np.nan, 90.0, 100.0], floor=5.0),
        _row("other-budget", [1.0] * 5, budget=500),
    ]
    text = compare.table(rows, reps=50)
    cells = _table_cells(text)
    imputed = [60.0, 70.0, 80.0, 90.0, 1.0]
    want = stats.iqm(imputed, reps=50)
    assert cells["trpl"]["score IQM [95% CI]"] == f"{want.point:.1f} [{want.low:.1f}, {want.high:.1f}]"
    assert want.point == pytest.approx(np.mean([60.0, 70.0, 80.0]))  # not the IQM of the four that finished (75)
    poi = stats.probability_of_improvement(imputed, ppo, reps=50)
    assert poi.point == pytest.approx(20 / 25)  # the failed seed loses against every ppo seed
    assert cells["trpl"]["P(improvement over ppo) [95% CI]"] == f"{poi.point:.2f} [{poi.low:.2f}, {poi.high:.2f}]"
    # a seed short of the budget: no score and no P(improvement), whatever the other four did
    assert cells["short"]["score IQM [95% CI]"] == "incomplete (4/5 seeds at the budget)"
    assert cells["short"]["P(improvement over ppo) [95% CI]"] == "–"
    # no ppo row at the same budget: no P(improvement)
    assert cells["other-budget"]["P(improvement over ppo) [95% CI]"] == "–"
    assert "Failed seeds: e/trpl seed 4." in text and "worst-case imputation" in text


# ----------------------------------------------------------------------------
# the shared critic and the "minimal" (-m) configs

MINIMAL = [
    os.path.join(CONFIGS, env, f"{s}-m.yaml") for env in ("hopper", "walker2d") for s in ("ppo", "trpl-kl", "trpl-frob")
]


@pytest.mark.parametrize("tree", ["", "gpu"])
def test_every_setup_of_an_env_uses_the_same_critic(tree):
    for env in ("hopper", "walker2d", "halfcheetah", "ant", "humanoid"):
        files = sorted(glob.glob(os.path.join(CONFIGS, tree, env, "*.yaml")))
        full = {str(critic(load_config_file(p))) for p in files if not p.endswith("-m.yaml")}
        minimal = {str(critic(load_config_file(p))) for p in files if p.endswith("-m.yaml")}
        assert len(files) >= 7 and len(full) == 1 and len(minimal) <= 1, (tree, env, full, minimal)
    # the reference TRPL critic differs in the fields _common.yaml lists
    own = load_config_file(
        os.path.join(CONFIGS, "_critics", "trpl-reference.yaml"),
        load_config_file(os.path.join(CONFIGS, "hopper", "trpl-kl.yaml")),
    )
    shared = critic(load_config_file(os.path.join(CONFIGS, "hopper", "ppo.yaml")))
    assert {k for k, v in critic(own).items() if shared[k] != v} == {
        "value_lr",
        "value_lr_decay",
        "lr_decay_steps",
        "normalize_reward",
        "value_clip",
        "value_minibatches",
    }


def test_compare_says_which_critic():
    from types import SimpleNamespace as NS

    c = critic(TrainConfig())
    assert compare._critic_note([NS(critic=c), NS(critic=dict(c))]).startswith("critic: the same in every run: ")
    note = compare._critic_note([NS(critic=c), NS(critic={**c, "value_lr": 1.0, "value_clip": 0.5})])
    assert note.startswith("critic: differs between runs in value_clip, value_lr ")


def _trace(config):
    """What the trainer built from ``config`` (on the line env, whose dynamics do not matter here) really does:
    records, while ``train_chunk`` is traced (not compiled), the calls of the functions behind each switch; and
    returns the initial networks and optimiser states."""
    from tr_jax.algorithms import core, ppo, trpl
    from tr_jax.envs import normalize as N
    from tr_jax.train import make_trainer

    calls = {"obs_clip": [], "reward_norm": 0, "value_clip": [], "advantage_norm": 0}
    real = (N.normalize, N.update_reward_norm, core.value_loss, ppo.normalize_advantage)

    def normalize(stats, x, clip=10.0, eps=1e-8):
        calls["obs_clip"].append(clip)
        return real[0](stats, x, clip, eps)

    def update_reward_norm(*a, **k):
        calls["reward_norm"] += 1
        return real[1](*a, **k)

    def value_loss(fn, params, mb, clip):
        calls["value_clip"].append(clip)
        return real[2](fn, params, mb, clip)

    def normalize_advantage(*a, **k):
        calls["advantage_norm"] += 1
        return real[3](*a, **k)

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(N, "normalize", normalize)
        mp.setattr(N, "update_reward_norm", update_reward_norm)
        mp.setattr(core, "value_loss", value_loss)
        for module in (ppo, trpl):
            mp.setattr(module, "normalize_advantage", normalize_advantage)
        trainer = make_trainer(config.replace(num_devices=1), env=_line_env.LineEnv())
        state = trainer.init(jax.random.key(0))
        jax.eval_shape(lambda s: trainer.train_chunk(s, 1), state)
    finally:
        mp.undo()
    return calls, trainer, state


def _schedules(opt_state) -> int:
    return len(
        [
            x
            for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByScheduleState))
            if isinstance(x, optax.ScaleByScheduleState)
        ]
    )


def _orthogonal(trainer) -> tuple:
    """(hidden kernel orthogonal with gain sqrt 2, mean head scaled to 0.01) of the built policy network."""
    p = trainer.policy.init(jax.random.key(1))["params"]
    k = np.asarray(p["trunk"]["Dense_0"]["kernel"])  # [d, 64], d < 64: orthonormal rows times sqrt 2
    return np.allclose(k @ k.T, 2 * np.eye(k.shape[0]), atol=1e-4), np.abs(np.asarray(p["mean_head"]["kernel"])).max()


@pytest.mark.parametrize(
    "path", MINIMAL + [p.replace("-m.yaml", ".yaml") for p in MINIMAL[:3]], ids=lambda p: "/".join(p.split(os.sep)[-2:])
)
def test_minimal_configs_switch_every_choice_off_in_the_built_trainer(path):
    config = validate(load_config_file(path))
    calls, trainer, state = _trace(config)
    opts = (state.algo.policy_opt, state.algo.value_opt)
    orthogonal, head = _orthogonal(trainer)
    seen = {
        "obs normalisation": bool(calls["obs_clip"]),
        "obs clipping": any(c is not None for c in calls["obs_clip"]),
        "reward normalisation": calls["reward_norm"] > 0,
        "value clipping": any(c is not None for c in calls["value_clip"]),
        "orthogonal init": orthogonal,
        "scaled output layer": head <= 0.01 + 1e-6,
        "lr annealing": any(_schedules(o) for o in opts if not isinstance(o, optax.EmptyState)),
        "gradient clipping": any(len(o) > 1 for o in opts if isinstance(o, tuple)),
        "advantage normalisation": calls["advantage_norm"] > 0,
    }
    assert calls["value_clip"], "the value loss was traced"
    if path.endswith("-m.yaml"):
        assert not any(seen.values()), {k: v for k, v in seen.items() if v}
        full = load_config_file(path.replace("-m.yaml", ".yaml"))  # the rest of the setup is unchanged
        switches = {
            "normalize_obs",
            "obs_clip",
            "normalize_reward",
            "reward_scaling",
            "value_clip",
            "orthogonal_init",
            "lr_decay",
            "value_lr_decay",
            "max_grad_norm",
            "normalize_advantage",
        }
        assert {k for k in full.__dataclass_fields__ if getattr(full, k) != getattr(config, k)} <= switches
    else:  # the full setups have them on (gradient clipping: no shipped setup clips)
        assert {k for k, v in seen.items() if not v} == {"gradient clipping"}


# ----------------------------------------------------------------------------
# contextual covariance (claim 3): the configs build a policy whose covariance depends on the state

CONTEXTUAL = [
    os.path.join(CONFIGS, "hopper", f"{s}-ctx-{c}.yaml") for s in ("ppo", "trpl-kl") for c in ("full", "diag")
]


@pytest.mark.parametrize("path", CONTEXTUAL, ids=lambda p: os.path.basename(p))
def test_contextual_configs_build_a_state_dependent_covariance(path):
    from tr_jax.train import make_trainer

    config = validate(load_config_file(path))
    plain = load_config_file(path.replace(path[path.index("-ctx-") :], ".yaml"))
    # one factor changes: the covariance's parametrisation
    assert {k for k in plain.__dataclass_fields__ if getattr(plain, k) != getattr(config, k)} <= {
        "contextual_cov",
        "cov_type",
    }
    trainer = make_trainer(config.replace(num_devices=1), env=_line_env.LineEnv())
    policy, k = trainer.policy, trainer.policy.action_dim
    assert policy.contextual and policy.cov_type == config.cov_type == path.split("-")[-1][:-5]
    params = policy.init(jax.random.key(0))
    assert "cov_head" in params["params"] and "cov" not in params["params"]
    # give the covariance head weights: two states then get different covariances (a global one could not)
    head = params["params"]["cov_head"]
    kernel = jax.random.normal(jax.random.key(1), head["kernel"].shape) * 0.5
    params = {**params, "params": {**params["params"], "cov_head": {**head, "kernel": kernel}}}
    obs = jax.random.normal(jax.random.key(2), (2, policy.obs_dim))
    _, scale = policy.apply(params, obs)
    assert scale.shape == ((2, k) if config.cov_type == "diag" else (2, k, k))
    assert not np.allclose(scale[0], scale[1])
    # and the trainer trains it: the update traces with this policy (TRPL does not overwrite a global std)
    state = trainer.init(jax.random.key(0))
    jax.eval_shape(lambda s: trainer.train_chunk(s, 1), state)
