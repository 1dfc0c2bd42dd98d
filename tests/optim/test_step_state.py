"""One step-state lifecycle: ``StepState.advance`` changes nothing, ``commit`` writes through to
the optimizer's state, and the optimizer, the functional API and the lab's NumPy executor keep
the same counters, running products and group state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
