"""Benchmark tasks: a model factory, train/validation/test data, a loss and a target.

A task registers once (:func:`register_task`): its name and description, a builder, and the
options that task alone takes (a dataclass, such as CIFAR-10's ``data_dir``). ``descend bench
--task``, its help and its flags read the registry; :func:`get_task` builds a task by name.

Built-in tasks (every one offline; nothing is downloaded):

- ``digits-logreg``, ``digits-mlp``: scikit-learn's bundled 8x8 digits, a fixed stratified
  60/20/20 train/validation/test split.
- ``mnist1d-logreg``, ``mnist1d-mlp``, ``mnist1d-cnn``: MNIST-1D (Greydanus, 2020) generated
  locally by the ``mnist1d`` package's generator with its published arguments (seed 42, 4000
  train and 1000 test examples); the last 500 training examples are held out for validation.
  The models are the paper's baselines.
- ``charlm-transformer``: a small decoder-only transformer predicting the next character of
  34 standard-library source files, checked by hash (see :mod:`descend.bench.charlm`).
- ``cifar10-cnn``: the standard CIFAR-10 python batches read from a directory the user gives
  (option ``data_dir``, see :mod:`descend.bench.cifar10`); the last 5000 training images are
  held out for validation.

Your own network, once: :meth:`Task.custom` takes a model factory, data loaders and a loss.

This module loads no data and no torch until a task is built, so the command line can list
the tasks at once; the data lives in :mod:`descend.bench.data`, the models in
:mod:`descend.bench.models`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from descend.suggest import unknown_name

if TYPE_CHECKING:
    import torch
    from torch import nn

    from descend.bench.data import Batch, Data

METRICS = ("accuracy", "loss")


def _cross_entropy() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    import torch

    return torch.nn.functional.cross_entropy


def check_target(target: float | None, metric: str) -> None:
    """Raise ``ValueError`` unless ``target`` is a score a task with ``metric`` can reach:
    an accuracy in (0, 1], or a finite loss."""
    if target is None:
        return
    if not (isinstance(target, int | float) and math.isfinite(target)):
        raise ValueError(f"target={target!r} is invalid: expected a finite number")
    if metric == "accuracy" and not 0 < target <= 1:
        raise ValueError(
            f"target={target!r} is invalid: expected a validation accuracy in (0, 1], such as 0.95"
        )


@dataclass(frozen=True)
class Task:
    """What a benchmark trains: a model factory, data splits, a loss, and how to score.

    Attributes:
        name: the task's name in tables and study names.
        model_factory: builds a fresh model (called after the run's seed is set).
        train, val, test: the splits (``test`` may be ``None``: then no test accuracy).
        loss: ``loss(outputs, targets) -> scalar tensor`` (default: cross-entropy).
        epochs: default training length.
        target: the validation score that counts as reaching the target (accuracy, or loss
            when ``metric="loss"``); ``None`` for no time-to-target.
        metric: ``"accuracy"`` (classification; higher is better; the default) or ``"loss"``
            (any other task; lower is better).
        num_classes: for the chance level shown next to accuracies.
        description: one line for tables and reports.
    """

    name: str
    model_factory: Callable[[], nn.Module]
    train: Data
    val: Data
    test: Data | None
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = field(
        default_factory=_cross_entropy
    )
    epochs: int = 10
    target: float | None = None
    metric: str = "accuracy"
    num_classes: int | None = None
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric={self.metric!r} is invalid: expected 'accuracy' or 'loss'")
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs!r} is invalid: expected >= 1")
        check_target(self.target, self.metric)

    @property
    def higher_is_better(self) -> bool:
        """Whether the task's score (accuracy) grows as training improves (loss does not)."""
        return self.metric == "accuracy"

    def reached(self, score: float) -> bool:
        """Whether a validation score reaches the task's target."""
        if self.target is None:
            return False
        return score >= self.target if self.higher_is_better else score <= self.target

    def with_options(
        self, epochs: int | None = None, batch_size: int | None = None, target: float | None = None
    ) -> Task:
        """The task with a different length, batch size (built-in data only) or target."""
        from descend.bench.data import TensorData

        changes: dict[str, Any] = {}
        if epochs is not None:
            changes["epochs"] = epochs
        if target is not None:
            changes["target"] = target
        if batch_size is not None:
            if not isinstance(self.train, TensorData):
                raise ValueError(
                    f"task {self.name!r} reads batches from your data loaders; set "
                    "the batch size there"
                )
            changes["train"] = self.train.with_batch_size(batch_size)
        return replace(self, **changes)

    @classmethod
    def custom(
        cls,
        name: str,
        model_factory: Callable[[], nn.Module],
        train_loader: Iterable[Batch],
        val_loader: Iterable[Batch],
        test_loader: Iterable[Batch] | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        epochs: int = 10,
        target: float | None = None,
        metric: str = "accuracy",
        num_classes: int | None = None,
        description: str = "",
    ) -> Task:
        """A task from your model factory, data loaders (any iterables of ``(x, y)`` batches,
        re-iterable once per epoch) and loss (default cross-entropy).

        For tasks other than classification pass ``metric="loss"``: tuning then minimizes the
        validation loss and ``target`` is a loss to get below.
        """
        from descend.bench.data import LoaderData

        if not callable(model_factory):
            raise ValueError(
                f"model_factory={model_factory!r} is not callable: expected a "
                "function that returns a fresh torch.nn.Module"
            )
        return cls(
            name,
            model_factory,
            LoaderData(train_loader),
            LoaderData(val_loader),
            LoaderData(test_loader) if test_loader is not None else None,
            loss or _cross_entropy(),
            epochs,
            target,
            metric,
            num_classes,
            description or "user task",
        )


# -- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskOption:
    """One option a task declares: a field of its options dataclass.

    Attributes:
        name: the keyword (``data_dir``); the command line's flag is :attr:`flag`.
        help: what the option is, one line (the flag's help and the missing-option error).
        parse: turns the command line's text into the option's type (``str``, ``int``, ...).
        required: whether the task cannot be built without it.
    """

    name: str
    help: str
    parse: Callable[[str], Any]
    required: bool

    @property
    def flag(self) -> str:
        """The command line's flag: ``--data-dir`` for ``data_dir``."""
        return "--" + self.name.replace("_", "-")


#: The types an option's field may have; the command line parses its text with them.
OPTION_TYPES = (str, int, float, Path)


def _declared_options(options: type | None) -> tuple[TaskOption, ...]:
    """The options a task's dataclass declares, each field with its type, help and default."""
    if options is None:
        return ()
    if not dataclasses.is_dataclass(options):
        raise ValueError(
            f"options={options!r} is invalid: expected a dataclass whose fields "
            "are the task's options"
        )
    hints = typing.get_type_hints(options)
    declared = []
    for item in dataclasses.fields(options):
        kind = hints[item.name]
        if kind not in OPTION_TYPES:
            raise ValueError(
                f"option {item.name!r} of {options.__name__} is typed {kind!r}: "
                f"expected one of {', '.join(t.__name__ for t in OPTION_TYPES)}"
            )
        if "help" not in item.metadata:
            raise ValueError(
                f"option {item.name!r} of {options.__name__} has no help: declare "
                "it with field(metadata={'help': '...'})"
            )
        required = (
            item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
        )
        declared.append(TaskOption(item.name, item.metadata["help"], kind, required))
    return tuple(declared)


@dataclass(frozen=True)
class TaskEntry:
    """A registered task: its name and description, stated once, its builder and its options.

    Attributes:
        name: the task's name (``--task``, tables, study names).
        description: one line for listings, tables and reports.
        build: ``build(entry)`` returns the :class:`Task` (see :meth:`make`); a task that
            declares options is built as ``build(entry, options)``.
        options: a dataclass whose fields are the task's own options (``None``: it takes
            none); only this task receives them.
    """

    name: str
    description: str
    build: Callable[..., Task]
    options: type | None = None

    @property
    def declared(self) -> tuple[TaskOption, ...]:
        """The task's options, in the order its dataclass declares them."""
        return _declared_options(self.options)

    def make(
        self,
        model_factory: Callable[[], nn.Module],
        train: Data,
        val: Data,
        test: Data | None,
        **settings: Any,
    ) -> Task:
        """A :class:`Task` under this entry's name and description; ``settings`` are the
        other fields of :class:`Task` (``epochs``, ``target``, ``num_classes``, ...)."""
        return Task(
            self.name, model_factory, train, val, test, description=self.description, **settings
        )

    def load(self, **options: Any) -> Task:
        """Build the task with ``options`` (only those it declares), its data loaded."""
        declared = {option.name: option for option in self.declared}
        for name in options:
            if name not in declared:
                raise ValueError(
                    f"task {self.name!r} takes no option {name!r}; its options: "
                    f"{', '.join(declared) or 'none'}"
                )
        for option in declared.values():
            if option.required and options.get(option.name) is None:
                raise ValueError(f"task {self.name} needs {option.flag}: {option.help}")
        given = {name: value for name, value in options.items() if value is not None}
        if self.options is None:
            return self.build(self)
        task = self.build(self, self.options(**given))
        return replace(
            task, details={**task.details, **{name: str(value) for name, value in given.items()}}
        )


#: Every registered task by name: the built-ins below, and any :func:`register_task` adds.
TASKS: dict[str, TaskEntry] = {}


def register_task(
    name: str, description: str, options: type | None = None
) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Register the decorated builder as the task ``name``; the command line, its help and
    :func:`get_task` read the registry.

    ``options`` is a dataclass whose fields are the task's own options (each a ``str``, ``int``,
    ``float`` or ``Path`` with ``field(metadata={"help": ...})``; without a default it is
    required). The builder is called ``build(entry)``, or ``build(entry, options)`` when the
    task declares options, and returns ``entry.make(model_factory, train, val, test, ...)``::

        @register_task("blobs-linear", "two Gaussian blobs, a linear model")
        def blobs(entry: TaskEntry) -> Task:
            return entry.make(lambda: nn.Linear(2, 2), train, val, test, epochs=5)
    """
    if not name or "," in name or ":" in name or name != name.strip():
        raise ValueError(
            f"task name {name!r} is invalid: expected a non-empty name without "
            "',', ':' or surrounding spaces"
        )
    if name in TASKS:
        raise ValueError(f"task {name!r} is already registered")
    declared = _declared_options(options)
    for entry in TASKS.values():
        for theirs in entry.declared:
            for mine in declared:
                if mine.name == theirs.name and mine.parse is not theirs.parse:
                    raise ValueError(
                        f"option {mine.name!r} of task {name!r} is typed "
                        f"{mine.parse.__name__}, but task {entry.name!r} types it "
                        f"{theirs.parse.__name__}; the command line has one "
                        f"{mine.flag}"
                    )

    def decorate(build: Callable[..., Task]) -> Callable[..., Task]:
        TASKS[name] = TaskEntry(name, description, build, options)
        return build

    return decorate


def task_names() -> list[str]:
    """Names of the registered tasks."""
    return list(TASKS)


def task_entries() -> list[TaskEntry]:
    """The registered tasks, in the order they were registered."""
    return list(TASKS.values())


def check_task_name(name: str) -> None:
    """Raise ``ValueError`` (with the closest valid name) unless ``name`` is a registered task."""
    if name not in TASKS:
        raise unknown_name("task", name, list(TASKS))


def task_options() -> dict[str, tuple[TaskOption, list[str]]]:
    """Every option any task declares, by name, with the tasks that declare it."""
    found: dict[str, tuple[TaskOption, list[str]]] = {}
    for entry in TASKS.values():
        for option in entry.declared:
            found.setdefault(option.name, (option, []))[1].append(entry.name)
    return found


def get_task(name: str, /, **options: Any) -> Task:
    """The registered task ``name``, its data loaded; ``options`` are the task's own
    (``get_task("cifar10-cnn", data_dir="...")``)."""
    check_task_name(name)
    return TASKS[name].load(**options)


def get_tasks(names: Sequence[str], options: Mapping[str, Any]) -> list[Task]:
    """The tasks ``names``, each given only the options in ``options`` it declares (``None``
    values count as not given). Every name and option is checked before any data loads."""
    for name in names:
        check_task_name(name)
    given = {key: value for key, value in options.items() if value is not None}
    owners = task_options()
    for key in given:
        if key not in owners:
            raise unknown_name("task option", key, list(owners))
        takers = [
            name for name in names if any(option.name == key for option in TASKS[name].declared)
        ]
        if not takers:
            option, declaring = owners[key]
            raise ValueError(
                f"{option.flag} is an option of task {', '.join(declaring)}; "
                f"none of {', '.join(names)} takes it"
            )
    tasks = []
    for name in names:
        declared = {option.name for option in TASKS[name].declared}
        tasks.append(
            get_task(name, **{key: value for key, value in given.items() if key in declared})
        )
    return tasks


# -- the built-in tasks ----------------------------------------------------------------------


def _digits(entry: TaskEntry, hidden: list[int], target: float) -> Task:
    from descend.bench.data import digits_arrays, tensor_splits
    from descend.bench.models import mlp

    train, val, test = tensor_splits(digits_arrays(), batch_size=32)
    return entry.make(
        lambda: mlp([64, *hidden, 10]), train, val, test, epochs=20, target=target, num_classes=10
    )


@register_task("digits-logreg", "8x8 digits (scikit-learn), logistic regression")
def _digits_logreg(entry: TaskEntry) -> Task:
    return _digits(entry, [], 0.95)


@register_task("digits-mlp", "8x8 digits (scikit-learn), MLP 64-128-10")
def _digits_mlp(entry: TaskEntry) -> Task:
    return _digits(entry, [128], 0.96)


def _mnist1d(entry: TaskEntry, model: Callable[[], nn.Module], epochs: int, target: float) -> Task:
    from descend.bench.data import mnist1d_arrays, tensor_splits

    train, val, test = tensor_splits(mnist1d_arrays(), batch_size=100)
    return entry.make(model, train, val, test, epochs=epochs, target=target, num_classes=10)


@register_task("mnist1d-logreg", "MNIST-1D (generated), logistic regression (paper: ~32% test)")
def _mnist1d_logreg(entry: TaskEntry) -> Task:
    from descend.bench.models import mlp

    return _mnist1d(entry, lambda: mlp([40, 10]), 20, 0.28)


@register_task("mnist1d-mlp", "MNIST-1D (generated), MLP 40-100-100-10 (paper: ~68% test)")
def _mnist1d_mlp(entry: TaskEntry) -> Task:
    from descend.bench.models import mlp

    return _mnist1d(entry, lambda: mlp([40, 100, 100, 10]), 60, 0.60)


@register_task("mnist1d-cnn", "MNIST-1D (generated), the paper's 3-layer CNN (paper: ~94% test)")
def _mnist1d_cnn(entry: TaskEntry) -> Task:
    from descend.bench.models import MNIST1DConv

    return _mnist1d(entry, MNIST1DConv, 60, 0.85)


@register_task("charlm-transformer", "Python stdlib source (characters), 3-layer transformer")
def _charlm(entry: TaskEntry) -> Task:
    from descend.bench.charlm import charlm_task

    return charlm_task(entry)


@dataclass(frozen=True)
class CIFAR10Options:
    """The options of ``cifar10-cnn``: where CIFAR-10 lives (nothing is downloaded)."""

    data_dir: str = field(
        metadata={
            "help": "the folder with CIFAR-10's python batches "
            "(data_batch_1..5, test_batch), from "
            "cifar-10-python.tar.gz"
        }
    )


@register_task("cifar10-cnn", "CIFAR-10 (python batches), 3-block CNN", options=CIFAR10Options)
def _cifar10(entry: TaskEntry, options: CIFAR10Options) -> Task:
    from descend.bench.cifar10 import load_cifar10
    from descend.bench.data import tensor_splits
    from descend.bench.models import CIFARConv

    arrays = load_cifar10(options.data_dir)
    train, val, test = tensor_splits(arrays, batch_size=128, eval_batch=1000)
    return entry.make(CIFARConv, train, val, test, epochs=10, target=0.65, num_classes=10)
