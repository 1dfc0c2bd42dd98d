"""Cautious steps on every executor: the mechanism of :mod:`descend.rules.caution`, compiled
into the rule's own kernels.

A cautious step is elementwise work with one per-tensor sum in the middle: ``d = x - x_new``
(``x_new`` the rule's own step), ``keep_i = [d_i g_i > 0]``, ``s = n / (sum keep + 1)`` per
tensor, ``x <- x - d keep s``. An executor that
:attr:`~descend.kernels.executor.Executor.fuses_caution` (the fused Numba one and the Triton
one) compiles it from the rule's own ``update`` into two kernels of the same generator as its
plain kernel (variants whose ``caution`` is ``"count"`` and ``"apply"``,
:data:`~descend.kernels.variant.CAUTION_PASSES`):

1. *count*: the plain kernel's loads and the rule's step in registers; it writes no parameter
   and no slot, only each segment's number of agreeing components (``cautious_agreement``),
   an integer sum, so the total does not depend on the order or the threads (a NaN agreement
   makes it NaN, as a float sum would);
2. the executor sums the segments per tensor and turns the counts into scales
   (:func:`caution_scales`: a few vector ops for all tensors at once);
3. *apply*: the plain kernel, whose parameter store is ``cautious_parameter(x, x_new, keep,
   s)`` with the tensor's scale read from the scale array; slots are stored as in the plain
   kernel.

No copy of the parameters and no scratch tensor of their size: one read-only pass and one
plain pass. What it costs (``benchmarks/caution_speed.py``: float32 Adam, one thread, medians
of 21 interleaved rounds on a shared 2-core machine): on one tensor of 16M elements a plain
fused step took 12.3 ms, the cautious one 27.2 ms (2.20x; the older form below 98.5 ms,
7.99x); on 1000 tensors of 1024, 3.85 ms against 6.09 ms (1.58x; older form 70.5 ms, 18.3x).
On the large tensor the count pass costs about as much as the plain pass: it reads every
operand and recomputes the rule's step (Adam's division and square root), and the plain
pass there is bound by the same reads rather than by its stores.

The reference executor (torch ops, the definition the compiled ones are checked against),
variants with compressed slots and executors that do not fuse caution run the older form,
"store the slots in pass 1, rescale the parameter in pass 2": the executor's own step of the
rule after :func:`snapshot` kept each parameter's value, then :func:`apply_caution` on the same
executor: the rule :func:`~descend.rules.caution.caution_count` writes each element's agreement
into a scratch tensor, torch sums it per tensor, and the rule
:func:`~descend.rules.caution.caution_apply` rescales the parameter. On one executor both forms
compute the same bits: the rule's result is rounded to the parameter's dtype in registers as in
memory, the sums are exact, and both take the scale from :func:`caution_scales`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from descend.kernels.executor import CompiledExecutor, Executor
from descend.kernels.table import step_in_tables
from descend.kernels.variant import Variant
from descend.rules.caution import caution_apply, caution_count, caution_scale
from descend.rules.spec import Rule, Slot

#: Pass 2a of the older form, as a rule: ``(x_new, g, before, keep) -> (x_new, before, agreement)``.
COUNT_RULE = Rule(
    name="caution_count",
    update=caution_count,
    hypers=(),
    slots=(Slot("before"), Slot("keep")),
    counts_steps=False,
)
#: Pass 2b of the older form, as a rule: ``(x_new, g, before) -> (x_cautious, before)``.
APPLY_RULE = Rule(
    name="caution_apply",
    update=caution_apply,
    hypers=(),
    slots=(Slot("before"),),
    counts_steps=False,
)


#: Counts up to which a float32 sum of 0s and 1s is exact.
EXACT_FLOAT32_COUNT = 1 << 24


def caution_scales(kept: torch.Tensor, sizes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Each tensor's scale (:func:`~descend.rules.caution.caution_scale`, ``n / (kept + 1)``)
    from its number of agreeing components ``kept`` (float64, exact; NaN when an agreement was
    NaN) and its size, computed in the parameters' ``dtype`` as a torch op on the tensor would
    be, returned in float64 (the type of every run-time scalar of a kernel). One definition
    for every executor and both forms of the step."""
    scales: torch.Tensor = caution_scale(kept.to(dtype), sizes.to(dtype))
    return scales.to(torch.float64)


