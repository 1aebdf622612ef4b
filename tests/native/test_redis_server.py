"""A real Redis with any password, read by real clients (redis-py, redis-cli -u), and TLS as on Memorystore."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port
from tether.errors import ConfigError
from tether.native import redis as native_redis
from tether.native.binaries import redis_programs
from tether.native.sysuser import make_private_dir, service_user
from tether.processes import process_runs, serves_directory
from tether.redis_client import RedisAddress, RedisError, connect, parse_redis_url, ping

# Each breaks a naive redis.conf line, URL or shell: both quote kinds, backslashes, spaces, '#', unicode...
PASSWORDS = [
    ("both-quotes", "it's \"quoted\""),
    ("backslashes", "back\\slash\\\\double\\"),
    ("spaces-and-hash", "  lead # not a comment  "),
    ("hex-escape-lookalike", "\\x41\\n\\t"),
    ("unicode", "pässwörd✓ 密码"),
    ("url-metacharacters", "p@ss:w/rd%#?&="),
    ("braces-and-dollar", "${HOME} $(id) `id`"),
    ("only-a-quote", '"'),
]


@pytest.fixture
def redis_dir() -> Iterator[Path]:
    user = service_user()
    base = Path(tempfile.mkdtemp(prefix="tether-redis-conf-"))
    base.chmod(0o755)
    try:
        yield make_private_dir(base / "data", user)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _server(datadir: Path, password: str, port: int | None = None) -> native_redis.RedisServer:
    return native_redis.RedisServer(datadir=datadir, server_program=redis_programs()[0], port=port or free_port(),
                                    password=password, log_file=datadir / "redis.log", run_as=service_user(),
                                    appendonly=False)


@pytest.mark.parametrize("password", [value for _, value in PASSWORDS], ids=[case for case, _ in PASSWORDS])
def test_any_password_reaches_redis_intact_and_every_client_logs_in(redis_dir: Path, password: str) -> None:
    server = _server(redis_dir, password)
    try:  # start inside: a server that started but failed its check must still be stopped
        native_redis.start(server)
        with connect(server.address) as client:
            assert client.config_get("requirepass") == {"requirepass": password}
        # The URL .env holds, as an app hands it to redis-py and as a person hands it to redis-cli.
        url = server.address.url()
        assert redis.Redis.from_url(url).ping() is True
        assert parse_redis_url(url) == RedisAddress("127.0.0.1", server.port, password, 0, "default")
        cli = subprocess.run(["redis-cli", "-u", url, "PING"], capture_output=True, text=True, timeout=10, check=False)
        assert cli.stdout.strip() == "PONG", cli.stdout + cli.stderr
        pid = native_redis.running_pid(server)
        assert pid is not None and password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        native_redis.stop(server)


def test_the_port_on_the_command_line_wins_over_the_file(redis_dir: Path, monkeypatch) -> None:
    """A config file naming another port (as one half-written by a concurrent start would) cannot move Redis."""
    server = _server(redis_dir, "pw-cmdline-test")
    wrong = free_port()
    rendered = native_redis.render_config(server)
    monkeypatch.setattr(native_redis, "render_config", lambda _server: rendered.replace(f"port {server.port}",
                                                                                         f"port {wrong}"))
    try:
        native_redis.start(server)
        assert ping(server.address) == "PONG"
        with pytest.raises(RedisError):
            ping(RedisAddress("127.0.0.1", wrong, server.password), timeout=0.5)
    finally:
        native_redis.stop(server)


def test_stop_returns_once_the_process_has_exited_not_its_pid_file(redis_dir: Path, monkeypatch) -> None:
    """Redis deletes its pid file before it closes its port and exits: stop() must wait for the process itself.

    That moment is widened here: when stop() sends SIGTERM, Redis is held stopped (SIGSTOP) with its pid file
    already deleted, and let go a second later. A stop() that went by the pid file returned at once.
    """
    server = _server(redis_dir, "pw-stop-test")
    real_kill = os.kill
    held: list[int] = []

    def kill(pid: int, signum: int) -> None:
        if signum == signal.SIGTERM and not held:
            held.append(pid)
            real_kill(pid, signal.SIGSTOP)
            deadline = time.monotonic() + 10
            while "State:\tT" not in Path(f"/proc/{pid}/status").read_text():
                assert time.monotonic() < deadline, "redis-server did not stop on SIGSTOP"
                time.sleep(0.01)
            server.pid_file.unlink()
            threading.Timer(1.0, real_kill, (pid, signal.SIGCONT)).start()
        real_kill(pid, signum)

    native_redis.start(server)
    pid = native_redis.running_pid(server)
    assert pid is not None
    try:
        with monkeypatch.context() as patch:
            patch.setattr(native_redis.os, "kill", kill)
            assert native_redis.stop(server)
        assert held == [pid]
        assert not process_runs(pid, "redis")
        with socket.create_server(("127.0.0.1", server.port)):
            pass  # the port is free for the next start
    finally:
        if serves_directory(pid, "redis", redis_dir):  # stop() returned too early: leave no server behind
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)


def test_redis_url_names_the_default_user_so_redis_cli_accepts_it(redis_server) -> None:
    url = redis_server.address.url()
    assert url.startswith("redis://default:")
    cli = subprocess.run(["redis-cli", "-u", url, "PING"], capture_output=True, text=True, timeout=10, check=False)
    assert cli.stdout.strip() == "PONG", cli.stdout + cli.stderr


@pytest.mark.parametrize("url, says", [
    ("http://default:pw@localhost:6379/0", "schemes"),
    ("unix:///tmp/redis.sock", "unix socket"),
    ("redis://default:pw@localhost:6379/0?socket_timeout=soon", "socket_timeout"),
], ids=["scheme", "unix-socket", "bad-option"])
def test_a_bad_redis_url_is_one_clear_error_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as raised:
        parse_redis_url(url)
    assert ":pw@" not in raised.value.message


# --- TLS, as Memorystore's in-transit encryption: rediss:// with the server's CA -------------------------------

@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """A redis-server speaking only TLS, with a certificate from a private CA; yields (port, CA file, other CA)."""
    base = tmp_path_factory.mktemp("tls")
    base.chmod(0o755)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=base, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=tether-test-ca")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem", "-days", "2",
            "-subj", "/CN=some-other-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (base / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext")
    for name in os.listdir(base):
        (base / name).chmod(0o644)
    port = free_port()
    (base / "redis.conf").write_text('requirepass "tls-secret-pw"\n')
    server = subprocess.Popen(["redis-server", str(base / "redis.conf"), "--port", "0", "--tls-port", str(port),
                               "--tls-cert-file", str(base / "server.pem"), "--tls-key-file", str(base / "server.key"),
                               "--tls-ca-cert-file", str(base / "ca.pem"), "--tls-auth-clients", "no",
                               "--dir", str(base), "--save", ""],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        address = RedisAddress("127.0.0.1", port, "tls-secret-pw", tls=True, ca_file=str(base / "ca.pem"))
        for _ in range(100):
            try:
                ping(address, timeout=0.5)
                break
            except RedisError:
                assert server.poll() is None, "redis-server with TLS exited"
                subprocess.run(["sleep", "0.05"], check=True)
        yield port, base / "ca.pem", base / "other.pem"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_tls_through_a_rediss_url_with_the_servers_ca(tls_redis: tuple[int, Path, Path]) -> None:
    port, ca, _ = tls_redis
    address = parse_redis_url(f"rediss://default:tls-secret-pw@127.0.0.1:{port}/0?ssl_ca_certs={ca}")
    assert address.tls and address.ca_file == str(ca)
    assert ping(address) == "PONG"
    assert parse_redis_url(address.url()) == address  # the URL we write is the URL we read


def test_tls_refuses_a_server_whose_certificate_the_ca_did_not_sign(tls_redis: tuple[int, Path, Path]) -> None:
    port, _, other_ca = tls_redis
    with pytest.raises(RedisError) as raised:
        ping(RedisAddress("127.0.0.1", port, "tls-secret-pw", tls=True, ca_file=str(other_ca)))
    assert "certificate" in raised.value.message.lower() and "tls-secret-pw" not in raised.value.message


def test_plain_redis_against_a_tls_port_fails_clearly(tls_redis: tuple[int, Path, Path]) -> None:
    port, _, _ = tls_redis
    with pytest.raises(RedisError) as raised:
        ping(RedisAddress("127.0.0.1", port, "tls-secret-pw"), timeout=1)
    assert "tls-secret-pw" not in raised.value.message
