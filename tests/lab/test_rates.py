"""Theory next to measurement: predicted linear rates against the rates the optimizers show."""

from __future__ import annotations

import numpy as np
import pytest

from descend.lab import theory
from descend.lab.rates import compare_rates, predicted_rate, theory_method
from descend.lab.runner import Contender


@pytest.fixture(scope="module")
def rows():
    return compare_rates(kappas=(10, 100, 1000), steps=800)


def test_measured_rates_match_theory_within_two_percent(rows):
    assert len(rows) == 3 * 3 * 2
    for row in rows:
        assert row.relative_error < 0.02, row


def test_optimal_settings_beat_the_given_ones_and_momentum_beats_gradient_descent(rows):
    for kappa in (10, 100, 1000):
        optimal = {
            r.method: r.measured for r in rows if r.kappa == kappa and r.setting == "optimal"
        }
        assert optimal["heavy ball"] < optimal["Nesterov"] < optimal["gradient descent"]
        expected = (np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)
        assert optimal["heavy ball"] == pytest.approx(expected, rel=0.02)


def test_measured_rate_of_a_geometric_sequence_is_its_ratio():
    distances = 3.0 * 0.9 ** np.arange(200)
    assert theory.measured_rate(distances) == pytest.approx(0.9, rel=1e-12)
    oscillating = 0.8 ** np.arange(300) * (1.5 + np.cos(np.arange(300)))
    assert theory.measured_rate(oscillating) == pytest.approx(0.8, rel=0.01)
    with pytest.raises(ValueError, match="at least 4"):
        theory.measured_rate(np.array([1.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("sgd:lr=0.1", ("gradient descent", 0.1, 0.0)),
        ("torch.optim.SGD:lr=0.1,momentum=0.9", ("heavy ball", 0.1, 0.9)),
        ("sgd:lr=0.1,momentum=0.5,nesterov=True", ("Nesterov", 0.1, 0.5)),
        ("momentum:lr=0.01", ("heavy ball", 0.01, 0.9)),
        ("nesterov:lr=0.01,momentum=0.8", ("Nesterov", 0.01, 0.8)),
        ("functional.sgd_momentum:learning_rate=0.02", ("heavy ball", 0.02, 0.9)),
        ("adam:lr=0.1", None),
        ("sgd:lr=0.1,weight_decay=0.1", None),
    ],
)
def test_theory_covers_the_methods_it_can_predict(spec, expected):
    assert theory_method(Contender.parse(spec)) == expected
    if expected is not None:
        assert theory_method(Contender.parse(spec, "exponential:k=0.1")) is None


def test_predicted_rate_rejects_unknown_methods():
    with pytest.raises(ValueError, match="valid: gradient descent"):
        predicted_rate("adam", [1.0, 2.0], 0.1)


def test_each_direction_contracts_by_its_closed_form():
    eigenvalues = np.array([1.0, 4.0, 25.0])
    np.testing.assert_allclose(
        theory.direction_rates("gradient descent", eigenvalues, 0.05),
        np.abs(1 - 0.05 * eigenvalues),
    )
    best = theory.heavy_ball_optimal(1.0, 25.0)
    # At Polyak's setting every direction's roots are complex with modulus sqrt(beta).
    np.testing.assert_allclose(
        theory.direction_rates("heavy ball", eigenvalues, best.lr, best.momentum),
        np.sqrt(best.momentum),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "method, optimal",
    [("heavy ball", theory.heavy_ball_optimal), ("Nesterov", theory.nesterov_optimal)],
)
def test_the_rate_map_is_lowest_at_theorys_optimal_setting(method, optimal):
    eigenvalues = np.array([1.0, 100.0])
    best = optimal(1.0, 100.0)
    lrs = np.linspace(0.2, 1.8, 41) * best.lr
    momenta = np.linspace(0.0, 0.99, 100)
    grid = theory.rate(method, eigenvalues, lrs[None, :], momenta[:, None])
    assert grid.shape == (100, 41)
    assert grid.min() >= best.rate - 1e-6
    assert theory.rate(method, eigenvalues, best.lr, best.momentum) == pytest.approx(best.rate)
    row, column = np.unravel_index(np.argmin(grid), grid.shape)
    assert abs(lrs[column] / best.lr - 1) <= 0.05 and abs(momenta[row] - best.momentum) <= 0.02
