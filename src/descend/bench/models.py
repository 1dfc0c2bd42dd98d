"""The built-in tasks' models: the MNIST-1D paper's baselines and a small CIFAR-10 CNN."""

from __future__ import annotations

import torch
from torch import nn


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
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images of shape ``(batch, 3, 32, 32)``."""
        return self.classifier(self.features(x))
