"""Figures of a race: contours with trajectories, loss curves on a log scale, an animated GIF.

Everything draws off-screen (matplotlib's Agg backend) into PNG or GIF files, so it runs on
machines without a display. Each optimizer has one colour in every figure (and on the
playground page), chosen by its family (:func:`descend.lab.runner.family_of`); several runs of
one optimizer in one figure differ by line style. Paths over contours are drawn widest first,
each with a white edge, so a later path never hides an earlier one, and the window grows to
show every point a run visited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.colors import LogNorm

from descend.lab.palette import FAMILY_COLORS, OTHER_COLORS
from descend.lab.problems import Bounds, Problem
from descend.lab.runner import Trace
from descend.lab.surface import surface

#: Line styles that tell apart several runs of one optimizer in one figure.
DASHES = ("-", "--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)), (0, (1, 3)))
#: End-of-path markers, by draw order.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
#: A log axis shows at most this many decades below its largest value.
DECADES = 12
#: A path may push the plotting window out by at most this many window widths on each side.
MAX_GROWTH = 1.0
DPI = 100


@dataclass(frozen=True)
class Style:
    """How one run is drawn: its family's colour and a dash pattern."""

    color: str
    dash: str | tuple


#: How a reference run (full-batch L-BFGS beside minibatch runs) is drawn.
REFERENCE = Style("black", (0, (9, 3)))


def styles(families: Sequence[str | None]) -> list[Style]:
    """A style per run: the family's colour; the second, third ... run of one family (or of
    unknown ones) in the same figure get the next dash pattern."""
    seen: dict[str | None, int] = {}
    out = []
    unknown = 0
    for family in families:
        if family in FAMILY_COLORS:
            color = FAMILY_COLORS[family]
        else:
            color = OTHER_COLORS[unknown % len(OTHER_COLORS)]
            unknown += 1
        count = seen.get(family, 0)
        seen[family] = count + 1
        out.append(Style(color, DASHES[count % len(DASHES)] if family in FAMILY_COLORS else "-"))
    return out


def sweep_styles(family: str | None, count: int) -> list[Style]:
    """Solid lines in ``count`` shades of a family's colour, from the colour itself to a light
    tint of it (for runs of one optimizer along one setting: batch sizes, say)."""
    base = np.array(matplotlib.colors.to_rgb(FAMILY_COLORS.get(family, "black")))
    tints = np.linspace(0.0, 0.7, count) if count > 1 else [0.0]
    return [Style(matplotlib.colors.to_hex(base + t * (1 - base)), "-") for t in tints]


def path_width(index: int, count: int) -> float:
    """Line width of the ``index``-th of ``count`` paths drawn over one contour plot: 1.4 for
    the last, 1.25 more for each one drawn before it."""
    return 1.4 + 1.25 * (count - 1 - index)


def fitted_window(bounds: Bounds, paths: Sequence[np.ndarray]) -> Bounds:
    """The plotting window grown to hold every finite point of ``paths`` (by at most
    :data:`MAX_GROWTH` widths a side), with a small margin when it grew."""
    window = []
    for axis, (low, high) in enumerate(bounds):
        span = high - low
        values = np.concatenate(
            [np.asarray(p)[:, axis] for p in paths if len(p)] or [np.array([low, high])]
        )
        values = values[np.isfinite(values)]
        values = np.clip(values, low - MAX_GROWTH * span, high + MAX_GROWTH * span)
        new_low, new_high = min(low, float(values.min())), max(high, float(values.max()))
        margin = 0.04 * (new_high - new_low) if (new_low, new_high) != (low, high) else 0.0
        window.append(
            (
                new_low - (margin if new_low < low else 0.0),
                new_high + (margin if new_high > high else 0.0),
            )
        )
    return window[0], window[1]


def fit_log_axis(ax: plt.Axes, arrays: Sequence[np.ndarray], decades: float = DECADES) -> None:
    """Limit a log y axis to the data: from its largest positive value down to its smallest,
    but no more than ``decades`` decades."""
    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays] or [[]])
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return
    top, bottom = float(values.max()), float(values.min())
    bottom = max(bottom, top * 10.0**-decades)
    ax.set_ylim(bottom / 2, top * 2)


def _draw_contours(
    ax: plt.Axes, problem: Problem, resolution: int, window: Bounds | None = None
) -> None:
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
    _draw_contours(ax, problem, resolution, fitted_window(problem.bounds, paths))
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
        return _save(fig, path)
    return None


