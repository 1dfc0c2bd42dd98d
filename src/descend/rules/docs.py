"""Documentation generated from a rule: its equation and its hyperparameters' lines.

A rule states its equation once (the literal block of its update's docstring, or
:attr:`Listing.equation`) and each hyperparameter's meaning, default and valid range once (its
:class:`Hyper`); the optimizer classes' docstrings and the command line's tables are built from
them here, so no docstring restates a range by hand.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Sequence
from typing import Any

from descend.rules.spec import Hyper, Rule

#: Width of generated docstring lines, indentation included.
WIDTH = 96


def equation(rule: Rule) -> str:
    """The rule's equation as a reST paragraph that ends in ``::`` and its indented block.

    :attr:`Listing.equation` if the rule gives one (then introduced as "One step::"), else the
    first literal block of its update's docstring with the paragraph that introduces it.
    """
    if rule.listing.equation:
        return "One step::\n\n" + textwrap.indent(inspect.cleandoc(rule.listing.equation), "    ")
    text = inspect.cleandoc(rule.update.__doc__ or "")
    paragraphs = text.split("\n\n")
    for index, paragraph in enumerate(paragraphs):
        if paragraph.rstrip().endswith("::") and index + 1 < len(paragraphs):
            block = [paragraphs[index + 1]]
            for following in paragraphs[index + 2 :]:
                if not following.startswith(" "):
                    break
                block.append(following)
            # Indented whatever the docstring's own indentation: a block that ends the
            # docstring is flush left after cleandoc, and would no longer be a literal block.
            literal = textwrap.indent(textwrap.dedent("\n\n".join(block)), "    ")
            return paragraph.strip() + "\n\n" + literal
    raise ValueError(
        f"rule {rule.name!r}: its update's docstring has no literal block (::) "
        "with the equation, and its listing gives none"
    )


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_number(item) for item in value) + ")"
    return repr(value)


def _range(hyper: Hyper, shown: str) -> str:
    if hyper.kind is bool or hyper.choices is not None:
        return hyper.describe(shown)
    if hyper.low is None and hyper.high is None:
        return "any finite number"
    described = hyper.describe(shown)
    return f"``{described}``" + (", an integer" if hyper.kind is int else "")


def hyper_line(name: str, hypers: Sequence[Hyper], default: Any) -> str:
    """One argument's entry, ``name: meaning; default ...; range``.

    ``hypers`` are the hyperparameters the argument sets: one, or several packed in a tuple
    (``betas``: ``beta1`` and ``beta2``, named ``betas[0]`` and ``betas[1]`` in the ranges, as
    errors name them). ``default`` is the constructor's.
    """
    if len(hypers) == 1:
        meaning, ranges = hypers[0].doc, _range(hypers[0], name)
    else:
        names = ", ".join(hyper.name for hyper in hypers)
        meaning = f"({names}): " + "; ".join(hyper.doc for hyper in hypers)
        each = [_range(hyper, f"{name}[{index}]") for index, hyper in enumerate(hypers)]
        ranges = f"each {each[0]}" if len(set(each)) == 1 else ", ".join(each)
    return f"{name}: {meaning}; default {_number(default)}; {ranges}."


#: Stands in for a space inside a ``literal`` while wrapping, so a literal stays on one line.
_KEEP = "\x00"


def wrapped(entry: str, indent: str = "    ") -> str:
    """``entry`` wrapped to :data:`WIDTH`, continuation lines indented once more, never inside
    a ````literal````."""
    pieces = entry.split("``")
    kept = "``".join(
        piece.replace(" ", _KEEP) if index % 2 else piece for index, piece in enumerate(pieces)
    )
    text = textwrap.fill(
        kept,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_on_hyphens=False,
        break_long_words=False,
    )
    return text.replace(_KEEP, " ")
