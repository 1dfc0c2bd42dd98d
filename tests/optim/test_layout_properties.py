"""Property test: whatever layout a parameter has and whatever a user does between steps,
descend computes torch.optim's numbers, or raises where torch raises, or refuses with a clear
error before it changes anything.

Each draw builds two identical runs, one on a descend class and one on its ``torch.optim``
counterpart (both found through the registry: :data:`descend.rules.RULES`, each class's
``torch_equivalent`` and :data:`descend.testing.OPTION_GRID`), on one of descend's CPU backends.
The first parameter has the *layout* under test (a strided view, a transposed or channels-last
tensor, an expanded one whose elements overlap, a view at a storage offset, zero-size, 0-d,
complex, or a sparse gradient or parameter); after a few steps one *mutation* is applied to both
runs (new ``p.data``, an in-place layout change, a transposed state tensor, a parameter listed
twice, a new group, a bad group value, a loaded checkpoint, a bad step counter), then a few more
steps. Every call through the optimizers must give one of:

- the same numbers as torch for every parameter and state tensor (``torch.testing``'s default
  tolerance for the dtype),
- an exception from both,
- an exception from descend alone, of type ``ValueError``, ``RuntimeError`` or ``TypeError``,
  whose message names what is wrong, with every parameter and state tensor bit for bit as it
  was before the call (a refusal, not a half-done step).

Each layout and each mutation is its own test case (select one with ``-k``, e.g.
``-k "mutation and data_t"``). Draws that hit a bug known to be open (:data:`KNOWN_BUGS`) are
left out of those cases and run in ``test_known_bug`` instead, marked ``xfail`` so they report
XPASS once fixed; a known crash (memory corruption on the fused executor) runs in a child
process, so the test process survives it.

Profiles: by default about 250 draws in all (CI); ``DESCEND_LONG_PROPERTIES=1`` runs 10,000.
Draws are derandomized, so a CI failure reproduces locally. ``DESCEND_PROPERTIES_LOG=<file>``
appends each draw to the file before it runs (to find the draw that killed a process).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from descend.optim import optimizer_classes
from descend.rules import RULES
from descend.testing import OPTION_GRID, option_combinations

LONG = os.environ.get("DESCEND_LONG_PROPERTIES") == "1"
#: Draws over all categories: CI-sized by default, 10,000 in the long profile.
TOTAL_DRAWS = 10_000 if LONG else 250
CHILD = os.environ.get("DESCEND_PROPERTIES_CHILD") == "1"
LOG = os.environ.get("DESCEND_PROPERTIES_LOG")
#: Triton runs only through its interpreter on CPU, too slow for thousands of draws.
BACKENDS = ["reference", "fused", "auto"]
#: torch.testing.assert_close's default tolerances (rtol, atol), by dtype.
TOLERANCES = {
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
    torch.complex64: (1.3e-6, 1e-5),
    torch.complex128: (1e-7, 1e-7),
}
#: What a clear refusal may be.
CLEAR_ERRORS = (ValueError, RuntimeError, TypeError)
#: Messages that describe Python's or torch's internals, not the user's mistake.
UNCLEAR_MESSAGES = (
    "object has no attribute",
    "unsupported operand type",
    "object is not",
    "can't multiply sequence",
    "cannot be converted to Scalar",
    "must be real number",
    "not supported between instances",
    "could not convert string",
    "argument must be",
    "takes no arguments",
)


# -- the optimizers, from the registry --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pair:
    """A descend class and the torch.optim class that computes its iterates."""

    name: str
    ours: type
    theirs: type
    #: Every option set both are held to (descend's keyword arguments).
    options: tuple[tuple[tuple[str, Any], ...], ...]
    #: Arguments only torch's class needs (``torch_equivalent``'s second part).
    extras: tuple[tuple[str, Any], ...]
    #: A drop-in class takes torch's arguments and keeps torch's iterates when lr changes.
    drop_in: bool


def _resolve(dotted: str) -> type | None:
    module, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attribute, None)


def _shared_defaults(ours: type, theirs: type) -> dict[str, Any]:
    """The hyperparameters both constructors take, at descend's defaults (for a class without
    an entry in OPTION_GRID)."""
    skip = {"self", "params", "foreach", "fused", "differentiable", "capturable"}
    their_names = set(inspect.signature(theirs.__init__).parameters)
    return {
        name: parameter.default
        for name, parameter in inspect.signature(ours.__init__).parameters.items()
        if name in their_names
        and name not in skip
        and parameter.default is not inspect.Parameter.empty
    }


def _pairs() -> list[Pair]:
    classes = optimizer_classes()
    pairs = []
    for rule in RULES.values():
        ours = classes.get(rule.name)
        if ours is None or ours.torch_equivalent is None:
            continue
        dotted, extras = ours.torch_equivalent
        theirs = _resolve(dotted)
        if theirs is None:
            continue
        drop_in = dotted == f"torch.optim.{ours.__name__}"
        if drop_in and ours.__name__ in OPTION_GRID:
            options = option_combinations(ours.__name__)
        else:
            options = [_shared_defaults(ours, theirs)]
        pairs.append(
            Pair(
                ours.__name__,
                ours,
                theirs,
                tuple(tuple(sorted(o.items())) for o in options),
                tuple(sorted(extras.items())),
                drop_in,
            )
        )
    return pairs


PAIRS = _pairs()


# -- layouts ----------------------------------------------------------------------------------


def _shape(dims: tuple[int, int], low: int = 1) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(low, 5), min_size=dims[0], max_size=dims[1]).map(tuple)


#: Layout name -> the shapes it is drawn with.
LAYOUT_SHAPES: dict[str, st.SearchStrategy] = {
    "contiguous": _shape((1, 3)),
    "strided": _shape((1, 3)),  # base[..., 0]
    "transposed": _shape((2, 3), low=2),
    "channels_last": st.tuples(
        st.integers(1, 2), st.integers(2, 3), st.integers(1, 3), st.integers(2, 3)
    ),
    "expanded": st.tuples(st.integers(2, 3), st.integers(1, 4)),
    "zero_size": st.sampled_from([(0,), (3, 0), (0, 2, 2)]),
    "zero_d": st.just(()),
    "offset": _shape((1, 2)),
    "complex": _shape((1, 2)),
    "complex_transposed": _shape((2, 2), low=2),
    "sparse_grad": _shape((1, 2)),
    "sparse_param": _shape((1, 2)),
}
LAYOUTS = list(LAYOUT_SHAPES)
#: Layouts a square matrix can have (mutations that transpose need one).
SQUARE_LAYOUTS = ["contiguous", "strided", "transposed", "offset"]


def build(layout: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """A leaf parameter of this layout and shape with reproducible values."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*size: int, kind: torch.dtype = dtype) -> torch.Tensor:
        return torch.randn(size, dtype=kind, generator=generator)

    if layout == "strided":
        tensor = randn(*shape, 2)[..., 0]
    elif layout in ("transposed", "complex_transposed"):
        kind = _complex(dtype) if layout == "complex_transposed" else dtype
        order = list(range(len(shape)))[::-1]
        tensor = randn(*shape[::-1], kind=kind).permute(order)
    elif layout == "channels_last":
        tensor = randn(*shape).contiguous(memory_format=torch.channels_last)
    elif layout == "expanded":
        tensor = randn(1, shape[1]).expand(shape)
    elif layout == "offset":
        count = math.prod(shape)
        tensor = randn(count + 3)[3:].view(shape)
    elif layout == "complex":
        tensor = randn(*shape, kind=_complex(dtype))
    elif layout == "sparse_param":
        return randn(*shape).to_sparse().requires_grad_()
    else:
        tensor = randn(*shape)
    return torch.nn.Parameter(tensor)


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex64 if dtype == torch.float32 else torch.complex128


