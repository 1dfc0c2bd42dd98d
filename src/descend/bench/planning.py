"""Planning: what a budget still misses, read from the storage.

Completed and pruned trials count towards a budget; failed ones (killed mid-run, or over
budget) do not, so they are redone. A worker that finds the rest of a budget taken by trials
other workers are running waits for them (a :class:`Gap` that says ``wait``), so several
workers share one budget and none of them overshoots it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from descend.bench import storage as storage_layer
from descend.bench.config import BenchConfig
from descend.bench.contenders import BenchContender
from descend.bench.studies import StudyPair

#: What a worker does next about a budget: nothing, wait for other workers, or run a trial.
DONE, WAIT, RUN = "done", "wait", "run"


@dataclass(frozen=True)
class Gap:
    """What one budget still misses, as this worker sees it now.

    Attributes:
        action: :data:`DONE`, :data:`WAIT` or :data:`RUN`.
        waiting_for: with :data:`WAIT`, what other workers run (``"2 trial(s)"``).
    """

    action: str
    waiting_for: str = ""


def tuning_budget(contender: BenchContender, config: BenchConfig) -> int:
    """Tuning trials a contender gets: none when nothing is tuned (the spec fixes all)."""
    return config.trials if contender.space else 0


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count towards a budget: completed and pruned ones."""
    return study.get_trials(deepcopy=False, states=storage_layer.FINISHED)


def params_key(params: dict[str, float]) -> str:
    """The text seed runs record to say which setting they rerun."""
    return json.dumps(params, sort_keys=True)


def seed_trials(
    study: optuna.Study, params: dict, states: Sequence[TrialState]
) -> list[FrozenTrial]:
    """The seed runs of setting ``params`` in ``states``."""
    key = params_key(params)
    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=tuple(states))
        if trial.user_attrs.get("params_key") == key
    ]


def seeds_done(study: optuna.Study, params: dict) -> set[int]:
    """The seeds whose run of setting ``params`` completed."""
    return {
        trial.user_attrs["seed"]
        for trial in seed_trials(study, params, (TrialState.COMPLETE,))
        if "seed" in trial.user_attrs
    }


def best_trial(pair: StudyPair, config: BenchConfig) -> tuple[dict, float | None] | None:
    """The best finished tuning trial's params and value.

    ``({}, None)`` when nothing is tuned (the spec's own values); ``None`` when no trial
    completed. Ties go to the earliest trial, so every worker picks the same one.
    """
    if not tuning_budget(pair.contender, config):
        return {}, None
    complete = [
        (trial.value, trial)
        for trial in pair.tune.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if trial.value is not None and math.isfinite(trial.value)
    ]
    if not complete:
        return None
    sign = -1.0 if pair.task.higher_is_better else 1.0
    value, best = min(complete, key=lambda item: (sign * item[0], item[1].number))
    return dict(best.params), value


def count_done(pairs: Sequence[StudyPair], config: BenchConfig) -> tuple[int, int]:
    """Runs of every budget together, and how many of them the storage already holds."""
    total = done = 0
    for pair in pairs:
        budget = tuning_budget(pair.contender, config)
        total += budget + config.seeds
        done += min(budget, len(finished_trials(pair.tune)))
        if len(finished_trials(pair.tune)) >= budget:
            best = best_trial(pair, config)
            if best is not None:
                done += min(config.seeds, len(seeds_done(pair.seeds, best[0])))
    return total, done


def tuning_gap(pair: StudyPair, budget: int, storage: optuna.storages.RDBStorage) -> Gap:
    """What the tuning budget misses now, once trials of dead workers are reclaimed."""
    storage_layer.reclaim_stale(pair.tune, storage)
    finished = len(finished_trials(pair.tune))
    running = len(pair.tune.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    if finished >= budget:
        return Gap(DONE)
    if finished + running >= budget:
        return Gap(WAIT, f"{running} trial(s)")
    return Gap(RUN)


def seeds_gap(
    pair: StudyPair, params: dict, wanted: set[int], storage: optuna.storages.RDBStorage
) -> Gap:
    """What the seed reruns of setting ``params`` miss now, once trials of dead workers are
    reclaimed."""
    storage_layer.reclaim_stale(pair.seeds, storage)
    done = seeds_done(pair.seeds, params)
    if wanted <= done:
        return Gap(DONE)
    running = {
        trial.user_attrs.get("seed")
        for trial in seed_trials(pair.seeds, params, (TrialState.RUNNING,))
    }
    if wanted <= done | running:
        return Gap(WAIT, "seed runs")
    return Gap(RUN)
