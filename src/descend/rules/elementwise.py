"""The non-arithmetic functions an update rule may call.

Rules call ``sqrt`` and ``maximum`` through this module's names. Bound here to NumPy, they work on
arrays and on Python or NumPy scalars (and inside Numba-compiled code); an executor for another
array type (torch tensors) rebinds the names with :func:`rebind` instead of re-typing the rule.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import numpy as np

sqrt = np.sqrt
maximum = np.maximum

#: The names a rule may use beyond arithmetic; an executor must provide each of them.
ELEMENTWISE_NAMES = ("sqrt", "maximum")


def rebind(function: Callable, **implementations: Callable) -> Callable:
    """A copy of ``function`` whose global ``sqrt``/``maximum`` are the given implementations."""
    missing = set(ELEMENTWISE_NAMES) - set(implementations)
    if missing:
        raise TypeError(f"rebind needs implementations of {sorted(missing)}")
    namespace = dict(function.__globals__)
    namespace.update(implementations)
    copy = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__,
        function.__closure__,
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__doc__ = function.__doc__
    copy.__qualname__ = function.__qualname__
    return copy
