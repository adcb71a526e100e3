"""The study's export and report (experiments/study_export.py, experiments/study_report.py) on a synthetic study
whose scores are known: the verdicts follow the stated rules, incomplete cells are pending, the export keeps what
the report needs (the metric summary is computed before thinning), and the ablation statistics agree with rliable."""

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tr_jax import stats
from tr_jax.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
PER_IT, ITS = 32, 10  # 4 envs x 8 steps per iteration, 10 iterations: budget 320 env steps per seed
pytestmark = pytest.mark.xdist_group("study")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


export_script, report_script = _script("study_export"), _script("study_report")


def _write_run(
    path: Path,
    algorithm: str,
    finals: list,
    diverged: dict = None,
    short: set = (),
    stochastic: list = None,
    iterations: int = ITS,
):
    """A run directory with ``len(finals)`` seeds and ``iterations`` iterations: seed s evaluates 0.5 * finals[s]
    half way and finals[s] at the end (None: a NaN evaluation); the stochastic evaluation likewise with
    ``stochastic`` (default: ``finals``); seeds in ``short`` stop half way; ``diverged``: {seed: iteration}."""
    path.mkdir(parents=True)
    config = dataclasses.asdict(
        TrainConfig(
            env_name="hopper", algorithm=algorithm, num_envs=4, unroll_length=8, total_env_steps=PER_IT * iterations
        )
    )
    (path / "config.json").write_text(json.dumps(config))
    (path / "run.json").write_text(json.dumps({"seed": 0, "num_seeds": len(finals)}))
    evals, metrics = [], []
    half, end = iterations // 2 - 1, iterations - 1
    for s, final in enumerate(finals):
        last = half + 1 if s in short else iterations
        for it in (half, end):
            if it < last:
                returns = {}
                for key, value in (("deterministic", final), ("stochastic", (stochastic or finals)[s])):
                    returns[f"{key}_return_mean"] = None if value is None else (value if it == end else 0.5 * value)
                evals.append({"iteration": it, "env_steps": (it + 1) * PER_IT, "seed": s, **returns})
        for it in range(last):
            row = {
                "iteration": it,
                "seed": s,
                "env_steps": (it + 1) * PER_IT,
                "episode_return": float(it),
                "entropy": 1.0 - 0.1 * it + 0.01 * s,
                "acting_kl_mean": 0.001 * (s + 1),
                "kl_mean": 0.01,
                "kl_max": 0.02,
                "acting_kl_max": 0.01 * (it + 1) * (s + 1),
            }
            if algorithm == "trpl":  # the acting mean part: 2x the bound in iteration 3 of seed 1 only
                over = it == 3 and s == 1
                row.update(
                    mean_part_max=0.03,
                    cov_part_max=1e-3,
                    acting_mean_part_max=0.06 if over else 0.015,
                    acting_mean_part_mean=0.002 * (it + 1),
                    acting_mean_part_over=0.5 if over else 0.0,
                    acting_cov_part_max=5e-4,
                    acting_cov_part_mean=2e-4,
                    acting_cov_part_over=0.0,
                )
            metrics.append(row)
    (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sorted(evals, key=lambda r: r["iteration"])))
    (path / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in sorted(metrics, key=lambda r: (r["iteration"], r["seed"])))
    )
    seeds = [{"seed": s, "diverged_at": (diverged or {}).get(s)} for s in range(len(finals))]
    status = "diverged" if diverged else "finished"
    (path / "summary.json").write_text(json.dumps({"status": status, "iterations": iterations, "seeds": seeds}))


PPO = [10.0, 20.0, 30.0, 40.0, 50.0]
TRPL = [100.0, 110.0, 120.0, 130.0, 140.0]
KL = [0.001 * (s + 1) for s in range(5)]  # every seed's acting KL per update (the same in each update)
# Why TRPL trails, 10-seed cells (base seed 0, then base seed 100): ppo's base-100 seeds score far above its base-0
# ones, so that P(trpl-kl > ppo) = P(trpl-kl-ppo-optim > ppo) = 0.5 exactly
PPO100 = [300.0, 310.0, 320.0, 330.0, 340.0]
OPTIM = [150.0, 160.0, 170.0, 180.0, 190.0]  # trpl-kl-ppo-optim: above every trpl-kl seed
LOW = [1.0, 2.0, 3.0, 4.0, 5.0]  # ppo-trpl-optim and trpl-kl-reg: below every seed they face
STOCHASTIC_TRPL = [1000.0, 1010.0, 1020.0, 1030.0, 1040.0]  # trpl-kl's stochastic evaluation: above every ppo seed
BUDGET3M_TRPL = [5.0, 6.0, 7.0, 8.0, 9.0]  # trpl-kl at the 3M-like budget (2x the iterations): below ppo there