def sparse_layout(layout: str) -> bool:
    return layout in ("sparse_grad", "sparse_param")


# -- mutations --------------------------------------------------------------------------------

#: Values a group entry is edited to (the constructor refuses them all).
BAD_VALUES = [math.nan, math.inf, -1.0, None, "abc"]
#: Mutation name -> whether the first parameter must be a square matrix.
MUTATIONS = {
    "none": False,
    "replace_data_same_layout": False,
    "replace_data_transposed": True,
    "replace_data_expanded": True,
    "p_t_": True,
    "data_t": True,
    "as_strided_": True,
    "state_t_": True,
    "state_overlap": True,
    "grad_transposed": True,
    "duplicate_param": False,
    "add_group": False,
    "lr_change": False,
    "edit_group": False,
    "load_torch_checkpoint": False,
    "load_own_checkpoint": False,
    "load_bad_checkpoint": False,
    "step_minus_one": False,
    "step_two_elements": False,
}
#: Mutations whose torch run is comparable only for a drop-in class (same state keys, and
#: iterates that follow torch's when lr changes).
DROP_IN_MUTATIONS = {"lr_change", "load_torch_checkpoint", "edit_group", "load_bad_checkpoint"}


@dataclasses.dataclass
class Scenario:
    """One draw: everything a run depends on (its repr is the falsifying example)."""

    optimizer: str
    options: dict[str, Any]
    backend: str
    dtype: torch.dtype
    layouts: list[tuple[str, tuple[int, ...]]]
    mutation: str
    argument: Any
    steps_before: int
    steps_after: int
    seed: int

    @property
    def pair(self) -> Pair:
        return next(pair for pair in PAIRS if pair.name == self.optimizer)


