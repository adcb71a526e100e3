"""A generic constrained solver used as an independent oracle, judged by what it achieves.

The optimality tests check that a projection is the minimiser of its own
problem ``min f(x) s.t. c(x) >= 0`` by comparing it with scipy. scipy's status
flag is not a usable verdict: whether SLSQP ends with "Optimization terminated
successfully" or with "Positive directional derivative for linesearch" one
step short of ``ftol`` depends on floating-point details that differ between
CPUs. So :func:`solve` never reads it. It tries SLSQP from each start point,
then ``trust-constr``, and keeps the best point that is *feasible* (to
``feasible_tol``), stopping once that point is as good as the caller needs.

The caller then asserts what does not depend on the oracle converging (our
point is feasible and no feasible point the oracle found is better) and, where
the oracle reached our objective, that it found the same point. Where no
attempt got there, the caller says so (a warning naming the attempts) and
relies on a KKT check of its own; it never passes silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize

_OPTIONS = {
    "SLSQP": {"ftol": 1e-14, "maxiter": 500},
    "trust-constr": {"gtol": 1e-13, "xtol": 1e-15, "maxiter": 3000},
}


class Reference(NamedTuple):
    """x: best feasible point found ``[d]`` (None if no attempt was feasible);
    objective: f there (inf if none); reached: ``good_enough(objective)``;
    log: one line per attempt (method, start, objective, violation, scipy's message)."""

    x: np.ndarray | None
    objective: float
    reached: bool
    log: list

    def describe(self) -> str:
        return "; ".join(self.log)


def solve(
    objective: Callable[[np.ndarray], float],
    constraint: Callable[[np.ndarray], float],
    starts: Sequence[np.ndarray],
    good_enough: Callable[[float], bool],
    feasible_tol: float = 1e-8,
    restore: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Reference:
    """Minimises ``objective`` subject to ``constraint(x) >= 0`` (scalar functions of ``x [d]``).

    A point counts as feasible when ``constraint(x) >= -feasible_tol`` (scale the
    constraint so that this is a relative tolerance). Attempts, in order: SLSQP
    from each of ``starts``, then trust-constr from ``starts[0]``; stops after the
    first attempt whose best feasible objective satisfies ``good_enough``.
    ``restore``: optional exact map of a slightly infeasible point onto the feasible
    set (e.g. a pull along a ray for a ball constraint), applied to each result first.
    """
    attempts = [("SLSQP", i) for i in range(len(starts))] + [("trust-constr", 0)]
    best_x, best_f, log = None, np.inf, []
    for method, i in attempts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trust-constr's notes on its own settings
            try:
                res = minimize(
                    objective,
                    np.asarray(starts[i], dtype=np.float64),
                    method=method,
                    constraints=[{"type": "ineq", "fun": constraint}],
                    options=_OPTIONS[method],
                )
            except (ValueError, np.linalg.LinAlgError) as e:  # a start the method cannot handle
                log.append(f"{method} from start {i}: raised {e!r}")
                continue
        x = res.x if restore is None else restore(res.x)
        f, violation = float(objective(x)), max(0.0, -float(constraint(x)))
        log.append(f"{method} from start {i}: objective {f:.10g}, violation {violation:.2g}, scipy: {res.message!r}")
        if violation <= feasible_tol and np.isfinite(f) and f < best_f:
            best_x, best_f = np.array(x), f
        if best_x is not None and good_enough(best_f):
            break
    return Reference(best_x, best_f, best_x is not None and bool(good_enough(best_f)), log)


def warn_unreached(what: str, ref: Reference) -> None:
    """Says that the oracle did not reach our objective on one case (which then
    rests on the caller's KKT check alone)."""
    warnings.warn(
        f"reference solver did not reach our optimum on {what}; this case is checked by KKT conditions "
        f"only. Attempts: {ref.describe()}",
        stacklevel=2,
    )
