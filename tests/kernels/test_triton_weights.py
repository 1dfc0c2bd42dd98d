"""``param_precision`` compiled into the Triton kernel, run by Triton's interpreter on CPU
tensors: bf16 weights and gradients read as bf16 bits, stepped in float32 and stored through
the weight codec, bit for bit as the float32-master swap path (``backend="reference"``)
stores them. (``TRITON_INTERPRET=1`` is set before Triton is first imported, as in
``test_triton.py``.)"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest
import torch

import descend

# The small launches of ``test_triton.py`` (autouse there and here), so that the tensors
# straddle chunks and blocks; coded kernels widen the block to an int8 block (256 elements).
from tests.kernels.test_triton import small_launches  # noqa: F401


def _run(backend: str, weights: str, state: str, steps: int = 3):
    generator = torch.Generator().manual_seed(4)
    params = [
        torch.nn.Parameter(torch.randn(shape, generator=generator).to(torch.bfloat16))
        for shape in [(37,), (5000,), (70, 3)]
    ]
    optimizer = descend.AdamW(
        [{"params": params[:2]}, {"params": params[2:], "lr": 3e-3}],
        lr=1e-2,
        backend=backend,
        param_precision=weights,
        state_precision=state,
        seed=99,
    )
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator).to(torch.bfloat16)
        optimizer.step()
    return params, optimizer


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().view(-1).view(torch.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("state", ["float32", "int8"])
@pytest.mark.parametrize("weights", ["bfloat16", "bf16+ecc"])
def test_the_triton_kernel_stores_the_bits_of_the_swap_path(weights, state):
    params, optimizer = _run("triton", weights, state)
    expected, reference = _run("reference", weights, state)
    assert {b.weights for plan in optimizer._plans.values() for b in plan.blocks} == {weights}
    for param, other in zip(params, expected, strict=True):
        assert param.dtype == torch.bfloat16
        assert torch.equal(_bytes(param), _bytes(other))
    saved, wanted = optimizer.state_dict()["state"], reference.state_dict()["state"]
    assert saved.keys() == wanted.keys()
    for index, entry in saved.items():
        assert entry.keys() == wanted[index].keys()
        for key, value in entry.items():
            assert value.dtype == wanted[index][key].dtype
            assert torch.equal(_bytes(value), _bytes(wanted[index][key])), (index, key)