TIMING = {"started": "2026-01-01T00:00:00", "wall_seconds": 10.0, "train_seconds": 8.0, "env_steps": 1600}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """hopper: ppo < trpl-kl (claim 1 met), ppo-m loses ~90%, trpl-kl-m ~4% (claim 2 met); trpl-kl-ctx-full has a
    diverged seed, ppo-ctx-full a NaN evaluation; trpl-frob-m has a seed short of the budget; walker2d: only ppo.
    Why TRPL trails: H1a supported, H1b not rejected, H1c supported (ppo-trpl-optim below ppo), H1d supported, H2
    inconclusive, H3 rejected, H4 supported (the stochastic evaluation puts trpl-kl above ppo); halfcheetah: ppo,
    trpl-kl, trpo; the 3M cells: hopper ppo and trpl-kl, scored at twice the iterations."""
    out = tmp_path_factory.mktemp("study")
    runs = out / "runs"
    _write_run(runs / "hopper" / "ppo", "ppo", PPO)
    _write_run(runs / "hopper" / "trpl-kl", "trpl", TRPL, stochastic=STOCHASTIC_TRPL)
    _write_run(runs / "hopper" / "trpo", "trpo", [200.0, 210.0, 220.0, 230.0, 240.0])
    _write_run(runs / "hopper" / "ppo-m", "ppo", [1.0, 2.0, 3.0, 4.0, 5.0])
    _write_run(runs / "hopper" / "trpl-kl-m", "trpl", [95.0, 105.0, 115.0, 125.0, 135.0])
    _write_run(runs / "hopper" / "trpl-frob-m", "trpl", TRPL, short={2})
    _write_run(runs / "hopper" / "ppo-ctx-full", "ppo", [5.0, 6.0, None, 8.0, 9.0])
    _write_run(runs / "hopper" / "trpl-kl-ctx-full", "trpl", [60.0, 70.0, 80.0, 90.0, 100.0], diverged={4: 7})
    _write_run(runs / "walker2d" / "ppo", "ppo", PPO)
    # why TRPL trails: the single-factor cells, and the 10-seed cells' base-100 halves
    _write_run(runs / "hopper" / "trpl-kl-ppo-optim", "trpl", OPTIM)
    _write_run(runs / "hopper" / "ppo-trpl-optim", "ppo", LOW)
    _write_run(runs / "hopper" / "trpl-kl-anneal", "trpl", TRPL)
    _write_run(runs / "hopper" / "trpl-kl-reg", "trpl", LOW)
    seed100 = out / "seed100" / "runs" / "hopper"
    for setup, algorithm, finals in (
        ("ppo", "ppo", PPO100),
        ("trpl-kl-ppo-optim", "trpl", OPTIM),
        ("ppo-trpl-optim", "ppo", LOW),
    ):
        _write_run(seed100 / setup, algorithm, finals)
    _write_run(seed100 / "trpl-kl", "trpl", TRPL, stochastic=STOCHASTIC_TRPL)
    _write_run(runs / "halfcheetah" / "ppo", "ppo", PPO)
    _write_run(runs / "halfcheetah" / "trpl-kl", "trpl", TRPL)
    _write_run(runs / "halfcheetah" / "trpo", "trpo", [200.0, 210.0, 220.0, 230.0, 240.0])
    budget3m = out / "budget3m" / "runs" / "hopper"
    _write_run(budget3m / "ppo", "ppo", PPO, iterations=2 * ITS)
    _write_run(budget3m / "trpl-kl", "trpl", BUDGET3M_TRPL, iterations=2 * ITS)
    (out / "timings.json").write_text(json.dumps({"hopper/ppo": [TIMING]}))
    (out / "seed100" / "timings.json").write_text(json.dumps({"hopper/ppo": [TIMING]}))
    sweep = out / "sensitivity" / "runs" / "hopper" / "trpl-kl-eps_mean"
    for v, scores in (("0.03", PPO), ("0.1", TRPL)):  # 0.03: the shipped value
        _write_run(sweep / f"eps_mean={v}", "trpl", scores)
    (sweep / "sweep.json").write_text(
        json.dumps({"sweep": [["eps_mean", [0.03, 0.1]]], "settings": ["eps_mean=0.03", "eps_mean=0.1"]})
    )
    sweep = out / "sensitivity" / "runs" / "hopper" / "trpl-kl-trust_region_coef"  # 1: the shipped config again
    _write_run(sweep / "trust_region_coef=1", "trpl", [s + 1.0 for s in PPO])
    (sweep / "sweep.json").write_text(
        json.dumps({"sweep": [["trust_region_coef", [1.0]]], "settings": ["trust_region_coef=1"]})
    )
    sweep = out / "sensitivity" / "runs" / "hopper" / "ppo-clip_ratio"  # the shipped 0.2 and a better 0.3
    for v, scores in (("0.2", PPO), ("0.3", [s + 5.0 for s in PPO])):
        _write_run(sweep / f"clip_ratio={v}", "ppo", scores)
    (sweep / "sweep.json").write_text(
        json.dumps({"sweep": [["clip_ratio", [0.2, 0.3]]], "settings": ["clip_ratio=0.2", "clip_ratio=0.3"]})
    )
    return out


