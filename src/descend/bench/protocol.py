"""The benchmark protocol: tune each optimizer with Optuna, rerun its best setting over seeds.

For every task and every contender (an optimizer spec, optionally with a learning-rate
schedule) two Optuna studies live in the storage:

- ``<study>:<task>:<contender>:tune``: the tuning budget, ``trials`` trials over the learning
  rate (log-uniform in a range per optimizer) and any other hyperparameters asked for, each
  trained with seed 0 and scored by its final validation accuracy (or loss). Optuna's sampler
  proposes; its pruner stops hopeless trials; a diverged trial counts as pruned.
- ``<study>:<task>:<contender>:seeds``: the best tuning trial's setting rerun with seeds
  1..K, never pruned; their test accuracy is the result.

Each worker runs only what is still missing from a budget (completed and pruned trials count;
failed ones, such as those killed mid-run, are redone), so rerunning a command resumes it and
several workers may share one study.

A trial goes through four stages, one module each; :meth:`Bench.run` calls them in order:

1. :mod:`~descend.bench.planning`: what the budget still misses (run, wait, or done);
2. :mod:`~descend.bench.claims`: claim the next trial in the storage, or step back;
3. :mod:`~descend.bench.trial`: train and score it, and tell the storage how it ended;
4. :mod:`~descend.bench.collect`: read every finished trial back and write the results.

The studies themselves (names, settings, reading a benchmark back) are
:mod:`~descend.bench.studies`; contenders :mod:`~descend.bench.contenders`; settings and
progress events :mod:`~descend.bench.config`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from descend.bench import storage as storage_layer
from descend.bench.claims import claim_seed_run, claim_tuning_trial
from descend.bench.collect import collect_results, write_files
from descend.bench.config import BenchConfig, Reporter
from descend.bench.contenders import (
    BenchContender,
    build_schedule,
    make_contender,
    schedule_defaults,
    schedule_over,
)
from descend.bench.planning import (
    DONE,
    WAIT,
    Gap,
    best_trial,
    count_done,
    seeds_gap,
    tuning_budget,
    tuning_gap,
)
from descend.bench.results import ContenderResult
from descend.bench.studies import (
    PHASES,
    PROTOCOL_VERSION,
    StudyPair,
    open_study,
    read_recorded,
    study_name,
)
from descend.bench.tasks import Task
from descend.bench.trial import TUNING_SEED, run_seed_run, run_tuning_trial
from descend.specs import OptimizerSpec

__all__ = [
    "PROTOCOL_VERSION",
    "TUNING_SEED",
    "Bench",
    "BenchConfig",
    "BenchContender",
    "Reporter",
    "build_schedule",
    "make_contender",
    "run_bench",
    "schedule_defaults",
    "schedule_over",
    "write_outputs",
]


class Bench:
    """A benchmark over tasks and contenders, backed by an Optuna storage.

    Construction checks everything (tasks, contenders, the storage, and that existing studies
    of the same names were made with the same settings), so bad input fails before any trial
    starts. :meth:`run` fills in what the budgets still miss; :meth:`results` reads every
    finished trial back from the storage.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        contenders: Sequence[BenchContender],
        config: BenchConfig | None = None,
    ) -> None:
        self.config = config or BenchConfig()
        if not tasks:
            raise ValueError("no tasks given")
        if not contenders:
            raise ValueError("no optimizers given")
        labels = [contender.label for contender in contenders]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"optimizer given twice: {', '.join(duplicates)}")
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"a task is given twice in {', '.join(names)}")
        self.tasks = [task.with_options(epochs=self.config.epochs) for task in tasks]
        self.contenders = list(contenders)
        if self.config.storage is None:
            self.config.out.mkdir(parents=True, exist_ok=True)
        self.url = storage_layer.storage_url(self.config.storage, self.config.out)
        #: The storage URL with its password masked: what is printed and written.
        self.display_url = storage_layer.display_url(self.url)
        self.storage = storage_layer.open_storage(self.url)
        self.studies: dict[tuple[str, str, str], optuna.Study] = {}
        for task in self.tasks:
            for contender in self.contenders:
                for phase in PHASES:
                    self.studies[task.name, contender.label, phase] = open_study(
                        self.storage, self.config, self.display_url, task, contender, phase
                    )
        #: Every task and contender with its two studies, in the order they run.
        self.pairs = [
            self._pair(task, contender) for task in self.tasks for contender in self.contenders
        ]

    @classmethod
    def from_storage(
        cls, storage: str, study: str, out: Path = Path("bench-out"), **task_options: Any
    ) -> Bench:
        """The benchmark that workers ran under ``study`` in ``storage``, to read results back.

        Tasks and contenders are rebuilt from what the workers recorded in each study, so any
        machine with access to the storage can write the merged report. Registered tasks only;
        ``task_options`` (such as ``data_dir=`` for CIFAR-10) go to the tasks that take them.
        """
        recorded = read_recorded(storage, study, Path(out), task_options)
        return cls(recorded.tasks, recorded.contenders, recorded.config)

    def _pair(self, task: Task, contender: BenchContender) -> StudyPair:
        return StudyPair(
            task,
            contender,
            self.studies[task.name, contender.label, "tune"],
            self.studies[task.name, contender.label, "seeds"],
        )

    def study_name(self, task: Task, contender: BenchContender, phase: str) -> str:
        """The Optuna study name of one task, contender and phase."""
        return study_name(self.config.study, task, contender, phase)

    def best_trial(self, task: Task, contender: BenchContender) -> tuple[dict, float | None] | None:
        """The best finished tuning trial's params and value (see
        :func:`descend.bench.planning.best_trial`)."""
        return best_trial(self._pair(task, contender), self.config)

    def run(self, reporter: Reporter | None = None) -> list[ContenderResult]:
        """Run every trial still missing from the budgets, then return :meth:`results`."""
        reporter = reporter or Reporter()
        reporter.begin(*count_done(self.pairs, self.config))
        # First every run no worker has started, pair after pair; a pair whose runs other
        # workers hold is passed over, so a worker never idles while later pairs have work.
        # Then each pair is waited for in turn.
        for wait in (False, True):
            for pair in self.pairs:
                if self._tune(pair, reporter, wait):
                    self._rerun_seeds(pair, reporter, wait)
        return self.results()

    def _tune(self, pair: StudyPair, reporter: Reporter, wait: bool = True) -> bool:
        """Run the pair's missing tuning trials; whether its tuning is complete (without
        ``wait``, ``False`` at once where only other workers' trials are missing)."""
        budget = tuning_budget(pair.contender, self.config)
        while (gap := tuning_gap(pair, budget, self.storage)).action != DONE:
            if gap.action == WAIT:
                if not wait:
                    return False
                self._wait(pair, gap, reporter)
                continue
            claim = claim_tuning_trial(pair, self.config, budget, self.storage)
            if claim is not None:
                run_tuning_trial(pair, claim, self.storage, reporter)
        return True

    def _rerun_seeds(self, pair: StudyPair, reporter: Reporter, wait: bool = True) -> None:
        best = best_trial(pair, self.config)
        if best is None:
            return
        params, wanted = best[0], set(range(1, self.config.seeds + 1))
        while (gap := seeds_gap(pair, params, wanted, self.storage)).action != DONE:
            if gap.action == WAIT:
                if not wait:
                    return
                self._wait(pair, gap, reporter)
                continue
            claim = claim_seed_run(pair, params, wanted, self.storage)
            if claim is not None:
                run_seed_run(pair, claim, params, self.storage, reporter)

    def _wait(self, pair: StudyPair, gap: Gap, reporter: Reporter) -> None:
        reporter.waiting(
            f"{pair.task.name} {pair.contender.label}: waiting for "
            f"{gap.waiting_for} of other workers"
        )
        time.sleep(self.config.poll_seconds)

    def results(self) -> list[ContenderResult]:
        """Every task and contender's finished trials and seed runs, read from the storage."""
        return collect_results(self.pairs, self.config)