def check_caution_array(
    name: str,
    array: npt.NDArray[Any] | torch.Tensor,
    length: int,
    device: torch.device | None = None,
) -> None:
    """Refuse, before a launch, a per-segment count or per-tensor scale array that a cautious
    kernel would read or write out of bounds or as the wrong type: it must be a contiguous
    1-D float64 array of ``length`` elements (on ``device``, for a tensor)."""
    found: tuple[Any, ...]
    expected: tuple[Any, ...]
    if isinstance(array, torch.Tensor):
        found = (array.dtype, tuple(array.shape), array.is_contiguous(), array.device)
        expected = (torch.float64, (length,), True, device or array.device)
    else:
        found = (array.dtype, array.shape, array.flags.c_contiguous)
        expected = (np.dtype(np.float64), (length,), True)
    if found != expected:
        raise ValueError(
            f"the cautious step's {name} array is (dtype, shape, contiguous, device) {found}: "
            f"expected {expected}"
        )


def _real(tensor: torch.Tensor) -> torch.Tensor:
    """A complex tensor's real view (as executors step it), any other tensor itself."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each parameter's value before the step (pass 1 overwrites it), as executors see it.
    Nothing is detached: under autograd (a differentiable step) the passes are recorded."""
    return [_real(param).clone() for param in params]


def apply_caution(
    before: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    maximize: bool,
    executor_for: Callable[[torch.Tensor], Executor],
) -> None:
    """Pass 2 of the older form of a cautious step, in place: each parameter (holding its
    executor's result) becomes ``before - d * keep * scale`` (see
    :mod:`descend.rules.caution`), computed by ``executor_for(parameter)``, the executor that
    ran pass 1 on it."""
    news = [_real(param) for param in params]
    reals = [_real(grad) for grad in grads]
    keeps = [torch.empty_like(new) for new in news]
    by_executor: dict[int, tuple[Executor, list[int]]] = {}
    for index, param in enumerate(params):
        executor = executor_for(param)
        by_executor.setdefault(id(executor), (executor, []))[1].append(index)
    for executor, indices in by_executor.values():
        executor.step(
            COUNT_RULE,
            None,
            {"maximize": maximize},
            [news[i] for i in indices],
            [reals[i] for i in indices],
            [[before[i], keeps[i]] for i in indices],
        )
        scales = _scales([keeps[i].detach() for i in indices])
        for i, scale in zip(indices, scales, strict=True):
            executor.step(
                APPLY_RULE,
                None,
                {"scale": scale, "maximize": maximize},
                [news[i]],
                [reals[i]],
                [[before[i]]],
            )


def _scales(keeps: Sequence[torch.Tensor]) -> list[float]:
    """The scale of each agreement tensor (:func:`caution_scales`), one vector op per dtype and
    device."""
    groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for index, keep in enumerate(keeps):
        groups.setdefault((keep.dtype, keep.device), []).append(index)
    scales = [0.0] * len(keeps)
    for (dtype, device), members in groups.items():
        kept = []
        for i in members:
            # A sum of 0s and 1s is exact in float32 up to 2**24 (and much faster than one in
            # float64, which torch makes through a float64 copy).
            keep = keeps[i]
            exact = keep.numel() <= EXACT_FLOAT32_COUNT or dtype == torch.float64
            kept.append((keep.sum() if exact else keep.sum(dtype=torch.float64)).double())
        sizes = torch.tensor([keeps[i].numel() for i in members], device=device)
        found = caution_scales(torch.stack(kept), sizes, dtype).tolist()
        for i, scale in zip(members, found, strict=True):
            scales[i] = scale
    return scales


def cautious_step(
    executor: Executor,
    rule: Rule,
    variant: Variant | None,
    scalars: Mapping[str, Any],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    slots: Sequence[Sequence[torch.Tensor | None]],
) -> None:
    """One cautious step of ``rule`` on ``executor`` (its :meth:`~Executor.step` arguments):
    in the rule's own kernels on an executor that fuses caution, else the executor's step
    followed by :func:`apply_caution` on the same executor. Ascends where ``scalars`` say
    ``maximize``."""
    if isinstance(executor, CompiledExecutor) and executor.fuses_caution:
        step_in_tables(
            executor,
            rule,
            scalars,
            params,
            grads,
            slots,
            executor.dtypes,
            executor.check_operands,
            cautious=True,
        )
        return
    before = snapshot(params)
    executor.step(rule, variant, scalars, params, grads, slots)
    maximize = bool(scalars.get("maximize", False))
    apply_caution(before, params, grads, maximize, lambda param: executor)


__all__ = [
    "APPLY_RULE",
    "COUNT_RULE",
    "apply_caution",
    "caution_scales",
    "cautious_step",
    "check_caution_array",
    "snapshot",
]
