"""Contour figures: a 2-D problem's level sets with each run's trajectory drawn over them.

Paths are drawn widest first, each a little narrower than the one before, so a later path never
hides an earlier one, and the window grows to show every point a run visited. A run that goes
farther out than the window may grow (it diverged or ran away) is cut where it leaves the
window, marked there (:data:`EXIT_MARKER`), and its legend entry says it :data:`LEFT`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.colors import LogNorm

from descend.lab.palette import MARK_COLORS
from descend.lab.plots.base import (
    AVERAGED,
    DPI,
    MARKERS,
    fitted_window,
    path_width,
    save_figure,
    styles,
)
from descend.lab.problems import Bounds, Problem
from descend.lab.runner import Trace
from descend.lab.surface import surface

#: What the legend adds to a run cut at the window's edge.
LEFT = "left the window"
#: How the exit point of a cut path is marked, and that marker's name for captions.
EXIT_MARKER, EXIT_MARKER_NAME = "X", "cross"


def clip_to_window(points: np.ndarray, window: Bounds) -> tuple[np.ndarray, np.ndarray | None]:
    """The part of a path that is drawn in ``window``, and where it left it.

    The path is kept up to its first point outside the window (or non-finite); the segment
    towards that point is cut on the window's edge, and the cut point is returned as the exit
    (None when the whole path stays inside). A non-finite point exits at the last finite one.
    """
    points = np.asarray(points, dtype=float)
    low = np.array([window[0][0], window[1][0]])
    high = np.array([window[0][1], window[1][1]])
    finite = np.all(np.isfinite(points), axis=1)
    inside = finite & np.all((points >= low) & (points <= high), axis=1)
    outside = np.flatnonzero(~inside)
    if not outside.size:
        return points, None
    first = int(outside[0])
    if first == 0:  # a start outside the window: nothing of the path can be drawn
        return points[:0], None
    before, after = points[first - 1], points[first]
    if not finite[first]:
        exit_point = before
    else:
        step = after - before
        fractions = [1.0]
        for axis in range(2):
            if after[axis] > high[axis]:
                fractions.append((high[axis] - before[axis]) / step[axis])
            elif after[axis] < low[axis]:
                fractions.append((low[axis] - before[axis]) / step[axis])
        exit_point = np.clip(before + min(fractions) * step, low, high)
    return np.vstack([points[:first], exit_point]), exit_point


def drawn_paths(traces: Sequence[Trace], averaged: bool = False) -> list[np.ndarray]:
    """Every path a contour figure of ``traces`` draws: each trajectory, and each averaged
    trajectory when ``averaged``."""
    paths = [trace.trajectory for trace in traces]
    if averaged:
        paths += [t.averaged_trajectory for t in traces if t.averaged_trajectory is not None]
    return paths


def window_of(problem: Problem, traces: Sequence[Trace], averaged: bool = False) -> Bounds:
    """The window a contour figure of ``traces`` on ``problem`` shows."""
    return fitted_window(problem.bounds, drawn_paths(traces, averaged))


def leaving(problem: Problem, traces: Sequence[Trace], averaged: bool = False) -> list[str]:
    """The labels of the runs whose path a contour figure cuts at the window's edge (for a
    caption that says which runs :data:`LEFT`)."""
    window = window_of(problem, traces, averaged)
    return [t.label for t in traces if clip_to_window(t.trajectory, window)[1] is not None]


def draw_contours(
    ax: plt.Axes,
    problem: Problem,
    resolution: int,
    window: Bounds | None = None,
    log_levels: bool | None = None,
) -> None:
    """Shade ``problem``'s level sets over ``window`` (its bounds by default) on ``ax``, with
    a star on each known minimum, drawn above every path and marker so it stays in sight.
    ``log_levels`` overrides the problem's choice of level spacing (see :func:`surface`)."""
    window = window or problem.bounds
    grid = surface(problem, window, resolution, log_levels)
    X, Y = np.meshgrid(grid.xs, grid.ys)
    ax.contourf(
        X,
        Y,
        grid.shown,
        levels=grid.levels,
        norm=LogNorm() if grid.log else None,
        cmap="Greys",
        alpha=0.3,
        extend="both",
    )
    ax.contour(X, Y, grid.shown, levels=grid.levels, colors="0.45", linewidths=0.4)
    for minimum in problem.minima:
        ax.plot(
            minimum[0],
            minimum[1],
            marker="*",
            color=MARK_COLORS["minimum"],
            markersize=16,
            markeredgecolor="black",
            markeredgewidth=1.2,
            zorder=8,
        )
    ax.set_xlim(*window[0])
    ax.set_ylim(*window[1])
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def contour(
    problem: Problem,
    traces: Sequence[Trace],
    path: Path | str,
    title: str = "",
    *,
    averaged: bool = False,
    resolution: int = 120,
    size: tuple[float, float] = (6, 4.6),
    ax: plt.Axes | None = None,
    log_levels: bool | None = None,
) -> Path | None:
    """The problem's contours with each trajectory drawn over them (2-D problems only).

    With ``averaged=True`` the averaged weights' path is drawn too, dashed. The window holds
    every path (:func:`fitted_window`); a path that runs farther is cut at the window's edge
    and marked there (:func:`clip_to_window`). ``log_levels`` overrides the problem's level
    spacing. Writes ``path`` (unless drawing into a given ``ax``) and returns it.
    """
    if problem.dimension != 2 or problem.bounds is None:
        raise ValueError(
            f"contour plots need a 2-D problem with bounds; {problem.describe()} "
            f"has dimension {problem.dimension}"
        )
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=size, dpi=DPI)
    window = window_of(problem, traces, averaged)
    draw_contours(ax, problem, resolution, window, log_levels)
    start = traces[0].trajectory[0] if traces else problem.x0
    ax.plot(start[0], start[1], "o", color=MARK_COLORS["start"], markersize=6, zorder=5)
    count = len(traces)
    for index, (trace, style) in enumerate(
        zip(traces, styles([t.family for t in traces]), strict=True)
    ):
        # Widest first: each later, narrower path leaves the earlier ones showing on both
        # sides where they run together, like the layers of a ribbon.
        width = path_width(index, count)
        points, exit_point = clip_to_window(trace.trajectory, window)
        ax.plot(
            points[:, 0],
            points[:, 1],
            linestyle=style.dash,
            color=style.color,
            linewidth=width,
            label=trace.label if exit_point is None else f"{trace.label} ({LEFT})",
            zorder=3 + index / count,
            solid_capstyle="round",
            solid_joinstyle="round",
        )
        if len(points):
            ax.plot(
                points[-1, 0],
                points[-1, 1],
                MARKERS[index % len(MARKERS)] if exit_point is None else EXIT_MARKER,
                color=style.color,
                markeredgecolor="black",
                markersize=7 if exit_point is None else 10,
                zorder=6,
                clip_on=False,  # an exit mark sits on the edge: draw all of it
            )
        if averaged and trace.averaged_trajectory is not None:
            avg, avg_exit = clip_to_window(trace.averaged_trajectory, window)
            ax.plot(
                avg[:, 0],
                avg[:, 1],
                linestyle=AVERAGED.dash,
                color=style.color,
                linewidth=2.0,
                label=f"{trace.label} (averaged)" + ("" if avg_exit is None else f" ({LEFT})"),
                zorder=4,
                path_effects=[
                    patheffects.Stroke(linewidth=3.6, foreground="white"),
                    patheffects.Normal(),
                ],
            )
            if avg_exit is not None:
                ax.plot(
                    *avg_exit,
                    EXIT_MARKER,
                    color=style.color,
                    markeredgecolor="black",
                    markersize=10,
                    zorder=6,
                    clip_on=False,
                )
    ax.set_title(title or problem.describe(), fontsize=10)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    if own:
        return save_figure(fig, path)
    return None


def panels(
    problems_and_traces: Sequence[tuple[Problem, Sequence[Trace]]],
    path: Path | str,
    titles: Sequence[str] = (),
    resolution: int = 90,
) -> Path:
    """Contour plots side by side, one per problem (the classics)."""
    count = len(problems_and_traces)
    fig, axes = plt.subplots(1, count, figsize=(4.6 * count, 4.2), dpi=DPI, squeeze=False)
    for index, (problem, traces) in enumerate(problems_and_traces):
        title = titles[index] if index < len(titles) else problem.title
        contour(problem, traces, path, title, resolution=resolution, ax=axes[0, index])
    return save_figure(fig, path)
