"""Serving the playground with uvicorn: in the foreground for ``descend playground``, or in a
background thread for tests and the latency benchmark.

Requests HTTP cannot read are answered by :class:`PlaygroundProtocol` with one status and one
line: 400 for a malformed one (a broken chunked body), 414 for a request line longer than
:data:`MAX_HEAD` bytes, 431 for headers that long; never a traceback on the server's terminal,
and never a connection reset before the client has read the answer.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from descend.lab.playground import DEFAULT_HOST, DEFAULT_PORT
from descend.lab.playground.app import create_app, is_loopback

#: The longest request line and headers the server reads (h11's default, 16 KiB): a URL holds
#: every setting of the page in a few hundred bytes.
MAX_HEAD = 16 * 1024
#: Seconds a refused connection keeps reading (and dropping) what the client still sends, so
#: that closing it does not reset the connection before the client reads the answer.
LINGER = 2.0

#: The answer to a request that cannot be read, by h11's status hint (431: too long).
_REFUSALS = {
    400: "malformed HTTP request",
    414: f"the address (request line) is longer than {MAX_HEAD} bytes",
    431: f"the request headers are longer than {MAX_HEAD} bytes",
}


class PlaygroundProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, refusing unreadable requests cleanly.

    uvicorn answers every request h11 cannot parse with a 400 and closes at once: a request
    whose body turns out malformed after its head was handed to the application then also
    gets the application's answer, which h11 refuses with a traceback on the terminal; and a
    client still sending a long URL gets a connection reset instead of an answer. Here the
    request in flight is marked answered, the status says what was wrong (414 for a URL too
    long), and the connection reads what is left before it closes.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._hint = 400
        self._line_seen = False
        next_event = self.conn.next_event

        def next_event_noting_why():
            try:
                return next_event()
            except h11.RemoteProtocolError as error:
                self._hint = error.error_status_hint
                raise

        self.conn.next_event = next_event_noting_why

    def data_received(self, data: bytes) -> None:
        """Read ``data``; after a refusal, drop it (the connection is closing)."""
        if self.conn.their_state is h11.ERROR:
            return
        if self.conn.their_state is h11.IDLE and b"\n" in data:
            self._line_seen = True
        super().data_received(data)

    def on_response_complete(self) -> None:
        """Start the next request on this connection afresh."""
        self._line_seen = False
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """Answer an unreadable request with its status and one line, then close gently."""
        status = self._hint
        if status == 431 and not self._line_seen:
            status = 414
        status = status if status in _REFUSALS else 400
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The application may still answer this request: its answer is to go nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        # IDLE: the request's head could not be read (h11 lets a server answer then).
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = f"descend playground: {_REFUSALS[status]}\n".encode()
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            self.transport.write(
                self.conn.send(
                    h11.Response(
                        status_code=status,
                        reason=HTTPStatus(status).phrase.encode(),
                        headers=headers,
                    )
                )
            )
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER, self.transport.close)
        else:
            self.transport.close()


__all__ = ["MAX_HEAD", "PlaygroundProtocol", "bind", "is_loopback", "running", "serve", "url_of"]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``port`` 0: any free one); ``ValueError`` with the
    reason and what to do when it cannot be had."""
    if not (isinstance(port, int) and 0 <= port <= 65535):
        raise ValueError(
            f"--port={port!r} is invalid: expected a port from 0 to 65535 (0: any free port)"
        )
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
            raise ValueError(
                f"--port={port} is in use: choose another, or --port 0 for any free port"
            ) from None
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address for a bound socket."""
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


def _server(host: str) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            create_app([host]),
            http=PlaygroundProtocol,
            h11_max_incomplete_event_size=MAX_HEAD,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )


def serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until interrupted; ``ready(url)`` is called once the socket listens."""
    sock = bind(host, port)
    if ready is not None:
        ready(url_of(sock))
    _server(host).run(sockets=[sock])


@contextlib.contextmanager
def running(host: str = DEFAULT_HOST, port: int = 0) -> Iterator[str]:
    """Serve in a background thread for the duration of the block; yields the page's URL."""
    sock = bind(host, port)
    server = _server(host)
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
