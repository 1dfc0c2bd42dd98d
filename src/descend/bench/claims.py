"""Claiming: take the next trial of a budget in the storage, or step back.

A claimed trial is marked as this process's (see :func:`descend.bench.storage.claim`), so a
worker that dies leaves a trial others reclaim. Workers that ask at the same moment may
overshoot a budget; the later trial steps back (it is told failed, "over budget"), so the
budget holds however many workers share the study.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from descend.bench import storage as storage_layer
from descend.bench.config import BenchConfig
from descend.bench.planning import params_key, seed_trials
from descend.bench.search import make_sampler
from descend.bench.studies import StudyPair

#: Why a trial that stepped back failed, as its user attribute records.
OVER_BUDGET = "over budget (another worker took it)"


@dataclass(frozen=True)
class Claim:
    """A trial this worker holds: the Optuna trial, its storage id, and for a seed run the
    seed it reruns."""

    trial: optuna.Trial
    trial_id: int
    seed: int | None = None


def ask(study: optuna.Study) -> optuna.Trial:
    """A new trial of ``study`` (Optuna's ``ask``)."""
    with warnings.catch_warnings():
        # Trials run by ask/tell with this package's own heartbeat thread (see storage.py).
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask()


def _step_back(study: optuna.Study, trial: optuna.Trial) -> None:
    trial.set_user_attr("failed_because", OVER_BUDGET)
    study.tell(trial, state=TrialState.FAIL)


def _is_surplus(study: optuna.Study, trial: optuna.Trial, budget: int) -> bool:
    ahead = [
        other
        for other in study.get_trials(
            deepcopy=False, states=(*storage_layer.FINISHED, TrialState.RUNNING)
        )
        if other.number < trial.number
    ]
    return len(ahead) >= budget


def claim_tuning_trial(
    pair: StudyPair, config: BenchConfig, budget: int, storage: optuna.storages.RDBStorage
) -> Claim | None:
    """Ask the sampler for the next tuning trial and claim it; ``None`` when the budget was
    full by the time it was claimed."""
    study = pair.tune
    taken = len(
        study.get_trials(deepcopy=False, states=(*storage_layer.FINISHED, TrialState.RUNNING))
    )
    # The sampler knows how many trials came before, so the coarse-to-fine plan goes on
    # where other workers or an earlier run left it.
    study.sampler = make_sampler(
        config.sampler, config.sampler_seed, budget, taken, pair.contender.space
    )
    trial = ask(study)
    trial_id = storage_layer.claim(trial, study, storage)
    if _is_surplus(study, trial, budget):
        _step_back(study, trial)
        return None
    return Claim(trial, trial_id)


def open_seed_claim(
    pair: StudyPair, params: dict, storage: optuna.storages.RDBStorage
) -> tuple[optuna.Trial, int]:
    """A new trial of ``pair``'s seed study, claimed and marked as a run of ``params``, its
    seed not chosen yet (:func:`choose_seed`)."""
    study = pair.seeds
    trial = ask(study)
    trial_id = storage_layer.claim(trial, study, storage)
    trial.set_user_attr("params_key", params_key(params))
    trial.set_user_attr("params", params)
    return trial, trial_id


def choose_seed(
    pair: StudyPair, params: dict, wanted: set[int], trial: optuna.Trial, trial_id: int
) -> Claim | None:
    """The claim of an opened ``trial``: the lowest seed of ``wanted`` no earlier trial has
    taken; ``None`` (the trial steps back) when none was left, or when another worker's trial
    took the same seed meanwhile.

    Two workers that claim at the same moment can each read the other's trial before its
    seed is written and pick the same one. So the seed is written, then the trials are read
    again, and a trial that finds its seed taken by any other steps back: of two such trials
    the later reader always sees the earlier one's seed, so at most one runs (both may step
    back; the caller claims again).
    """
    study = pair.seeds
    states = (TrialState.COMPLETE, TrialState.RUNNING)
    taken = {
        other.user_attrs.get("seed")
        for other in seed_trials(study, params, states)
        if other.number < trial.number
    }
    missing = sorted(wanted - taken)
    if not missing:
        _step_back(study, trial)
        return None
    trial.set_user_attr("seed", missing[0])
    if any(
        other.number != trial.number and other.user_attrs.get("seed") == missing[0]
        for other in seed_trials(study, params, states)
    ):
        _step_back(study, trial)
        return None
    return Claim(trial, trial_id, missing[0])


def claim_seed_run(
    pair: StudyPair, params: dict, wanted: set[int], storage: optuna.storages.RDBStorage
) -> Claim | None:
    """Claim a seed run of setting ``params``: the lowest seed of ``wanted`` no other trial
    holds (see :func:`choose_seed`); ``None`` when none was left by the time it was claimed,
    or another worker took it meanwhile."""
    trial, trial_id = open_seed_claim(pair, params, storage)
    return choose_seed(pair, params, wanted, trial, trial_id)
