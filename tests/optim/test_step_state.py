"""One step-state lifecycle: ``StepState.advance`` changes nothing, ``commit`` writes through to
the optimizer's state, and the optimizer, the functional API and the lab's NumPy executor keep
the same counters, running products and group state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend
from descend import functional, rules
from descend.kernels.numpy import RuleStepper
from descend.kernels.state import StepState


def test_advance_changes_nothing_and_commit_writes_it():
    rule = rules.RULES["nadam"]
    state = StepState.single(rule, 3, {"mu_product": 0.5})
    after = state.advance({**rule.defaults})
    assert int(state.steps[0]) == 3 and state.running() == {"mu_product": 0.5}
    assert int(after.steps[0]) == 4
    state.commit(after)
    assert state.running() == after.running() != {"mu_product": 0.5}


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(["sgd", "adam", "nadam"]),
    start=st.lists(st.integers(0, 3), min_size=1, max_size=5),
    advances=st.lists(st.one_of(st.none(), st.lists(st.booleans(), min_size=5, max_size=5))),
)
def test_a_state_knows_whether_its_counters_agree_after_any_advances(name, start, advances):
    """Whether the counters all agree, which lets a step take one key without comparing them,
    stays true after whole advances and is never claimed after a part of the tensors advanced
    alone; keys() always equals those of a state built afresh from the same counters (SGD's
    counters saturate at 2, so they may agree again)."""
    rule = rules.RULES[name]
    hypers = dict(rule.defaults)
    products = {p.name: np.full(len(start), float(p.initial)) for p in rule.products}
    state = StepState(rule, np.array(start, dtype=np.float64), products)
    for chosen in advances:
        indices = None if chosen is None else np.flatnonzero(chosen[: len(start)])
        state.commit(state.advance(hypers, indices))
        if state.uniform:
            assert (state.steps == state.steps[0]).all()
        fresh = StepState(
            rule, state.steps.copy(), {k: v.copy() for k, v in state.products.items()}
        )
        keys, rows = state.keys()
        fresh_keys, fresh_rows = fresh.keys()
        assert keys == fresh_keys
        assert np.array_equal(rows, fresh_rows)


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_an_optimizers_counters_and_products_advance_through_the_state_dict(backend):
    param = torch.zeros(3, requires_grad=True)
    optimizer = descend.NAdam([param], lr=0.01, backend=backend)
    stepper = RuleStepper(rules.RULES["nadam"], {"lr": 0.01}, np.zeros(3))
    for _ in range(4):
        param.grad = torch.ones(3)
        optimizer.step()
        stepper.step(np.zeros(3), np.ones(3))
    state = optimizer.state[param]
    assert float(state["step"]) == stepper.count == 4
    # The optimizer's product is in the counter's dtype (float32), the NumPy executor's in
    # float64, as torch.optim.NAdam and the functional API keep theirs.
    assert float(state["mu_product"]) == pytest.approx(
        stepper.state.running()["mu_product"], rel=1e-6
    )


def test_the_functional_api_and_the_lab_keep_the_same_group_state():
    config = {"learning_rate": 0.1}
    update = functional.UPDATES["sf_sgd"]
    stepper = RuleStepper.from_functional(update, config, np.zeros(2))
    w = np.zeros(2)
    for _ in range(3):
        w, config = update(w, np.ones(2), config)
        stepper.step(np.zeros(2), np.ones(2))
    running = stepper.state.running()
    for name in rules.RULES["sf_sgd"].state_names():
        assert config[name] == running[name]
