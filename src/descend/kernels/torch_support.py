"""The torch column of :data:`descend.rules.elementwise.PRIMITIVES` where ``torch.<name>`` itself
does not round as the compiled executors do.

Every executor must give the same bits, so that a run moved between backends continues
exactly. Two primitives need more than the plain torch function:

- :func:`sqrt`: on CPUs torch computes ``torch.sqrt`` of float32 and float64 tensors with
  Intel MKL's vector math library, whose results are within 0.75 units in the last place but
  not correctly rounded (about one float32 square root in six is one unit off on x86-64).
  NumPy, Numba, Triton's ``sqrt_rn``, CUDA and torch's own fused CPU optimizers round
  correctly, so this ``sqrt`` does too.
- :func:`fma`: ``a * b + c`` rounded once, which torch computes for ``torch.add(c, b,
  alpha=a)`` and ``torch.addcmul(c, a, b)`` (the operations ``torch.optim`` steps with).
"""

from __future__ import annotations

import torch


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of each element of ``x``.

    float32 (and narrower) on the CPU: the float64 square root, rounded to float32. Even with
    MKL's error (under one float64 unit) that is the correctly rounded float32 result: the exact
    root of a float32 number lies at least 2**-50 (relative) from any midpoint between float32
    numbers, farther than the float64 result can be from it. float64 on the CPU: MKL's root,
    corrected by one step of Tuckerman's test with exact fused multiply-add residuals. Other
    devices compute ``torch.sqrt`` correctly rounded already. Autograd sees the same function
    (the float64 detour and the correction are differentiable or constant).
    """
    if x.device.type != "cpu" or not x.is_floating_point():
        return torch.sqrt(x)
    if x.dtype != torch.float64:
        return torch.sqrt(x.double()).to(x.dtype)
    root = torch.sqrt(x)
    with torch.no_grad():
        # Tiny x is scaled up by 2**200 (exactly), so that no residual below underflows.
        small = x.detach() < 2.0**-600
        scaled = torch.where(small, x.detach() * 2.0**200, x.detach())
        corrected = _tuckerman(scaled, torch.where(small, torch.sqrt(scaled), root.detach()))
        corrected = torch.where(small, corrected * 2.0**-100, corrected)
    if root.requires_grad:
        return root + (corrected - root).detach()
    return corrected


def _tuckerman(x: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """``root`` (within one unit in the last place of ``sqrt(x)``) made correctly rounded.

    With ``up``/``down`` the neighbours of ``root``, ``root`` is the rounded root exactly when
    ``down * root < x <= root * up`` (Tuckerman's test); each product minus ``x`` is one fused
    multiply-add, whose sign is exact while it does not underflow (``x >= 2**-800``).
    """
    up = torch.nextafter(root, torch.full_like(root, float("inf")))
    down = torch.nextafter(root, torch.zeros_like(root))
    positive = (x > 0) & torch.isfinite(x)
    too_small = positive & (torch.addcmul(-x, root, up) < 0)
    too_large = positive & (torch.addcmul(-x, down, root) >= 0)
    return torch.where(too_small, up, torch.where(too_large, down, root))


def fma(a: torch.Tensor | float, b: torch.Tensor | float, c: torch.Tensor) -> torch.Tensor:
    """``a * b + c`` rounded once, in the elements' dtype (a Python scalar operand rounded to
    it first), as torch's CPU and CUDA kernels compute ``torch.add(c, b, alpha=a)`` and
    ``torch.addcmul(c, a, b)``. ``c`` must be a tensor; ``a`` or ``b`` may be a scalar."""
    if not isinstance(a, torch.Tensor):
        return torch.add(c, b, alpha=a)
    if not isinstance(b, torch.Tensor):
        return torch.add(c, a, alpha=b)
    return torch.addcmul(c, a, b)
