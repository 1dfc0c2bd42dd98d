"""The arguments of ``descend scoreboard``: its parser, and the checks that turn its flags into
a :class:`~descend.bench.scoreboard_settings.ScoreboardConfig`.

Registering the parser and checking the flags import no torch, Optuna or matplotlib: the
workloads come from the task registry and the defaults from
:mod:`descend.bench.scoreboard_settings`; optimizer names are checked against the rule
registry before any optimizer is built.
"""

from __future__ import annotations

import argparse

from descend.bench.scoreboard_settings import (
    DEFAULT_SEEDS,
    DEFAULT_TRIALS,
    DEFAULT_WORKLOADS,
    NEWER_OPTIMIZERS,
    QUICK_SEEDS,
    QUICK_TRIALS,
    QUICK_WORKLOADS,
    ScoreboardConfig,
    workload_names,
)
from descend.cli.arguments import non_empty, non_negative_int, positive_int
from descend.cli.bench_arguments import add_run_options, add_task_options, given_task_options
from descend.suggest import unknown_name


def add_scoreboard_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``scoreboard`` subcommand's parser."""
    parser = subparsers.add_parser(
        "scoreboard",
        help="rank optimizers across workloads as AlgoPerf does, plus a pass/fail suite",
        description="Run every optimizer on every workload as a bench study (tuning trials, "
        "then the chosen setting over seeds), measure the time to each workload's target "
        "in steps and in CPU seconds, and score the optimizers as AlgoPerf does: "
        "performance ratios against the fastest, performance profiles for tau from 1 to 4, "
        "and their integrated score. The workload 'suite' is the pass/fail suite of hard "
        "problems: each optimizer gets a fixed budget of learning rates per problem; its "
        "success rate and the problems it fails are reported. Writes results.json and "
        "report.html to --out; every run is stored as it finishes, so rerunning the same "
        "command resumes it, and workers sharing --storage and --study share the runs.",
    )
    parser.add_argument(
        "--optimizers",
        action="append",
        help="optimizer specs, comma-separated or repeated (adam, sgd_momentum:momentum=0.8, "
        "torch.optim.AdamW); a spec that sets lr is not tuned (default: the lecture's "
        f"optimizers and {', '.join(NEWER_OPTIMIZERS)}; with --quick the lecture's)",
    )
    parser.add_argument(
        "--workloads",
        type=non_empty,
        help="workloads, comma-separated: " + ", ".join(workload_names()) + " (default "
        f"{','.join(DEFAULT_WORKLOADS)}; with --quick {','.join(QUICK_WORKLOADS)})",
    )
    parser.add_argument(
        "--trials",
        type=non_negative_int,
        help="tuning trials per workload and learning rates per suite problem, drawn from "
        "each optimizer's range in the rule registry (external tuning); 0: self-tuning, "
        f"the optimizers' defaults (default {DEFAULT_TRIALS}; --quick {QUICK_TRIALS})",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        help=f"reruns of each chosen setting (default {DEFAULT_SEEDS}; --quick {QUICK_SEEDS})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a reduced budget, said on the page: "
        f"{QUICK_TRIALS} trials, {QUICK_SEEDS} seed, the lecture's optimizers, workloads "
        f"{','.join(QUICK_WORKLOADS)} (each only where not given)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, help="epochs per run of a task (default: the task's)"
    )
    parser.add_argument(
        "--out",
        type=non_empty,
        default="scoreboard-out",
        help="output folder: report.html, results.json, bench.db (default scoreboard-out)",
    )
    parser.add_argument(
        "--storage",
        type=non_empty,
        help="Optuna storage URL shared by workers, e.g. postgresql://user@host/db "
        "(default: sqlite file in --out); a password in it is never printed or written",
    )
    parser.add_argument(
        "--study",
        type=non_empty,
        default="scoreboard",
        help="study name prefix; workers with the same --storage and --study share the "
        "runs (default scoreboard)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="worker processes on this machine sharing the runs, each with --threads "
        "threads (default 1; on two cores, 2 runs two long runs at a time); their output "
        "goes to job-K.log in --out",
    )
    add_task_options(parser)
    add_run_options(parser)
    return parser


def _split(text: str) -> list[str]:
    return [piece.strip() for piece in text.split(",") if piece.strip()]


def check_optimizer_names(specs: list[str]) -> None:
    """Raise the error for the first spec whose optimizer name is not registered (with the
    closest name), without building anything, so a typo answers before torch loads."""
    from descend.rules import NAMES

    for spec in specs:
        name = spec.strip().partition(":")[0].strip()
        if not name.startswith("torch.optim.") and name not in NAMES:
            raise unknown_name(
                "optimizer",
                name,
                list(NAMES),
                spec,
                also="or torch.optim.<Class> such as torch.optim.AdamW",
            )


def scoreboard_config(arguments: argparse.Namespace) -> ScoreboardConfig:
    """The scoreboard the flags ask for, every name checked (torch not loaded)."""
    from descend.specs import split_specs

    specs = split_specs(arguments.optimizers or [])
    if arguments.optimizers and not specs:
        raise ValueError(
            f"--optimizers={','.join(arguments.optimizers)!r} is invalid: expected one or "
            "more optimizer specs, such as adam,sgd_momentum"
        )
    check_optimizer_names(specs)
    workloads: list[str] = []
    if arguments.workloads is not None:
        workloads = _split(arguments.workloads)
        if not workloads:
            raise ValueError(
                f"--workloads={arguments.workloads!r} is invalid: expected one or more of "
                + ", ".join(workload_names())
            )
    try:
        return ScoreboardConfig(
            optimizers=specs,
            workloads=workloads,
            trials=arguments.trials,
            seeds=arguments.seeds,
            quick=arguments.quick,
            epochs=arguments.epochs,
            out=arguments.out,
            storage=arguments.storage,
            study=arguments.study,
            task_options=given_task_options(arguments),
        )
    except ValueError as error:
        message = str(error)
        if message.startswith("unknown workload"):
            raise ValueError(f"--workloads: {message}") from None
        raise
