"""descend: optimizers for neural networks, and a lab that shows why each one exists.

- ``descend.SGD``, ``Adagrad``, ``RMSprop``, ``Adam``, ``AdamW``: drop-in ``torch.optim`` classes
  (every class of :mod:`descend.optim.classes` is exported here).
- ``descend.NAdam``, ``RAdam``, ``Muon`` (drop-in ``torch.optim``), ``Lion`` (``lion_pytorch``),
  ``SGDScheduleFree``, ``AdamWScheduleFree`` (``schedulefree``): the methods after the lecture.
- ``descend.LBFGS``: drop-in ``torch.optim.LBFGS`` (same iterates), with a non-finite guard.
- ``descend.secondorder``: Newton, BFGS and L-BFGS on NumPy vectors, with convergence histories.
- ``descend.Momentum``, ``descend.Nesterov``: the lecture's velocity forms as torch optimizers.
- ``descend.functional``: the CS231n-style NumPy API, ``update(w, dw, config) -> (w, config)``.
- ``descend.schedules``: learning-rate schedules; ``descend.ScheduledLR`` drives any optimizer.
- ``descend.WeightAverage``: Polyak / exponential averaging of weights.
- ``descend.rules``: the math of each optimizer, written once.
"""

from descend import functional, optim, rules, schedules, secondorder
from descend.optim import LBFGS, NonFiniteGradientError, ScheduledLR, WeightAverage

# The rule optimizers (``descend.Adam``, ...), as defined in descend.optim.classes.
globals().update(optim.CLASSES)

__version__ = "0.1.0"

__all__ = [*optim.CLASSES, "LBFGS", "NonFiniteGradientError", "ScheduledLR", "WeightAverage",
           "functional", "rules", "schedules", "secondorder"]
