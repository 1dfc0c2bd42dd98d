"""``descend bench``, ``descend lr-find`` and ``descend report``: optimizers on real networks.

Registering these commands imports no torch, Optuna or matplotlib: the task registry and the
sampler and pruner names come from light modules, and everything heavy is imported by the
function that runs a command. The tasks, their descriptions and their own options (flags such
as ``--data-dir``) are read from the task registry (:func:`descend.bench.tasks.register_task`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from descend.bench.config import Reporter
from descend.bench.search import PRUNERS, SAMPLERS
from descend.bench.tasks import TaskOption, task_entries, task_names, task_options
from descend.cli.arguments import (
    finite_float,
    non_empty,
    non_negative_int,
    output_folder,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

    from descend.bench.protocol import Bench
    from descend.bench.tasks import Task


def default_optimizers() -> str:
    """The default line-up: the lecture's optimizers, from the rule registry (read when a
    command runs, so that help and argument errors load nothing)."""
    from descend.rules import lecture_rules

    return ",".join(rule.name for rule in lecture_rules())


def tasks_listing() -> str:
    """Every registered task, its description and the flags of its own options."""
    parts = []
    for entry in task_entries():
        flags = [
            ("needs " if option.required else "takes ") + option.flag for option in entry.declared
        ]
        parts.append(
            f"{entry.name}: {entry.description}" + (f" ({', '.join(flags)})" if flags else "")
        )
    return "; ".join(parts)


def _option_type(option: TaskOption) -> Any:
    """The argparse type of a task option: a non-empty text, parsed by the option's type."""

    def parse(text: str) -> Any:
        text = non_empty(text)
        try:
            return option.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {getattr(option.parse, '__name__', 'a value')}, got {text!r}"
            ) from None

    return non_empty if option.parse is str else parse


def add_task_options(parser: argparse.ArgumentParser) -> None:
    """One flag per option any registered task declares (``data_dir``: ``--data-dir``),
    handed only to the tasks that declare it."""
    taken = {flag for action in parser._actions for flag in action.option_strings}
    for name, (option, owners) in task_options().items():
        if option.flag in taken:
            raise ValueError(
                f"option {name!r} of task {', '.join(owners)} clashes with "
                f"{parser.prog}'s own {option.flag}; rename the option"
            )
        parser.add_argument(
            option.flag,
            dest=name,
            type=_option_type(option),
            help=f"{option.help} (task {', '.join(owners)})",
        )


