"""The pass/fail suite: every problem is solvable (a named optimizer passes it) and its stated
reason is real (an optimizer the reason names fails it, where theory or the mechanism says
it must); the quadratics' theory lines agree with :mod:`descend.lab.theory`."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from descend.bench.suite import SUITE, SuiteProblem, SuiteResult
from descend.bench.suite.smooth import (
    RIPPLE_CURVATURE,
    SADDLE_CURVATURE,
    gd_steps_needed,
    heavy_ball_steps,
)
from descend.lab import theory
from descend.optim import LBFGS
from descend.specs import OptimizerSpec, parse_optimizer

#: An optimizer that passes each problem with its default budget (checked on two seeds).
PASSES = {
    "ill-conditioned-quadratic": "adam:lr=0.1",
    "rotated-quadratic": "adam:lr=0.1",
    "badly-scaled-coordinates": "adam:lr=0.1",
    "rosenbrock-2d": "adam:lr=0.2",
    "rosenbrock-16d": "adam:lr=0.2",
    "saddle-escape": "adam:lr=0.1",
    "gaussian-plateau": "adam:lr=0.1",
    "ripples": "adam:lr=1",
    "deep-linear-vanishing": "adam:lr=0.03",
    "deep-linear-exploding": "adam:lr=0.1",
    "scale-invariant": "adam:lr=0.1",
    "saturated-unit": "adam:lr=0.1",
    "sparse-rare-features": "adam:lr=0.03",
    "separable-logistic": "adam:lr=1",
    "xor-parity": "adam:lr=0.1",
    "delayed-signal-rnn": "adam:lr=0.01",
    "heavy-tail-noise": "rmsprop:lr=0.01",
    "noisy-quadratic": "sf_sgd:lr=0.5",
    "drifting-gradient-scale": "adam:lr=0.01,betas=(0.9,0.9)",
    "jumping-target": "sgd:lr=0.3",
}

#: Optimizers each problem's reason says must fail it: plain SGD at its best stable steps on
#: the conditioning, plateau and vanishing-gradient problems; the noise problems at small and
#: large steps; Adam's long second-moment memory on the drifting scale.
FAILS = {
    "ill-conditioned-quadratic": ["sgd:lr=0.5", "sgd:lr=1.9"],
    "rotated-quadratic": ["sgd:lr=0.5", "sgd:lr=1.9"],
    "badly-scaled-coordinates": ["sgd:lr=1e-6"],
    "saddle-escape": ["sgd:lr=1.9", "sgd_momentum:lr=0.1,momentum=0.9"],
    "gaussian-plateau": ["sgd:lr=1.9", "sgd_momentum:lr=0.1,momentum=0.9"],
    "ripples": ["sgd:lr=0.04", "sgd:lr=0.01"],
    "deep-linear-vanishing": ["sgd:lr=1"],
    "deep-linear-exploding": ["sgd:lr=0.01"],
    "saturated-unit": ["sgd:lr=0.1"],
    "sparse-rare-features": ["sgd:lr=1"],
    "separable-logistic": ["sgd:lr=1", "sgd_momentum:lr=0.05,momentum=0.9"],
    "delayed-signal-rnn": ["sgd:lr=1"],
    "heavy-tail-noise": ["sgd:lr=0.003", "sgd:lr=0.1"],
    "noisy-quadratic": ["sgd:lr=0.1", "adam:lr=0.1"],
    "drifting-gradient-scale": ["sgd:lr=0.02", "adam:lr=0.01"],
}


def test_the_suite_has_twenty_named_problems_in_a_fixed_order():
    assert len(SUITE) >= 20
    assert list(SUITE) == [problem.name for problem in SUITE.values()]
    assert set(PASSES) == set(SUITE), "every problem needs an optimizer shown to pass it"
    for problem in SUITE.values():
        assert isinstance(problem, SuiteProblem)
        assert problem.reason and "\n" not in problem.reason
        assert problem.criterion and "\n" not in problem.criterion
        assert problem.steps >= 1


@pytest.mark.parametrize("steps", [0, -5, 2.5, True])
def test_a_bad_budget_is_refused_before_running(steps):
    with pytest.raises(ValueError, match="steps="):
        SUITE["ill-conditioned-quadratic"].run(parse_optimizer("adam"), 0, steps)


def test_a_run_reports_its_result_and_leaves_the_thread_count_alone():
    threads = torch.get_num_threads()
    result = SUITE["ill-conditioned-quadratic"].run(parse_optimizer("adam:lr=0.1"), seed=0)
    assert torch.get_num_threads() == threads
    assert isinstance(result, SuiteResult)
    assert result.problem == "ill-conditioned-quadratic"
    assert result.passed and not result.diverged
    assert result.value <= SUITE["ill-conditioned-quadratic"].threshold
    assert 1 <= result.steps_to_pass < SUITE["ill-conditioned-quadratic"].steps
    assert result.seconds > 0


def test_a_diverging_run_is_flagged_and_fails():
    result = SUITE["badly-scaled-coordinates"].run(parse_optimizer("sgd:lr=0.1"), seed=0)
    assert result.diverged and not result.passed and result.value == math.inf
    assert result.steps_to_pass is None


def test_a_smaller_budget_is_honoured():
    problem = SUITE["gaussian-plateau"]
    assert not problem.run(parse_optimizer("adam:lr=0.1"), seed=0, steps=10).passed


def test_the_same_seed_gives_the_same_run_and_noise_is_the_same_for_every_optimizer():
    problem = SUITE["heavy-tail-noise"]
    spec = parse_optimizer("rmsprop:lr=0.01")
    first, again = (problem.run(spec, seed=3, steps=60) for _ in range(2))
    assert (first.value, first.passed) == (again.value, again.passed)
    instances = [problem.build(torch.Generator().manual_seed(3), 50) for _ in range(2)]
    losses = [float(instance.loss(7).detach()) for instance in instances]
    assert losses[0] == losses[1]


def test_the_quadratics_theory_agrees_with_the_lab():
    for name, mu in (("ill-conditioned-quadratic", 1e-4), ("rotated-quadratic", 1e-3)):
        problem = SUITE[name]
        eigenvalues = torch.logspace(math.log10(mu), 0, 20, dtype=torch.float64).numpy()
        offsets = 1 + torch.arange(20, dtype=torch.float64).numpy() / 40
        start = float((eigenvalues * offsets**2).sum() / 2)
        needed = gd_steps_needed(mu, 1.0, mu / 2, problem.threshold * start)
        assert f"at least {needed} steps" in problem.theory
        # The lab's rate at the largest stable step bounds the slowest direction.
        slowest = theory.direction_rates("gradient descent", eigenvalues, 2.0)[0]
        assert slowest == pytest.approx(1 - 2 * mu)
        left = (mu / 2) * slowest ** (2 * problem.steps)
        assert left > problem.threshold * start, "gradient descent cannot pass in budget"
        assert needed > problem.steps
        optimal = theory.heavy_ball_optimal(mu, 1.0)
        steps = heavy_ball_steps(mu, 1.0, problem.threshold)
        assert steps == math.ceil(math.log(problem.threshold) / (2 * math.log(optimal.rate)))
        assert f"about {steps}" in problem.theory
    assert str(math.ceil(math.log(1e6) / math.log(1 + 2 * SADDLE_CURVATURE))) in (
        SUITE["saddle-escape"].theory
    )
    assert f"{2 / RIPPLE_CURVATURE:.3f}" in SUITE["ripples"].theory


@pytest.mark.slow
def test_heavy_ball_at_the_theory_setting_passes_the_rotated_quadratic_near_its_rate():
    problem = SUITE["rotated-quadratic"]
    optimal = theory.heavy_ball_optimal(1e-3, 1.0)
    spec = parse_optimizer(f"sgd_momentum:lr={optimal.lr},momentum={optimal.momentum}")
    result = problem.run(spec, seed=0)
    predicted = heavy_ball_steps(1e-3, 1.0, problem.threshold)
    assert result.passed
    # The asymptotic rate predicts the steps to within the transient of the start.
    assert 0.5 * predicted <= result.steps_to_pass <= 2 * predicted


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PASSES))
def test_each_problem_is_passed_by_its_named_optimizer(name):
    problem = SUITE[name]
    for seed in (0, 1):
        result = problem.run(parse_optimizer(PASSES[name]), seed=seed)
        assert result.passed, f"{PASSES[name]} fails {name} (seed {seed}): {result}"
        assert not result.diverged


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, spec", [(name, spec) for name, specs in FAILS.items() for spec in specs]
)
def test_the_reason_is_real_the_named_optimizer_fails(name, spec):
    result = SUITE[name].run(parse_optimizer(spec), seed=0)
    assert not result.passed, f"{spec} passes {name}, against its reason: {result}"


@pytest.mark.slow
def test_adagrad_follows_one_jump_but_not_eight():
    problem = SUITE["jumping-target"]
    spec = parse_optimizer("adagrad:lr=0.3")
    for seed in (1, 2):
        one_phase = problem.run(spec, seed=seed, steps=75)
        eight = problem.run(spec, seed=seed)
        assert one_phase.passed and not eight.passed
        assert eight.value > 40 * max(one_phase.value, problem.threshold)


@pytest.mark.slow
def test_stochastic_problems_are_judged_where_they_end():
    # A problem judged at the end runs its whole budget even when it passes early.
    problem = dataclasses.replace(SUITE["jumping-target"])
    result = problem.run(parse_optimizer("sgd:lr=1"), seed=0)
    assert problem.judge_at_end and result.passed and result.steps_to_pass == problem.steps


def test_a_torch_optim_class_runs_as_its_descend_counterpart():
    problem = SUITE["ill-conditioned-quadratic"]
    ours = problem.run(parse_optimizer("adam:lr=0.1"), seed=0)
    theirs = problem.run(parse_optimizer("torch.optim.Adam:lr=0.1"), seed=0)
    assert ours.passed and theirs.passed
    assert ours.steps_to_pass == theirs.steps_to_pass
    assert ours.value == pytest.approx(theirs.value, rel=1e-6)


def test_an_optimizer_that_needs_a_closure_runs_each_step_through_it():
    # L-BFGS re-evaluates the loss inside step(); a budget counts its step() calls.
    spec = OptimizerSpec("lbfgs", "lbfgs", LBFGS, {"line_search_fn": "strong_wolfe"})
    result = SUITE["rosenbrock-2d"].run(spec, seed=0, steps=50)
    assert result.passed and result.steps_to_pass <= 50
