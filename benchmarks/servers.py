"""The benchmark's two local PostgreSQL servers, with PostgreSQL's default settings as a developer runs them."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tether.conninfo import DatabaseAddress
from tether.native import postgres as native_pg
from tether.native.binaries import server_bindir
from tether.native.sysuser import ServiceUser, make_private_dir, service_user
from tether.secrets import generate_password

SYSTEM_DATABASES = ("postgres", "template0", "template1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scratch_dir(prefix: str, user: ServiceUser | None, parent: Path | None = None) -> Path:
    """A temporary directory the unprivileged server user can enter (mkdtemp makes it 0700 and root's)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o755)
    if user:
        os.chown(path, user.uid, user.gid)
    return path


@dataclass(frozen=True)
class BenchServer:
    """One running server and its superuser's address (database ``postgres``)."""

    name: str
    server: native_pg.PostgresServer
    admin: DatabaseAddress

    @property
    def base_dir(self) -> Path:
        return self.server.datadir.parent


def start_server(name: str, parent: Path, major: int = 15) -> BenchServer:
    """initdb and start a server with no settings of ours beyond port and sockets (fsync stays on)."""
    user = service_user()
    base = scratch_dir(f"{name}-", user, parent)
    password = generate_password()
    server = native_pg.PostgresServer(
        datadir=make_private_dir(base / "data", user), bindir=server_bindir(major), port=free_port(),
        socket_dir=base / "sock", log_file=base / "postgres.log", run_as=user, settings={},
    )
    native_pg.init_cluster(server, "postgres", password)
    native_pg.start(server)
    return BenchServer(name, server, DatabaseAddress("127.0.0.1", server.port, "postgres", "postgres", password))


def stop_server(bench: BenchServer, remove: bool = True) -> None:
    native_pg.stop(bench.server, timeout=30)
    if remove:
        shutil.rmtree(bench.base_dir, ignore_errors=True)


def user_databases(admin: DatabaseAddress) -> list[str]:
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname <> ALL(%s) ORDER BY datname",
                            (list(SYSTEM_DATABASES),)).fetchall()
    return [row[0] for row in rows]


def reset_server(admin: DatabaseAddress, create: str | None = None) -> None:
    """Drop every non-system database (templates and scratch copies too), optionally create one empty database.

    Ends with a CHECKPOINT so each timed run starts without the previous run's dirty pages to flush.
    """
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname <> ALL(%s)", (list(SYSTEM_DATABASES),)).fetchall()]
        for name in names:
            try:
                # A template cannot be dropped; a sync's reset snapshot may be one.
                conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
            except psycopg.errors.InvalidCatalogName:
                continue  # dropped meanwhile by someone else (a sync's background clean-up)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(create)))
        conn.execute("CHECKPOINT")


def wait_until_quiet(admin: DatabaseAddress, settle: float = 1.0, timeout: float = 300.0) -> float:
    """Wait until no other client is connected and the database list has not changed for ``settle`` seconds.

    A command may leave work to a background process after it exits (sync-prod drops the replaced database
    that way); the next timed run must not share the machine with it. Returns the seconds waited.
    """
    started = time.monotonic()
    last_change = started
    previous: tuple[object, ...] | None = None
    with psycopg.connect(admin.conninfo(application_name="bench-quiet"), autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()), (SELECT array_agg(datname ORDER BY datname) FROM pg_database)"
            ).fetchone()
            state = tuple(row) if row else ()
            now = time.monotonic()
            if state != previous or (row and row[0]):
                previous, last_change = state, now
            elif now - last_change >= settle:
                return now - started - settle
            if now - started > timeout:
                return now - started
            time.sleep(0.1)


def checkpoint(admin: DatabaseAddress) -> None:
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def server_version(admin: DatabaseAddress) -> str:
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def write_passfile(path: Path, addresses: list[DatabaseAddress]) -> Path:
    """A 0600 libpq password file, so commands that take two URLs need no password on their command line."""
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    lines = [f"{escape(a.host)}:{a.port}:*:{escape(a.user)}:{escape(a.password or '')}\n" for a in addresses]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(lines)
    return path
