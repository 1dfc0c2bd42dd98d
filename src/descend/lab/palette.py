"""One colour per optimizer, the same in every figure of the report and on the playground page,
and the word a caption uses for it.

Each rule's colour is its registry row's (:attr:`descend.rules.Listing.colour`); the
second-order methods, which are not rules, have theirs here, and so do the named variants the
lab draws that are no optimizer of their own (:data:`VARIANT_COLORS`: sign descent, theory's
lines). Runs are grouped into families by the names their optimizer goes by (a rule's names and
aliases, its functional API's ``functional.<name>``, the ``torch.optim`` class its drop-in class
replaces), so a rule has one colour whether descend's class, ``torch.optim``'s or the
functional update ran it. Both tables are read from the registry whenever they are used, so a
rule registered at run time has its colour everywhere too.

Every colour is one of Paul Tol's (https://personal.sron.nl/~pault/), whose schemes stay
distinct under the common colour-vision deficiencies, and :data:`COLOR_NAMES` holds the word
Tol gives it: a caption that names a colour takes it from :func:`color_name`, never types it.
"""

from __future__ import annotations

import colorsys
from typing import Any

from descend.rules import RULES, RegistryView

#: The methods that are not rules (:mod:`descend.secondorder`), by family, with their colours.
SECOND_ORDER_COLORS = {"newton": "#DDCC77", "bfgs": "#AA4499", "lbfgs": "#555555"}
#: Other names of those methods.
SECOND_ORDER_NAMES = {"torch.optim.LBFGS": "lbfgs"}
#: Named variants the lab draws that are no family of their own: sign descent (Lion with both
#: betas 0, the step Lion's analysis starts from) and theory's lines that belong to no one
#: optimizer (a noise floor, a limit), and the pale grey of other panels' series drawn behind a
#: panel for comparison. A prediction for one optimizer is drawn in that
#: optimizer's colour, in the theory line style of :mod:`descend.lab.plots.base`.
VARIANT_COLORS = {"sign_descent": "#EE8866", "theory": "#000000", "comparison": "#DDDDDD"}
#: Colours, in turn, for runs of an optimizer the lab has no family for.
OTHER_COLORS = ("#BBBBBB", "#DDAA33", "#77AADD")
#: The colours of the marks on a contour plot: where every run starts and the minima.
MARK_COLORS = {"start": "#000000", "minimum": "#FFD700"}

#: The word for each colour the lab draws: Paul Tol's names for his muted, vibrant, light,
#: high- and medium-contrast schemes (``light orange`` and ``light blue`` where two schemes
#: share a word), plus black and the gold of a minimum's star. Keys are upper-case ``#RRGGBB``.
COLOR_NAMES = {
    # muted
    "#332288": "indigo",
    "#88CCEE": "cyan",
    "#44AA99": "teal",
    "#117733": "green",
    "#999933": "olive",
    "#DDCC77": "sand",
    "#CC6677": "rose",
    "#882255": "wine",
    "#AA4499": "purple",
    # vibrant
    "#0077BB": "blue",
    "#EE7733": "orange",
    "#CC3311": "red",
    "#EE3377": "magenta",
    "#009988": "sea green",
    "#BBBBBB": "grey",
    # light
    "#77AADD": "light blue",
    "#EE8866": "light orange",
    "#BBCC33": "pear",
    "#44BB99": "mint",
    "#FFAABB": "pink",
    # high contrast
    "#DDAA33": "yellow",
    # medium contrast
    "#004488": "dark blue",
    "#997700": "dark yellow",
    "#994455": "dark red",
    "#EE99AA": "light red",
    # greys and marks
    "#555555": "dark grey",
    "#DDDDDD": "pale grey",
    "#000000": "black",
    "#FFD700": "gold",
}