@pytest.fixture(scope="module")
def exported(study, tmp_path_factory):
    dest = tmp_path_factory.mktemp("exported")
    assert export_script.main([str(study), str(dest)]) == 0
    return dest


@pytest.fixture(scope="module")
def page(exported, tmp_path_factory):
    docs = tmp_path_factory.mktemp("docs")
    readme = docs / "README.md"  # the README's block is written by the same run (test_readme_block_is_a_short_verdict)
    readme.write_text("# x\n\n## Results\n\n<!-- study:begin -->\nold\n<!-- study:end -->\n\n## After\n")
    assert report_script.main([str(exported), "--docs", str(docs), "--reps", "200", "--readme", str(readme)]) == 0
    return docs, (docs / "results.md").read_text()


def _verdicts(text):
    rows = [
        ln.strip("|").split("|")
        for ln in text.split("## Verdicts")[1].split("\n## ")[0].splitlines()  # not the 3M section's claim-1 rows
        if ln.startswith("| 1.") or ln.startswith("| 2.") or ln.startswith("| 3.")
    ]

    def key(claim):  # "1", "1t" (against TRPO), "2", "2f" (TRPL-Frob), "3", "3d" (contextual diagonal)
        return claim[:1] + "t" * ("TRPO" in claim) + "d" * ("diagonal" in claim) + "f" * ("Frobenius" in claim)

    return {(key(r[0].strip()), r[1].strip()): r[3].strip() for r in rows}


def test_verdicts_follow_the_rules(page):
    _, text = page
    v = _verdicts(text)
    assert v[("1", "hopper")] == "**met** (TRPL-KL better than PPO)"  # every trpl seed beats every ppo seed
    assert v[("2", "hopper")] == "**met** (TRPL-KL loses less than PPO)"
    assert v[("1", "walker2d")] == "pending: walker2d/trpl-kl (not started)"
    assert v[("1t", "hopper")] == "**not met** (TRPL-KL worse than TRPO)"  # every trpo seed beats every trpl seed
    assert v[("1t", "walker2d")] == "pending: walker2d/trpo (not started), walker2d/trpl-kl (not started)"
    assert v[("2", "walker2d")].startswith("pending: walker2d/ppo-m (not started)")
    # contextual: ppo's NaN evaluation and trpl's divergence are both failures, scored 0.5 (the lowest evaluation
    # on hopper: ppo-m seed 0 at 160 steps): P = (20 wins + 1 tie / 2) / 25; the CI decides
    poi = stats.probability_of_improvement([60.0, 70.0, 80.0, 90.0, 0.5], [5.0, 6.0, 0.5, 8.0, 9.0], reps=200)
    assert poi.point == pytest.approx(20.5 / 25)
    want = "**met** (TRPL-KL better than PPO)" if poi.low > 0.5 else "**inconclusive** (the CI contains 0.5)"
    assert v[("3", "hopper")] == want
    assert f"P(TRPL-KL > PPO, contextual full) = {poi.point:.2f} [{poi.low:.2f}, {poi.high:.2f}]" in text
    assert "failed seeds: PPO 1, TRPL-KL 1" in text
    assert (
        v[("2f", "hopper")] == "pending: hopper/trpl-frob (not started), hopper/trpl-frob-m (4/5 seeds at the budget)"
    )
    assert v[("3d", "hopper")] == "pending: hopper/ppo-ctx-diag (not started), hopper/trpl-kl-ctx-diag (not started)"


