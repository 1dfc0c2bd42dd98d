"""Line figures: each run's loss (or distance, gradient norm, learning rate) per step on a log
scale, one column of them per optimizer, and panels of curves against any x (iterations, wall
time, passes over the data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from descend.lab.plots.base import (
    AVERAGED,
    DECADES,
    DPI,
    THRESHOLD,
    Style,
    fit_log_axis,
    reference_style,
    save_figure,
    styles,
    sweep_styles,
    theory_style,
)
from descend.lab.runner import Trace


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
    ``averaged=True`` plots the averaged weights' excess loss too, in the run's colour and
    :data:`~descend.lab.plots.base.AVERAGED`'s line style; ``hline`` marks a
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
                linestyle=AVERAGED.dash,
                color=style.color,
                linewidth=2.0,
                label=f"{trace.label} (averaged)",
            )
            drawn.append(avg)
    if hline is not None:
        ax.axhline(hline, color=THRESHOLD.color, linestyle=THRESHOLD.dash, linewidth=1)
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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


@dataclass(frozen=True)
class Line:
    """One curve of a :func:`line_panels` figure: ``y`` against ``x``.

    ``family`` picks the colour (see :func:`styles`; a family's name or a named variant's
    such as ``"sign_descent"``), so one method keeps its colour across panels and figures;
    ``dashed`` marks a reference run (:func:`reference_style`), ``theory`` theory's
    prediction (:func:`theory_style`); ``markers`` draws each point (for runs with few
    points). With ``horizon``, a point whose ``y`` is NaN is a run that did not get there
    within ``horizon`` (steps, say): it is drawn as an open marker at ``horizon``, labelled
    ``> horizon``.
    """

    label: str
    x: np.ndarray
    y: np.ndarray
    family: str | None
    dashed: bool = False
    markers: bool = False
    theory: bool = False
    horizon: float | None = None

    def __post_init__(self) -> None:
        # A family is a name the palette knows (or None): an index here once drew four of six
        # series in the same colour.
        if self.family is not None and not isinstance(self.family, str):
            raise TypeError(
                f"Line {self.label!r}: family={self.family!r} is invalid: expected an optimizer "
                "family or variant name (see descend.lab.palette) or None"
            )

    def style(self, run: Style | None = None) -> Style:
        """How this line is drawn: a reference run's or theory's style, else ``run``, the
        style :func:`styles` gave it among the figure's runs."""
        if self.dashed:
            return reference_style(self.family)
        if self.theory:
            return theory_style(self.family)
        if run is None:
            raise ValueError(f"{self.label!r} is a run: its style comes from styles()")
        return run


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
        runs = [line for line in panel.lines if not (line.dashed or line.theory)]
        looks = dict(zip(map(id, runs), styles([line.family for line in runs]), strict=True))
        for line in panel.lines:
            y = np.asarray(line.y, dtype=float)
            if panel.yscale == "log":
                y = np.where(y > 0, y, np.nan)
            # A reference run is drawn thicker, so its long dashes read as one line.
            style = line.style(looks.get(id(line)))
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
            if line.horizon is not None:
                drawn.append(_mark_beyond(ax, line, style))
        if panel.hline is not None:
            ax.axhline(panel.hline, color=THRESHOLD.color, linestyle=THRESHOLD.dash, linewidth=1)
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
    return save_figure(fig, path)


def _mark_beyond(ax: plt.Axes, line: Line, style: Style) -> np.ndarray:
    """Open markers at ``line.horizon`` for the points of ``line`` that did not get there (NaN
    ``y``), each labelled ``> horizon``; returns the heights drawn."""
    x, y = np.asarray(line.x, dtype=float), np.asarray(line.y, dtype=float)
    missing = np.isnan(y)
    if line.horizon is None or not missing.any():
        return np.array([])
    top = np.full(int(missing.sum()), float(line.horizon))
    ax.plot(
        x[missing],
        top,
        linestyle="none",
        marker="o",
        markersize=7,
        markerfacecolor="none",
        markeredgecolor=style.color,
        markeredgewidth=1.5,
    )
    for xi in x[missing]:
        ax.annotate(
            f"> {line.horizon:g}",
            (xi, line.horizon),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
            color=style.color,
        )
    return top