def _families() -> dict[str, str]:
    from descend.optim.generated import optimizer_class

    families = {name: name for name in SECOND_ORDER_COLORS} | SECOND_ORDER_NAMES
    for rule in RULES.values():
        names = [rule.name, *rule.aliases]
        if rule.course is not None:
            names.append(f"functional.{rule.course.name}")
        cls = optimizer_class(rule)
        if cls.torch_equivalent is not None and cls.torch_equivalent[0] == (
            f"torch.optim.{cls.__name__}"
        ):
            names.append(cls.torch_equivalent[0])
        families.update(dict.fromkeys(names, rule.name))
    return families


#: Optimizer families by the names they go by; a family is its rule's name (or a second-order
#: method's). ``sgd`` with momentum is ``sgd_momentum`` (or ``nesterov``): one colour per method
#: of the lecture, whatever front end ran it.
FAMILIES: RegistryView[str] = RegistryView(_families)


def family_of(name: str, arguments: dict[str, Any] | None = None) -> str | None:
    """The optimizer family of a method name (None for one the lab has no colour for);
    plain SGD given a momentum is ``sgd_momentum``, or ``nesterov`` with ``nesterov=True``."""
    family = FAMILIES.get(name)
    arguments = arguments or {}
    if family == "sgd" and arguments.get("momentum", 0):
        return "nesterov" if arguments.get("nesterov") else "sgd_momentum"
    return family


def _family_colors() -> dict[str, str]:
    return {
        rule.name: rule.listing.colour for rule in RULES.values() if rule.listing.colour
    } | SECOND_ORDER_COLORS


#: One colour per optimizer family: Paul Tol's qualitative schemes, whose colours stay distinct
#: under the common colour-vision deficiencies, plus a dark grey.
FAMILY_COLORS: RegistryView[str] = RegistryView(_family_colors)


def color_of(key: str | None) -> str | None:
    """The colour of an optimizer family or a named variant (:data:`VARIANT_COLORS`); None
    for anything else."""
    if key is None:
        return None
    return FAMILY_COLORS.get(key) or VARIANT_COLORS.get(key)


def color_name(color: str) -> str:
    """The word for a colour of the palette (``"#0077BB"`` -> ``"blue"``), or for the colour of
    a family or variant (``"lion"`` -> ``"blue"``): the one place captions take colour words
    from. Raises ``KeyError`` for a colour the palette does not name."""
    hex_code = color_of(color) or color
    try:
        return COLOR_NAMES[_hex(hex_code)]
    except (KeyError, ValueError):
        raise KeyError(f"{color!r} is no colour of the palette: see descend.lab.palette") from None


def _hex(color: str) -> str:
    """``#RRGGBB`` in upper case, from any colour matplotlib reads."""
    from matplotlib.colors import to_hex

    return to_hex(color).upper()


#: The range of lightness (in HLS) over which several runs of one optimizer in one figure or
#: page are spread, evenly, around the family's own colour: the second channel, after colour,
#: that the report's figures and the playground both use.
LIGHTNESS_RANGE = (0.2, 0.75)


def lightness_steps(color: str, count: int) -> list[str]:
    """``count`` shades of ``color`` (``#RRGGBB``), the colour itself first: ``count``
    lightness levels evenly over :data:`LIGHTNESS_RANGE`, the one nearest the colour's replaced
    by the colour, the others (same hue and saturation) nearest it first."""
    red, green, blue = (int(color.lstrip("#")[k : k + 2], 16) / 255 for k in (0, 2, 4))
    hue, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
    low, high = LIGHTNESS_RANGE
    levels = (
        [low + (high - low) * k / (count - 1) for k in range(count)] if count > 1 else [lightness]
    )
    levels.pop(min(range(len(levels)), key=lambda k: abs(levels[k] - lightness)))
    levels.sort(key=lambda level: abs(level - lightness))
    shades = [colorsys.hls_to_rgb(hue, level, saturation) for level in levels]
    return [color.upper()] + [
        "#" + "".join(f"{round(channel * 255):02X}" for channel in shade) for shade in shades
    ]
