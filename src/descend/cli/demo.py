"""``descend demo``: the whole tour of the problems of SGD, into an HTML report folder."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from descend.cli.arguments import non_empty, non_negative_int, output_folder

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table as RichTable

    from descend.lab.report import Section, Table

# The tour (and torch, matplotlib and rich with it) is imported inside the functions that use
# it, so that ``descend demo --help`` and argument errors answer before any of it loads.

DEFAULT_OUT = "descend-report"


def description() -> str:
    """What ``descend demo --help`` says, with the tour's sections read from its registry."""
    from descend.lab.sections import SECTION_TABLE

    sections = "\n".join(
        f"  {number}. {title}" for number, (_, title, _) in enumerate(SECTION_TABLE, start=1)
    )
    return (
        "Run the lab's tour, print a summary, and write an offline HTML report with "
        f"figures. Its sections:\n{sections}"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="the tour: the problems of SGD, measured, drawn and explained",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=non_empty,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"report folder (default ./{DEFAULT_OUT}/)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller grids and studies: the same report in a fraction of the "
        "time (claims the shorter runs do not support are marked)",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run)


def rich_table(table: Table) -> RichTable:
    """A report table as a rich table for the terminal."""
    from rich.table import Table as RichTable

    out = RichTable(title=table.title, title_justify="left", title_style="bold")
    for column in table.columns:
        out.add_column(column, overflow="fold")
    for row in table.cells():
        out.add_row(*row)
    return out


def _print_section(console: Console, section: Section) -> None:
    console.rule(f"[bold]{section.heading}[/bold]  ({section.seconds:.1f} s)")
    for table in section.tables:
        console.print(rich_table(table.summary()))
    for claim in section.claims:
        if not claim.holds:
            console.print(
                f"[yellow]Not shown by this run:[/yellow] {claim.statement}. {claim.evidence}"
            )


def run(arguments: argparse.Namespace) -> int:
    """Run the tour with a progress bar, printing each section's tables as it finishes."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from descend.lab.tour import TourSettings, run_tour, total_runs

    out = output_folder(arguments.out)
    console = Console()
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} runs"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        settings = TourSettings(quick=arguments.quick, seed=arguments.seed)
        task = progress.add_task("starting", total=total_runs(settings))
        run_tour(
            out,
            settings,
            progress=lambda description, advance: progress.update(
                task, description=description, advance=advance
            ),
            on_section=lambda section: _print_section(progress.console, section),
        )
    seconds = time.perf_counter() - started
    console.print(
        f"\nReport written to [bold]{escape(str(out / 'index.html'))}[/bold] "
        f"(open it in a browser; it works offline) in {seconds:.1f} s. "
        "To change the settings and watch the runs move: descend playground"
    )
    return 0
