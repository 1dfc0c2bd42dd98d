"""``descend playground``: the lab as a live page, served from this machine."""

from __future__ import annotations

import argparse
import textwrap
import webbrowser

from descend.lab.playground import DEFAULT_HOST, DEFAULT_PORT


def epilog() -> str:
    """The ``--help`` listing of the page's problems and their sliders, read from the problems'
    declared settings."""
    # The page's controls load the problems (and torch): only for the help that lists them.
    from descend.lab.playground.controls import PROBLEMS

    lines = ["problems on the page, with the span of each slider:"]
    for name, offered in PROBLEMS.items():
        sliders = ", ".join(
            f"{slider.name} {slider.low:g} to {slider.high:g}"
            f"{' (log scale)' if slider.scale == 'log' else ''}"
            for slider in offered.sliders
        )
        lines.append(f"  {name}: {sliders or 'no settings'}")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``playground`` subcommand."""
    parser = subparsers.add_parser(
        "playground",
        help="a live page: drag a slider, watch every optimizer's run change",
        description=textwrap.fill(
            "Serve the playground page: pick a problem and up to four optimizers (every rule, "
            "its hyperparameters as sliders, schedules, averaging) and see the paths over the "
            "contours, the loss, and on quadratics each eigen-direction with theory's rate. "
            "Every run is computed here with descend's own rules; the URL holds the settings.",
            100,
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.set_defaults(func=run)


def run(arguments: argparse.Namespace) -> int:
    """Serve until Ctrl-C."""
    # The web server loads only for this command, not for every ``descend`` invocation.
    from descend.lab.playground.server import is_loopback, serve

    def ready(url: str) -> None:
        print(f"descend playground: serving {url} (Ctrl-C stops it)", flush=True)
        if not is_loopback(arguments.host):
            print(
                f"descend playground: --host {arguments.host} is reachable from other "
                "machines on the network",
                flush=True,
            )
        if arguments.open:
            webbrowser.open(url)

    serve(arguments.host, arguments.port, ready)
    return 0
