"""The newer methods' section: its measurements against theory, and text made from its numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import descend
from descend.lab.problems import NoisyLeastSquares, Ravine
from descend.lab.report import Report
from descend.lab.tour import newer
from descend.lab.tour.base import TourSettings


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    counted = []
    out = tmp_path_factory.mktemp("newer")
    settings = TourSettings(quick=True)
    results = newer.run_newer(out, settings, lambda description, runs: counted.append(runs))
    assert sum(counted) == newer.run_count(settings)
    return results


@pytest.mark.slow
def test_gradient_descent_takes_exactly_the_predicted_steps(results):
    # Theory is exact for GD at 2/(L+mu): in 2-D the distance shrinks by (kappa-1)/(kappa+1)
    # per step, and on the matrix problem each eigendirection by 1 - lr lambda.
    lion_rows, muon_rows = results.lion.rows, results.muon.rows
    assert [r.gd_measured for r in lion_rows][:2] == [r.gd_predicted for r in lion_rows][:2]
    assert [r.gd_measured for r in muon_rows][:2] == [r.gd_predicted for r in muon_rows][:2]
    for rows in (lion_rows, muon_rows):
        predicted = [r.gd_predicted for r in rows]
        assert predicted == sorted(predicted) and predicted[-1] > 50 * predicted[0]
        assert rows[-1].gd_measured is None  # beyond the quick horizon, as predicted


def test_sign_descent_needs_the_same_predicted_steps_at_every_kappa(results):
    rows = results.lion.rows
    assert all(r.sign_measured == r.sign_predicted for r in rows)
    assert len({r.sign_measured for r in rows}) == 1
    # The sign step helps along the axes only: rotated, it does not settle at kappa 1000.
    assert rows[-1].sign_rotated is None and rows[-1].lion_rotated is None
    assert rows[-1].lion_measured is not None


def test_sign_descent_closed_form_matches_lion_with_zero_betas():
    ravine = Ravine(kappa=50.0, dim=2, picture=True)
    start = ravine.quadratic.rotation.T @ ravine.x0
    param = torch.tensor(ravine.x0, requires_grad=True)
    optimizer = descend.Lion([param], lr=0.03, betas=(0.0, 0.0))
    distances = [np.linalg.norm(ravine.x0)]
    for _ in range(400):
        param.grad = torch.from_numpy(ravine.grad(param.detach().numpy()))
        optimizer.step()
        distances.append(np.linalg.norm(param.detach().numpy()))
    np.testing.assert_allclose(distances, newer.sign_descent_distances(start, 0.03, 400), atol=1e-9)


def test_constant_step_floor_matches_a_long_measurement():
    # The stationary excess loss of constant-step SGD, from the covariance recursion, against
    # the mean over many seeds of runs long past their transient.
    problem = NoisyLeastSquares(n=256, dim=2, batch_size=4, seed=0)
    lr, tails = 0.1, []
    for seed in range(24):
        rng = np.random.default_rng(seed)
        x = problem.minima[0].copy()
        losses = []
        for step in range(400):
            x = x - lr * problem.stochastic_grad(x, rng)
            if step >= 100:
                losses.append(problem.loss(x) - problem.minimum_value)
        tails.append(np.mean(losses))
    assert np.mean(tails) == pytest.approx(newer.constant_step_floor(problem, lr), rel=0.2)
    # As the step shrinks the floor tends to lr tr(C) / 4.
    assert newer.constant_step_floor(problem, 1e-4) == pytest.approx(
        1e-4 * problem.gradient_noise(problem.minima[0]) / 4, rel=1e-3
    )


def test_schedule_free_and_step_decay_get_below_the_constant_steps_floor(results):
    study = results.schedule_free
    constant, decayed = study.runs[0], study.runs[1]
    assert decayed.excess[-1] < constant.tail() and study.best.excess[-1] < constant.tail()
    assert study.best.label.startswith("Schedule-Free SGD")
    assert study.limit < study.floor


def test_muon_direction_lies_in_the_quintics_band_whatever_the_gradients_spread(results):
    rows = results.muon.rows
    spreads = [r.gradient_spread for r in rows]
    assert spreads == sorted(spreads) and spreads[-1] > 5 * spreads[0]
    for row in rows:
        low, high = row.predicted_band
        assert row.measured_band[0] == pytest.approx(low, abs=0.03)
        assert row.measured_band[1] == pytest.approx(high, abs=0.03)
        assert low > 0.6 and high < 1.25
    muon = [r.muon_measured for r in rows]
    assert None not in muon and max(muon) < 1.5 * min(muon)
    assert muon[-1] < rows[-1].gd_predicted


def test_quintic_band_of_a_flat_spectrum_is_one_point():
    low, high = newer.quintic_band(np.ones(8))
    assert low == pytest.approx(high)


def test_text_is_made_from_the_numbers_of_the_run(results):
    lion, muon, sf = results.lion.rows, results.muon.rows, results.schedule_free
    text = " ".join(results.paragraphs)
    captions = " ".join(caption for _, caption in results.figures)
    assert (
        f"needs {lion[0].gd_predicted} steps at kappa 10 and {lion[-1].gd_predicted} at kappa 1000"
    ) in text
    assert f"sign descent needs {lion[0].sign_predicted} at every kappa" in text
    assert f"floor at {sf.floor:.2g}" in text and f"{sf.runs[0].tail():.2g}" in captions
    assert (
        f"between {muon[-1].measured_band[0]:.2f} and {muon[-1].measured_band[1]:.2f}" in captions
    )
    # Every number in the prose is in a table cell, a study's value or a setting.
    table_text = " ".join(" ".join(row) for table in results.tables for row in table.cells())
    allowed = set(re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", table_text))
    allowed |= {"10", "100", "1000", "30", "0.15", "0.9", "0.99", "0.001", "2023", "2024"}
    allowed |= {
        f"{sf.best.excess[-1] / sf.limit:.2f}",
        f"{sf.runs[1].excess[-1] / sf.limit:.2f}",
        f"{sf.floor:.2g}",
        f"{sf.limit:.2g}",
        f"{sf.runs[0].tail():.2g}",
        f"{sf.best.excess[-1]:.2g}",
        f"{sf.runs[1].excess[-1]:.2g}",
        str(sf.decay_every),
        str(sf.steps),
        str(sf.seeds),
        str(results.lion.steps),
        str(results.muon.steps),
    }
    allowed |= {f"{r.gradient_spread:.3g}" for r in muon}
    allowed |= {f"{v:.2f}" for r in muon for v in (*r.predicted_band, *r.measured_band)}
    spread = max(r.muon_measured for r in muon) / min(r.muon_measured for r in muon)
    allowed.add(f"{100 * (spread - 1):.0f}")
    for number in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?", text + " " + captions):
        assert number in allowed, number


def test_figures_are_written_and_the_section_fits_the_report(results, tmp_path):
    for path, caption in results.figures:
        assert path.exists() and path.stat().st_size > 5000 and caption
    section = results.section()
    assert len(section.figures) == 4 and len(section.tables) == 3
    assert section.data["muon"][0]["kappa"] == 10.0
    report = Report(tmp_path, "test")
    report.add(section)
    assert "What the newer methods change" in (tmp_path / "index.html").read_text()
