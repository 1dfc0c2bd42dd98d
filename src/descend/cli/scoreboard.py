"""``descend scoreboard``: optimizers ranked across workloads as AlgoPerf ranks submissions,
and the pass/fail suite.

Registering the command imports no torch, Optuna or matplotlib (its parser is
:mod:`descend.cli.scoreboard_arguments`); the run itself is
:func:`descend.bench.scoreboard.run_scoreboard`, on the bench's storage and studies.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from descend.cli.arguments import output_folder
from descend.cli.bench_arguments import set_threads
from descend.cli.bench_display import ProgressReporter, make_console
from descend.cli.scoreboard_arguments import add_scoreboard_parser, scoreboard_config

if TYPE_CHECKING:
    from rich.table import Table

    from descend.bench.scoreboard import ScoreboardResult


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scoreboard`` subcommand."""
    add_scoreboard_parser(subparsers).set_defaults(func=run_scoreboard_command)


class ScoreboardProgress(ProgressReporter):
    """The bench's progress bars, the overall one counting the suite's runs too."""

    #: What the overall bar counts.
    description = "runs (trials, seed reruns, suite runs)"

    def begin(self, total_runs: int, done_runs: int) -> None:
        """Size the overall bar; runs already stored count as done."""
        self.progress.update(
            self.runs,
            total=total_runs,
            completed=done_runs,
            description=self.description,
        )

    def run_started(self, task: str, label: str, phase: str, detail: str, epochs: int) -> None:
        """Show the run: a task's with its epoch bar, a suite problem's (no epochs to count)
        on the overall bar."""
        from rich.markup import escape

        if task != "suite":
            self.progress.update(self.runs, description=self.description)
            super().run_started(task, label, phase, detail, epochs)
            return
        self.progress.update(self.epochs, visible=False)
        self.progress.update(
            self.runs, description=escape(f"{self.description}: {label} {phase} {detail}")
        )


def score_table(result: ScoreboardResult) -> Table:
    """The scores, one optimizer a row, best first."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from descend.bench.scoreboard_output import optimizer_entries
    from descend.reporting import format_cell

    config = result.config
    budget = f"{config.tuning}, {config.trials} trials, {config.seeds} seed(s)" + (
        " (--quick: reduced budget)" if config.quick else ""
    )
    table = Table(
        title=escape(f"scoreboard: {len(result.tasks)} workload(s) + suite; {budget}"),
        box=box.SIMPLE_HEAD,
        caption="score: AlgoPerf's integrated performance profile (tau 1..4) of CPU seconds "
        "to target; steps: the same by optimizer steps; reached: workloads whose target the "
        "median seed reached; suite: problems passed",
    )
    for index, header in enumerate(["#", "optimizer", "score", "steps", "reached", "suite"]):
        table.add_column(header, justify="left" if index == 1 else "right", no_wrap=index < 2)
    table.add_column("suite problems failed", justify="left")
    for entry in optimizer_entries(result):
        suite = (
            f"{entry['suite_passed']}/{entry['suite_problems']}" if entry["suite_problems"] else "-"
        )
        table.add_row(
            str(entry["rank"]),
            escape(entry["optimizer"]),
            format_cell(entry["score"], 3),
            format_cell(entry["score_steps"], 3),
            f"{entry['workloads_reached']}/{len(result.tasks)}" if result.tasks else "-",
            suite,
            escape(", ".join(entry["suite_failed"]) or "-"),
        )
    return table


def _notes(result: ScoreboardResult) -> list[str]:
    from descend.bench.results import DISTURBED

    lines = [
        f"* {DISTURBED}: {entry.workload} {entry.optimizer}: {'; '.join(entry.timing)}"
        for entry in result.entries
        if entry.timing
    ]
    if result.suite_message:
        lines.append(result.suite_message)
    if result.config.left_out:
        lines.append(f"default workloads not available here: {', '.join(result.config.left_out)}")
    return lines


#: What every mistake in the command line ends with.
HELP = "see 'descend scoreboard --help'"


def check_jobs(jobs: int, threads: int) -> None:
    """Refuse more jobs than this machine has cores for at ``threads`` threads each."""
    import os

    cores = os.cpu_count() or 1
    if jobs * threads > cores:
        raise ValueError(
            f"--jobs={jobs} is invalid with --threads={threads}: expected jobs x threads at "
            f"most {cores} (this machine's cores)"
        )


def _checked(arguments: argparse.Namespace) -> Any:
    """The scoreboard the flags ask for, every input checked before anything runs; a mistake
    is a ``ValueError`` that points to the help."""
    try:
        config = scoreboard_config(arguments)
        output_folder(arguments.out)
        from descend.bench.scoreboard import Scoreboard

        set_threads(arguments.threads)
        check_jobs(arguments.jobs, arguments.threads)
        return Scoreboard(config)
    except ValueError as error:
        raise ValueError(f"{error}; {HELP}") from None


def run_scoreboard_command(arguments: argparse.Namespace) -> int:
    """Check every input, run what the scoreboard misses, print the scores, write the files."""
    scoreboard = _checked(arguments)
    config = scoreboard.config
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from descend.bench.jobs import LocalJobs
    from descend.bench.scoreboard import write_scoreboard

    console = make_console()
    console.print(
        escape(
            f"storage {scoreboard.display_url}, study {config.study!r}: "
            f"{len(config.optimizers)} optimizer(s) x {', '.join(config.workloads)}; "
            f"{config.tuning}, {config.trials} trials, {config.seeds} seed(s)"
            + (" (--quick: reduced budget)" if config.quick else "")
        )
    )
    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    jobs = LocalJobs(config, arguments.jobs - 1, arguments.threads)
    try:
        with jobs, Progress(*columns, console=console, transient=False) as progress:
            if jobs.count:
                console.print(
                    escape(f"{jobs.count} more job(s) share the runs; logs in {config.out}")
                )
            result = scoreboard.run(ScoreboardProgress(progress))
    except KeyboardInterrupt:
        console.print(
            escape(
                f"interrupted: finished runs are kept in {scoreboard.display_url}; "
                "rerun the same command to resume"
            )
        )
        raise
    # The command's own run returns once every run is stored (it waits for the jobs' runs,
    # and reruns a dead job's), so the result is whole even if a job failed.
    for line in jobs.failures():
        console.print(escape(line))
    written = write_scoreboard(result, report=not arguments.no_report)
    console.print(score_table(result))
    for line in _notes(result):
        console.print(escape(line))
    console.print(
        escape(
            f"ran {result.runs_ran} run(s) in {result.wall_seconds:.1f} s"
            + (" in this process" if jobs.count else "")
            + "; wrote "
            + " and ".join(map(str, written))
        )
    )
    return 0
