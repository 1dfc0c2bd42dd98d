"""DTensor parameters (FSDP2's ``fully_shard``, tensor parallelism): each rule on local shards.

An elementwise update rule commutes with sharding: updating every shard of a parameter, with the
matching shards of its gradient and state, is updating the whole parameter. So descend's
executors run the rule on each DTensor's *local* tensor (``_local_tensor``: the same object on
every read, where ``to_local()`` may return a new one) and never on the DTensor wrapper, whose
``data_ptr()`` is not its elements' address. State slots are created from the parameter and so
are DTensors with its mesh and placements, as ``torch.optim``'s state is under FSDP2: a state
dict saves and loads shard by shard with ``torch.distributed.checkpoint``. Step counters are
plain tensors, as in ``torch.optim``.

A rule with a matrix stage (Muon, Shampoo, SOAP, PSGD-Kron, MARS) runs its elementwise parts
this way too, and its whole-tensor parts on whole tensors gathered from the shards
(:mod:`descend.optim.sharded_matrix`).

What cannot be run this way is refused with a ``ValueError`` naming the parameter, before
anything changes:

- a parameter with a ``Partial`` placement: its value is a pending sum of the local tensors,
  which no update of the pieces can follow;
- a gradient or a state tensor that is not a DTensor with its parameter's mesh and placements
  (a plain tensor of the global shape would be walked against a shard; torch refuses the mix
  as well), and a plain parameter with a DTensor gradient or state.

The non-finite guard checks the local shards and then agrees across ranks: its flags are
reduced (maximum) over every dimension of each mesh the gradients live on, so that with
``nonfinite="skip"`` or ``"raise"`` every rank of the mesh skips or raises together (one rank
skipping while another steps would make the shards of one parameter disagree). Every rank of
those meshes must therefore call ``step`` together, as FSDP2 and tensor parallelism do anyway.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

import torch

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor


def _dtensor_class() -> type[DTensor] | None:
    """``DTensor``, if anything has imported it (else no tensor can be one, and importing
    ``torch.distributed.tensor`` here would only slow down ``import descend``)."""
    module = sys.modules.get("torch.distributed.tensor._api")
    if module is None:
        return None
    dtensor: type[DTensor] = module.DTensor
    return dtensor


def is_dtensor(tensor: object) -> TypeGuard[DTensor]:
    """Whether ``tensor`` is a DTensor (a distributed tensor's local wrapper)."""
    cls = _dtensor_class()
    return cls is not None and isinstance(tensor, cls)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (the stable ``_local_tensor``); any other tensor itself."""
    cls = _dtensor_class()
    if cls is not None and isinstance(tensor, cls):
        return tensor._local_tensor
    return tensor


def local_tensors(tensors: Sequence[Any]) -> list[Any]:
    """:func:`local` of each tensor (``None`` stays ``None``)."""
    cls = _dtensor_class()
    if cls is None:
        return list(tensors)
    return [t._local_tensor if isinstance(t, cls) else t for t in tensors]


def any_dtensor(tensors: Sequence[Any]) -> bool:
    """Whether any of these is a DTensor."""
    cls = _dtensor_class()
    if cls is None:
        return False
    # By the distinct types (usually one), not tensor by tensor: this runs every step. Plain
    # tensors (the usual gradients) need no subclass test.
    kinds = set(map(type, tensors))
    kinds.discard(torch.Tensor)
    return bool(kinds) and any(issubclass(kind, cls) for kind in kinds)


def describe(tensor: Any) -> str:
    """How messages name a tensor's distribution."""
    if is_dtensor(tensor):
        return (
            f"a DTensor with placements {tuple(tensor.placements)} on a mesh of shape "
            f"{tuple(tensor.device_mesh.shape)}"
        )
    return "a plain (not distributed) tensor"


def _same_distribution(a: Any, b: Any) -> bool:
    """Whether two DTensors (or two plain tensors) are distributed alike."""
    a_is, b_is = is_dtensor(a), is_dtensor(b)
    if not (a_is or b_is):
        return True
    if a_is != b_is or tuple(a.placements) != tuple(b.placements):
        return False
    return a.device_mesh is b.device_mesh or a.device_mesh == b.device_mesh


def check_parameter(param: torch.Tensor, where: str) -> None:
    """Refuse a DTensor parameter the executors cannot step shard by shard (a ``Partial``
    placement): ``ValueError`` naming ``where``; nothing for a plain tensor."""
    if not is_dtensor(param):
        return
    placements = tuple(param.placements)
    if any(placement.is_partial() for placement in placements):
        raise ValueError(
            f"{where} (shape {tuple(param.shape)}) is a DTensor with placements "
            f"{placements}: a Partial placement holds a pending sum, which no "
            "update of its pieces can follow; expected Shard or Replicate "
            "placements (redistribute the parameter)"
        )


def check_state(
    tensor: torch.Tensor,
    param: torch.Tensor,
    name: str,
    label: Callable[[torch.Tensor], str],
    loading: bool = False,
) -> None:
    """Refuse a state tensor distributed unlike its parameter (``ValueError`` naming both)."""
    if _same_distribution(tensor, param):
        return
    if loading:
        raise ValueError(
            f"the state dict's {name!r} for {label(param)} is {describe(tensor)}, but the "
            f"parameter is {describe(param)}: expected the same distribution (load a sharded "
            "model's optimizer state with torch.distributed.checkpoint.state_dict."
            "set_optimizer_state_dict); nothing was loaded"
        )
    raise ValueError(
        f"state[{name!r}] of {label(param)} is {describe(tensor)}, but the parameter is "
        f"{describe(param)}: expected the same distribution (a state dict of an unsharded "
        "model?); nothing was updated"
    )


def check_gradient(
    param: torch.Tensor, grad: torch.Tensor, label: Callable[[torch.Tensor], str]
) -> None:
    """Refuse a gradient distributed unlike its parameter (``ValueError`` naming it)."""
    if not _same_distribution(grad, param):
        raise ValueError(
            f"the gradient of {label(param)} is {describe(grad)}, but the parameter is "
            f"{describe(param)}: expected the same distribution (redistribute the gradient "
            "to the parameter's placements); nothing was updated"
        )


def local_gradients(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    label: Callable[[torch.Tensor], str],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The local shards of parameters and their gradients, each gradient first checked to be
    distributed like its parameter with the same global shape and dtype."""
    cls = _dtensor_class()
    for param, grad in zip(params, grads, strict=True):
        if cls is not None and isinstance(param, cls) and isinstance(grad, cls):
            # The common case, every step: compare the specs (a DTensor's own properties,
            # shape included, cost ten times more, and a mesh comparison more still).
            # (A DTensor's spec always has its tensor_meta; without one, check in full.)
            ours, theirs = param._spec, grad._spec
            our_meta, their_meta = ours.tensor_meta, theirs.tensor_meta
            if (
                ours.mesh is theirs.mesh
                and (ours.placements is theirs.placements or ours.placements == theirs.placements)
                and our_meta is not None
                and their_meta is not None
                and our_meta.shape == their_meta.shape
                and our_meta.dtype == their_meta.dtype
            ):
                continue
        check_gradient(param, grad, label)
        if grad.shape != param.shape or grad.dtype != param.dtype:
            raise ValueError(
                f"the gradient of {label(param)} is {grad.dtype} of shape "
                f"{tuple(grad.shape)}, but the parameter is {param.dtype} of shape "
                f"{tuple(param.shape)}: expected the same dtype and shape; nothing was updated"
            )
    return local_tensors(params), local_tensors(grads)


def local_operands(
    param: torch.Tensor,
    grad: torch.Tensor,
    slots: Sequence[torch.Tensor | None],
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None]]:
    """A parameter, its gradient and its slots as local shards (checked when prepared)."""
    if _dtensor_class() is None:
        return param, grad, list(slots)
    return local(param), local(grad), local_tensors(slots)


def agree(flags: list[bool], tensors: Sequence[Any]) -> list[bool]:
    """``flags`` OR-ed over every rank of each mesh that a DTensor among ``tensors`` lives on
    (one all-reduce per mesh dimension); unchanged when none is a DTensor."""
    cls = _dtensor_class()
    if cls is None:
        return flags
    meshes: list[Any] = []
    for tensor in tensors:
        if isinstance(tensor, cls):
            mesh = tensor.device_mesh
            if not any(mesh is seen or mesh == seen for seen in meshes):
                meshes.append(mesh)
    if not meshes:
        return flags
    import torch.distributed as dist

    reduced = flags
    for mesh in meshes:
        found = torch.tensor(reduced, dtype=torch.float32, device=mesh.device_type)
        for dim in range(mesh.ndim):
            dist.all_reduce(found, op=dist.ReduceOp.MAX, group=mesh.get_group(dim))
        reduced = [bool(value) for value in found.tolist()]
    return reduced
