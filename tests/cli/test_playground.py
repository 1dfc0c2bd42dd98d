"""``descend playground``: it prints where it serves, serves the page, and refuses a busy port
in one line."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

from descend.cli.main import main


def test_the_command_prints_the_address_and_serves_the_page(tmp_path):
    command = [sys.executable, "-m", "descend.cli.main", "playground", "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("descend playground: serving http://127.0.0.1:")
        url = line.split()[3]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_command_refuses_a_busy_port_in_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["playground", "--port", str(taken.getsockname()[1])]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is in use" in error
