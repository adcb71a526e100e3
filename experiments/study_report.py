"""Regenerates every results table and figure of the study from the committed compact results::

    python3 experiments/study_report.py                      # experiments/study -> docs/results.md, docs/study/
    python3 experiments/study_report.py STUDY --docs DIR     # another export (or a study OUT itself)

STUDY is what ``experiments/study_export.py`` wrote (or the OUT of ``experiments/study.sh``: the same layout,
``runs/<env>/<setup>/``, ``seed100/runs/<env>/<setup>/`` and ``budget3m/runs/<env>/<setup>/`` (the other programs of
``experiments/factors.sh``) and ``sensitivity/runs/<env>/<sweep>/<setting>/``). Writes:

* ``DOCS/results.md``: the Results page -- the protocol, the main table (IQM, 95% CI, P(improvement over PPO)),
  the implementation-choices ablation, contextual covariances, bound sensitivity, the acting policy's bound use,
  a verdict per claim computed by the rules the page states (a claim whose cells are not all complete is
  "pending", naming them), and the pre-registered "Why TRPL trails" hypotheses with their verdicts by the rules
  registered before their cells ran (``STUDY/preregistration.md``, on the page verbatim);
* ``DOCS/study/*.png``: the figures the page shows (ablation, contextual, sensitivity, learning curves);
* ``STUDY/results.md``: the full ``tr-jax compare`` table of every cell (speed, wall time, bound columns);
* the README's "Results" block (between ``<!-- study:begin -->`` and ``<!-- study:end -->``): a few generated lines
  of verdicts with their headline numbers, the ablation figure and a link to the page (``--readme PATH``; by
  default ``README.md`` of the checkout when DOCS is its ``docs/``, none otherwise).

Reads STUDY only; needs rliable and matplotlib (``pip install 'tr_jax[stats,plot]'``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "experiments")):  # run as a script from a checkout
    if path not in sys.path:
        sys.path.insert(0, path)

import numpy as np  # noqa: E402
import study_export  # noqa: E402  (beside this script)

from tr_jax import compare, stats  # noqa: E402
from tr_jax import rundir as R  # noqa: E402

ENVS = ("hopper", "walker2d", "halfcheetah")
SWEEP_ENVS = ("hopper", "walker2d")  # the envs with bound sweeps
MAIN = ("ppo", "trpl-kl", "trpl-frob", "trpl-w2", "trpo")
ABLATION = ("ppo", "trpl-kl", "trpl-frob")  # each beside its minimal variant <setup>-m
# the 2M-step cells of each env: the main setups and the ablation's minimal variants (halfcheetah, the third env,
# has PPO, TRPL-KL and TRPO and the two ablation pairs of claims 1 and 2)
ENV_SETUPS = {
    "hopper": MAIN + tuple(f"{a}-m" for a in ABLATION),
    "walker2d": MAIN + tuple(f"{a}-m" for a in ABLATION),
    "halfcheetah": ("ppo", "trpl-kl", "trpo", "ppo-m", "trpl-kl-m"),
}
CONTEXTUAL_ENV = "hopper"
CONTEXTUAL = ("ppo", "ppo-ctx-diag", "ppo-ctx-full", "trpl-kl", "trpl-kl-ctx-diag", "trpl-kl-ctx-full")
# (setup, swept key, the shipped value, envs): experiments/sensitivity.sh
SWEEPS = (
    ("trpl-kl", "eps_mean", 0.03, SWEEP_ENVS),
    ("ppo", "clip_ratio", 0.2, SWEEP_ENVS),
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

# Why TRPL trails (STUDY/preregistration.md): the single-factor cells on hopper (base seed 0, runs/), the cells with
# 5 more seeds from base seed 100 (seed100/runs/), and the paper's budget (budget3m/runs/)
SEED100, BUDGET3M = study_export.PROGRAMS
FACTOR_ENV = "hopper"
FACTORS = ("trpl-kl-ppo-optim", "ppo-trpl-optim", "trpl-kl-anneal", "trpl-kl-reg")
TEN = ("ppo", "trpl-kl", "trpl-kl-ppo-optim", "ppo-trpl-optim")  # 10 seeds: base seed 0 and base seed 100
CHECK_ENV = "walker2d"  # the shipping rule's check: a factor that qualifies on hopper, the same change on walker2d
CHECKS = ("trpl-kl-ppo-optim", "trpl-kl-anneal", "trpl-kl-reg")  # the factors that may ship (H1a, H2, H3)
BUDGET_ENVS, BUDGET_SETUPS = ("hopper", "walker2d"), ("ppo", "trpl-kl", "trpo")
PROGRAM_CELLS = (
    (SEED100, [(FACTOR_ENV, s) for s in TEN]),
    (BUDGET3M, [(e, s) for e in BUDGET_ENVS for s in BUDGET_SETUPS]),
)


def ten(setup: str) -> str:
    """The name of the 10-seed cell of ``setup`` on hopper: its base-0 seeds followed by its base-100 seeds."""
    return f"{setup}+{SEED100}"


def _setups() -> list:
    """Every (env, setup) of the study's 2M-step cells (base seed 0)."""
    cells = [(e, s) for e in ENVS for s in ENV_SETUPS[e]]
    return cells + [(CONTEXTUAL_ENV, s) for s in CONTEXTUAL if (CONTEXTUAL_ENV, s) not in cells]


