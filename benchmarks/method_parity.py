"""The parity table of the newer methods: the worst relative difference, parameters and state,
of each method against each reference implementation, per option set and executor.

Runs the parity tests of Shampoo, SOAP, PSGD-Kron, AdEMAMix, MARS, Prodigy and caution (their
reference runs included, which the fast lane leaves out) with ``$DESCEND_PARITY_LOG`` set, so
every comparison records the errors behind its pass or fail (:func:`descend.testing.record_parity`),
and prints them as a Markdown table. A difference is relative to the largest magnitude that
tensor took during the run. Rows marked "control" are the tests' deliberately wrong copies
(their figure must lie far above the tolerance the test holds the right one to) and, where a
test runs both, the right twin beside them.

    python benchmarks/method_parity.py [--fast] [--files test_soap.py,test_mars.py] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "optim"

#: Test file -> (method, reference it is held to).
FILES: dict[str, tuple[str, str]] = {
    "test_shampoo.py": ("Shampoo", "pytorch_optimizer 4.1.0"),
    "test_soap.py": ("SOAP", "pytorch_optimizer 4.1.0"),
    "test_heavyball_soap.py": ("SOAP", "HeavyBall 3.2.1"),
    "test_psgd_kron.py": ("PSGD-Kron", "kron-torch 0.3.3"),
    "test_heavyball_psgd.py": ("PSGD-Kron", "HeavyBall 3.2.1"),
    "test_ademamix.py": ("AdEMAMix", "pytorch_optimizer 4.1.0"),
    "test_mars.py": ("MARS", "pytorch_optimizer 4.1.0"),
    "test_prodigy.py": ("Prodigy", "prodigyopt 1.1.2"),
    "test_cautious.py": ("caution", "torch.optim + the mask; pytorch_optimizer"),
    "test_heavyball_elementwise.py": ("AdEMAMix, MARS, caution", "HeavyBall 3.2.1"),
}
#: Words in a test's name that mark a control: a deliberately wrong copy (its figure must lie
#: far above the tolerance) or, in the same test, its right twin.
CONTROL = re.compile(r"wrong|broken|caught|fails")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; a bad value is one line on stderr and exit 2."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="only the fast lane's parity tests")
    parser.add_argument("--files", default="", help="comma-separated test files (default all)")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.files.split(",") if name.strip()] or list(FILES)
    unknown = [name for name in chosen if name not in FILES]
    if unknown:
        parser.error(f"--files: unknown {', '.join(unknown)}; allowed: {', '.join(FILES)}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    args.chosen = [name for name in chosen if (TESTS / name).exists()]
    return args


def merged(lines: Iterable[str]) -> dict[tuple[str, str], dict[str, float | None]]:
    """The log's records by test and dtype (a property test may draw both), each error the
    worst over the records. A record without a dtype (state a test compares its own way,
    recorded apart from the parameters) joins every dtype row of its test."""
    records = [json.loads(line) for line in lines if line.strip()]
    dtypes: dict[str, set[str]] = {}
    for record in records:
        dtypes.setdefault(record["test"], set())
        if record.get("dtype"):
            dtypes[record["test"]].add(record["dtype"])
    rows: dict[tuple[str, str], dict[str, float | None]] = {}
    for record in records:
        test = record["test"]
        kinds = [record["dtype"]] if record.get("dtype") else sorted(dtypes[test]) or ["?"]
        for kind in kinds:
            row = rows.setdefault((test, kind), {"params": None, "state": None})
            for field in ("params", "state"):
                value = record[field]
                if value is not None:
                    row[field] = value if row[field] is None else max(row[field], value)
    return rows


def figure(value: float | None) -> str:
    """A relative error as the table shows it."""
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.1e}"


def table(rows: dict[tuple[str, str], dict[str, float | None]]) -> list[str]:
    """Markdown rows: method, reference, case, dtype, params, state; then the worst case per
    method, reference and dtype (controls left out)."""
    lines = [
        "| method | reference | test [case] | dtype | params | state |",
        "|---|---|---|---|---|---|",
    ]
    worst: dict[tuple[str, str, str], list[float]] = {}
    for (test, dtype), errors in sorted(rows.items()):
        path, _, name = test.partition("::")
        method, reference = FILES.get(Path(path).name, (Path(path).stem, "?"))
        control = bool(CONTROL.search(name.split("[")[0]))
        label = name.removeprefix("test_") + (" (control)" if control else "")
        lines.append(
            f"| {method} | {reference} | {label} | {dtype} | {figure(errors['params'])} | "
            f"{figure(errors['state'])} |"
        )
        if not control:
            summary = worst.setdefault((method, reference, dtype), [0.0, 0.0, 0.0])
            summary[0] = max(summary[0], errors["params"] or 0.0)
            summary[1] = max(summary[1], errors["state"] or 0.0)
            summary[2] += 1
    lines += ["", "| method | reference | dtype | test cases | worst params | worst state |"]
    lines.append("|---|---|---|---|---|---|")
    for (method, reference, dtype), (params, state, count) in sorted(worst.items()):
        lines.append(
            f"| {method} | {reference} | {dtype} | {int(count)} | {figure(params)} | "
            f"{figure(state)} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """Run the parity tests, then print the table."""
    args = parse(argv)
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "parity.jsonl"
        log.touch()
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            str(args.workers),
            "-k",
            "match or wrong or broken or caught",
            *(["-m", "not slow"] if args.fast else []),
            *(str(TESTS / name) for name in args.chosen),
        ]
        print("running " + " ".join(command[3:]), file=sys.stderr, flush=True)
        environment = {**os.environ, "DESCEND_PARITY_LOG": str(log)}
        finished = subprocess.run(command, cwd=ROOT, env=environment, check=False)
        tests = merged(log.read_text(encoding="utf-8").splitlines())
    print("\n".join(table(tests)))
    if finished.returncode != 0:
        print(f"pytest exited with {finished.returncode}: see its output above", file=sys.stderr)
        raise SystemExit(finished.returncode)


if __name__ == "__main__":
    main()
