"""The scoreboard's pass/fail part: every optimizer on every problem of the suite
(:mod:`descend.bench.suite`), with a fixed tuning budget per problem, its runs kept in the
bench's storage.

Protocol, per problem and optimizer: the tuning budget is ``trials`` learning rates, the
centres of ``trials`` equal slices of the optimizer's log-uniform range (its registry row's
``lr_range``; deterministic, so every worker and every rerun agree), each run with seed
:data:`~descend.bench.trial.TUNING_SEED`; with ``trials=0``, or a spec that fixes ``lr``, the
spec's own values are the one setting (self-tuning). The passing setting that passed in the
fewest steps is rerun with seeds 1..K, and the problem counts as passed when more than half
of those reruns pass (the median over seeds, as the workloads' times); a problem no setting
passed is failed without reruns.

Each run is one trial of the study ``<study>:suite:<problem>:<optimizer>``, keyed by its
learning rate and seed, claimed, heartbeated and reclaimed through
:mod:`descend.bench.storage` as the bench's trials are: a killed run is redone, a finished one
is never run twice, and workers sharing the storage share the runs.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from descend.bench import storage as storage_layer
from descend.bench.claims import OVER_BUDGET, ask
from descend.bench.config import Reporter
from descend.bench.metrics import median_time
from descend.bench.trial import TUNING_SEED
from descend.specs import OptimizerSpec, default_lr_range

#: The module that defines the suite (``SUITE``: problems by name, in a fixed order).
SUITE_MODULE = "descend.bench.suite"
#: Bumped when a change makes old suite runs incomparable.
SUITE_PROTOCOL = 1


def load_suite() -> tuple[Mapping[str, Any] | None, str]:
    """``(SUITE, "")``, or ``(None, why)`` in one line when this version has no suite."""
    try:
        module = importlib.import_module(SUITE_MODULE)
    except ModuleNotFoundError as error:
        if error.name != SUITE_MODULE:
            raise
        return None, (
            f"the pass/fail suite ({SUITE_MODULE}) is not part of this version of descend; "
            "its part of the scoreboard is skipped"
        )
    return module.SUITE, ""


def suite_lrs(spec: OptimizerSpec, trials: int) -> list[float | None]:
    """The learning rates of a problem's tuning budget (``None``: the spec's own values)."""
    if trials == 0 or "lr" in spec.arguments:
        return [None]
    low, high = (math.log(end) for end in default_lr_range(spec.name))
    return [math.exp(low + (index + 0.5) / trials * (high - low)) for index in range(trials)]


def _spec_at(spec: OptimizerSpec, lr: float | None) -> OptimizerSpec:
    return spec if lr is None else spec.with_arguments(lr=lr)


@dataclass
class ProblemOutcome:
    """One optimizer on one problem of the suite.

    Attributes:
        problem, optimizer: which.
        passed: whether the chosen setting passed on more than half of the seeds.
        lr: the chosen learning rate (``None``: the spec's own, or nothing passed in tuning).
        tuning: per learning rate tried, its seed-0 run (the suite's ``SuiteResult`` as a dict).
        seed_runs: the chosen setting's reruns, by seed.
        steps_to_pass, seconds: medians over the reruns (``None``: not passed).
    """

    problem: str
    optimizer: str
    passed: bool
    lr: float | None
    tuning: list[dict[str, Any]] = field(default_factory=list)
    seed_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    steps_to_pass: float | None = None
    seconds: float | None = None

    @property
    def diverged(self) -> bool:
        """Whether any of its runs diverged."""
        runs = [*self.tuning, *self.seed_runs.values()]
        return any(run["diverged"] for run in runs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (in results.json)."""
        return {**asdict(self), "diverged": self.diverged}


def _study(
    storage: optuna.storages.RDBStorage, shown_url: str, prefix: str, problem: Any, label: str
) -> optuna.Study:
    name = f"{prefix}:suite:{problem.name}:{label}"
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    expected = {
        "protocol": SUITE_PROTOCOL,
        "problem": problem.name,
        "criterion": problem.criterion,
        "steps": problem.steps,
        "optimizer": label,
    }
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", expected)
    elif stored != expected:
        changed = sorted(key for key in expected if stored.get(key) != expected[key])
        raise ValueError(
            f"study {name!r} in {shown_url} was run with other settings "
            f"({', '.join(changed)} differ); use another --out, --storage or --study"
        )
    return study


def _key(lr: float | None, seed: int) -> str:
    return json.dumps({"lr": lr, "seed": seed})


def _keyed(study: optuna.Study, key: str, states: Sequence[TrialState]) -> list:
    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=tuple(states))
        if trial.user_attrs.get("key") == key
    ]


