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
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorData:
    """An in-memory dataset served in mini-batches, shuffled by a caller-given generator.

    Faster than a ``DataLoader`` for the small built-in datasets, which is most of a tiny
    model's step time.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"inputs ({len(inputs)}) and targets ({len(targets)}) differ in "
                             "length")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected >= 1")
        self.inputs, self.targets, self.batch_size = inputs, targets, batch_size

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(self, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Mini-batches in a random order (``generator`` given) or in order (``None``)."""
        count = len(self.inputs)
        order = (torch.randperm(count, generator=generator) if generator is not None
                 else torch.arange(count))
        for start in range(0, count, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.inputs[index], self.targets[index]

    def with_batch_size(self, batch_size: int) -> TensorData:
        """The same data in batches of ``batch_size``."""
        return TensorData(self.inputs, self.targets, batch_size)


class LoaderData:
    """A user's iterable of ``(inputs, targets)`` batches, such as a ``DataLoader``.

    The loader does its own shuffling; the generator argument of :meth:`batches` is ignored.
    """

    def __init__(self, loader: Iterable[Batch]) -> None:
        self.loader = loader

    def __len__(self) -> int:
        dataset = getattr(self.loader, "dataset", None)
        return len(dataset) if dataset is not None else 0

    def batches(self, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """The loader's batches."""
        for batch in self.loader:
            inputs, targets = batch[0], batch[1]
            yield inputs, targets


Data = TensorData | LoaderData


@dataclass(frozen=True)
class Task:
    """What a benchmark trains: a model factory, data splits, a loss, and how to score.

    Attributes:
        name: the task's name in tables and study names.
        model_factory: builds a fresh model (called after the run's seed is set).
        train, val, test: the splits (``test`` may be ``None``: then no test accuracy).
        loss: ``loss(outputs, targets) -> scalar tensor``.
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
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy
    epochs: int = 10
    target: float | None = None
    metric: str = "accuracy"
    num_classes: int | None = None
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in ("accuracy", "loss"):
            raise ValueError(f"metric={self.metric!r} is invalid: expected 'accuracy' or 'loss'")
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs!r} is invalid: expected >= 1")

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
        if not callable(model_factory):
            raise ValueError(f"model_factory={model_factory!r} is not callable: expected a "
                             "function that returns a fresh torch.nn.Module")
        return cls(name, model_factory, LoaderData(train_loader), LoaderData(val_loader),
                   LoaderData(test_loader) if test_loader is not None else None,
                   loss or nn.functional.cross_entropy, epochs, target, metric, num_classes,
                   description or "user task")


# -- data ------------------------------------------------------------------------------------


def _split_indices(labels: np.ndarray, fractions: tuple[float, float], seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed stratified train/validation/test split of ``labels``' indices."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(fractions[0] * len(index)))
        n_val = int(round(fractions[1] * len(index)))
        train.append(index[:n_train])
        val.append(index[n_train:n_train + n_val])
        test.append(index[n_train + n_val:])
    return tuple(np.sort(np.concatenate(part)) for part in (train, val, test))


@lru_cache(maxsize=1)
def digits_arrays() -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1], split 60/20/20 (fixed, stratified)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    inputs = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train, val, test = _split_indices(labels, (0.6, 0.2), seed=0)
    return {"x_train": inputs[train], "y_train": labels[train], "x_val": inputs[val],
            "y_val": labels[val], "x_test": inputs[test], "y_test": labels[test]}


@lru_cache(maxsize=1)
def mnist1d_arrays() -> dict[str, np.ndarray]:
    """MNIST-1D generated with the ``mnist1d`` package's published arguments (seed 42).

    Uses the package's generator only (never its download path). The generator seeds NumPy's
    and Python's global random states, so both are restored afterwards.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise ValueError("the MNIST-1D tasks need the mnist1d package: pip install mnist1d"
                         ) from error
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    held_out = 500
    return {"x_train": x[:-held_out], "y_train": y[:-held_out], "x_val": x[-held_out:],
            "y_val": y[-held_out:], "x_test": data["x_test"].astype(np.float32),
            "y_test": data["y_test"].astype(np.int64)}


def _tensor_splits(arrays: dict[str, np.ndarray], batch_size: int, eval_batch: int = 1000
                   ) -> tuple[TensorData, TensorData, TensorData]:
    def split(name: str, size: int) -> TensorData:
        return TensorData(torch.from_numpy(arrays[f"x_{name}"]),
                          torch.from_numpy(arrays[f"y_{name}"]), size)

    return split("train", batch_size), split("val", eval_batch), split("test", eval_batch)


# -- models ----------------------------------------------------------------------------------


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


class MNIST1DConv(nn.Module):
    """The MNIST-1D paper's CNN: three strided 1-D convolutions (25 channels) and a linear head."""

    def __init__(self, length: int = 40, channels: int = 25, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        for _ in range(3):
            length = (length + 2 - (5 if _ == 0 else 3)) // 2 + 1
        self.linear = nn.Linear(channels * length, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of signals of shape ``(batch, length)``."""
        h = x.view(x.shape[0], 1, x.shape[-1])
        h = self.conv3(self.conv2(self.conv1(h).relu()).relu()).relu()
        return self.linear(h.flatten(1))


class CIFARConv(nn.Module):
    """A small CIFAR-10 CNN: three conv-ReLU-maxpool blocks (32, 64, 64 channels), two linear."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
                                        nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images of shape ``(batch, 3, 32, 32)``."""
        return self.classifier(self.features(x))


# -- the registry ----------------------------------------------------------------------------


def _digits(name: str, hidden: list[int], target: float, description: str) -> Task:
    train, val, test = _tensor_splits(digits_arrays(), batch_size=32)
    return Task(name, lambda: mlp([64, *hidden, 10]), train, val, test, epochs=20,
                target=target, num_classes=10, description=description)


def _mnist1d(name: str, factory: Callable[[], nn.Module], epochs: int, target: float,
             description: str) -> Task:
    train, val, test = _tensor_splits(mnist1d_arrays(), batch_size=100)
    return Task(name, factory, train, val, test, epochs=epochs, target=target, num_classes=10,
                description=description)


def _cifar10(data_dir: str | None) -> Task:
    from descend.bench.cifar10 import load_cifar10

    arrays = load_cifar10(data_dir)
    train, val, test = _tensor_splits(arrays, batch_size=128, eval_batch=1000)
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
    "mnist1d-logreg": (lambda _: _mnist1d("mnist1d-logreg", lambda: mlp([40, 10]), 20, 0.28,
                                          "MNIST-1D, logistic regression"),
                       "MNIST-1D (generated), logistic regression; paper: ~32% test"),
    "mnist1d-mlp": (lambda _: _mnist1d("mnist1d-mlp", lambda: mlp([40, 100, 100, 10]), 60,
                                       0.60, "MNIST-1D, MLP 40-100-100-10"),
                    "MNIST-1D (generated), MLP 40-100-100-10; paper: ~68% test"),
    "mnist1d-cnn": (lambda _: _mnist1d("mnist1d-cnn", MNIST1DConv, 60, 0.85,
                                       "MNIST-1D, 3-layer CNN"),
                    "MNIST-1D (generated), the paper's 3-layer CNN; paper: ~94% test"),
    "cifar10-cnn": (_cifar10, "CIFAR-10 from --data-dir (python batches), 3-block CNN"),
}


def task_names() -> list[str]:
    """Names of the built-in tasks."""
    return list(TASKS)


def get_task(name: str, data_dir: str | None = None) -> Task:
    """The built-in task ``name``, its data loaded (``data_dir``: CIFAR-10's directory)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name][0](data_dir)
