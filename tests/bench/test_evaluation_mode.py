"""The benchmark evaluates Schedule-Free optimizers at their averaged weights."""

from __future__ import annotations

import torch

import descend
from descend.bench import Task
from descend.bench.training import evaluate, train
from descend.optim import evaluation_mode
from descend.specs import OptimizerSpec


class RecordingScheduleFree(descend.SGDScheduleFree):
    """Schedule-Free SGD that remembers itself and counts its mode switches."""

    built: list[RecordingScheduleFree] = []

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.switches = []
        RecordingScheduleFree.built.append(self)

    def eval(self):
        self.switches.append("eval")
        super().eval()

    def train(self):
        self.switches.append("train")
        super().train()


def test_validation_and_test_metrics_use_the_evaluation_weights():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 5, generator=generator)
    targets = (inputs[:, 0] - inputs[:, 2] > 0).long()
    dataset = torch.utils.data.TensorDataset(inputs, targets)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32)
    models = []

    def make_model():
        models.append(torch.nn.Linear(5, 2))
        return models[-1]

    task = Task.custom("halfplane", make_model, loader, loader, loader, epochs=3)
    spec = OptimizerSpec("sf_sgd:lr=0.5", "sf_sgd", RecordingScheduleFree, {"lr": 0.5})
    result = train(task, spec, seed=0)
    optimizer, model = RecordingScheduleFree.built[-1], models[-1]
    # One evaluation per epoch and one on the test split, each between eval() and train().
    assert optimizer.switches == ["eval", "train"] * 4
    assert optimizer.param_groups[0]["train_mode"] is True
    at_y = evaluate(model, task.test, task)[0]
    with evaluation_mode(optimizer):
        at_x = evaluate(model, task.test, task)[0]
    assert result.test_loss == at_x != at_y