def given_task_options(arguments: argparse.Namespace) -> dict[str, Any]:
    """The task options given on the command line, by name."""
    return {
        name: getattr(arguments, name)
        for name in task_options()
        if getattr(arguments, name, None) is not None
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench``, ``lr-find`` and ``report`` subcommands."""
    tasks_help = tasks_listing()
    parser = subparsers.add_parser(
        "bench",
        help="tune, seed and race optimizers on real networks",
        description="Tune each optimizer's learning rate with Optuna, rerun the best setting "
        "over seeds, and report test accuracy, time to target and performance "
        "profiles. Trials are stored as they finish: rerun the same command to "
        "resume. Seconds to target are flagged 'timing disturbed' when a run's "
        "wall time is far above its CPU time or its step time is far from the "
        "other runs' on the task; epochs to target are the primary figure. "
        "Tasks: " + tasks_help,
    )
    parser.add_argument(
        "--task",
        type=non_empty,
        default="digits-mlp",
        help="task name(s), comma-separated (default digits-mlp): " + ", ".join(task_names()),
    )
    parser.add_argument(
        "--optimizers",
        action="append",
        help="optimizer specs, comma-separated or repeated, as in the lab: "
        "sgd, adam:betas=(0.9,0.99), torch.optim.SGD:momentum=0.9; a "
        "spec that sets lr is not tuned (default "
        "every optimizer of the lecture, as descend.rules lists them)",
    )
    parser.add_argument(
        "--schedules",
        type=non_empty,
        default="constant",
        help="learning-rate schedules to cross with every optimizer, "
        "comma-separated: constant, step, exponential, 1/t, cosine, or a "
        "spec such as step:step_size=5,gamma=0.1 (stepped per epoch; "
        "default constant)",
    )
    parser.add_argument(
        "--trials",
        type=non_negative_int,
        default=8,
        help="tuning trials per optimizer (default 8; 0: no tuning)",
    )
    parser.add_argument(
        "--seeds", type=positive_int, default=3, help="reruns of the best setting (default 3)"
    )
    parser.add_argument("--epochs", type=positive_int, help="epochs per run (default: the task's)")
    parser.add_argument(
        "--batch-size", type=positive_int, help="training batch size (default: the task's)"
    )
    parser.add_argument(
        "--target",
        type=finite_float,
        help="validation accuracy in (0, 1] that counts as reached (default: the task's)",
    )
    parser.add_argument(
        "--lr-range",
        metavar="LOW:HIGH",
        help="log-uniform learning-rate range for every optimizer (default: one per optimizer)",
    )
    parser.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="NAME=LOW:HIGH[:linear]",
        help="also tune this hyperparameter, e.g. momentum=0.5:0.99:linear (repeatable)",
    )
    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="tpe",
        help="Optuna sampler (default tpe: the first half of the trials spread "
        "evenly over the log range, then TPE refines)",
    )
    parser.add_argument(
        "--pruner",
        choices=PRUNERS,
        default="median",
        help="Optuna pruner for hopeless trials (default median)",
    )
    parser.add_argument(
        "--out",
        type=non_empty,
        default="bench-out",
        help="output folder: report.html, results.json, bench.db",
    )
    parser.add_argument(
        "--storage",
        type=non_empty,
        help="Optuna storage URL, e.g. sqlite:///runs.db or "
        "postgresql://user@host/db (default: sqlite file in --out); a "
        "password in it is never printed or written",
    )
    parser.add_argument(
        "--study",
        type=non_empty,
        default="bench",
        help="study name prefix; workers with the same --storage and --study "
        "share the budget (default bench)",
    )
    add_task_options(parser)
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads (default 1: fastest for the small models)",
    )
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.set_defaults(func=run_bench_command)

    finder = subparsers.add_parser(
        "lr-find",
        help="learning-rate range test with suggested rates",
        description="Train once while raising the learning rate exponentially; plot the raw "
        "and smoothed loss against the rate and suggest rates as fastai does: "
        "the valley (recommended), the steepest descent, and a tenth of the "
        "minimum. From Python: descend.bench.lr_find.",
    )
    finder.add_argument(
        "--task",
        type=non_empty,
        default="digits-mlp",
        help="a registered task (default digits-mlp): " + ", ".join(task_names()),
    )
    finder.add_argument(
        "--optimizer", type=non_empty, default="sgd", help="optimizer spec (default sgd)"
    )
    finder.add_argument(
        "--start-lr", type=positive_float, default=1e-7, help="first learning rate (default 1e-7)"
    )
    finder.add_argument(
        "--end-lr", type=positive_float, default=10.0, help="last learning rate (default 10)"
    )
    finder.add_argument(
        "--steps", type=positive_int, default=200, help="steps of the test (default 200)"
    )
    finder.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    finder.add_argument(
        "--out", type=non_empty, default="bench-out", help="folder for lr-find-<task>.png/json"
    )
    add_task_options(finder)
    finder.add_argument(
        "--threads", type=positive_int, default=1, help="torch CPU threads (default 1)"
    )
    finder.set_defaults(func=run_lr_find_command)

    report = subparsers.add_parser(
        "report",
        help="write the merged report of a benchmark from its shared storage",
        description="Read every finished trial of a benchmark from its storage (e.g. the "
        "PostgreSQL database its workers share) and write results.json and "
        "report.html; prints the summary table. Runs no trial and creates no "
        "storage.",
    )
    report.add_argument(
        "--storage",
        type=non_empty,
        required=True,
        help="the storage URL the workers used, e.g. "
        "postgresql://user:password@host/db or sqlite:///bench.db",
    )
    report.add_argument(
        "--study", type=non_empty, default="bench", help="the workers' --study (default bench)"
    )
    report.add_argument(
        "--out",
        type=non_empty,
        default="bench-out",
        help="folder for report.html and results.json (default bench-out)",
    )
    add_task_options(report)
    report.set_defaults(func=run_report_command)


def _lr_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    low, sep, high = text.partition(":")
    try:
        values = float(low), float(high)
        if not sep or not 0 < values[0] < values[1] < float("inf"):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"--lr-range={text!r} is invalid: expected LOW:HIGH with 0 < LOW < HIGH, such as 1e-4:1"
        ) from None
    return values


#: The most threads torch takes (a C int); more than the machine's cores only slows a run.
MAX_THREADS = 2**31 - 1


def _threads(count: int) -> None:
    import torch

    if count > MAX_THREADS:
        raise ValueError(
            f"--threads={count} is invalid: expected at most {MAX_THREADS} (this "
            f"machine has {os.cpu_count()} cores)"
        )
    torch.set_num_threads(count)


def _tasks(
    text: str, options: dict[str, Any], batch_size: int | None, target: float | None
) -> list[Task]:
    """The registered tasks named in ``text``, each given only its own ``options``; names and
    options are checked before any data loads."""
    from descend.bench.tasks import get_tasks

    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--task={text!r} is invalid: expected one or more task names")
    tasks = []
    for task in get_tasks(names, options):
        try:
            tasks.append(task.with_options(batch_size=batch_size, target=target))
        except ValueError as error:
            raise ValueError(f"--target: {error}") from None
    return tasks


def _console() -> Any:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # piped or logged: room for the whole table
    return console


@contextlib.contextmanager
def _storage_errors(bench: Bench) -> Iterator[None]:
    """Turn a storage that fails mid-run (a corrupted file, a lost server) into one line,
    the password masked."""
    import optuna
    import sqlalchemy.exc

    from descend.bench.storage import redact

    try:
        yield
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as error:
        text = str(getattr(error, "orig", None) or error).strip()
        reason = redact(text.splitlines()[0] if text else type(error).__name__, bench.url)
        raise ValueError(
            f"the storage {bench.display_url} failed: {reason}; trials finished "
            "before it stay where they were written"
        ) from None


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


def _summary_table(task: Task, rows: list[dict]) -> Table:
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


def _print_summary(console: Any, tasks: list[Task], rows: list[dict]) -> None:
    from rich.markup import escape

    from descend.bench.results import timing_lines

    for task in tasks:
        mine = [row for row in rows if row["task"] == task.name]
        console.print(_summary_table(task, mine))
        for line in timing_lines(mine):
            console.print(escape(line))


def run_bench_command(arguments: argparse.Namespace) -> int:
    """Check every input, run what the budgets miss, print the table, write the report."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from descend.bench.protocol import Bench, BenchConfig, make_contender, write_outputs
    from descend.specs import split_specs

    lr_range = _lr_range(arguments.lr_range)
    specs = split_specs(arguments.optimizers or [default_optimizers()])
    schedules = split_specs([arguments.schedules])
    if not schedules:
        raise ValueError(
            f"--schedules={arguments.schedules!r} is invalid: expected one or "
            "more schedules, such as constant or constant,cosine"
        )
    contenders = [
        make_contender(spec, schedule, lr_range, arguments.tune)
        for spec in specs
        for schedule in schedules
    ]
    tasks = _tasks(
        arguments.task, given_task_options(arguments), arguments.batch_size, arguments.target
    )
    out = output_folder(arguments.out)
    config = BenchConfig(
        trials=arguments.trials,
        seeds=arguments.seeds,
        epochs=arguments.epochs,
        sampler=arguments.sampler,
        pruner=arguments.pruner,
        out=out,
        storage=arguments.storage,
        study=arguments.study,
    )
    _threads(arguments.threads)
    bench = Bench(tasks, contenders, config)
    console = _console()
    console.print(
        escape(
            f"storage {bench.display_url}, study {config.study!r}: {len(tasks)} "
            f"task(s) x {len(contenders)} optimizer(s) x ({config.trials} trials "
            f"+ {config.seeds} seeds)"
        )
    )
    try:
        with (
            _storage_errors(bench),
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress,
        ):
            results = bench.run(ProgressReporter(progress))
    except KeyboardInterrupt:
        console.print(
            escape(
                f"interrupted: finished trials are kept in {bench.display_url}; "
                "rerun the same command to resume"
            )
        )
        raise
    with _storage_errors(bench):
        rows = write_outputs(bench, results, report=not arguments.no_report)
    _print_summary(console, bench.tasks, rows)
    console.print(
        escape(
            f"wrote {out / 'results.json'}"
            + ("" if arguments.no_report else f" and {out / 'report.html'}")
        )
    )
    return 0


def run_report_command(arguments: argparse.Namespace) -> int:
    """Rebuild a benchmark from its storage, print its table and write its report."""
    from rich.markup import escape

    from descend.bench.protocol import Bench, write_outputs

    out = output_folder(arguments.out)
    bench = Bench.from_storage(
        arguments.storage, arguments.study, out, **given_task_options(arguments)
    )
    with _storage_errors(bench):
        rows = write_outputs(bench, bench.results())
    console = _console()
    _print_summary(console, bench.tasks, rows)
    console.print(escape(f"wrote {out / 'results.json'} and {out / 'report.html'}"))
    return 0


def run_lr_find_command(arguments: argparse.Namespace) -> int:
    """Run the range test on a registered task; print the suggestions, save plot and data."""
    from rich.markup import escape

    from descend.bench.lrfind import lr_find
    from descend.specs import parse_optimizer

    if not arguments.start_lr < arguments.end_lr:
        raise ValueError(
            f"--start-lr={arguments.start_lr:g} and --end-lr={arguments.end_lr:g} "
            "are invalid: expected --start-lr < --end-lr"
        )
    if arguments.steps < 5:
        raise ValueError(f"--steps={arguments.steps} is invalid: expected >= 5")
    spec = parse_optimizer(arguments.optimizer)
    (task,) = _tasks(arguments.task, given_task_options(arguments), None, None)
    out = output_folder(arguments.out)
    _threads(arguments.threads)
    console = _console()
    with console.status(escape(f"range test of {spec.label} on {task.name}...")):
        result = lr_find(
            task, spec, arguments.start_lr, arguments.end_lr, arguments.steps, arguments.seed
        )
    stem = f"lr-find-{task.name}-{spec.name}"
    (out / f"{stem}.json").write_text(
        json.dumps({"task": task.name, "optimizer": spec.label, **result.to_dict()}, indent=1)
    )
    result.plot(str(out / f"{stem}.png"), f"{task.name}, {spec.label}: learning-rate range test")
    found = result.suggestions
    steepest = "-" if found.steepest is None else f"{found.steepest:.3g}"
    console.print(
        escape(
            f"{task.name}, {spec.label}: suggested lr {found.valley:.3g} (valley); "
            f"steepest descent at {steepest}; minimum/10 {found.minimum:.3g}; "
            f"lowest raw loss at {result.raw_min_lr:.3g}"
        )
        + (" (the loss blew up before --end-lr)" if result.stopped_early else "")
    )
    console.print(escape(f"wrote {out / (stem + '.png')} and {out / (stem + '.json')}"))
    return 0