class SuiteRunner:
    """Runs (or reads back) the suite's runs for the scoreboard, in the bench's storage."""

    def __init__(
        self,
        storage: optuna.storages.RDBStorage,
        shown_url: str,
        prefix: str,
        trials: int,
        seeds: int,
        reporter: Reporter,
        poll_seconds: float = 2.0,
    ) -> None:
        self.storage, self.shown_url, self.prefix = storage, shown_url, prefix
        self.trials, self.seeds, self.reporter = trials, seeds, reporter
        self.poll_seconds = poll_seconds
        #: The (study, run key) pairs already counted on the progress bar.
        self.reported: set[tuple[str, str]] = set()
        #: Runs this worker made (others were read back or made by other workers).
        self.ran = 0

    def planned(self, problems: Sequence[Any], specs: Sequence[OptimizerSpec]) -> int:
        """Runs at most: every problem's tuning budget and reruns, for every optimizer."""
        return sum(
            len(suite_lrs(spec, self.trials)) + self.seeds for spec in specs for _ in problems
        )

    def _ahead(self, study: optuna.Study, trial: optuna.Trial, key: str) -> list:
        """The earlier trials claiming run ``key``. A trial is created before its key is
        written, so an earlier running trial without a key yet may be claiming this very run:
        it is waited for (or reclaimed, if its worker died) before anything is decided, or two
        workers that ask at the same moment would both run it."""
        while True:
            earlier = [
                other
                for other in study.get_trials(
                    deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)
                )
                if other.number < trial.number
            ]
            if not any(
                other.state == TrialState.RUNNING and "key" not in other.user_attrs
                for other in earlier
            ):
                return [other for other in earlier if other.user_attrs.get("key") == key]
            storage_layer.reclaim_stale(study, self.storage)
            time.sleep(0.05)

    def _run_once(
        self, study: optuna.Study, key: str, run: Callable[[], Any], wait: bool = True
    ) -> dict[str, Any] | None:
        """The stored result of run ``key``, running it first when no worker has; with
        ``wait=False``, ``None`` at once where another worker is running it."""
        while True:
            finished = _keyed(study, key, (TrialState.COMPLETE,))
            if finished:
                return dict(finished[0].user_attrs["result"])
            storage_layer.reclaim_stale(study, self.storage)
            if _keyed(study, key, (TrialState.RUNNING,)):
                if not wait:
                    return None
                self.reporter.waiting(f"{study.study_name}: waiting for another worker's run")
                time.sleep(self.poll_seconds)
                continue
            trial = ask(study)
            trial_id = storage_layer.claim(trial, study, self.storage)
            trial.set_user_attr("key", key)
            ahead = self._ahead(study, trial, key)
            if ahead:  # another worker claimed the same run first: step back
                trial.set_user_attr("failed_because", OVER_BUDGET)
                study.tell(trial, state=TrialState.FAIL)
                continue
            self.ran += 1
            # Ctrl-C or an error in the problem fails the run, so it is redone next time.
            with storage_layer.owned(self.storage, study, trial_id) as ownership:
                result = asdict(run())
                trial.set_user_attr("result", result)
                study.tell(trial, float(result["passed"]))
            if not ownership.lost:
                return result
            self.reporter.notice(f"{study.study_name} {key}: {storage_layer.TAKEN_OVER}")

    def _run(
        self,
        study: optuna.Study,
        problem: Any,
        spec: OptimizerSpec,
        lr: float | None,
        seed: int,
        wait: bool = True,
    ) -> dict[str, Any] | None:
        """The result of one run: read back if stored, else run here, or (``wait``) waited
        for if another worker runs it; ``None`` without ``wait`` where another worker runs it.
        Each run is reported to the progress bar once, by the first call that settles it."""
        key = _key(lr, seed)
        stored = _keyed(study, key, (TrialState.COMPLETE,))
        if stored:  # run before: read back, not run again
            if (study.study_name, key) not in self.reported:
                self.reporter.run_finished("stored")
            self.reported.add((study.study_name, key))
            return dict(stored[0].user_attrs["result"])
        detail = "own lr" if lr is None else f"lr={lr:.3g}"
        phase = "trial" if seed == TUNING_SEED else f"seed {seed}"
        self.reporter.run_started("suite", spec.label, phase, f"{problem.name} {detail}", 1)
        result = self._run_once(study, key, lambda: problem.run(_spec_at(spec, lr), seed), wait)
        if result is not None:
            self.reporter.run_finished("complete" if result["passed"] else "failed")
            self.reported.add((study.study_name, key))
        return result

    def _runs(
        self,
        study: optuna.Study,
        problem: Any,
        spec: OptimizerSpec,
        settings: Sequence[tuple[float | None, int]],
    ) -> list[dict[str, Any]]:
        """The results of several runs: first every one no worker has started is run here
        (those another worker runs are passed over), then all are collected, waiting for the
        others' runs; so workers sharing the suite run side by side instead of each waiting
        for the run ahead of it."""
        for lr, seed in settings:
            self._run(study, problem, spec, lr, seed, wait=False)
        results = []
        for lr, seed in settings:
            result = self._run(study, problem, spec, lr, seed)
            assert result is not None, "a run waited for has a result"
            results.append(result)
        return results

    def outcome(self, problem: Any, spec: OptimizerSpec) -> ProblemOutcome:
        """Tune, rerun over seeds and judge one optimizer on one problem."""
        study = _study(self.storage, self.shown_url, self.prefix, problem, spec.label)
        lrs = suite_lrs(spec, self.trials)
        tuned = self._runs(study, problem, spec, [(lr, TUNING_SEED) for lr in lrs])
        tuning = [{"lr": lr, **result} for lr, result in zip(lrs, tuned, strict=True)]
        passing = [run for run in tuning if run["passed"]]
        if not passing:
            for _ in range(self.seeds):  # the reruns the budget planned are not needed
                self.reporter.run_finished("skipped")
            return ProblemOutcome(problem.name, spec.label, False, None, tuning)
        chosen = min(
            passing,
            key=lambda run: math.inf if run["steps_to_pass"] is None else run["steps_to_pass"],
        )
        seeds = range(1, self.seeds + 1)
        reruns = self._runs(study, problem, spec, [(chosen["lr"], s) for s in seeds])
        seed_runs = dict(zip(seeds, reruns, strict=True))
        steps = median_time(
            [run["steps_to_pass"] if run["passed"] else None for run in seed_runs.values()]
        )
        seconds = median_time(
            [run["seconds"] if run["passed"] else None for run in seed_runs.values()]
        )
        passed = math.isfinite(steps)
        return ProblemOutcome(
            problem.name,
            spec.label,
            passed,
            chosen["lr"],
            tuning,
            seed_runs,
            steps if passed else None,
            seconds if passed else None,
        )
