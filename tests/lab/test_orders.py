"""First-order against second-order: the section's data on reduced problems, checked for the
properties the report states."""

from __future__ import annotations

import numpy as np
import pytest

from descend import functional
from descend.lab.tour.second_order import studies as orders
from descend.secondorder import LogisticRegression, Quadratic


@pytest.fixture(scope="module")
def ravine() -> orders.FullBatchStudy:
    return orders.full_batch_study(
        Quadratic.ill_conditioned(20, 100.0, seed=3), "ravine", "ravine", adam_lr=0.03, cap=3000
    )


def _blobs(samples: int, features: int, classes: int, seed: int = 0) -> LogisticRegression:
    """Overlapping Gaussian classes: a small, strongly convex finite sum."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, samples)
    centres = rng.standard_normal((classes, features))
    return LogisticRegression.from_data(
        centres[labels] + rng.standard_normal((samples, features)), labels, l2=1e-2, classes=classes
    )


def test_newton_needs_one_step_on_the_ravine_and_every_method_gets_there(ravine):
    iterations = {run.label: ravine.iterations_to_tolerance(run) for run in ravine.runs}
    assert None not in iterations.values()
    assert iterations["Newton"] == 1
    # Curvature pays on an ill-conditioned quadratic: every second-order method beats GD,
    # and momentum beats plain GD as theory says.
    for label in ("Newton", "BFGS", "L-BFGS", "Nesterov"):
        assert iterations[label] < iterations["GD"]
    for run in ravine.runs:
        index = ravine.iterations_to_tolerance(run)
        norms = run.result.history.grad_norm
        assert norms[index] <= ravine.tolerance * ravine.grad_norm0 < min(norms[:index])
        assert np.all(np.diff(run.result.history.time) >= 0)
        assert ravine.seconds_to_tolerance(run) == run.result.history.time[index]
    assert ravine.kappa == pytest.approx(100.0)


def test_first_order_runs_the_functional_update_and_records_every_iterate():
    problem = Quadratic.ill_conditioned(5, 10.0, seed=1)
    lr = 0.05
    result = orders.first_order(
        problem, np.zeros(5), "sgd", {"learning_rate": lr}, gtol=0.0, max_iter=7
    )
    x = np.zeros(5)
    norms = [np.linalg.norm(problem.A @ x - problem.b)]
    for _ in range(7):
        x, _ = functional.sgd(x, problem.A @ x - problem.b, {"learning_rate": lr})
        norms.append(np.linalg.norm(problem.A @ x - problem.b))
    np.testing.assert_allclose(result.x, x)
    np.testing.assert_allclose(result.history.grad_norm, norms)
    assert result.nit == 7 and result.status == "max_iter"
    assert result.history.nfev == list(range(1, 9))


def test_newton_converges_quadratically_near_the_minimum():
    problem = _blobs(300, 6, 4)
    study = orders.full_batch_study(problem, "blobs", "blobs", adam_lr=0.1, cap=50)
    history = study.run("newton").result.history
    norms = np.asarray(history.grad_norm)
    assert norms[-1] <= 1e-10 * norms[0] and len(norms) <= 12
    # The last steps are full Newton steps, and ||g_k|| / ||g_(k-1)||^2 stays bounded while
    # ||g|| itself falls by orders of magnitude: the error squares.
    tail = norms[-3:]
    assert history.step[-3:] == [1.0, 1.0, 1.0]
    assert tail[2] < 1e-3 * tail[1] and tail[1] < 1e-2 * tail[0]
    assert tail[2] / tail[1] ** 2 < 100 * max(tail[1] / tail[0] ** 2, 1.0)


def test_full_batch_lbfgs_beats_minibatch_lbfgs_at_equal_passes():
    problem = _blobs(640, 10, 4, seed=2)
    full = orders.full_batch_study(problem, "blobs", "blobs", adam_lr=0.1, cap=100)
    study = orders.minibatch_study(
        problem, full.f_star, batch_size=32, epochs=12, newton_epochs=1, seed=0
    )
    labels = [run.label for run in study.runs]
    assert labels[:3] == ["SGD", "Nesterov", "Adam"] and "L-BFGS, fixed step" in labels
    for run in study.runs:
        assert np.all(np.diff(run.passes) > 0) and run.result.status == "completed"
        epochs = study.newton_epochs if run.method == "newton" else study.epochs
        assert run.result.extras["epochs"][-1] == pytest.approx(epochs, abs=0.1)
        if run.method in ("sgd", "nesterov_momentum", "adam"):
            assert run.passes[-1] == pytest.approx(epochs, abs=0.1)  # one gradient per batch
    for run in study.runs:
        if run.label in ("L-BFGS + line search", "L-BFGS, same-batch pairs"):
            passes = float(run.passes[-1])
            # The minibatch run stalls at its noise floor; full batch keeps converging.
            assert study.reference_gap_at(passes) < 0.1 * study.gap(run)[-1]
            assert study.tail_gap(run) > 10 * study.reference_gap_at(passes)
    assert np.all(study.gap(study.reference) >= -1e-12)


def test_reference_gap_reads_the_last_point_within_the_budget():
    problem = _blobs(200, 4, 3)
    full = orders.full_batch_study(problem, "blobs", "blobs", adam_lr=0.1, cap=20)
    study = orders.minibatch_study(problem, full.f_star, batch_size=50, epochs=3, newton_epochs=1)
    passes = study.reference.passes
    gaps = study.gap(study.reference)
    assert study.reference_gap_at(passes[2]) == gaps[2]
    assert study.reference_gap_at(passes[2] + 0.5 * (passes[3] - passes[2])) == gaps[2]


def test_hessian_costs_grow_as_n_squared_and_n_cubed():
    rows = orders.hessian_cost_rows(100, 1e-3, sizes=(1e4, 1e5))
    assert [row[0] for row in rows] == ["100 (this problem)", "1e+04", "1e+05"]
    assert [row[3] for row in rows] == ["80 kB", "800 MB", "80 GB"]  # 8 N^2 bytes
    assert [row[4] for row in rows] == [True, True, False]  # against 16 GB
    assert rows[1][2] == "1.6 MB"  # 2 m N numbers for m = 10
    assert rows[1][5] == "16.7 min"  # 1 ms * 100^3


@pytest.mark.parametrize("count, text", [(5.2e3, "5.2 kB"), (999, "999 B"), (8e16, "80 PB")])
def test_bytes_read_in_decimal_units(count, text):
    assert orders.format_bytes(count) == text


@pytest.mark.parametrize(
    "seconds, text",
    [(0.0144, "14.4 ms"), (52.4, "52.4 s"), (52560, "14.6 h"), (5.2e7, "1.65 years")],
)
def test_durations_read_in_the_largest_fitting_unit(seconds, text):
    assert orders.format_seconds(seconds) == text


def test_without_scikit_learn_a_stand_in_of_the_digits_shape_is_used(monkeypatch):
    def missing(cls, l2=1e-3):
        raise ImportError("no scikit-learn")

    monkeypatch.setattr(LogisticRegression, "digits", classmethod(missing))
    problem, description = orders.digits_problem(seed=0)
    assert problem.X.shape == (1797, 65) and problem.classes == 10
    assert "scikit-learn is not installed" in description
