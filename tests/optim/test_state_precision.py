"""``state_precision=``: every optimizer class stores its state in every format, on every
executor, with the same bits; state dicts say and convert formats; bad requests are refused."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch

import descend
from descend.kernels.codecs import CODECS, FORMATS, INT8_BLOCK
from descend.optim import optimizer_classes
from descend.optim.param_state import state_nbytes
from descend.optim.precision import STATE_DICT_KEY, plain_state_dict

COMPRESSED = [name for name in FORMATS if name != "float32"]
#: Every optimizer class once (a class runs one rule; Muon steps 2-D parameters).
CLASSES = sorted(
    # A rule with matrix state keeps float32 state (see the refusal test at the end).
    {
        cls
        for cls in optimizer_classes().values()
        if not (cls.rule is not None and cls.rule.stage and cls.rule.stage.matrices)
    },
    key=lambda cls: cls.__name__,
)
#: Arguments that give a class's rule a slot to store (SGD keeps none without momentum).
SLOTTED = {"SGD": {"momentum": 0.9}}
SHAPE = (64, 80)  # 5120 elements: above the int8 threshold, 20 blocks


def _gradients(steps: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=generator) for _ in range(steps)]


def _run(cls, backend, state_precision, grads, seed=0, **extra):
    param = torch.nn.Parameter(torch.linspace(-1, 1, SHAPE[0] * SHAPE[1]).view(SHAPE))
    arguments = {**SLOTTED.get(cls.__name__, {}), **extra}
    optimizer = cls(
        [param], backend=backend, state_precision=state_precision, seed=seed, **arguments
    )
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
    return param, optimizer


def _slot_names(optimizer):
    group = optimizer.param_groups[0]
    rule = optimizer.rule_for(group)
    return [slot.name for slot in rule.active_slots(optimizer.rule_hypers(group))]


@pytest.mark.parametrize("name", COMPRESSED)
@pytest.mark.parametrize(
    "cls",
    [cls if cls is descend.AdamW else pytest.param(cls, marks=pytest.mark.slow) for cls in CLASSES],
    ids=lambda cls: cls.__name__,
)
def test_every_class_stores_every_format_and_executors_agree_bitwise(cls, name):
    grads = _gradients(3)
    param, optimizer = _run(cls, "reference", name, grads)
    fused_param, fused = _run(cls, "fused", name, grads)
    assert torch.equal(param, fused_param)
    codec = CODECS[name]
    slots = _slot_names(optimizer)
    assert slots, cls.__name__
    for slot in slots:
        stored = optimizer.state[param][slot]
        assert stored.dtype == codec.storage, (slot, stored.dtype)
        assert torch.equal(
            stored.view(torch.uint8), fused.state[fused_param][slot].view(torch.uint8)
        )
        for companion in codec.companions:
            assert torch.equal(
                optimizer.state[param][f"{slot}.{companion}"],
                fused.state[fused_param][f"{slot}.{companion}"],
            )
    assert torch.isfinite(param).all()


def test_float32_is_the_default_and_changes_nothing():
    grads = _gradients(4)
    param, optimizer = _run(descend.AdamW, "fused", "float32", grads)
    default = torch.nn.Parameter(torch.linspace(-1, 1, SHAPE[0] * SHAPE[1]).view(SHAPE))
    plain = descend.AdamW([default], backend="fused")
    for grad in grads:
        default.grad = grad.clone()
        plain.step()
    assert torch.equal(param, default)
    assert STATE_DICT_KEY not in plain.state_dict()
    assert plain.state[default]["exp_avg"].dtype == torch.float32


def test_per_slot_formats_and_small_tensors_stay_float32():
    small = torch.nn.Parameter(torch.ones(10))
    large = torch.nn.Parameter(torch.ones(SHAPE))
    optimizer = descend.Adam(
        [small, large], state_precision={"exp_avg": "int8", "exp_avg_sq": "bf16+ecc"}
    )
    for param in (small, large):
        param.grad = torch.ones_like(param)
    optimizer.step()
    assert optimizer.state[small]["exp_avg"].dtype == torch.float32  # under 4096 elements
    assert optimizer.state[large]["exp_avg"].dtype == torch.uint8
    assert optimizer.state[large]["exp_avg.scale"].shape == (SHAPE[0] * SHAPE[1] // INT8_BLOCK,)
    assert optimizer.state[large]["exp_avg_sq.ecc"].dtype == torch.int8
    assert optimizer.state_dict()[STATE_DICT_KEY]["formats"] == {
        0: {"exp_avg_sq": "bf16+ecc"},  # bf16+ecc has no size threshold
        1: {"exp_avg": "int8", "exp_avg_sq": "bf16+ecc"},
    }


@pytest.mark.parametrize(
    ("name", "target"), [("bfloat16", 4.0), ("bf16+ecc", 6.0), ("int8", 2.1), ("float32", 8.0)]
)
def test_adamw_state_bytes_per_parameter(name, target):
    _, optimizer = _run(descend.AdamW, "reference", name, _gradients(1))
    measured = state_nbytes(optimizer)
    assert measured <= target + 0.01
    assert measured >= {"int8": 2.0}.get(name, target)


def test_bad_requests_are_refused_before_any_state():
    param = torch.nn.Parameter(torch.ones(SHAPE))
    with pytest.raises(ValueError, match=r"'int4' is unknown: expected one of 'float32', "):
        descend.Adam([param], state_precision="int4")
    with pytest.raises(ValueError, match=r"slot 'momentum_buffer'.*one of 'exp_avg', 'exp_avg_sq'"):
        descend.Adam([param], state_precision={"momentum_buffer": "int8"})
    with pytest.raises(ValueError, match=r"'fp8' is unknown"):
        descend.Adam([param], state_precision={"exp_avg": "fp8"})
    with pytest.raises(ValueError, match=r"state_precision=3 is invalid"):
        descend.Adam([param], state_precision=3)
    with pytest.raises(ValueError, match=r"seed=-1 is invalid"):
        descend.Adam([param], seed=-1)
    complex_param = torch.nn.Parameter(torch.ones(SHAPE, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"complex64 tensor: state_precision='bfloat16'"):
        descend.Adagrad([complex_param], state_precision="bfloat16")
    # The same refusals before Adagrad's eager state is made.
    with pytest.raises(ValueError, match=r"slot 'exp_avg'.*one of 'sum'"):
        descend.Adagrad([param], state_precision={"exp_avg": "int8"})
    descend.Adagrad([complex_param])  # float32 state steps complex parameters as before


def test_a_skipped_step_leaves_every_stored_byte():
    param = torch.nn.Parameter(torch.ones(SHAPE))
    optimizer = descend.AdamW([param], state_precision="bfloat16", nonfinite="skip")
    param.grad = torch.randn(SHAPE)
    optimizer.step()
    before = copy.deepcopy(optimizer.state_dict())
    param.grad = torch.full(SHAPE, float("nan"))
    optimizer.step()
    after = optimizer.state_dict()
    assert optimizer.skipped_steps == 1
    assert after[STATE_DICT_KEY] == before[STATE_DICT_KEY]
    for key, value in before["state"][0].items():
        stored = after["state"][0][key].reshape(-1).view(torch.uint8)
        assert torch.equal(value.reshape(-1).view(torch.uint8), stored)


def test_a_nonfinite_gradient_poisons_one_int8_block_only():
    param = torch.nn.Parameter(torch.ones(SHAPE))
    optimizer = descend.AdamW([param], state_precision="int8")
    grad = torch.randn(SHAPE)
    grad.view(-1)[3 * INT8_BLOCK + 7] = float("inf")
    param.grad = grad
    optimizer.step()
    scale = optimizer.state[param]["exp_avg_sq.scale"]
    assert scale.isnan().nonzero().flatten().tolist() == [3]
    finite = torch.isfinite(param.detach().view(-1))
    assert finite.sum() >= param.numel() - INT8_BLOCK


@pytest.mark.parametrize("name", ["bfloat16", "int8", "bf16+ecc"])
def test_a_resumed_run_continues_the_same_random_stream(name):
    grads = _gradients(8)
    param, straight = _run(descend.AdamW, "fused", name, grads)
    first, optimizer = _run(descend.AdamW, "reference", name, grads[:4])
    saved = pickle.loads(pickle.dumps(optimizer.state_dict()))
    resumed_param = torch.nn.Parameter(first.detach().clone())
    resumed = descend.AdamW([resumed_param], state_precision=name, backend="fused")
    resumed.load_state_dict(saved)
    for grad in grads[4:]:
        resumed_param.grad = grad.clone()
        resumed.step()
    assert torch.equal(param, resumed_param)
    copied = copy.deepcopy(resumed)
    assert copied._precision.request == name and copied._stream_step == 8


def test_another_seed_draws_other_bits():
    grads = _gradients(3)
    _, one = _run(descend.Adam, "reference", "bfloat16", grads, seed=1)
    _, two = _run(descend.Adam, "reference", "bfloat16", grads, seed=2)
    first = next(iter(one.state.values()))["exp_avg"].float()
    second = next(iter(two.state.values()))["exp_avg"].float()
    assert not torch.equal(first, second)
    assert float((first - second).abs().max()) <= 2**-5 * float(first.abs().max())


@pytest.mark.parametrize("name", COMPRESSED)
def test_a_torch_checkpoint_loads_into_a_compressed_optimizer_and_back(name):
    grads = _gradients(3)
    reference = torch.nn.Parameter(torch.linspace(-1, 1, SHAPE[0] * SHAPE[1]).view(SHAPE))
    theirs = torch.optim.AdamW([reference], lr=1e-3)
    for grad in grads:
        reference.grad = grad.clone()
        theirs.step()
    exact = theirs.state[reference]
    ours_param = torch.nn.Parameter(reference.detach().clone())
    ours = descend.AdamW([ours_param], state_precision=name)
    ours.load_state_dict(theirs.state_dict())
    state = ours.state[ours_param]
    assert state["exp_avg"].dtype == CODECS[name].storage
    saved = ours.state_dict()
    back = torch.optim.AdamW([torch.nn.Parameter(reference.detach().clone())])
    back.load_state_dict(plain_state_dict(saved))
    float_again = descend.AdamW([torch.nn.Parameter(reference.detach().clone())])
    float_again.load_state_dict(saved)
    bound = {"bfloat16": 2**-7, "bfloat16-nearest": 2**-8, "bf16+ecc": 2**-15.9}
    for slot in ("exp_avg", "exp_avg_sq"):
        decoded = next(iter(back.state.values()))[slot]
        assert torch.equal(decoded, next(iter(float_again.state.values()))[slot])
        error = (decoded.double() - exact[slot].double()).abs()
        if name == "int8":
            blocks = exact[slot].double().abs().view(-1, INT8_BLOCK).amax(dim=1)
            assert bool((error.view(-1, INT8_BLOCK) <= blocks[:, None] * 0.0071).all())
        else:
            assert bool((error <= bound[name] * exact[slot].double().abs()).all())
    # Loading the compressed checkpoint into an optimizer of the same format keeps its bytes.
    same = descend.AdamW([torch.nn.Parameter(reference.detach().clone())], state_precision=name)
    same.load_state_dict(saved)
    for key, value in saved["state"][0].items():
        assert torch.equal(same.state_dict()["state"][0][key], value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "m_bound", "v_bound"),
    [("bf16+ecc", 3e-4, 3e-4), ("bfloat16", 0.02, 0.06), ("int8", 0.05, 0.2)],
)
def test_decoded_state_tracks_a_float32_shadow_over_1000_adam_steps(name, m_bound, v_bound):
    """Both runs see the same gradients (a noisy quadratic's, at the float32 run's point), so
    the compressed state's error is storage error alone. Each step's storage error enters an
    exponential average: with beta2 = 0.999 the second moment's error settles near
    ``1 / sqrt(1 - beta2**2)``, about 22, times one step's error (about 0.0016 for bf16, 2**-16
    for bf16+ecc); the bounds allow twice that."""
    generator = torch.Generator().manual_seed(3)
    shadow_param = torch.nn.Parameter(torch.randn(SHAPE, generator=generator))
    param = torch.nn.Parameter(shadow_param.detach().clone())
    shadow = descend.Adam([shadow_param], lr=1e-3)
    compressed = descend.Adam([param], lr=1e-3, state_precision=name)
    scales = torch.logspace(-3, 0, SHAPE[1])
    for _ in range(1000):
        grad = (shadow_param.detach() + torch.randn(SHAPE, generator=generator)) * scales
        shadow_param.grad = grad
        param.grad = grad.clone()
        shadow.step()
        compressed.step()
    decoded = plain_state_dict(compressed.state_dict())["state"][0]
    for slot, bound in (("exp_avg", m_bound), ("exp_avg_sq", v_bound)):
        exact = shadow.state[shadow_param][slot]
        error = torch.linalg.vector_norm(decoded[slot] - exact) / torch.linalg.vector_norm(exact)
        assert float(error) < bound, (slot, float(error))


def _mixed_run(backend, name, steps=3, sizes=(1000, 70_000, 4096 + 17), dtype=torch.float32):
    generator = torch.Generator().manual_seed(5)
    params = [
        torch.nn.Parameter(torch.randn(size, generator=generator, dtype=dtype)) for size in sizes
    ]
    optimizer = descend.AdamW(params, lr=1e-2, state_precision=name, backend=backend)
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator, dtype=dtype)
        optimizer.step()
    return params, optimizer


def _stored_bytes(optimizer, params):
    return [
        value.reshape(-1).view(torch.uint8) if value.ndim else value
        for param in params
        for value in optimizer.state[param].values()
    ]


@pytest.mark.parametrize(
    "dtype", [torch.float32, pytest.param(torch.float64, marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("name", COMPRESSED)
def test_the_fused_kernel_codes_slots_in_its_pass_with_the_reference_bits(name, dtype):
    """Tensors of unaligned sizes, one cut into several work items at offsets that are not
    multiples of the int8 block, all in one launch."""
    params, reference = _mixed_run("reference", name, dtype=dtype)
    fused_params, fused = _mixed_run("fused", name, dtype=dtype)
    blocks = fused._plans[id(fused.param_groups[0])].blocks
    assert sum(len(block.params) for block in blocks) == 3  # none listed
    assert any(block.formats for block in blocks)
    for ours, theirs in zip(params, fused_params, strict=True):
        assert torch.equal(ours, theirs)
    for ours, theirs in zip(
        _stored_bytes(reference, params), _stored_bytes(fused, fused_params), strict=True
    ):
        assert torch.equal(ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["int8", "bfloat16"])
def test_the_fused_kernel_codes_slots_alike_on_several_threads(name, monkeypatch):
    monkeypatch.setenv("DESCEND_NUM_THREADS", "3")
    sizes = (3_000_000, 500_001)
    params, reference = _mixed_run("reference", name, steps=2, sizes=sizes)
    fused_params, fused = _mixed_run("fused", name, steps=2, sizes=sizes)
    for ours, theirs in zip(
        _stored_bytes(reference, params), _stored_bytes(fused, fused_params), strict=True
    ):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", ["Shampoo", "SOAP"])
@pytest.mark.parametrize("fmt", ["bfloat16", "int8", {"exp_avg": "bf16+ecc"}])
def test_a_rule_with_matrix_state_refuses_compressed_slots_before_any_state(name, fmt):
    # SOAP's stage reads and rewrites its second moment in the state itself: compressed, that
    # slot would be read as raw codes. Both matrix methods refuse, naming the value allowed.
    if isinstance(fmt, dict) and name == "Shampoo":
        fmt = {"momentum_buffer": "bf16+ecc"}
    weight = torch.zeros(8, 4, requires_grad=True)
    with pytest.raises(ValueError, match=r"not available for .*matrix state.*expected 'float32'"):
        getattr(descend, name)([weight], state_precision=fmt)


def test_state_dicts_record_the_version_of_each_formats_encoding():
    formats = {"exp_avg": "int8", "exp_avg_sq": "bf16+ecc"}
    _, optimizer = _run(descend.AdamW, "reference", formats, _gradients(1))
    record = optimizer.state_dict()[STATE_DICT_KEY]
    assert record["format_versions"] == {"bf16+ecc": 2, "int8": 2}
    assert {name: CODECS[name].version for name in formats.values()} == {"int8": 2, "bf16+ecc": 2}


def _older_checkpoint(name: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """A state dict whose ``exp_avg`` is stored in ``name`` as a descend without format
    versions (version 1) saved it, and that slot's storage tensors."""
    _, optimizer = _run(descend.AdamW, "reference", {"exp_avg": name}, _gradients(2))
    saved = copy.deepcopy(optimizer.state_dict())
    del saved[STATE_DICT_KEY]["format_versions"]
    entry = saved["state"][0]
    generator = torch.Generator().manual_seed(3)
    if name == "int8":
        entry["exp_avg"] = torch.randint(0, 256, SHAPE, generator=generator).to(torch.uint8)
        scale = torch.rand(entry["exp_avg.scale"].shape, generator=generator) + 0.5
        entry["exp_avg.scale"] = torch.where(torch.arange(scale.numel()) % 2 == 0, scale, -scale)
        return saved, entry["exp_avg"], entry["exp_avg.scale"]
    return saved, entry["exp_avg"], entry["exp_avg.ecc"]


