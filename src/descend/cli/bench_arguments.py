"""The arguments of ``descend bench``, ``descend lr-find`` and ``descend report``: their parsers,
the flags each registered task declares, and the checks that turn those flags into a benchmark's
inputs.

Registering these parsers imports no torch, Optuna or matplotlib: the task registry and the
sampler and pruner names come from light modules, and everything heavy is imported by the
function that needs it. The tasks, their descriptions and their own options (flags such as
``--data-dir``) are read from the task registry (:func:`descend.bench.tasks.register_task`).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from descend.bench.search import PRUNERS, SAMPLERS
from descend.bench.tasks import TaskOption, task_entries, task_names, task_options
from descend.cli.arguments import (
    finite_float,
    non_empty,
    non_negative_int,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
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


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand's parser, with every flag of its own and of the tasks."""
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
    add_run_options(parser)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--no-report``, which every command that trains tasks takes."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads (default 1: fastest for the small models)",
    )
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")


def add_lr_find_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``lr-find`` subcommand's parser, with every flag of its own and of the tasks."""
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
    return finder


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand's parser, with every flag of its own and of the tasks."""
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
    return report


def parse_lr_range(text: str | None) -> tuple[float, float] | None:
    """The ``--lr-range`` LOW:HIGH as two floats, or ``None`` when the flag is not given."""
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


def set_threads(count: int) -> None:
    """Give torch ``count`` CPU threads (``--threads``), refusing more than it can take."""
    import torch

    if count > MAX_THREADS:
        raise ValueError(
            f"--threads={count} is invalid: expected at most {MAX_THREADS} (this "
            f"machine has {os.cpu_count()} cores)"
        )
    torch.set_num_threads(count)


def selected_tasks(
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
