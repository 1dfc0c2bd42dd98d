"""The runner: recorded quantities against closed forms, front ends against each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from descend.lab.problems import NoisyLeastSquares, Ravine, Saddle, make_problem
from descend.lab.runner import Contender, race, run
from descend.specs import FunctionalOptimizerSpec, parse_method


@given(kappa=st.floats(1.0, 50.0), lr_fraction=st.floats(0.05, 0.95), steps=st.integers(1, 40))
@settings(max_examples=25, deadline=None)
def test_gradient_descent_follows_the_closed_form(kappa, lr_fraction, steps):
    problem = Ravine(kappa=kappa, dim=3, seed=2)
    lr = lr_fraction * 2 / kappa
    trace = run(problem, Contender.parse(f"sgd:lr={lr!r}"), steps)
    A = problem.quadratic.A
    expected = [problem.start()]
    for _ in range(steps):
        expected.append(expected[-1] - lr * A @ expected[-1])
    expected = np.array(expected)
    assert np.allclose(trace.trajectory, expected, rtol=1e-10, atol=1e-13)
    assert np.allclose(trace.losses, [problem.loss(x) for x in expected])
    assert np.allclose(trace.grad_norms, np.linalg.norm(expected @ A, axis=1))
    assert np.allclose(trace.distances, np.linalg.norm(expected, axis=1))
    assert np.allclose(trace.lrs, lr)
    assert trace.steps == steps and trace.diverged_at is None


def test_every_front_end_gives_the_same_heavy_ball_iterates():
    problem = make_problem("rosenbrock")
    specs = [
        "sgd:lr=1e-3,momentum=0.9",
        "torch.optim.SGD:lr=1e-3,momentum=0.9",
        "momentum:lr=1e-3,momentum=0.9",
        "functional.sgd_momentum:learning_rate=1e-3,momentum=0.9",
    ]
    traces = race(problem, specs, 200)
    for trace in traces[1:]:
        assert np.allclose(trace.trajectory, traces[0].trajectory, rtol=1e-10, atol=1e-12)
    assert [t.label for t in traces] == specs


def test_adam_front_ends_agree():
    problem = make_problem("beale")
    traces = race(
        problem,
        [
            "adam:lr=0.01",
            "torch.optim.Adam:lr=0.01",
            "functional.adam:learning_rate=0.01,epsilon=1e-8",
        ],
        150,
    )
    for trace in traces[1:]:
        assert np.allclose(trace.trajectory, traces[0].trajectory, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "method", ["momentum:lr=0.02", "torch.optim.SGD:lr=0.02", "functional.sgd:learning_rate=0.02"]
)
def test_schedules_set_the_learning_rate_of_every_step(method):
    problem = Ravine(kappa=10)
    trace = run(problem, Contender.parse(method, "exponential:k=0.1"), 30)
    assert np.allclose(trace.lrs[1:], 0.02 * np.exp(-0.1 * np.arange(30)))
    step = run(problem, Contender.parse(method, "step:step_size=10,gamma=0.5"), 30)
    assert np.allclose(step.lrs[1:], 0.02 * 0.5 ** (np.arange(30) // 10))


def test_scheduled_gradient_descent_follows_the_closed_form():
    problem = Ravine(kappa=10, dim=2)
    trace = run(problem, Contender.parse("functional.sgd:learning_rate=0.1", "1/t:k=0.5"), 20)
    x = problem.start()
    for t in range(20):
        x = x - 0.1 / (1 + 0.5 * t) * problem.grad(x)
    assert np.allclose(trace.trajectory[-1], x, rtol=1e-12)


def test_weight_averaging_matches_its_formulas():
    problem = NoisyLeastSquares(n=32, dim=2, batch_size=2)
    ema = run(problem, Contender.parse("sgd:lr=0.05", average=0.9), 50)
    polyak = run(problem, Contender.parse("sgd:lr=0.05", average="polyak"), 50)
    assert np.array_equal(ema.trajectory, polyak.trajectory)  # same minibatches
    expected = ema.trajectory[0]
    for k, x in enumerate(ema.trajectory[1:], start=1):
        expected = 0.9 * expected + 0.1 * x
        assert np.allclose(ema.averaged_trajectory[k], expected)
    assert np.allclose(polyak.averaged_trajectory[-1], polyak.trajectory.mean(axis=0))
    assert ema.final_loss == pytest.approx(problem.loss(ema.averaged_trajectory[-1]))
    assert (ema.label, polyak.label) == ("sgd:lr=0.05+average(0.9)", "sgd:lr=0.05+average(polyak)")


def test_noisy_problems_give_every_contender_the_same_minibatches():
    problem = NoisyLeastSquares(n=64, dim=2, batch_size=4)
    a, b = race(problem, ["sgd:lr=0.1", "functional.sgd:learning_rate=0.1"], 40, seed=5)
    assert np.allclose(a.trajectory, b.trajectory)
    other = run(problem, Contender.parse("sgd:lr=0.1"), 40, seed=6)
    assert not np.allclose(other.trajectory, a.trajectory)
    full = run(problem, Contender.parse("sgd:lr=0.1"), 40)
    assert a.losses[-1] != full.losses[-1]


def test_a_diverging_run_stops_and_says_where():
    problem = Ravine(kappa=10)
    trace = run(problem, Contender.parse("sgd:lr=0.3"), 500)  # lr > 2 / L = 0.2
    assert trace.diverged_at is not None and trace.diverged_at < 500
    assert len(trace.losses) == trace.diverged_at + 1
    assert trace.steps_to(1e-6) is None


def test_stop_below_ends_the_run_at_the_tolerance():
    problem = Ravine(kappa=10)
    trace = run(problem, Contender.parse("sgd:lr=0.1"), 1000, stop_below=1e-8)
    assert trace.excess[-1] <= 1e-8 < trace.excess[-2]
    assert trace.steps_to(1e-8) == trace.steps


def test_escape_and_tolerance_queries():
    trace = run(Saddle(), Contender.parse("sgd:lr=0.05"), 200)
    escape = trace.settled_below(-1.0)
    assert escape is not None and trace.losses[escape] <= -1 < trace.losses[escape - 1]
    assert trace.steps_to(1e-3) is None  # no minimum to be near


def test_race_reports_each_trace_as_it_finishes_and_progress_adds_up():
    seen, ticks = [], []
    traces = race(
        Ravine(), ["sgd:lr=0.01", "adam:lr=0.1"], 120, on_trace=seen.append, progress=ticks.append
    )
    assert seen == traces
    assert sum(ticks) == 240


def test_json_export_has_no_nan():
    trace = run(Saddle(), Contender.parse("sgd:lr=0.05"), 5)
    data = trace.to_dict()
    assert data["distance"][0] == pytest.approx(math.hypot(1.0, 1e-3))
    assert data["minimum_value"] is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ("bogus:lr=1", "functional.adam"),
        ("functional.bogus", "valid: functional.sgd"),
        ("functional.sgd:lr=0.1", "unknown config key"),
        ("adam:lr=-1", "invalid spec"),
    ],
)
def test_bad_method_specs_say_what_is_valid(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_method(spec)


def test_functional_specs_parse():
    spec = parse_method("functional.nesterov_momentum:learning_rate=0.01")
    assert isinstance(spec, FunctionalOptimizerSpec)
    assert spec.lr == 0.01 and spec.label == "functional.nesterov_momentum:learning_rate=0.01"


def test_bad_runner_arguments():
    with pytest.raises(ValueError, match="average=2"):
        Contender.parse("sgd", average=2)
    with pytest.raises(ValueError, match="steps=-1"):
        run(Ravine(), Contender.parse("sgd"), -1)
    with pytest.raises(ValueError, match="shape"):
        run(Ravine(), Contender.parse("sgd"), 1, start=np.zeros(3))


def test_a_race_runs_mars_on_the_point_as_the_model_unless_the_spec_says_otherwise():
    """The point is the whole model (MARS's lab_hypers): ``mars`` races as
    ``mars:optimize_1d=True``, and the spec can still ask for the vectors' AdamW fallback."""
    problem = Ravine(kappa=20, dim=2, seed=0)

    def path(spec: str) -> np.ndarray:
        return run(problem, Contender.parse(spec), steps=200).trajectory

    plain = path("mars:lr=0.05")
    np.testing.assert_array_equal(plain, path("mars:lr=0.05,optimize_1d=True"))
    assert not np.array_equal(plain, path("mars:lr=0.05,optimize_1d=False"))
