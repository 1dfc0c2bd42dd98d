"""``descend playground``: it prints where it serves, serves the page, and refuses a busy port
in one line."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

import pytest

from descend.cli.main import main


@pytest.mark.slow
def test_the_command_prints_the_address_and_serves_the_page(tmp_path):
    command = [sys.executable, "-m", "descend.cli.main", "playground", "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("descend playground: serving http://127.0.0.1:")
        url = line.split()[3]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answer(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.slow
def test_a_malformed_request_prints_no_traceback_on_the_servers_terminal():
    command = [sys.executable, "-m", "descend.cli.main", "playground", "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline().split()[3].rstrip("/").rsplit(":", 1)[1])
        head = f"Host: 127.0.0.1:{port}\r\n".encode()
        chunked = [
            _answer(
                port,
                b"POST /api/run HTTP/1.1\r\n" + head + b"Transfer-Encoding:"
                b" chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            )
            for _ in range(5)
        ]
        try:
            long = _answer(port, b"GET /?" + b"a" * 200_000 + b" HTTP/1.1\r\n" + head + b"\r\n")
        except ConnectionResetError:
            long = b"connection reset"
    finally:
        server.terminate()
        _, terminal = server.communicate(timeout=30)
    assert "Traceback" not in terminal and "Exception" not in terminal, terminal
    assert all(answer.startswith(b"HTTP/1.1 400 ") for answer in chunked)
    assert long.startswith(b"HTTP/1.1 414 ")


def test_the_command_refuses_a_busy_port_in_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["playground", "--port", str(taken.getsockname()[1])]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is in use" in error
