"""What every figure of a race shares: how a run is drawn, how windows and log axes fit the
data, and how a figure is saved.

Each optimizer has one colour in every figure (and on the playground page), chosen by its family
(:func:`descend.lab.runner.family_of`); several runs of one optimizer in one figure differ by line
style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from descend.lab.palette import FAMILY_COLORS, OTHER_COLORS
from descend.lab.problems import Bounds

#: Line styles that tell apart several runs of one optimizer in one figure.
DASHES = ("-", "--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)), (0, (1, 3)))
#: End-of-path markers, by draw order.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
#: A log axis shows at most this many decades below its largest value.
DECADES = 12
#: A path may push the plotting window out by at most this many window widths on each side;
#: a path that goes farther has run away, and is cut at the window's edge with a mark.
MAX_GROWTH = 2.0
#: Resolution of every saved figure, in dots per inch.
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
    """The plotting window grown to hold every finite point of ``paths`` that lies within
    :data:`MAX_GROWTH` widths of ``bounds`` on its side, with a small margin when it grew.

    Points farther out (or non-finite) belong to a run that diverged or ran away: they do not
    stretch the window, and :func:`descend.lab.plots.contours.clip_to_window` cuts such a path
    where it leaves the window, so its figure can mark the exit.
    """
    window = []
    for axis, (low, high) in enumerate(bounds):
        span = high - low
        values = np.concatenate(
            [np.asarray(p, dtype=float)[:, axis] for p in paths if len(p)] or [np.array([low])]
        )
        values = values[
            np.isfinite(values)
            & (values >= low - MAX_GROWTH * span)
            & (values <= high + MAX_GROWTH * span)
        ]
        values = np.concatenate([values, [low, high]])
        new_low, new_high = float(values.min()), float(values.max())
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


def save_figure(fig: plt.Figure, path: Path | str) -> Path:
    """Lay out ``fig``, write it to ``path`` as a PNG, close it and return the path."""
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
