"""``descend optimizers``: every optimizer descend has, as the rule registry lists them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One optimizer: its rule's names, its class and functional update, and where it is from."""

    names: str
    cls: str
    drop_in: bool
    functional: str
    lr_range: str
    reference: str
    summary: str


def rows() -> list[Row]:
    """One row per rule of ``descend.rules.RULES``, in the registry's order."""
    from descend.optim import optimizer_classes
    from descend.rules import RULES

    classes = optimizer_classes()
    table = []
    for rule in RULES.values():
        cls = classes.get(rule.name)
        drop_in = (
            cls is not None
            and cls.torch_equivalent is not None
            and (cls.torch_equivalent[0] == f"torch.optim.{cls.__name__}")
        )
        low, high = rule.lr_range
        table.append(
            Row(
                names=", ".join((rule.name, *rule.aliases)),
                cls=f"descend.{cls.__name__}" if cls is not None else "-",
                drop_in=drop_in,
                functional=f"functional.{rule.course.name}" if rule.course else "-",
                lr_range=f"{low:g} - {high:g}",
                reference=rule.reference,
                summary=rule.summary,
            )
        )
    return table


HEADERS = ("spec names", "class", "NumPy", "tuned lr range", "reference")


def markdown() -> str:
    """The registry as a Markdown table (the README's table of optimizers)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows():
        cls = "-" if row.cls == "-" else f"`{row.cls}`" + (" (drop-in)" if row.drop_in else "")
        cells = (
            f"`{row.names}`",
            cls,
            f"`{row.functional}`" if row.functional != "-" else "-",
            row.lr_range,
            row.reference,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``optimizers`` subcommand."""
    parser = subparsers.add_parser(
        "optimizers",
        help="list every optimizer: its spec names, class, NumPy function and reference",
        description="List every optimizer of the rule registry: the names a spec may use "
        "(descend race, descend bench), its torch optimizer class, its NumPy "
        "function, the learning-rate range a benchmark tunes over, and where the "
        "method comes from.",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print a Markdown table (as in the README)"
    )
    parser.set_defaults(func=run)


def run(arguments: argparse.Namespace) -> int:
    """Print the table."""
    if arguments.markdown:
        print(markdown())
        return 0
    # Plain columns: listing the optimizers needs nothing beyond the base install.
    table = [HEADERS[:4]] + [
        (row.names, row.cls + (" (drop-in)" if row.drop_in else ""), row.functional, row.lr_range)
        for row in rows()
    ]
    widths = [max(len(line[column]) for line in table) for column in range(4)]
    for index, line in enumerate(table):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print(
        "\nEach rule's update and hyperparameters: python -c \"import descend; "
        'print(descend.rules.ADAM.describe())"'
    )
    return 0
