"""Regenerates every results table and figure of the study (issue 18) from the committed compact results::

    python3 experiments/study_report.py                      # experiments/study -> docs/results.md, docs/study/
    python3 experiments/study_report.py STUDY --docs DIR     # another export (or a study OUT itself)

STUDY is what ``experiments/study_export.py`` wrote (or the OUT of ``experiments/study.sh``: the same layout,
``runs/<env>/<setup>/`` and ``sensitivity/runs/<env>/<sweep>/<setting>/``). Writes:

* ``DOCS/results.md``: the Results page -- the protocol, the main table (IQM, 95% CI, P(improvement over PPO)),
  the implementation-choices ablation, contextual covariances, bound sensitivity, the acting policy's bound use,
  and a verdict per claim computed by the rules the page states (a claim whose cells are not all complete is
  "pending", naming them);
* ``DOCS/study/*.png``: the figures the page shows (ablation, contextual, sensitivity, learning curves);
* ``STUDY/results.md``: the full ``tr-jax compare`` table of every cell (speed, wall time, bound columns);
* the README's "Results" block (between ``<!-- study:begin -->`` and ``<!-- study:end -->``): the verdicts and the
  main table, the same text as the page's (``--readme PATH``; by default ``README.md`` of the checkout when DOCS is
  its ``docs/``, none otherwise).

Reads STUDY only; needs rliable and matplotlib (``pip install 'tr_jax[stats,plot]'``).
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "experiments")):  # run as a script from a checkout
    if path not in sys.path:
        sys.path.insert(0, path)

import numpy as np  # noqa: E402
import study_export  # noqa: E402  (beside this script)

from tr_jax import compare, stats  # noqa: E402
from tr_jax import rundir as R  # noqa: E402

ENVS = ("hopper", "walker2d")
MAIN = ("ppo", "trpl-kl", "trpl-frob", "trpl-w2", "trpo")
ABLATION = ("ppo", "trpl-kl", "trpl-frob")  # each beside its minimal variant <setup>-m
CONTEXTUAL_ENV = "hopper"
CONTEXTUAL = ("ppo", "ppo-ctx-diag", "ppo-ctx-full", "trpl-kl", "trpl-kl-ctx-diag", "trpl-kl-ctx-full")
# (setup, swept key, the shipped value, envs): experiments/sensitivity.sh
SWEEPS = (
    ("trpl-kl", "eps_mean", 0.03, ENVS),
    ("ppo", "clip_ratio", 0.2, ENVS),
    ("trpl-kl", "trust_region_coef", 1.0, ("hopper",)),
)
# the learning curves' second figure per env: PPO and TRPL-KL with their minimal and contextual variants
VARIANTS = (
    "ppo",
    "ppo-m",
    "ppo-ctx-diag",
    "ppo-ctx-full",
    "trpl-kl",
    "trpl-kl-m",
    "trpl-kl-ctx-diag",
    "trpl-kl-ctx-full",
)
SEEDS = 5  # planned seeds per cell (experiments/study.sh)
BLOCK_NOTE = f"{study_export.BLOCK} iterations per seed (experiments/study_export.py)"


def _setups() -> list:
    """Every (env, setup) of the study's 2M-step cells."""
    cells = [(e, s) for e in ENVS for s in MAIN + tuple(f"{a}-m" for a in ABLATION)]
    return cells + [(CONTEXTUAL_ENV, s) for s in CONTEXTUAL if (CONTEXTUAL_ENV, s) not in cells]


def _sweep_cells(study: str) -> list:
    """``[(env, setup, key, value, cell name)]`` of the sensitivity sweeps found under STUDY/sensitivity."""
    found = []
    for setup, key, _, envs in SWEEPS:
        for env in envs:
            top = os.path.join(study, "sensitivity", "runs", env, f"{setup}-{key}")
            if not os.path.exists(os.path.join(top, R.SWEEP_FILE)):
                continue
            for label in R.read_json(os.path.join(top, R.SWEEP_FILE))["settings"]:
                found.append((env, setup, key, float(label.split("=", 1)[1]), f"{setup}-{key}/{label}"))
    return found


