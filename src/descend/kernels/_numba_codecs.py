"""The ``numba`` column of :data:`descend.kernels.codec_elements.CODEC_PRIMITIVES` that Numba
lacks: a branch-free select and a table read. (``float_bits``, ``bits_float`` and the correctly
rounded division are :mod:`descend.kernels._numba_support`'s; ``f32``, ``to_float32`` and
``to_int`` are NumPy's scalar types.) Generated fused kernels compile the codecs of
:mod:`descend.kernels.codec_elements` with these, each inlined, so a loop over them vectorizes.
Imported only by generated kernels, so ``import descend`` never loads Numba.
"""

from __future__ import annotations

from typing import Any

from numba import njit

_inline = njit(inline="always", error_model="numpy")


@_inline
def where(condition: Any, a: Any, b: Any) -> Any:
    """``a`` if ``condition`` else ``b`` (a select: both are already computed)."""
    return a if condition else b


@_inline
def gather(table: Any, index: Any) -> Any:
    """``table[index]``."""
    return table[index]
