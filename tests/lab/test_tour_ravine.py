"""The ravine's finite-run study: why lr 0.0197 beats theory's 2/(L+mu) = 0.0198 from the
table's start, and loses from the slow eigenvector."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from descend.lab import demo
from descend.lab.tour import ravine
from descend.lab.tour.base import display_name
from descend.lab.tour.finite_run import counted_steps, slow_start, study_start
from descend.secondorder.problems import Quadratic

TOLERANCE, STEPS = 1e-6, 3000


@pytest.fixture(scope="module")
def table_problem() -> Quadratic:
    return Quadratic.ravine(100.0, 2, 0)


def _measured(problem: Quadratic, lr: float) -> int | None:
    return demo.steps_to_tolerance(problem, "sgd", {"learning_rate": lr}, TOLERANCE, STEPS)


def test_the_issue_reproduces_and_each_count_follows_from_the_directions(table_problem):
    # `descend race ravine:kappa=100 sgd:lr=0.0197 sgd:lr=0.0198`: the smaller rate wins.
    below, optimal = _measured(table_problem, 0.0197), _measured(table_problem, 0.0198)
    assert below < optimal - 100
    assert abs(counted_steps(table_problem, 0.0197, TOLERANCE, STEPS) - below) <= 1
    assert abs(counted_steps(table_problem, 0.0198, TOLERANCE, STEPS) - optimal) <= 1


def test_from_the_slow_eigenvector_theory_wins(table_problem):
    problem = slow_start(table_problem)
    assert problem.loss(problem.start()) == pytest.approx(table_problem.loss(table_problem.start()))
    slow = int(np.argmin(problem.eigenvalues))
    errors = problem.errors(problem.start())
    assert abs(errors[1 - slow]) < 1e-12 * abs(errors[slow])
    run = study_start(problem, "slow", TOLERANCE, STEPS, np.geomspace(1e-4, 2.0, 31))
    assert run.slow_share == pytest.approx(1.0)
    assert not run.grid_wins and run.explained
    assert abs(run.theory_steps - run.predicted) <= 1
    assert _measured(problem, 0.0197) > run.theory_steps


def test_the_explanation_claims_fail_when_their_numbers_say_otherwise(table_problem):
    grid = np.geomspace(1e-4, 2.0, 31)
    table = study_start(table_problem, "table", TOLERANCE, STEPS, grid)
    slow = study_start(slow_start(table_problem), "slow", TOLERANCE, STEPS, grid)
    assert table.grid_wins and table.slow_share < 0.02
    assert all(claim.holds for claim in ravine._finite_run_claims(table, slow))
    wrong_count = dataclasses.replace(table, grid_counted=table.grid_counted + 50)
    assert not ravine._finite_run_claims(wrong_count, slow)[0].holds
    grid_beats_theory = dataclasses.replace(slow, grid_steps=slow.theory_steps - 10)
    assert not ravine._finite_run_claims(table, grid_beats_theory)[1].holds
    text = ravine.finite_run_paragraph(table, slow, TOLERANCE)
    assert f"{table.grid_steps} steps" in text and f"{slow.theory_steps} steps" in text
    assert f"{table.slow_share:.1%}" in text


def test_the_ravine_names_each_method_once():
    # The race's legend names and the steps-to-tolerance table's come from one place.
    assert (display_name("momentum"), display_name("nesterov")) == ravine.MOMENTUM
    assert display_name("sgd_momentum") == display_name("functional.sgd_momentum")
    assert display_name("nesterov_momentum") == display_name("nesterov")
    table = ravine.steps_to_tolerance_table(
        [demo.DemoRow("sgd_momentum", "best", {"learning_rate": 0.1}, 5, None)], 10, 3, 100.0
    )
    assert table.rows[0][0] == ravine.MOMENTUM[0]