def run_bench(
    tasks: Sequence[Task],
    optimizers: Sequence[str | OptimizerSpec],
    schedules: Sequence[str] = ("constant",),
    config: BenchConfig | None = None,
    lr_range: tuple[float, float] | None = None,
    tune: Sequence[str] = (),
    reporter: Reporter | None = None,
    report: bool = True,
) -> tuple[list[ContenderResult], list[dict[str, Any]]]:
    """Race optimizers on tasks (registered or :meth:`Task.custom`) and return the results.

    Every optimizer is crossed with every schedule. Writes ``results.json`` and, with
    ``report``, ``report.html`` to ``config.out``. Returns the per-contender results and the
    summary rows (see :func:`summarize`).
    """
    config = config or BenchConfig()
    contenders = [
        make_contender(optimizer, schedule, lr_range, tune)
        for optimizer in optimizers
        for schedule in schedules
    ]
    bench = Bench(tasks, contenders, config)
    results = bench.run(reporter)
    return results, write_outputs(bench, results, report)


def write_outputs(
    bench: Bench, results: list[ContenderResult], report: bool = True
) -> list[dict[str, Any]]:
    """Write ``results.json`` (and ``report.html``) to the output folder; return the summary
    rows (see :func:`descend.bench.results.summary_rows`)."""
    return write_files(bench.config.out, bench.tasks, bench.display_url, results, report)
