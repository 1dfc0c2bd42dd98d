"""An animated GIF of a race: every trajectory growing step by step over the contours."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from descend.lab.plots.base import MARKERS, fitted_window, path_width, styles
from descend.lab.plots.contours import draw_contours
from descend.lab.problems import Problem
from descend.lab.runner import Trace


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
    draw_contours(
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