def _factor_cells() -> list:
    """The single-factor cells of "Why TRPL trails" at base seed 0 (in ``runs/`` beside the study's)."""
    return [(FACTOR_ENV, s) for s in FACTORS]


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
    """The study's rows (:class:`tr_jax.compare.Row`) and their seed scores with failures imputed.

    Keys ``(env, name)``: ``name`` is a setup of ``runs/`` (base seed 0), ``<program>/<setup>`` of
    ``<program>/runs/`` (:data:`PROGRAM_CELLS`), a sweep setting ``<sweep>/<setting>``, or a 10-seed cell
    :func:`ten` (``scores`` only: the concatenated seed scores of its two halves, present once both started).
    ``scores`` are by the deterministic evaluation (the primary score); ``stochastic`` are the hopper 2M-step
    cells' by the stochastic one (H4), the same rule on the other column."""

    def __init__(self, study: str, reps: int = stats.REPS):
        self.reps = reps
        self.study = study
        self._estimates: dict = {}  # estimate's store
        timings = compare.Timings(study) if os.path.exists(os.path.join(study, "timings.json")) else None
        # (directory, env, setup, name, timings, scored stochastically too: the hopper cells at 2M env steps)
        checks = [(CHECK_ENV, s) for s in CHECKS]
        sources = [
            (study, e, s, s, timings or _NoTimings(), e == FACTOR_ENV) for e, s in _setups() + _factor_cells() + checks
        ]
        for program, cells in PROGRAM_CELLS:
            sources += [
                (os.path.join(study, program), e, s, f"{program}/{s}", _NoTimings(), program == SEED100)
                for e, s in cells
            ]
        self.sweeps = _sweep_cells(study)
        sens = os.path.join(study, "sensitivity")
        sources += [(sens, env, name, name, _NoTimings(), False) for env, _, _, _, name in self.sweeps]
        self.rows, stochastic = {}, []
        for out, env, setup, name, times, both in sources:
            row = compare.summarize(out, env, setup, times)
            if row is None:
                continue
            self.rows[(env, name)] = row._replace(setup=name)
            if both:
                stochastic.append(
                    compare.summarize(out, env, setup, times, column=stats.STOCHASTIC)._replace(setup=name)
                )
        self.parts = {(FACTOR_ENV, ten(s)): [(FACTOR_ENV, s), (FACTOR_ENV, f"{SEED100}/{s}")] for s in TEN}
        self.scores = self._merged(compare.scored(list(self.rows.values())))
        self.stochastic = self._merged(compare.scored(stochastic))

    def _merged(self, scores: dict) -> dict:
        """``scores`` with each 10-seed cell whose halves both started: their seed scores, base seed 0 first."""
        merged = {
            key: np.concatenate([scores[p] for p in parts])
            for key, parts in self.parts.items()
            if all(p in scores for p in parts)
        }
        return {**scores, **merged}

    def _scores(self, mode: str) -> dict:
        return self.stochastic if mode == stats.STOCHASTIC else self.scores

    def complete(self, env: str, setup: str, mode: str = stats.DETERMINISTIC) -> bool:
        scores = self._scores(mode)
        return (env, setup) in scores and stats.complete(scores[(env, setup)])

    def state(self, env: str, setup: str) -> str:
        """ "complete", or why not: "not started" / "k/S seeds at the budget" (a 10-seed cell: over both halves,
        a half not started counting its planned seeds)."""
        parts = self.parts.get((env, setup), [(env, setup)])
        if not any(p in self.rows for p in parts):
            return "not started"
        if self.complete(env, setup):
            return "complete"
        reached = sum(int(np.sum(~np.isnan(self.scores[p]))) for p in parts if p in self.rows)
        return f"{reached}/{self.planned(env, setup)} seeds at the budget"

    def planned(self, env: str, setup: str) -> int:
        """The cell's seeds: its runs' (a 10-seed cell: both halves'), :data:`SEEDS` for a run not started."""
        return sum(
            self.rows[p].num_seeds if p in self.rows else SEEDS for p in self.parts.get((env, setup), [(env, setup)])
        )

    def pending(self, cells) -> list:
        return [f"{e}/{s} ({self.state(e, s)})" for e, s in cells if not self.complete(e, s)]

    def estimate(self, statistic, *cells) -> stats.Estimate:
        """``statistic(*cells, self.reps)`` (a :mod:`tr_jax.stats` estimate of the seed scores ``[S]`` of each cell)
        the first time it is asked for these values, the stored estimate after that (a bootstrap with a fixed seed:
        the page and the full table ask for the same cell's estimate in several places)."""
        key = (statistic.__name__, *(np.asarray(c, np.float64).tobytes() for c in cells))
        if key not in self._estimates:
            self._estimates[key] = statistic(*cells, self.reps)
        return self._estimates[key]

    def iqm(self, env, setup, mode: str = stats.DETERMINISTIC) -> stats.Estimate:
        if not self.complete(env, setup, mode):
            return stats.NAN
        sc = self._scores(mode)
        return self.estimate(stats.iqm, sc[(env, setup)])

    def poi(self, env, x, y, mode: str = stats.DETERMINISTIC) -> stats.Estimate:
        if not (self.complete(env, x, mode) and self.complete(env, y, mode)):
            return stats.NAN
        sc = self._scores(mode)
        return self.estimate(stats.probability_of_improvement, sc[(env, x)], sc[(env, y)])

    def drop(self, env, setup) -> stats.Estimate:
        if not (self.complete(env, setup) and self.complete(env, f"{setup}-m")):
            return stats.NAN
        sc = self.scores
        return self.estimate(stats.relative_drop, sc[(env, setup)], sc[(env, f"{setup}-m")])

    def failed(self, env, setup) -> int:
        """Failed (diverged) seeds of the cell (a 10-seed cell: of both halves)."""
        parts = self.parts.get((env, setup), [(env, setup)])
        return sum(int(np.sum(self.rows[p].scores == stats.FAILED)) for p in parts if p in self.rows)


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
before its cells ran). The halfcheetah rows of claims 1 and 2 (TRPL-KL) were registered before their cells ran
("Why TRPL trails: pre-registration" below); they use the study's base-0 seeds like every row here."""


