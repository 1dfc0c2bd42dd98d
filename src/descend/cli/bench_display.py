"""What ``descend bench``, ``descend lr-find`` and ``descend report`` show on the terminal: the
console, the progress bars of a running benchmark and the summary table of its results.

Rich is imported by the functions that draw, so that registering the commands loads nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from descend.bench.config import Reporter

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

    from descend.bench.tasks import Task


def make_console() -> Any:
    """A rich console; when the output is not a terminal, one wide enough for the whole table."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # piped or logged: room for the whole table
    return console


class ProgressReporter(Reporter):
    """Rich progress bars: every run of the benchmark, and the epochs of the current one."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.runs = progress.add_task("runs", total=None)
        self.epochs = progress.add_task("epochs", total=None, visible=False)

    def begin(self, total_runs: int, done_runs: int) -> None:
        """Size the overall bar; runs already stored count as done."""
        self.progress.update(
            self.runs,
            total=total_runs,
            completed=done_runs,
            description="runs (tuning trials + seed reruns)",
        )

    def run_started(self, task: str, label: str, phase: str, detail: str, epochs: int) -> None:
        """Reset the epoch bar for the new run."""
        from rich.markup import escape

        self.progress.reset(
            self.epochs,
            total=epochs,
            visible=True,
            description=escape(f"{task} {label} {phase} {detail}"),
        )

    def epoch(self, metrics) -> None:
        """Advance the epoch bar."""
        self.progress.advance(self.epochs)

    def run_finished(self, outcome: str) -> None:
        """Advance the overall bar."""
        self.progress.advance(self.runs)

    def waiting(self, message: str) -> None:
        """Show what the worker waits for."""
        from rich.markup import escape

        self.progress.update(self.epochs, description=escape(message), visible=True)

    def notice(self, message: str) -> None:
        """Print the line above the bars."""
        from rich.markup import escape

        self.progress.console.print(escape(message))


#: Short headers of the terminal table (the report has the long ones).
TABLE_HEADERS = [
    "optimizer",
    "best setting",
    "tune val",
    "test",
    "ep→tgt",
    "s→tgt",
    "hit",
    "trials",
]


def summary_table(task: Task, rows: list[dict]) -> Table:
    """The results of ``task``'s ``rows`` as a table, one optimizer a row."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from descend.bench.results import summary_cells

    target = (
        "no target"
        if task.target is None
        else (
            f"target {task.target * 100:.1f}% val"
            if task.metric == "accuracy"
            else f"target val loss {task.target:g}"
        )
    )
    unit = "accuracy %" if task.metric == "accuracy" else "loss"
    table = Table(
        title=escape(f"{task.name}: {task.description}, {task.epochs} epochs, {target} ({unit})"),
        box=box.SIMPLE_HEAD,
        caption="tune val: best trial's final validation score; test: over seed "
        "reruns; ep/s→tgt: epochs/training seconds to target, median over "
        "seeds (* timing disturbed); hit: seeds that reached it; trials "
        "(pruned/diverged)",
    )
    for index, header in enumerate(TABLE_HEADERS):
        table.add_column(header, justify="left" if index < 2 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(escape(cell) for cell in summary_cells(row, task.metric)))
    return table


def print_summary(console: Any, tasks: list[Task], rows: list[dict]) -> None:
    """Print each task's summary table, then its timing notes."""
    from rich.markup import escape

    from descend.bench.results import timing_lines

    for task in tasks:
        mine = [row for row in rows if row["task"] == task.name]
        console.print(summary_table(task, mine))
        for line in timing_lines(mine):
            console.print(escape(line))