class Study:
    """The study's rows (:class:`tr_jax.compare.Row`) and their seed scores with failures imputed."""

    def __init__(self, study: str, reps: int = stats.REPS):
        self.reps = reps
        self.study = study
        self._estimates: dict = {}  # _once
        timings = compare.Timings(study) if os.path.exists(os.path.join(study, "timings.json")) else None
        self.rows = {}
        for env, setup in _setups():
            row = compare.summarize(study, env, setup, timings or _NoTimings())
            if row is not None:
                self.rows[(env, setup)] = row
        self.sweeps = _sweep_cells(study)
        sens = os.path.join(study, "sensitivity")
        for env, _, _, _, name in self.sweeps:
            row = compare.summarize(sens, env, name, _NoTimings())
            if row is not None:
                self.rows[(env, name)] = row
        self.scores = compare.scored(list(self.rows.values()))

    def complete(self, env: str, setup: str) -> bool:
        return (env, setup) in self.scores and stats.complete(self.scores[(env, setup)])

    def state(self, env: str, setup: str) -> str:
        """ "complete", or why not: "not started" / "k/S seeds at the budget"."""
        if (env, setup) not in self.rows:
            return "not started"
        x = self.scores[(env, setup)]
        return "complete" if stats.complete(x) else f"{int(np.sum(~np.isnan(x)))}/{len(x)} seeds at the budget"

    def pending(self, cells) -> list:
        return [f"{e}/{s} ({self.state(e, s)})" for e, s in cells if not self.complete(e, s)]

    def _once(self, key: tuple, compute) -> stats.Estimate:
        """``compute()`` the first time ``key`` is asked for, the stored estimate after that (a bootstrap with a
        fixed seed: the page asks for the same cell's estimate in several tables and sentences)."""
        if key not in self._estimates:
            self._estimates[key] = compute()
        return self._estimates[key]

    def iqm(self, env, setup) -> stats.Estimate:
        if not self.complete(env, setup):
            return stats.NAN
        return self._once(("iqm", env, setup), lambda: stats.iqm(self.scores[(env, setup)], self.reps))

    def poi(self, env, x, y) -> stats.Estimate:
        if not (self.complete(env, x) and self.complete(env, y)):
            return stats.NAN
        sc = self.scores
        return self._once(
            ("poi", env, x, y), lambda: stats.probability_of_improvement(sc[(env, x)], sc[(env, y)], self.reps)
        )

    def drop(self, env, setup) -> stats.Estimate:
        if not (self.complete(env, setup) and self.complete(env, f"{setup}-m")):
            return stats.NAN
        sc = self.scores
        return self._once(
            ("drop", env, setup), lambda: stats.relative_drop(sc[(env, setup)], sc[(env, f"{setup}-m")], self.reps)
        )

    def failed(self, env, setup) -> int:
        row = self.rows.get((env, setup))
        return 0 if row is None else int(np.sum(row.scores == stats.FAILED))


class _NoTimings:
    """Timings of a directory without timings.json (a sweep): none recorded."""

    @staticmethod
    def totals(name):
        return float("nan"), float("nan")


def _fmt(e: stats.Estimate, spec: str = ".1f") -> str:
    return compare.estimate_text(e, spec)


def _pct(e: stats.Estimate) -> str:
    return "–" if not np.isfinite(e.point) else f"{100 * e.point:.0f}% [{100 * e.low:.0f}%, {100 * e.high:.0f}%]"


def _cell_text(st: Study, env: str, setup: str) -> str:
    state = st.state(env, setup)
    return _fmt(st.iqm(env, setup)) if state == "complete" else f"pending ({state})"


# ----------------------------------------------------------------------------
# verdicts (the rules are stated on the page, VERDICT_RULES)

VERDICT_RULES = """Verdict rules (fixed before the numbers): a claim is **met** when the 95% CI of its statistic lies on
the claimed side, **not met** when it lies on the other side, and **inconclusive** when it contains the null value;
it is **pending** while a cell it needs is incomplete. Claim 1 (TRPL ≥ PPO): P(improvement of TRPL-KL over PPO),
null 0.5 (met: better than PPO; 5 seeds cannot show "similar", so a CI across 0.5 is inconclusive); the same rule
against TRPO (the paper's claim names both; this row was added after hopper's TRPO cell had finished). Claim 2
(robust to implementation choices): PPO's relative drop without them minus TRPL-KL's, null 0 (met: TRPL-KL loses
less); the same for TRPL-Frob (a row added after hopper's TRPL-Frob-M cell had finished). Claim 3 (stable with
contextual covariances): P(improvement of TRPL-KL over PPO, both with a contextual full covariance), null 0.5;
diverged seeds count as failures (the score rule); the same with a contextual diagonal covariance (a row added
before its cells ran)."""


def _side(e: stats.Estimate, null: float, better: str, worse: str) -> str:
    if not np.isfinite(e.point):
        return "pending"
    if e.low > null:
        return f"**met** ({better})"
    if e.high < null:
        return f"**not met** ({worse})"
    return f"**inconclusive** (the CI contains {null:g})"