def _side(e: stats.Estimate, null: float, better: str, worse: str) -> str:
    if not np.isfinite(e.point):
        return "pending"
    if e.low > null:
        return f"**met** ({better})"
    if e.high < null:
        return f"**not met** ({worse})"
    return f"**inconclusive** (the CI contains {null:g})"


def claim1(st: Study, envs, prefix: str = "") -> list:
    """Claim 1's rows ``[(claim, env, statistic text, verdict)]`` on ``envs``, TRPL-KL against PPO, then against
    TRPO (the paper's claim names both), of the cells ``<prefix><setup>`` (``prefix``: e.g. ``budget3m/``)."""
    out = []
    for base, name in (("ppo", "PPO"), ("trpo", "TRPO")):
        for env in envs:
            x, y = f"{prefix}trpl-kl", f"{prefix}{base}"
            e = st.poi(env, x, y)
            v = _side(e, 0.5, f"TRPL-KL better than {name}", f"TRPL-KL worse than {name}")
            text = f"P(TRPL-KL > {name}) = {_fmt(e, '.2f')}"
            out.append((f"1. TRPL ≥ {name}", env, text, _pending(st, [(env, y), (env, x)], v)))
    return out


def verdicts(st: Study) -> list:
    """``[(claim, env, statistic text, verdict)]`` of the study's claims (its 2M-step cells, base seed 0)."""
    out = claim1(st, ENVS)
    for trpl, name, claim in (("trpl-kl", "TRPL-KL", ""), ("trpl-frob", "TRPL-Frob", " (Frobenius)")):
        for env in (e for e in ENVS if f"{trpl}-m" in ENV_SETUPS[e]):
            need = [(env, s) for s in ("ppo", "ppo-m", trpl, f"{trpl}-m")]
            if all(st.complete(*c) for c in need):
                sc = st.scores
                e = st.estimate(
                    stats.drop_difference, sc[(env, "ppo")], sc[(env, "ppo-m")], sc[(env, trpl)], sc[(env, f"{trpl}-m")]
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


def _ablation(env: str) -> tuple:
    """The setups of ``env`` with an ablation pair (the setup and its minimal variant)."""
    return tuple(s for s in ABLATION if f"{s}-m" in ENV_SETUPS[env])


def _drops(st: Study) -> dict:
    return {(env, s): st.drop(env, s) for env in ENVS for s in _ablation(env)}


def figure_ablation(st: Study, path: str) -> str | None:
    """Each setup's relative drop from its full variant to its minimal one (-m), with CIs, per env."""
    if not _shows["ablation"](st):
        return None
    drops = _drops(st)
    plt = _plt()
    fig, axes = plt.subplots(1, len(ENVS), figsize=(5 * len(ENVS), 3), sharex=True)
    for ax, env in zip(np.atleast_1d(axes), ENVS):
        setups = _ablation(env)
        est = [drops[(env, s)] for s in setups]
        y = np.arange(len(setups))
        ok = [i for i, e in enumerate(est) if np.isfinite(e.point)]
        ax.barh(y[ok], [100 * est[i].point for i in ok], color="C0", alpha=0.5)
        for i in ok:
            ax.plot([100 * est[i].low, 100 * est[i].high], [y[i], y[i]], color="k")
        for i in set(range(len(est))) - set(ok):
            ax.text(
                0,
                y[i],
                f"  pending ({st.state(env, setups[i])}, -m: {st.state(env, setups[i] + '-m')})",
                va="center",
                fontsize=7,
            )
        ax.set_yticks(y, setups)
        ax.set_ylim(-0.5, len(ABLATION) - 0.5)  # the same bar spacing on an env with fewer ablation pairs
        ax.axvline(0, color="gray", lw=0.8)
        ax.set_title(env)
        ax.set_xlabel("IQM drop without the implementation choices (%, 95% CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure_contextual(st: Study, path: str) -> str | None:
    """Score IQM with CIs of PPO and TRPL-KL with a global, a contextual diagonal and a contextual full covariance."""
    if not _shows["contextual"](st):
        return None
    env = CONTEXTUAL_ENV
    est = [st.iqm(env, s) for s in CONTEXTUAL]
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
    if not _shows["sensitivity"](st):
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        len(SWEEP_ENVS), len(SWEEPS), figsize=(4.5 * len(SWEEPS), 3 * len(SWEEP_ENVS)), squeeze=False
    )
    for r, env in enumerate(SWEEP_ENVS):
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


_shows = {  # whether the figure has something to show: a finite estimate, a complete cell (else it is pending)
    "ablation": lambda st: any(np.isfinite(d.point) for d in _drops(st).values()),
    "contextual": lambda st: any(np.isfinite(st.iqm(CONTEXTUAL_ENV, s).point) for s in CONTEXTUAL),
    "sensitivity": lambda st: any(st.complete(env, name) for env, _, _, _, name in st.sweeps),
}
_FIGURES = {"ablation": figure_ablation, "contextual": figure_contextual, "sensitivity": figure_sensitivity}


def _curves(st: Study) -> dict:
    """``{name: (env, setups)}`` of the learning-curve figures: the main setups, and PPO and TRPL-KL beside their
    minimal and contextual variants, of each env (the setups with a row)."""
    return {
        name: (env, [s for s in wanted if (env, s) in st.rows])
        for env in ENVS
        for name, wanted in ((f"curves_{env}", MAIN), (f"curves_{env}_variants", VARIANTS))
    }


def figure_paths(st: Study, figdir: str) -> dict:
    """``{name: figdir/<name>.png}`` of every figure of the page, None for one with nothing to show yet (the page
    says "pending" there): what :func:`draw_figures` draws, known without drawing."""
    paths = {name: os.path.join(figdir, f"{name}.png") if shows(st) else None for name, shows in _shows.items()}
    for name, (env, setups) in _curves(st).items():
        shown = compare.plotted_setups(st.study, env, setups)
        paths[name] = os.path.join(figdir, f"{name}.png") if shown else None
    return paths


def draw_figures(st: Study, figures: dict) -> None:
    """Draws each figure of :func:`figure_paths` (``figures``) that is not None into its path."""
    curves = _curves(st)
    for name, path in figures.items():
        if path is None:
            continue
        if name in _FIGURES:
            _FIGURES[name](st, path)
        else:
            env, setups = curves[name]
            compare.plot(st.study, env, setups, smooth=1, path=path)


# ----------------------------------------------------------------------------
# the page


def _main_table(st: Study) -> str:
    lines = [
        "| env | setup | seeds at the budget | failed seeds | score IQM [95% CI] | P(improvement over PPO) [95% CI] "
        "| max acting KL |",
        "|---|---|---|---|---|---|---|",
    ]
    for env, setup in _setups():
        row = st.rows.get((env, setup))
        if row is None:
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
        for s in _ablation(env):
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
    rows = R.RunDir(os.path.join(st.study, "runs", env, setup)).read_metrics()
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
            st.estimate(stats.iqm, _per_seed(st, env, s, "acting_kl_mean", None)),
            st.estimate(stats.iqm, _per_seed(st, env, s, "entropy", stats.SCORE_WINDOW)),
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
    rows = [st.rows[c] for c in _setups() if c in st.rows]
    full = [r for r in rows if not r.setup.endswith("-m")]  # the minimal variants switch critic choices off
    critic = compare._critic_note(full).strip() if full else "critic: no run yet"
    critic = critic.replace("the same in every run:", "the same in every run of the full setups:")
    budgets = sorted({r.budget for r in rows})
    return f"""- Brax (positional backend), hopper, walker2d and halfcheetah (the third env: PPO, TRPL-KL and TRPO with
  the ablation's PPO-M and TRPL-KL-M); {SEEDS} seeds per cell (base seed 0), trained at once (vmapped);
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


# ----------------------------------------------------------------------------
# Why TRPL trails: the pre-registered hypotheses (STUDY/preregistration.md) and their verdicts by its rules


class Hypothesis(NamedTuple):
    """A pre-registered hypothesis on hopper: its statistic is P(x > y) (cells named as :class:`Study` keys),
    null 0.5. ``side``: +1 when the hypothesis is the CI above 0.5, -1 when below (H1c: TRPL's optimiser holding
    PPO back is ppo-trpl-optim scoring below ppo); ``not_worse``: a "not worse" hypothesis, which a CI containing
    0.5 does not reject."""

    name: str
    text: str
    x: str
    y: str
    side: int = 1
    not_worse: bool = False


HYPOTHESES = (
    Hypothesis("H1a", "TRPL-KL's own optimiser holds it back", ten("trpl-kl-ppo-optim"), ten("trpl-kl")),
    Hypothesis(
        "H1b",
        "with the same optimiser, TRPL-KL is not worse than PPO",
        ten("trpl-kl-ppo-optim"),
        ten("ppo"),
        not_worse=True,
    ),
    Hypothesis("H1c", "TRPL's optimiser holds PPO back too", ten("ppo-trpl-optim"), ten("ppo"), side=-1),
    Hypothesis(
        "H1d",
        "with TRPL's optimiser, TRPL-KL is not worse than PPO",
        ten("trpl-kl"),
        ten("ppo-trpl-optim"),
        not_worse=True,
    ),
    Hypothesis("H2", "annealing TRPL's lr alone helps", "trpl-kl-anneal", ten("trpl-kl")),
    Hypothesis("H3", "keeping the acting policy in its region helps", "trpl-kl-reg", ten("trpl-kl")),
)
SHIPPABLE = ("H1a", "H2", "H3")  # the factors that may become TRPL's default (their statistic is against trpl-kl)
BUDGET_3M = 1465 * 2048  # the paper's budget: 1465 iterations of 2,048 env steps


def _plain(name: str) -> str:
    """A cell's setup without its 10-seed suffix (:func:`ten`)."""
    return name.removesuffix(f"+{SEED100}")


def decide(e: stats.Estimate, side: int = 1, not_worse: bool = False, null: float = 0.5) -> str:
    """The pre-registered verdict word of a statistic ``e``: "supported" when its 95% CI lies on the hypothesis's
    side of ``null``, "rejected" when on the other side, "inconclusive" when it contains the null ("not rejected"
    for a "not worse" hypothesis), "pending" when it has no value (a cell incomplete)."""
    if not np.isfinite(e.point):
        return "pending"
    favour, against = (e.low > null, e.high < null) if side > 0 else (e.high < null, e.low > null)
    if favour:
        return "supported"
    if against:
        return "rejected"
    return "not rejected" if not_worse else "inconclusive"


def _verdict_text(st: Study, word: str, need) -> str:
    if word == "pending":
        return _pending(st, need, "pending")
    return f"**{word}**" + (" (the CI contains 0.5)" if word in ("inconclusive", "not rejected") else "")


def _ci_side(e: stats.Estimate) -> str:
    return "CI above 0.5" if e.low > 0.5 else "CI below 0.5" if e.high < 0.5 else "CI contains 0.5"


def hypotheses(st: Study) -> dict:
    """``{name: (hypothesis, statistic text, verdict word, verdict text)}`` of H1a-H3 and H4 by the pre-registered
    rules (hopper; the 10-seed cells :func:`ten`)."""
    out = {}
    env = FACTOR_ENV
    for h in HYPOTHESES:
        e = st.poi(env, h.x, h.y)
        word = decide(e, h.side, h.not_worse)
        seeds = f"{st.planned(env, h.x)} / {st.planned(env, h.y)}"
        text = f"P({_plain(h.x)} > {_plain(h.y)}) = {_fmt(e, '.2f')}; seeds {seeds}"
        out[h.name] = (h.text, text, word, _verdict_text(st, word, [(env, h.x), (env, h.y)]))
    x, y = ten("trpl-kl"), ten("ppo")
    modes = {mode: st.poi(env, x, y, mode) for mode in (stats.DETERMINISTIC, stats.STOCHASTIC)}
    text = "; ".join(
        f"{mode.split('_')[0]}: {_fmt(e, '.2f')}" + (f" ({_ci_side(e)})" if np.isfinite(e.point) else "")
        for mode, e in modes.items()
    )
    text = f"P(trpl-kl > ppo), {st.planned(env, x)} / {st.planned(env, y)} seeds, {text}"
    if not all(np.isfinite(e.point) for e in modes.values()):
        word = "pending"
    else:
        word = "supported" if len({_ci_side(e) for e in modes.values()}) > 1 else "not supported"
    verdict = _verdict_text(st, word, [(env, x), (env, y)]) if word != "not supported" else f"**{word}**"
    if word == "not supported":
        verdict += " (the same verdict under both modes)"
    out["H4"] = ("the ranking depends on the evaluation mode", text, word, verdict)
    return out


def h1_overall(res: dict) -> tuple:
    """``(word, text)``: H1 as a whole by its rule, from the verdict words of H1a, H1b and H1d."""
    a, b, d = (res[n][2] for n in ("H1a", "H1b", "H1d"))
    if "pending" in (a, b, d):
        return "pending", "pending (H1a, H1b and H1d decide it)"
    if a == "supported" and "rejected" not in (b, d):
        return "optimiser", (
            "**the gap is the optimiser's, not the update rule's** (H1a supported; neither H1b nor H1d rejected)"
        )
    if b == d == "rejected":
        return "update rule", (
            "**the update rule is the cause** (H1b and H1d both rejected: TRPL-KL trails PPO under either optimiser)"
        )
    return "inconclusive", f"**inconclusive**: neither reading holds (H1a {a}, H1b {b}, H1d {d})"


def _shipping(st: Study, res: dict) -> str:
    """The shipping rule's outcome: which factor qualifies on hopper, and its walker2d check."""
    by_name = {h.name: h for h in HYPOTHESES}
    words = [f"{n} ({_plain(by_name[n].x)}) {res[n][2]}" for n in SHIPPABLE]
    qualified = [n for n in SHIPPABLE if res[n][2] == "supported"]
    pending = [n for n in SHIPPABLE if res[n][2] == "pending"]
    text = f"On hopper: {', '.join(words)}."
    for n in qualified:
        setup = _plain(by_name[n].x)
        e = st.poi(CHECK_ENV, setup, "trpl-kl")
        word = decide(e, not_worse=True)
        if word == "pending":
            check = _pending(st, [(CHECK_ENV, setup), (CHECK_ENV, "trpl-kl")], "pending")
        else:
            check = f"P({setup} > trpl-kl) = {_fmt(e, '.2f')}, **{word}**"
        ships = {"pending": "it ships only if that is not rejected", "rejected": "it does not ship"}
        text += f" {setup} qualifies on hopper; its walker2d check: {check}: {ships.get(word, 'it ships')}."
    if pending:
        text += (
            f" Pending until their cells finish: {', '.join(pending)}; a factor that qualifies also needs its walker2d "
            "check (the same change on walker2d, 5 seeds, not rejected against walker2d's trpl-kl), whose cell does "
            "not exist yet (pending)."
        )
    elif not qualified:
        stat = "; ".join(f"{n}: {res[n][1]}" for n in SHIPPABLE)
        text += f" No factor qualifies: nothing ships ({stat})."
    return text


def _new_cells() -> list:
    """Every new cell of "Why TRPL trails" as :class:`Study` keys: hopper's single-factor cells, the base-100
    halves and the 10-seed cells, halfcheetah's cells, the 3M cells."""
    return (
        _factor_cells()
        + [(FACTOR_ENV, f"{SEED100}/{s}") for s in TEN]
        + [(FACTOR_ENV, ten(s)) for s in TEN]
        + [("halfcheetah", s) for s in ENV_SETUPS["halfcheetah"]]
        + [(e, f"{BUDGET3M}/{s}") for e, s in PROGRAM_CELLS[1][1]]
    )


def _seeds_text(st: Study, env: str, name: str) -> str:
    if (env, name) in st.parts:
        return "0 and 100"
    return "100" if name.startswith(f"{SEED100}/") else "0"


def _new_cells_table(st: Study) -> str:
    lines = [
        "| env | cell | base seed | seeds | env steps at the latest evaluation | failed seeds | score IQM [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for env, name in _new_cells():
        row = st.rows.get((env, name))
        budget = f"{row.env_steps:,}" if row is not None else "–"
        if (env, name) in st.parts:
            budget = " / ".join(f"{st.rows[p].env_steps:,}" if p in st.rows else "–" for p in st.parts[(env, name)])
        lines.append(
            f"| {env} | {name} | {_seeds_text(st, env, name)} | {st.planned(env, name)} | {budget} "
            f"| {st.failed(env, name) if st.state(env, name) != 'not started' else '–'} | {_cell_text(st, env, name)} |"
        )
    return "\n".join(lines) + "\n"


def _h3_acting(st: Study) -> str:
    """H3's observation: the acting policy's mean part over eps_mean of trpl-kl-reg beside trpl-kl (base seed 0)."""
    parts = []
    for name in ("trpl-kl-reg", "trpl-kl"):
        row = st.rows.get((FACTOR_ENV, name))
        a = None if row is None else row.acting_mean
        if a is None or not np.isfinite(a[0]):
            parts.append(f"{name}: {st.state(FACTOR_ENV, name)}")
        else:
            cell = "" if st.complete(FACTOR_ENV, name) else f", {st.state(FACTOR_ENV, name)}"
            parts.append(f"{name}: {100 * a[2]:.0f}% of states over (max {a[0]:.2f}, mean {a[1]:.2f}{cell})")
    return (
        "H3's observation, the acting policy's mean part over `eps_mean` (every update and seed, base seed 0, the "
        f"same seeds): {'; '.join(parts)}.\n"
    )


def _h4_table(st: Study) -> str:
    lines = [
        "| cell | seeds | deterministic score IQM [95% CI] | stochastic score IQM [95% CI] |",
        "|---|---|---|---|",
    ]
    env = FACTOR_ENV
    cells = [s for e, s in _setups() + _factor_cells() if e == env] + [ten(s) for s in TEN]
    for s in cells:
        text = [
            _fmt(st.iqm(env, s, mode)) if st.complete(env, s) else f"pending ({st.state(env, s)})"
            for mode in (stats.DETERMINISTIC, stats.STOCHASTIC)
        ]
        lines.append(f"| {s} | {st.planned(env, s)} | {text[0]} | {text[1]} |")
    return "\n".join(lines) + "\n"


def _budget_table(st: Study) -> str:
    lines = [
        "| env | setup | seeds at the budget | env steps at the latest evaluation | score IQM [95% CI] "
        "| at 2M (main table) |",
        "|---|---|---|---|---|---|",
    ]
    for env, setup in PROGRAM_CELLS[1][1]:
        name = f"{BUDGET3M}/{setup}"
        row = st.rows.get((env, name))
        lines.append(
            f"| {env} | {setup} | {st.state(env, name)} | {'–' if row is None else f'{row.env_steps:,}'} "
            f"| {_cell_text(st, env, name)} | {_cell_text(st, env, setup)} |"
        )
    return "\n".join(lines) + "\n"


def factors_section(st: Study) -> str:
    """The "Why TRPL trails: results" section: each pre-registered hypothesis with its statistic and verdict, the
    new cells, H3's acting-policy observation, H4's two evaluation modes, the 3M cells and the shipping rule."""
    res = hypotheses(st)
    rows = "\n".join(f"| {n} | {h} | {t} | {v} |" for n, (h, t, _, v) in res.items())
    budget = f"{BUDGET_3M:,}"
    claims = "\n".join(f"| {c} | {e} | {t} | {w} |" for c, e, t, w in claim1(st, BUDGET_ENVS, f"{BUDGET3M}/"))
    return f"""## Why TRPL trails: results

The hypotheses registered above, each by its rule (hopper, 2M env steps; `ppo` and `trpl-kl` are their 10-seed
cells, base seeds 0 and 100, wherever the registration says so; a 10-seed cell is complete when both its halves
are). H1c's hypothesis, that TRPL's optimiser holds PPO back, is its statistic's CI lying *below* 0.5 (PPO with
TRPL's optimiser scoring below PPO); every other hypothesis is the CI above 0.5.

| | hypothesis | statistic [95% CI] | verdict |
|---|---|---|---|
{rows}

H1 as a whole: {h1_overall(res)[1]}. H4 is supported when the verdict of P(trpl-kl > ppo) differs between the
deterministic evaluation (the mean action; the primary score) and the stochastic one (an action sampled from the
policy), "not supported" otherwise.

**What ships.** {_shipping(st, res)}

### The new cells

Every cell registered above (the 10-seed cells: the base-0 half, then the base-100 half; the halfcheetah cells
also appear in the main table and the ablation above, the 3M cells below).

{_new_cells_table(st)}
{_h3_acting(st)}
### Deterministic and stochastic evaluation (H4)

Every hopper cell at 2M env steps, each seed scored by the same rule on the mean return of the deterministic
evaluation (`deterministic_return_mean`, the primary score) and of the stochastic one (`stochastic_return_mean`).

{_h4_table(st)}
### The paper's budget ({budget} env steps)

PPO, TRPL-KL and TRPO at the paper's 1465 iterations (base seed 0), every seed scored at {budget} env steps per
seed by the same rule (its last 10%), and claim 1 at that budget by the rule above.

{_budget_table(st)}
| claim | env | statistic [95% CI] | verdict |
|---|---|---|---|
{claims}
"""


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
the script, not this page. The runs: `experiments/study.sh OUT` and `experiments/factors.sh OUT`, then
`python3 experiments/study_export.py OUT`.*

The paper (Otto et al., ICLR 2021) claims that its trust-region projection layers (1) achieve similar or better
results than PPO and TRPO, (2) while being almost agnostic to implementation choices, and (3) keep policy updates
stable with a state-dependent (contextual) covariance, where PPO does not. Each claim below gets a verdict with its
confidence interval, on Brax's hopper, walker2d and halfcheetah (returns are not comparable with the paper's MuJoCo
numbers). Why TRPL-KL trails PPO on hopper is tested by single-factor cells registered before they ran (at the end).

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
{factors_section(st)}
## Regenerate

    python3 experiments/study_export.py OUT          # OUT of study.sh/factors.sh: merged into experiments/study/
    python3 experiments/study_report.py              # this page, docs/study/*.png, experiments/study/results.md
"""


README_BEGIN, README_END = "<!-- study:begin -->", "<!-- study:end -->"


def _all_cells(st: Study) -> list:
    """Every registered cell as :class:`Study` keys (the study's, the new ones, the sweeps' settings)."""
    return _setups() + [c for c in _new_cells() if c not in st.parts] + [(e, n) for e, _, _, _, n in st.sweeps]


def _headline(rows: list) -> str:
    """One claim's verdict rows as ``word on env value; ...`` (``value``: the statistic's number and CI)."""
    parts = []
    for _, env, text, verdict in rows:
        word = verdict.split("**")[1] if verdict.startswith("**") else "pending"
        value = text.split(";")[0].split(" = ", 1)[1]
        parts.append(f"{word} on {env}" + ("" if word == "pending" else f" {value}"))
    return "; ".join(parts)


def readme_block(st: Study, figures: dict) -> str:
    """The README's results: a few generated verdict lines with their headline numbers, the ablation figure and a
    link to the page (every table); while cells are pending, a line saying so."""
    v = verdicts(st)
    claim = {c: [r for r in v if r[0] == c] for c in dict.fromkeys(r[0] for r in v)}
    iqms = "; ".join(
        f"{env} TRPL-KL {st.iqm(env, 'trpl-kl').point:.0f}, PPO {st.iqm(env, 'ppo').point:.0f}, "
        f"TRPO {st.iqm(env, 'trpo').point:.0f}"
        for env in ENVS
        if all(st.complete(env, s) for s in ("ppo", "trpl-kl", "trpo"))
    )
    res = hypotheses(st)
    why = "; ".join(f"{n} {res[n][2]}" for n in ("H2", "H3", "H4"))
    lines = [
        f"- **TRPL ≥ PPO** (P(TRPL-KL > PPO), 95% CI): {_headline(claim['1. TRPL ≥ PPO'])}. **≥ TRPO**: "
        f"{_headline(claim['1. TRPL ≥ TRPO'])}" + (f" (score IQM: {iqms})." if iqms else "."),
        "- **Robust to implementation choices** (drop(PPO) − drop(TRPL-KL), the IQM each loses without them): "
        f"{_headline(claim['2. robust to implementation choices'])}.",
        "- **Stable with contextual covariances** (P(TRPL-KL > PPO), both with a contextual full covariance): "
        f"{_headline(claim['3. stable with contextual covariances'])}.",
        f"- **Why TRPL trails PPO on hopper** (single-factor cells, registered before they ran): H1 (the optimiser): "
        f"{h1_overall(res)[1]}; {why}.",
    ]
    pending = [c for c in _all_cells(st) if not st.complete(*c)]
    if pending:
        lines.append(
            f"- *{len(pending)} cells are still training or not started: the verdicts are those of the cells finished "
            "so far.*"
        )
    ablation = "![ablation](docs/study/ablation.png)\n\n" if figures.get("ablation") else ""
    return f"""{README_BEGIN}
