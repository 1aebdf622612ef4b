"""Fixtures that start real PostgreSQL and Redis servers on free ports in temporary directories.

One PostgreSQL server per test session (a fresh database per test), more on demand through
``pg_server_factory`` (sync tests need two servers with different system identifiers), one Redis.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tether.conninfo import DatabaseAddress
from tether.native import postgres as native_pg
from tether.native import redis as native_redis
from tether.native.binaries import redis_programs, server_bindir
from tether.native.sysuser import ServiceUser, make_private_dir, service_user
from tether.redis_client import RedisAddress
from tether.secrets import generate_password

PG_MAJOR = int(os.environ.get("TETHER_TEST_PG_MAJOR", "15"))
# Test servers trade durability for speed; the benchmark uses PostgreSQL's defaults instead.
FAST_TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                      "max_connections": "60", "shared_buffers": "64MB"}


def _port_range() -> range:
    """This process's ports for test servers.

    Below the kernel's ephemeral range, so no client connection (the tests open thousands) takes one between
    ``free_port()`` and the server's bind; and a slice of its own per pytest-xdist worker, so two workers never
    pick the same one.
    """
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    width = max(100, (ephemeral_low - PORTS_FROM) // WORKER_SLICES)
    start = PORTS_FROM + (index % WORKER_SLICES) * width
    return range(start, min(start + width, ephemeral_low))


PORTS_FROM = 10000
WORKER_SLICES = 16
_handed_out: set[int] = set()


def free_port() -> int:
    """A local port nothing listens on now, never handed out before in this process."""
    candidates = [port for port in _port_range() if port not in _handed_out]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in {_port_range()}")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (`invoke test`'s default): one worker more than cores.

    The tests wait on servers, subprocesses and timeouts as much as they compute, and the machine is shared: on
    2 cores, side by side with today's serial run, 3 workers took 0.52-0.58 of its time, 2 workers 0.63-0.74.
    """
    return len(os.sched_getaffinity(0)) + 1


def pytest_itemcollected(item: pytest.Item) -> None:
    """`serial` tests all run in one pytest-xdist worker (`--dist loadgroup`, as `invoke test` runs the suite).

    Marked as each test is collected, so the group is there whenever pytest-xdist reads it.
    """
    if item.get_closest_marker("serial"):
        item.add_marker(pytest.mark.xdist_group("serial"))


@dataclass
class RunningPostgres:
    """A real server started for the tests, with its superuser's address."""

    server: native_pg.PostgresServer
    admin: DatabaseAddress  # superuser, database `postgres`

    def create_database(self, name: str | None = None) -> DatabaseAddress:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.admin.with_database(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def wait_for_sessions_to_end(admin: DatabaseAddress, database: str, timeout: float = 10) -> None:
    """Return once no client session is left on ``database`` (asked through ``admin``, on another database).

    Closing a connection does not wait for the server process behind it: it stays in pg_stat_activity until it
    has exited, a moment later on a quiet machine, longer under load. A swap run meanwhile terminates it and
    counts it as a session it disconnected, so a test that counts those first waits for its own to be gone.
    """
    deadline = time.monotonic() + timeout
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        while True:
            # As tether.swap.terminate_sessions counts: client backends only (not autovacuum, say).
            left = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                                " AND backend_type = 'client backend'", (database,)).fetchall()
            if not left:
                return
            assert time.monotonic() < deadline, f"sessions {left} still on {database!r} after {timeout:g} s"
            time.sleep(0.02)


def _scratch_dir(prefix: str, user: ServiceUser | None) -> Path:
    # Not pytest's tmp_path: it is 0700 under root's tree, which the unprivileged server user cannot enter.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if user:
        os.chown(path, user.uid, user.gid)
    return path


def remove_in_background(path: Path) -> None:
    """Delete a stopped server's directory without waiting: a data directory the sync tests filled holds
    thousands of files, and deleting them took 2-10 s at the end of every worker's session."""
    subprocess.Popen(["rm", "-rf", "--one-file-system", "--", str(path)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_postgres(settings: dict[str, str] | None = None) -> RunningPostgres:
    user = service_user()
    base = _scratch_dir("tether-pg-", user)
    password = generate_password()
    server = native_pg.PostgresServer(
        datadir=make_private_dir(base / "data", user), bindir=server_bindir(PG_MAJOR), port=free_port(),
        socket_dir=base / "sock", log_file=base / "postgres.log", run_as=user,
        settings=FAST_TEST_SETTINGS if settings is None else settings,
    )
    native_pg.init_cluster(server, "postgres", password)
    native_pg.start(server)
    return RunningPostgres(server, DatabaseAddress("127.0.0.1", server.port, "postgres", "postgres", password))


def stop_postgres(running: RunningPostgres) -> None:
    native_pg.stop(running.server, timeout=10)
    remove_in_background(running.server.datadir.parent)


@pytest.fixture(scope="session")
def pg_server_factory() -> Iterator[Callable[..., RunningPostgres]]:
    """Start extra PostgreSQL servers; all are stopped at the end of the session."""
    started: list[RunningPostgres] = []

    def factory(settings: dict[str, str] | None = None) -> RunningPostgres:
        running = start_postgres(settings)
        started.append(running)
        return running

    yield factory
    for running in started:
        stop_postgres(running)


@pytest.fixture(scope="session")
def pg_server(pg_server_factory: Callable[..., RunningPostgres]) -> RunningPostgres:
    """The session's shared PostgreSQL server."""
    return pg_server_factory()


@pytest.fixture
def pg_db(pg_server: RunningPostgres) -> Iterator[DatabaseAddress]:
    """A fresh, empty database on the shared server (superuser address), dropped after the test."""
    address = pg_server.create_database()
    yield address
    pg_server.drop_database(address.database)


@dataclass
class RunningRedis:
    server: native_redis.RedisServer

    @property
    def address(self) -> RedisAddress:
        return self.server.address


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RunningRedis]:
    user = service_user()
    base = _scratch_dir("tether-redis-", user)
    program, _ = redis_programs()
    server = native_redis.RedisServer(datadir=make_private_dir(base / "data", user), server_program=program,
                                      port=free_port(), password=generate_password(),
                                      log_file=base / "data" / "redis.log", run_as=user)
    native_redis.start(server)
    yield RunningRedis(server)
    native_redis.stop(server)
    remove_in_background(base)


@pytest.fixture
def isolated_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway project root (runtime state, dumps, env files go here, not into the checkout)."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.setenv("TETHER_PROJECT_ROOT", str(root))
    monkeypatch.delenv("TETHER_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("TETHER_DUMPS_DIR", raising=False)
    return root
