"""How a benchmark runs (:class:`BenchConfig`) and whom it tells how far it got
(:class:`Reporter`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from descend.bench.search import PRUNERS, SAMPLERS
from descend.suggest import unknown_name

if TYPE_CHECKING:
    from descend.bench.training import EpochMetrics


def check_budget(trials: int, seeds: int, epochs: int | None) -> None:
    """Refuse a budget no run can have: fewer than 0 tuning trials, fewer than 1 seed, or fewer
    than 1 epoch (``None`` keeps each task's own), naming the value and what is allowed."""
    if trials < 0:
        raise ValueError(f"trials={trials!r} is invalid: expected >= 0")
    if seeds < 1:
        raise ValueError(f"seeds={seeds!r} is invalid: expected >= 1")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs={epochs!r} is invalid: expected >= 1")


@dataclass
class BenchConfig:
    """How a benchmark runs.

    Attributes:
        trials: tuning budget per contender (``0``: no tuning; the spec's own values).
        seeds: reruns of the best setting.
        epochs: training length (``None``: each task's default).
        sampler: ``tpe`` (coarse to fine: half the budget spread evenly over the ranges,
            then TPE), ``random`` or ``qmc`` (scrambled Sobol).
        pruner: ``median``, ``hyperband`` or ``none``.
        out: output folder (report, results, and the default SQLite storage).
        storage: Optuna storage URL (``None``: ``sqlite:///<out>/bench.db``).
        study: prefix of the study names, shared by workers of one benchmark.
        sampler_seed: seed of the sampler's random choices.
        poll_seconds: how often a worker waiting on others' trials looks again.
    """

    trials: int = 8
    seeds: int = 3
    epochs: int | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    out: Path = Path("bench-out")
    storage: str | None = None
    study: str = "bench"
    sampler_seed: int = 0
    poll_seconds: float = 2.0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_budget(self.trials, self.seeds, self.epochs)
        if self.sampler not in SAMPLERS:
            raise unknown_name("sampler", self.sampler, SAMPLERS)
        if self.pruner not in PRUNERS:
            raise unknown_name("pruner", self.pruner, PRUNERS)
        if not self.study or ":" in self.study:
            raise ValueError(
                f"study name {self.study!r} is invalid: expected a non-empty name without ':'"
            )


class Reporter:
    """Receives progress events; the CLI draws progress bars from them. Does nothing here."""

    def begin(self, total_runs: int, done_runs: int) -> None:
        """The benchmark starts: ``done_runs`` of ``total_runs`` are already in the storage."""

    def run_started(self, task: str, label: str, phase: str, detail: str, epochs: int) -> None:
        """A tuning trial or seed run starts."""

    def epoch(self, metrics: EpochMetrics) -> None:
        """An epoch of the current run ended."""

    def run_finished(self, outcome: str) -> None:
        """The current run ended (``complete``, ``pruned``, ``diverged`` or ``surplus``)."""

    def waiting(self, message: str) -> None:
        """This worker waits for trials other workers are running."""

    def notice(self, message: str) -> None:
        """Something the user should read, one line (a run dropped, say)."""
