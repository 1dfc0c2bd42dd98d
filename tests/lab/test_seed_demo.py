"""The demo's step counts against convergence theory."""

from __future__ import annotations

import pytest

from descend.lab.demo import run_demo, steps_to_tolerance
from descend.lab.theory import gd_optimal
from descend.secondorder.problems import Quadratic


@pytest.mark.slow
def test_gradient_descent_at_its_optimal_step_takes_the_predicted_steps():
    _, rows = run_demo(condition_number=50.0, tolerance=1e-6, max_steps=2000)
    row = next(r for r in rows if r.optimizer == "sgd" and r.predicted is not None)
    # Every eigendirection contracts by exactly (kappa - 1) / (kappa + 1) at lr = 2 / (L + mu).
    assert abs(row.steps - row.predicted) <= 1


@pytest.mark.slow
def test_momentum_beats_plain_gradient_descent_on_a_ravine():
    _, rows = run_demo(condition_number=100.0, tolerance=1e-6, max_steps=3000)
    best = {r.optimizer: r.steps for r in rows if r.setting.startswith("best")}
    assert best["sgd_momentum"] < best["sgd"] and best["nesterov_momentum"] < best["sgd"]


def test_steps_to_tolerance_gives_up_on_divergence():
    problem = Quadratic.ravine(10.0)
    lr = 2.5 * gd_optimal(1.0, 10.0).lr  # past the stability limit 2 / L
    assert steps_to_tolerance(problem, "sgd", {"learning_rate": lr}, 1e-6, 500) is None
