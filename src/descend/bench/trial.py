"""Training and scoring a claimed trial, and telling the storage how it ended.

A tuning trial trains with seed :data:`TUNING_SEED` and reports each epoch's validation score
to Optuna's pruner; a diverged trial counts as pruned. A seed run reruns the best setting
with its own seed and is never pruned; a diverged seed run stays, scored worst. A run that is
interrupted (Ctrl-C, an error in the user's model) is told failed, so it is redone next time;
one another worker took over while this one stalled is dropped here with one line (see
:func:`descend.bench.storage.owned`).
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState

from descend.bench import storage as storage_layer
from descend.bench.claims import Claim
from descend.bench.config import Reporter
from descend.bench.storage import TAKEN_OVER
from descend.bench.studies import StudyPair
from descend.bench.training import EpochMetrics, RunResult, score, train

#: Seed of every tuning trial; seed runs use 1..K.
TUNING_SEED = 0


def _detail(params: dict[str, float]) -> str:
    return ", ".join(f"{key}={value:.3g}" for key, value in params.items())


def run_tuning_trial(
    pair: StudyPair, claim: Claim, storage: optuna.storages.RDBStorage, reporter: Reporter
) -> None:
    """Suggest the claimed trial's setting, train it, and tell its score (or that it was
    pruned or diverged)."""
    task, contender, study, trial = pair.task, pair.contender, pair.tune, claim.trial
    params = {dimension.name: dimension.suggest(trial) for dimension in contender.space}
    spec = contender.optimizer_for(params)
    reporter.run_started(
        task.name, contender.label, f"trial {trial.number + 1}", _detail(params), task.epochs
    )
    history: list[EpochMetrics] = []

    def on_epoch(metrics: EpochMetrics) -> None:
        history.append(metrics)
        reporter.epoch(metrics)
        trial.report(score(task, metrics), metrics.epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    with storage_layer.owned(storage, study, claim.trial_id) as ownership:
        try:
            result = train(
                task,
                spec,
                contender.schedule_for(task.epochs),
                TUNING_SEED,
                task.epochs,
                on_epoch=on_epoch,
            )
        except optuna.TrialPruned:
            trial.set_user_attr("run", RunResult(history).to_dict())
            study.tell(trial, state=TrialState.PRUNED)
            reporter.run_finished("pruned")
            return
        trial.set_user_attr("run", result.to_dict())
        if result.diverged:
            trial.set_user_attr("diverged", True)
            study.tell(trial, state=TrialState.PRUNED)
            reporter.run_finished("diverged")
            return
        study.tell(trial, score(task, result.history[-1]))
    if ownership.lost:
        reporter.notice(f"{task.name} {contender.label} trial {trial.number + 1}: {TAKEN_OVER}")
        return
    reporter.run_finished("complete")


def run_seed_run(
    pair: StudyPair,
    claim: Claim,
    params: dict,
    storage: optuna.storages.RDBStorage,
    reporter: Reporter,
) -> None:
    """Train setting ``params`` with the claimed seed and tell its score."""
    task, contender, study, trial = pair.task, pair.contender, pair.seeds, claim.trial
    assert claim.seed is not None
    reporter.run_started(
        task.name, contender.label, f"seed {claim.seed}", _detail(params), task.epochs
    )
    with storage_layer.owned(storage, study, claim.trial_id) as ownership:
        result = train(
            task,
            contender.optimizer_for(params),
            contender.schedule_for(task.epochs),
            claim.seed,
            task.epochs,
            on_epoch=reporter.epoch,
        )
        trial.set_user_attr("run", result.to_dict())
        # A diverged seed run is a result too (the setting is fragile): it stays, scored worst.
        value = (
            score(task, result.history[-1])
            if result.history
            else (0.0 if task.higher_is_better else math.inf)
        )
        if result.diverged:
            trial.set_user_attr("diverged", True)
            value = 0.0 if task.higher_is_better else 1e300
        study.tell(trial, value)
    if ownership.lost:
        reporter.notice(f"{task.name} {contender.label} seed {claim.seed}: {TAKEN_OVER}")
        return
    reporter.run_finished("diverged" if result.diverged else "complete")
