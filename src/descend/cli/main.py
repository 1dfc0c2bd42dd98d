"""``descend``: the command-line entry point. Each subcommand lives in its own module.

A command's module (and with it torch, Optuna or matplotlib) is imported only when that command
runs, so ``descend --help``, ``descend bench --help`` and argument errors answer at once.
``descend`` alone prints the help and exits with status 0. Every mistake a user can make is
one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from descend import __version__
from descend.cli.arguments import Parser, print_error
from descend.suggest import unknown_name


@dataclass(frozen=True)
class Command:
    """A subcommand: the module that registers and runs it, a one-line summary, and the
    install extra it needs (``pip install 'descend[extra]'``)."""

    module: str
    summary: str
    extra: str


#: Every subcommand, in the order ``descend --help`` lists them. Each module provides
#: ``register(subparsers)``, which adds its commands and sets ``func`` on their parsers.
COMMANDS: dict[str, Command] = {
    "optimizers": Command("descend.cli.optimizers", "list every optimizer and its names", ""),
    "demo": Command(
        "descend.cli.demo", "the tour: the problems of SGD, measured, drawn and explained", "lab"
    ),
    "race": Command("descend.cli.race", "race optimizer specs on one problem", "lab"),
    "playground": Command(
        "descend.cli.playground",
        "a live page: drag a slider, watch every optimizer's run change",
        "lab",
    ),
    "bench": Command(
        "descend.cli.bench", "tune, seed and race optimizers on real networks", "bench"
    ),
    "lr-find": Command(
        "descend.cli.bench", "learning-rate range test with suggested rates", "bench"
    ),
    "report": Command(
        "descend.cli.bench",
        "write the merged report of a benchmark from its shared storage",
        "bench",
    ),
    "scoreboard": Command(
        "descend.cli.scoreboard", "rank optimizers across workloads as AlgoPerf does", "bench"
    ),
}

#: The modules each install extra provides (as imported; pyproject.toml lists the packages).
EXTRAS: dict[str, tuple[str, ...]] = {
    "lab": ("matplotlib", "PIL", "rich", "sklearn", "starlette", "uvicorn"),
    "bench": ("optuna", "sklearn", "mnist1d", "matplotlib", "rich"),
}


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``command``'s module is imported and registers its arguments,
    every other command is listed by its summary only."""
    parser = Parser(
        prog="descend",
        description="Optimizers for neural networks, and a lab that shows why each one exists.",
        epilog="'descend COMMAND --help' describes a command. 'descend' alone prints this help.",
    )
    parser.add_argument("--version", action="version", version=f"descend {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = COMMANDS[command].module if command in COMMANDS else None
    registered: set[str] = set()
    for name, entry in COMMANDS.items():
        if name in registered:
            continue
        if entry.module == chosen:
            before = set(subparsers.choices)
            importlib.import_module(entry.module).register(subparsers)
            registered |= set(subparsers.choices) - before
        else:
            subparsers.add_parser(name, help=entry.summary, add_help=False)
            registered.add(name)
    return parser


def missing_modules(extra: str) -> list[str]:
    """The modules of install extra ``extra`` that are not installed."""
    return [name for name in EXTRAS.get(extra, ()) if importlib.util.find_spec(name) is None]


def _missing_extra(command: str, module: str | None) -> str:
    extra = COMMANDS[command].extra
    missing = f" ({module} is not installed)" if module else ""
    return f"this command needs the {extra} extra{missing}: pip install 'descend[{extra}]'"


def _command_parser(parser: Parser, command: str | None) -> Parser:
    """The parser of subcommand ``command`` (``parser`` itself without one)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _chosen(argv)
    if not argv:
        build_parser().print_help()
        return 0
    if command is not None and command not in COMMANDS:
        print_error("descend", str(unknown_name("command", command, list(COMMANDS))))
        return 2
    if command is not None:
        missing = missing_modules(COMMANDS[command].extra)
        if missing:
            print_error(f"descend {command}", _missing_extra(command, ", ".join(missing)))
            return 2
    parser = build_parser(command)
    try:
        arguments, extras = parser.parse_known_args(argv)
        if extras:
            # The command's own parser names the misspelt option and points to its own help.
            _command_parser(parser, arguments.command).unrecognized(extras)
    except SystemExit as done:  # --help, --version, or a one-line argument error
        return done.code if isinstance(done.code, int) else 2
    prog = f"descend {arguments.command}"
    try:
        return int(arguments.func(arguments) or 0)
    except ValueError as error:
        print_error(prog, str(error))
        return 2
    except ModuleNotFoundError as error:
        top = (error.name or "").partition(".")[0]
        if top not in {name for names in EXTRAS.values() for name in names}:
            raise
        print_error(prog, _missing_extra(arguments.command, top))
        return 2
    except KeyboardInterrupt:
        print_error(prog, "interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