def test_tables_hold_the_statistics_of_the_scores(page, study):
    _, text = page
    d = TrainConfig()  # the synthetic runs' bounds, from their config.json
    assert (
        f"ppo clip_ratio {d.clip_ratio:g}; trpl-kl eps_mean {d.eps_mean:g}, eps_cov {d.eps_cov:g}; "
        f"trpo max_kl {d.max_kl:g}." in text
    )
    iqm = stats.iqm(TRPL, reps=200)
    assert (
        f"| hopper | trpl-kl | 5/5 | 0 | {iqm.point:.1f} [{iqm.low:.1f}, {iqm.high:.1f}] | 1.00 [1.00, 1.00] |" in text
    )
    # a seed short of the budget: the cell is pending, not the IQM of the other four
    assert "| hopper | trpl-frob-m | 4/5 | 0 | pending (4/5 seeds at the budget) |" in text
    # the ablation: drop = 1 - IQM(-m) / IQM(full)
    drop = stats.relative_drop(PPO, [1.0, 2.0, 3.0, 4.0, 5.0], reps=200)
    assert drop.point == pytest.approx(0.9)
    assert f"| hopper | ppo | {_iqm_text(PPO)} | {_iqm_text([1.0, 2.0, 3.0, 4.0, 5.0])} | 90% [" in text
    # the diverged seed is imputed with the env's lowest evaluation return (ppo-m seed 0 at 160 steps: 0.5)
    imputed = stats.iqm([60.0, 70.0, 80.0, 90.0, 0.5], reps=200)
    assert f"| trpl-kl-ctx-full | {imputed.point:.1f} [{imputed.low:.1f}, {imputed.high:.1f}] | 1 |" in text
    # sensitivity, scored at the sweep's budget
    assert f"| hopper | trpl-kl | eps_mean = 0.1 | {_iqm_text(TRPL)} |" in text


def test_tuning_sentence_compares_each_setup_at_its_best_bound(page):
    _, text = page
    ppo_best = [s + 5.0 for s in PPO]
    shipped = stats.probability_of_improvement(ppo_best, PPO, reps=200)
    assert (
        f"hopper trpl-kl: the best eps_mean is 0.1 ({_iqm_text(TRPL)}), P(> the shipped 0.03) = 1.00 [1.00, 1.00]; "
        f"hopper ppo: the best clip_ratio is 0.3 ({_iqm_text(ppo_best)}), P(> the shipped 0.2) = "
        f"{shipped.point:.2f} [{shipped.low:.2f}, {shipped.high:.2f}]; "
        "hopper, each with its best bound: P(TRPL-KL > PPO) = 1.00 [1.00, 1.00]; "
        f"hopper trpl-kl with its shipped config, the same seeds, in two vmapped programs: {_iqm_text(PPO)} "
        f"(eps_mean = 0.03) and {_iqm_text([s + 1.0 for s in PPO])} (trust_region_coef = 1)" in text
    )


def _iqm_text(x):
    e = stats.iqm(x, reps=200)
    return f"{e.point:.1f} [{e.low:.1f}, {e.high:.1f}]"


