"""Built-in tasks load the right data and train to above chance in a few epochs."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from descend.bench import data
from descend.bench.cifar10 import load_cifar10, read_batch
from descend.bench.tasks import Task, get_task
from descend.bench.training import train
from descend.specs import parse_optimizer


def test_digits_split_is_fixed_stratified_and_disjoint():
    arrays = data.digits_arrays()
    sizes = [len(arrays[f"y_{name}"]) for name in ("train", "val", "test")]
    assert sum(sizes) == 1797
    assert abs(sizes[0] - 0.6 * 1797) < 10 and abs(sizes[1] - 0.2 * 1797) < 10
    rows = {name: {row.tobytes() for row in arrays[f"x_{name}"]} for name in ("train", "test")}
    # A few digits images are exact duplicates in the dataset; the splits share almost none.
    assert len(rows["train"] & rows["test"]) <= 3
    for name in ("train", "val", "test"):
        counts = np.bincount(arrays[f"y_{name}"], minlength=10)
        assert counts.min() > 0.8 * counts.mean()
    assert arrays["x_train"].min() >= 0.0 and arrays["x_train"].max() <= 1.0


def test_mnist1d_is_the_published_generator_and_leaves_random_state_alone():
    np.random.seed(123)
    random.seed(123)
    expected_numpy, expected_python = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    data.mnist1d_arrays.cache_clear()
    arrays = data.mnist1d_arrays()
    assert (np.random.rand(), random.random()) == (expected_numpy, expected_python)
    assert arrays["x_train"].shape == (3500, 40) and arrays["x_val"].shape == (500, 40)
    assert arrays["x_test"].shape == (1000, 40)
    assert (
        np.bincount(np.concatenate([arrays["y_train"], arrays["y_val"], arrays["y_test"]])).tolist()
        == [500] * 10
    )
    # The generator standardizes the whole set.
    everything = np.concatenate([arrays["x_train"], arrays["x_val"], arrays["x_test"]])
    assert abs(everything.mean()) < 1e-4 and abs(everything.std() - 1) < 1e-3


@pytest.mark.parametrize(
    "name, spec, epochs, above",
    [
        ("digits-logreg", "sgd:lr=0.5", 2, 0.8),
        ("digits-mlp", "adam:lr=3e-3", 2, 0.8),
        ("mnist1d-logreg", "adam:lr=1e-2", 2, 0.2),
        ("mnist1d-mlp", "adam:lr=1e-2", 3, 0.3),
        ("mnist1d-cnn", "adam:lr=1e-2", 3, 0.3),
    ],
)
def test_builtin_tasks_train_above_chance(name, spec, epochs, above):
    task = get_task(name)
    result = train(task, parse_optimizer(spec), seed=0, epochs=epochs)
    assert not result.diverged and len(result.history) == epochs
    assert result.history[-1].val_accuracy > above
    assert result.test_accuracy > above
    assert result.history[-1].train_loss < result.history[0].train_loss * 1.01 or epochs == 1
    assert all(0 < ratio < 1 for ratio in result.history[-1].update_ratio.values())


def test_cifar10_loader_reads_the_standard_format_and_trains(cifar_dir):
    arrays = load_cifar10(cifar_dir)
    assert arrays["x_train"].shape == (108, 3, 32, 32) and arrays["x_val"].shape == (12, 3, 32, 32)
    assert arrays["x_test"].shape == (40, 3, 32, 32)
    images, labels = read_batch(cifar_dir / "test_batch")
    # Channel-major rows: the first 1024 values are red.
    with open(cifar_dir / "test_batch", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    assert np.array_equal(images[0, 0].ravel(), raw[b"data"][0, :1024])
    assert labels.tolist() == raw[b"labels"]
    task = get_task("cifar10-cnn", data_dir=str(cifar_dir)).with_options(batch_size=16)
    result = train(task, parse_optimizer("adam:lr=3e-3"), seed=0, epochs=4)
    assert result.test_accuracy > 0.3


def test_cifar10_bad_folders_and_files_say_what_is_wrong(tmp_path, cifar_dir):
    with pytest.raises(ValueError, match="needs --data-dir"):
        get_task("cifar10-cnn")
    with pytest.raises(ValueError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    (cifar_dir / "test_batch").unlink()
    with pytest.raises(ValueError, match="lacks test_batch"):
        load_cifar10(cifar_dir)
    (cifar_dir / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="malformed CIFAR-10 batch file .*test_batch"):
        load_cifar10(cifar_dir)
    with open(cifar_dir / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ValueError, match=r"shape \(n, 3072\)"):
        load_cifar10(cifar_dir)


def test_unknown_task_lists_the_valid_ones_and_the_closest():
    with pytest.raises(ValueError, match="unknown task 'digits'.*digits-mlp"):
        get_task("digits")
    with pytest.raises(ValueError, match="did you mean 'mnist1d-cnn'"):
        get_task("mnist1d_cnn")


@pytest.mark.parametrize("target", [0.0, 1.5, 5, float("nan"), float("inf")])
def test_accuracy_targets_outside_0_1_are_refused(target):
    with pytest.raises(ValueError, match="target=.* is invalid"):
        get_task("digits-logreg").with_options(target=target)


def test_custom_task_from_data_loaders_trains():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 5, generator=generator)
    targets = (inputs[:, 0] + inputs[:, 1] > 0).long()
    dataset = torch.utils.data.TensorDataset(inputs, targets)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True)
    task = Task.custom(
        "halfplane",
        lambda: torch.nn.Linear(5, 2),
        loader,
        torch.utils.data.DataLoader(dataset, batch_size=128),
        epochs=3,
    )
    result = train(task, parse_optimizer("sgd:lr=0.5"), seed=0)
    assert result.history[-1].val_accuracy > 0.9
    assert result.test_accuracy is None
    with pytest.raises(ValueError, match="not callable"):
        Task.custom("bad", None, loader, loader)
