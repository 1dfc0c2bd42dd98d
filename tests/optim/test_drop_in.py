"""Drop-in means drop-in: what a training script moved from torch.optim takes for granted.

The first part runs torch's own optimizer test inputs (``torch.testing._internal.
common_optimizers.optim_db``: every option set torch tests each class with, and every input torch
refuses) against descend. The rest covers checkpoints, ``torch.compile``, complex and sparse
parameters, and torch's argument rules, each compared with torch.optim on every backend.
"""

from __future__ import annotations

import copy
import io
import math
import warnings

import numpy as np
import pytest
import torch

import descend
from descend.testing import TOLERANCE, run_side_by_side

BACKENDS = ["reference", "fused", "auto"]
DROP_IN = [
    name
    for name, cls in descend.optim.CLASSES.items()
    if cls.torch_equivalent is not None and cls.torch_equivalent[0] == f"torch.optim.{name}"
]


def torch_info(name: str):
    from torch.testing._internal.common_optimizers import optim_db

    (info,) = [info for info in optim_db if info.optim_cls.__name__ == name]
    return info


def _torch_inputs():
    cases = []
    for name in DROP_IN:
        for dtype in (torch.float32, torch.float64):
            for index, optim_input in enumerate(
                torch_info(name).optim_inputs_func(device="cpu", dtype=dtype)
            ):
                cases.append(
                    pytest.param(name, dtype, index, id=f"{name}-{optim_input.desc}-{dtype}")
                )
    return cases


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize(("name", "dtype", "index"), _torch_inputs())
@pytest.mark.slow
def test_every_option_set_torch_tests_matches_torch(name, dtype, index, backend):
    kwargs = torch_info(name).optim_inputs_func(device="cpu", dtype=dtype)[index].kwargs
    kwargs = {
        key: value for key, value in kwargs.items() if key not in ("foreach", "fused", "capturable")
    }
    # Muon steps 2-D parameters only.
    shapes = [(3, 4), (5, 2), (2, 6)] if name == "Muon" else [(3, 4), (5,), ()]
    param_error, state_error, *_ = run_side_by_side(
        lambda params: getattr(descend, name)(params, backend=backend, **copy.deepcopy(kwargs)),
        lambda params: getattr(torch.optim, name)(params, **copy.deepcopy(kwargs)),
        shapes,
        dtype,
        steps=20,
        exact_state_keys=True,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


def _error_inputs():
    cases = []
    for name in DROP_IN:
        errors = torch_info(name).optim_error_inputs_func(device="cpu", dtype=torch.float32)
        for index, error in enumerate(errors):
            cases.append(pytest.param(name, index, id=f"{name}-{error.error_regex[:40]}"))
    return cases


@pytest.mark.parametrize(("name", "index"), _error_inputs())
def test_what_torch_refuses_descend_refuses_with_the_same_exception_type(name, index):
    from torch.testing._internal.common_optimizers import OptimizerErrorEnum

    error = torch_info(name).optim_error_inputs_func(device="cpu", dtype=torch.float32)[index]
    given = error.optimizer_error_input
    params = given.params if given.params is not None else [torch.nn.Parameter(torch.randn(2, 3))]
    expected = error.error_type
    if issubclass(expected, Warning):
        # torch warns about a parameter listed twice in one group and steps it twice; descend
        # refuses it (the same parameter updated twice per step is never what was meant).
        assert "duplicate" in error.error_regex
        expected = ValueError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if error.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
            with pytest.raises(expected):
                getattr(descend, name)(params, **given.kwargs)
        else:
            try:
                optimizer = getattr(descend, name)(params, **given.kwargs)
            except expected:
                return  # refused sooner than torch (at construction), with torch's type
            with pytest.raises(expected):
                optimizer.step()


# -- 1. checkpoints load with torch.load's defaults ----------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(descend.optim.CLASSES))
def test_state_dict_loads_with_torch_load_defaults(name, backend):
    model = torch.nn.Linear(3, 2, bias=False)  # a 2-D weight: every class takes it (Muon too)
    optimizer = getattr(descend, name)(model.parameters(), backend=backend)
    for _ in range(2):
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)  # weights_only=True: plain containers, tensors and numbers only
    fresh = getattr(descend, name)(model.parameters(), backend=backend)
    fresh.load_state_dict(loaded["optimizer"])
    reloaded = fresh.state_dict()["state"]
    assert reloaded.keys() == loaded["optimizer"]["state"].keys()
    for key, state in loaded["optimizer"]["state"].items():
        assert reloaded[key].keys() == state.keys()
        assert all(torch.equal(reloaded[key][name], value) for name, value in state.items())


