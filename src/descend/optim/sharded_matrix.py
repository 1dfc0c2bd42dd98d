"""A matrix stage on DTensor parameters: the whole-tensor parts on gathered tensors.

A rule with a :class:`~descend.rules.spec.MatrixStage` has elementwise parts (the stage's
``prepare``, the rule's ``update``), which commute with sharding and run on the local shards as
every elementwise rule does (:mod:`descend.optim.sharded`), and whole-tensor parts
(``statistics``, ``refresh``, ``function``), which need every element: Muon orthogonalizes the
whole matrix, Shampoo and SOAP contract the whole gradient with itself, PSGD-Kron fits its
factors to the whole momentum. For a DTensor parameter each rank therefore

1. gathers the whole ``u`` (and the whole ``g`` for a stage with matrix state, whose parts read
   it) from the local shards (``full_tensor``: an all-gather over the sharded mesh
   dimensions);
2. runs ``statistics``, ``refresh`` and ``function`` on the whole tensors, with the parameter's
   state seen through :class:`WholeState`: its matrix state (Kronecker factors, eigenbases,
   PSGD's ``Q``) is kept whole on every rank as plain tensors, and a slot the matrix parts read
   (SOAP's rotated second moment, PSGD's momentum) is gathered when first read and its own
   shard written back afterwards;
3. keeps its own shard of the result ``d`` for the elementwise update.

Every rank computes the same whole tensors from the same inputs in the same order, so the
shards agree with each other and the result is the single-process run's (PSGD-Kron's probes
are drawn from a generator seeded by the parameter's position and step, the same on every
rank). The gathers are collectives: every rank of the mesh calls ``step`` together (as FSDP2
does), and every rank meets the parameters in the same order (a list call is made of the
parameters that share a device, dtype and step count, which are the same on every rank). The
cost: each rank holds the whole matrix state (not a share of it) and does the whole
matrix work; the gathers move each parameter's ``u`` and ``g`` once per step.

A rank's state of a DTensor parameter holds its slots as DTensors sharded like the parameter
(its own shard of each; ``torch.distributed.checkpoint`` saves and loads them shard by shard)
and the matrix state whole, as plain tensors equal on every rank: ``state_dict`` and
``load_state_dict`` on each rank round-trip both, and ``torch.distributed.checkpoint`` treats
the plain tensors as replicated.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import torch

from descend.optim import sharded


def layout_of(param: torch.Tensor) -> Any:
    """What a stage's whole-tensor parts need to know of ``param``'s distribution: the
    DTensor parameter itself (its mesh, placements and global shape), or ``None`` for a plain
    tensor (nothing to gather)."""
    return param if sharded.is_dtensor(param) else None


def whole_parameter(param: torch.Tensor) -> torch.Tensor:
    """``param`` whole (detached): gathered from every rank's shard for a DTensor. The stage's
    ``matrices`` create the matrix state from it, so the state is whole and plain."""
    param = param.detach()
    if sharded.is_dtensor(param):
        return param.full_tensor()
    return param


def gather(layout: Any, shard: torch.Tensor) -> torch.Tensor:
    """The whole tensor of which ``shard`` is this rank's local shard, distributed as the
    DTensor ``layout`` is (every rank must call this together); ``shard`` itself for a
    ``None`` layout."""
    if layout is None:
        return shard
    from torch.distributed.tensor import DTensor

    distributed = DTensor.from_local(
        shard,
        layout.device_mesh,
        layout.placements,
        run_check=False,
        shape=layout.shape,
        stride=layout.stride(),
    )
    whole: torch.Tensor = distributed.full_tensor()
    return whole


def own_shard(layout: Any, whole: torch.Tensor) -> torch.Tensor:
    """This rank's shard of ``whole``, a tensor of the global shape of the DTensor ``layout``
    (equal on every rank: no communication); ``whole`` itself for a ``None`` layout."""
    if layout is None:
        return whole
    from torch.distributed.tensor import distribute_tensor

    distributed = distribute_tensor(
        whole, layout.device_mesh, layout.placements, src_data_rank=None
    )
    shard: torch.Tensor = distributed.to_local().contiguous()
    return shard


class WholeState(MutableMapping[str, Any]):
    """A parameter's state as a stage's whole-tensor parts see it: a DTensor entry (a slot,
    sharded like the parameter) is gathered whole when first read, and :meth:`scatter` writes
    each gathered entry's own shard back (the parts may change it in place or replace it);
    every other entry (step counters, the whole matrix state) is the state's own."""

    def __init__(self, state: MutableMapping[str, Any]) -> None:
        self.state = state
        #: The gathered entries, by key, whole.
        self.gathered: dict[str, torch.Tensor] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.gathered:
            return self.gathered[key]
        value = self.state[key]
        if sharded.is_dtensor(value):
            whole = value.full_tensor()
            self.gathered[key] = whole
            return whole
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self.gathered or sharded.is_dtensor(self.state.get(key)):
            self.gathered[key] = value
        else:
            self.state[key] = value

    def __delitem__(self, key: str) -> None:
        del self.state[key]
        self.gathered.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.state)

    def __len__(self) -> int:
        return len(self.state)

    def scatter(self) -> None:
        """Write this rank's shard of each gathered entry back into the state's DTensor."""
        for key, whole in self.gathered.items():
            target = self.state[key]
            shard = sharded.local(target)
            shard.copy_(own_shard(target, whole.to(shard.dtype)))
        self.gathered.clear()


def state_view(layout: Any, state: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``state`` as the whole-tensor parts see it: a :class:`WholeState` for a DTensor
    parameter (``layout`` not ``None``), the state itself otherwise."""
    return state if layout is None else WholeState(state)


def scatter(state: MutableMapping[str, Any]) -> None:
    """After the whole-tensor parts: write back the gathered entries of a :func:`state_view`
    (nothing for a plain parameter's state)."""
    if isinstance(state, WholeState):
        state.scatter()
