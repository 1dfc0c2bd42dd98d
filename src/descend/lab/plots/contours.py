"""Contour figures: a 2-D problem's level sets with each run's trajectory drawn over them.

Paths are drawn widest first, each a little narrower than the one before, so a later path never
hides an earlier one, and the window grows to show every point a run visited.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.colors import LogNorm

from descend.lab.plots.base import DPI, MARKERS, fitted_window, path_width, save_figure, styles
from descend.lab.problems import Bounds, Problem
from descend.lab.runner import Trace
from descend.lab.surface import surface


def draw_contours(
    ax: plt.Axes, problem: Problem, resolution: int, window: Bounds | None = None
) -> None:
    """Shade ``problem``'s level sets over ``window`` (its bounds by default) on ``ax``, with
    a star on each known minimum."""
    window = window or problem.bounds
    grid = surface(problem, window, resolution)
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
            color="gold",
            markersize=15,
            markeredgecolor="black",
            zorder=5,
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
) -> Path | None:
    """The problem's contours with each trajectory drawn over them (2-D problems only).

    With ``averaged=True`` the averaged weights' path is drawn too, dashed. Writes ``path``
    (unless drawing into a given ``ax``) and returns it.
    """
    if problem.dimension != 2 or problem.bounds is None:
        raise ValueError(
            f"contour plots need a 2-D problem with bounds; {problem.describe()} "
            f"has dimension {problem.dimension}"
        )
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=size, dpi=DPI)
    paths = [trace.trajectory for trace in traces]
    if averaged:
        paths += [t.averaged_trajectory for t in traces if t.averaged_trajectory is not None]
    draw_contours(ax, problem, resolution, fitted_window(problem.bounds, paths))
    start = traces[0].trajectory[0] if traces else problem.x0
    ax.plot(start[0], start[1], "o", color="black", markersize=6, zorder=5)
    count = len(traces)
    for index, (trace, style) in enumerate(
        zip(traces, styles([t.family for t in traces]), strict=True)
    ):
        # Widest first: each later, narrower path leaves the earlier ones showing on both
        # sides where they run together, like the layers of a ribbon.
        width = path_width(index, count)
        points = trace.trajectory
        ax.plot(
            points[:, 0],
            points[:, 1],
            linestyle=style.dash,
            color=style.color,
            linewidth=width,
            label=trace.label,
            zorder=3 + index / count,
            solid_capstyle="round",
            solid_joinstyle="round",
        )
        ax.plot(
            points[-1, 0],
            points[-1, 1],
            MARKERS[index % len(MARKERS)],
            color=style.color,
            markeredgecolor="black",
            markersize=7,
            zorder=6,
        )
        if averaged and trace.averaged_trajectory is not None:
            avg = trace.averaged_trajectory
            ax.plot(
                avg[:, 0],
                avg[:, 1],
                "--",
                color=style.color,
                linewidth=2.0,
                label=f"{trace.label} (averaged)",
                zorder=4,
                path_effects=[
                    patheffects.Stroke(linewidth=3.6, foreground="white"),
                    patheffects.Normal(),
                ],
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
