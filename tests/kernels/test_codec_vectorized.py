"""The fused kernels' codecs compile to packed 32-bit arithmetic as wide as the machine has.

The codec language keeps integers below ``2**32``; Numba would type them as 64-bit and LLVM
would vectorize them in 64-bit lanes (half the elements per register, and 64-bit multiplies
AVX2 lacks). :mod:`descend.kernels._numba_codecs` traces the codecs into 32-bit code instead,
and the int8 map is arithmetic, not a table. As in ``test_vectorized.py``, kernels are compiled
afresh in a child process (Numba shows no machine code for cached kernels) and their assembly
is read.
"""

from __future__ import annotations

import pytest

from tests.kernels.test_vectorized import compiled_ops

_CHILD = r"""
import collections, json, re, sys, warnings
import torch, descend
from descend.kernels import fused
warnings.simplefilter("ignore")
found = {}
for label, precision in json.loads(sys.argv[1]).items():
    params = [torch.randn(8192, requires_grad=True)]
    params[0].grad = torch.randn(8192)
    optimizer = descend.AdamW(params, lr=1e-3, backend="fused", state_precision=precision)
    optimizer.step()
    optimizer.step()
    formats = tuple(precision.values()) if isinstance(precision, dict) else (precision,) * 2
    ops = collections.Counter()
    for key, kernel in fused.KERNELS.kernels.items():
        if key[0] is optimizer.rule and key[1].formats[:2] == formats:
            asm = "".join(kernel.inspect_asm().values())
            for op, register in re.findall(r"\b(v\w+)\s+[^\n]*?%([xyz])mm", asm):
                ops[f"{op} {register}mm"] += 1
    found[label] = dict(ops)
print(json.dumps(found))
"""

FORMATS = ["bfloat16", "bf16+ecc", "int8"]


@pytest.mark.slow
def test_codecs_run_in_packed_32_bit_lanes_on_the_widest_registers(tmp_path):
    found, widest = compiled_ops(tmp_path, _CHILD, {name: name for name in FORMATS})
    for name in FORMATS:
        ops = found[name]
        assert ops, name
        # Shifts of 32-bit lanes on the widest registers: the codecs' bit arithmetic.
        assert ops.get(f"vpsrld {widest}", 0) > 0, (name, ops)
        # No 64-bit lanes for the codecs' integers: no packed 64-bit shifts or multiplies.
        lanes64 = [op for op in ops if op.split()[0] in {"vpsrlq", "vpsllq", "vpmullq"}]
        assert not [op for op in lanes64 if not op.endswith("xmm")], (name, ops)
    # The stochastic rounding's hash multiplies 32-bit lanes; the int8 map is arithmetic: its
    # encoder rounds packed floats to integers, its decoder converts packed codes to floats.
    assert found["bfloat16"].get(f"vpmulld {widest}", 0) > 0
    assert found["int8"].get(f"vcvttps2dq {widest}", 0) > 0
    assert found["int8"].get(f"vcvtdq2ps {widest}", 0) > 0


@pytest.mark.slow
def test_two_bf16_slots_hash_once_per_element(tmp_path):
    """AdamW's two bf16 moments round with the halves of one hash per element
    (:func:`descend.kernels.codecs.shared_streams`): its kernel multiplies 32-bit lanes as
    often as one whose second moment is rounded to nearest (no hash), where a hash per slot
    had twice as many."""
    found, widest = compiled_ops(
        tmp_path,
        _CHILD,
        {
            "both": "bfloat16",
            "one": {"exp_avg": "bfloat16", "exp_avg_sq": "bfloat16-nearest"},
        },
    )
    multiplies = {label: ops.get(f"vpmulld {widest}", 0) for label, ops in found.items()}
    assert multiplies["one"] > 0, found
    assert multiplies["both"] == multiplies["one"], multiplies
