"""``descend bench`` and ``descend lr-find``: optimizers on real networks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

DEFAULT_OPTIMIZERS = "sgd,sgd_momentum,nesterov,adagrad,rmsprop,adam"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` and ``lr-find`` subcommands."""
    from descend.bench.protocol import PRUNERS, SAMPLERS
    from descend.bench.tasks import TASKS

    tasks_help = "; ".join(f"{name}: {description}" for name, (_, description) in TASKS.items())
    parser = subparsers.add_parser(
        "bench", help="tune, seed and race optimizers on real networks",
        description="Tune each optimizer's learning rate with Optuna, rerun the best setting "
                    "over seeds, and report test accuracy, time to target and performance "
                    "profiles. Trials are stored as they finish: rerun the same command to "
                    "resume. Tasks: " + tasks_help)
    parser.add_argument("--task", default="digits-mlp",
                        help="task name(s), comma-separated (default digits-mlp)")
    parser.add_argument("--optimizers", action="append",
                        help="optimizer specs, comma-separated or repeated, as in the lab: "
                             "sgd, adam:betas=(0.9,0.99), torch.optim.SGD:momentum=0.9; a "
                             "spec that sets lr is not tuned (default "
                             f"{DEFAULT_OPTIMIZERS})")
    parser.add_argument("--schedules", default="constant",
                        help="learning-rate schedules to cross with every optimizer, "
                             "comma-separated: constant, step, exponential, 1/t, cosine, or a "
                             "spec such as step:step_size=5,gamma=0.1 (stepped per epoch; "
                             "default constant)")
    parser.add_argument("--trials", type=int, default=8,
                        help="tuning trials per optimizer (default 8)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="reruns of the best setting (default 3)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: the task's)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default: task's)")
    parser.add_argument("--target", type=float,
                        help="validation accuracy that counts as reached (default: task's)")
    parser.add_argument("--lr-range", metavar="LOW:HIGH",
                        help="log-uniform learning-rate range for every optimizer (default: "
                             "one per optimizer)")
    parser.add_argument("--tune", action="append", default=[], metavar="NAME=LOW:HIGH[:linear]",
                        help="also tune this hyperparameter, e.g. momentum=0.5:0.99:linear "
                             "(repeatable)")
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                        help="Optuna sampler (default tpe: the first half of the trials spread "
                             "evenly over the log range, then TPE refines)")
    parser.add_argument("--pruner", choices=PRUNERS, default="median",
                        help="Optuna pruner for hopeless trials (default median)")
    parser.add_argument("--out", default="bench-out",
                        help="output folder: report.html, results.json, bench.db")
    parser.add_argument("--storage",
                        help="Optuna storage URL, e.g. sqlite:///runs.db or "
                             "postgresql://user@host/db (default: sqlite file in --out)")
    parser.add_argument("--study", default="bench",
                        help="study name prefix; workers with the same --storage and --study "
                             "share the budget (default bench)")
    parser.add_argument("--data-dir", help="CIFAR-10 python batches folder (cifar10-cnn)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fastest for the small models)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.set_defaults(func=run_bench_command)

    finder = subparsers.add_parser(
        "lr-find", help="learning-rate range test with a suggested rate",
        description="Train once while raising the learning rate exponentially; plot loss "
                    "against rate and suggest a rate (a tenth of the one at the lowest loss).")
    finder.add_argument("--task", default="digits-mlp", help="a built-in task")
    finder.add_argument("--optimizer", default="sgd", help="optimizer spec (default sgd)")
    finder.add_argument("--start-lr", type=float, default=1e-7)
    finder.add_argument("--end-lr", type=float, default=10.0)
    finder.add_argument("--steps", type=int, default=200, help="steps of the test")
    finder.add_argument("--seed", type=int, default=0)
    finder.add_argument("--out", default="bench-out", help="folder for lr-find-<task>.png/json")
    finder.add_argument("--data-dir", help="CIFAR-10 python batches folder (cifar10-cnn)")
    finder.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    finder.set_defaults(func=run_lr_find_command)

    report = subparsers.add_parser(
        "report", help="write the merged report of a benchmark from its shared storage",
        description="Read every finished trial of a benchmark from its storage (e.g. the "
                    "PostgreSQL database its workers share) and write results.json and "
                    "report.html; prints the summary table. Runs no trial.")
    report.add_argument("--storage", required=True,
                        help="the storage URL the workers used, e.g. "
                             "postgresql://user:password@host/db or sqlite:///bench.db")
    report.add_argument("--study", default="bench", help="the workers' --study (default bench)")
    report.add_argument("--out", default="bench-out",
                        help="folder for report.html and results.json (default bench-out)")
    report.add_argument("--data-dir", help="CIFAR-10's directory, if the benchmark used it")
    report.set_defaults(func=run_report_command)


def split_specs(texts: list[str]) -> list[str]:
    """Optimizer specs from comma-separated lists.

    A spec's own arguments also use commas (``nesterov:lr=1e-3,momentum=0.9``): a piece with
    ``=`` but no ``:`` continues the spec before it.
    """
    from descend.specs import split_top_level

    specs: list[str] = []
    for text in texts:
        for piece in split_top_level(text.replace(";", ",")):
            if specs and "=" in piece and ":" not in piece.split("=", 1)[0]:
                specs[-1] += "," + piece
            else:
                specs.append(piece)
    return specs


def _lr_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    low, sep, high = text.partition(":")
    try:
        values = float(low), float(high)
        if not sep or not 0 < values[0] < values[1]:
            raise ValueError
    except ValueError:
        raise ValueError(f"--lr-range={text!r} is invalid: expected LOW:HIGH with "
                         "0 < LOW < HIGH, such as 1e-4:1") from None
    return values


def _threads(count: int) -> None:
    if count < 1:
        raise ValueError(f"--threads={count!r} is invalid: expected >= 1")
    torch.set_num_threads(count)


class ProgressReporter:
    """Rich progress bars: every run of the benchmark, and the epochs of the current one."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.runs = progress.add_task("runs", total=None)
        self.epochs = progress.add_task("epochs", total=None, visible=False)

    def begin(self, total_runs: int, done_runs: int) -> None:
        """Size the overall bar; runs already stored count as done."""
        self.progress.update(self.runs, total=total_runs, completed=done_runs,
                             description="runs (tuning trials + seed reruns)")

    def run_started(self, task: str, label: str, phase: str, detail: str, epochs: int) -> None:
        """Reset the epoch bar for the new run."""
        self.progress.reset(self.epochs, total=epochs, visible=True,
                            description=f"{task} {label} {phase} {detail}")

    def epoch(self, metrics) -> None:
        """Advance the epoch bar."""
        self.progress.advance(self.epochs)

    def run_finished(self, outcome: str) -> None:
        """Advance the overall bar."""
        self.progress.advance(self.runs)

    def waiting(self, message: str) -> None:
        """Show what the worker waits for."""
        self.progress.update(self.epochs, description=message, visible=True)


#: Short headers of the terminal table (the report has the long ones).
TABLE_HEADERS = ["optimizer", "best setting", "tune val", "test", "ep→tgt", "s→tgt", "hit",
                 "trials"]


def _summary_table(task, rows: list[dict]) -> Table:
    from descend.bench.report import summary_cells

    target = "no target" if task.target is None else (
        f"target {task.target * 100:.1f}% val" if task.metric == "accuracy"
        else f"target val loss {task.target:g}")
    unit = "accuracy %" if task.metric == "accuracy" else "loss"
    table = Table(title=f"{task.name}: {task.description}, {task.epochs} epochs, {target} "
                        f"({unit})",
                  box=box.SIMPLE_HEAD,
                  caption="tune val: best trial's final validation score; test: over seed "
                          "reruns; ep/s→tgt: epochs/training seconds to target, median over "
                          "seeds; hit: seeds that reached it; trials (pruned/diverged)")
    for index, header in enumerate(TABLE_HEADERS):
        table.add_column(header, justify="left" if index < 2 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*summary_cells(row, task.metric))
    return table


def run_bench_command(arguments: argparse.Namespace) -> int:
    """Check every input, run what the budgets miss, print the table, write the report."""
    from descend.bench.protocol import Bench, BenchConfig, make_contender, write_outputs
    from descend.bench.tasks import get_task

    _threads(arguments.threads)
    lr_range = _lr_range(arguments.lr_range)
    specs = split_specs(arguments.optimizers or [DEFAULT_OPTIMIZERS])
    schedules = split_specs([arguments.schedules])
    contenders = [make_contender(spec, schedule, lr_range, arguments.tune)
                  for spec in specs for schedule in schedules]
    names = [name.strip() for name in arguments.task.split(",") if name.strip()]
    tasks = [get_task(name, arguments.data_dir).with_options(
        batch_size=arguments.batch_size, target=arguments.target) for name in names]
    config = BenchConfig(trials=arguments.trials, seeds=arguments.seeds, epochs=arguments.epochs,
                         sampler=arguments.sampler, pruner=arguments.pruner,
                         out=Path(arguments.out), storage=arguments.storage,
                         study=arguments.study)
    bench = Bench(tasks, contenders, config)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # piped or logged: room for the whole table
    console.print(f"storage {bench.url}, study {config.study!r}: {len(tasks)} task(s) x "
                  f"{len(contenders)} optimizer(s) x ({config.trials} trials + {config.seeds} "
                  "seeds)")
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=False) as progress:
            results = bench.run(ProgressReporter(progress))
    except KeyboardInterrupt:
        console.print(f"interrupted: finished trials are kept in {bench.url}; rerun the same "
                      "command to resume")
        raise
    rows = write_outputs(bench, results, report=not arguments.no_report)
    for task in bench.tasks:
        console.print(_summary_table(task, [row for row in rows if row["task"] == task.name]))
    out = config.out
    console.print(f"wrote {out / 'results.json'}"
                  + ("" if arguments.no_report else f" and {out / 'report.html'}"))
    return 0


def run_report_command(arguments: argparse.Namespace) -> int:
    """Rebuild a benchmark from its storage, print its table and write its report."""
    from descend.bench.protocol import Bench, write_outputs

    bench = Bench.from_storage(arguments.storage, arguments.study, Path(arguments.out),
                               arguments.data_dir)
    rows = write_outputs(bench, bench.results())
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    for task in bench.tasks:
        console.print(_summary_table(task, [row for row in rows if row["task"] == task.name]))
    console.print(f"wrote {bench.config.out / 'results.json'} and "
                  f"{bench.config.out / 'report.html'}")
    return 0


def run_lr_find_command(arguments: argparse.Namespace) -> int:
    """Run the range test on a built-in task; print the suggestion, save plot and data."""
    from descend.bench.lrfind import lr_find
    from descend.bench.tasks import get_task
    from descend.specs import parse_optimizer

    _threads(arguments.threads)
    spec = parse_optimizer(arguments.optimizer)
    task = get_task(arguments.task, arguments.data_dir)
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    with console.status(f"range test of {spec.label} on {task.name}..."):
        result = lr_find(task, spec, arguments.start_lr, arguments.end_lr, arguments.steps,
                         arguments.seed)
    stem = f"lr-find-{task.name}-{spec.name}"
    result.plot(str(out / f"{stem}.png"), f"{task.name}, {spec.label}: learning-rate range test")
    (out / f"{stem}.json").write_text(json.dumps({
        "task": task.name, "optimizer": spec.label, "lrs": result.lrs, "losses": result.losses,
        "smoothed": result.smoothed, "suggestion": result.suggestion, "min_lr": result.min_lr,
        "steepest": result.steepest}, indent=1))
    steepest = "-" if result.steepest is None else f"{result.steepest:.3g}"
    console.print(f"{task.name}, {spec.label}: lowest loss at lr {result.min_lr:.3g}; steepest "
                  f"descent at lr {steepest}; suggested lr [bold]{result.suggestion:.3g}[/bold]"
                  + (" (loss blew up before end-lr)" if result.stopped_early else ""))
    console.print(f"wrote {out / (stem + '.png')} and {out / (stem + '.json')}")
    return 0
