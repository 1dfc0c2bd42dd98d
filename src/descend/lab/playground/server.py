"""Serving the playground with uvicorn: in the foreground for ``descend playground``, or in a
background thread for tests and the latency benchmark."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn

from descend.lab.playground import DEFAULT_HOST, DEFAULT_PORT
from descend.lab.playground.app import create_app


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.x``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``port`` 0: any free one); ``ValueError`` with the
    reason and what to do when it cannot be had."""
    if not (isinstance(port, int) and 0 <= port <= 65535):
        raise ValueError(f"--port={port!r} is invalid: expected a port from 0 to 65535 "
                         "(0: any free port)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ValueError(f"--host={host!r} is invalid: not an address of this machine") from None
    family, kind, _, _, address = infos[0]
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ValueError(f"--port={port} is in use: choose another, or --port 0 for any "
                             "free port") from None
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address for a bound socket."""
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


def _server() -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", access_log=False,
                                         lifespan="off"))


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; ``ready(url)`` is called once the socket listens."""
    sock = bind(host, port)
    if ready is not None:
        ready(url_of(sock))
    _server().run(sockets=[sock])


@contextlib.contextmanager
def running(host: str = DEFAULT_HOST, port: int = 0) -> Iterator[str]:
    """Serve in a background thread for the duration of the block; yields the page's URL."""
    sock = bind(host, port)
    server = _server()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the playground server did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
