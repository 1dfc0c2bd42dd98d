"""Errors for misspelt names: what was given, the closest valid name, and every valid one.

Light on purpose (standard library only): the command line uses it before loading torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def closest(name: str, valid: Sequence[str]) -> str | None:
    """The valid name closest to ``name``, or ``None`` when none is close.

    The same name in other letter case, then the one valid name that ``name`` begins (of three
    letters or more: ``expo`` for ``exponential``, too short for a spelling measure to find),
    then the closest spelling.
    """
    valid = list(valid)
    folded = name.lower()
    same = [option for option in valid if option.lower() == folded]
    if same:
        return same[0]
    if len(folded.lstrip("-")) >= 3:
        started = [option for option in valid if option.lower().startswith(folded)]
        if len(started) == 1:
            return started[0]
    matches = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_name(
    kind: str, name: str, valid: Sequence[str], spec: str | None = None, also: str = ""
) -> ValueError:
    """The error for a ``kind`` called ``name`` that is not one of ``valid``.

    ``unknown optimizer 'adamm' in spec 'adamm:lr=1'; valid: sgd, ..., adam; did you mean
    'adam'?``. ``spec`` is the text the name came from (left out when it is just the name);
    ``also`` is appended to the list of valid names (such as ``"or torch.optim.<Class>"``).
    """
    where = f" in spec {spec!r}" if spec is not None and spec.strip() != name else ""
    listed = ", ".join(valid) + (f", {also}" if also else "")
    match = closest(name, valid)
    hint = f"; did you mean {match!r}?" if match else ""
    return ValueError(f"unknown {kind} {name!r}{where}; valid: {listed}{hint}")
