"""What a scoreboard runs: its optimizers, workloads and budget (:class:`ScoreboardConfig`).

Light on purpose (no torch, Optuna or NumPy at import): the command line checks its flags and
writes its help from here before anything heavy loads. The optimizers' names come from the
rule registry when a default is needed; the workloads' from the task registry
(:mod:`descend.bench.tasks`), plus :data:`SUITE`, the pass/fail suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descend.bench.config import check_budget
from descend.bench.tasks import task_names
from descend.suggest import unknown_name

#: The workload name of the pass/fail suite (:mod:`descend.bench.suite`).
SUITE = "suite"
#: The default workloads: the bench tasks AlgoPerf-style scoring ranks on, then the suite.
DEFAULT_WORKLOADS = ("digits-mlp", "mnist1d-cnn", "charlm-transformer", SUITE)
#: The workloads of ``--quick``: the smallest task and the suite.
QUICK_WORKLOADS = ("digits-mlp", SUITE)
#: Optimizers newer than the lecture's that the default line-up adds (those registered).
NEWER_OPTIMIZERS = ("adamw", "nadam", "radam", "lion", "sf_adamw", "muon")
#: The full budget: AlgoPerf's external-tuning ruleset gives 5 trials; 3 seeds per setting.
DEFAULT_TRIALS, DEFAULT_SEEDS = 5, 3
#: The reduced budget of ``--quick`` (stated on the page).
QUICK_TRIALS, QUICK_SEEDS = 3, 1


def workload_names() -> list[str]:
    """Every workload a scoreboard may name: the registered tasks, then :data:`SUITE`."""
    return [*task_names(), SUITE]


def check_workloads(names: Sequence[str]) -> list[str]:
    """``names`` checked (a misspelt one raises ``ValueError`` with the closest valid name),
    duplicates refused; the order is kept."""
    if not names:
        raise ValueError(
            "no workloads given: expected one or more of " + ", ".join(workload_names())
        )
    valid = workload_names()
    for name in names:
        if name not in valid:
            raise unknown_name("workload", name, valid)
    doubled = sorted({name for name in names if list(names).count(name) > 1})
    if doubled:
        raise ValueError(f"workload given twice: {', '.join(doubled)}")
    return list(names)


def default_workloads(quick: bool) -> tuple[list[str], list[str]]:
    """The default workloads that are registered, and the default ones that are not (left
    out, and said so)."""
    wanted = QUICK_WORKLOADS if quick else DEFAULT_WORKLOADS
    valid = workload_names()
    return [name for name in wanted if name in valid], [
        name for name in wanted if name not in valid
    ]


def default_optimizers(quick: bool) -> list[str]:
    """The lecture's optimizers (from the rule registry), plus with ``quick=False`` the newer
    ones of :data:`NEWER_OPTIMIZERS` that are registered."""
    from descend.rules import NAMES, lecture_rules

    names = [rule.name for rule in lecture_rules()]
    if not quick:
        names += [name for name in NEWER_OPTIMIZERS if name in NAMES and name not in names]
    return names


@dataclass
class ScoreboardConfig:
    """How a scoreboard runs.

    Attributes:
        optimizers: optimizer specs (empty: :func:`default_optimizers`).
        workloads: task names and/or :data:`SUITE` (empty: :func:`default_workloads`).
        trials: tuning trials per workload and learning rates per suite problem (``0``:
            self-tuning, the specs' own values; ``None``: :data:`DEFAULT_TRIALS`, or
            :data:`QUICK_TRIALS` with ``quick``).
        seeds: reruns of each chosen setting (``None``: the default or quick budget).
        quick: the reduced budget: fewer trials and seeds, the lecture's optimizers, the
            smallest task and the suite (each only where not given).
        epochs: training length of the tasks (``None``: each task's own).
        out: output folder (results.json, report.html, and the default SQLite storage).
        storage: Optuna storage URL (``None``: ``sqlite:///<out>/bench.db``).
        study: prefix of the study names, shared by the workers of one scoreboard.
        poll_seconds: how often a worker waiting on other workers' runs looks again.
        task_options: options of the tasks that declare them (``data_dir`` for CIFAR-10).
        left_out: default workloads that are not registered (filled in).
    """

    optimizers: Sequence[str] = ()
    workloads: Sequence[str] = ()
    trials: int | None = None
    seeds: int | None = None
    quick: bool = False
    epochs: int | None = None
    out: Path = Path("scoreboard-out")
    storage: str | None = None
    study: str = "scoreboard"
    poll_seconds: float = 2.0
    task_options: dict[str, Any] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.trials is None:
            self.trials = QUICK_TRIALS if self.quick else DEFAULT_TRIALS
        if self.seeds is None:
            self.seeds = QUICK_SEEDS if self.quick else DEFAULT_SEEDS
        check_budget(self.trials, self.seeds, self.epochs)
        if not self.study or ":" in self.study:
            raise ValueError(
                f"study name {self.study!r} is invalid: expected a non-empty name without ':'"
            )
        if self.workloads:
            self.workloads = check_workloads(list(self.workloads))
        else:
            self.workloads, self.left_out = default_workloads(self.quick)
        if not self.optimizers:
            self.optimizers = default_optimizers(self.quick)

    @property
    def tasks(self) -> list[str]:
        """The workloads that are bench tasks (all but the suite)."""
        return [name for name in self.workloads if name != SUITE]

    @property
    def suite(self) -> bool:
        """Whether the pass/fail suite is among the workloads."""
        return SUITE in self.workloads

    @property
    def tuning(self) -> str:
        """AlgoPerf's name of the ruleset: ``external tuning`` or ``self-tuning``."""
        return "self-tuning" if self.trials == 0 else "external tuning"
