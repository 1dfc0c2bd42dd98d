"""The lab's problems: gradients against autograd, minima, minibatch noise, the torch adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from descend import functional
from descend.lab.problems import (
    PROBLEMS,
    HighDimSaddle,
    Himmelblau,
    NoisyLeastSquares,
    NoisyLogistic,
    Ravine,
    TiltedDoubleWell,
    make_problem,
)

#: Every problem at its defaults plus variants that take other code paths.
VARIANTS = [cls() for cls in PROBLEMS.values()] + [
    Ravine(kappa=1000, dim=7, spread="linear", seed=3),
    Ravine(kappa=50, dim=6, spread="extremes", rotate=False),
    Ravine(kappa=10, angle=30),
    HighDimSaddle(dim=12, negative=3, seed=1),
    NoisyLeastSquares(n=40, dim=5, batch_size=3),
    NoisyLogistic(n=40, dim=4, batch_size=7, l2=0.1),
    make_problem("rastrigin:dim=5,a=3.0"),
]


def autograd(problem, x: np.ndarray) -> np.ndarray:
    point = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    problem.torch_loss(point).backward()
    return point.grad.numpy()


@pytest.mark.parametrize("problem", VARIANTS, ids=lambda p: p.describe())
@given(offset=st.lists(st.floats(-1.5, 1.5), min_size=12, max_size=12))
@settings(max_examples=15, deadline=None)
def test_gradient_matches_autograd(problem, offset):
    x = problem.start() + np.resize(np.array(offset), problem.dimension)
    expected = autograd(problem, x)
    assert np.allclose(problem.grad(x), expected, rtol=1e-9, atol=1e-9 * (1 + abs(expected).max()))
    assert problem.loss(x) == pytest.approx(float(problem.torch_loss(torch.tensor(x))), rel=1e-12)


@pytest.mark.parametrize("problem", VARIANTS, ids=lambda p: p.describe())
def test_minima_are_stationary_with_the_stated_value(problem):
    for minimum in problem.minima:
        assert np.linalg.norm(problem.grad(minimum)) < 1e-5
        assert problem.loss(minimum) == pytest.approx(problem.minimum_value, abs=1e-9)
        assert problem.distance(minimum) == pytest.approx(0.0, abs=1e-12)


def test_minima_are_the_lowest_points_nearby():
    rng = np.random.default_rng(0)
    for problem in VARIANTS:
        for minimum in problem.minima:
            nearby = minimum + 1e-3 * rng.standard_normal((20, problem.dimension))
            assert min(problem.loss(x) for x in nearby) >= problem.minimum_value - 1e-12


def test_double_well_has_a_shallow_and_a_deep_well():
    well = TiltedDoubleWell(tilt=0.5)
    assert well.global_x < well.barrier_x < well.local_x
    assert well.minimum_value < well.local_value
    assert np.linalg.norm(well.grad(np.array([well.local_x, 0.0]))) < 1e-9
    assert well.basin(well.start()) == "local"


def test_himmelblau_minima_are_all_zero():
    problem = Himmelblau()
    assert max(problem.loss(m) for m in problem.minima) < 1e-9


def test_high_dimensional_saddle_starts_with_a_tiny_gradient_and_has_2k_minima():
    problem = HighDimSaddle(dim=20, negative=2, seed=0)
    assert np.linalg.norm(problem.grad(problem.start())) < 0.05
    z = np.zeros(20)
    z[problem.is_negative] = [-1, 1] * np.sqrt(-problem.eigenvalues[problem.is_negative])
    other = problem.rotation @ z  # a mirror-image minimizer
    assert problem.distance(other) == pytest.approx(0.0, abs=1e-12)
    assert problem.loss(other) == pytest.approx(problem.minimum_value)
    assert problem.loss(np.zeros(20)) == 0.0 > problem.escape_loss > problem.minimum_value


@pytest.mark.parametrize("cls", [NoisyLeastSquares, NoisyLogistic])
def test_minibatch_gradients_are_unbiased_and_their_noise_follows_the_batch_size(cls):
    rng = np.random.default_rng(1)
    x = np.array([0.3, -0.7])
    for batch in (1, 8, 32):
        problem = cls(n=64, dim=2, batch_size=batch)
        draws = np.stack([problem.stochastic_grad(x, rng) for _ in range(4000)])
        full = problem.grad(x)
        noise = np.sqrt(problem.gradient_noise(x) / len(draws))
        assert np.all(np.abs(draws.mean(0) - full) < 5 * noise + 1e-12)
        measured = np.mean(np.sum((draws - full) ** 2, axis=1))
        assert measured == pytest.approx(problem.gradient_noise(x), rel=0.1)
    whole = cls(n=64, dim=2, batch_size=64)
    assert np.array_equal(whole.stochastic_grad(x, rng), whole.grad(x))
    assert whole.gradient_noise(x) == 0.0


def test_torch_adapter_runs_torch_optim_on_the_same_numbers_as_the_functional_api():
    problem = make_problem("rosenbrock")
    param = problem.torch_parameter()
    optimizer = torch.optim.SGD([param], lr=1e-3, momentum=0.9)
    x, config = problem.start(), {"learning_rate": 1e-3, "momentum": 0.9}
    for _ in range(50):
        optimizer.zero_grad()
        loss = problem.backward(param)
        assert loss == pytest.approx(problem.loss(param.detach().numpy()))
        optimizer.step()
        x, config = functional.sgd_momentum(x, problem.grad(x), config)
    assert np.allclose(param.detach().numpy(), x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nope", "valid: ravine, saddle"),
        ("ravine:kapa=3", "valid: kappa, dim"),
        ("ravine:kappa=0.5", "kappa=0.5 is out of range: expected 1 <= kappa < inf"),
        ("ravine:spread=wide", "expected one of 'geometric'"),
        ("least_squares:batch_size=0", "batch_size=0 is out of range"),
        ("saddle_nd:dim=4,negative=4", "negative=4 is invalid"),
        ("ravine:kappa", "malformed spec"),
    ],
)
def test_bad_problem_specs_say_what_is_valid(spec, message):
    with pytest.raises(ValueError, match=message):
        make_problem(spec)


def test_problem_specs_build_what_they_name():
    problem = make_problem("ravine:kappa=100,dim=10,spread='linear'")
    assert problem.dimension == 10
    assert problem.eigenvalues.max() / problem.eigenvalues.min() == pytest.approx(100)
    assert np.allclose(np.diff(problem.eigenvalues), 11.0)


def test_least_squares_is_the_shared_quadratic_up_to_a_constant():
    problem = NoisyLeastSquares(n=50, dim=3, batch_size=5, seed=2)
    quadratic = problem.quadratic
    np.testing.assert_allclose(quadratic.solution, problem.minima[0], rtol=1e-10)
    x = problem.start()
    np.testing.assert_allclose(quadratic.grad(x), problem.grad(x), rtol=1e-10)
    assert problem.loss(x) - problem.minimum_value == pytest.approx(
        quadratic.loss(x) - quadratic.minimum_value, rel=1e-10
    )