def test_an_int8_checkpoint_of_the_base_10_map_still_loads_to_its_values():
    from descend.kernels.codecs import dynamic_map

    saved, codes, scale = _older_checkpoint("int8")
    # Version 1: a code indexes the ascending base-10 dynamic map (unsigned where the scale is
    # stored negated), times the scale's magnitude.
    blocks = codes.reshape(-1, INT8_BLOCK).long().numpy()
    unsigned = (scale < 0).numpy()[:, None]
    values = np.where(unsigned, dynamic_map(False)[blocks], dynamic_map(True)[blocks])
    expected = torch.from_numpy(values * np.abs(scale.numpy())[:, None]).float().view(SHAPE)
    plain = descend.AdamW([torch.nn.Parameter(torch.zeros(SHAPE))])
    plain.load_state_dict(saved)
    assert torch.equal(next(iter(plain.state.values()))["exp_avg"], expected)
    # Into an int8 optimizer: stored again in the current map, not kept as saved.
    param = torch.nn.Parameter(torch.zeros(SHAPE))
    again = descend.AdamW([param], state_precision={"exp_avg": "int8"})
    again.load_state_dict(saved)
    state = again.state[param]
    stored = CODECS["int8"].encode(expected, 0)
    assert torch.equal(state["exp_avg"], stored[0])
    assert torch.equal(state["exp_avg.scale"], stored[1])


