"""The storage format of each slot of an optimizer's state (``state_precision=``, ``seed=``).

Every descend optimizer takes ``state_precision`` (a format of
:data:`~descend.kernels.codecs.FORMATS` for every slot, or a dict from slot name to format;
default ``"float32"``, ``torch.optim``'s state) and ``seed`` (of the stochastic rounding's
random stream). :class:`StatePrecision` checks them and says each parameter's format per slot;
a slot stored compressed keeps its storage tensors in the state: ``state["exp_avg"]`` (bf16
values or int8 codes, the parameter's shape) and ``state["exp_avg.ecc"]`` or
``state["exp_avg.scale"]`` beside it (see :mod:`descend.kernels.codecs`). The fused CPU and
Triton executors decode and encode inside their kernel's one pass
(:mod:`descend.kernels.coded`, :mod:`descend.kernels.triton_coded`, through
:class:`BlockCoding`); every other path (the reference executor, complex, sparse or strided
parameters) decodes a compressed slot into the parameter's dtype, runs the rule on the
parameter's executor and encodes it again (:class:`Coded`). All of them run the one
definition of each format (:mod:`descend.kernels.codec_elements`). Random bits
are drawn from
``(seed, stream step, tensor index, slot index)``: the optimizer counts its stream steps
(steps taken, not skipped ones) and saves the count in its state dict, so a resumed run draws
the same bits.

A state dict says its formats under ``"state_precision"``; :func:`plain_state_dict` decodes one
into the parameters' dtype (what ``torch.optim`` loads), and ``load_state_dict`` converts
whatever it loads into the optimizer's own formats.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from descend.kernels.codecs import (
    CODECS,
    DEFAULT_SEED,
    FORMATS,
    Codec,
    get_codec,
    saved_decoder,
    saved_version,
    shared_streams,
    stream_key,
    stream_keys,
)
from descend.optim.weights import state_probe
from descend.rules.spec import Rule

if TYPE_CHECKING:
    from descend.optim.base import RuleOptimizer

#: The key of a state dict that records the formats, the seed and the stream step.
STATE_DICT_KEY = "state_precision"
#: Added to a slot's index for the bits that store its first (initial) value.
_INITIAL = 1 << 8


class StatePrecision:
    """A checked ``state_precision`` request and seed: each slot's format by name."""

    def __init__(self, request: object = "float32", seed: object = DEFAULT_SEED) -> None:
        if isinstance(request, str):
            get_codec(request)
            self.default, self.by_slot = request, {}
        elif isinstance(request, Mapping):
            for slot, name in request.items():
                if not isinstance(slot, str):
                    raise ValueError(
                        f"state_precision key {slot!r} is invalid: expected a slot name"
                    )
                get_codec(name)
            self.default, self.by_slot = "float32", dict(request)
        else:
            raise ValueError(
                f"state_precision={request!r} is invalid: expected a format "
                f"({', '.join(map(repr, FORMATS))}) or a dict from slot name to format"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 64:
            raise ValueError(f"seed={seed!r} is invalid: expected an integer in [0, 2**64)")
        self.seed = seed
        #: Whether any slot may be stored compressed.
        self.compressed = self.default != "float32" or any(
            name != "float32" for name in self.by_slot.values()
        )

    def check_slots(self, rules: Iterable[Rule], owner: str) -> None:
        """Refuse a dict entry for a slot none of ``rules`` has, naming the slots they have,
        and any compressed format for a rule with matrix state: its matrix stage reads and
        rewrites its slots in the state itself (SOAP's second moment, projected onto each new
        eigenbasis), outside the decode and encode around the elementwise update."""
        rules = list(rules)
        matrix = sorted({rule.name for rule in rules if rule.stage and rule.stage.matrices})
        if self.compressed and matrix:
            raise ValueError(
                f"state_precision={self.request!r} is not available for {owner}: its rule "
                f"({', '.join(matrix)}) keeps matrix state that its matrix stage reads beside "
                "its slots; expected 'float32'"
            )
        names = sorted({slot.name for rule in rules for slot in rule.slots})
        for slot in self.by_slot:
            if slot not in names:
                raise ValueError(
                    f"state_precision names slot {slot!r}, which {owner} does not keep: "
                    f"expected one of {', '.join(map(repr, names)) or 'no slot at all'}"
                )

    def check_parameter(self, param: torch.Tensor, where: str) -> None:
        """Refuse a complex (or any non-floating) parameter when a slot may be compressed."""
        if self.compressed and not param.is_floating_point():
            raise ValueError(
                f"{where} (shape {tuple(param.shape)}) is a {param.dtype} tensor: "
                f"state_precision={self.request!r} compresses real floating-point state only; "
                "expected 'float32' for it (give it a param group of its own)"
            )

    @property
    def request(self) -> object:
        """The ``state_precision`` argument this was made from."""
        return dict(self.by_slot) if self.by_slot else self.default

    def codec(self, slot: str, param: torch.Tensor) -> Codec:
        """The codec that stores ``slot`` of ``param``: its requested format, or float32 for a
        tensor too small for it."""
        codec = CODECS[self.by_slot.get(slot, self.default)]
        return codec if codec.applies(param.numel()) else CODECS["float32"]


def stored_format(state: Mapping[str, Any], slot: str, param: torch.Tensor) -> str:
    """The format ``slot`` is stored in, read from the state's tensors."""
    for codec in CODECS.values():
        if codec.companions and all(f"{slot}.{c}" in state for c in codec.companions):
            return codec.name
    value = state.get(slot)
    if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16 != param.dtype:
        return "bfloat16"
    return "float32"


def check_stored(
    state: Mapping[str, Any], slot: str, codec: Codec, param: torch.Tensor, label: Any
) -> None:
    """Refuse a compressed slot stored otherwise than ``codec`` stores it for ``param``
    (``ValueError`` naming the parameter)."""
    found = stored_format(state, slot, param)
    value = state[slot]
    if (
        CODECS[found].layout != codec.layout
        or value.shape != param.shape
        or value.device != param.device
    ):
        raise ValueError(
            f"state[{slot!r}] of {label(param)} is stored as {found!r} "
            f"({value.dtype}, shape {tuple(value.shape)}, on {value.device}), but this "
            f"optimizer stores it as {codec.name!r} for a parameter of shape "
            f"{tuple(param.shape)} on {param.device}; nothing was updated"
        )


def stored_tensors(state: Mapping[str, Any], slot: str, codec: Codec) -> tuple[torch.Tensor, ...]:
    """The storage tensors of ``slot`` in ``codec``'s format."""
    return (state[slot], *(state[f"{slot}.{c}"] for c in codec.companions))


def decode_slot(state: Mapping[str, Any], slot: str, param: torch.Tensor) -> torch.Tensor:
    """``slot`` of ``param`` decoded into the parameter's dtype (the stored tensor itself when
    it is not compressed)."""
    codec = CODECS[stored_format(state, slot, param)]
    if codec.storage is None:
        value: torch.Tensor = state[slot]
        return value
    return codec.decode(stored_tensors(state, slot, codec)).to(param.dtype)


def encode_slot(
    state: dict[str, Any],
    slot: str,
    codec: Codec,
    values: torch.Tensor,
    key: int,
    upper: bool = False,
) -> list[str]:
    """Store ``values`` as ``slot`` in ``codec``'s format (companions of another format
    removed), rounding with stream ``key`` (its upper bits where ``upper``); returns the keys
    that were not in the state before."""
    stored = codec.encode(values, key, upper)
    new = []
    for name in [f"{slot}.{c}" for codecs in CODECS.values() for c in codecs.companions]:
        if name in state and name not in {f"{slot}.{c}" for c in codec.companions}:
            del state[name]
    for name, tensor in zip(
        [slot, *(f"{slot}.{c}" for c in codec.companions)], stored, strict=True
    ):
        if name not in state:
            new.append(name)
        old = state.get(name)
        if codec.storage is None and isinstance(old, torch.Tensor) and old.shape == tensor.shape:
            if old is not tensor:
                old.copy_(tensor)
        else:
            state[name] = tensor
    return new


def tensor_indices(optimizer: RuleOptimizer) -> dict[int, int]:
    """Each parameter's position in the optimizer's param groups (by ``id``): the tensor index
    of the random stream."""
    return {
        id(param): index
        for index, param in enumerate(
            p for group in optimizer.param_groups for p in group["params"]
        )
    }


def initial_key(optimizer: RuleOptimizer, param: torch.Tensor, slot: int) -> int:
    """The stream key of the bits that store a slot's first value."""
    precision = optimizer._precision
    index = tensor_indices(optimizer).get(id(param), 0)
    return stream_key(precision.seed, optimizer._stream_step, index, slot + _INITIAL)


class Coded:
    """The compressed slots of one parameter during a step: decoded before the rule runs
    (:meth:`decoded`), encoded after it (:meth:`store`)."""

    def __init__(
        self, optimizer: RuleOptimizer, param: torch.Tensor, state: dict[str, Any], rule: Rule
    ) -> None:
        self.optimizer = optimizer
        self.param = param
        self.state = state
        self.rule = rule

    def decoded(self, slots: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """``slots`` (the state's tensors in the rule's order) with each compressed one
        replaced by its decoded values."""
        return [
            None if tensor is None else decode_slot(self.state, slot.name, self.param)
            for slot, tensor in zip(self.rule.slots, slots, strict=True)
        ]

    def store(self, slots: list[torch.Tensor | None]) -> None:
        """Encode the rule's new ``slots`` (from :meth:`decoded`) into the state."""
        optimizer = self.optimizer
        precision = optimizer._precision
        index = tensor_indices(optimizer)[id(self.param)]
        codecs = [
            CODECS["float32"] if values is None else precision.codec(slot.name, self.param)
            for slot, values in zip(self.rule.slots, slots, strict=True)
        ]
        # The compiled kernels' pairing of bf16 slots, over the same active slots.
        streams = shared_streams([codec.name for codec in codecs])
        for number, (slot, values) in enumerate(zip(self.rule.slots, slots, strict=True)):
            codec = codecs[number]
            if values is None or codec.storage is None:
                continue
            stream, upper = streams[number]
            key = stream_key(precision.seed, optimizer._stream_step, index, stream)
            encode_slot(self.state, slot.name, codec, values, key, upper)


def coded(optimizer: RuleOptimizer, param: torch.Tensor, state: Any, rule: Rule) -> Coded | None:
    """The :class:`Coded` of ``param`` when one of its slots is stored compressed, else None."""
    if not optimizer._precision.compressed or not state:
        return None
    if all(stored_format(state, slot.name, param) == "float32" for slot in rule.slots):
        return None
    return Coded(optimizer, param, state, rule)


class BlockCoding:
    """What the compiled blocks of a plan need of an optimizer's state precision: each
    parameter's formats, the keys of its slots' random streams at the current step, and its
    :class:`Coded` for a step run on the reference executor instead."""

    def __init__(self, optimizer: RuleOptimizer) -> None:
        self.optimizer = optimizer

    def formats(self, param: torch.Tensor, rule: Rule, active: Iterable[bool]) -> tuple[str, ...]:
        """The format of each of ``rule``'s slots for ``param`` (float32 where inactive)."""
        precision = self.optimizer._precision
        return tuple(
            precision.codec(slot.name, param).name if on else "float32"
            for slot, on in zip(rule.slots, active, strict=True)
        )

    def keys(self, params: Iterable[torch.Tensor], slot: int) -> np.ndarray:
        """The stream keys of slot number ``slot`` of ``params`` for the step under way
        (int64), computed together."""
        optimizer = self.optimizer
        indices = tensor_indices(optimizer)
        tensors = np.fromiter((indices[id(param)] for param in params), dtype=np.int64)
        return stream_keys(optimizer._precision.seed, optimizer._stream_step, tensors, slot)

    def coded(self, param: torch.Tensor, state: Any, rule: Rule) -> Coded | None:
        """``param``'s :class:`Coded`, if a slot of it is compressed."""
        return coded(self.optimizer, param, state, rule)


# -- state dicts ------------------------------------------------------------------------------


def saved_formats(optimizer: RuleOptimizer) -> dict[str, Any]:
    """What a state dict records under :data:`STATE_DICT_KEY`: the request, the seed, the
    stream step, each compressed slot's format by the state dict's parameter index, and the
    version of each format's encoding (:attr:`Codec.version`; a record without versions was
    written before they were recorded: every format at version 1)."""
    formats: dict[int, dict[str, str]] = {}
    index = 0
    for group in optimizer.param_groups:
        rule = optimizer.rule_for(group)
        for param in group["params"]:
            state = optimizer.state.get(param) or {}
            probe = state_probe(optimizer, param)  # a bf16 weight's float32 master
            found = {
                slot.name: stored_format(state, slot.name, probe)
                for slot in rule.slots
                if slot.name in state
            }
            compressed = {slot: name for slot, name in found.items() if name != "float32"}
            if compressed:
                formats[index] = compressed
            index += 1
    weights = optimizer._weights.request  # its format's version: the correction bytes'
    used = {name for slots in formats.values() for name in slots.values()} | (
        {weights} if weights else set()
    )
    return {
        "request": optimizer._precision.request,
        "seed": optimizer._precision.seed,
        "stream_step": optimizer._stream_step,
        "formats": formats,
        "format_versions": {name: CODECS[name].version for name in sorted(used)},
    }


def plain_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``state_dict`` with every compressed slot decoded to float32 and the format record
    removed: a state dict ``torch.optim`` (or a float32 descend optimizer) loads."""
    plain = {key: value for key, value in state_dict.items() if key != STATE_DICT_KEY}
    record = state_dict.get(STATE_DICT_KEY) or {}
    record = record if isinstance(record, Mapping) else {}
    formats = record.get("formats", {})
    state = {}
    for key, entry in (state_dict.get("state") or {}).items():
        entry = dict(entry)
        for slot, name in (formats.get(key) or {}).items():
            codec = CODECS.get(name)
            if codec is None or codec.storage is None or slot not in entry:
                continue
            decode = saved_decoder(record, name, f"state[{key!r}][{slot!r}]")
            entry[slot] = decode(stored_tensors(entry, slot, codec))
            for companion in codec.companions:
                entry.pop(f"{slot}.{companion}", None)
        state[key] = entry
    plain["state"] = state
    return plain


def loaded_storage(
    state_dict: Mapping[str, Any],
) -> dict[Any, dict[str, tuple[str, dict[str, torch.Tensor]]]]:
    """The compressed slots of a state dict as saved in their format's current encoding: by
    parameter index, each slot's format and storage tensors (kept as they are when the
    optimizer stores that slot alike; a slot in an older encoding is decoded and stored
    again)."""
    record = state_dict.get(STATE_DICT_KEY) or {}
    record = record if isinstance(record, Mapping) else {}
    formats = record.get("formats", {})
    kept: dict[Any, dict[str, tuple[str, dict[str, torch.Tensor]]]] = {}
    for key, slots in formats.items():
        entry = (state_dict.get("state") or {}).get(key) or {}
        for slot, name in slots.items():
            codec = CODECS.get(name)
            if codec is None or slot not in entry or saved_version(record, name) != codec.version:
                continue
            names = [slot, *(f"{slot}.{c}" for c in codec.companions)]
            if all(n in entry for n in names):
                kept.setdefault(key, {})[slot] = (name, {n: entry[n] for n in names})
    return kept


def encode_loaded(
    optimizer: RuleOptimizer,
    saved_ids: list[Any],
    kept: Mapping[Any, Mapping[str, tuple[str, Mapping[str, torch.Tensor]]]],
) -> None:
    """After a load of decoded state: store every slot in the optimizer's own format, keeping
    the saved storage of a slot the checkpoint stored in that format already."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    rules = [optimizer.rule_for(group) for group in optimizer.param_groups for _ in group["params"]]
    precision = optimizer._precision
    for index, (saved_id, param, rule) in enumerate(zip(saved_ids, params, rules, strict=True)):
        state = optimizer.state.get(param)
        if not state:
            continue
        for number, slot in enumerate(rule.slots):
            value = state.get(slot.name)
            if not isinstance(value, torch.Tensor):
                continue
            codec = precision.codec(slot.name, param)
            saved = kept.get(saved_id, {}).get(slot.name)
            if saved is not None and CODECS[saved[0]].layout == codec.layout:
                for name, tensor in saved[1].items():
                    state[name] = tensor.to(param.device)
                continue
            if codec.storage is not None:
                key = stream_key(precision.seed, optimizer._stream_step, index, number + _INITIAL)
                encode_slot(state, slot.name, codec, value, key)


__all__ = [
    "ARGUMENT_DOCS",
    "STATE_DICT_KEY",
    "Coded",
    "StatePrecision",
    "coded",
    "decode_slot",
    "encode_slot",
    "plain_state_dict",
    "requested_precision",
    "saved_formats",
    "stored_format",
    "with_precision_arguments",
]


# -- the constructor arguments ----------------------------------------------------------------

#: How the generated class docstrings describe the two arguments.
ARGUMENT_DOCS = {
    "state_precision": "how each slot of the state is stored: one of "
    + ", ".join(f"``{name!r}``" for name in FORMATS)
    + " for every slot, or a dict from slot name to format; see "
    ":mod:`descend.optim.precision`. Default ``'float32'``.",
    "seed": "seed of the stochastic rounding's random stream (``'bfloat16'``); default "
    f"{DEFAULT_SEED}.",
    "param_precision": "``None`` (default: weights stepped in their own dtype), "
    "``'bfloat16'`` (bf16 weights stepped in float32 and stored with stochastic rounding) or "
    "``'bf16+ecc'`` (bf16 weights plus a correction byte, a split master); see "
    ":mod:`descend.optim.weights`.",
    "cautious": "keep only the components of each step whose sign agrees with the gradient, "
    "rescaled by the kept fraction (Liang et al. 2024); see :mod:`descend.rules.caution`. "
    "Default ``False``.",
}
#: The constructor arguments every descend optimizer takes besides its own, with defaults.
ADDED_ARGUMENTS: dict[str, object] = {
    "state_precision": "float32",
    "seed": DEFAULT_SEED,
    "param_precision": None,
    "cautious": False,
}


def with_precision_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` (an optimizer class's constructor) taking the :data:`ADDED_ARGUMENTS`
    (``state_precision``, ``seed``, ``param_precision``, ``cautious``) as keyword-only
    arguments too, kept on the instance for ``RuleOptimizer.__init__``.

    A constructor that calls another one (``AdamW``'s calls ``Adam``'s) passes them on only
    when it names them: the arguments the user gave stay.
    """
    signature = inspect.signature(init)
    parameters = list(signature.parameters.values())
    variadic = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    plain = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
        for name, default in ADDED_ARGUMENTS.items()
        if name not in signature.parameters
    ]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in ADDED_ARGUMENTS if name in kwargs}
        current = self.__dict__.get("_precision_arguments", {})
        self.__dict__["_precision_arguments"] = {**current, **given}
        init(self, *args, **kwargs)

    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*plain, *added, *variadic]
    )
    __init__._precision_arguments = True  # type: ignore[attr-defined]
    return __init__


def requested_precision(optimizer: Any) -> tuple[StatePrecision, dict[str, Any]]:
    """The checked ``state_precision`` and ``seed`` given to ``optimizer``'s constructor, and
    the other added arguments as given."""
    arguments: dict[str, Any] = optimizer.__dict__.pop("_precision_arguments", {})
    precision = StatePrecision(
        arguments.get("state_precision", "float32"), arguments.get("seed", DEFAULT_SEED)
    )
    return precision, arguments