def verdicts(st: Study) -> list:
    """``[(claim, env, statistic text, verdict)]``."""
    out = []
    for env in ENVS:
        need = [(env, "ppo"), (env, "trpl-kl")]
        e = st.poi(env, "trpl-kl", "ppo")
        v = _side(e, 0.5, "TRPL-KL better than PPO", "TRPL-KL worse than PPO")
        out.append(("1. TRPL ≥ PPO", env, f"P(TRPL-KL > PPO) = {_fmt(e, '.2f')}", _pending(st, need, v)))
    for env in ENVS:  # the paper's claim 1 names TRPO too
        need = [(env, "trpo"), (env, "trpl-kl")]
        e = st.poi(env, "trpl-kl", "trpo")
        v = _side(e, 0.5, "TRPL-KL better than TRPO", "TRPL-KL worse than TRPO")
        out.append(("1. TRPL ≥ TRPO", env, f"P(TRPL-KL > TRPO) = {_fmt(e, '.2f')}", _pending(st, need, v)))
    for trpl, name, claim in (("trpl-kl", "TRPL-KL", ""), ("trpl-frob", "TRPL-Frob", " (Frobenius)")):
        for env in ENVS:
            need = [(env, s) for s in ("ppo", "ppo-m", trpl, f"{trpl}-m")]
            if all(st.complete(*c) for c in need):
                sc = st.scores
                e = stats.drop_difference(
                    sc[(env, "ppo")], sc[(env, "ppo-m")], sc[(env, trpl)], sc[(env, f"{trpl}-m")], st.reps
                )
            else:
                e = stats.NAN
            v = _side(e, 0.0, f"{name} loses less than PPO", f"{name} loses more than PPO")
            text = (
                f"drop(PPO) − drop({name}) = {_pct(e)}; drop(PPO) = {_pct(st.drop(env, 'ppo'))}, "
                f"drop({name}) = {_pct(st.drop(env, trpl))}"
            )
            out.append((f"2. robust to implementation choices{claim}", env, text, _pending(st, need, v)))
    env = CONTEXTUAL_ENV
    for cov, claim in (("full", ""), ("diag", " (diagonal)")):
        ppo, trpl = f"ppo-ctx-{cov}", f"trpl-kl-ctx-{cov}"
        e = st.poi(env, trpl, ppo)
        v = _side(e, 0.5, "TRPL-KL better than PPO", "TRPL-KL worse than PPO")
        text = (
            f"P(TRPL-KL > PPO, contextual {cov}) = {_fmt(e, '.2f')}; failed seeds: PPO "
            f"{st.failed(env, ppo)}, TRPL-KL {st.failed(env, trpl)}"
        )
        out.append(
            (f"3. stable with contextual covariances{claim}", env, text, _pending(st, [(env, ppo), (env, trpl)], v))
        )
    return out


def _pending(st: Study, need, verdict: str) -> str:
    missing = st.pending(need)
    return verdict if not missing else "pending: " + ", ".join(missing)


# ----------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _errorbar(ax, x, est, **kw):
    ok = [i for i, e in enumerate(est) if np.isfinite(e.point)]
    if ok:
        p = np.array([est[i].point for i in ok])
        lo = p - np.array([est[i].low for i in ok])
        hi = np.array([est[i].high for i in ok]) - p
        ax.errorbar(np.asarray(x, float)[ok], p, yerr=[lo, hi], fmt="o", capsize=4, **kw)


