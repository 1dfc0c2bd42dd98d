"""The rule language's ``sign`` is torch's on every executor: -1, 0 or 1, and 0 for NaN (NumPy's
own ``sign`` gives NaN), so a rule built on it (Lion, caution's agreement) treats a NaN alike
everywhere: NumPy (the functional API and the lab), torch (the reference executor), Numba (the
fused executor) and Triton (run by its interpreter)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import descend
from descend.rules.elementwise import implementation

VALUES = [2.5, -0.75, 0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1e-300]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_sign_is_torch_sign_on_arrays_numpy_scalars_and_floats(dtype):
    numpy_sign = implementation("sign", "numpy")
    values = np.array(VALUES, dtype=dtype)
    expected = torch.sign(torch.from_numpy(values)).numpy()
    got = numpy_sign(values)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
    for value, want in zip(values, expected, strict=True):
        assert numpy_sign(value) == want and numpy_sign(float(value)) == want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_sign_is_torch_sign(dtype):
    import numba

    numba_sign = implementation("sign", "numba")
    apply = numba.njit(lambda x: numba_sign(x))
    values = np.array(VALUES, dtype=dtype)
    expected = torch.sign(torch.from_numpy(values)).numpy()
    np.testing.assert_array_equal([apply(value) for value in values], expected)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["fused", "triton"])
def test_lion_steps_a_nan_gradient_as_the_reference_executor(backend):
    """A NaN gradient element: Lion's sign of it is 0 on every executor, so its parameter keeps
    its value there (its momentum turns NaN) and every other element steps alike."""
    results = {}
    for name in ("reference", backend):
        generator = torch.Generator().manual_seed(0)
        param = torch.randn(3000, generator=generator)
        optimizer = descend.Lion([param], lr=0.01, weight_decay=0.1, backend=name)
        for step in range(3):
            param.grad = torch.randn(3000, generator=generator)
            if step == 1:
                param.grad[17] = math.nan
            optimizer.step()
        results[name] = (param.clone(), optimizer.state[param]["exp_avg"].clone())
    for ours, reference in zip(results[backend], results["reference"], strict=True):
        torch.testing.assert_close(ours, reference, rtol=0, atol=0, equal_nan=True)
    assert not results[backend][0].isnan().any()
