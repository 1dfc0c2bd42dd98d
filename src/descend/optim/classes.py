"""The optimizer classes written for rules, each exported as ``descend.<Class>``.

A rule needs no class here to be an optimizer:
:func:`descend.optim.generated.optimizer_class` makes one from the rule alone. A class here gives
a rule the constructor of the class it replaces (``torch.optim``'s or the reference
implementation's signature) and is exported as ``descend.<Class>``. Every class's docstring is
its own text plus the equation and arguments generated from its rule
(:mod:`descend.optim.docstrings`): no class restates a default or a range.

The classes are written in four modules: :mod:`descend.optim.dropins` holds the drop-ins for
``torch.optim``'s classes and the notes' velocity-form momentum, :mod:`descend.optim.recent`
the methods newer than the lecture (Lion, Schedule-Free, Muon, Shampoo, SOAP), and
:mod:`descend.optim.curvature` those that fit a curvature model by sampling (PSGD-Kron) and
:mod:`descend.optim.adaptive` the adaptive methods past Adam (MARS, Prodigy). This module
gathers them; its ``__all__`` is the list :data:`descend.optim.CLASSES` is made from.
"""

from __future__ import annotations

from descend.optim import adaptive, curvature, dropins, recent
from descend.optim.recent import MUON_AUXILIARY_DEFAULTS as MUON_AUXILIARY_DEFAULTS

#: Every optimizer class written for a rule, in definition order: each module lists the classes
#: it defines, so a class added to any of them is exported with no list to edit.
__all__ = [*dropins.__all__, *recent.__all__, *curvature.__all__, *adaptive.__all__]
globals().update(
    {
        name: getattr(module, name)
        for module in (dropins, recent, curvature, adaptive)
        for name in module.__all__
    }
)