def test_acting_bound_use_is_exact_after_thinning(page, study, exported):
    _, text = page
    # max over updates 0.06 / 0.03 = 2; mean 0.011 / 0.03; over: one update of 50 with half its states over
    assert "| hopper | trpl-kl | 5 | complete | 1.000 | 2.00 / 0.37 / 1% |" in text
    rd = exported / "runs" / "hopper" / "trpl-kl"
    thinned = [json.loads(ln) for ln in (rd / "metrics.jsonl").read_text().splitlines()]
    assert len(thinned) == 5 and all(r["block_rows"] == ITS for r in thinned)  # one 20-iteration block per seed
    assert thinned[1]["acting_mean_part_max"] == 0.06 and thinned[1]["acting_mean_part_mean"] == pytest.approx(0.011)
    # the report of the export equals that of the original study where the table is concerned (trpl-frob-m's
    # short seed makes a shorter block: the mean of block means would not be the mean over updates)
    a = report_script.Study(str(study), reps=50)
    b = report_script.Study(str(exported), reps=50)
    for key, row in a.rows.items():
        other = b.rows[key]
        for field in ("kl_max", "bound_use", "over", "acting_mean", "acting_cov", "budget", "num_seeds"):
            np.testing.assert_equal(getattr(other, field), getattr(row, field), err_msg=f"{key} {field}")
        np.testing.assert_array_equal(b.scores[key], a.scores[key])
    assert not (exported / "runs" / "hopper" / "ppo" / "checkpoints").exists()


def test_update_size_and_entropy(page, study):
    # per seed, from the un-thinned study: the median acting KL, and the entropy over the last 10% (iteration 9)
    st = report_script.Study(str(study), reps=50)
    np.testing.assert_allclose(report_script._per_seed(st, "hopper", "trpl-kl", "acting_kl_mean", None), KL)
    np.testing.assert_allclose(
        report_script._per_seed(st, "hopper", "trpl-kl", "entropy", 0.1), [0.1 + 0.01 * s for s in range(5)]
    )
    # the page reads the export: one 10-iteration block per seed, whose entropy is the mean 1 - 0.45 + 0.01 s
    _, text = page
    section = text.split("## Update size and exploration")[1].split("## ")[0]
    kl, ent = stats.iqm(KL, reps=200), stats.iqm([0.55 + 0.01 * s for s in range(5)], reps=200)
    assert (
        f"| hopper | trpl-kl | {_iqm_text(TRPL)} | {kl.point:.4f} [{kl.low:.4f}, {kl.high:.4f}] "
        f"| {ent.point:.2f} [{ent.low:.2f}, {ent.high:.2f}] |" in section
    )
    assert "| hopper | trpl-frob-m |" not in section and "ctx" not in section  # main, complete, global cov only
    assert "on hopper TRPL-KL's acting policy moves 1.00x as far per update as PPO's" in section


def test_readme_block_is_a_short_verdict(page, exported, monkeypatch):
    text = (page[0] / "README.md").read_text()
    assert "old" not in text and text.endswith("<!-- study:end -->\n\n## After\n")
    block = text.split("<!-- study:begin -->")[1].split("<!-- study:end -->")[0]
    bullets = [ln for ln in block.splitlines() if ln.startswith("- ")]
    assert 3 <= len(bullets) <= 5 and "|" not in block  # verdict lines, no table
    assert "met on hopper 1.00 [1.00, 1.00]; pending on walker2d; met on halfcheetah 1.00 [1.00, 1.00]" in bullets[0]
    assert "H1 (the optimiser): **the gap is the optimiser's, not the update rule's**" in bullets[3]
    assert "H2 inconclusive; H3 rejected; H4 supported" in bullets[3]
    assert "still training or not started" in bullets[4]  # e.g. walker2d's cells
    assert "(docs/study/ablation.png)" in block and "[docs/results.md](docs/results.md)" in block
    # every cell finished: no such line
    st = report_script.Study(str(exported), reps=50)
    monkeypatch.setattr(report_script, "_all_cells", lambda st: [("hopper", "ppo")])
    assert "still training" not in report_script.readme_block(st, {"ablation": "x"})


def test_figures_and_full_table_are_written(page, exported):
    docs, text = page
    for name in ("ablation", "contextual", "sensitivity", "curves_hopper", "curves_walker2d", "curves_hopper_variants"):
        assert (docs / "study" / f"{name}.png").stat().st_size > 5_000, name
        assert f"(study/{name}.png)" in text
    # the figures drawn are those figure_paths names without drawing (the committed page's check relies on it)
    named = report_script.figure_paths(report_script.Study(str(exported), reps=200), str(docs / "study"))
    assert sorted(p.name for p in (docs / "study").iterdir()) == sorted(Path(p).name for p in named.values() if p)
    full = (exported / "results.md").read_text()
    assert (
        "| hopper | trpl-kl-ctx-full |" in full
        and "Failed seeds: hopper/ppo-ctx-full seed 2, hopper/trpl-kl-ctx-full seed 4." in full
    )