def curves(
    traces: Sequence[Trace],
    path: Path | str,
    title: str = "",
    *,
    metric: str = "excess",
    log: bool = True,
    ylabel: str | None = None,
    averaged: bool = False,
    hline: float | None = None,
    sweep: bool = False,
    decades: float = DECADES,
    size: tuple[float, float] = (6, 4),
) -> Path:
    """Per-step curves of every trace: ``metric`` is ``"excess"`` (loss - f*), ``"loss"``,

    ``"distance"`` (to the nearest minimum), ``"norm"`` (distance from the origin, where the
    saddle problems have their saddle point), ``"grad_norm"`` or ``"lr"``; ``log`` puts the y
    axis on a log scale.
    ``averaged=True`` plots the averaged weights' excess loss, dashed, too; ``hline`` marks a
    threshold (escape loss, tolerance). ``sweep=True`` draws runs of one optimizer that differ
    in one setting in shades of its colour, darkest first; a log axis spans at most
    ``decades`` decades.
    """
    getters = {
        "excess": lambda t: t.excess,
        "loss": lambda t: t.losses,
        "distance": lambda t: t.distances,
        "grad_norm": lambda t: t.grad_norms,
        "lr": lambda t: t.lrs,
        "norm": lambda t: np.linalg.norm(t.trajectory, axis=1),
    }
    if metric not in getters:
        raise ValueError(f"metric={metric!r} is invalid: expected one of {', '.join(getters)}")
    fig, ax = plt.subplots(figsize=size, dpi=DPI)
    drawn = []
    looks = (
        sweep_styles(traces[0].family, len(traces))
        if sweep and traces
        else styles([t.family for t in traces])
    )
    for trace, style in zip(traces, looks, strict=True):
        values = np.asarray(getters[metric](trace), dtype=float)
        if log:
            values = np.where(values > 0, values, np.nan)
        ax.plot(
            np.arange(len(values)),
            values,
            linestyle=style.dash,
            color=style.color,
            linewidth=1.4,
            label=trace.label,
        )
        drawn.append(values)
        if averaged and trace.averaged_losses is not None:
            avg = trace.averaged_losses - (trace.minimum_value or 0.0)
            avg = np.where(avg > 0, avg, np.nan) if log else avg
            ax.plot(
                np.arange(len(avg)),
                avg,
                "--",
                color=style.color,
                linewidth=2.0,
                label=f"{trace.label} (averaged)",
            )
            drawn.append(avg)
    if hline is not None:
        ax.axhline(hline, color="black", linestyle=":", linewidth=1)
    if log:
        ax.set_yscale("log")
        fit_log_axis(ax, drawn, decades)
    ax.set_xlabel("step")
    ax.set_ylabel(
        ylabel
        or {
            "excess": "loss - f*",
            "loss": "loss",
            "distance": "distance",
            "grad_norm": "gradient norm",
            "lr": "learning rate",
            "norm": "distance from the origin",
        }[metric]
    )
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    return _save(fig, path)


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
    return _save(fig, path)


def grid_of_curves(
    groups: Sequence[tuple[str, Sequence[Trace]]],
    path: Path | str,
    *,
    metric: str = "excess",
    with_lr: bool = True,
) -> Path:
    """One column per group (an optimizer): its curves on a log scale, with the learning rate

    of each schedule underneath when ``with_lr``.
    """
    rows = 2 if with_lr else 1
    fig, axes = plt.subplots(
        rows,
        len(groups),
        figsize=(5.2 * len(groups), 3.3 * rows),
        dpi=DPI,
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": [2, 1] if with_lr else [1]},
    )
    for column, (title, traces) in enumerate(groups):
        ax = axes[0, column]
        looks = styles([t.family for t in traces])
        drawn = []
        for trace, style in zip(traces, looks, strict=True):
            values = trace.excess if metric == "excess" else trace.losses
            values = np.where(values > 0, values, np.nan)
            ax.plot(
                values, linestyle=style.dash, color=style.color, linewidth=1.3, label=trace.label
            )
            drawn.append(values)
        ax.set_yscale("log")
        fit_log_axis(ax, drawn)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("loss - f*")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper right", framealpha=0.85)
        if with_lr:
            lr_ax = axes[1, column]
            for trace, style in zip(traces, looks, strict=True):
                lr_ax.plot(trace.lrs, linestyle=style.dash, color=style.color, linewidth=1.3)
            lr_ax.set_yscale("log")
            lr_ax.set_ylabel("learning rate")
            lr_ax.set_xlabel("step")
            lr_ax.grid(True, alpha=0.3)
    return _save(fig, path)


@dataclass(frozen=True)
class Line:
    """One curve of a :func:`line_panels` figure: ``y`` against ``x``.

    ``family`` picks the colour (see :func:`styles`), so one method keeps its colour across
    panels and figures; ``dashed`` marks a reference run (drawn as :data:`REFERENCE`);
    ``markers`` draws each point (for runs with few points).
    """

    label: str
    x: np.ndarray
    y: np.ndarray
    family: str | None
    dashed: bool = False
    markers: bool = False


