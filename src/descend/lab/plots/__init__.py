"""Figures of a race: contours with trajectories, loss curves on a log scale, an animated GIF.

Everything draws off-screen (matplotlib's Agg backend) into PNG or GIF files, so it runs on
machines without a display. Each optimizer has one colour in every figure (and on the
playground page), chosen by its family (:func:`descend.lab.palette.family_of`); several runs
of one optimizer in one figure differ by lightness, and line style says what kind of line it
is (a run, theory's prediction, a reference run, averaged weights). Paths over contours are
drawn widest first, each with a white edge, so a later path never hides an earlier one, and
the window grows to show every point a run visited.

The figures live in one module per kind, all importable from here:

- :mod:`~descend.lab.plots.base`: styles, window and log-axis fitting, saving;
- :mod:`~descend.lab.plots.contours`: trajectories over a 2-D problem's contours;
- :mod:`~descend.lab.plots.lines`: per-step curves and panels of curves against any x;
- :mod:`~descend.lab.plots.animation`: the race as an animated GIF.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
from descend.lab.plots.animation import race_gif
from descend.lab.plots.base import (
    AVERAGED,
    DASH_NAMES,
    DASHES,
    DECADES,
    DPI,
    MARKERS,
    MAX_GROWTH,
    REFERENCE,
    THEORY,
    THRESHOLD,
    Style,
    fit_log_axis,
    fitted_window,
    lightness_steps,
    path_width,
    reference_style,
    save_figure,
    styles,
    sweep_styles,
    theory_style,
)
from descend.lab.plots.contours import contour, draw_contours, panels
from descend.lab.plots.lines import Line, Panel, curves, grid_of_curves, line_panels

__all__ = [
    "AVERAGED",
    "DASHES",
    "DASH_NAMES",
    "DECADES",
    "DPI",
    "MARKERS",
    "MAX_GROWTH",
    "REFERENCE",
    "THEORY",
    "THRESHOLD",
    "Line",
    "Panel",
    "Style",
    "contour",
    "curves",
    "draw_contours",
    "fit_log_axis",
    "fitted_window",
    "grid_of_curves",
    "lightness_steps",
    "line_panels",
    "panels",
    "path_width",
    "race_gif",
    "reference_style",
    "save_figure",
    "styles",
    "sweep_styles",
    "theory_style",
]
