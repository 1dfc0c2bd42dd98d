"""``param_precision`` compiled into the fused kernel: bf16 weights (and gradients) read by
address, decoded, stepped in float32 and stored through the weight codec in the kernel's one
pass, held bit for bit against the float32-master swap path (``backend="reference"``)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend
from descend.kernels.coded import coded_kernel_source, coded_rows
from descend.kernels.fused import element_function_source
from descend.kernels.variant import Variant
from descend.optim import weights as weights_module
from descend.optim.block import check_weight_operands
from descend.optim.weights import CORRECTION_KEY

#: Sizes around the kernels' chunks (1024 elements; 256 with int8 slots) and the int8
#: format's threshold (4096): none of the larger ones a multiple of a chunk.
SHAPES = [(37,), (5000,), (3, 1500), (64, 80)]
RULES: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "AdamW": lambda p, **k: descend.AdamW(p, lr=1e-3, weight_decay=0.1, **k),
    "Adam": lambda p, **k: descend.Adam(p, lr=1e-3, **k),
    "SGD momentum": lambda p, **k: descend.SGD(p, lr=1e-2, momentum=0.9, **k),
    "Lion": lambda p, **k: descend.Lion(p, lr=1e-4, weight_decay=0.1, **k),
}
STATES = ("float32", "bfloat16", "bf16+ecc", "int8")
WEIGHTS = ("bfloat16", "bf16+ecc")


def _params(seed: int, shapes=SHAPES) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(shape, generator=generator).to(torch.bfloat16))
        for shape in shapes
    ]


def _groups(params: list[torch.nn.Parameter]) -> list[dict]:
    """Two param groups, the second with half the first's learning rate."""
    return [{"params": params[:2]}, {"params": params[2:], "lr_scale": 0.5}]


def _build(rule: str, params, backend: str, weights: str, state: str, **options):
    groups = _groups(params)
    optimizer = RULES[rule](
        [{"params": g["params"]} for g in groups],
        backend=backend,
        param_precision=weights,
        state_precision=state,
        seed=1234,
        **options,
    )
    for group, spec in zip(optimizer.param_groups, groups, strict=True):
        group["lr"] *= spec.get("lr_scale", 1.0)
    return optimizer


def _gradients(params, steps: int, seed: int, dtype=torch.bfloat16) -> list[list]:
    generator = torch.Generator().manual_seed(seed + 1)
    return [
        [(torch.randn(p.shape, generator=generator) * 0.1).to(dtype) for p in params]
        for _ in range(steps)
    ]


def _step(optimizer, params, grads) -> None:
    for param, grad in zip(params, grads, strict=True):
        param.grad = None if grad is None else grad.clone()
    optimizer.step()


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The bytes of a tensor (NaNs and signed zeros compared exactly)."""
    return tensor.detach().contiguous().view(-1).view(torch.uint8)


def assert_identical(first, second) -> None:
    """Parameters (a list) or state dicts equal byte for byte, dtypes included."""
    if isinstance(first, torch.Tensor):
        assert isinstance(second, torch.Tensor) and first.dtype == second.dtype
        assert first.shape == second.shape and torch.equal(_bits(first), _bits(second))
    elif isinstance(first, dict):
        assert first.keys() == second.keys()
        for key in first:
            assert_identical(first[key], second[key])
    elif isinstance(first, list | tuple):
        assert len(first) == len(second)
        for a, b in zip(first, second, strict=True):
            assert_identical(a, b)
    else:
        assert first == second


def _kernel_blocks(optimizer) -> set[str]:
    """The weight formats of the optimizer's planned blocks (empty: none stepped in kernel)."""
    return {block.weights for plan in optimizer._plans.values() for block in plan.blocks}


def _run_both(rule, weights, state, steps=4, seed=0, shapes=SHAPES, edit=None, **options):
    """The same run through the kernel (fused) and the swap (reference); ``edit(step, params,
    grads, optimizer)`` may change a step's gradients or groups, alike in both."""
    runs = []
    for backend in ("fused", "reference"):
        params = _params(seed, shapes)
        optimizer = _build(rule, params, backend, weights, state, **options)
        for number, grads in enumerate(_gradients(params, steps, seed)):
            if edit is not None:
                grads = edit(number, params, grads, optimizer)
            _step(optimizer, params, grads)
        runs.append((params, optimizer))
    (fused, fused_opt), (swapped, swapped_opt) = runs
    assert_identical(fused, swapped)
    assert_identical(fused_opt.state_dict(), swapped_opt.state_dict())
    return fused_opt