# -- 2. torch.compile(opt.step) ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.slow
def test_a_compiled_step_gives_the_eager_numbers(backend):
    torch._dynamo.reset()
    weights = [torch.nn.Parameter(torch.randn(5)) for _ in range(2)]
    twins = [torch.nn.Parameter(w.detach().clone()) for w in weights]
    ours = descend.Adam(weights, lr=0.01, backend=backend)
    eager = descend.Adam(twins, lr=0.01, backend=backend)
    compiled = torch.compile(ours.step)
    for _ in range(3):
        gradient = [torch.randn(5) for _ in weights]
        for w, t, g in zip(weights, twins, gradient, strict=True):
            w.grad, t.grad = g.clone(), g.clone()
        compiled()
        eager.step()
    for w, t in zip(weights, twins, strict=True):
        # Inductor may fuse the reference path's ops, which can round the last bit differently.
        torch.testing.assert_close(w.detach(), t.detach(), rtol=1e-6, atol=1e-7)


def test_an_eager_step_skips_the_compile_opaque_wrapper(monkeypatch):
    """The wrapper that hides a step from ``torch.compile`` costs microseconds a call: an eager
    step on a compiled executor runs without it, with the numbers of torch.optim."""
    weight = torch.nn.Parameter(torch.randn(5))
    twin = torch.nn.Parameter(weight.detach().clone())
    ours = descend.Adam([weight], lr=0.01, backend="fused")
    reference = torch.optim.Adam([twin], lr=0.01)

    def traced_only() -> None:
        raise AssertionError("an eager step went through the compile-opaque wrapper")

    monkeypatch.setattr(ours, "_step_compiled", traced_only)
    for _ in range(3):
        weight.grad = torch.randn(5)
        twin.grad = weight.grad.clone()
        ours.step()
        reference.step()
    torch.testing.assert_close(weight.detach(), twin.detach(), rtol=0, atol=0)


# -- 3. settings survive load_state_dict ----------------------------------------------------------


def test_constructor_settings_survive_load_state_dict():
    param = torch.nn.Parameter(torch.randn(3))
    optimizer = descend.Adam([param], backend="reference", nonfinite="raise")
    source = descend.Adam([torch.nn.Parameter(torch.randn(3))])
    optimizer.load_state_dict(source.state_dict())
    assert optimizer.backend == "reference" and optimizer.nonfinite == "raise"
    param.grad = torch.tensor([1.0, math.nan, 0.0])
    with pytest.raises(descend.NonFiniteGradientError):
        optimizer.step()


# -- 4. older and foreign checkpoints -------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_old_checkpoints_get_defaults_and_tensor_steps(backend):
    param = torch.nn.Parameter(torch.randn(4))
    twin = torch.nn.Parameter(param.detach().clone())
    source = torch.optim.Adam([torch.nn.Parameter(param.detach().clone())], lr=0.1)
    source.param_groups[0]["params"][0].grad = torch.randn(4)
    source.step()
    state = copy.deepcopy(source.state_dict())
    for key in (
        "maximize",
        "foreach",
        "differentiable",
        "fused",
        "capturable",
        "decoupled_weight_decay",
    ):
        del state["param_groups"][0][key]
    state["state"][0]["step"] = 1.0  # saved as a number by older versions
    ours = descend.Adam([param], lr=0.1, backend=backend)
    theirs = torch.optim.Adam([twin], lr=0.1)
    ours.load_state_dict(copy.deepcopy(state))
    theirs.load_state_dict(copy.deepcopy(state))
    for _ in range(3):
        gradient = torch.randn(4)
        param.grad, twin.grad = gradient.clone(), gradient.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(param.detach(), twin.detach(), rtol=1e-6, atol=1e-7)
    assert ours.param_groups[0]["maximize"] is False
    assert torch.is_tensor(ours.state[param]["step"])


# -- 5. complex parameters ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("Adam", {"lr": 0.1}),
        ("AdamW", {"lr": 0.1, "amsgrad": True}),
        ("Adagrad", {"lr": 0.1}),
        ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
        ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
    ],
)
def test_complex_parameters_step_as_torch_steps_them(name, kwargs, backend):
    generator = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(6, dtype=torch.complex64, generator=generator))
    twin = torch.nn.Parameter(param.detach().clone())
    ours = getattr(descend, name)([param], backend=backend, **kwargs)
    theirs = getattr(torch.optim, name)([twin], **kwargs)
    for _ in range(5):
        gradient = torch.randn(6, dtype=torch.complex64, generator=generator)
        param.grad, twin.grad = gradient.clone(), gradient.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(param.detach(), twin.detach(), rtol=1e-6, atol=1e-6)


# -- 6. sparse gradients --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"lr": 0.1}),
        ("SGD", {"lr": 0.1, "momentum": 0.9}),
        ("Adagrad", {"lr": 0.1}),
        ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
    ],
)
def test_sparse_gradients_step_as_torch_steps_them(name, kwargs, backend):
    torch.manual_seed(0)
    ours_table = torch.nn.Embedding(10, 3, sparse=True)
    theirs_table = copy.deepcopy(ours_table)
    ours = getattr(descend, name)(ours_table.parameters(), backend=backend, **kwargs)
    theirs = getattr(torch.optim, name)(theirs_table.parameters(), **kwargs)
    for step in range(4):
        rows = torch.tensor([step % 3, 4, 4, 7])  # a repeated row: the gradient is uncoalesced
        for table, optimizer in ((ours_table, ours), (theirs_table, theirs)):
            optimizer.zero_grad()
            (table(rows) ** 2).sum().backward()
            optimizer.step()
    torch.testing.assert_close(ours_table.weight, theirs_table.weight, rtol=1e-6, atol=1e-7)
    untouched = [5, 6, 8, 9]
    assert torch.equal(ours_table.weight[untouched], theirs_table.weight[untouched])