*Generated by `python3 experiments/study_report.py` from `experiments/study/`.* Brax, 5 seeds per cell (10 where
the page says so), 2M env steps per seed; a seed's score is its mean deterministic evaluation return over the last
10% of the budget; IQM and P(improvement) with 95% stratified-bootstrap CIs (rliable).

{chr(10).join(lines)}

{ablation}Every table, the protocol, the hypotheses and the cells still running: [docs/results.md](docs/results.md).
{README_END}"""


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


def report(study: str, docs: str, reps: int = stats.REPS, readme: str | None = None, draw: bool = True) -> dict:
    """Writes the page, the figures, the full table and (``readme``) the README's block; returns ``{name: path}`` of
    what was written (with ``draw`` False the figures are not drawn, but the page links them as it would: the
    suite's check of the committed page, whose figures it does not compare)."""
    st = Study(study, reps)
    figdir = os.path.join(docs, "study")
    os.makedirs(figdir, exist_ok=True)
    figures = figure_paths(st, figdir)
    if draw:
        draw_figures(st, figures)
    with open(os.path.join(docs, "results.md"), "w") as f:
        f.write(page(st, figures, "study"))
    with open(os.path.join(study, "results.md"), "w") as f:
        f.write(compare.table([r for (e, s), r in st.rows.items() if "/" not in s], reps, st.estimate))
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
