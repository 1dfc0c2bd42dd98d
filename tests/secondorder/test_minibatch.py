"""The minibatch runner: full batches reproduce the full-batch methods, histories are complete,
bad input is refused, divergence is reported."""

from __future__ import annotations

import numpy as np
import pytest

from descend import functional, secondorder


@pytest.fixture(scope="module")
def problem():
    return secondorder.LeastSquares.random(
        samples=200, features=8, condition_number=100.0, l2=1e-3, seed=1
    )


@pytest.mark.parametrize("pairs", ["mixed", "same-batch"])
@pytest.mark.parametrize("method", ["bfgs", "lbfgs"])
def test_full_batches_reproduce_the_full_batch_method(problem, method, pairs):
    # With batch_size = n every batch is the whole data (in a shuffled order), so both ways of
    # pairing gradients give the exact pairs of the full-batch method.
    x0 = np.zeros(problem.dimension)
    full = secondorder.minimize(problem, x0, method, gtol=0.0, ftol=0.0, max_iter=6)
    batched = secondorder.minibatch(
        problem, x0, method, iterations=6, batch_size=problem.n_samples, pairs=pairs, keep_x=True
    )
    assert batched.status == "completed" and batched.success
    for ours, theirs in zip(batched.history.x, full.history.x, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)


def test_first_order_methods_run_the_functional_updates(problem):
    x0 = np.zeros(problem.dimension)
    config = {"learning_rate": 0.01}
    result = secondorder.minibatch(
        problem, x0, "adam", iterations=5, batch_size=problem.n_samples, config=config, keep_x=True
    )
    x, state = x0.copy(), dict(config)
    for _ in range(5):
        x, state = functional.adam(x, problem.value_and_grad(x)[1], state)
    np.testing.assert_allclose(result.x, x, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["newton", "bfgs", "lbfgs", "sgd_momentum"])
def test_history_is_recorded_on_schedule(problem, method):
    result = secondorder.minibatch(
        problem,
        np.zeros(problem.dimension),
        method,
        iterations=20,
        batch_size=16,
        record_every=5,
        seed=3,
        config={"learning_rate": 0.01} if method == "sgd_momentum" else None,
    )
    assert result.status == "completed"
    assert len(result.history) == 5  # iterations 0, 5, 10, 15, 20
    np.testing.assert_allclose(result.extras["epochs"], [0, 0.4, 0.8, 1.2, 1.6])
    assert len(result.extras["batch_loss"]) == 20
    assert result.history.loss[-1] == pytest.approx(problem.value_and_grad(result.x)[0])
    assert result.history.loss[-1] < result.history.loss[0]
    again = secondorder.minibatch(
        problem,
        np.zeros(problem.dimension),
        method,
        iterations=20,
        batch_size=16,
        record_every=5,
        seed=3,
        config={"learning_rate": 0.01} if method == "sgd_momentum" else None,
    )
    np.testing.assert_array_equal(again.x, result.x)  # the seed fixes the batches


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_divergence_stops_at_the_last_finite_iterate(problem):
    result = secondorder.minibatch(
        problem,
        np.zeros(problem.dimension),
        "sgd",
        iterations=2000,
        batch_size=8,
        config={"learning_rate": 10.0},
    )
    assert result.status == "diverged" and not result.success
    assert np.isfinite(result.x).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "cg"}, "method='cg' is invalid"),
        ({"pairs": "fresh"}, "pairs='fresh' is invalid"),
        ({"batch_size": 0}, "batch_size=0 is invalid"),
        ({"batch_size": 201}, "batch_size=201 is invalid"),
        ({"iterations": -1}, "iterations=-1 is invalid"),
        ({"lr": 0.0}, "lr=0.0 is invalid"),
    ],
)
def test_invalid_arguments_raise_value_error(problem, options, message):
    arguments = {"method": "lbfgs", "iterations": 3, "batch_size": 10, **options}
    with pytest.raises(ValueError, match=message):
        secondorder.minibatch(problem, np.zeros(problem.dimension), **arguments)
