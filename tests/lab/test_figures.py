"""Every figure of the tour (and of ``descend race --out``), as drawn: no two series of one axes
look alike, and every colour or line-style word of a caption is one the figure draws.

The figures are caught as they are saved (``Figure.savefig`` wrapped), so the checks read the
matplotlib objects themselves, not the pixels.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import matplotlib.figure
import numpy as np
import pytest
from matplotlib.lines import Line2D, _get_dash_pattern

from descend.lab import palette, plots
from descend.lab.tour import TourSettings, run_tour

#: Colour words a caption might type, beyond the palette's own names (which are all checked).
PLAIN_COLOR_WORDS = (
    "blue",
    "orange",
    "green",
    "red",
    "black",
    "grey",
    "gray",
    "brown",
    "pink",
    "purple",
    "yellow",
    "navy",
    "gold",
    "white",
    "violet",
    "magenta",
    "cyan",
)
#: Line-style words a caption might type, beyond the palette's own (``DASH_NAMES``).
PLAIN_DASH_WORDS = ("long dashes", "dashes", "dots", "dash-dot")


def _pattern(words: set[str]) -> re.Pattern[str]:
    # Longest first, so "light orange" is read as one word, not as "orange".
    ordered = sorted(words, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, ordered)) + r")(?![\w-])", re.I)


COLOR_WORDS = _pattern(set(palette.COLOR_NAMES.values()) | set(PLAIN_COLOR_WORDS))
DASH_WORDS = _pattern(set(plots.DASH_NAMES.values()) | set(PLAIN_DASH_WORDS))


def _dash_name(line: Line2D) -> str | None:
    """The palette's word for a drawn line's style (None for one it has no word for)."""
    drawn = line._unscaled_dash_pattern  # matplotlib keeps the style's pattern, unscaled
    for dash, name in plots.DASH_NAMES.items():
        if _get_dash_pattern(dash) == drawn:
            return name
    return None


def _hex(color) -> str:
    return matplotlib.colors.to_hex(color).upper()


def _series(ax) -> list[Line2D]:
    """The lines of an axes that the legend names."""
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def _drawn_color_names(figure: matplotlib.figure.Figure) -> set[str]:
    """The palette's names of every colour a figure's lines and markers are drawn in."""
    colors = set()
    for ax in figure.axes:
        for line in ax.get_lines():
            if line.get_linestyle() not in ("None", "", " "):
                colors.add(_hex(line.get_color()))
            if line.get_marker() not in (None, "None", "", " "):
                for color in (line.get_markerfacecolor(), line.get_markeredgecolor()):
                    if str(color) != "none":
                        colors.add(_hex(color))
    return {palette.COLOR_NAMES[c] for c in colors if c in palette.COLOR_NAMES}


def _drawn_dash_names(figure: matplotlib.figure.Figure) -> set[str]:
    names = {
        _dash_name(line)
        for ax in figure.axes
        for line in ax.get_lines()
        if line.get_linestyle() not in ("None", "", " ")
    }
    return names - {None}


@pytest.fixture
def caught(monkeypatch) -> Iterator[dict[str, matplotlib.figure.Figure]]:
    """Every figure saved while the fixture is active, by its file's name."""
    figures: dict[str, matplotlib.figure.Figure] = {}
    savefig = matplotlib.figure.Figure.savefig

    def catching(self, fname, *args, **kwargs):
        figures[Path(fname).name] = self
        return savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", catching)
    yield figures


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> tuple[dict[str, matplotlib.figure.Figure], dict[str, str]]:
    """The quick tour's figures (by file name) and their captions."""
    figures: dict[str, matplotlib.figure.Figure] = {}
    savefig = matplotlib.figure.Figure.savefig

    def catching(self, fname, *args, **kwargs):
        figures[Path(fname).name] = self
        return savefig(self, fname, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matplotlib.figure.Figure, "savefig", catching)
        report = run_tour(tmp_path_factory.mktemp("tour"), TourSettings(quick=True))
    captions = {
        Path(figure.file).name: figure.caption
        for section in report.sections
        for figure in section.figures
    }
    return figures, captions


def _lookalikes(figure: matplotlib.figure.Figure) -> list[str]:
    """Series of one axes drawn in the same colour and line style."""
    problems = []
    for ax in figure.axes:
        seen: dict[tuple[str, object], str] = {}
        for line in _series(ax):
            key = (_hex(line.get_color()), line._unscaled_dash_pattern)
            if key in seen:
                problems.append(f"{ax.get_title()!r}: {seen[key]!r} and {line.get_label()!r}")
            seen.setdefault(key, line.get_label())
    return problems


def _caption_problems(figure: matplotlib.figure.Figure, caption: str) -> list[str]:
    """Colour and line-style words of a caption that the figure does not draw."""
    colors, dashes = _drawn_color_names(figure), _drawn_dash_names(figure)
    problems = [
        f"colour {word!r} (drawn: {sorted(colors)})"
        for word in COLOR_WORDS.findall(caption)
        if word.lower() not in colors
    ]
    problems += [
        f"line style {word!r} (drawn: {sorted(dashes)})"
        for word in DASH_WORDS.findall(caption)
        if word.lower() not in dashes
    ]
    return problems


# --- the checks themselves, on figures made to fail them -------------------------------------