def _lr_change_and_missing_gradient(number, params, grads, optimizer):
    if number == 2:  # a learning rate changed mid-run, and one weight without a gradient
        optimizer.param_groups[1]["lr"] *= 3.0
        grads = [None, *grads[1:]]
    return grads


FAST = [("AdamW", "float32"), ("AdamW", "int8"), ("Lion", "bfloat16")]


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize(
    "rule,state",
    [
        *FAST,
        *(
            pytest.param(rule, state, marks=pytest.mark.slow)
            for rule in RULES
            for state in STATES
            if (rule, state) not in FAST
        ),
    ],
)
def test_the_kernel_stores_the_bits_of_the_swap_path(rule, state, weights):
    optimizer = _run_both(rule, weights, state, edit=_lr_change_and_missing_gradient)
    # Stepped in the kernel, not on masters.
    assert _kernel_blocks(optimizer) == {weights}
    if weights == "bf16+ecc":
        param = optimizer.param_groups[0]["params"][1]
        assert optimizer.state[param][CORRECTION_KEY].dtype == torch.int8


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    weights=st.sampled_from(WEIGHTS),
    state=st.sampled_from(STATES),
)
def test_any_sizes_and_seeds_store_the_bits_of_the_swap_path(sizes, seed, weights, state):
    _run_both("AdamW", weights, state, steps=3, seed=seed, shapes=[(n,) for n in sizes])


@pytest.mark.parametrize("state", ["float32", pytest.param("int8", marks=pytest.mark.slow)])
@pytest.mark.parametrize("rule", ["AdamW", pytest.param("Lion", marks=pytest.mark.slow)])
@pytest.mark.parametrize("weights", WEIGHTS)
def test_a_cautious_step_stores_the_bits_of_the_swap_path(weights, rule, state):
    # In the kernels of a cautious step (a count pass, then an apply pass storing the
    # cautious weight through the codec), against the masters' step and correction.
    optimizer = _run_both(
        rule, weights, state, steps=3, cautious=True, edit=_lr_change_and_missing_gradient
    )
    assert _kernel_blocks(optimizer) == {weights}


@pytest.mark.parametrize("weights", WEIGHTS)
def test_no_float32_copy_of_a_weight_after_its_state_exists(weights, monkeypatch):
    params = _params(3)
    optimizer = _build("AdamW", params, "fused", weights, "float32")
    grads = _gradients(params, 3, 3)
    _step(optimizer, params, grads[0])

    def refused(*_):
        raise AssertionError("a float32 master was made")

    monkeypatch.setattr(weights_module, "master", refused)
    before = [p.detach().clone() for p in params]
    for step_grads in grads[1:]:
        _step(optimizer, params, step_grads)
    assert not all(torch.equal(a, b) for a, b in zip(before, params, strict=True))
    assert _kernel_blocks(optimizer) == {weights}


@pytest.mark.parametrize("weights", WEIGHTS)
def test_a_skipped_step_changes_no_byte(weights):
    params = _params(5)
    optimizer = _build("AdamW", params, "fused", weights, "bf16+ecc", nonfinite="skip")
    grads = _gradients(params, 3, 5)
    for step_grads in grads[:2]:
        _step(optimizer, params, step_grads)
    saved_params = [p.detach().clone() for p in params]
    saved_state = copy.deepcopy(optimizer.state_dict())
    bad = [g.clone() for g in grads[2]]
    bad[1][7] = float("inf")
    _step(optimizer, params, bad)
    assert optimizer.skipped_steps == 1
    assert_identical(list(params), saved_params)
    assert_identical(optimizer.state_dict()["state"], saved_state["state"])


