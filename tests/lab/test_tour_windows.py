"""Contour figures fit their window to every drawn path, and mark a path that runs away."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from descend.lab import plots
from descend.lab.plots import contours
from descend.lab.problems import Saddle
from descend.lab.report import Report
from descend.lab.runner import race
from descend.lab.tour import SECTIONS, TourSettings, saddle
from descend.lab.tour.base import noop, registered


def _check_axes(ax: plt.Axes) -> list[str]:
    """What a contour axes draws outside its limits, or cuts without a mark."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    slack = 1e-9 * max(x1 - x0, y1 - y0)
    problems = []
    exits = [
        tuple(line.get_xydata()[-1])
        for line in ax.lines
        if line.get_marker() == contours.EXIT_MARKER
    ]
    for line in ax.lines:
        points = np.asarray(line.get_xydata(), dtype=float)
        points = points[np.all(np.isfinite(points), axis=1)]
        outside = (
            (points[:, 0] < x0 - slack)
            | (points[:, 0] > x1 + slack)
            | (points[:, 1] < y0 - slack)
            | (points[:, 1] > y1 + slack)
        )
        if outside.any():
            problems.append(f"{line.get_label()}: {int(outside.sum())} points outside")
        if contours.LEFT in str(line.get_label()):
            end = tuple(points[-1])
            if not any(np.allclose(end, mark) for mark in exits):
                problems.append(f"{line.get_label()}: cut with no mark at {end}")
    return problems


def test_a_path_that_leaves_the_window_is_cut_on_its_edge():
    window = ((-1.0, 1.0), (-1.0, 1.0))
    path = np.array([[0.0, 0.0], [0.5, 0.5], [3.0, 0.5], [0.0, 0.0]])
    drawn, exit_point = contours.clip_to_window(path, window)
    np.testing.assert_allclose(exit_point, [1.0, 0.5])
    np.testing.assert_allclose(drawn, [[0, 0], [0.5, 0.5], [1.0, 0.5]])
    drawn, exit_point = contours.clip_to_window(np.array([[0, 0], [0.2, 0.1], [np.nan, 0]]), window)
    np.testing.assert_allclose(exit_point, [0.2, 0.1])
    assert len(drawn) == 3
    inside = np.array([[0.0, 0.0], [0.9, -0.9]])
    drawn, exit_point = contours.clip_to_window(inside, window)
    assert exit_point is None and np.array_equal(drawn, inside)


def test_the_window_holds_every_path_that_stays_within_its_growth():
    bounds = ((-1.0, 1.0), (-1.0, 1.0))
    wandering = np.array([[0.0, 0.0], [2.5, -3.0]])
    (x0, x1), (y0, y1) = plots.fitted_window(bounds, [wandering])
    assert x1 >= 2.5 and y0 <= -3.0 and (x0, y1) == (-1.0, 1.0)
    runaway = np.array([[0.0, 0.0], [0.0, 4.0], [0.0, 1e6], [np.nan, np.nan]])
    (_, _), (_, top) = plots.fitted_window(bounds, [runaway])
    assert 4.0 <= top <= 1.0 + 2 * plots.MAX_GROWTH + 1.0  # runaway points do not stretch it


def test_the_saddle_figure_marks_the_runs_that_fall_off(tmp_path):
    problem = Saddle(y0=1e-3)
    traces = race(problem, registered(saddle.CONTENDERS), saddle.STEPS_2D, seed=0)
    away = contours.leaving(problem, traces)
    assert away, "on x^2 - y^2 some run falls off towards y = infinity"
    fig, ax = plt.subplots()
    plots.contour(problem, traces, tmp_path / "unused.png", ax=ax)
    assert _check_axes(ax) == []
    labels = [str(line.get_label()) for line in ax.lines]
    assert sorted(label for label in labels if contours.LEFT in label) == sorted(
        f"{label} ({contours.LEFT})" for label in away
    )
    plt.close(fig)


@pytest.mark.slow
def test_every_contour_figure_of_the_tour_fits_its_paths(tmp_path, monkeypatch):
    """Every contour figure the tour saves: each drawn point inside its axes, each cut path
    marked at its exit."""
    checked: list[str] = []
    problems: list[str] = []
    save = contours.save_figure

    def checking_save(fig, path):
        for ax in fig.axes:
            checked.append(f"{path.name}: {ax.get_title()}")
            problems.extend(f"{path.name}: {issue}" for issue in _check_axes(ax))
        return save(fig, path)

    monkeypatch.setattr(contours, "save_figure", checking_save)
    report = Report(tmp_path / "report", "windows")
    for entry in SECTIONS:
        entry.build(report, TourSettings(quick=True), noop)
    assert len(checked) >= 8, checked  # ravine, saddle, minima (3), noise, classics (3), ...
    assert problems == []