def figure_ablation(st: Study, path: str) -> str | None:
    """Each setup's relative drop from its full variant to its minimal one (-m), with CIs, per env."""
    drops = {(env, s): st.drop(env, s) for env in ENVS for s in ABLATION}
    if not any(np.isfinite(d.point) for d in drops.values()):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(ENVS), figsize=(5 * len(ENVS), 3), sharex=True)
    for ax, env in zip(np.atleast_1d(axes), ENVS):
        est = [drops[(env, s)] for s in ABLATION]
        y = np.arange(len(ABLATION))
        ok = [i for i, e in enumerate(est) if np.isfinite(e.point)]
        ax.barh(y[ok], [100 * est[i].point for i in ok], color="C0", alpha=0.5)
        for i in ok:
            ax.plot([100 * est[i].low, 100 * est[i].high], [y[i], y[i]], color="k")
        for i in set(range(len(est))) - set(ok):
            ax.text(
                0,
                y[i],
                f"  pending ({st.state(env, ABLATION[i])}, -m: {st.state(env, ABLATION[i] + '-m')})",
                va="center",
                fontsize=7,
            )
        ax.set_yticks(y, ABLATION)
        ax.axvline(0, color="gray", lw=0.8)
        ax.set_title(env)
        ax.set_xlabel("IQM drop without the implementation choices (%, 95% CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure_contextual(st: Study, path: str) -> str | None:
    """Score IQM with CIs of PPO and TRPL-KL with a global, a contextual diagonal and a contextual full covariance."""
    env = CONTEXTUAL_ENV
    est = [st.iqm(env, s) for s in CONTEXTUAL]
    if not any(np.isfinite(e.point) for e in est):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _errorbar(ax, np.arange(len(CONTEXTUAL)), est, color="C1")
    for i, s in enumerate(CONTEXTUAL):
        if not np.isfinite(est[i].point):
            ax.text(
                i, 0.5, f"pending\n({st.state(env, s)})", ha="center", fontsize=7, transform=ax.get_xaxis_transform()
            )
    ax.set_xlim(-0.5, len(CONTEXTUAL) - 0.5)
    ax.set_xticks(np.arange(len(CONTEXTUAL)), CONTEXTUAL, rotation=20)
    ax.set_ylabel("score IQM, 95% CI")
    ax.set_title(f"{env}: global vs contextual (state-dependent) covariance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure_sensitivity(st: Study, path: str) -> str | None:
    """Score IQM with CIs against the swept setting (TRPL-KL eps_mean and trust_region_coef, PPO clip_ratio), per
    env; for TRPL-KL also (right axis) the fraction of states where the acting policy's mean part exceeds
    eps_mean (over every update and seed)."""
    if not any(st.complete(env, name) for env, _, _, _, name in st.sweeps):
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(ENVS), len(SWEEPS), figsize=(4.5 * len(SWEEPS), 3 * len(ENVS)), squeeze=False)
    for r, env in enumerate(ENVS):
        for c, (setup, key, shipped, envs) in enumerate(SWEEPS):
            ax = axes[r, c]
            if env not in envs:
                ax.set_visible(False)
                continue
            cells = [(v, name) for e, s, k, v, name in st.sweeps if (e, s, k) == (env, setup, key)]
            _errorbar(ax, [v for v, _ in cells], [st.iqm(env, name) for _, name in cells], color="C2")
            ax.axvline(shipped, color="gray", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_title(f"{env}: {setup}, {key}", fontsize=9)
            ax.set_xlabel(f"{key} (dotted: the shipped value)")
            ax.set_ylabel("score IQM at the budget, 95% CI")
            if not cells:
                ax.text(0.5, 0.5, "pending", transform=ax.transAxes, ha="center")
            elif setup == "trpl-kl":  # what the bound does to the acting policy (the network output)
                over = [(v, st.rows[(env, name)].acting_mean) for v, name in cells if (env, name) in st.rows]
                over = [(v, a[2]) for v, a in over if a is not None and np.isfinite(a[2])]
                if over:
                    twin = ax.twinx()
                    twin.plot([v for v, _ in over], [100 * f for _, f in over], "s--", color="C3", ms=4)
                    twin.set_ylim(0, 100)
                    twin.set_ylabel("acting mean part over eps_mean:\n% of states (red)", fontsize=8, color="C3")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------
# the page


def _main_table(st: Study, started_only: bool = False) -> str:
    lines = [
        "| env | setup | seeds at the budget | failed seeds | score IQM [95% CI] | P(improvement over PPO) [95% CI] "
        "| max acting KL |",
        "|---|---|---|---|---|---|---|",
    ]
    for env, setup in _setups():
        row = st.rows.get((env, setup))
        if row is None:
            if not started_only:
                lines.append(f"| {env} | {setup} | not started | | | | |")
            continue
        x = st.scores[(env, setup)]
        poi = st.poi(env, setup, "ppo") if setup != "ppo" else stats.NAN
        lines.append(
            f"| {env} | {setup} | {int(np.sum(~np.isnan(x)))}/{row.num_seeds} | {st.failed(env, setup)} "
            f"| {_cell_text(st, env, setup)} | {_fmt(poi, '.2f')} "
            f"| {'–' if not np.isfinite(row.kl_max) else format(row.kl_max, '.3g')} |"
        )
    return "\n".join(lines) + "\n"


def _ablation_table(st: Study) -> str:
    lines = [
        "| env | setup | score IQM | minimal (-m) IQM | drop [95% CI] | P(full > minimal) [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for env in ENVS:
        for s in ABLATION:
            lines.append(
                f"| {env} | {s} | {_cell_text(st, env, s)} | {_cell_text(st, env, s + '-m')} "
                f"| {_pct(st.drop(env, s))} | {_fmt(st.poi(env, s, s + '-m'), '.2f')} |"
            )
    return "\n".join(lines) + "\n"


def _contextual_table(st: Study) -> str:
    env = CONTEXTUAL_ENV
    lines = ["| setup | score IQM [95% CI] | failed seeds | max acting KL |", "|---|---|---|---|"]
    for s in CONTEXTUAL:
        row = st.rows.get((env, s))
        kl = "–" if row is None or not np.isfinite(row.kl_max) else format(row.kl_max, ".3g")
        lines.append(f"| {s} | {_cell_text(st, env, s)} | {st.failed(env, s)} | {kl} |")
    return "\n".join(lines) + "\n"


def _sensitivity_table(st: Study) -> str:
    lines = ["| env | setup | setting | score IQM [95% CI] |", "|---|---|---|---|"]
    for env, setup, key, value, name in st.sweeps:
        lines.append(f"| {env} | {setup} | {key} = {value:g} | {_cell_text(st, env, name)} |")
    return "\n".join(lines) + "\n" if st.sweeps else "No sweep has started yet (experiments/sensitivity.sh).\n"


def _tuning_text(st: Study) -> str:
    """Generated sentences on the bound sweeps of each env whose sweep is complete: the best setting by IQM and its
    P(improvement) over the shipped value; with both TRPL-KL's eps_mean and PPO's clip_ratio complete, P(TRPL-KL's
    best > PPO's best), each tuned by the same 3-value budget."""
    best = {}
    lines = []
    for env in ENVS:
        for setup, key, shipped, envs in SWEEPS[:2]:  # the bounds (trust_region_coef has its own sentence)
            cells = [(v, n) for e, s, k, v, n in st.sweeps if (e, s, k) == (env, setup, key)]
            if env not in envs or not cells or not all(st.complete(env, n) for _, n in cells):
                continue
            v_best, n_best = max(cells, key=lambda c: st.iqm(env, c[1]).point)
            best[(env, setup)] = n_best
            shipped_name = next((n for v, n in cells if np.isclose(v, shipped)), None)
            text = f"{env} {setup}: the best {key} is {v_best:g} ({_fmt(st.iqm(env, n_best))})"
            if shipped_name == n_best:
                text += ", the shipped value"
            elif shipped_name is not None:
                text += f", P(> the shipped {shipped:g}) = {_fmt(st.poi(env, n_best, shipped_name), '.2f')}"
            lines.append(text)
        if (env, "trpl-kl") in best and (env, "ppo") in best:
            poi = st.poi(env, best[(env, "trpl-kl")], best[(env, "ppo")])
            lines.append(f"{env}, each with its best bound: P(TRPL-KL > PPO) = {_fmt(poi, '.2f')}")
    for env in ENVS:  # the shipped TRPL-KL config is a setting of every TRPL-KL sweep: the same cell twice or more
        same = [
            (k, v, n)
            for e, s, k, v, n in st.sweeps
            if e == env and s == "trpl-kl" and any(np.isclose(v, x) for s2, k2, x, _ in SWEEPS if (s2, k2) == (s, k))
        ]
        if len(same) > 1 and all(st.complete(env, n) for _, _, n in same):
            cells = " and ".join(f"{_fmt(st.iqm(env, n))} ({k} = {v:g})" for k, v, n in same)
            lines.append(
                f"{env} trpl-kl with its shipped config, the same seeds, in two vmapped programs: {cells} (the "
                "spread of a 3-seed cell, floating-point rounding differences included)"
            )
    if not lines:
        return ""
    return (
        "\nThe same tuning for PPO and TRPL-KL (the swept values of each one's bound in the table, 3 seeds, 1M env "
        "steps; picking the best on the same seeds that score it favours the best setting): " + "; ".join(lines) + ".\n"
    )


def _coef_text(st: Study) -> str:
    """One generated sentence on the regression coefficient's sweep: the acting policy's mean part per setting."""
    cells = [
        (v, st.rows[(e, n)].acting_mean)
        for e, s, k, v, n in st.sweeps
        if k == "trust_region_coef" and st.complete(e, n) and (e, n) in st.rows
    ]
    cells = [(v, a) for v, a in cells if a is not None]
    if not cells:
        return ""
    parts = "; ".join(f"{v:g}: {100 * a[2]:.0f}% of states over, mean {a[1]:.2f}, max {a[0]:.2f}" for v, a in cells)
    return (
        f"\nThe acting policy's mean part over `eps_mean` per `trust_region_coef` (hopper TRPL-KL, every update "
        f"and seed; fraction of states over the bound, mean and max of part/bound): {parts}.\n"
    )


def _per_seed(st: Study, env: str, setup: str, key: str, last: float | None) -> np.ndarray:
    """One value per seed ``[S]`` of the metric ``key`` from the exported blocks of ``runs/<env>/<setup>/``: the
    median over the run's blocks, or (``last``: a fraction) the mean over the blocks in its last fraction."""
    rows = R.read_jsonl(os.path.join(st.study, "runs", env, setup, "metrics.jsonl"))
    seeds = sorted({r["seed"] for r in rows})
    end = max(r["iteration"] for r in rows) + 1
    out = []
    for seed in seeds:
        mine = [r for r in rows if r["seed"] == seed and key in r]
        if last is None:
            out.append(float(np.median([r[key] for r in mine])))
        else:
            out.append(float(np.mean([r[key] for r in mine if r["iteration"] + 1 > (1 - last) * end])))
    return np.asarray(out)


def _dynamics(st: Study) -> dict:
    """``{(env, setup): (update size, final entropy)}`` of the complete main cells with a global covariance (whose
    entropy is the acting policy's): the IQM over seeds of each seed's median acting KL per update (mean over
    states) and of its policy entropy over the last 10% of the run."""
    return {
        (env, s): (
            stats.iqm(_per_seed(st, env, s, "acting_kl_mean", None), st.reps),
            stats.iqm(_per_seed(st, env, s, "entropy", stats.SCORE_WINDOW), st.reps),
        )
        for env in ENVS
        for s in MAIN
        if st.complete(env, s)
    }


def _dynamics_text(st: Study) -> str:
    dyn = _dynamics(st)
    if not dyn:
        return "No main cell is complete yet.\n"
    lines = [
        "| env | setup | score IQM [95% CI] | acting KL per update [95% CI] | entropy, last 10% [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for (env, s), (kl, ent) in dyn.items():
        lines.append(f"| {env} | {s} | {_cell_text(st, env, s)} | {_fmt(kl, '.4f')} | {_fmt(ent, '.2f')} |")
    notes = []
    for env in ENVS:
        if (env, "ppo") in dyn and (env, "trpl-kl") in dyn:
            (kp, ep), (kt, et) = dyn[(env, "ppo")], dyn[(env, "trpl-kl")]
            notes.append(
                f"on {env} TRPL-KL's acting policy moves {kt.point / kp.point:.2f}x as far per update as PPO's "
                f"({kt.point:.4f} against {kp.point:.4f}) and ends with an entropy {et.point - ep.point:+.2f} nats "
                f"from PPO's ({et.point:.2f} against {ep.point:.2f})"
            )
    return "\n".join(lines) + "\n" + (f"\nIn numbers: {'; '.join(notes)}.\n" if notes else "")


def _acting_table(st: Study) -> str:
    lines = [
        "| env | setup | seeds | cell | projected bound use | acting mean part / eps_mean: max / mean / over "
        "| acting cov part / eps_cov: max / mean / over |",
        "|---|---|---|---|---|---|---|",
    ]
    for (env, setup), row in st.rows.items():
        if row.acting_mean is None:
            continue
        use = "–" if row.bound_use is None or not np.isfinite(row.bound_use) else f"{row.bound_use:.3f}"
        lines.append(
            f"| {env} | {setup} | {row.num_seeds} | {st.state(env, setup)} | {use} "
            f"| {compare.acting_text(row.acting_mean)} | {compare.acting_text(row.acting_cov)} |"
        )
    return "\n".join(lines) + "\n"


def _bounds_text(st: Study) -> str:
    """The trust regions of the main setups as the runs' configs set them, e.g. ``trpl-kl eps_mean 0.03, eps_cov
    0.001``; a setup whose runs differ between envs lists each env's."""
    keys = {"ppo": ("clip_ratio",), "trpo": ("max_kl",)}
    parts = []
    for setup in MAIN:
        found = {}
        for env in ENVS:
            path = os.path.join(st.study, "runs", env, setup, "config.json")
            if os.path.exists(path):
                config = R.read_json(path)
                names = keys.get(setup, ("eps_mean", "eps_cov"))
                found[env] = ", ".join(f"{k} {config[k]:g}" for k in names)
        if len(set(found.values())) == 1:
            parts.append(f"{setup} {next(iter(found.values()))}")
        elif found:
            parts.append(f"{setup} " + "; ".join(f"{v} ({e})" for e, v in found.items()))
    return "; ".join(parts) or "no run yet"


def _protocol(st: Study) -> str:
    rows = [r for (e, s), r in st.rows.items() if "/" not in s]
    full = [r for r in rows if not r.setup.endswith("-m")]  # the minimal variants switch critic choices off
    critic = compare._critic_note(full).strip() if full else "critic: no run yet"
    critic = critic.replace("the same in every run:", "the same in every run of the full setups:")
    budgets = sorted({r.budget for r in rows})
    return f"""- Brax (positional backend), hopper and walker2d; {SEEDS} seeds per cell, trained at once (vmapped);
  budget {", ".join(f"{b:,}" for b in budgets) or "2,000,000"} env steps per seed (2M rounded down to whole
  2,048-step iterations); the learning-rate schedules' horizon is the reference's 3,000,320 steps
  (`lr_decay_steps`), so no setup is annealed to zero at the cut.
- Trust regions (the runs' configs; an env is named where they differ): {_bounds_text(st)}. TRPL-W2's bounds are
  KL-equivalent (its precision-scaled mean part is twice KL's, its covariance part equals KL's to second order).
- One critic for every setup (`experiments/configs/_common.yaml`) -- {critic}; the minimal (-m) variants
  switch off the choices below, the critic's own included (reward normalisation, value clipping, orthogonal
  init, learning-rate annealing).
- Score of a seed: {compare.score_note([]).split("Failed seeds")[0].replace("score: ", "").strip()}
- Statistics ({stats.REPS} stratified-bootstrap resamples, rliable, fixed seed): IQM of the seeds' scores with a
  95% percentile CI; P(improvement) of setup X over Y = P(score_X > score_Y) + P(=)/2 over seed pairs, with its CI;
  the ablation's drop = 1 − IQM(minimal)/IQM(full), both cells resampled independently.
- The implementation choices switched off in the minimal (-m) variants: `experiments/configs/_minimal.yaml`
  (observation normalisation and clipping, reward normalisation, value clipping, orthogonal init with scaled
  output layers, learning-rate annealing, gradient clipping (already off), advantage normalisation).
"""


PREREGISTRATION = "preregistration.md"  # in the study directory: hypotheses fixed before their cells ran


def _preregistration(st: Study) -> str:
    """The study's pre-registered section, verbatim (empty when the study has none)."""
    path = os.path.join(st.study, PREREGISTRATION)
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read()


def page(st: Study, figures: dict, docs_rel: str) -> str:
    def img(name, alt):
        return (
            f"![{alt}]({docs_rel}/{os.path.basename(figures[name])})\n"
            if figures.get(name)
            else f"*Figure pending: no complete cell yet ({alt}).*\n"
        )

    v = verdicts(st)
    incomplete = [f"{e}/{s} ({st.state(e, s)})" for e, s in _setups() if not st.complete(e, s)]
    sweeps_pending = [f"{e}/{n} ({st.state(e, n)})" for e, _, _, _, n in st.sweeps if not st.complete(e, n)]
    verdict_lines = "\n".join(f"| {c} | {e} | {t} | {w} |" for c, e, t, w in v)
    curves = "".join(
        img(f"curves_{env}", f"learning curves, {env}, the main setups")
        + img(f"curves_{env}_variants", f"learning curves, {env}, PPO and TRPL-KL with their variants")
        for env in ENVS
    )
    return f"""# Results

*Generated by `python3 experiments/study_report.py` from the committed results in `experiments/study/`; edit
the script, not this page. The runs: `experiments/study.sh OUT`, then `python3 experiments/study_export.py OUT`.*

The paper (Otto et al., ICLR 2021) claims that its trust-region projection layers (1) achieve similar or better
results than PPO and TRPO, (2) while being almost agnostic to implementation choices, and (3) keep policy updates
stable with a state-dependent (contextual) covariance, where PPO does not. Each claim below gets a verdict with its
confidence interval, on Brax's hopper and walker2d (returns are not comparable with the paper's MuJoCo numbers).

## Protocol

{_protocol(st)}
## Verdicts

| claim | env | statistic [95% CI] | verdict |
|---|---|---|---|
{verdict_lines}

{VERDICT_RULES}

Cells still running or not started: {", ".join(incomplete) if incomplete else "none"}.
{("Sensitivity settings still running: " + ", ".join(sweeps_pending) + ".") if sweeps_pending else ""}

## Main table

{_main_table(st)}
The full `tr-jax compare` table of every cell (final evaluation, bound use, speed, wall time) is
`experiments/study/results.md`.

## Implementation choices (ablation)

Each setup's score without the implementation choices, as a drop of its IQM (0%: no loss).

{img("ablation", "ablation: drop from each setup to its minimal variant")}
{_ablation_table(st)}
## Contextual covariance ({CONTEXTUAL_ENV})

PPO and TRPL-KL with the global diagonal covariance of the main table, and with a state-dependent diagonal and
full covariance (`experiments/configs/{CONTEXTUAL_ENV}/*-ctx-*.yaml`; nothing else changed).

{img("contextual", "contextual covariance")}
{_contextual_table(st)}
## Bound sensitivity

TRPL-KL's mean bound `eps_mean` and PPO's clip ratio, each swept in one vmapped program per env, and on hopper
TRPL-KL's regression coefficient `trust_region_coef` (`experiments/sensitivity.sh`: 3 seeds, 1M env steps per
seed, scored at 1M by the same rule; the acting policy's bound use of each setting is in the table below).

{img("sensitivity", "bound sensitivity")}
{_sensitivity_table(st)}{_tuning_text(st)}{_coef_text(st)}
## Update size and exploration

What the data say about how the setups differ in the way they move, beside their scores: the acting policy's KL
from the old policy per update (the mean over states; each seed's median over the run's exported blocks of
{study_export.BLOCK} iterations, a block being its updates' mean; for TRPL the network output, not its projection)
and the policy's entropy in nats over the last 10% of the run (each seed's mean over those blocks), IQM over seeds
with 95% CIs. The main setups only (a global covariance: the entropy is the acting policy's). These are
observations beside the verdicts, not tested causes.

{_dynamics_text(st)}
## The acting policy's bound use

TRPL's projected policy meets its bounds by construction (projected bound use ≤ 1); the policy that acts in the
next rollout is the network output, which only the regression loss pulls toward its projection. Its mean and
covariance parts over their bounds: the max over states and updates, the mean, and the fraction of states above
the bound (every update and seed; exact, from the whole metrics).

{_acting_table(st)}
## Learning curves

Per env, the main setups, then PPO and TRPL-KL beside their minimal (-m) and contextual (-ctx-) variants. Mean
over seeds with a 95% bootstrap band; a KL panel spanning more than two decades, and a bound panel with a curve
above 10 times its bound, have a log axis. The exported per-iteration metrics are blocks of
{BLOCK_NOTE}: a point is a block's mean (its max for the `*_max` panels); evaluations are every one.

{curves}
{_preregistration(st)}
## Regenerate

    python3 experiments/study_export.py OUT          # OUT of experiments/study.sh: compact copy into experiments/study/
    python3 experiments/study_report.py              # this page, docs/study/*.png, experiments/study/results.md
"""


README_BEGIN, README_END = "<!-- study:begin -->", "<!-- study:end -->"


def readme_block(st: Study, figures: dict) -> str:
    """The README's results: the verdicts and the main table of the page, the ablation figure, a link to the page."""
    verdict_lines = "\n".join(f"| {c} | {e} | {t} | {w} |" for c, e, t, w in verdicts(st))
    ablation = "".join(
        f"![{name}](docs/study/{name}.png)\n\n"
        for name in ("ablation", "contextual", "sensitivity")
        if figures.get(name)
    )
    return f"""{README_BEGIN}
*Generated by `python3 experiments/study_report.py` from `experiments/study/` (the protocol, every table and
figure, and the cells still running: [docs/results.md](docs/results.md)).* Brax hopper and walker2d, 5 seeds, 2M
env steps per seed with the learning rates annealed over the reference's 3M, one critic for every setup; a seed's
score is its mean deterministic evaluation return over the last 10% of the budget; IQM with 95% stratified-bootstrap
CIs and P(improvement) (rliable).

| claim | env | statistic [95% CI] | verdict |
|---|---|---|---|
{verdict_lines}

{_main_table(st, started_only=True)}
{ablation}The acting policy (TRPL's network output, which acts in the next rollout; its projection meets the bounds by
construction), its mean and covariance parts over their bounds (max over states and updates / mean / fraction of
states over):

{_acting_table(st)}{README_END}"""


def write_readme(path: str, block: str) -> None:
    """Replaces the block between the markers in the README at ``path`` (ValueError naming it without them)."""
    with open(path) as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{path} has no {README_BEGIN} ... {README_END} block for the results")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    with open(path, "w") as f:
        f.write(head + block + tail)


def report(study: str, docs: str, reps: int = stats.REPS, readme: str | None = None) -> dict:
    """Writes the page, the figures, the full table and (``readme``) the README's block; returns ``{name: path}`` of
    what was written."""
    st = Study(study, reps)
    figdir = os.path.join(docs, "study")
    os.makedirs(figdir, exist_ok=True)
    figures = {
        "ablation": figure_ablation(st, os.path.join(figdir, "ablation.png")),
        "contextual": figure_contextual(st, os.path.join(figdir, "contextual.png")),
        "sensitivity": figure_sensitivity(st, os.path.join(figdir, "sensitivity.png")),
    }
    for env in ENVS:  # the main setups, and PPO and TRPL-KL beside their minimal and contextual variants
        for name, wanted in ((f"curves_{env}", MAIN), (f"curves_{env}_variants", VARIANTS)):
            setups = [s for s in wanted if (env, s) in st.rows]
            path = os.path.join(figdir, f"{name}.png")
            figures[name] = compare.plot(study, env, setups, smooth=1, path=path) if setups else None
    with open(os.path.join(docs, "results.md"), "w") as f:
        f.write(page(st, figures, "study"))
    with open(os.path.join(study, "results.md"), "w") as f:
        f.write(compare.table([r for (e, s), r in st.rows.items() if "/" not in s], reps))
    if readme is not None:
        write_readme(readme, readme_block(st, figures))
    return {
        **({"readme": readme} if readme is not None else {}),
        "page": os.path.join(docs, "results.md"),
        "table": os.path.join(study, "results.md"),
        **{k: v for k, v in figures.items() if v},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="study_report.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "study",
        nargs="?",
        default=os.path.join(ROOT, "experiments", "study"),
        help="the exported results (default experiments/study)",
    )
    p.add_argument("--docs", default=os.path.join(ROOT, "docs"), help="where the page and figures go (default docs)")
    p.add_argument("--reps", type=int, default=stats.REPS, help=f"bootstrap resamples (default {stats.REPS})")
    p.add_argument(
        "--readme",
        default=None,
        help="the README whose results block to rewrite (default: the checkout's README.md when --docs is its docs/)",
    )
    args = p.parse_args(argv)
    readme = args.readme
    if readme is None and os.path.abspath(args.docs) == os.path.join(ROOT, "docs"):
        readme = os.path.join(ROOT, "README.md")
    if not os.path.isdir(os.path.join(args.study, "runs")):
        print(
            f"study_report.py: error: {args.study} holds no runs/ directory (export a study first: "
            "python3 experiments/study_export.py OUT)",
            file=sys.stderr,
        )
        return 2
    for path in report(args.study, args.docs, args.reps, readme).values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
