"""Weights kept in 16 bits (``param_precision=``): bfloat16 parameters stepped in float32.

A model whose weights are bfloat16 loses every update smaller than half a bf16 ulp of its
weight when the new weight is rounded to nearest: with a learning rate of 1e-4 and weights
near 1 (ulp 2^-7), Adam's steps of about ``lr`` vanish and training stalls. With
``param_precision`` set, each step decodes every bf16 weight that has a gradient into a float32
*master*, runs the optimizer's ordinary step on the masters (float32 gradients, float32
arithmetic from the decoded state, any executor, the state kept as ``state_precision`` says for
float32), and stores the result back into the same bf16 tensor:

- ``"bfloat16"``: with stochastic rounding (the codec of ``state_precision="bfloat16"``, from
  the optimizer's ``seed`` and stream step), so the expected stored weight is the float32
  result and small updates survive on average: 2 bytes per weight.
- ``"bf16+ecc"``: a *split master*, as FlashOptim keeps: the weight rounded to nearest plus an
  int8 correction byte kept in the state as ``"param.ecc"`` (the codec of
  ``state_precision="bf16+ecc"``), which together decode to float32 within 1/254 of half a
  bf16 ulp (a relative error near 2^-16): 3 bytes per weight. The model computes with the
  rounded weight; each step's update is kept to that resolution, deterministically, so the
  master drifts from a float32 run by at most that much per step (an update of a few units
  of it is rounded the same way every step: a bias stochastic rounding does not have).

Where the parameter's executor compiles weights (the fused CPU and Triton executors: see
:func:`compiled_executor`), there is no master: its kernel reads each bf16 weight (with its
correction byte) and bf16 gradient by address, decodes them with the same codec functions,
runs the rule in float32 and stores the weight through the same encode, in its one pass over
memory (:mod:`descend.kernels.coded`, :mod:`descend.kernels.triton_coded`), so the stored bits
are those of the master's path. The float32 state of such a weight is created from its
decoded value (:func:`state_template`); a cautious step's two passes (the count of agreeing
components, then the cautious store) run in the fused kernels the same way. Every other
parameter (the reference executor, a differentiable step, a cautious step on Triton, a
float32 gradient, a split master's first step, before it has correction bytes) is stepped on
a master, as follows.

The swap happens in place: the parameter object keeps its identity (the state's key) and, after
the step, its own bf16 storage, so a model holding the parameter, a view of it or a compiled
graph sees the same tensor. A step that raises, or is skipped for a non-finite gradient, leaves
every weight and gradient as it was. Both formats need bfloat16 parameters (a float32 model
needs no master); ``differentiable=True`` and DTensor parameters are refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from descend.kernels.codecs import CODECS, saved_decoder, saved_version, stream_key

if TYPE_CHECKING:
    from descend.kernels.executor import Executor
    from descend.optim.base import RuleOptimizer

#: The weight formats ``param_precision`` accepts (``None``: weights stepped in their dtype).
WEIGHT_FORMATS = ("bfloat16", "bf16+ecc")
#: The state key of a split master's correction bytes.
CORRECTION_KEY = "param.ecc"
#: The stream's slot index for weights (state slots use 0-255, their first values 256-511).
WEIGHT_SLOT = 1 << 10


class WeightPrecision:
    """A checked ``param_precision`` request."""

    def __init__(self, request: object = None) -> None:
        if request is not None and request not in WEIGHT_FORMATS:
            raise ValueError(
                f"param_precision={request!r} is invalid: expected None (weights stepped in "
                f"their own dtype) or one of {', '.join(map(repr, WEIGHT_FORMATS))}"
            )
        self.request: str | None = request

    def check_parameter(self, param: torch.Tensor, where: str, differentiable: bool) -> None:
        """Refuse a parameter this request cannot keep: not bfloat16, a DTensor, or any
        parameter of a differentiable optimizer (its step must stay on the autograd graph)."""
        if self.request is None:
            return
        if differentiable:
            raise ValueError(
                f"param_precision={self.request!r} is not available with "
                "differentiable=True: the step runs on float32 copies of the weights, outside "
                "the autograd graph; expected param_precision=None"
            )
        if param.dtype != torch.bfloat16:
            raise ValueError(
                f"{where} (shape {tuple(param.shape)}) is a {param.dtype} tensor: "
                f"param_precision={self.request!r} keeps bfloat16 weights; expected a "
                "torch.bfloat16 parameter, or param_precision=None for this one (a param "
                "group of its own)"
            )
        if type(param).__name__ == "DTensor" or type(param.data).__name__ == "DTensor":
            raise ValueError(
                f"{where} is a DTensor: param_precision={self.request!r} steps local "
                "tensors only; expected param_precision=None"
            )


def master(optimizer: RuleOptimizer, param: torch.Tensor) -> torch.Tensor:
    """``param``'s weight as float32: its bf16 value, with the correction byte of a split
    master added where one is stored."""
    correction = optimizer.state.get(param, {}).get(CORRECTION_KEY)
    if optimizer._weights.request == "bf16+ecc" and correction is not None:
        decoded: torch.Tensor = CODECS["bf16+ecc"].decode((param.data, correction))
        return decoded
    return param.data.to(torch.float32)


def compiled_executor(
    optimizer: RuleOptimizer, group: Mapping[str, Any], param: torch.Tensor
) -> Executor | None:
    """The executor whose kernel steps ``param``'s bf16 weight itself in this step (no
    master), or ``None``: the weight is stepped on a float32 master.

    One answer for the swap (which skips such a parameter) and the plan (which puts it in a
    block of bf16 weights): a bfloat16 parameter with a bfloat16 gradient of its shape and
    device, both contiguous plain tensors, whose float32 master would go to an executor that
    compiles weights (:attr:`~descend.kernels.executor.Executor.weights`; for a cautious
    step, one that compiles its caution there too) in a compiled step (not differentiable; no
    matrix stage), its state (if any) contiguous, and for ``"bf16+ecc"`` its correction
    bytes already stored (a first step decodes the weight without them, on a master)."""
    request = optimizer._weights.request
    grad = param.grad
    if (
        request is None
        or param.dtype != torch.bfloat16
        or grad is None
        or optimizer.defaults.get("differentiable", False)
        or not optimizer._executors[0].compiled
        or optimizer.rule_for(group).stage is not None
    ):
        return None
    if (
        type(param.data) is not torch.Tensor
        or type(grad) is not torch.Tensor
        or grad.dtype != torch.bfloat16
        or grad.shape != param.shape
        or grad.device != param.device
        or not param.is_contiguous()
        or not grad.is_contiguous()
    ):
        return None
    executor = optimizer._executor_for(torch.empty(0, dtype=torch.float32, device=param.device))
    if executor is None or not executor.weights:
        return None
    if optimizer.cautious and not executor.fuses_weight_caution:
        return None
    state = optimizer.state.get(param) or {}
    if request == "bf16+ecc":
        correction = state.get(CORRECTION_KEY)
        if not (
            type(correction) is torch.Tensor
            and correction.dtype == torch.int8
            and correction.shape == param.shape
            and correction.device == param.device
            and correction.is_contiguous()
        ):
            return None
    if any(
        isinstance(value, torch.Tensor) and value.dim() > 0 and not value.is_contiguous()
        for value in state.values()
    ):
        return None
    return executor


def state_template(optimizer: RuleOptimizer, param: torch.Tensor) -> torch.Tensor:
    """What ``param``'s state is made like and checked against: ``param`` itself, or for a
    bf16 weight under ``param_precision`` its float32 master (whose dtype its state has: a
    weight stepped by a kernel has no master of its own while its state is created)."""
    if optimizer._weights.request is None or param.dtype != torch.bfloat16:
        return param
    return master(optimizer, param)


def state_probe(optimizer: RuleOptimizer, param: torch.Tensor) -> torch.Tensor:
    """What ``param``'s existing state is checked against (its shape, dtype and device, as
    :func:`state_template`'s) without decoding it: ``param`` itself, or for a bf16 weight
    under ``param_precision`` a float32 tensor of its shape and device holding one element."""
    if optimizer._weights.request is None or param.dtype != torch.bfloat16:
        return param
    return torch.empty((), dtype=torch.float32, device=param.device).expand(param.shape)


def store_weight(
    optimizer: RuleOptimizer,
    param: torch.Tensor,
    values: torch.Tensor,
    stored: torch.Tensor,
    index: int,
) -> None:
    """Store float32 ``values``, the new weight of ``param`` (tensor ``index`` of the
    optimizer's stream), into ``stored``, its bf16 tensor, as its format stores it."""
    if optimizer._weights.request == "bf16+ecc":
        high, correction = CODECS["bf16+ecc"].encode(values, 0)
        stored.copy_(high)
        state = optimizer.state[param]
        existing = state.get(CORRECTION_KEY)
        if isinstance(existing, torch.Tensor) and existing.shape == correction.shape:
            existing.copy_(correction)
        else:
            state[CORRECTION_KEY] = correction
        return
    key = stream_key(optimizer._precision.seed, optimizer._stream_step, index, WEIGHT_SLOT)
    (rounded,) = CODECS["bfloat16"].encode(values, key)
    stored.copy_(rounded)


def _store(optimizer: RuleOptimizer, param: torch.Tensor, stored: torch.Tensor, index: int) -> None:
    """Store ``param``'s float32 master (its current data) into ``stored``, its bf16 tensor."""
    store_weight(optimizer, param, param.data, stored, index)


def _swap(param: torch.Tensor, data: torch.Tensor, grad: torch.Tensor | None) -> None:
    """Give ``param`` other data (of another dtype) and gradient."""
    param.grad = None
    param.data = data
    param.grad = grad


def float32_weights(
    optimizer: RuleOptimizer, stepping: bool = True
) -> contextlib.AbstractContextManager[None]:
    """A context that runs its body on float32 masters of the bf16 weights (see the module
    docstring); without ``param_precision``, one that does nothing (every step enters it, so
    that costs no generator).

    ``stepping`` (a step): only the weights that have gradients, each with its gradient as
    float32, and the masters stored back if the step happened (it was not skipped and did not
    raise). Otherwise (a load, or state created at construction) every bf16 weight, nothing
    stored back: what the body creates or loads is kept in float32, the masters' dtype, and
    a split master's correction bytes stay int8.
    """
    if optimizer._weights.request is None:
        return _NOTHING
    return _on_masters(optimizer, stepping)


#: The context of an optimizer without ``param_precision``.
_NOTHING = contextlib.nullcontext()


@contextlib.contextmanager
def _on_masters(optimizer: RuleOptimizer, stepping: bool) -> Iterator[None]:
    swapped: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]] = []
    index = -1
    try:
        for group in optimizer.param_groups:
            for param in group["params"]:
                index += 1
                grad = param.grad
                if param.dtype != torch.bfloat16 or (stepping and grad is None):
                    continue
                if stepping and compiled_executor(optimizer, group, param) is not None:
                    continue  # its kernel decodes and stores it
                stored = param.data
                work = None if grad is None or not stepping else grad.to(torch.float32)
                _swap(param, master(optimizer, param), work)
                swapped.append((param, stored, grad, index))
        before = optimizer._stream_step
        yield
        if stepping and optimizer._stream_step != before:  # the step happened
            for param, stored, _, position in swapped:
                _store(optimizer, param, stored, position)
    finally:
        for param, stored, grad, _ in swapped:
            _swap(param, stored, grad)
    if stepping:
        return
    for param, *_ in swapped:  # torch's load cast every state tensor to the float32 masters'
        state: dict[str, Any] = optimizer.state.get(param, {})
        correction = state.get(CORRECTION_KEY)
        if isinstance(correction, torch.Tensor) and correction.dtype != torch.int8:
            state[CORRECTION_KEY] = correction.to(torch.int8)


