"""What every figure of a race shares: how a run is drawn, how windows and log axes fit the
data, and how a figure is saved.

Colour says which optimizer a line belongs to: its family's (:mod:`descend.lab.palette`, the
one place colours are chosen), the same in every figure and on the playground page. Several
runs of one optimizer in one figure are told apart by lightness: the first is drawn in the
family's colour, the next ones in steps darker and lighter (:func:`lightness_steps`), and the
legend names each. Line style says what kind of line it is, in every figure: solid for a run,
dotted for theory's prediction (:data:`THEORY`), long dashes for a reference run
(:data:`REFERENCE`), dashes for a run's averaged weights (:data:`AVERAGED`). A caption that
names a colour or a line style takes the word from :attr:`Style.color_name` and
:attr:`Style.dash_name`, never types it.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from descend.lab.palette import (
    OTHER_COLORS,
    VARIANT_COLORS,
    color_name,
    color_of,
    lightness_steps,
)
from descend.lab.problems import Bounds

#: Line styles, by the word a caption uses for them. A run is solid; the others mark a kind of
#: line (see :data:`THEORY`, :data:`REFERENCE`, :data:`AVERAGED`); the last ones are left for
#: figures that need more kinds.
DASH_NAMES: dict[str | tuple, str] = {
    "-": "solid",
    ":": "dotted",
    (0, (9, 3)): "long-dashed",
    "--": "dashed",
    "-.": "dash-dotted",
    (0, (6, 2, 1, 2, 1, 2)): "dash-dot-dotted",
}
#: The line styles in the order above (kept for callers that pick one by index).
DASHES = tuple(DASH_NAMES)
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
    """How one line is drawn: a colour and a line style (a matplotlib ``linestyle``), with the
    words a caption uses for them."""

    color: str
    dash: str | tuple

    @property
    def color_name(self) -> str:
        """The palette's word for the colour (``KeyError`` for a shade it does not name)."""
        return color_name(self.color)

    @property
    def dash_name(self) -> str:
        """The word for the line style: ``"solid"``, ``"dotted"``, ``"long-dashed"`` ..."""
        return DASH_NAMES[self.dash]


#: How theory's lines that belong to no one optimizer are drawn (a noise floor, a limit); a
#: prediction for one optimizer is :func:`theory_style` of its family.
THEORY = Style(VARIANT_COLORS["theory"], ":")
#: How a reference run of an optimizer the palette has no colour for is drawn; a reference run
#: of a family (full-batch L-BFGS beside minibatch runs) is :func:`reference_style` of it.
REFERENCE = Style(VARIANT_COLORS["theory"], (0, (9, 3)))
#: How a threshold (a tolerance, an escape loss) is drawn across an axes, thin.
THRESHOLD = Style(VARIANT_COLORS["theory"], ":")
#: The line style of a run's averaged weights, drawn in the run's colour.
AVERAGED = Style(VARIANT_COLORS["theory"], "--")


def _family_color(family: str | None, unknown: dict[str | None, str]) -> str:
    color = color_of(family)
    if color is None:
        if family not in unknown:
            unknown[family] = OTHER_COLORS[len(unknown) % len(OTHER_COLORS)]
        color = unknown[family]
    return color


def styles(families: Sequence[str | None]) -> list[Style]:
    """A solid style per run: its family's colour (or its variant's, see
    :func:`descend.lab.palette.color_of`); the second, third ... run of one family in the same
    figure get the next of its :func:`lightness_steps`. Runs of families the palette does not
    know get :data:`~descend.lab.palette.OTHER_COLORS` in turn, one per family."""
    counts: dict[str | None, int] = {}
    for family in families:
        counts[family] = counts.get(family, 0) + 1
    unknown: dict[str | None, str] = {}
    shades = {
        family: lightness_steps(_family_color(family, unknown), count)
        for family, count in counts.items()
    }
    seen: dict[str | None, int] = {}
    out = []
    for family in families:
        index = seen.get(family, 0)
        seen[family] = index + 1
        out.append(Style(shades[family][index], "-"))
    return out


def theory_style(family: str | None) -> Style:
    """How theory's prediction for a family is drawn: dotted, in the family's colour (in
    :data:`THEORY`'s when it belongs to no family)."""
    return Style(color_of(family) or THEORY.color, THEORY.dash)


def reference_style(family: str | None) -> Style:
    """How a reference run of a family is drawn: long dashes in the family's colour (as
    :data:`REFERENCE` when the palette has no colour for it)."""
    return Style(color_of(family) or REFERENCE.color, REFERENCE.dash)


def sweep_styles(family: str | None, count: int) -> list[Style]:
    """Solid lines in ``count`` shades of a family's colour (its :func:`lightness_steps`),
    darkest first (for runs of one optimizer along one setting: batch sizes, say)."""
    base = color_of(family) or OTHER_COLORS[0]
    shades = sorted(
        lightness_steps(base, count),
        key=lambda c: colorsys.rgb_to_hls(*matplotlib.colors.to_rgb(c))[1],
    )
    return [Style(shade, "-") for shade in shades]


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
