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
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from descend.bench import storage as storage_layer
from descend.bench.results import ContenderResult, summary_rows, write_results
from descend.bench.search import (
    PRUNERS,
    SAMPLERS,
    Dimension,
    make_pruner,
    make_sampler,
    parse_dimension,
)
from descend.bench.tasks import Task, get_task
from descend.bench.training import EpochMetrics, RunResult, score, train
from descend.specs import (
    ContenderSpec,
    OptimizerSpec,
    ScheduleSpec,
    default_lr_range,
    parse_optimizer,
    parse_schedule,
)
from descend.suggest import unknown_name

#: Seed of every tuning trial; seed runs use 1..K.
TUNING_SEED = 0
#: Bumped when a change makes old studies incomparable.
PROTOCOL_VERSION = 1

optuna.logging.set_verbosity(optuna.logging.WARNING)


def schedule_defaults(name: str, epochs: int) -> dict[str, Any]:
    """Default arguments of a schedule over ``epochs`` epochs (stepped once per epoch).

    Each decaying schedule ends the run about ten times below its base rate, except step
    decay, which halves the rate every third of the run as the lecture suggests.
    """
    if name in ("step",):
        return {"step_size": max(1, epochs // 3), "gamma": 0.5}
    if name == "exponential":
        return {"k": math.log(10.0) / max(epochs - 1, 1)}
    if name in ("inverse_time", "1/t"):
        return {"k": 9.0 / max(epochs - 1, 1)}
    if name == "cosine":
        return {"total_steps": epochs}
    if name == "warmup_cosine":
        return {"warmup_steps": max(1, epochs // 10), "total_steps": epochs}
    return {}


def schedule_over(schedule: ScheduleSpec | None, epochs: int) -> ScheduleSpec | None:
    """A schedule as typed over a run of ``epochs`` epochs: ``None`` for a constant rate, else
    with every argument the text leaves out taken from :func:`schedule_defaults`."""
    if schedule is None or schedule.constant:
        return None
    return schedule.completed(schedule_defaults(schedule.name, epochs))


def build_schedule(text: str, epochs: int) -> ScheduleSpec | None:
    """The schedule for ``text`` (``constant`` gives ``None``), defaults filled in from the run
    length for any argument the text leaves out."""
    return schedule_over(parse_schedule(text, complete=False), epochs)


@dataclass(frozen=True)
class Contender:
    """One entry of the benchmark: an optimizer under a schedule (a :class:`ContenderSpec`)
    and the hyperparameters to tune.

    The schedule is kept as typed and may leave out what depends on the run's length (a
    cosine's ``total_steps``); :meth:`schedule_for` fills that in for each task.
    """

    spec: ContenderSpec
    space: tuple[Dimension, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.spec.optimizer, OptimizerSpec):
            raise ValueError(f"{self.spec.optimizer.text!r} cannot be benchmarked: it is not a "
                             "torch optimizer")

    @property
    def label(self) -> str:
        """Name in tables, results and study names (see :attr:`ContenderSpec.label`)."""
        return self.spec.label

    @property
    def optimizer(self) -> OptimizerSpec:
        """The optimizer spec as given (tuned values not filled in)."""
        assert isinstance(self.spec.optimizer, OptimizerSpec)
        return self.spec.optimizer

    @property
    def schedule_text(self) -> str:
        """The schedule as typed (``constant`` when there is none), as studies record it."""
        return "constant" if self.spec.schedule is None else self.spec.schedule.text

    def schedule_for(self, epochs: int) -> ScheduleSpec | None:
        """The schedule over a run of ``epochs`` epochs (``None``: constant rate)."""
        return schedule_over(self.spec.schedule, epochs)

    def optimizer_for(self, params: dict[str, float]) -> OptimizerSpec:
        """The optimizer spec with tuned values filled in."""
        return self.optimizer.with_arguments(**params) if params else self.optimizer


def make_contender(optimizer: str | OptimizerSpec, schedule: str = "constant",
                   lr_range: tuple[float, float] | None = None,
                   tune: Sequence[str | Dimension] = ()) -> Contender:
    """A contender from spec texts, checking every part before anything runs.

    The learning rate is tuned unless the spec fixes it (``adam:lr=1e-3``); ``tune`` adds
    dimensions such as ``"momentum=0.5:0.99:linear"``. Both ends of every range are tried on
    a dummy parameter, so a range the optimizer refuses fails here.
    """
    spec = parse_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    space: list[Dimension] = []
    if "lr" not in spec.arguments:
        low, high = lr_range or default_lr_range(spec.name)
        space.append(Dimension("lr", low, high, log=True))
    for item in tune:
        dimension = parse_dimension(item) if isinstance(item, str) else item
        if dimension.name in spec.arguments:
            raise ValueError(f"{dimension.name} is both fixed in spec {spec.text!r} and tuned; "
                             "drop one")
        space.append(dimension)
    names = [dimension.name for dimension in space]
    if len(set(names)) != len(names):
        raise ValueError(f"a hyperparameter is tuned twice in {', '.join(names)}")
    for dimension in space:
        for value in (dimension.low, dimension.high):
            parse_optimizer(spec.with_arguments(**{dimension.name: value}).text)
    schedule_spec = parse_schedule(schedule, complete=False)
    schedule_over(schedule_spec, 10)
    return Contender(ContenderSpec(spec, schedule_spec), tuple(space))


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
        if self.trials < 0:
            raise ValueError(f"trials={self.trials!r} is invalid: expected >= 0")
        if self.seeds < 1:
            raise ValueError(f"seeds={self.seeds!r} is invalid: expected >= 1")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs={self.epochs!r} is invalid: expected >= 1")
        if self.sampler not in SAMPLERS:
            raise unknown_name("sampler", self.sampler, SAMPLERS)
        if self.pruner not in PRUNERS:
            raise unknown_name("pruner", self.pruner, PRUNERS)
        if not self.study or ":" in self.study:
            raise ValueError(f"study name {self.study!r} is invalid: expected a non-empty name "
                             "without ':'")


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


def _schedule_settings(schedule: ScheduleSpec | None) -> dict[str, Any] | None:
    return None if schedule is None else {"name": schedule.name, **schedule.arguments}


def _ask(study: optuna.Study) -> optuna.Trial:
    with warnings.catch_warnings():
        # Trials run by ask/tell with this package's own heartbeat thread (see storage.py).
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask()


def _params_key(params: dict[str, float]) -> str:
    return json.dumps(params, sort_keys=True)


class Bench:
    """A benchmark over tasks and contenders, backed by an Optuna storage.

    Construction checks everything (tasks, contenders, the storage, and that existing studies
    of the same names were made with the same settings), so bad input fails before any trial
    starts. :meth:`run` fills in what the budgets still miss; :meth:`results` reads every
    finished trial back from the storage.
    """

    def __init__(self, tasks: Sequence[Task], contenders: Sequence[Contender],
                 config: BenchConfig | None = None) -> None:
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
                for phase in ("tune", "seeds"):
                    self.studies[task.name, contender.label, phase] = self._open_study(
                        task, contender, phase)

    @classmethod
    def from_storage(cls, storage: str, study: str, out: Path = Path("bench-out"),
                     data_dir: str | None = None) -> Bench:
        """The benchmark that workers ran under ``study`` in ``storage``, to read results back.

        Tasks and contenders are rebuilt from what the workers recorded in each study, so any
        machine with access to the storage can write the merged report. Built-in tasks only
        (``data_dir``: CIFAR-10's directory, when the benchmark used it).
        """
        url = storage_layer.storage_url(storage, Path(out))
        opened = storage_layer.open_storage(url, create=False)
        shown = storage_layer.display_url(url)
        prefix = f"{study}:"
        summaries = [summary for summary in opened.get_all_studies()
                     if summary.study_name.startswith(prefix)
                     and summary.study_name.endswith(":tune")]
        if not summaries:
            names = sorted({summary.study_name.split(":")[0]
                            for summary in opened.get_all_studies()})
            raise ValueError(f"no benchmark study {study!r} in {shown}; studies there: "
                             f"{', '.join(names) or 'none'}")
        tasks: dict[str, Task] = {}
        contenders: dict[str, Contender] = {}
        trials, seeds, epochs = 0, 1, set()
        for summary in summaries:
            settings = summary.user_attrs.get("settings")
            described = summary.user_attrs.get("contender")
            if not settings or not described:
                raise ValueError(f"study {summary.study_name!r} in {shown} was not written by "
                                 "descend bench; cannot rebuild its benchmark")
            if settings["task"] not in tasks:
                tasks[settings["task"]] = get_task(settings["task"], data_dir).with_options(
                    target=described.get("target"))
            epochs.add(settings["epochs"])
            contender = Contender(
                ContenderSpec(parse_optimizer(described["optimizer"]),
                              parse_schedule(described["schedule"], complete=False)),
                tuple(parse_dimension(text) for text in settings["space"]))
            contenders.setdefault(contender.label, contender)
            trials = max(trials, int(described["trials"]))
            seeds = max(seeds, int(described["seeds"]))
        if len(epochs) != 1:
            raise ValueError(f"study {study!r} mixes runs of {sorted(epochs)} epochs; "
                             "report them under separate study names")
        config = BenchConfig(trials=trials, seeds=seeds, epochs=epochs.pop(), out=Path(out),
                             storage=url, study=study)
        return cls(list(tasks.values()), list(contenders.values()), config)

    # -- studies ------------------------------------------------------------------------------

    def study_name(self, task: Task, contender: Contender, phase: str) -> str:
        """The Optuna study name of one task, contender and phase."""
        return f"{self.config.study}:{task.name}:{contender.label}:{phase}"

    def _fingerprint(self, task: Task, contender: Contender) -> dict[str, Any]:
        batch_size = getattr(task.train, "batch_size", None)
        return {"protocol": PROTOCOL_VERSION, "task": task.name, "epochs": task.epochs,
                "batch_size": batch_size, "metric": task.metric,
                "optimizer": contender.optimizer.text,
                "schedule": _schedule_settings(contender.schedule_for(task.epochs)),
                "space": [dimension.to_text() for dimension in contender.space]}

    def _open_study(self, task: Task, contender: Contender, phase: str) -> optuna.Study:
        name = self.study_name(task, contender, phase)
        study = optuna.create_study(
            study_name=name, storage=self.storage, load_if_exists=True,
            direction="maximize" if task.higher_is_better else "minimize",
            pruner=make_pruner(self.config.pruner, task.epochs))
        expected = json.loads(json.dumps(self._fingerprint(task, contender)))
        stored = study.user_attrs.get("settings")
        if phase == "tune":
            # What `descend report` needs to rebuild this contender from the storage alone.
            study.set_user_attr("contender", {
                "optimizer": contender.optimizer.text, "schedule": contender.schedule_text,
                "trials": self.config.trials, "seeds": self.config.seeds,
                "target": task.target})
        if stored is None:
            study.set_user_attr("settings", expected)
        elif stored != expected:
            changed = sorted(key for key in expected if stored.get(key) != expected.get(key))
            raise ValueError(f"study {name!r} in {self.display_url} was run with other settings "
                             f"({', '.join(changed)} differ); use another --out, --storage or "
                             "--study")
        return study

    # -- budgets ------------------------------------------------------------------------------

    def _tuning_budget(self, contender: Contender) -> int:
        return self.config.trials if contender.space else 0

    def _finished_tuning(self, study: optuna.Study) -> list[FrozenTrial]:
        return study.get_trials(deepcopy=False, states=storage_layer.FINISHED)

    def best_trial(self, task: Task, contender: Contender) -> tuple[dict, float | None] | None:
        """The best finished tuning trial's params and value.

        ``({}, None)`` when nothing is tuned (the spec's own values); ``None`` when no trial
        completed. Ties go to the earliest trial, so every worker picks the same one.
        """
        if not self._tuning_budget(contender):
            return {}, None
        study = self.studies[task.name, contender.label, "tune"]
        complete = [trial for trial in study.get_trials(deepcopy=False,
                                                        states=(TrialState.COMPLETE,))
                    if trial.value is not None and math.isfinite(trial.value)]
        if not complete:
            return None
        sign = -1.0 if task.higher_is_better else 1.0
        best = min(complete, key=lambda trial: (sign * trial.value, trial.number))
        return dict(best.params), best.value

    def _seed_trials(self, study: optuna.Study, params: dict, states: Sequence[TrialState]
                     ) -> list[FrozenTrial]:
        key = _params_key(params)
        return [trial for trial in study.get_trials(deepcopy=False, states=tuple(states))
                if trial.user_attrs.get("params_key") == key]

    def _seeds_done(self, study: optuna.Study, params: dict) -> set[int]:
        return {trial.user_attrs["seed"] for trial in self._seed_trials(
            study, params, (TrialState.COMPLETE,)) if "seed" in trial.user_attrs}

    def _count_done(self) -> tuple[int, int]:
        total = done = 0
        for task in self.tasks:
            for contender in self.contenders:
                budget = self._tuning_budget(contender)
                tune = self.studies[task.name, contender.label, "tune"]
                total += budget + self.config.seeds
                done += min(budget, len(self._finished_tuning(tune)))
                if len(self._finished_tuning(tune)) >= budget:
                    best = self.best_trial(task, contender)
                    if best is not None:
                        seeds = self.studies[task.name, contender.label, "seeds"]
                        done += min(self.config.seeds, len(self._seeds_done(seeds, best[0])))
        return total, done

    # -- running ------------------------------------------------------------------------------

    def run(self, reporter: Reporter | None = None) -> list[ContenderResult]:
        """Run every trial still missing from the budgets, then return :meth:`results`."""
        reporter = reporter or Reporter()
        total, done = self._count_done()
        reporter.begin(total, done)
        for task in self.tasks:
            for contender in self.contenders:
                self._tune(task, contender, reporter)
                self._rerun_seeds(task, contender, reporter)
        return self.results()

    def _wait(self, reporter: Reporter, message: str) -> None:
        reporter.waiting(message)
        time.sleep(self.config.poll_seconds)

    def _tune(self, task: Task, contender: Contender, reporter: Reporter) -> None:
        budget = self._tuning_budget(contender)
        study = self.studies[task.name, contender.label, "tune"]
        while True:
            storage_layer.reclaim_stale(study, self.storage)
            finished = len(self._finished_tuning(study))
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if finished >= budget:
                return
            if finished + running >= budget:
                self._wait(reporter, f"{task.name} {contender.label}: waiting for {running} "
                                     "trial(s) of other workers")
                continue
            self._tuning_trial(task, contender, study, budget, reporter)

    def _is_surplus(self, study: optuna.Study, trial: optuna.Trial, budget: int) -> bool:
        # Workers that asked at the same moment may overshoot the budget; the later trials
        # step back, so the budget holds however many workers share the study.
        ahead = [other for other in study.get_trials(
            deepcopy=False, states=(*storage_layer.FINISHED, TrialState.RUNNING))
            if other.number < trial.number]
        return len(ahead) >= budget

    def _tuning_trial(self, task: Task, contender: Contender, study: optuna.Study, budget: int,
                      reporter: Reporter) -> None:
        taken = len(study.get_trials(deepcopy=False,
                                     states=(*storage_layer.FINISHED, TrialState.RUNNING)))
        study.sampler = make_sampler(self.config.sampler, self.config.sampler_seed, budget, taken,
                                 contender.space)
        trial = _ask(study)
        trial_id = storage_layer.claim(trial, study, self.storage)
        if self._is_surplus(study, trial, budget):
            trial.set_user_attr("failed_because", "over budget (another worker took it)")
            study.tell(trial, state=TrialState.FAIL)
            return
        params = {dimension.name: dimension.suggest(trial) for dimension in contender.space}
        spec = contender.optimizer_for(params)
        detail = ", ".join(f"{key}={value:.3g}" for key, value in params.items())
        reporter.run_started(task.name, contender.label, f"trial {trial.number + 1}", detail,
                             task.epochs)
        history: list[EpochMetrics] = []

        def on_epoch(metrics: EpochMetrics) -> None:
            history.append(metrics)
            reporter.epoch(metrics)
            trial.report(score(task, metrics), metrics.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        with storage_layer.heartbeat(self.storage, trial_id):
            try:
                result = train(task, spec, contender.schedule_for(task.epochs), TUNING_SEED,
                               task.epochs, on_epoch=on_epoch)
            except optuna.TrialPruned:
                trial.set_user_attr("run", RunResult(history).to_dict())
                study.tell(trial, state=TrialState.PRUNED)
                reporter.run_finished("pruned")
                return
            except BaseException:
                # Ctrl-C or an error in the user's model: the trial is redone next time.
                study.tell(trial, state=TrialState.FAIL)
                raise
        trial.set_user_attr("run", result.to_dict())
        if result.diverged:
            trial.set_user_attr("diverged", True)
            study.tell(trial, state=TrialState.PRUNED)
            reporter.run_finished("diverged")
            return
        study.tell(trial, score(task, result.history[-1]))
        reporter.run_finished("complete")

    def _rerun_seeds(self, task: Task, contender: Contender, reporter: Reporter) -> None:
        study = self.studies[task.name, contender.label, "seeds"]
        best = self.best_trial(task, contender)
        if best is None:
            return
        params = best[0]
        wanted = set(range(1, self.config.seeds + 1))
        while True:
            storage_layer.reclaim_stale(study, self.storage)
            done = self._seeds_done(study, params)
            if wanted <= done:
                return
            running = {trial.user_attrs.get("seed") for trial in self._seed_trials(
                study, params, (TrialState.RUNNING,))}
            if wanted <= done | running:
                self._wait(reporter, f"{task.name} {contender.label}: waiting for seed runs of "
                                     "other workers")
                continue
            self._seed_run(task, contender, study, params, wanted, reporter)

    def _seed_run(self, task: Task, contender: Contender, study: optuna.Study, params: dict,
                  wanted: set[int], reporter: Reporter) -> None:
        trial = _ask(study)
        trial_id = storage_layer.claim(trial, study, self.storage)
        trial.set_user_attr("params_key", _params_key(params))
        trial.set_user_attr("params", params)
        taken = {other.user_attrs.get("seed") for other in self._seed_trials(
            study, params, (TrialState.COMPLETE, TrialState.RUNNING))
            if other.number < trial.number}
        missing = sorted(wanted - taken)
        if not missing:
            trial.set_user_attr("failed_because", "over budget (another worker took it)")
            study.tell(trial, state=TrialState.FAIL)
            return
        seed = missing[0]
        trial.set_user_attr("seed", seed)
        reporter.run_started(task.name, contender.label, f"seed {seed}",
                             ", ".join(f"{key}={value:.3g}" for key, value in params.items()),
                             task.epochs)
        with storage_layer.heartbeat(self.storage, trial_id):
            try:
                result = train(task, contender.optimizer_for(params),
                               contender.schedule_for(task.epochs), seed, task.epochs,
                               on_epoch=reporter.epoch)
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
        trial.set_user_attr("run", result.to_dict())
        # A diverged seed run is a result too (the setting is fragile): it stays, scored worst.
        value = score(task, result.history[-1]) if result.history else (
            0.0 if task.higher_is_better else math.inf)
        if result.diverged:
            trial.set_user_attr("diverged", True)
            value = 0.0 if task.higher_is_better else 1e300
        study.tell(trial, value)
        reporter.run_finished("diverged" if result.diverged else "complete")

    # -- reading back -------------------------------------------------------------------------

    def results(self) -> list[ContenderResult]:
        """Every task and contender's finished trials and seed runs, read from the storage."""
        results = []
        for task in self.tasks:
            for contender in self.contenders:
                tune = self.studies[task.name, contender.label, "tune"]
                trials = []
                for trial in sorted(self._finished_tuning(tune), key=lambda t: t.number):
                    run = trial.user_attrs.get("run")
                    trials.append({
                        "number": trial.number, "params": dict(trial.params),
                        "value": trial.value, "state": trial.state.name.lower(),
                        "diverged": bool(trial.user_attrs.get("diverged")),
                        "last_score": (score(task, RunResult.from_dict(run).history[-1])
                                       if run and run["history"] else None),
                        "epochs": len(run["history"]) if run else 0})
                best = self.best_trial(task, contender)
                seed_runs: dict[int, RunResult] = {}
                if best is not None:
                    seeds = self.studies[task.name, contender.label, "seeds"]
                    for trial in sorted(self._seed_trials(seeds, best[0], (TrialState.COMPLETE,)),
                                        key=lambda t: t.number):
                        seed = trial.user_attrs.get("seed")
                        if seed is not None and seed not in seed_runs and "run" in trial.user_attrs:
                            seed_runs[seed] = RunResult.from_dict(trial.user_attrs["run"])
                results.append(ContenderResult(
                    task.name, contender.label, [d.to_text() for d in contender.space], trials,
                    None if best is None else best[0], None if best is None else best[1],
                    dict(sorted(seed_runs.items()))))
        return results


def run_bench(tasks: Sequence[Task], optimizers: Sequence[str | OptimizerSpec],
              schedules: Sequence[str] = ("constant",), config: BenchConfig | None = None,
              lr_range: tuple[float, float] | None = None, tune: Sequence[str] = (),
              reporter: Reporter | None = None, report: bool = True
              ) -> tuple[list[ContenderResult], list[dict[str, Any]]]:
    """Race optimizers on tasks (built-in or :meth:`Task.custom`) and return the results.

    Every optimizer is crossed with every schedule. Writes ``results.json`` and, with
    ``report``, ``report.html`` to ``config.out``. Returns the per-contender results and the
    summary rows (see :func:`summarize`).
    """
    config = config or BenchConfig()
    contenders = [make_contender(optimizer, schedule, lr_range, tune)
                  for optimizer in optimizers for schedule in schedules]
    bench = Bench(tasks, contenders, config)
    results = bench.run(reporter)
    return results, write_outputs(bench, results, report)


def write_outputs(bench: Bench, results: list[ContenderResult], report: bool = True
                  ) -> list[dict[str, Any]]:
    """Write ``results.json`` (and ``report.html``) to the output folder; return the summary
    rows (see :func:`descend.bench.results.summary_rows`)."""
    rows = summary_rows(bench.tasks, results)
    out = bench.config.out
    out.mkdir(parents=True, exist_ok=True)
    write_results(out / "results.json", bench.display_url, rows, results)
    if report:
        from descend.bench.report import write_report  # matplotlib loads only for the report

        write_report(out / "report.html", bench.tasks, results, rows)
    return rows