@pytest.mark.parametrize("weights", WEIGHTS)
def test_a_state_dict_round_trip_continues_the_same_bits(weights):
    grads = _gradients(_params(7), 4, 7)
    runs = []
    for backend, resume in (("fused", True), ("fused", False), ("reference", False)):
        params = _params(7)
        optimizer = _build("Adam", params, backend, weights, "bfloat16")
        for number, step_grads in enumerate(grads):
            if resume and number == 2:
                saved = copy.deepcopy(optimizer.state_dict())
                optimizer = _build("Adam", params, backend, weights, "bfloat16")
                optimizer.load_state_dict(saved)
            _step(optimizer, params, step_grads)
        runs.append((params, optimizer.state_dict()))
    for params, state in runs[1:]:
        assert_identical(runs[0][0], params)
        assert_identical(runs[0][1], state)


def test_weights_switch_between_kernel_and_masters_as_their_gradients_change():
    def float32_gradient(number, params, grads, optimizer):
        if number == 1:  # a float32 gradient: that weight is stepped on a master
            params[0].grad_dtype = None  # (torch refuses another dtype unless told)
            grads = [grads[0].float(), *grads[1:]]
        return grads

    _run_both("AdamW", "bfloat16", "float32", steps=4, edit=float32_gradient)


@pytest.mark.parametrize("cautious", [False, True])
@pytest.mark.parametrize("weights", WEIGHTS)
def test_a_kernel_still_loading_steps_on_masters_with_the_same_bits(weights, cautious, monkeypatch):
    from descend.kernels.fused import FusedExecutor

    monkeypatch.setattr(FusedExecutor, "kernel_if_ready", lambda self, rule, variant: None)
    runs = []
    for backend in ("auto", "reference"):
        params = _params(9)
        optimizer = _build("AdamW", params, backend, weights, "int8", cautious=cautious)
        for step_grads in _gradients(params, 3, 9):
            _step(optimizer, params, step_grads)
        runs.append((params, optimizer.state_dict()))
        if backend == "auto":  # its blocks are of bf16 weights, run meanwhile on masters
            assert _kernel_blocks(optimizer) == {weights}
    assert_identical(runs[0], runs[1])


def test_a_state_tensor_of_the_wrong_dtype_is_refused_before_any_change():
    params = _params(11)
    optimizer = _build("AdamW", params, "fused", "bfloat16", "float32")
    grads = _gradients(params, 2, 11)
    _step(optimizer, params, grads[0])
    state = optimizer.state[params[1]]
    state["exp_avg"] = state["exp_avg"].to(torch.bfloat16)  # the kernel reads float32 there
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match="exp_avg"):
        _step(optimizer, params, grads[1])
    assert_identical(list(params), before)


def test_a_block_refuses_operands_its_kernel_would_read_as_another_dtype():
    weight = torch.zeros(10, dtype=torch.bfloat16)
    good = {"exp_avg": [torch.zeros(10)]}
    check_weight_operands([weight], good, {"exp_avg": torch.float32}, [])
    with pytest.raises(ValueError, match="expected a contiguous torch.bfloat16"):
        check_weight_operands([weight.float()], good, {"exp_avg": torch.float32}, [])
    with pytest.raises(ValueError, match="'exp_avg'.*expected a contiguous torch.float32"):
        check_weight_operands(
            [weight],
            {"exp_avg": [torch.zeros(10, dtype=torch.float64)]},
            {"exp_avg": torch.float32},
            [],
        )
    with pytest.raises(ValueError, match="'param.ecc'.*expected a contiguous torch.int8"):
        check_weight_operands(
            [weight], good, {"exp_avg": torch.float32}, [torch.zeros(10, dtype=torch.int16)]
        )


def test_the_kernel_calls_the_codec_functions_for_the_weight():
    rule = descend.AdamW.rule
    active = (True, True, False)[: len(rule.slots)]
    source = {}
    for weights in WEIGHTS:
        variant = Variant("float32", active, (), (), weights=weights)
        _, rows = coded_rows(variant)
        assert rows == 2 + sum(active) + 1  # the weight row
        source[weights] = coded_kernel_source(rule, variant, element_function_source(rule))
    assert "encode_bf16(np.float32(result[0]), weight_key, base + j)" in source["bfloat16"]
    assert "decode_bf16(np.int64(w1[j]))" in source["bfloat16"]
    assert "encode_ecc(np.float32(result[0]))" in source["bf16+ecc"]
    assert "decode_ecc(np.int64(w0[j]), np.int64(we[j]))" in source["bf16+ecc"]
    with pytest.raises(ValueError, match="float32"):
        coded_kernel_source(rule, Variant("float64", active, (), (), weights="bfloat16"), "")
