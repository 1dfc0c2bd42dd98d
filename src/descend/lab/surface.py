"""A 2-D problem's loss over a window: the grid and contour levels behind every contour plot,
in the report's figures and on the playground page alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from descend.lab.problems import Bounds, Problem

#: Contour levels: log-spaced on problems whose loss spans decades, evenly spaced otherwise.
LOG_LEVELS, LINEAR_LEVELS = 25, 30


@dataclass(frozen=True)
class Surface:
    """The loss on a ``resolution x resolution`` grid (``values[i, j]`` at ``(xs[j], ys[i])``).

    ``shown`` is what contours are drawn of: on log-levelled problems the loss shifted to be
    positive (``f - min f`` plus a thousandth of its range), else the loss itself; ``levels``
    are the contour levels of ``shown``; ``log`` says whether they are log-spaced.
    """

    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray
    shown: np.ndarray
    levels: np.ndarray
    log: bool


def surface(
    problem: Problem,
    window: Bounds | None = None,
    resolution: int = 120,
    log: bool | None = None,
) -> Surface:
    """The loss of a 2-D ``problem`` over ``window`` (its plotting bounds by default).

    ``log`` picks log-spaced levels (True) or even ones (False); by default the problem's
    ``log_levels`` decides. Log-spaced levels crowd towards the minimum, so they show the shape
    of a bowl's bottom that even levels leave as one flat patch.
    """
    log = problem.log_levels if log is None else log
    (x0, x1), (y0, y1) = window or problem.bounds
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    quadratic = getattr(problem, "quadratic", None)
    if quadratic is not None:  # the whole grid at once; the problem's loss up to a constant
        X, Y = np.meshgrid(xs, ys)
        offset = problem.loss(quadratic.solution) - quadratic.minimum_value
        values = quadratic.values(np.stack([X, Y], axis=-1)) + offset
    else:
        values = np.array([[problem.loss(np.array([x, y])) for x in xs] for y in ys])
    if log:
        shown = values - values.min() + 1e-3 * (values.max() - values.min()) + 1e-12
        levels = np.geomspace(shown.min(), shown.max(), LOG_LEVELS)
    else:
        shown = values
        levels = np.linspace(values.min(), values.max(), LINEAR_LEVELS + 2)[1:-1]
    return Surface(xs, ys, values, shown, levels, log)