@st.composite
def scenarios(
    draw,
    layouts: list[str],
    mutations: list[str],
    extra_layouts: list[str],
    pairs: list[Pair] = PAIRS,
    backends: list[str] = BACKENDS,
    options: Callable[[dict], bool] = lambda options: True,
) -> Scenario:
    """A scenario whose first parameter has one of ``layouts`` and whose mutation is one of
    ``mutations``; further parameters take ``extra_layouts``."""
    mutation = draw(st.sampled_from(mutations))
    pair = draw(
        st.sampled_from(
            [pair for pair in pairs if pair.drop_in or mutation not in DROP_IN_MUTATIONS]
        )
    )
    choices = [dict(o) for o in pair.options if options(dict(o))]
    assume(choices)
    chosen = draw(st.sampled_from(choices))
    if MUTATIONS[mutation]:
        square = [layout for layout in layouts if layout in SQUARE_LAYOUTS]
        assume(square)
        size = draw(st.integers(2, 4))
        first = (draw(st.sampled_from(square)), (size, size))
    else:
        layout = draw(st.sampled_from(layouts))
        first = (layout, draw(LAYOUT_SHAPES[layout]))
    extras = draw(st.lists(st.sampled_from(extra_layouts), max_size=2))
    more = [(layout, draw(LAYOUT_SHAPES[layout])) for layout in extras]
    argument = None
    if mutation in ("edit_group", "load_bad_checkpoint"):
        keys = [key for key, _ in pair.options[0] if key != "lr"] + ["lr", "eps", "betas"]
        argument = (draw(st.sampled_from(keys)), draw(st.sampled_from(BAD_VALUES)))
    elif mutation == "add_group":
        layout = draw(st.sampled_from(extra_layouts))
        argument = (layout, draw(LAYOUT_SHAPES[layout]))
    elif mutation == "as_strided_":
        argument = draw(st.sampled_from(["swap", "shrink"]))
    return Scenario(
        pair.name,
        chosen,
        draw(st.sampled_from(backends)),
        draw(st.sampled_from([torch.float32, torch.float64])),
        [first, *more],
        mutation,
        argument,
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
        draw(st.integers(0, 2**16)),
    )


# -- running a scenario -----------------------------------------------------------------------


class Refused(Exception):
    """descend refused a call cleanly (or both refused): the draw ends there."""


