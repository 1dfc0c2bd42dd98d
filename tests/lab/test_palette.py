"""The palette: one colour per optimizer and per named variant, each with one word for captions,
and the styles every figure draws with."""

from __future__ import annotations

import colorsys

import matplotlib
import numpy as np
import pytest

from descend.lab import palette, plots
from descend.rules import RULES


def _hls(color: str) -> tuple[float, float, float]:
    return colorsys.rgb_to_hls(*matplotlib.colors.to_rgb(color))


def _every_drawn_color() -> dict[str, str]:
    """Every colour the palette hands out, by what it is the colour of."""
    return (
        dict(palette.FAMILY_COLORS)
        | {f"variant {key}": color for key, color in palette.VARIANT_COLORS.items()}
        | {f"other {index}": color for index, color in enumerate(palette.OTHER_COLORS)}
    )


def test_every_registered_rule_has_its_own_colour():
    colors = palette.FAMILY_COLORS
    for rule in RULES.values():
        assert colors.get(rule.name), f"{rule.name} has no colour (Listing.colour)"
    assert len(set(map(str.upper, colors.values()))) == len(colors), dict(colors)


def test_variants_and_the_colours_for_unknown_optimizers_are_no_family_s():
    families = set(map(str.upper, palette.FAMILY_COLORS.values()))
    variants = [c.upper() for c in palette.VARIANT_COLORS.values()]
    others = [c.upper() for c in palette.OTHER_COLORS]
    assert len(set(variants)) == len(variants)
    assert len(set(others)) == len(others)
    assert not families & set(variants), "a variant would look like an optimizer"
    assert not (families | set(variants)) & set(others)


def test_every_colour_has_one_name_and_names_are_unique():
    names = list(palette.COLOR_NAMES.values())
    assert len(set(names)) == len(names)
    assert all(key == key.upper() and len(key) == 7 for key in palette.COLOR_NAMES)
    for what, color in _every_drawn_color().items():
        assert color.upper() in palette.COLOR_NAMES, f"{what} ({color}) has no name"
    for mark, color in palette.MARK_COLORS.items():
        assert palette.color_name(color), mark


def test_color_name_reads_families_variants_and_colours_from_the_one_table():
    assert palette.color_name("lion") == palette.color_name(palette.FAMILY_COLORS["lion"])
    assert (
        palette.color_name("sign_descent")
        == palette.COLOR_NAMES[palette.VARIANT_COLORS["sign_descent"].upper()]
    )
    assert palette.color_name("#0077bb") == "blue"  # any case
    with pytest.raises(KeyError, match="no colour of the palette"):
        palette.color_name("#123456")
    with pytest.raises(KeyError, match="no colour of the palette"):
        palette.color_name("no_such_optimizer")


def test_the_second_and_third_run_of_an_optimizer_differ_in_lightness_only():
    looks = plots.styles(["adam", "sgd", "adam", "adam", None, "unknown", None])
    adam = [looks[i] for i in (0, 2, 3)]
    assert adam[0].color.upper() == palette.FAMILY_COLORS["adam"].upper()
    assert len({style.color for style in adam}) == 3
    hues = [_hls(style.color)[0] for style in adam]
    assert np.allclose(hues, hues[0], atol=0.01)
    lightness = sorted(_hls(style.color)[1] for style in adam)
    assert min(np.diff(lightness)) > 0.1  # steps a reader can see
    assert all(style.dash == "-" for style in looks)  # line style says the kind of line
    # Unknown optimizers: one colour each, runs of one of them told apart like any family's.
    assert looks[4].color.upper() == palette.OTHER_COLORS[0].upper()
    assert looks[5].color.upper() == palette.OTHER_COLORS[1].upper()
    assert looks[6].color != looks[4].color


def test_a_sweep_runs_from_dark_to_light_through_the_family_s_colour():
    sweep = plots.sweep_styles("sgd", 5)
    lightness = [_hls(style.color)[1] for style in sweep]
    assert lightness == sorted(lightness) and min(np.diff(lightness)) > 0.1
    assert palette.FAMILY_COLORS["sgd"].upper() in [style.color for style in sweep]


def test_line_styles_say_the_kind_of_line_and_have_a_word():
    assert plots.THEORY.dash_name == "dotted"
    assert plots.theory_style("sgd") == plots.Style(palette.FAMILY_COLORS["sgd"], ":")
    assert plots.reference_style("lbfgs").dash_name == "long-dashed"
    assert plots.reference_style(None) == plots.REFERENCE
    kinds = [plots.THEORY.dash, plots.REFERENCE.dash, plots.AVERAGED.dash, "-"]
    assert len(set(kinds)) == len(kinds)
    assert all(dash in plots.DASH_NAMES for dash in kinds)
    assert plots.Style(palette.FAMILY_COLORS["muon"], "-").color_name == "red"


def test_a_line_s_family_is_a_name_not_an_index():
    with pytest.raises(TypeError, match="family=2 is invalid"):
        plots.Line("Lion", np.arange(3), np.arange(3), 2)  # type: ignore[arg-type]
