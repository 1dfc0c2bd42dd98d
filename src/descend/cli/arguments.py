"""What every ``descend`` command shares: a parser whose errors are one line, argument types
that name the flag they check, and the check that an output folder can be written.

Standard library only, so that help and argument errors answer before torch loads.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from descend.suggest import closest


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2), not a usage
    block: ``descend bench: error: argument --seeds: ...; see 'descend bench --help'``.

    Its ``description`` and ``epilog`` may be functions returning the text: they are called
    only when the help is printed, so a help that lists a registry (problems, optimizers) does
    not load that registry, and torch with it, for an argument error.
    """

    def format_help(self) -> str:
        """The help text, with a ``description`` or ``epilog`` given as a function written."""
        if callable(self.description):
            self.description = self.description()
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line and exit with status 2."""
        line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {line}; see '{self.prog} --help'\n")

    def unrecognized(self, extras: list[str]) -> NoReturn:
        """Refuse the words in ``extras`` that no argument takes, suggesting the closest of
        this parser's options to the first misspelt one (``--quik``: ``--quick``)."""
        options = [option for action in self._actions for option in action.option_strings]
        hint = ""
        for word in extras:
            if word.startswith("-"):
                match = closest(word.partition("=")[0], options)
                if match:
                    hint = f"; did you mean {match!r}?"
                    break
        self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")

    def _check_value(self, action: argparse.Action, value: object) -> None:
        # argparse's message for a bad choice, with the closest choice suggested.
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(repr, action.choices))
            match = closest(str(value), [str(choice) for choice in action.choices])
            hint = f"; did you mean {match!r}?" if match else ""
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r}{hint} (choose from {choices})"
            )


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, budgets that may be empty)."""
    return _integer(text, 0)


def positive_int(text: str) -> int:
    """An integer >= 1 (counts of epochs, seeds, steps, threads)."""
    return _integer(text, 1)


def finite_float(text: str) -> float:
    """A finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, tolerances)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def non_empty(text: str) -> str:
    """A value that is not empty or blank (a path, a URL, a spec): an empty one would be read
    as the current folder, or as no value at all, and a run would go somewhere not asked for."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a non-empty value, got {text!r}")
    return text


def output_folder(path: str | Path, flag: str = "--out") -> Path:
    """The folder ``path``, created if needed, once a file could be written in it.

    Checked before any long work starts, so a run never ends unable to save what it computed.
    Raises ``ValueError`` naming ``flag`` when ``path`` is a file, or the folder cannot be
    created or written to.
    """
    if not str(path).strip():
        # Path("") is the current folder: a report would land there unasked.
        raise ValueError(
            f"{flag}={str(path)!r} is invalid: expected a folder path ('.' for the current folder)"
        )
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag}={str(path)!r} is invalid: it exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(
            f"{flag}={str(path)!r} is invalid: cannot write there ({reason}); "
            "expected a folder you can write to"
        ) from None
    return folder


def print_error(prog: str, message: str) -> None:
    """Print ``prog: error: message`` as one line on stderr."""
    line = " ".join(str(message).split())
    print(f"{prog}: error: {line}", file=sys.stderr)
