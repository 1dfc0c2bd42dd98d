"""Claiming seed runs: two workers that claim at the same moment never run the same seed."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from descend.bench.claims import OVER_BUDGET, choose_seed, claim_seed_run, open_seed_claim
from descend.bench.storage import open_storage
from descend.bench.studies import StudyPair

PARAMS = {"lr": 0.01}


def _pair(tmp_path) -> tuple[StudyPair, optuna.storages.RDBStorage]:
    storage = open_storage(f"sqlite:///{tmp_path / 'claims.db'}")
    seeds = optuna.create_study(study_name="claims:seeds", storage=storage)
    # Only the seed study is read when claiming seed runs.
    return StudyPair(task=None, contender=None, tune=None, seeds=seeds), storage  # type: ignore[arg-type]


def test_a_worker_whose_seed_was_taken_meanwhile_steps_back(tmp_path):
    """Worker A opens its trial; before it writes a seed, worker B claims a whole run and
    takes seed 1 (A's trial had no seed yet). A then also finds seed 1 missing among the trials
    before it, writes it, and must see B's and step back instead of running seed 1 twice."""
    pair, storage = _pair(tmp_path)
    wanted = {1, 2, 3}
    first, first_id = open_seed_claim(pair, PARAMS, storage)
    second = claim_seed_run(pair, PARAMS, wanted, storage)
    assert second is not None and second.seed == 1
    assert choose_seed(pair, PARAMS, wanted, first, first_id) is None
    trials = {t.number: t for t in pair.seeds.get_trials()}
    assert trials[first.number].state == TrialState.FAIL
    assert trials[first.number].user_attrs["failed_because"] == OVER_BUDGET
    # The next claim takes the next seed; every seed is held once.
    third = claim_seed_run(pair, PARAMS, wanted, storage)
    assert third is not None and third.seed == 2
    running = [t for t in pair.seeds.get_trials() if t.state == TrialState.RUNNING]
    assert sorted(t.user_attrs["seed"] for t in running) == [1, 2]


def test_claims_one_after_another_take_each_seed_once(tmp_path):
    pair, storage = _pair(tmp_path)
    claims = [claim_seed_run(pair, PARAMS, {1, 2}, storage) for _ in range(3)]
    assert [claim.seed if claim else None for claim in claims] == [1, 2, None]
