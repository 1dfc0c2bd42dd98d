"""MNIST-1D baselines with the paper's protocol, next to its published test accuracies.

The paper trains on all 4000 training examples for 6000 steps of batch 100 with Adam at
lr 1e-2 and reports about 32% (logistic regression), 68% (MLP) and 94% (CNN) test accuracy.
This script does the same with the data and models of ``descend bench``'s MNIST-1D tasks.

    PYTHONPATH=src python benchmarks/mnist1d_baselines.py [--steps 6000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import descend
from descend.bench.data import mnist1d_arrays
from descend.bench.models import MNIST1DConv, mlp

PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94}
MODELS = {
    "logistic": lambda: mlp([40, 10]),
    "mlp": lambda: mlp([40, 100, 100, 10]),
    "cnn": MNIST1DConv,
}


def run(name: str, steps: int, seed: int) -> tuple[float, float]:
    """Test accuracy and seconds of one model trained with the paper's protocol."""
    arrays = mnist1d_arrays()
    x = torch.from_numpy(np.concatenate([arrays["x_train"], arrays["x_val"]]))
    y = torch.from_numpy(np.concatenate([arrays["y_train"], arrays["y_val"]]))
    x_test, y_test = torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])
    torch.manual_seed(seed)
    model = MODELS[name]()
    optimizer = descend.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(len(x), (100,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    return accuracy, seconds


def main() -> None:
    """Print one line per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seeds", type=int, default=3)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'model':10} {'test accuracy (mean ± std)':>28} {'published':>10} {'s/run':>7}")
    for name in MODELS:
        results = [run(name, arguments.steps, seed) for seed in range(arguments.seeds)]
        accuracies = np.array([accuracy for accuracy, _ in results])
        seconds = np.mean([second for _, second in results])
        print(
            f"{name:10} {accuracies.mean() * 100:21.1f} ± {accuracies.std() * 100:4.1f}"
            f" {PUBLISHED[name] * 100:9.0f}% {seconds:7.1f}"
        )


if __name__ == "__main__":
    main()
