"""Who holds a port: a real listening process, found through /proc, named with its directory."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.native.ports import port_is_free, port_owner
from tether.native.stack import _refuse_taken_port

LISTENER = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
print(sock.getsockname()[1], flush=True)
time.sleep(60)
"""


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """A process listening on a free port, running in its own directory (as a database server does)."""
    workdir = tmp_path / "old-clone-data"
    workdir.mkdir()
    process = subprocess.Popen([sys.executable, "-c", LISTENER], cwd=workdir, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield process, port, workdir
    finally:
        process.kill()
        process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_owner_of_a_taken_port_is_the_listening_process_with_its_directory(listener) -> None:
    process, port, workdir = listener
    assert not port_is_free(port)
    owner = port_owner(port)
    assert owner is not None
    assert owner.pid == process.pid
    assert owner.directory == str(workdir)
    assert str(workdir) in owner.describe() and f"pid {process.pid}" in owner.describe()


def test_a_free_port_has_no_owner() -> None:
    port = _free_port()
    assert port_is_free(port)
    assert port_owner(port) is None


def test_refusal_names_the_owner_its_directory_and_how_to_stop_it(listener) -> None:
    process, port, workdir = listener
    with pytest.raises(TetherError) as raised:
        _refuse_taken_port("dev", port, "127.0.0.1")
    message = raised.value.message
    assert f"Port {port} for dev is already taken" in message
    assert str(workdir) in message
    assert f"kill -INT {process.pid}" in message
    assert "devPort" in message


def test_no_refusal_once_the_port_is_released(listener) -> None:
    process, port, _ = listener
    process.kill()
    process.wait()
    deadline = time.monotonic() + 5
    while not port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    _refuse_taken_port("dev", port, "127.0.0.1")  # must not raise
    assert port_owner(port) is None