def test_the_checks_catch_lookalike_series_and_wrong_caption_words(caught, tmp_path):
    x = np.arange(3.0)
    plots.line_panels(
        [
            plots.Panel(
                "t",
                "x",
                "y",
                [
                    plots.Line("a", x, x + 1, "sgd"),
                    plots.Line("b", x, x + 2, "sgd", theory=True),
                    plots.Line("c", x, x + 3, "lion"),
                ],
            )
        ],
        tmp_path / "ok.png",
    )
    figure = caught["ok.png"]
    assert _lookalikes(figure) == []
    words = f"SGD ({palette.color_name('sgd')}), its theory {plots.THEORY.dash_name}"
    assert _caption_problems(figure, words) == []
    assert _caption_problems(figure, "SGD (green), its theory dashed") == [
        f"colour 'green' (drawn: {sorted(_drawn_color_names(figure))})",
        f"line style 'dashed' (drawn: {sorted(_drawn_dash_names(figure))})",
    ]
    # Two series in one colour and style: what an index for a family once drew.
    ax = figure.axes[0]
    ax.plot(x, x + 4, color=palette.FAMILY_COLORS["sgd"], label="d")
    assert _lookalikes(figure) == ["'t': 'a' and 'd'"]


def test_runs_of_one_optimizer_in_a_panel_have_their_own_shade(caught, tmp_path):
    x = np.arange(3.0)
    lines = [plots.Line(f"sf {i}", x, x + i, "sf_sgd") for i in range(3)]
    lines.append(plots.Line("floor", x, np.full(3, 0.5), "theory", theory=True))
    plots.line_panels([plots.Panel("t", "x", "y", lines)], tmp_path / "runs.png")
    series = _series(caught["runs.png"].axes[0])
    assert _hex(series[0].get_color()) == palette.FAMILY_COLORS["sf_sgd"].upper()
    assert len({_hex(line.get_color()) for line in series[:3]}) == 3
    assert _dash_name(series[3]) == "dotted"
    assert _hex(series[3].get_color()) == palette.VARIANT_COLORS["theory"].upper()


def test_a_run_past_the_budget_is_an_open_marker_at_the_top_labelled_with_it(caught, tmp_path):
    kappas = np.array([10.0, 100.0, 1000.0])
    plots.line_panels(
        [
            plots.Panel(
                "t",
                "kappa",
                "steps",
                [plots.Line("Lion", kappas, np.array([40.0, np.nan, np.nan]), "lion", horizon=500)],
                xscale="log",
            )
        ],
        tmp_path / "beyond.png",
    )
    ax = caught["beyond.png"].axes[0]
    marks = [line for line in ax.get_lines() if line.get_markerfacecolor() == "none"]
    assert len(marks) == 1
    assert list(marks[0].get_xdata()) == [100.0, 1000.0]
    assert list(marks[0].get_ydata()) == [500.0, 500.0]
    assert _hex(marks[0].get_markeredgecolor()) == palette.FAMILY_COLORS["lion"].upper()
    assert [text.get_text() for text in ax.texts] == ["> 500", "> 500"]
    assert ax.get_ylim()[1] > 500  # the marks are inside the axes


# --- every figure of the quick tour and of a race ----------------------------------------------


@pytest.mark.slow
def test_no_two_series_of_a_tour_figure_share_colour_and_line_style(tour):
    figures, captions = tour
    assert len(figures) >= 12 and set(captions) <= set(figures) | {"race.gif"}
    problems = {name: _lookalikes(figure) for name, figure in figures.items()}
    assert not {name: p for name, p in problems.items() if p}
    # Every series of the tour is an optimizer or a variant the palette knows.
    others = {color.upper() for color in palette.OTHER_COLORS}
    unknown = {
        (name, line.get_label())
        for name, figure in figures.items()
        for ax in figure.axes
        for line in _series(ax)
        if _hex(line.get_color()) in others
    }
    assert not unknown


@pytest.mark.slow
def test_every_colour_and_line_style_a_caption_names_is_drawn_in_its_figure(tour):
    figures, captions = tour
    problems = {
        name: _caption_problems(figures[name], caption)
        for name, caption in captions.items()
        if name in figures
    }
    assert not {name: p for name, p in problems.items() if p}


@pytest.mark.slow
def test_section_8_draws_each_method_in_its_family_s_colour(tour):
    figures, captions = tour
    by_label = {
        line.get_label(): line for ax in figures["newer_muon.png"].axes for line in _series(ax)
    }
    assert _hex(by_label["Adam"].get_color()) == palette.FAMILY_COLORS["adam"].upper()
    assert _hex(by_label["Muon"].get_color()) == palette.FAMILY_COLORS["muon"].upper()
    steps = figures["newer_lion_steps.png"].axes[0]
    families = {_hex(line.get_color()) for line in _series(steps)}
    assert palette.VARIANT_COLORS["sign_descent"].upper() in families
    assert "#000000" not in families  # no series falls back to black
    caption = captions["newer_lion_contours.png"]
    for key in ("sgd", "sign_descent", "lion"):
        assert f"({palette.color_name(key)})" in caption


@pytest.mark.slow
def test_a_race_s_figures_tell_its_runs_apart(caught, tmp_path):
    from descend.cli.main import main

    status = main(
        [
            "race",
            "ravine",
            "sgd:lr=0.01",
            "sgd:lr=0.02",
            "adam:lr=0.1",
            "--steps",
            "40",
            "--out",
            str(tmp_path / "race"),
        ]
    )
    assert status == 0
    assert caught, "race --out saved no figure"
    for name, figure in caught.items():
        assert _lookalikes(figure) == [], name
        series = [line for ax in figure.axes for line in _series(ax)]
        assert series, name
