"""Errors for misspelt names: what was given, the closest valid name, and every valid one.

Light on purpose (standard library only): the command line uses it before loading torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

#: How many valid names an error lists before it counts the rest.
LISTED = 10

#: Commands that list every valid name of a kind, named by errors whose list is cut short.
LISTED_BY = {"optimizer": "descend optimizers", "functional update": "descend optimizers"}


def _typed_prefix(name: str, valid: Sequence[str]) -> str | None:
    """The valid name whose beginning ``name`` is, spelling slips allowed (``expn`` for
    ``exponential``): each name cut to the length of ``name`` and compared by spelling."""
    scores = {
        option: difflib.SequenceMatcher(None, name, option.lower()[: len(name)]).ratio()
        for option in valid
        if len(option) > len(name)
    }
    best = max(scores.values(), default=0.0)
    matches = [option for option, score in scores.items() if score == best]
    return matches[0] if best >= 0.75 and len(matches) == 1 else None


def closest(name: str, valid: Sequence[str]) -> str | None:
    """The valid name closest to ``name``, or ``None`` when none is close.

    The same name in other letter case, then the one valid name that ``name`` begins (of two
    letters or more: ``expo`` for ``exponential``, too short for a spelling measure to find),
    then the closest spelling, then the one name whose beginning ``name`` misspells (``expn``).
    """
    valid = list(valid)
    folded = name.lower()
    same = [option for option in valid if option.lower() == folded]
    if same:
        return same[0]
    if len(folded.lstrip("-")) >= 2:
        started = [option for option in valid if option.lower().startswith(folded)]
        if len(started) == 1:
            return started[0]
    matches = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    return _typed_prefix(folded, valid) if len(folded.lstrip("-")) >= 4 else None


def unknown_name(
    kind: str, name: str, valid: Sequence[str], spec: str | None = None, also: str = ""
) -> ValueError:
    """The error for a ``kind`` called ``name`` that is not one of ``valid``.

    The suggestion comes first and the valid names after it, the first :data:`LISTED` of them
    (with the command that lists them all, where there is one): ``unknown optimizer 'adamm' in
    spec 'adamm:lr=1'; did you mean 'adam'? valid: sgd, ..., and 19 more (see 'descend
    optimizers')``. ``spec`` is the text the name came from (left out when it is just the
    name); ``also`` is appended to the list of valid names (such as ``"torch.optim.<Class>"``).
    """
    where = f" in spec {spec!r}" if spec is not None and spec.strip() != name else ""
    valid = list(valid)
    # A list a few names longer than LISTED is shown whole: "and 2 more" would save nothing.
    shown = valid if len(valid) <= LISTED + 3 else valid[:LISTED]
    rest = len(valid) - len(shown)
    listed = ", ".join(shown) + (f", and {rest} more" if rest else "")
    listed += f", or {also.removeprefix('or ')}" if also else ""
    if rest and kind in LISTED_BY:
        listed += f" (see '{LISTED_BY[kind]}')"
    match = closest(name, valid)
    hint = f"; did you mean {match!r}?" if match else ";"
    return ValueError(f"unknown {kind} {name!r}{where}{hint} valid: {listed}")


def unknown_arguments(
    owner: str, unknown: Sequence[str], valid: Sequence[str], spec: str | None = None
) -> ValueError:
    """The error for arguments ``owner`` does not take, each with the closest valid one first:
    ``sgd does not take lrr (spec 'sgd:lrr=0.1'); did you mean 'lr'? valid: lr, momentum, ...``.
    """
    where = f" (spec {spec!r})" if spec is not None else ""
    guesses = [(name, closest(name, valid)) for name in unknown]
    found = [(name, match) for name, match in guesses if match]
    if len(unknown) == 1 and found:
        hint = f"; did you mean {found[0][1]!r}?"
    elif found:
        hint = "; did you mean " + ", ".join(f"{m!r} for {n!r}" for n, m in found) + "?"
    else:
        hint = ";"
    listed = ", ".join(valid) or "no arguments"
    return ValueError(f"{owner} does not take {', '.join(unknown)}{where}{hint} valid: {listed}")
