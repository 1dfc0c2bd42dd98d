"""descend.NAdam's state against torch.optim.NAdam's: the per-parameter ``mu_product``, key for
key, through checkpoints both ways (the numbers are in the parity suite's grid)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import descend
from descend import functional
from descend.testing import TOLERANCE, clone_params, make_params, relative_error

SHAPES = [(3, 4), (5,), ()]
OPTIONS = dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, momentum_decay=0.05)


def _step(optimizer, params, gradients):
    for param, gradient in zip(params, gradients, strict=True):
        param.grad = None if gradient is None else gradient.clone()
    optimizer.step()


def _gradients(steps, dtype, skip_every=2):
    generator = torch.Generator().manual_seed(5)
    return [
        [
            None
            if (index == 1 and step % skip_every)
            else torch.randn(shape, dtype=dtype, generator=generator)
            for index, shape in enumerate(SHAPES)
        ]
        for step in range(steps)
    ]


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_state_dict_equals_torchs_key_for_key(backend, dtype):
    ours_params = make_params(SHAPES, dtype, seed=2)
    theirs_params = clone_params(ours_params)
    ours = descend.NAdam(ours_params, backend=backend, **OPTIONS)
    theirs = torch.optim.NAdam(theirs_params, **OPTIONS)
    for gradients in _gradients(12, dtype):
        _step(ours, ours_params, gradients)
        _step(theirs, theirs_params, gradients)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert ours_state["param_groups"] == theirs_state["param_groups"]
    assert ours_state["state"].keys() == theirs_state["state"].keys()
    for key, entry in theirs_state["state"].items():
        assert list(ours_state["state"][key]) == list(entry)
        for name, value in entry.items():
            mine = ours_state["state"][key][name]
            assert mine.dtype == value.dtype and mine.shape == value.shape, name
        # The running product is the float32 product torch keeps, bit for bit.
        assert ours_state["state"][key]["mu_product"].item() == entry["mu_product"].item()
    # Parameter 1 skipped every other step: its step count and product lag the others'.
    assert ours.state[ours_params[1]]["step"] < ours.state[ours_params[0]]["step"]


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_checkpoints_load_both_ways_and_continue_like_torch(backend):
    dtype = torch.float64
    gradients = _gradients(16, dtype)
    ours_params = make_params(SHAPES, dtype, seed=4)
    theirs_params = clone_params(ours_params)
    ours = descend.NAdam(ours_params, backend=backend, **OPTIONS)
    theirs = torch.optim.NAdam(theirs_params, **OPTIONS)
    for step in gradients[:8]:
        _step(ours, ours_params, step)
        _step(theirs, theirs_params, step)
    # Swap: torch's checkpoint into descend, descend's into torch.
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    ours.load_state_dict(theirs_state)
    theirs.load_state_dict(ours_state)
    for step in gradients[8:]:
        _step(ours, ours_params, step)
        _step(theirs, theirs_params, step)
    for a, b in zip(ours_params, theirs_params, strict=True):
        assert relative_error(a, b) <= TOLERANCE[dtype]


def test_an_old_checkpoint_with_a_numeric_mu_product_is_converted():
    param = torch.ones(3, requires_grad=True)
    optimizer = descend.NAdam([param])
    param.grad = torch.ones(3)
    optimizer.step()
    state = optimizer.state_dict()
    state["state"][0]["mu_product"] = float(state["state"][0]["mu_product"])
    state["state"][0]["step"] = 1
    fresh = descend.NAdam([param])
    fresh.load_state_dict(state)
    assert isinstance(fresh.state[param]["mu_product"], torch.Tensor)
    fresh.step()
    assert fresh.state[param]["step"].item() == 2.0


def test_functional_nadam_runs_the_same_rule_as_the_class():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6)
    param = torch.tensor(w, requires_grad=True)
    optimizer = descend.NAdam([param], lr=0.01)
    config = {"learning_rate": 0.01}
    for dw in rng.standard_normal((25, 6)):
        w, config = functional.nadam(w, dw, config)
        param.grad = torch.tensor(dw)
        optimizer.step()
    # The class keeps mu_product in float32 as torch does; the functional form in float64.
    np.testing.assert_allclose(w, param.detach().numpy(), rtol=1e-6)
    assert config["t"] == 25 and config["mu_product"] == pytest.approx(
        optimizer.state[param]["mu_product"].item(), rel=1e-6
    )