def test_ablation_statistics_agree_with_rliable():
    from rliable import library, metrics

    full, minimal = np.array(TRPL), np.array([95.0, 105.0, 115.0, 125.0, 180.0])
    est = stats.relative_drop(full, minimal, reps=100, seed=1)
    np.random.seed(1)  # noqa: NPY002 (rliable resamples with numpy's global generator)
    _, cis = library.get_interval_estimates(
        {"d": [full[:, None], minimal[:, None]]},
        lambda a, b: np.array([1 - metrics.aggregate_iqm(b) / metrics.aggregate_iqm(a)]),
        reps=100,
        random_state=np.random.RandomState(1),
    )
    assert est.point == pytest.approx(1 - 115 / 120) and (est.low, est.high) == (cis["d"][0, 0], cis["d"][1, 0])
    diff = stats.drop_difference(PPO, [1.0, 2.0, 3.0, 4.0, 5.0], full, minimal, reps=100, seed=1)
    assert diff.point == pytest.approx(0.9 - (1 - 115 / 120)) and diff.low < diff.point < diff.high
    assert all(np.isnan(stats.relative_drop(full, [1.0, np.nan], reps=10)))


def test_report_without_a_study_is_one_line(tmp_path, capsys):
    assert report_script.main([str(tmp_path), "--docs", str(tmp_path / "docs")]) == 2
    assert export_script.main([str(tmp_path), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith(("study_report.py: error:", "study_export.py: error:")) for e in err)


@pytest.mark.slow
def test_committed_results_page_is_regenerated_from_the_committed_study(tmp_path):
    """docs/results.md is what `python3 experiments/study_report.py` makes of experiments/study/ (the figures go
    beside it): regenerate both after a new export or a change of the report. The figures are not drawn here (their
    pixels are not compared, and drawing them is most of the report's time without the statistics): the page links
    the same ones, and the set committed is the set the report would draw (figure_paths, which
    test_figures_and_full_table_are_written checks against the drawn files)."""
    study = ROOT / "experiments" / "study"
    if not (study / "runs").is_dir():
        pytest.skip("no exported study committed")
    copy = tmp_path / "study"
    shutil.copytree(study, copy)  # the report also writes STUDY/results.md: not into the checkout
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    written = report_script.report(str(copy), str(tmp_path / "docs"), readme=str(readme), draw=False)
    assert (tmp_path / "docs" / "results.md").read_text() == (ROOT / "docs" / "results.md").read_text()
    assert readme.read_text() == (ROOT / "README.md").read_text()  # its results block too
    assert (copy / "results.md").read_text() == (study / "results.md").read_text()
    assert list((tmp_path / "docs" / "study").iterdir()) == []  # nothing drawn
    figures = [Path(p).name for k, p in written.items() if k not in ("readme", "page", "table")]
    assert sorted(figures) == sorted(p.name for p in (ROOT / "docs" / "study").iterdir())


def _section(text, title):
    return text.split(title)[1].split("\n## ")[0].split("\n### ")[0]


def _hypothesis_rows(text):
    lines = _section(text, "## Why TRPL trails: results").splitlines()
    rows = [ln.strip("|").split("|") for ln in lines if ln.startswith("| H")]
    return {r[0].strip(): (r[2].strip(), r[3].strip()) for r in rows}


def test_hypotheses_follow_the_preregistered_rules(page):
    """The fixed scores give each verdict word of the registered rule; the statistics are the 10-seed cells'."""
    _, text = page
    h = _hypothesis_rows(text)
    ppo10, trpl10, optim10 = PPO + PPO100, TRPL + TRPL, OPTIM + OPTIM
    not_worse = stats.probability_of_improvement(optim10, ppo10, reps=200)  # 0.5: half of ppo's seeds above
    assert not_worse.point == 0.5 and not_worse.low < 0.5 < not_worse.high
    assert h["H1a"] == ("P(trpl-kl-ppo-optim > trpl-kl) = 1.00 [1.00, 1.00]; seeds 10 / 10", "**supported**")
    assert h["H1b"] == (
        f"P(trpl-kl-ppo-optim > ppo) = {_poi_text(optim10, ppo10)}; seeds 10 / 10",
        "**not rejected** (the CI contains 0.5)",
    )
    # H1c: TRPL's optimiser holding PPO back is the CI below 0.5
    assert h["H1c"] == ("P(ppo-trpl-optim > ppo) = 0.00 [0.00, 0.00]; seeds 10 / 10", "**supported**")
    assert h["H1d"] == ("P(trpl-kl > ppo-trpl-optim) = 1.00 [1.00, 1.00]; seeds 10 / 10", "**supported**")
    assert h["H2"] == (
        f"P(trpl-kl-anneal > trpl-kl) = {_poi_text(TRPL, trpl10)}; seeds 5 / 10",
        "**inconclusive** (the CI contains 0.5)",
    )
    assert h["H3"] == ("P(trpl-kl-reg > trpl-kl) = 0.00 [0.00, 0.00]; seeds 5 / 10", "**rejected**")
    # H4: deterministic 0.5 (the CI contains 0.5), stochastic 1 (above): the verdict differs between the modes
    assert h["H4"] == (
        f"P(trpl-kl > ppo), 10 / 10 seeds, deterministic: {_poi_text(trpl10, ppo10)} (CI contains 0.5); "
        "stochastic: 1.00 [1.00, 1.00] (CI above 0.5)",
        "**supported**",
    )
    assert "H1 as a whole: **the gap is the optimiser's, not the update rule's** (H1a supported;" in text
    ships = text.split("**What ships.**")[1].split("\n\n")[0]
    assert (
        "On hopper: H1a (trpl-kl-ppo-optim) supported, H2 (trpl-kl-anneal) inconclusive, H3 (trpl-kl-reg) rejected."
        in ships
    )
    assert (
        "trpl-kl-ppo-optim qualifies on hopper; its walker2d check: pending: walker2d/trpl-kl-ppo-optim (not started)"
        in ships
    )
    # H3's observation: the acting policy's mean part over its bound beside trpl-kl's (one update of 50 half over)
    assert (
        "trpl-kl-reg: 1% of states over (max 2.00, mean 0.37); trpl-kl: 1% of states over (max 2.00, mean 0.37)" in text
    )


def _poi_text(x, y, reps=200):
    e = stats.probability_of_improvement(x, y, reps=reps)
    return f"{e.point:.2f} [{e.low:.2f}, {e.high:.2f}]"


def test_both_evaluation_modes_are_scored_by_the_same_rule(page):
    _, text = page
    h4 = _section(text, "### Deterministic and stochastic evaluation (H4)")
    trpl10 = TRPL + TRPL
    assert f"| trpl-kl+seed100 | 10 | {_iqm_text(trpl10)} | {_iqm_text(STOCHASTIC_TRPL + STOCHASTIC_TRPL)} |" in h4
    assert f"| trpl-kl | 5 | {_iqm_text(TRPL)} | {_iqm_text(STOCHASTIC_TRPL)} |" in h4
    assert f"| trpl-kl-reg | 5 | {_iqm_text(LOW)} | {_iqm_text(LOW)} |" in h4
    assert "| trpl-frob | 5 | pending (not started) | pending (not started) |" in h4
    assert "| halfcheetah" not in h4 and "budget3m" not in h4  # hopper at 2M only


def test_ten_seed_cells_need_both_halves_and_h4_follows_the_stochastic_column(exported, tmp_path):
    """Without ppo-trpl-optim's base-100 half, H1c, H1d and H1 are pending (the base-0 half alone is not scored);
    with the stochastic column equal to the deterministic one, H4's verdict changes to not supported."""
    copy = tmp_path / "study"
    shutil.copytree(exported, copy)
    shutil.rmtree(copy / "seed100" / "runs" / "hopper" / "ppo-trpl-optim")
    for path in copy.glob("**/eval.jsonl"):
        rows = [json.loads(ln) for ln in path.read_text().splitlines()]
        path.write_text(
            "".join(json.dumps({**r, "stochastic_return_mean": r["deterministic_return_mean"]}) + "\n" for r in rows)
        )
    st = report_script.Study(str(copy), reps=50)
    assert st.state("hopper", "ppo-trpl-optim+seed100") == "5/10 seeds at the budget"
    assert st.complete("hopper", "ppo-trpl-optim") and not st.complete("hopper", "ppo-trpl-optim+seed100")
    res = report_script.hypotheses(st)
    pending = "pending: hopper/ppo-trpl-optim+seed100 (5/10 seeds at the budget)"
    assert res["H1c"][2] == "pending" and res["H1c"][3] == pending
    assert res["H1d"][3] == pending and res["H1a"][2] == "supported"
    assert report_script.h1_overall(res)[0] == "pending"
    assert res["H4"][2:] == ("not supported", "**not supported** (the same verdict under both modes)")
    assert "stochastic: " + _poi_text(TRPL + TRPL, PPO + PPO100, reps=50) + " (CI contains 0.5)" in res["H4"][1]


def test_halfcheetah_rows_and_the_3m_budget(page):
    _, text = page
    v = _verdicts(text)
    assert v[("1", "halfcheetah")] == "**met** (TRPL-KL better than PPO)"
    assert v[("1t", "halfcheetah")] == "**not met** (TRPL-KL worse than TRPO)"
    assert v[("2", "halfcheetah")] == "pending: halfcheetah/ppo-m (not started), halfcheetah/trpl-kl-m (not started)"
    assert ("2f", "halfcheetah") not in v  # TRPL-Frob was not registered on halfcheetah
    assert f"| halfcheetah | trpl-kl | 5/5 | 0 | {_iqm_text(TRPL)} | 1.00 [1.00, 1.00] |" in text
    assert f"| halfcheetah | ppo | {_iqm_text(PPO)} | pending (not started) | – | – |" in text  # the ablation
    # the 3M cells are scored at their own budget (twice the iterations: the final evaluation, not the half-way one)
    section = text.split("### The paper's budget")[1].split("\n## ")[0]
    assert f"| hopper | ppo | complete | {2 * PER_IT * ITS} | {_iqm_text(PPO)} | {_iqm_text(PPO)} |" in section
    assert (
        f"| hopper | trpl-kl | complete | {2 * PER_IT * ITS} | {_iqm_text(BUDGET3M_TRPL)} | {_iqm_text(TRPL)} |"
        in section
    )
    assert (
        "| 1. TRPL ≥ PPO | hopper | P(TRPL-KL > PPO) = 0.00 [0.00, 0.00] | **not met** (TRPL-KL worse than PPO) |"
        in section
    )
    assert (
        "| 1. TRPL ≥ TRPO | hopper | P(TRPL-KL > TRPO) = – | pending: hopper/budget3m/trpo (not started) |" in section
    )
    assert "| walker2d | trpo | not started | – | pending (not started) |" in section


def test_export_merges_into_the_committed_study(study, exported, tmp_path):
    """A cell the destination holds and OUT lacks stays; timings are merged per run; the other programs' runs
    (seed100, budget3m) are exported in the same compact form."""
    dest = tmp_path / "dest"
    old = dest / "runs" / "walker2d" / "trpo"
    old.mkdir(parents=True)
    (old / "eval.jsonl").write_text("kept\n")
    (dest / "timings.json").write_text(json.dumps({"walker2d/trpo": [TIMING], "hopper/ppo": []}))
    assert export_script.main([str(study), str(dest)]) == 0
    assert (old / "eval.jsonl").read_text() == "kept\n"
    assert json.loads((dest / "timings.json").read_text()) == {"walker2d/trpo": [TIMING], "hopper/ppo": [TIMING]}
    assert json.loads((dest / "seed100" / "timings.json").read_text()) == {"hopper/ppo": [TIMING]}
    for rel in ("seed100/runs/hopper/trpl-kl", "budget3m/runs/hopper/trpl-kl"):
        assert (exported / rel / "metric_summary.json").exists(), rel
        thinned = [json.loads(ln) for ln in (exported / rel / "metrics.jsonl").read_text().splitlines()]
        assert len(thinned) == 5, rel  # one block per seed
