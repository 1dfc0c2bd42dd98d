"""The lab's one loop: its three front ends step alike, and what it records is what happened."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import descend
from descend import functional, rules, schedules
from descend.lab.loop import (
    FunctionalStepper,
    RuleStepper,
    TorchStepper,
    follow,
    settled_step,
)
from descend.lab.problems import Ravine, make_problem

SPECS = [
    (descend.SGD, {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
    (descend.Momentum, {"lr": 1e-3, "momentum": 0.8}),
    (descend.Nesterov, {"lr": 1e-3}),
    (descend.Adagrad, {"lr": 0.1, "initial_accumulator_value": 0.1}),
    (descend.RMSprop, {"lr": 1e-2, "centered": True, "momentum": 0.5}),
    (descend.Adam, {"lr": 1e-2, "betas": (0.8, 0.99), "amsgrad": True}),
    (descend.AdamW, {"lr": 1e-2}),
]


@pytest.mark.parametrize("cls, arguments", SPECS, ids=lambda v: getattr(v, "__name__", ""))
def test_a_rule_on_numpy_makes_the_torch_class_iterates(cls, arguments):
    problem = make_problem("beale")
    x0 = problem.start()
    schedule = schedules.exponential_decay(arguments["lr"], 0.01)
    torch_path = follow(problem, TorchStepper(lambda p: cls(p, **arguments), x0, schedule), x0, 120)
    optimizer = cls([torch.zeros(2, requires_grad=True)], **arguments)
    rule_path = follow(problem, RuleStepper.from_optimizer(optimizer, x0, schedule), x0, 120)
    np.testing.assert_allclose(rule_path.points, torch_path.points, rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(rule_path.lrs, torch_path.lrs)


@pytest.mark.parametrize(
    "name", [name for name, update in functional.UPDATES.items() if update.rule.stage is None]
)
def test_a_rule_from_a_functional_config_makes_the_functional_iterates(name):
    problem = Ravine(kappa=30, dim=3, seed=1)
    config = {"learning_rate": 0.02}
    x0 = problem.start()
    expected = follow(problem, FunctionalStepper(functional.UPDATES[name], config, x0), x0, 60)
    got = follow(problem, RuleStepper.from_functional(functional.UPDATES[name], config, x0), x0, 60)
    np.testing.assert_allclose(got.points, expected.points, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(
    "name, needs",
    [
        ("muon", "2-D parameters"),
        ("shampoo", "matrix state"),
        ("soap", "matrix state"),
        ("psgd_kron", "matrix state"),
    ],
)
def test_a_rule_whose_stage_needs_matrices_is_refused_on_vectors(name, needs):
    with pytest.raises(ValueError, match=f"rule '{name}' needs {needs}"):
        RuleStepper(rules.RULES[name], {}, np.zeros(3))


@pytest.mark.parametrize(
    "arguments",
    [
        {"lr": 0.05},  # a vector runs AdamW with the 1-D rates, as the class steps a bias
        {"lr": 0.05, "optimize_1d": True},
        {"lr": 0.02, "optimize_1d": True, "gamma": 0.1, "weight_decay": 0.1, "ams_bound": True},
        {"lr": 0.02, "optimize_1d": True, "weight_decouple": False, "weight_decay": 0.01},
    ],
)
def test_mars_on_numpy_makes_the_torch_class_iterates(arguments):
    """MARS's stage (the corrected gradient clipped to norm 1) runs on the whole vector, with
    the rates the class gives a tensor of one dimension; a schedule drives the lr."""
    problem = Ravine(kappa=50, dim=3, seed=2)
    x0 = problem.start()
    schedule = schedules.exponential_decay(arguments["lr"], 0.01)
    torch_path = follow(
        problem, TorchStepper(lambda p: descend.MARS(p, **arguments), x0, schedule), x0, 150
    )
    optimizer = descend.MARS([torch.zeros(3, dtype=torch.float64)], **arguments)
    stepper = RuleStepper.from_optimizer(optimizer, x0, schedule)
    assert not stepper.by_coordinate  # the clip needs the whole vector's norm
    rule_path = follow(problem, stepper, x0, 150)
    np.testing.assert_allclose(rule_path.points, torch_path.points, rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(rule_path.lrs, torch_path.lrs)


def test_the_loop_records_the_loss_and_gradient_of_every_point_and_steps_with_it():
    problem = Ravine(kappa=10)
    x0 = problem.start()
    path = follow(problem, RuleStepper(rules.SGD, {"lr": 0.05}, x0), x0, 25)
    assert path.steps == 25 and path.diverged_at is None and not path.stopped
    for point, loss, norm in zip(path.points, path.losses, path.grad_norms, strict=True):
        assert loss == problem.loss(point)
        assert norm == pytest.approx(np.linalg.norm(problem.grad(point)), rel=1e-14)
    np.testing.assert_allclose(
        path.points[1:],
        path.points[:-1] - 0.05 * np.stack([problem.grad(p) for p in path.points[:-1]]),
        rtol=1e-14,
    )
    assert np.all(np.diff(path.seconds) >= 0)


def test_stop_is_checked_at_every_point_the_start_included():
    problem = Ravine(kappa=10)
    x0 = problem.start()
    at_start = follow(
        problem, RuleStepper(rules.SGD, {"lr": 0.05}, x0), x0, 10, stop=lambda loss, norm: True
    )
    assert at_start.steps == 0 and at_start.stopped
    gtol = follow(
        problem,
        RuleStepper(rules.SGD, {"lr": 0.05}, x0),
        x0,
        1000,
        stop=lambda loss, norm: norm <= 1e-3,
    )
    assert gtol.grad_norms[-1] <= 1e-3 < gtol.grad_norms[-2]


def test_a_diverging_run_ends_with_the_point_that_blew_up():
    problem = Ravine(kappa=10)
    x0 = problem.start()
    path = follow(problem, RuleStepper(rules.SGD, {"lr": 0.3}, x0), x0, 500)  # 2/L = 0.2
    assert path.diverged_at == path.steps < 500
    assert path.losses[-1] > 1e8 * path.losses[0] >= path.losses[-2]


def test_a_bad_hyperparameter_names_the_value_and_the_range():
    with pytest.raises(ValueError, match="beta1=1.5 is out of range"):
        RuleStepper(rules.ADAM, {"beta1": 1.5}, np.zeros(2))


@pytest.mark.parametrize(
    "values, expected",
    [
        ([5, 2, 0.5, 0.1], 2),  # below from index 2 on
        ([5, 0.5, 2, 0.5, 0.1], 3),  # a first crossing at 1 that does not last
        ([0.5, 0.1], 0),
        ([5, 0.5, 2], None),  # ends above
        ([], None),
    ],
)
def test_settled_step_is_where_the_values_stay_below(values, expected):
    assert settled_step(np.array(values, dtype=float), 1.0) == expected


VECTOR_RULES = [name for name, rule in rules.RULES.items() if rule.stage is None]


@pytest.mark.parametrize("name", VECTOR_RULES)
def test_the_steppers_scalars_are_the_rules_own(name):
    """With a schedule for rules without running state; at a constant lr for the others, whose
    state (Schedule-Free's largest lr so far) ``Rule.scalars`` rebuilds from a constant lr."""
    rule = rules.RULES[name]
    scheduled = not rule.state_names()
    stepper = RuleStepper(
        rule,
        {"lr": 0.01},
        np.zeros(2),
        schedules.exponential_decay(0.01, 0.1) if scheduled else None,
    )
    for step in range(1, 4):
        lr = 0.01 * np.exp(-0.1 * (step - 1)) if scheduled else 0.01
        hypers = {**stepper.hypers, "lr": lr}
        assert stepper.scalars() == pytest.approx(rule.scalars(hypers, step))
        stepper.step(np.zeros(2), np.ones(2))


@pytest.mark.parametrize("name", VECTOR_RULES)
def test_stepping_coordinate_by_coordinate_is_the_array_update_exactly(name, monkeypatch):
    rule = rules.RULES[name]
    x0 = np.array([0.7, -1.3])
    hypers = {"lr": 0.05}
    by_coordinate = RuleStepper(rule, hypers, x0)
    monkeypatch.setattr("descend.kernels.numpy.SCALAR_SIZE", 0)
    whole = RuleStepper(rule, hypers, x0)
    assert by_coordinate.by_coordinate and not whole.by_coordinate
    rng = np.random.default_rng(0)
    x = y = x0
    for _ in range(30):
        grad = rng.standard_normal(2)
        x, y = by_coordinate.step(x, grad), whole.step(y, grad)
        np.testing.assert_array_equal(x, y)