def stepped_on_masters(
    optimizer: RuleOptimizer | None, params: Sequence[torch.Tensor]
) -> contextlib.AbstractContextManager[None]:
    """A context whose body steps ``params`` (bf16 weights a kernel was to step, while it
    loads) on float32 masters with float32 gradients, stored back as their format stores
    them when the body returns; without an ``optimizer``, one that does nothing."""
    if optimizer is None:
        return _NOTHING
    return _stepped(optimizer, params)


@contextlib.contextmanager
def _stepped(optimizer: RuleOptimizer, params: Sequence[torch.Tensor]) -> Iterator[None]:
    every = (p for group in optimizer.param_groups for p in group["params"])
    positions = {id(param): index for index, param in enumerate(every)}
    swapped: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    try:
        for param in params:
            grad = param.grad
            work = None if grad is None else grad.to(torch.float32)
            stored = param.data
            _swap(param, master(optimizer, param), work)
            swapped.append((param, stored, grad))
        yield
        for param, stored, _ in swapped:
            _store(optimizer, param, stored, positions[id(param)])
    finally:
        for param, stored, grad in swapped:
            _swap(param, stored, grad)


def check_loaded_corrections(optimizer: RuleOptimizer, record: object) -> None:
    """Refuse (``ValueError`` naming it) a state dict whose split-master corrections are in an
    encoding this version cannot read, before anything is loaded."""
    if optimizer._weights.request == "bf16+ecc" and isinstance(record, Mapping):
        saved_decoder(record, "bf16+ecc", f"the state dict's {CORRECTION_KEY!r}")


