"""One codec definition, three executors: the reference (torch), fused (Numba) and Triton
(its interpreter) executors store the same bytes for every format, given the same seed.

``TRITON_INTERPRET=1`` is set before Triton is first imported, as in ``test_triton.py``.
SGD with momentum stores its gradient as the first momentum buffer, so the first step's stored
bytes are the codec's encoding of arbitrary values (specials, subnormals, huge ones), and the
second step decodes them and encodes the update.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import descend
from descend.kernels import codec_elements
from descend.kernels.codecs import CODECS, FORMATS, INT8_BLOCK, INT8_MINIMUM

pytest.importorskip("triton", reason="the Triton codec checks need Triton (pip install triton)")
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

COMPRESSED = [name for name in FORMATS if name != "float32"]
EXECUTORS = ("reference", "fused", "triton")
# NaN payloads and signs are left out: which one an update's arithmetic passes on is the
# rule's business, not the codecs' (test_codecs.py checks that NaN survives every format).
ANY_FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=True, allow_subnormal=True)


def _stored(backend: str, name: str, grads: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """The bytes of the momentum buffer's storage after each step of SGD with momentum."""
    param = torch.nn.Parameter(torch.zeros(grads[0].shape))
    optimizer = descend.SGD(
        [param], lr=0.5, momentum=0.9, backend=backend, state_precision=name, seed=seed
    )
    snapshots = []
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
        state = optimizer.state[param]
        names = ["momentum_buffer", *(f"momentum_buffer.{c}" for c in CODECS[name].companions)]
        snapshots += [state[key].reshape(-1).view(torch.uint8).clone() for key in names]
    snapshots.append(param.detach().clone().view(torch.uint8))
    return snapshots


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(COMPRESSED),
    st.integers(INT8_MINIMUM, INT8_MINIMUM + 3 * INT8_BLOCK),
    st.integers(0, 2**64 - 1),
    st.data(),
)
def test_reference_fused_and_triton_store_the_same_bytes(name, size, seed, data):
    first = data.draw(arrays(np.float32, size, elements=ANY_FLOAT32))
    second = data.draw(arrays(np.float32, size, elements=st.floats(-10, 10, width=32)))
    grads = [torch.from_numpy(first), torch.from_numpy(second)]
    stored = {backend: _stored(backend, name, grads, seed) for backend in EXECUTORS}
    for backend in EXECUTORS[1:]:
        for ours, theirs in zip(stored["reference"], stored[backend], strict=True):
            assert torch.equal(ours, theirs), (name, backend)
    # For a deterministic format, the first step stored the codec's encoding (its torch
    # form) of the buffer a float32 run keeps.
    if not CODECS[name].stochastic:
        param = torch.nn.Parameter(torch.zeros(size))
        plain = descend.SGD([param], lr=0.5, momentum=0.9, backend="reference")
        param.grad = grads[0].clone()
        plain.step()
        encoded = CODECS[name].encode(plain.state[param]["momentum_buffer"], 0)
        for ours, theirs in zip(stored["reference"], encoded, strict=False):
            assert torch.equal(ours, theirs.reshape(-1).view(torch.uint8))


def test_every_executor_keeps_blocks_of_subnormals_alike():
    """A block whose largest magnitude is subnormal (its reciprocal overflows float32) is
    coded from a lifted copy: every executor stores the same bytes, and they decode to the
    values, not to zero."""
    size = INT8_MINIMUM + INT8_BLOCK
    grad = torch.full((size,), 1e-40)
    grad[:INT8_BLOCK] = torch.linspace(-3e-39, 3e-39, INT8_BLOCK)
    grad[INT8_BLOCK : 2 * INT8_BLOCK] = 2.0**-149  # the smallest subnormal
    grads = [grad, grad * 0.5]
    stored = {backend: _stored(backend, "int8", grads, 0) for backend in EXECUTORS}
    for backend in EXECUTORS[1:]:
        for ours, theirs in zip(stored["reference"], stored[backend], strict=True):
            assert torch.equal(ours, theirs), backend
    codes, scales = (stored["reference"][i] for i in (0, 1))
    decoded = CODECS["int8"].decode((codes, scales.view(torch.float32)))
    # The buffer after one step of momentum 0.9 (dampening 0) is the gradient itself.
    assert float((decoded.double() - grad.double()).abs().max()) <= 3e-39 * 2**-6


def test_the_codec_functions_are_the_ones_every_executor_compiles():
    """Each executor's kernel module holds the codec functions' own source, and the torch
    forms evaluate those very functions (no executor re-types a codec)."""
    from descend.kernels.coded import coded_kernel_source
    from descend.kernels.triton_coded import coded_triton_source
    from descend.kernels.variant import Variant
    from descend.rules import RULES

    rule = RULES["sgd"]
    variant = Variant("float32", (True,), (), tuple(rule.scalar_names), ("int8",))
    for source in (
        coded_kernel_source(rule, variant, "def _rule_update(): pass"),
        coded_triton_source(rule, variant, "def _rule_update(): pass"),
    ):
        for function in codec_elements.CODEC_FUNCTIONS:
            assert codec_elements.function_source(function) in source, function.__name__
    for primitive, row in codec_elements.CODEC_PRIMITIVES.items():
        assert set(row) == {"torch", "numba", "triton"}, primitive
    # No executor reads a table: the codecs are arithmetic, so compiled loops vectorize.
    assert "gather" not in codec_elements.CODEC_PRIMITIVES


@pytest.mark.slow
@pytest.mark.parametrize(
    "precision",
    [
        "bfloat16",
        {"exp_avg": "bfloat16", "exp_avg_sq": "int8", "exp_avg_slow": "bfloat16"},
        {"exp_avg": "bf16+ecc", "exp_avg_sq": "bfloat16", "exp_avg_slow": "bfloat16"},
    ],
    ids=["all-bf16", "bf16-int8-bf16", "ecc-bf16-bf16"],
)
def test_paired_bf16_slots_store_the_same_bytes_on_every_executor(precision):
    """AdEMAMix keeps three slots; its bf16 slots pair up in order, whichever they are (the
    second of a pair rounds with the upper bits of the first's hash, the third has its own):
    every executor stores the same bytes of every slot over three steps."""
    generator = torch.Generator().manual_seed(3)
    grads = [torch.randn(INT8_MINIMUM + 300, generator=generator) for _ in range(3)]
    stored = {}
    for backend in EXECUTORS:
        param = torch.nn.Parameter(torch.zeros(INT8_MINIMUM + 300))
        optimizer = descend.AdEMAMix(
            [param], lr=1e-2, backend=backend, state_precision=precision, seed=5
        )
        for grad in grads:
            param.grad = grad.clone()
            optimizer.step()
        state = optimizer.state[param]
        stored[backend] = {
            key: value.reshape(-1).view(torch.uint8).clone()
            for key, value in state.items()
            if isinstance(value, torch.Tensor) and value.dim() > 0
        }
        stored[backend]["param"] = param.detach().clone().view(torch.uint8)
    assert len(stored["reference"]) >= 4
    for backend in EXECUTORS[1:]:
        assert stored[backend].keys() == stored["reference"].keys()
        for key, ours in stored["reference"].items():
            assert torch.equal(ours, stored[backend][key]), (backend, key)
