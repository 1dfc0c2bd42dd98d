"""descend.RAdam's rectification: off while the variance of v is intractable, as the paper
predicts (the numbers against torch.optim.RAdam are in the parity suite's grid)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import descend
from descend import functional


def _first_rectified_step(beta2: float) -> int:
    """The first t with rho_t > 5 (Liu et al.'s threshold), from the closed form."""
    rho_inf = 2 / (1 - beta2) - 1
    t = 1
    while rho_inf - 2 * t * beta2**t / (1 - beta2**t) <= 5:
        t += 1
    return t


@pytest.mark.parametrize("beta2", [0.9, 0.99, 0.999])
def test_steps_are_momentum_steps_until_the_variance_is_tractable(beta2):
    rng = np.random.default_rng(1)
    onset = _first_rectified_step(beta2)
    w, m = rng.standard_normal(4), np.zeros(4)
    config = {"learning_rate": 0.1, "beta2": beta2}
    for t in range(1, onset + 2):
        dw = rng.standard_normal(4)
        m = 0.9 * m + 0.1 * dw
        plain_step = w - 0.1 * m / (1 - 0.9**t)
        w, config = functional.radam(w, dw, config)
        if t < onset:
            np.testing.assert_allclose(w, plain_step, rtol=1e-13, atol=1e-15)
        else:  # rectified: the adaptive step has taken over
            assert not np.allclose(w, plain_step, rtol=1e-6)


def test_functional_radam_runs_the_same_rule_as_the_class():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6)
    param = torch.tensor(w, requires_grad=True)
    optimizer = descend.RAdam([param], lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)
    config = {"learning_rate": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}
    for dw in rng.standard_normal((25, 6)):
        w, config = functional.radam(w, dw, config)
        param.grad = torch.tensor(dw)
        optimizer.step()
    np.testing.assert_allclose(w, param.detach().numpy(), rtol=1e-12, atol=1e-14)
