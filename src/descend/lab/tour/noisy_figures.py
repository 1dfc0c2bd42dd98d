"""Figures of noisy runs: each run's loss at every step as a faint line, and its trend (a moving
geometric mean) as a clear line over it, in small multiples so no two noisy runs overlap.

Used by the noisy-gradient and learning-rate-decay sections. Colours come from
:func:`descend.lab.plots.styles` (one per optimizer, a second line style for a second run of
the same one); series that are not optimizers (another panel's runs drawn for comparison, a
learning rate) are drawn in neutral greys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from descend.lab import plots
from descend.lab.palette import VARIANT_COLORS

#: Steps in the moving window of a trend line.
SMOOTHING = 40
#: How strongly a run's every-step line shows under its trend.
RAW_ALPHA = 0.3
#: The grey of the other panels' trends, drawn behind for comparison.
OTHERS_GREY = VARIANT_COLORS["comparison"]


def trend(values: np.ndarray, window: int = SMOOTHING) -> tuple[np.ndarray, np.ndarray]:
    """The moving geometric mean of positive ``values`` over ``window`` steps, at the centre
    step of each window: the level a noisy loss is at, on a log axis. Windows with a
    non-positive or non-finite value are left out."""
    values = np.asarray(values, dtype=float)
    window = max(1, min(window, len(values)))
    logs = np.log10(np.where(np.isfinite(values) & (values > 0), values, np.nan))
    kernel = np.ones(window) / window
    valid = np.convolve(np.isfinite(logs), kernel, mode="valid") > 1 - 1e-9
    means = np.convolve(np.nan_to_num(logs), kernel, mode="valid")
    steps = np.arange(len(means)) + (window - 1) / 2
    return steps[valid], 10.0 ** means[valid]


def draw_noisy(ax: plt.Axes, values: np.ndarray, style: plots.Style, label: str) -> np.ndarray:
    """Draw a run's loss on ``ax``: every step faint, the trend clear and labelled. Returns the
    values drawn (for fitting the log axis)."""
    values = np.asarray(values, dtype=float)
    shown = np.where(values > 0, values, np.nan)
    ax.plot(np.arange(len(shown)), shown, color=style.color, linewidth=0.7, alpha=RAW_ALPHA)
    x, y = trend(shown)
    ax.plot(x, y, color=style.color, linestyle=style.dash, linewidth=2.2, label=label)
    return shown


@dataclass(frozen=True)
class NoisyRun:
    """One run in a :func:`small_multiples` panel: its legend label, loss above the minimum
    per step, and optimizer family (its colour)."""

    label: str
    excess: np.ndarray
    family: str | None


def small_multiples(
    panels: Sequence[tuple[str, Sequence[NoisyRun]]],
    path: Path | str,
    *,
    columns: int,
    others: bool = False,
    lr_row: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    decades: float = plots.DECADES,
) -> Path:
    """One log-scale panel per ``(title, runs)``, ``columns`` to a row, y axes shared.

    ``others`` draws, behind each panel's runs, the trends of every other panel's runs in
    grey, so a panel reads against the rest. ``lr_row`` adds a row under the panels: for each
    column, ``(constant, scheduled)`` learning rates as a fraction of the first.
    """
    rows = -(-len(panels) // columns)
    heights = [3.0] * rows + ([1.5] if lr_row is not None else [])
    fig, axes = plt.subplots(
        len(heights),
        columns,
        figsize=(4.3 * columns, sum(heights) + 0.4),
        dpi=plots.DPI,
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    drawn_all: list[np.ndarray] = []
    loss_axes = list(axes[:rows].flat)
    for index, (ax, (title, runs)) in enumerate(zip(loss_axes, panels, strict=False)):
        if others:
            for other_index, (_, other_runs) in enumerate(panels):
                for run in other_runs if other_index != index else ():
                    ax.plot(*trend(run.excess), color=OTHERS_GREY, linewidth=1.2)
            ax.plot([], [], color=OTHERS_GREY, linewidth=1.2, label="the other panels")
        for run, style in zip(runs, plots.styles([r.family for r in runs]), strict=True):
            drawn_all.append(draw_noisy(ax, run.excess, style, run.label))
        ax.set_title(title, fontsize=10)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right", framealpha=0.85)
    for ax in loss_axes:
        plots.fit_log_axis(ax, drawn_all, decades)
    for ax in loss_axes[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[:rows, 0]:
        ax.set_ylabel("loss - f*")
    if lr_row is not None:
        for ax, (constant, scheduled) in zip(axes[rows], lr_row, strict=False):
            ax.plot(constant / constant[0], color="0.55", linewidth=1.5, label="constant")
            ax.plot(scheduled / scheduled[0], color="black", linewidth=1.5, label="decayed")
            ax.set_ylim(0, 1.1)
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, loc="lower left", framealpha=0.85)
        axes[rows, 0].set_ylabel("lr / starting lr")
    return plots.save_figure(fig, path)
