"""Benchmark tasks: a model factory, train/validation/test data, a loss and a target.

Built-in tasks (every one offline; nothing is downloaded):

- ``digits-logreg``, ``digits-mlp``: scikit-learn's bundled 8x8 digits, a fixed stratified
  60/20/20 train/validation/test split.
- ``mnist1d-logreg``, ``mnist1d-mlp``, ``mnist1d-cnn``: MNIST-1D (Greydanus, 2020) generated
  locally by the ``mnist1d`` package's generator with its published arguments (seed 42, 4000
  train and 1000 test examples); the last 500 training examples are held out for validation.
  The models are the paper's baselines.
- ``cifar10-cnn``: the standard CIFAR-10 python batches read from a directory the user gives
  (see :mod:`descend.bench.cifar10`); the last 5000 training images are held out for validation.

Your own network: :meth:`Task.custom` takes a model factory, data loaders and a loss.

This module loads no data and no torch until a task is built, so the command line can list
the tasks at once; the data lives in :mod:`descend.bench.data`, the models in
:mod:`descend.bench.models`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
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
        raise ValueError(f"target={target!r} is invalid: expected a validation accuracy in "
                         "(0, 1], such as 0.95")


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
        default_factory=_cross_entropy)
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

    def with_options(self, epochs: int | None = None, batch_size: int | None = None,
                     target: float | None = None) -> Task:
        """The task with a different length, batch size (built-in data only) or target."""
        from descend.bench.data import TensorData

        changes: dict[str, Any] = {}
        if epochs is not None:
            changes["epochs"] = epochs
        if target is not None:
            changes["target"] = target
        if batch_size is not None:
            if not isinstance(self.train, TensorData):
                raise ValueError(f"task {self.name!r} reads batches from your data loaders; set "
                                 "the batch size there")
            changes["train"] = self.train.with_batch_size(batch_size)
        return replace(self, **changes)

    @classmethod
    def custom(cls, name: str, model_factory: Callable[[], nn.Module],
               train_loader: Iterable[Batch], val_loader: Iterable[Batch],
               test_loader: Iterable[Batch] | None = None,
               loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
               epochs: int = 10, target: float | None = None, metric: str = "accuracy",
               num_classes: int | None = None, description: str = "") -> Task:
        """A task from your model factory, data loaders (any iterables of ``(x, y)`` batches,
        re-iterable once per epoch) and loss (default cross-entropy).

        For tasks other than classification pass ``metric="loss"``: tuning then minimizes the
        validation loss and ``target`` is a loss to get below.
        """
        from descend.bench.data import LoaderData

        if not callable(model_factory):
            raise ValueError(f"model_factory={model_factory!r} is not callable: expected a "
                             "function that returns a fresh torch.nn.Module")
        return cls(name, model_factory, LoaderData(train_loader), LoaderData(val_loader),
                   LoaderData(test_loader) if test_loader is not None else None,
                   loss or _cross_entropy(), epochs, target, metric, num_classes,
                   description or "user task")


# -- the built-in tasks ----------------------------------------------------------------------


def _digits(name: str, hidden: list[int], target: float, description: str) -> Task:
    from descend.bench.data import digits_arrays, tensor_splits
    from descend.bench.models import mlp

    train, val, test = tensor_splits(digits_arrays(), batch_size=32)
    return Task(name, lambda: mlp([64, *hidden, 10]), train, val, test, epochs=20,
                target=target, num_classes=10, description=description)


def _mnist1d(name: str, model: str, epochs: int, target: float, description: str) -> Task:
    from descend.bench import models
    from descend.bench.data import mnist1d_arrays, tensor_splits

    factories: dict[str, Callable[[], nn.Module]] = {
        "logreg": lambda: models.mlp([40, 10]),
        "mlp": lambda: models.mlp([40, 100, 100, 10]),
        "cnn": models.MNIST1DConv,
    }
    train, val, test = tensor_splits(mnist1d_arrays(), batch_size=100)
    return Task(name, factories[model], train, val, test, epochs=epochs, target=target,
                num_classes=10, description=description)


def _cifar10(data_dir: str | None) -> Task:
    from descend.bench.cifar10 import load_cifar10
    from descend.bench.data import tensor_splits
    from descend.bench.models import CIFARConv

    arrays = load_cifar10(data_dir)
    train, val, test = tensor_splits(arrays, batch_size=128, eval_batch=1000)
    return Task("cifar10-cnn", CIFARConv, train, val, test, epochs=10, target=0.65,
                num_classes=10, description="CIFAR-10, 3-block CNN",
                details={"data_dir": str(data_dir)})


#: Built-in tasks: name -> (builder taking the data directory, one-line description).
TASKS: dict[str, tuple[Callable[[str | None], Task], str]] = {
    "digits-logreg": (lambda _: _digits("digits-logreg", [], 0.95,
                                        "8x8 digits, logistic regression"),
                      "8x8 digits (scikit-learn), logistic regression"),
    "digits-mlp": (lambda _: _digits("digits-mlp", [128], 0.96,
                                     "8x8 digits, MLP 64-128-10"),
                   "8x8 digits (scikit-learn), MLP 64-128-10"),
    "mnist1d-logreg": (lambda _: _mnist1d("mnist1d-logreg", "logreg", 20, 0.28,
                                          "MNIST-1D, logistic regression"),
                       "MNIST-1D (generated), logistic regression; paper: ~32% test"),
    "mnist1d-mlp": (lambda _: _mnist1d("mnist1d-mlp", "mlp", 60, 0.60,
                                       "MNIST-1D, MLP 40-100-100-10"),
                    "MNIST-1D (generated), MLP 40-100-100-10; paper: ~68% test"),
    "mnist1d-cnn": (lambda _: _mnist1d("mnist1d-cnn", "cnn", 60, 0.85,
                                       "MNIST-1D, 3-layer CNN"),
                    "MNIST-1D (generated), the paper's 3-layer CNN; paper: ~94% test"),
    "cifar10-cnn": (_cifar10, "CIFAR-10 from --data-dir (python batches), 3-block CNN"),
}


def task_names() -> list[str]:
    """Names of the built-in tasks."""
    return list(TASKS)


def check_task_name(name: str) -> None:
    """Raise ``ValueError`` (with the closest valid name) unless ``name`` is a built-in task."""
    if name not in TASKS:
        raise unknown_name("task", name, list(TASKS))


def get_task(name: str, data_dir: str | None = None) -> Task:
    """The built-in task ``name``, its data loaded (``data_dir``: CIFAR-10's directory)."""
    check_task_name(name)
    return TASKS[name][0](data_dir)
