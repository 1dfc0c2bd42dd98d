"""What a param group keeps between steps: one plan per group, one launch per block.

A :class:`GroupPlan` splits the parameters of one group in two. Those a compiled executor can
walk as flat arrays go into :class:`~descend.optim.block.Block` s, one per executor, dtype and
device: an address table and one kernel launch per step. The others are *listed*: stepped
through the executors' list calls (:mod:`descend.optim.listed`): complex parameters (as real
views), sparse gradients (entries only), rules with a matrix stage, differentiable steps and
every parameter of a backend that compiles nothing. A plan with no block is how the reference
executor runs: every step of every optimizer goes through a plan.

A bf16 weight under ``param_precision`` whose step a kernel takes whole
(:func:`~descend.optim.weights.compiled_executor`) goes into a block of its own weight format,
stepped in float32 (the block's dtype) from bf16 storage; the other bf16 weights were swapped
to float32 masters around the step and are planned as float32 parameters.

A plan is a promise about memory, so every step, before anything changes, it checks that each
block still describes its tensors (see :mod:`descend.optim.block`). A parameter or state tensor
that changed makes the optimizer build a new plan (whose construction checks the state against
the parameters, refuses elements that share memory, and raises naming the parameter when they
disagree); a gradient of another shape, dtype or device raises, naming the parameter; a
gradient laid out unlike its parameter is copied into the parameter's layout.

A step is worked out before it is taken (:meth:`GroupPlan.stage`): new counters, running
products (a :class:`~descend.kernels.state.StepState` per block), scalars and kernels (compiled
if missing) are computed without changing anything, so that an error on the way (a kernel that
cannot be compiled, a scalar the dtype cannot hold) leaves every counter, parameter and state
tensor as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import torch

from descend.kernels.coded import storage_names
from descend.kernels.executor import Executor
from descend.kernels.state import StepKey
from descend.kernels.table import flat_compatible
from descend.kernels.variant import Variant, runtime_row, variant_holds, variant_of
from descend.optim import sharded
from descend.optim.block import Block, LaunchRow
from descend.optim.checks import Label, check_representable, check_scalars_fit, identical
from descend.optim.precision import BlockCoding
from descend.optim.watch import DictVersions
from descend.optim.weights import CORRECTION_KEY, compiled_executor
from descend.rules.hyper import plain_values
from descend.rules.spec import Rule

#: Returned by :meth:`GroupPlan.prepare` when the plan no longer describes the group.
STALE = None


class Prepared(NamedTuple):
    """A step of a plan, checked (:meth:`GroupPlan.prepare`): the blocks it launches, the
    tensors of each (``None``: all), their gradients' addresses, the listed parameters (the
    caller's to step) and gradient copies kept alive until the kernels ran."""

    blocks: list[Block]
    selections: list[np.ndarray | None]
    gathered: list[list[int] | np.ndarray]
    listed: list[torch.Tensor]
    keep_alive: list[torch.Tensor]