def test_a_bf16_ecc_checkpoint_of_version_1_decodes_with_its_division():
    saved, high, correction = _older_checkpoint("bf16+ecc")
    bits = high.view(torch.int16).long() & 0xFFFF
    exponent = (bits >> 7) & 0xFF
    kept = (exponent > 8) & (exponent < 255)
    half = torch.where(kept, 2.0 ** (exponent - 135).double(), torch.ones_like(bits).double())
    expected = high.float() + correction.float() * half.float() / 127.0
    plain = descend.AdamW([torch.nn.Parameter(torch.zeros(SHAPE))])
    plain.load_state_dict(saved)
    assert torch.equal(next(iter(plain.state.values()))["exp_avg"], expected)


def test_a_checkpoint_of_an_unknown_encoding_version_is_refused_before_loading():
    saved, _, _ = _older_checkpoint("int8")
    saved[STATE_DICT_KEY]["format_versions"] = {"int8": 7}
    param = torch.nn.Parameter(torch.zeros(SHAPE))
    optimizer = descend.AdamW([param], state_precision="int8")
    before = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(ValueError, match=r"'int8' version 7, .* reads 'int8' versions 1, 2"):
        optimizer.load_state_dict(saved)
    assert optimizer.state_dict()["state"] == before["state"] == {}
