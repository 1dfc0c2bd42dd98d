"""``descend bench``, ``descend lr-find`` and ``descend report``: optimizers on real networks.

Registering these commands imports no torch, Optuna or matplotlib: their parsers
(:mod:`descend.cli.bench_arguments`) read only light modules, and everything heavy is imported by
the function that runs a command. What they print is drawn by :mod:`descend.cli.bench_display`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from descend.cli.arguments import output_folder
from descend.cli.bench_arguments import (
    add_bench_parser,
    add_lr_find_parser,
    add_report_parser,
    default_optimizers,
    given_task_options,
    parse_lr_range,
    selected_tasks,
    set_threads,
)
from descend.cli.bench_display import ProgressReporter, make_console, print_summary

if TYPE_CHECKING:
    from descend.bench.protocol import Bench


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench``, ``lr-find`` and ``report`` subcommands."""
    add_bench_parser(subparsers).set_defaults(func=run_bench_command)
    add_lr_find_parser(subparsers).set_defaults(func=run_lr_find_command)
    add_report_parser(subparsers).set_defaults(func=run_report_command)


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

    lr_range = parse_lr_range(arguments.lr_range)
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
    tasks = selected_tasks(
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
    set_threads(arguments.threads)
    bench = Bench(tasks, contenders, config)
    console = make_console()
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
    print_summary(console, bench.tasks, rows)
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
    console = make_console()
    print_summary(console, bench.tasks, rows)
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
    (task,) = selected_tasks(arguments.task, given_task_options(arguments), None, None)
    out = output_folder(arguments.out)
    set_threads(arguments.threads)
    console = make_console()
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
