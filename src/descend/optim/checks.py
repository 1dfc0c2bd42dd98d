"""What a step checks before it changes anything: parameters, gradients, state and values.

Every check raises naming the parameter (through the optimizer's ``label``, which
:func:`parameter_label` writes) and says that nothing was updated; none changes anything.
:mod:`descend.optim.base` runs them, as does the plan of each param group
(:mod:`descend.optim.plan`) and the list executors' part of it (:mod:`descend.optim.listed`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache, partial
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from descend.optim import sharded
from descend.rules.hyper import all_plain
from descend.rules.spec import Rule

if TYPE_CHECKING:
    from descend.optim.base import RuleOptimizer
    from descend.optim.block import Block

#: How messages name a parameter (:meth:`RuleOptimizer._label`, see :func:`parameter_label`).
Label = Callable[[torch.Tensor], str]


class ComplexParameterError(ValueError, RuntimeError):
    """A complex parameter given to an optimizer that steps real ones only. Both a
    ``ValueError`` (a bad argument, as descend reports them) and the ``RuntimeError`` that
    ``torch.optim`` raises for it (``torch.optim.Muon``), so either ``except`` catches it."""


class NonFiniteGradientError(FloatingPointError):
    """A gradient held inf or NaN and the optimizer was built with ``nonfinite="raise"``."""


def parameter_label(groups: Sequence[Mapping[str, Any]], param: torch.Tensor) -> str:
    """How messages name ``param``: by name when the optimizer was built from
    ``named_parameters()``, else by its place in the param groups ``groups``."""
    for group_index, group in enumerate(groups):
        for index, candidate in enumerate(group["params"]):
            if candidate is param:
                names = group.get("param_names")
                if names:
                    return f"parameter {names[index]!r} (shape {tuple(param.shape)})"
                return (
                    f"param_groups[{group_index}]['params'][{index}] (shape "
                    f"{tuple(param.shape)}; build the optimizer from "
                    "model.named_parameters() to see names)"
                )
    return f"a parameter of shape {tuple(param.shape)}"


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``: the dtype as a variant names it."""
    return str(dtype).removeprefix("torch.")


def check_parameter(optimizer: RuleOptimizer, param: torch.Tensor, where: str, rule: Rule) -> None:
    """Refuse a parameter the optimizer cannot step (``where`` names it): not dense, not a
    float, complex where the class steps real ones only, of the wrong dimension for a rule's
    matrix stage, or on a device or dtype no executor of its backend supports."""
    shape = tuple(param.shape)
    owner = type(optimizer).__name__
    if param.layout != torch.strided:
        raise ValueError(
            f"{where} (shape {shape}) is a {param.layout} "
            "tensor: descend optimizers update dense (strided) parameters; "
            "sparse gradients of dense parameters are supported where "
            "torch.optim supports them"
        )
    if not (param.is_floating_point() or param.is_complex()):
        raise ValueError(
            f"{where} (shape {shape}) has dtype {param.dtype}: "
            "expected a floating-point or complex tensor (an update would "
            "truncate it)"
        )
    if param.is_complex() and not optimizer.complex_parameters:
        raise ComplexParameterError(
            f"{where} (shape {shape}) is a complex tensor: "
            f"{owner} updates real parameters only (its reference does not "
            "step complex numbers as two real ones)"
        )
    stage = rule.stage
    if stage is not None and (
        (stage.ndim is not None and param.ndim != stage.ndim) or param.is_complex()
    ):
        kind = "a complex tensor" if param.is_complex() else f"{param.ndim}-D"
        error = ComplexParameterError if param.is_complex() else ValueError
        raise error(
            f"{where} (shape {shape}) is {kind}: "
            f"{owner} updates real "
            f"{'' if stage.ndim is None else f'{stage.ndim}-D '}"
            f"parameters only{optimizer.stage_hint}"
        )
    sharded.check_parameter(param, where)
    precision = optimizer.__dict__.get("_precision")
    if precision is not None:
        precision.check_parameter(param, where)
    weights = optimizer.__dict__.get("_weights")
    if weights is not None and weights.request is not None:
        differentiable = bool(optimizer.defaults.get("differentiable", False))
        weights.check_parameter(param, where, differentiable)
        # Its step runs on a float32 master: that is what an executor must support.
        param = torch.empty_like(param, dtype=torch.float32)
    if optimizer._executor_for(param) is None:
        (executor,) = optimizer._executors
        raise ValueError(
            f"backend={optimizer.backend!r} cannot update {where}, a {param.dtype} "
            f"tensor on {param.device} (shape {shape}): "
            f"{executor.refusal(param)}; use backend='auto' to update the "
            "others with the reference executor"
        )