@dataclass(frozen=True)
class Panel:
    """One axes of a :func:`line_panels` figure.

    ``xscale``/``yscale`` are matplotlib scale names (``"linear"``, ``"log"``, ``"symlog"``);
    ``linthresh`` is the linear range of a ``"symlog"`` x axis (so that 0, the start, shows);
    ``hline`` marks a threshold such as a tolerance.
    """

    title: str
    xlabel: str
    ylabel: str
    lines: Sequence[Line]
    xscale: str = "linear"
    yscale: str = "log"
    linthresh: float = 1.0
    hline: float | None = None


def line_panels(
    panels: Sequence[Panel],
    path: Path | str,
    *,
    columns: int = 2,
    size: tuple[float, float] = (5.2, 3.6),
) -> Path:
    """Curves against any x (iteration, wall time, passes over the data), one axes per panel,
    ``columns`` to a row; non-positive values are left out of log axes."""
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(size[0] * columns, size[1] * rows), dpi=DPI, squeeze=False
    )
    for ax, panel in zip(axes.flat, panels, strict=False):
        drawn = []
        looks = styles([line.family for line in panel.lines if not line.dashed])
        for line in panel.lines:
            y = np.asarray(line.y, dtype=float)
            if panel.yscale == "log":
                y = np.where(y > 0, y, np.nan)
            # A reference run: black long dashes, thicker, unlike any run's own style.
            style = REFERENCE if line.dashed else looks.pop(0)
            ax.plot(
                np.asarray(line.x, dtype=float),
                y,
                linestyle=style.dash,
                color=style.color,
                linewidth=2.2 if line.dashed else 1.4,
                marker="o" if line.markers else None,
                markersize=3.5,
                label=line.label,
            )
            drawn.append(y)
        if panel.hline is not None:
            ax.axhline(panel.hline, color="black", linestyle=":", linewidth=1)
        if panel.xscale == "symlog":
            ax.set_xscale("symlog", linthresh=panel.linthresh)
            ax.set_xlim(left=0)  # the x values here (iterations, seconds) are never negative
        else:
            ax.set_xscale(panel.xscale)
        ax.set_yscale(panel.yscale)
        if panel.yscale == "log":
            fit_log_axis(ax, drawn)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    return _save(fig, path)


def race_gif(
    problem: Problem,
    traces: Sequence[Trace],
    path: Path | str,
    title: str = "",
    *,
    frames: int = 40,
    duration_ms: int = 90,
    resolution: int = 100,
) -> Path:
    """An animated GIF of the race: every trajectory growing step by step over the contours.

    The contours are drawn once; each frame only moves the lines, so the GIF costs little more
    than one figure per frame's draw.
    """
    from PIL import Image  # (only the GIF needs pillow directly)

    fig, ax = plt.subplots(figsize=(5.6, 4.3), dpi=80)
    _draw_contours(
        ax, problem, resolution, fitted_window(problem.bounds, [t.trajectory for t in traces])
    )
    lines, heads = [], []
    count = len(traces)
    for index, (trace, style) in enumerate(
        zip(traces, styles([t.family for t in traces]), strict=True)
    ):
        (line,) = ax.plot(
            [],
            [],
            linestyle=style.dash,
            color=style.color,
            linewidth=path_width(index, count),
            label=trace.label,
            solid_capstyle="round",
            solid_joinstyle="round",
        )
        (head,) = ax.plot(
            [],
            [],
            MARKERS[index % len(MARKERS)],
            color=style.color,
            markersize=6,
            markeredgecolor="black",
        )
        lines.append(line)
        heads.append(head)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.85)
    longest = max(len(trace.trajectory) for trace in traces)
    # Show the early steps densely (where the optimizers differ most), later ones sparsely.
    marks = np.unique(np.round(np.geomspace(1, longest, frames)).astype(int))
    images = []
    for mark in marks:
        for trace, line, head in zip(traces, lines, heads, strict=True):
            points = trace.trajectory[:mark]
            line.set_data(points[:, 0], points[:, 1])
            head.set_data([points[-1, 0]], [points[-1, 1]])
        ax.set_title(f"{title or problem.describe()} - step {mark - 1}", fontsize=10)
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
        images.append(Image.fromarray(rgba[..., :3].copy()).quantize(colors=128))
    plt.close(fig)
    path = Path(path)
    durations = [duration_ms] * (len(images) - 1) + [1500]  # hold the finish
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path


def _save(fig: plt.Figure, path: Path | str) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