class GroupPlan:
    """The plan of one param group: its compiled blocks and its listed parameters (see
    the module docstring)."""

    def __init__(
        self,
        group: dict[str, Any],
        optimizer_state: Mapping[Any, Any],
        rule: Rule,
        hypers: Mapping[str, Any],
        step_dtype: torch.dtype,
        executor_of: Callable[[torch.Tensor], Executor | None],
        first: set[int],
        wait_for_kernels: bool = True,
        compiled: bool = True,
        coding: BlockCoding | None = None,
    ) -> None:
        self.group = group
        self.rule = rule
        #: Whether a step waits for a kernel to load or compile; if not, it runs on the
        #: reference executor meanwhile (``backend="auto"``).
        self.wait_for_kernels = wait_for_kernels
        self.active = tuple(slot.active(hypers) for slot in rule.slots)
        slot_names = [slot.name for slot, on in zip(rule.slots, self.active, strict=True) if on]
        by_kind: dict[tuple[Any, ...], tuple[list[torch.Tensor], list[dict[str, Any]]]] = {}
        #: The storage format of each slot of the parameters of a kind (see
        #: :mod:`descend.optim.precision`), and the state keys its kernel walks.
        kind_formats: dict[tuple[Any, ...], tuple[tuple[str, ...], list[str]]] = {}
        executors: dict[tuple[Any, ...], Executor] = {}
        #: Parameters with state that no compiled executor walks directly.
        self.leftover: set[int] = set()
        needed = [
            *slot_names,
            *(["step"] if rule.counts_steps else []),
            *(product.name for product in rule.products),
        ]
        for param in group["params"]:
            if (
                not compiled
                or param.is_complex()
                or (param.grad is not None and param.grad.is_sparse)
            ):
                # Stepped as real views or sparse entries, through the executors' list calls.
                self.leftover.add(id(param))
                continue
            state = optimizer_state.get(param) or {}
            if needed and any(name not in state for name in needed):
                continue
            executor = executor_of(param)
            weights = ""
            if coding is not None and param.dtype == torch.bfloat16:
                by_kernel = compiled_executor(coding.optimizer, group, param)
                if by_kernel is not None:
                    executor, weights = by_kernel, str(coding.optimizer._weights.request)
            formats = coding.formats(param, rule, self.active) if coding is not None else ()
            coded = any(name != "float32" for name in formats)
            names = slot_names
            if coded:
                names = [
                    name
                    for slot, on, format in zip(rule.slots, self.active, formats, strict=True)
                    if on
                    for name in storage_names(slot.name, format)
                ]
                if any(name not in state for name in names):
                    self.leftover.add(id(param))
                    continue
            tensors = [param, *(state[name] for name in names)]
            if weights == "bf16+ecc":
                tensors.append(state[CORRECTION_KEY])
            if (
                executor is not None
                and executor.compiled
                and (not coded or (executor.codecs and param.is_contiguous()))
                and (not weights or executor.weights)
                and flat_compatible(sharded.local_tensors(tensors))
            ):
                # One block (one address table, one launch) never spans two devices, nor
                # running products held in two dtypes, nor two storage formats.
                products = tuple(state[product.name].dtype for product in rule.products)
                kind = (
                    executor.name,
                    param.dtype,
                    param.device,
                    products,
                    formats * coded,
                    weights,
                )
                kind_formats[kind] = (formats * coded, names)
                executors[kind] = executor
                params, states = by_kind.setdefault(kind, ([], []))
                params.append(param)
                states.append(state)
            elif weights:
                # The swap left this weight to a kernel: no other path may step its bf16 bits.
                raise RuntimeError(
                    f"a bf16 weight of shape {tuple(param.shape)} was left to a kernel that "
                    "cannot walk it with its state; nothing was updated"
                )
            else:
                self.leftover.add(id(param))
        self.blocks = [
            Block(
                executors[kind],
                rule,
                params,
                states,
                kind_formats[kind][1],
                step_dtype,
                [id(p) in first for p in params],
                kind_formats[kind][0],
                coding,
                kind[-1],
            )
            for kind, (params, states) in by_kind.items()
        ]
        self.where = {
            id(p): (b, k) for b, block in enumerate(self.blocks) for k, p in enumerate(block.params)
        }
        self.only_block = self.blocks[0].params if len(self.blocks) == 1 else None
        self.state_values = list(optimizer_state.values())
        self.state_version = DictVersions([optimizer_state])
        self._rows: dict[tuple[Any, ...], LaunchRow] = {}
        #: The last kernel, variant and representability check (whether its scalars need
        #: checking) of each setting and block kind, whatever the step.
        self._kernels: dict[tuple[Any, ...], tuple[Any, Variant, bool]] = {}
        #: Whether bf16 weights may be left to kernels by the swap (``param_precision``).
        self.weights = coding is not None and coding.optimizer._weights.request is not None

    def _kernel_weight(self, param: torch.Tensor) -> bool:
        """Whether ``param`` is a bf16 weight the swap left to a kernel (during a step every
        other bf16 weight is a float32 master): a listed parameter that must be planned
        again, into a block of weights."""
        return self.weights and param.dtype == torch.bfloat16

    def covers(self, group: dict[str, Any], hypers: Mapping[str, Any]) -> bool:
        """Whether the plan was made for this group under these hyperparameters' slots."""
        return (
            group is self.group
            and tuple(slot.active(hypers) for slot in self.rule.slots) == self.active
        )

    def prepare(
        self,
        params: list[torch.Tensor],
        optimizer_state: Mapping[Any, Any],
        label: Label,
        grads: list[torch.Tensor] | None = None,
    ) -> Prepared | None:
        """Check everything the kernels will touch for ``params`` (each has a gradient:
        ``grads``, read from them if not given) and return what :meth:`stage` needs, or
        :data:`STALE` if the plan must be rebuilt.

        Changes nothing; raises ``ValueError`` naming a parameter whose gradient is unusable.
        """
        if grads is None:
            grads = [param.grad for param in params]  # type: ignore[misc]
        only = self.only_block
        if only is not None and identical(params, only):
            blocks = self.blocks
            selections: list[np.ndarray | None] = [None]
            block_grads = [grads]
            leftovers: list[torch.Tensor] = []
        else:
            chosen: list[list[int]] = [[] for _ in self.blocks]
            chosen_grads: list[list[torch.Tensor]] = [[] for _ in self.blocks]
            leftovers = []
            for param, grad in zip(params, grads, strict=True):
                place = self.where.get(id(param))
                if place is not None:
                    chosen[place[0]].append(place[1])
                    chosen_grads[place[0]].append(grad)
                elif id(param) in self.leftover and not self._kernel_weight(param):
                    leftovers.append(param)
                else:
                    return STALE
            kept = [i for i, c in enumerate(chosen) if c]
            blocks = [self.blocks[i] for i in kept]
            block_grads = [chosen_grads[i] for i in kept]
            selections = [
                None
                if len(chosen[i]) == len(self.blocks[i].params)
                else np.asarray(chosen[i], dtype=np.int64)
                for i in kept
            ]
        # A state dict replaced, added or removed shows in the optimizer state's values (read
        # without hashing tensors, which is slow), and not at all while its version holds.
        if self.state_version.dicts[0] is not optimizer_state:  # ``optimizer.state`` reassigned
            self.state_version = DictVersions([optimizer_state])
        if not self.state_version.holds(
            lambda: identical(list(optimizer_state.values()), self.state_values)
        ) or not all(block.current() for block in blocks):
            return STALE
        keep_alive: list[torch.Tensor] = []
        gathered = [
            block.gradients(selection, keep_alive, label, block_grad)
            for block, selection, block_grad in zip(blocks, selections, block_grads, strict=True)
        ]
        addresses = [found for found in gathered if found is not None]
        if len(addresses) != len(gathered):
            return STALE
        return Prepared(blocks, selections, addresses, leftovers, keep_alive)

    def stage(
        self, prepared: Prepared, hypers: Mapping[str, Any], cautious: bool = False
    ) -> Callable[[], None]:
        """Work out the step of the planned parameters without changing anything (see
        :meth:`Block.stage`); return the function that performs it. The listed parameters
        (``prepared.listed``) are the caller's to step. With ``cautious`` each block's step is
        cautious (:mod:`descend.kernels.caution`): in the rule's own kernels where its
        executor fuses caution and its slots are not compressed."""
        blocks, selections, gathered, _, keep_alive = prepared
        plain = plain_values(hypers)
        key = (*plain.values(), cautious)

        def launch_row(block: Block, step_key: StepKey) -> LaunchRow:
            """The kernel, variant, (1, n) run-time scalar row and scalars of one step (and
            running products) of a block, cached: a rule that does not count steps, or a run
            at a constant setting, computes them once. The kernel is ``None`` while it loads
            in the background (then nothing is cached)."""
            cached = self._rows.get((key, step_key, block.kind))
            if cached is None:
                if len(self._rows) > 256:
                    self._rows.clear()
                step = step_key[0]
                scalars = self.rule.scalars(block.step_state.values(hypers, step_key), step)
                # Another step at these settings (a counted rule's next step) usually runs the
                # kernel of the one before: only its own scalars need checking.
                known = self._kernels.get((key, block.kind))
                if known is not None and variant_holds(known[1], self.rule, scalars):
                    kernel, variant, checked = known
                    if checked:
                        check_scalars_fit(plain, scalars, block.dtype)
                    row = np.asarray([runtime_row(variant, scalars)], dtype=np.float64)
                    reused: LaunchRow = (kernel, variant, row, scalars)
                    self._rows[key, step_key, block.kind] = reused
                    return reused
                checked = check_representable(plain, scalars, block.dtype)
                variant = variant_of(self.rule, scalars, block.dtype_name, self.active)
                if block.formats or block.weights:
                    variant = replace(variant, formats=block.formats, weights=block.weights)
                row = np.asarray([runtime_row(variant, scalars)], dtype=np.float64)
                executor = block.executor
                if (
                    cautious
                    and executor.fuses_caution
                    and (not variant.coded or (variant.weights and executor.fuses_weight_caution))
                ):
                    kernel = block.executor.cautious_kernels(
                        self.rule, variant, self.wait_for_kernels
                    )
                elif self.wait_for_kernels:
                    kernel = block.executor.kernel(self.rule, variant)
                else:
                    kernel = block.executor.kernel_if_ready(self.rule, variant)
                made: LaunchRow = (kernel, variant, row, scalars)
                if kernel is not None:
                    self._rows[key, step_key, block.kind] = made
                    if len(self._kernels) > 64:
                        self._kernels.clear()
                    self._kernels[key, block.kind] = (kernel, variant, checked)
                return made
            return cached

        for executor in {block.executor for block in blocks}:
            executor.check_ready()
        commits = [
            block.stage(self.rule, launch_row, selection, addresses, plain, cautious)
            for block, selection, addresses in zip(blocks, selections, gathered, strict=True)
        ]

        def run() -> None:
            for commit in commits:
                commit()
            keep_alive.clear()

        return run