def check_new_group(
    optimizer: RuleOptimizer, params: Sequence[Any], group_index: int, rule: Rule
) -> None:
    """Check the parameters of the group ``add_param_group`` adds as group ``group_index``
    (tensors, or ``(name, tensor)`` pairs): each listed once, and each one that ``optimizer``
    can step under ``rule`` (:func:`check_parameter`)."""
    tensors = [p[1] if isinstance(p, tuple) else p for p in params]
    if len({id(p) for p in tensors}) != len(tensors):
        raise ValueError(
            "a parameter appears twice in one parameter group: each parameter "
            "may be listed once (it would otherwise be stepped twice)"
        )
    for index, (param, entry) in enumerate(zip(tensors, params, strict=True)):
        if isinstance(param, torch.Tensor):
            where = (
                f"parameter {entry[0]!r}"
                if isinstance(entry, tuple)
                else f"param_groups[{group_index}]['params'][{index}]"
            )
            check_parameter(optimizer, param, where, rule)


def identical(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Whether two sequences hold the very same objects, in order (one C-level pass)."""
    return len(a) == len(b) and all(map(operator.is_, a, b))


_grad = operator.attrgetter("grad")


def with_gradients(params: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters that have a gradient, and those gradients, each ``.grad`` read once
    (the step passes them on rather than reading every ``.grad`` again)."""
    grads = list(map(_grad, params))
    if all(map(operator.is_not, grads, repeat(None))):
        return list(params), grads
    kept = [(param, grad) for param, grad in zip(params, grads, strict=True) if grad is not None]
    return [param for param, _ in kept], [grad for _, grad in kept]


class ListedOnceCheck:
    """:func:`check_listed_once`, remembering the lists it passed: while every group lists
    the very same parameters in the same order as at the last check, a step costs one identity
    comparison per parameter instead of a set of ids."""

    def __init__(self) -> None:
        self._checked: list[list[torch.Tensor]] = []

    def __call__(self, groups: Sequence[Mapping[str, Any]]) -> None:
        lists = [group["params"] for group in groups]
        if len(lists) == len(self._checked) and all(map(identical, lists, self._checked)):
            return
        check_listed_once(groups)
        self._checked = [list(params) for params in lists]


def check_listed_once(groups: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a parameter listed twice in the param groups (appended or assigned after
    construction): the constructor refuses it, since it would be stepped twice. One set of
    ids per step; the slow search for the culprit only when there is one."""
    listed = [id(param) for group in groups for param in group["params"]]
    if len(set(listed)) == len(listed):
        return
    seen: set[int] = set()
    for index, group in enumerate(groups):
        for position, param in enumerate(group["params"]):
            if id(param) in seen:
                raise ValueError(
                    f"param_groups[{index}]['params'][{position}] (shape "
                    f"{tuple(param.shape)}) is listed twice in the parameter groups: each "
                    "parameter may be listed once (it would otherwise be stepped twice); "
                    "nothing was updated"
                )
            seen.add(id(param))


def check_writable(params: Iterable[torch.Tensor], state: Mapping[Any, Any], label: Label) -> None:
    """Refuse a parameter or state tensor whose elements share memory (an expanded
    tensor: an update would write one element several times, and torch refuses it too)
    or do not all lie inside its storage (a storage resized under it)."""
    for param in params:
        entries = state.get(param, {})
        tensors = [
            ("", param),
            *(
                (f"state[{name!r}] of ", value)
                for name, value in entries.items()
                if isinstance(value, torch.Tensor) and value.ndim
            ),
        ]
        for prefix, tensor in tensors:
            local = sharded.local(tensor)
            if not _inside_storage(local):
                raise ValueError(
                    f"{prefix}{label(param)} reaches past the end of its storage "
                    f"({local.untyped_storage().nbytes()} bytes for shape "
                    f"{tuple(local.shape)}, strides {local.stride()}, offset "
                    f"{local.storage_offset()}: was the storage resized?); nothing was "
                    "updated"
                )
            if torch._debug_has_internal_overlap(tensor) == 1:
                raise ValueError(
                    f"{prefix}{label(param)} has elements that refer to the same "
                    f"memory location (strides {tensor.stride()}, an expanded tensor?): "
                    "an in-place update would write them several times; clone it "
                    "first; nothing was updated"
                )


def check_existing_state(
    params: Iterable[torch.Tensor], rule: Rule, state: Mapping[Any, Any], label: Label
) -> None:
    """Before any state is created for ``params``: refuse elements that share memory
    (:func:`check_writable`) and step counters no step can follow."""
    params = list(params)
    check_writable(params, state, label)
    if rule.counts_steps:
        for param in params:
            entries = state.get(param)
            if entries and "step" in entries:
                check_counter(entries["step"], partial(label, param))


def check_counters(blocks: Iterable[Block], label: Label) -> None:
    """Refuse step counters set to what no step can follow (negative), naming the
    parameter; a plan's counters are read as one array per block."""
    for block in blocks:
        if block.counted and not _all_nonnegative(block.step_values):
            worst = int(np.argmin(np.nan_to_num(block.step_values, nan=-np.inf)))
            param = block.params[worst]
            check_counter(block.step_views[worst], partial(label, param))


#: Below this many counters, comparing them in Python costs less than one NumPy reduction.
_FEW_COUNTERS = 16


def _all_nonnegative(values: np.ndarray) -> bool:
    """Whether every counter is a number at least 0 (NaN is not)."""
    if len(values) < _FEW_COUNTERS:
        return all(value >= 0 for value in values.tolist())
    return bool(values.min() >= 0)


def check_gradients(
    params: Iterable[torch.Tensor],
    group: Mapping[str, Any],
    sparse_gradients: str | None,
    owner: str,
    label: Label,
) -> None:
    """Refuse gradients that cannot be their parameters' (:func:`check_gradient`), and a
    sparse one where the class steps none (``sparse_gradients`` is ``None``) or with weight
    decay."""
    for param in params:
        grad = _gradient(param)
        if grad.is_sparse:
            if sparse_gradients is None:
                raise RuntimeError(f"{owner} does not support sparse gradients ({label(param)})")
            group_decay = group.get("weight_decay", 0)
            if group_decay:
                # torch.optim refuses it too (Adagrad by name, SGD in its sparse add).
                raise RuntimeError(
                    f"weight_decay={group_decay} is not compatible with the sparse "
                    f"gradient of {label(param)}; nothing was updated"
                )
            if grad.shape != param.shape or grad.dtype != param.dtype:
                check_gradient(param, grad, label)
        else:
            check_gradient(param, grad, label)


def _gradient(param: torch.Tensor) -> torch.Tensor:
    """The gradient of a parameter the step updates (one with a gradient)."""
    grad = param.grad
    assert grad is not None, "only parameters with a gradient are stepped"
    return grad


def has_nonfinite_gradient(params: Sequence[torch.Tensor], nonfinite: str, label: Label) -> bool:
    """Whether a gradient of ``params`` holds inf or NaN, in one pass over the gradients (one
    device synchronization per device); with ``nonfinite="raise"``,
    :class:`NonFiniteGradientError` names the first such parameter instead."""
    # DTensors are checked shard by shard, and the ranks agree (see descend.optim.sharded).
    grads = [_gradient(p) for p in params]
    local = [_real(grad) for grad in sharded.local_tensors(grads)]
    if not sharded.agree([any(map(_any_nonfinite, _by_device_and_dtype(local)))], grads)[0]:
        return False
    if nonfinite == "skip":
        return True
    found = sharded.agree([_any_nonfinite([grad]) for grad in local], grads)
    for param, bad in zip(params, found, strict=True):
        if bad:
            raise NonFiniteGradientError(
                f"non-finite gradient (inf or NaN) in {label(param)}; nothing was updated"
            )
    return False


def check_gradient(param: torch.Tensor, grad: torch.Tensor, label: Label) -> None:
    """Raise ``ValueError`` naming the parameter if ``grad`` cannot be its gradient."""
    if grad.shape != param.shape or grad.dtype != param.dtype or grad.device != param.device:
        raise ValueError(
            f"the gradient of {label(param)} is {grad.dtype} of shape {tuple(grad.shape)} on "
            f"{grad.device}, but the parameter is {param.dtype} of shape {tuple(param.shape)} "
            f"on {param.device}: expected the same dtype, shape and device; nothing was updated"
        )
    sharded.check_gradient(param, grad, label)


def check_representable(
    hypers: Mapping[str, Any], scalars: Mapping[str, Any], dtype: torch.dtype
) -> bool:
    """Refuse a step whose hyperparameters or scalars a ``dtype`` kernel cannot hold.

    A finite hyperparameter beyond the dtype's range (``lr=1e308`` for float32 parameters), or
    a step scalar that overflows although every hyperparameter is finite, would step the
    parameters to inf; ``torch.optim.SGD`` raises for it too. Raises ``ValueError`` naming the
    value; nothing has changed when it does. Returns whether the scalars were checked (every
    hyperparameter finite): whether :func:`check_scalars_fit` must check another step's
    scalars at the same hyperparameters.
    """
    if not dtype.is_floating_point:
        return False
    largest = largest_value(dtype)
    finite = True
    for name, value in hypers.items():
        if isinstance(value, float):
            if not math.isfinite(value):
                finite = False
            elif abs(value) > largest:
                raise ValueError(
                    f"{name}={value!r} does not fit in {dtype_name(dtype)} "
                    f"(largest {largest:.4g}): the step would overflow to inf; "
                    "nothing was updated"
                )
    if finite:
        check_scalars_fit(hypers, scalars, dtype)
    return finite


@cache
def largest_value(dtype: torch.dtype) -> float:
    """``torch.finfo(dtype).max``, kept (a counted rule's step checks its scalars against it
    every step, and ``finfo`` builds a new object each call)."""
    return float(torch.finfo(dtype).max)


def check_scalars_fit(
    hypers: Mapping[str, Any], scalars: Mapping[str, Any], dtype: torch.dtype
) -> None:
    """Refuse (``ValueError`` naming it) a step scalar that is not finite or does not fit in
    the floating ``dtype``, computed from finite ``hypers`` (see :func:`check_representable`)."""
    largest = largest_value(dtype)
    for name, value in scalars.items():
        if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= largest):
            raise ValueError(
                f"the step's scalar {name}={value!r}, computed from the "
                f"hyperparameters {dict(hypers)}, does not fit in {dtype_name(dtype)}: "
                "the step would overflow; nothing was updated"
            )


def describe(value: Any) -> str:
    """A value as messages describe it: a tensor's dtype, shape and device, else its type."""
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)} on {value.device}"
    return f"a {type(value).__name__}"