def convert_loaded_corrections(optimizer: RuleOptimizer, record: object) -> None:
    """After a load: a split master's correction bytes written by an older encoding of
    ``"bf16+ecc"`` (the state dict's format record says which) are decoded with that encoding
    and stored again in the current one; an encoding this version cannot read raises
    ``ValueError`` naming it (see :func:`~descend.kernels.codecs.saved_decoder`)."""
    codec = CODECS["bf16+ecc"]
    if optimizer._weights.request != "bf16+ecc" or not isinstance(record, Mapping):
        return
    if saved_version(record, codec.name) == codec.version:
        return
    for index, param in enumerate(p for g in optimizer.param_groups for p in g["params"]):
        state = optimizer.state.get(param) or {}
        correction = state.get(CORRECTION_KEY)
        if correction is None:
            continue
        decode = saved_decoder(record, codec.name, f"state[{index}][{CORRECTION_KEY!r}]")
        high, state[CORRECTION_KEY] = codec.encode(decode((param.data, correction)), 0)
        param.data.copy_(high)


def requested_weights(arguments: dict[str, Any]) -> WeightPrecision:
    """The checked ``param_precision`` of a constructor's added arguments."""
    return WeightPrecision(arguments.get("param_precision"))


__all__ = [
    "CORRECTION_KEY",
    "WEIGHT_FORMATS",
    "WEIGHT_SLOT",
    "WeightPrecision",
    "check_loaded_corrections",
    "compiled_executor",
    "convert_loaded_corrections",
    "float32_weights",
    "master",
    "requested_weights",
    "state_probe",
    "state_template",
    "stepped_on_masters",
    "store_weight",
]
