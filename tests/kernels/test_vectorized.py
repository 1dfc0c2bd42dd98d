"""The fused kernels' loop bodies compile to packed SIMD arithmetic as wide as the machine has.

Numba hands the generated kernel to LLVM; whether LLVM vectorizes the loop over elements
decides whether a step can reach the memory floor. A kernel is compiled afresh (an empty
kernel cache, in a child process: Numba shows no machine code for cached kernels) and its
assembly must do the update's arithmetic on packed registers: 256-bit ``ymm`` registers on a
machine with AVX2, 512-bit ``zmm`` ones where AVX-512 is there too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: The rules the issue names for the floor, with the options that select their main kernel.
RULES = {
    "Adam": {},
    "AdamW": {},
    "Lion": {},
    "SGD": {"momentum": 0.9},
    "RMSprop": {},
    "Adagrad": {},
}

_CHILD = r"""
import collections, json, re, sys, warnings
import torch, descend
from descend.kernels import fused
warnings.simplefilter("ignore")
found = {}
for name, options in json.loads(sys.argv[1]).items():
    params = [torch.randn(4096, requires_grad=True)]
    params[0].grad = torch.randn(4096)
    optimizer = getattr(descend, name)(params, lr=1e-3, backend="fused", **options)
    optimizer.step()
    optimizer.step()
    ops = collections.Counter()
    for key, kernel in fused.KERNELS.kernels.items():
        if key[0] is not optimizer.rule:
            continue
        asm = "".join(kernel.inspect_asm().values())
        for op, register in re.findall(
            r"\b(v(?:fmadd|fmsub|fnmadd|fnmsub|add|sub|mul|div|sqrt|max|min|blendv|and|or|xor)\w*ps)\s+[^\n]*?%([xyz])mm",
            asm,
        ):
            ops[register + "mm"] += 1
    found[name] = dict(ops)
print(json.dumps(found))
"""


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def compiled_ops(tmp_path: Path, child: str, argument: object) -> tuple[dict, str]:
    """Run ``child`` (a script that compiles kernels afresh and prints, as its last line, the
    JSON of the packed operations it found) with ``argument`` as JSON, in a child process with
    empty kernel caches; return what it printed and the widest register name of this CPU
    (the test is skipped without AVX2)."""
    flags = _cpu_flags()
    if "avx2" not in flags:
        pytest.skip("needs an x86-64 CPU with AVX2 (and /proc/cpuinfo) to name the width")
    widest = "zmm" if "avx512f" in flags else "ymm"
    environment = {"DESCEND_CACHE_DIR": str(tmp_path / "kernels"), "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", child, json.dumps(argument)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **environment},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), widest


@pytest.mark.slow
def test_fused_kernels_do_their_arithmetic_on_the_widest_packed_registers(tmp_path):
    found, widest = compiled_ops(tmp_path, _CHILD, RULES)
    for name in RULES:
        assert found[name].get(widest, 0) > 0, (name, found[name])
