"""One colour per optimizer, the same in every figure of the report and on the playground page.

Runs are grouped into families by the names their optimizer goes by (descend's spec names, the
functional API's, ``torch.optim``'s classes, the second-order methods), so SGD+Momentum has one
colour whether descend's class, ``torch.optim.SGD(momentum=0.9)`` or the functional update ran
it.
"""

from __future__ import annotations

from typing import Any

#: Optimizer families by the names they go by: descend's spec names, the functional API's,
#: torch.optim's classes and the second-order methods. ``sgd`` with momentum is ``momentum``
#: (or ``nesterov``): one colour per method of the lecture, whatever front end ran it.
FAMILIES = {
    "sgd": "sgd", "torch.optim.SGD": "sgd", "functional.sgd": "sgd",
    "sgd_momentum": "momentum", "momentum": "momentum", "functional.sgd_momentum": "momentum",
    "nesterov": "nesterov", "nesterov_momentum": "nesterov",
    "functional.nesterov_momentum": "nesterov",
    "adagrad": "adagrad", "torch.optim.Adagrad": "adagrad", "functional.adagrad": "adagrad",
    "rmsprop": "rmsprop", "torch.optim.RMSprop": "rmsprop", "functional.rmsprop": "rmsprop",
    "adam": "adam", "torch.optim.Adam": "adam", "functional.adam": "adam",
    "adamw": "adamw", "torch.optim.AdamW": "adamw", "functional.adamw": "adamw",
    "newton": "newton", "bfgs": "bfgs", "lbfgs": "lbfgs", "torch.optim.LBFGS": "lbfgs",
}


def family_of(name: str, arguments: dict[str, Any] | None = None) -> str | None:
    """The optimizer family of a method name (None for one the lab has no colour for);
    plain SGD given a momentum is ``momentum``, or ``nesterov`` with ``nesterov=True``."""
    family = FAMILIES.get(name)
    arguments = arguments or {}
    if family == "sgd" and arguments.get("momentum", 0):
        return "nesterov" if arguments.get("nesterov") else "momentum"
    return family


#: One colour per optimizer family: Paul Tol's "muted" qualitative scheme, whose colours stay
#: distinct under the common colour-vision deficiencies, plus a dark grey.
FAMILY_COLORS = {
    "sgd": "#332288", "momentum": "#88CCEE", "nesterov": "#44AA99", "adagrad": "#117733",
    "rmsprop": "#999933", "adam": "#CC6677", "adamw": "#882255", "newton": "#DDCC77",
    "bfgs": "#AA4499", "lbfgs": "#555555",
}
#: Colours, in turn, for runs of an optimizer the lab has no family for.
OTHER_COLORS = ("#000000", "#8C8C8C", "#6B4E16")
