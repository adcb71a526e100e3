"""The scipy oracle of the optimality tests (tests/projections/_oracle.py) is judged by what it achieves."""

import _oracle
import numpy as np
import pytest


def _ball_problem():
    target = np.array([3.0, -4.0, 1.0])
    return (lambda x: np.sum((x - target) ** 2), lambda x: 1.0 - np.sum(x * x), target / np.linalg.norm(target))


def test_reaches_the_analytic_optimum():
    objective, constraint, optimum = _ball_problem()
    ref = _oracle.solve(
        objective, constraint, starts=[np.zeros(3)], good_enough=lambda f: f <= objective(optimum) * (1 + 1e-9)
    )
    assert ref.reached and len(ref.log) >= 1
    np.testing.assert_allclose(ref.x, optimum, atol=1e-6)


def test_tries_every_method_and_keeps_only_feasible_points():
    objective, constraint, optimum = _ball_problem()
    # an unreachable demand: every attempt runs, the best feasible point is returned
    ref = _oracle.solve(objective, constraint, starts=[np.zeros(3), np.ones(3) * 0.1], good_enough=lambda f: False)
    assert not ref.reached
    assert [line.split(" from")[0] for line in ref.log] == ["SLSQP", "SLSQP", "trust-constr"]
    assert constraint(ref.x) >= -1e-8
    np.testing.assert_allclose(ref.x, optimum, atol=1e-5)
    with pytest.warns(UserWarning, match="did not reach our optimum on case 7"):
        _oracle.warn_unreached("case 7", ref)


def test_infeasible_results_are_not_reported_as_best():
    target = np.array([2.0, 0.0])
    # the constraint is impossible to meet: nothing feasible is ever returned
    ref = _oracle.solve(
        lambda x: np.sum((x - target) ** 2),
        lambda x: -1.0 - np.sum(x * x),
        starts=[np.zeros(2)],
        good_enough=lambda f: True,
    )
    assert ref.x is None and not ref.reached and np.isinf(ref.objective)
