"""The Optuna studies of a benchmark: their names, the settings they are bound to, and how a
benchmark is read back from the studies its workers wrote.

Every task and contender has two studies, ``<study>:<task>:<contender>:tune`` and
``...:seeds`` (a :class:`StudyPair`). A study records the settings it was made with; opening
it again with other settings is refused, so one study never mixes incomparable trials.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from descend.bench import storage as storage_layer
from descend.bench.config import BenchConfig
from descend.bench.contenders import BenchContender
from descend.bench.search import make_pruner, parse_dimension
from descend.bench.tasks import Task, get_tasks
from descend.specs import ContenderSpec, ScheduleSpec, parse_optimizer, parse_schedule

#: Bumped when a change makes old studies incomparable.
PROTOCOL_VERSION = 1
#: The two phases of every task and contender, in the order they run.
PHASES = ("tune", "seeds")

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class StudyPair:
    """One task and contender with its two studies: the tuning trials and the seed runs."""

    task: Task
    contender: BenchContender
    tune: optuna.Study
    seeds: optuna.Study


def study_name(prefix: str, task: Task, contender: BenchContender, phase: str) -> str:
    """The Optuna study name of one task, contender and phase under ``prefix``."""
    return f"{prefix}:{task.name}:{contender.label}:{phase}"


def _schedule_settings(schedule: ScheduleSpec | None) -> dict[str, Any] | None:
    return None if schedule is None else {"name": schedule.name, **schedule.arguments}


def fingerprint(task: Task, contender: BenchContender) -> dict[str, Any]:
    """The settings a study is bound to: what makes its trials comparable."""
    batch_size = getattr(task.train, "batch_size", None)
    return {
        "protocol": PROTOCOL_VERSION,
        "task": task.name,
        "epochs": task.epochs,
        "batch_size": batch_size,
        "metric": task.metric,
        "optimizer": contender.optimizer.text,
        "schedule": _schedule_settings(contender.schedule_for(task.epochs)),
        "space": [dimension.to_text() for dimension in contender.space],
    }


def open_study(
    storage: optuna.storages.BaseStorage,
    config: BenchConfig,
    shown_url: str,
    task: Task,
    contender: BenchContender,
    phase: str,
) -> optuna.Study:
    """Create or load one study, refusing one made with other settings (``shown_url``: the
    storage as errors name it, password masked)."""
    name = study_name(config.study, task, contender, phase)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="maximize" if task.higher_is_better else "minimize",
        pruner=make_pruner(config.pruner, task.epochs),
    )
    expected = json.loads(json.dumps(fingerprint(task, contender)))
    stored = study.user_attrs.get("settings")
    if phase == "tune":
        # What `descend report` needs to rebuild this contender from the storage alone.
        study.set_user_attr(
            "contender",
            {
                "optimizer": contender.optimizer.text,
                "schedule": contender.schedule_text,
                "trials": config.trials,
                "seeds": config.seeds,
                "target": task.target,
            },
        )
    if stored is None:
        study.set_user_attr("settings", expected)
    elif stored != expected:
        changed = sorted(key for key in expected if stored.get(key) != expected.get(key))
        raise ValueError(
            f"study {name!r} in {shown_url} was run with other settings "
            f"({', '.join(changed)} differ); use another --out, --storage or "
            "--study"
        )
    return study


@dataclass(frozen=True)
class RecordedBench:
    """A benchmark as its workers recorded it: what :meth:`Bench.from_storage` rebuilds."""

    tasks: list[Task]
    contenders: list[BenchContender]
    config: BenchConfig


def read_recorded(
    storage: str, study: str, out: Path, task_options: Mapping[str, Any]
) -> RecordedBench:
    """The tasks, contenders and settings of the benchmark ``study`` in ``storage``, rebuilt
    from what each study recorded; ``task_options`` go to the tasks that declare them."""
    url = storage_layer.storage_url(storage, Path(out))
    opened = storage_layer.open_storage(url, create=False)
    shown = storage_layer.display_url(url)
    prefix = f"{study}:"
    summaries = [
        summary
        for summary in opened.get_all_studies()
        if summary.study_name.startswith(prefix) and summary.study_name.endswith(":tune")
    ]
    if not summaries:
        names = sorted({summary.study_name.split(":")[0] for summary in opened.get_all_studies()})
        raise ValueError(
            f"no benchmark study {study!r} in {shown}; studies there: {', '.join(names) or 'none'}"
        )
    targets: dict[str, float | None] = {}
    contenders: dict[str, BenchContender] = {}
    trials, seeds, epochs = 0, 1, set()
    for summary in summaries:
        settings = summary.user_attrs.get("settings")
        described = summary.user_attrs.get("contender")
        if not settings or not described:
            raise ValueError(
                f"study {summary.study_name!r} in {shown} was not written by "
                "descend bench; cannot rebuild its benchmark"
            )
        targets.setdefault(settings["task"], described.get("target"))
        epochs.add(settings["epochs"])
        contender = BenchContender(
            ContenderSpec(
                parse_optimizer(described["optimizer"]),
                parse_schedule(described["schedule"], complete=False),
            ),
            tuple(parse_dimension(text) for text in settings["space"]),
        )
        contenders.setdefault(contender.label, contender)
        trials = max(trials, int(described["trials"]))
        seeds = max(seeds, int(described["seeds"]))
    if len(epochs) != 1:
        raise ValueError(
            f"study {study!r} mixes runs of {sorted(epochs)} epochs; "
            "report them under separate study names"
        )
    tasks = [
        task.with_options(target=targets[task.name])
        for task in get_tasks(list(targets), task_options)
    ]
    config = BenchConfig(
        trials=trials, seeds=seeds, epochs=epochs.pop(), out=Path(out), storage=url, study=study
    )
    return RecordedBench(tasks, list(contenders.values()), config)
