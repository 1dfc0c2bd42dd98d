"""torch.optim.Optimizer classes built from the rules."""

from descend.optim.averaging import WeightAverage
from descend.optim.base import NonFiniteGradientError, RuleOptimizer
from descend.optim.classes import SGD, Adagrad, Adam, AdamW, Momentum, Nesterov, RMSprop
from descend.optim.lbfgs import LBFGS
from descend.optim.scheduling import ScheduledLR

__all__ = [
    "SGD", "Adagrad", "Adam", "AdamW", "Momentum", "Nesterov", "LBFGS", "NonFiniteGradientError",
    "RMSprop", "RuleOptimizer", "ScheduledLR", "WeightAverage",
]
