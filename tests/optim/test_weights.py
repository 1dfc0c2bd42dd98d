"""``param_precision``: bfloat16 weights stepped in float32 and stored back with stochastic
rounding or as a split master, held against float32 runs of ``torch.optim``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend
from descend.optim.weights import CORRECTION_KEY, master

LR = 1e-4


def _bf16_weights(numel: int = 4096, value: float = 1.0) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.full((numel,), value, dtype=torch.bfloat16))


def _run(optimizer, params, grads) -> None:
    for step_grads in grads:
        for param, grad in zip(params, step_grads, strict=True):
            param.grad = grad.to(param.dtype)
        optimizer.step()


def test_updates_below_half_an_ulp_stall_in_bf16_but_not_with_stochastic_rounding():
    # Weights at 1 (bf16 ulp 2^-7 above, 2^-8 below) and Adam steps of about 1e-4: every
    # round-to-nearest store returns 1, so torch's bf16 AdamW never moves.
    grads = [[torch.ones(4096)] for _ in range(100)]
    plain = _bf16_weights()
    _run(torch.optim.AdamW([plain], lr=LR, weight_decay=0), [plain], grads)
    assert torch.equal(plain, torch.ones_like(plain))
    reference = torch.nn.Parameter(torch.ones(4096))
    _run(torch.optim.AdamW([reference], lr=LR, weight_decay=0), [reference], grads)
    weights = _bf16_weights()
    optimizer = descend.AdamW([weights], lr=LR, weight_decay=0, param_precision="bfloat16")
    _run(optimizer, [weights], grads)
    # Unbiased: the mean of the stored weights is the float32 result within the rounding
    # noise (each element's error is at most one ulp, 2^-8 here; 6 standard errors).
    target = reference.detach().mean().item()
    bound = 6 * 2**-8 / math.sqrt(4096)
    assert abs(weights.float().mean().item() - target) < bound
    assert weights.dtype == torch.bfloat16


def test_a_split_master_tracks_the_float32_run_to_its_correction_resolution():
    torch.manual_seed(0)
    start = torch.randn(8192).to(torch.bfloat16)
    grads = [[torch.randn(8192)] for _ in range(50)]
    reference = torch.nn.Parameter(start.float())
    _run(torch.optim.AdamW([reference], lr=LR), [reference], grads)
    weights = torch.nn.Parameter(start.clone())
    optimizer = descend.AdamW([weights], lr=LR, param_precision="bf16+ecc")
    _run(optimizer, [weights], grads)
    decoded = master(optimizer, weights)
    # Each store rounds the master to 1/127 of half a bf16 ulp (half an ulp is at most 2^-8
    # of the value), so at most half of that per step: after 50 steps the master is within
    # 50 of those of the float32 run, taken at the largest value the weight passed through
    # (Adam moves it at most a few lr per step); the bf16 weight alone is 127 times coarser.
    largest = torch.maximum(start.float().abs(), reference.detach().abs()) + 50 * 3 * LR
    error = (decoded - reference.detach()).abs()
    assert bool((error <= 50 * largest * 2**-8 / 254).all())
    assert (error.max() < (weights.float() - reference.detach()).abs().max() / 4).item()
    assert optimizer.state[weights][CORRECTION_KEY].dtype == torch.int8


@settings(max_examples=20, deadline=None)
@given(
    fmt=st.sampled_from(["bfloat16", "bf16+ecc"]),
    name=st.sampled_from(["SGD", "Adam", "AdamW", "Lion", "RMSprop", "Adagrad"]),
    seed=st.integers(0, 2**16),
)
def test_the_fused_and_reference_executors_store_the_same_bits(fmt, name, seed):
    torch.manual_seed(seed)
    start = torch.randn(5000).to(torch.bfloat16)
    grads = [[torch.randn(5000)] for _ in range(3)]
    options = {"momentum": 0.9} if name == "SGD" else {}
    results = []
    for backend in ("reference", "fused"):
        weights = torch.nn.Parameter(start.clone())
        optimizer = getattr(descend, name)(
            [weights], lr=1e-3, backend=backend, param_precision=fmt, seed=seed, **options
        )
        _run(optimizer, [weights], grads)
        results.append((weights.detach().clone(), master(optimizer, weights)))
    assert torch.equal(results[0][0].view(torch.int16), results[1][0].view(torch.int16))
    assert torch.equal(results[0][1], results[1][1])


def test_the_random_stream_follows_the_seed_and_resumes_from_a_state_dict():
    torch.manual_seed(1)
    start = torch.randn(4096).to(torch.bfloat16)
    grads = [[torch.randn(4096)] for _ in range(6)]

    def trained(seed: int, resume_at: int | None = None) -> torch.Tensor:
        weights = torch.nn.Parameter(start.clone())
        optimizer = descend.Adam([weights], lr=1e-3, param_precision="bfloat16", seed=seed)
        if resume_at is None:
            _run(optimizer, [weights], grads)
            return weights.detach()
        _run(optimizer, [weights], grads[:resume_at])
        saved = optimizer.state_dict()
        fresh = descend.Adam([weights], lr=1e-3, param_precision="bfloat16", seed=seed)
        fresh.load_state_dict(saved)
        _run(fresh, [weights], grads[resume_at:])
        return weights.detach()

    assert torch.equal(trained(3), trained(3))
    assert not torch.equal(trained(3), trained(4))
    assert torch.equal(trained(3), trained(3, resume_at=2))


def test_a_split_master_resumes_exactly_and_keeps_its_state_in_float32():
    torch.manual_seed(2)
    start = torch.randn(4096).to(torch.bfloat16)
    grads = [[torch.randn(4096)] for _ in range(5)]
    whole = torch.nn.Parameter(start.clone())
    optimizer = descend.AdamW([whole], lr=1e-3, param_precision="bf16+ecc")
    _run(optimizer, [whole], grads)
    resumed = torch.nn.Parameter(start.clone())
    first = descend.AdamW([resumed], lr=1e-3, param_precision="bf16+ecc")
    _run(first, [resumed], grads[:3])
    second = descend.AdamW([resumed], lr=1e-3, param_precision="bf16+ecc")
    second.load_state_dict(first.state_dict())
    state = second.state[resumed]
    assert state["exp_avg"].dtype == torch.float32 and state[CORRECTION_KEY].dtype == torch.int8
    _run(second, [resumed], grads[3:])
    assert torch.equal(master(second, resumed), master(optimizer, whole))


def test_the_parameter_keeps_its_tensor_and_its_gradient_through_a_step():
    weights = _bf16_weights(value=0.5)
    view = weights.detach()[:10]  # a view a model might hold
    address = weights.data_ptr()
    grad = torch.ones(4096, dtype=torch.bfloat16)
    weights.grad = grad
    descend.Adam([weights], lr=0.1, param_precision="bfloat16").step()
    assert weights.data_ptr() == address and weights.dtype == torch.bfloat16
    assert weights.grad is grad and grad.dtype == torch.bfloat16
    assert view[0].item() < 0.5  # the view sees the update


def test_a_skipped_or_failed_step_leaves_every_bit_as_it_was():
    weights = torch.nn.Parameter(torch.randn(4096).to(torch.bfloat16))
    optimizer = descend.AdamW([weights], lr=1e-3, param_precision="bf16+ecc", nonfinite="skip")
    weights.grad = torch.randn(4096, dtype=torch.bfloat16)
    optimizer.step()
    before = weights.detach().clone()
    correction = optimizer.state[weights][CORRECTION_KEY].clone()
    weights.grad = torch.full((4096,), math.inf, dtype=torch.bfloat16)
    optimizer.step()  # skipped: non-finite gradient
    assert torch.equal(weights.detach().view(torch.int16), before.view(torch.int16))
    assert torch.equal(optimizer.state[weights][CORRECTION_KEY], correction)
    grad = torch.randn(4096, dtype=torch.bfloat16)
    weights.grad = grad
    optimizer.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        optimizer.step()
    assert torch.equal(weights.detach().view(torch.int16), before.view(torch.int16))
    assert weights.dtype == torch.bfloat16 and weights.grad is grad


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"param_precision": "int8"}, "param_precision='int8' is invalid"),
        ({"param_precision": "bfloat16", "differentiable": True}, "differentiable=True"),
    ],
)
def test_bad_requests_are_refused_by_name(arguments, message):
    with pytest.raises(ValueError, match=message):
        descend.Adam([_bf16_weights()], lr=1e-3, **arguments)


def test_a_float32_parameter_is_refused_by_name_before_any_state():
    weights = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"params'\]\[1\].*float32.*bfloat16"):
        descend.Adam([_bf16_weights(), weights], lr=1e-3, param_precision="bfloat16")


def test_bf16_weights_and_int8_state_take_at_most_seven_bytes_per_parameter():
    weights = _bf16_weights(numel=1 << 16)
    optimizer = descend.AdamW(
        [weights], lr=1e-3, param_precision="bf16+ecc", state_precision="int8"
    )
    weights.grad = torch.randn(1 << 16, dtype=torch.bfloat16)
    optimizer.step()
    total = weights.element_size() + descend.state_nbytes(optimizer)
    # bf16 weight (2) + correction byte (1) + two int8 moments with their block scales.
    assert total <= 7
    assert total == pytest.approx(2 + 1 + 2 * (1 + 4 / 256) + 4 / (1 << 16))


def test_corrections_of_an_older_encoding_are_converted_and_unknown_ones_refused():
    from descend.kernels.codecs import CODECS, OLDER_DECODERS

    torch.manual_seed(3)
    weights = torch.nn.Parameter(torch.randn(4096).to(torch.bfloat16))
    optimizer = descend.AdamW([weights], lr=1e-3, param_precision="bf16+ecc")
    weights.grad = torch.randn(4096, dtype=torch.bfloat16)
    optimizer.step()
    saved = optimizer.state_dict()
    assert saved["state_precision"]["format_versions"]["bf16+ecc"] == CODECS["bf16+ecc"].version
    bits = weights.detach().clone()
    correction = saved["state"][0][CORRECTION_KEY].clone()
    older = dict(saved, state_precision={**saved["state_precision"], "format_versions": {}})
    # A record without versions was written by version 1: decoded by its decoder.
    expected = OLDER_DECODERS[("bf16+ecc", 1)]((bits, correction))
    loaded = descend.AdamW([weights], lr=1e-3, param_precision="bf16+ecc")
    loaded.load_state_dict(older)
    assert torch.equal(
        master(loaded, weights), CODECS["bf16+ecc"].decode(CODECS["bf16+ecc"].encode(expected, 0))
    )
    unknown = dict(
        saved, state_precision={**saved["state_precision"], "format_versions": {"bf16+ecc": 99}}
    )
    refusing = descend.AdamW([weights], lr=1e-3, param_precision="bf16+ecc")
    with pytest.raises(ValueError, match="version 99"):
        refusing.load_state_dict(unknown)
    assert not refusing.state  # nothing was loaded


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_the_state_dict_records_bf16_slots_of_bf16_weights(backend):
    # The step runs on float32 masters, so a bf16 slot of a bf16 weight is compressed state
    # ("bfloat16"), not the weight's own dtype: the record must say so, as it does for a
    # float32 parameter.
    weights = _bf16_weights()
    optimizer = descend.AdamW(
        [weights], lr=LR, param_precision="bfloat16", state_precision="bfloat16", backend=backend
    )
    _run(optimizer, [weights], [[torch.ones(4096)]])
    assert optimizer.state[weights]["exp_avg"].dtype == torch.bfloat16
    record = optimizer.state_dict()["state_precision"]
    assert record["formats"] == {0: {"exp_avg": "bfloat16", "exp_avg_sq": "bfloat16"}}