def _inside_storage(tensor: torch.Tensor) -> bool:
    """Whether every element of ``tensor`` lies inside its storage (offset, shape and strides
    against the storage's size): what an update through its address may write."""
    if tensor.numel() == 0:
        return True
    extent = 1 + sum(
        (size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True)
    )
    end = (tensor.storage_offset() + extent) * tensor.element_size()
    return end <= tensor.untyped_storage().nbytes()


def same_values(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two tuples of hyperparameter values are the same: equal numbers, flags and
    strings, identical other objects. A tensor counts as changed (its value may have been
    edited in place), so tensor hyperparameters are checked every step."""
    if len(a) != len(b):
        return False
    # The usual case, in C: the group holds the very objects checked before, none a tensor
    # (plain scalars told by exact type first: isinstance against Tensor is slower).
    if all(map(operator.is_, a, b)) and (
        all_plain(a) or not any(map(isinstance, a, repeat(torch.Tensor)))
    ):
        return True
    return all(
        x is y
        and not isinstance(x, torch.Tensor)
        or type(x) is type(y)
        and isinstance(x, int | float | str)
        and x == y
        for x, y in zip(a, b, strict=True)
    )


def check_counter(step: Any, label: Callable[[], str]) -> None:
    """Refuse a step counter no step can follow: not one number, or negative."""
    if not isinstance(step, torch.Tensor) or step.numel() != 1:
        raise ValueError(
            f"state['step'] of {label()} is {describe(step)}: expected a "
            "one-element tensor counting the steps taken; nothing was updated"
        )
    value = float(step)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(
            f"state['step'] of {label()} is {value:g}: expected a count of "
            "steps taken (>= 0); nothing was updated"
        )


def _real(tensor: torch.Tensor) -> torch.Tensor:
    """The values of a gradient as a real dense tensor (sparse: its stored values)."""
    if tensor.is_sparse:
        tensor = tensor.coalesce().values()
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def _by_device_and_dtype(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """``tensors`` split by device and dtype, in order."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    return list(groups.values())


def _any_nonfinite(tensors: list[torch.Tensor]) -> bool:
    """Whether any of these same-device tensors holds inf or NaN (one synchronization)."""
    if not tensors:
        return False
    device = tensors[0].device
    found = torch.zeros(1, device=device)
    if tensors[0].dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        # One fused pass per device and dtype: GradScaler's check, with a scale of exactly 1.
        torch._amp_foreach_non_finite_check_and_unscale_(
            tensors, found, torch.ones(1, device=device)
        )
        return bool(found.item())
    return any(not bool(torch.isfinite(t).all()) for t in tensors)


def step_dtype() -> torch.dtype:
    """The dtype ``torch.optim`` uses for step counters."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