def test_sparse_gradients_are_refused_where_torch_refuses_them():
    table = torch.nn.Embedding(10, 3, sparse=True)
    optimizer = descend.Adam(table.parameters(), lr=0.1)
    table(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        optimizer.step()


# -- 7. torch's argument rules --------------------------------------------------------------------


def test_flags_from_config_files_are_accepted():
    param = torch.nn.Parameter(torch.zeros(2))
    assert descend.SGD([param], lr=0.1, momentum=0.9, nesterov=1).param_groups[0]["nesterov"]
    assert descend.Adam([param], amsgrad=np.bool_(True)).param_groups[0]["amsgrad"]
    descend.LBFGS([param], tolerance_grad=math.inf, tolerance_change=math.inf)


def test_differentiable_steps_carry_gradients_through_the_update():
    # The update is a function of the learning rate; gradcheck differentiates through it.
    def updated(lr: torch.Tensor) -> torch.Tensor:
        param = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
        moved = param.clone()
        optimizer = descend.SGD([moved], lr=lr, momentum=0.9, differentiable=True)
        moved.grad = torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64)
        optimizer.step()
        return moved

    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(updated, (lr,))


@pytest.mark.parametrize("value", [math.nan, 1.0])
def test_values_on_which_torch_steps_to_nan_stay_refused(value):
    param = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError):
        descend.RMSprop([param], alpha=value)
    with pytest.raises(ValueError):
        descend.SGD([param], lr=math.nan)
    with pytest.raises(ValueError):
        descend.SGD([param], lr=0.1, momentum=0.9, dampening=1.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensor_hyperparameters_compute_in_the_tensor_dtype_like_torch(backend):
    param = torch.nn.Parameter(torch.randn(7, dtype=torch.float64))
    twin = torch.nn.Parameter(param.detach().clone())
    ours = descend.AdamW(
        [param],
        lr=torch.tensor(0.01),
        betas=(torch.tensor(0.9), torch.tensor(0.99)),
        backend=backend,
    )
    theirs = torch.optim.AdamW(
        [twin], lr=torch.tensor(0.01), betas=(torch.tensor(0.9), torch.tensor(0.99)), foreach=False
    )
    for _ in range(5):
        gradient = torch.randn(7, dtype=torch.float64)
        param.grad, twin.grad = gradient.clone(), gradient.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(param.detach(), twin.detach(), rtol=1e-14, atol=1e-15)


# -- 8. state dicts equal torch's key for key ----------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {}),
        ("SGD", {"momentum": 0.9}),
        ("Adam", {}),
        ("AdamW", {"amsgrad": True}),
        ("Adagrad", {}),
        ("RMSprop", {"centered": True, "momentum": 0.5}),
    ],
)
def test_state_dict_equals_torch_key_for_key(name, kwargs, backend):
    param = torch.nn.Parameter(torch.randn(3))
    twin = torch.nn.Parameter(param.detach().clone())
    ours = getattr(descend, name)([param], lr=0.01, backend=backend, **kwargs)
    theirs = getattr(torch.optim, name)([twin], lr=0.01, **kwargs)
    for _ in range(2):
        gradient = torch.randn(3)
        param.grad, twin.grad = gradient.clone(), gradient.clone()
        ours.step()
        theirs.step()
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == reference.keys()
    assert mine["state"].keys() == reference["state"].keys()
    for key, state in reference["state"].items():
        assert mine["state"][key].keys() == state.keys()
    assert mine["param_groups"][0].keys() == reference["param_groups"][0].keys()


# -- 9. SGD momentum switched on mid-run ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_momentum_switched_on_mid_run_starts_its_buffer_like_torch(backend):
    param = torch.nn.Parameter(torch.zeros(3))
    twin = torch.nn.Parameter(torch.zeros(3))
    ours = descend.SGD([param], lr=0.1, backend=backend)
    theirs = torch.optim.SGD([twin], lr=0.1)
    for step in range(4):
        if step == 2:
            for optimizer in (ours, theirs):
                optimizer.param_groups[0].update(momentum=0.9, dampening=0.5)
        param.grad, twin.grad = torch.ones(3), torch.ones(3)
        ours.step()
        theirs.step()
    torch.testing.assert_close(param.detach(), twin.detach())
    torch.testing.assert_close(
        ours.state[param]["momentum_buffer"], theirs.state[twin]["momentum_buffer"]
    )


# -- 10. class checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DROP_IN)
def test_drop_in_classes_are_their_torch_class(name):
    optimizer = getattr(descend, name)([torch.nn.Parameter(torch.zeros(2, 2))])
    assert isinstance(optimizer, getattr(torch.optim, name))
    assert not isinstance(descend.Momentum([torch.nn.Parameter(torch.zeros(2))]), torch.optim.SGD)