def dense(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach()
    return tensor.to_dense() if tensor.is_sparse else tensor


def fingerprint(value: Any) -> Any:
    """Bits, shape and strides of a tensor (a comparable copy of anything else)."""
    if not isinstance(value, torch.Tensor):
        return repr(value)
    tensor = dense(value)
    bits = torch.empty(tensor.numel(), dtype=tensor.dtype).copy_(tensor.reshape(-1))
    if bits.numel():
        bits = bits.view(torch.uint8)
    return (tuple(tensor.shape), tensor.stride(), tensor.dtype, bits)


def snapshot(optimizer: torch.optim.Optimizer) -> list:
    """Every parameter and state value of the optimizer, to show that nothing changed."""
    seen, result = set(), []
    for group in optimizer.param_groups:
        for param in group["params"]:
            if id(param) in seen:
                continue
            seen.add(id(param))
            result.append(("param", fingerprint(param)))
            for key, value in sorted(optimizer.state.get(param, {}).items()):
                result.append((key, fingerprint(value)))
    return result


def same_snapshot(before: list, after: list) -> bool:
    if len(before) != len(after):
        return False
    for (key_a, a), (key_b, b) in zip(before, after, strict=True):
        if key_a != key_b or type(a) is not type(b):
            return False
        if isinstance(a, tuple):
            if a[:3] != b[:3] or not torch.equal(a[3], b[3]):
                return False
        elif a != b:
            return False
    return True


def clear(error: BaseException, names: list[str]) -> bool:
    """Whether an error is a clear refusal: an allowed type, and a message that names what is
    wrong (a parameter, its state, a group or one of the optimizer's options) in the user's
    terms rather than Python's or torch's internals."""
    message = str(error)
    named = any(word in message for word in ("param", "state", "group", "gradient", *names))
    return (
        isinstance(error, CLEAR_ERRORS)
        and named
        and not any(text in message for text in UNCLEAR_MESSAGES)
    )


class Run:
    """The two optimizers of a scenario, stepped and changed side by side."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        pair = scenario.pair
        self.ours_params, self.their_params = [], []
        for index, (layout, shape) in enumerate(scenario.layouts):
            self.add(layout, shape, scenario.seed + 101 * index)
        self.generator = torch.Generator().manual_seed(scenario.seed + 7)
        self.grad_transposed = False
        self.ours = self.call(
            "construct",
            lambda: pair.ours(self.ours_params, backend=scenario.backend, **scenario.options),
            lambda: pair.theirs(self.their_params, **scenario.options, **dict(pair.extras)),
            guarded=False,
        )

    def add(self, layout: str, shape: tuple[int, ...], seed: int) -> None:
        for params in (self.ours_params, self.their_params):
            params.append(build(layout, shape, self.scenario.dtype, seed))

    def call(
        self, what: str, ours: Callable[[], Any], theirs: Callable[[], Any], guarded: bool = True
    ) -> Any:
        """Do one thing to both runs; raise :class:`Refused` when the draw ends there, and
        ``AssertionError`` when descend breaks its promise."""
        before = snapshot(self.ours) if guarded else None
        our_error = their_error = None
        result = None
        try:
            result = ours()
        except Exception as error:  # noqa: BLE001 - every exception is judged below
            our_error = error
        try:
            their_result = theirs()
        except Exception as error:  # noqa: BLE001
            their_error = error
        if our_error is None and their_error is None:
            if what == "construct":
                self.theirs = their_result
            return result
        if our_error is not None:
            described = f"{type(our_error).__name__}: {our_error}"
            if not clear(our_error, list(self.scenario.options)):
                raise AssertionError(
                    f"{what}: descend raised an unclear error {described!r}"
                    f" (torch: {their_error!r})"
                ) from our_error
            if guarded and not same_snapshot(before, snapshot(self.ours)):
                raise AssertionError(
                    f"{what}: descend raised {described!r} after changing "
                    f"parameters or state (torch: {their_error!r})"
                ) from our_error
            raise Refused(described)
        if deliberate(self.scenario, their_error):
            # descend steps what torch fails on, on purpose (see DELIBERATE); torch's run
            # cannot go on, so the draw ends here.
            raise Refused(f"torch: {their_error!r}")
        raise AssertionError(
            f"{what}: torch raised {their_error!r} but descend did not"
        ) from their_error

    def gradients(self) -> None:
        """The same random gradient on both sides (parameter 2 skips odd steps)."""
        self.step_count = getattr(self, "step_count", 0) + 1
        for index, (a, b) in enumerate(zip(self.ours_params, self.their_params, strict=True)):
            if index == 2 and self.step_count % 2:
                a.grad = b.grad = None
                continue
            layout = (
                self.scenario.layouts[index][0]
                if index < len(self.scenario.layouts)
                else "contiguous"
            )
            if sparse_layout(layout) and a.numel():
                grad = self._sparse_gradient(a)
            else:
                dtype = a.dtype
                grad = torch.randn(a.shape, dtype=dtype, generator=self.generator)
                if self.grad_transposed and a.ndim == 2:
                    grad = grad.t().contiguous().t()
            a.grad, b.grad = grad.clone(), grad.clone()

    def _sparse_gradient(self, param: torch.Tensor) -> torch.Tensor:
        count = 3
        indices = torch.stack(
            [torch.randint(0, size, (count,), generator=self.generator) for size in param.shape]
        )
        values = torch.randn(count, dtype=param.dtype, generator=self.generator)
        return torch.sparse_coo_tensor(indices, values, param.shape)

    def step(self) -> None:
        self.gradients()
        self.call("step", self.ours.step, self.theirs.step)
        self.compare("step")

    def compare(self, when: str) -> None:
        """Every parameter and every state tensor of torch's run against descend's."""
        for index, (a, b) in enumerate(zip(self.ours_params, self.their_params, strict=True)):
            self._close(f"{when}: parameter {index}", dense(a), dense(b))
            if not self.scenario.pair.drop_in:
                continue  # another form of the method: its own state keys
            ours, theirs = self.ours.state.get(a, {}), self.theirs.state.get(b, {})
            for key, value in theirs.items():
                if key not in ours:
                    raise AssertionError(
                        f"{when}: parameter {index} has no state {key!r} "
                        f"(torch: {sorted(theirs)}, descend: {sorted(ours)})"
                    )
                if isinstance(value, torch.Tensor):
                    self._close(
                        f"{when}: state {key!r} of parameter {index}",
                        dense(ours[key]),
                        dense(value),
                    )

    @staticmethod
    def _close(what: str, ours: Any, theirs: torch.Tensor) -> None:
        if not isinstance(ours, torch.Tensor):
            raise AssertionError(f"{what}: descend holds {ours!r}, torch a tensor")
        if ours.shape != theirs.shape or ours.dtype != theirs.dtype:
            raise AssertionError(
                f"{what}: descend {ours.dtype}{tuple(ours.shape)}, torch "
                f"{theirs.dtype}{tuple(theirs.shape)}"
            )
        rtol, atol = TOLERANCES.get(theirs.dtype, (0.0, 0.0))
        try:
            torch.testing.assert_close(
                ours, theirs, rtol=rtol, atol=atol, equal_nan=True, check_stride=False
            )
        except AssertionError as error:
            raise AssertionError(f"{what}: descend differs from torch: {error}") from None

    # -- mutations ----------------------------------------------------------------------------

    def mutate(self) -> None:
        kind, argument = self.scenario.mutation, self.scenario.argument
        a, b = self.ours_params[0], self.their_params[0]
        both = ((a, self.ours), (b, self.theirs))
        if kind == "replace_data_same_layout":
            values = torch.randn(a.shape, dtype=a.dtype, generator=self.generator)
            for param, _ in both:
                if param.is_sparse:
                    param.data = values.to_sparse()
                else:
                    fresh = torch.empty_strided(param.shape, param.stride(), dtype=param.dtype)
                    param.data = fresh.copy_(values)
        elif kind == "replace_data_transposed":
            for param, _ in both:
                param.data = param.data.clone().t().contiguous().t()
        elif kind == "replace_data_expanded":
            for param, _ in both:
                param.data = param.data[:1].expand_as(param)
        elif kind == "p_t_":
            with torch.no_grad():
                a.t_(), b.t_()
        elif kind == "data_t":
            for param, _ in both:
                param.data = param.data.t()
        elif kind == "as_strided_":
            with torch.no_grad():
                for param, _ in both:
                    n = param.shape[0]
                    if argument == "swap":
                        param.as_strided_((n, n), param.stride()[::-1])
                    else:
                        param.as_strided_((n - 1, n - 1), param.stride())
        elif kind in ("state_t_", "state_overlap"):
            for param, optimizer in both:
                for value in optimizer.state.get(param, {}).values():
                    if isinstance(value, torch.Tensor) and value.ndim == 2:
                        if kind == "state_t_":
                            value.t_()
                        else:
                            value.set_(
                                value.untyped_storage(),
                                value.storage_offset(),
                                value.shape,
                                (0, value.stride(1)),
                            )
        elif kind == "grad_transposed":
            self.grad_transposed = True
        elif kind == "duplicate_param":
            for param, optimizer in both:
                optimizer.param_groups[0]["params"].append(param)
        elif kind == "add_group":
            layout, shape = argument
            self.add(layout, shape, self.scenario.seed + 999)
            self.scenario.layouts.append((layout, shape))
            lr = self.ours.param_groups[0]["lr"] * 0.5
            self.call(
                "add_param_group",
                lambda: self.ours.add_param_group({"params": [self.ours_params[-1]], "lr": lr}),
                lambda: self.theirs.add_param_group({"params": [self.their_params[-1]], "lr": lr}),
            )
        elif kind == "lr_change":
            for _, optimizer in both:
                optimizer.param_groups[0]["lr"] *= 0.5
        elif kind == "edit_group":
            key, value = argument
            for _, optimizer in both:
                _set_group_value(optimizer.param_groups[0], key, value)
        elif kind in ("load_torch_checkpoint", "load_own_checkpoint", "load_bad_checkpoint"):
            theirs = self.theirs.state_dict()
            ours = self.ours.state_dict() if kind != "load_torch_checkpoint" else theirs
            ours, theirs = copy.deepcopy(ours), copy.deepcopy(theirs)
            if kind == "load_bad_checkpoint":
                key, value = argument
                for saved in (ours, theirs):
                    _set_group_value(saved["param_groups"][0], key, value)
            self.call(
                "load_state_dict",
                lambda: self.ours.load_state_dict(ours),
                lambda: self.theirs.load_state_dict(theirs),
            )
            self.compare("load_state_dict")
        elif kind in ("step_minus_one", "step_two_elements"):
            value = torch.tensor(-1.0) if kind == "step_minus_one" else torch.tensor([1.0, 2.0])
            for param, optimizer in both:
                state = optimizer.state.get(param, {})
                if "step" in state:
                    state["step"] = value.clone()


def _set_group_value(group: dict, key: str, value: Any) -> None:
    """Put a bad value into a group entry (one entry of a packed key such as ``betas``)."""
    current = group.get(key)
    if isinstance(current, tuple) and isinstance(value, float):
        group[key] = (value, *current[1:])
    else:
        group[key] = value


def run_scenario(scenario: Scenario) -> None:
    """Run one draw; ``AssertionError`` says how descend broke its promise."""
    if LOG:
        with open(LOG, "a") as log:
            log.write(f"{scenario!r}\n")
            log.flush()
            os.fsync(log.fileno())
    try:
        run = Run(scenario)
        for _ in range(scenario.steps_before):
            run.step()
        run.mutate()
        for _ in range(scenario.steps_after):
            run.step()
    except Refused:
        pass


# -- where descend steps what torch fails on, on purpose --------------------------------------

#: (optimizer, torch's exception type, layout): descend steps these, torch raises.
DELIBERATE = {
    # torch.optim.Muon divides by a matrix's column count; descend steps an empty matrix to
    # itself (there is nothing to update), as its functional API does.
    ("Muon", ZeroDivisionError, "zero_size"),
}


def deliberate(scenario: Scenario, their_error: BaseException | None) -> bool:
    """Whether torch's failure in this draw is one descend does not share on purpose."""
    return any(
        scenario.optimizer == name
        and isinstance(their_error, kind)
        and any(layout == drawn for drawn, _ in scenario.layouts)
        for name, kind, layout in DELIBERATE
    )


# -- known bugs -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KnownBug:
    """An open bug: the draws that show it are left out of the category tests and run in
    ``test_known_bug`` (``xfail``) until it is fixed."""

    reason: str
    #: Any parameter has one of these layouts (``None``: any layout).
    layouts: tuple[str, ...] | None = None
    mutations: tuple[str, ...] = ("none",)
    optimizers: tuple[str, ...] | None = None
    backends: tuple[str, ...] = tuple(BACKENDS)
    options: Callable[[dict], bool] = lambda options: True
    #: The bug kills the process (memory corruption): run its draws in a child process.
    crash: bool = False

    def matches(self, scenario: Scenario) -> bool:
        return (
            (self.layouts is None or any(layout in self.layouts for layout, _ in scenario.layouts))
            and scenario.mutation in self.mutations
            and (self.optimizers is None or scenario.optimizer in self.optimizers)
            and scenario.backend in self.backends
            and self.options(scenario.options)
        )

    def strategy(self) -> st.SearchStrategy[Scenario]:
        pairs = [pair for pair in PAIRS if self.optimizers is None or pair.name in self.optimizers]
        layouts = SETTLED_LAYOUTS if self.layouts is None else list(self.layouts)
        return scenarios(
            layouts, list(self.mutations), SETTLED_LAYOUTS, pairs, list(self.backends), self.options
        )


ALL_MUTATIONS = tuple(MUTATIONS)
COMPILED = ("fused", "auto")

#: Open bugs, each found by this test (see the module docstring).
KNOWN_BUGS: dict[str, KnownBug] = {}

#: Layouts with no known bug that torch steps: extra parameters and the mutation tests draw
#: from these (an expanded parameter makes every step of torch raise; a sparse gradient or
#: parameter is tested as the first parameter only).
SETTLED_LAYOUTS = [
    layout
    for layout in LAYOUTS
    if layout != "expanded"
    and not sparse_layout(layout)
    and not any(
        bug.layouts == (layout,) and bug.mutations == ("none",) and bug.optimizers is None
        for bug in KNOWN_BUGS.values()
    )
]


def known(scenario: Scenario) -> bool:
    return any(bug.matches(scenario) for bug in KNOWN_BUGS.values())


# -- the tests --------------------------------------------------------------------------------

CATEGORIES = len(LAYOUTS) + len(MUTATIONS) - 1
DRAWS = max(6, TOTAL_DRAWS // CATEGORIES)
SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


def covering_bug(layout: str, mutation: str) -> KnownBug | None:
    """The known bug that every draw of this category shows (whatever the optimizer, backend
    and options), if there is one."""
    default = KnownBug("")
    for bug in KNOWN_BUGS.values():
        if (
            mutation in bug.mutations
            and (bug.layouts is None or layout in bug.layouts)
            and bug.optimizers is None
            and bug.backends == default.backends
            and bug.options is default.options
        ):
            return bug
    return None


def in_child(request: pytest.FixtureRequest) -> None:
    """Run this very test in a child process (a known crash corrupts memory) and judge its
    exit status."""
    node = f"{Path(__file__)}::{request.node.name}"
    env = {
        **os.environ,
        "DESCEND_PROPERTIES_CHILD": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            "--runxfail",
            node,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout[-3000:]}"


def check(strategy: st.SearchStrategy[Scenario], skip_known: bool, shrink: bool) -> None:
    """Run the draws of ``strategy``; with ``skip_known``, draws that show a known bug are
    left out (``test_known_bug`` runs them)."""
    phases = list(Phase) if shrink else [Phase.explicit, Phase.generate]

    @settings(max_examples=DRAWS, phases=phases, **SETTINGS)
    @given(strategy)
    def run(scenario: Scenario) -> None:
        if skip_known:
            assume(not known(scenario))
        run_scenario(scenario)

    run()


def categories(kind: str) -> list:
    """The test cases of one kind (layouts or mutations); a category that a known bug covers
    entirely is marked xfail with that bug's reason."""
    names = LAYOUTS if kind == "layout" else [m for m in MUTATIONS if m != "none"]
    cases = []
    for name in names:
        bug = covering_bug(name, "none") if kind == "layout" else covering_bug("", name)
        marks = [pytest.mark.xfail(strict=False, reason=bug.reason)] if bug else []
        cases.append(pytest.param(name, marks=marks))
    return cases


@pytest.mark.parametrize("layout", categories("layout"))
def test_layout_matches_torch_or_refuses_cleanly(layout, request):
    bug = covering_bug(layout, "none")
    if bug is not None and bug.crash and not CHILD:
        in_child(request)
        return
    check(
        scenarios([layout], ["none"], SETTLED_LAYOUTS), skip_known=bug is None, shrink=bug is None
    )


@pytest.mark.parametrize("mutation", categories("mutation"))
def test_mutation_matches_torch_or_refuses_cleanly(mutation, request):
    bug = covering_bug("", mutation)
    if bug is not None and bug.crash and not CHILD:
        in_child(request)
        return
    check(
        scenarios(SETTLED_LAYOUTS, [mutation], SETTLED_LAYOUTS),
        skip_known=bug is None,
        shrink=bug is None,
    )


#: Known bugs that show in some draws of a category only (the others are the xfail
#: categories above).
PARTIAL_BUGS = [
    name
    for name, bug in KNOWN_BUGS.items()
    if not any(covering_bug(layout, "none") is bug for layout in LAYOUTS)
    and not any(covering_bug("", mutation) is bug for mutation in MUTATIONS)
]


@pytest.mark.parametrize(
    "bug",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=False, reason=KNOWN_BUGS[name].reason))
        for name in PARTIAL_BUGS
    ],
)
def test_known_bug(bug, request):
    if KNOWN_BUGS[bug].crash and not CHILD:
        in_child(request)
        return
    # No shrinking: the bug is known, its draws only need to show whether it is still there.
    check(KNOWN_BUGS[bug].strategy(), skip_known=False, shrink=False)


def test_the_registry_gives_every_drop_in_class_a_reference():
    # The draws cover every class with a torch counterpart, found through the registry.
    names = {pair.name for pair in PAIRS}
    assert set(OPTION_GRID) <= names
    assert all(pair.theirs.__module__.startswith("torch.optim") for pair in PAIRS)
