"""The local side: the scratch build, the snapshot kept for resets, the swap, and retiring replaced copies.

Names on the local server, for a working database ``dev``:
- ``dev`` is what the developer uses;
- ``dev__tether_snapshot`` is the last synced state: a template nobody connects to (ALLOW_CONNECTIONS
  false), with the sync's state as its comment; resets and incremental syncs copy it;
- ``dev__tether_<purpose>_<pid>_<stamp>`` are scratch builds and retired copies (see tether.swap), dropped
  by the next run when their process is gone.

Copies use CREATE DATABASE's default strategy, WAL_LOG since PostgreSQL 15 (no checkpoint, no per-file
fsync, which FILE_COPY needs). Replaced databases are
dropped by a detached process once the command is done, because PostgreSQL 15's DROP DATABASE forces a
checkpoint, which would make the command wait for everything it just wrote to reach the disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from tether.conninfo import DatabaseAddress
from tether.errors import TetherError
from tether.paths import runtime_dir
from tether.swap import MAX_IDENTIFIER, SCRATCH_MARK, scratch_name, terminate_sessions
from tether.sync.incremental import SyncState

SNAPSHOT_PURPOSE = "snapshot"
REAPER_ENV = "TETHER_SYNC_REAPER"


def database_error(error: psycopg.Error, what: str) -> TetherError:
    """A server's error as one paragraph: what failed, PostgreSQL's message, and that nothing was replaced."""
    message = " ".join(str(error).split()) or type(error).__name__
    hint = ""
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        hint = (" The source role needs SELECT on every table it copies; the local role needs CREATEDB (a "
                "superuser is simplest for a local server).")
    return TetherError(f"{what} failed: {message}.{hint} The local database was not replaced; run the command "
                       "again once this is fixed.")


def snapshot_name(target: str) -> str:
    """``<target>__tether_snapshot``: not a scratch name, so leftover cleanup never drops it."""
    name = f"{target}{SCRATCH_MARK}{SNAPSHOT_PURPOSE}"
    if len(name.encode()) > MAX_IDENTIFIER:
        raise TetherError(f"The database name {target!r} is too long to keep a synced snapshot beside it. Use a "
                          "local database name of at most 33 bytes.")
    return name


_ADMIN_SESSIONS: dict[str, psycopg.Connection] = {}
_ADMIN_LOCK = threading.Lock()


def admin_session(admin: DatabaseAddress) -> psycopg.Connection:
    """One autocommit session on the local server's maintenance database, kept for the whole command.

    A sync or reset runs a dozen small statements there; connecting (and authenticating) once saves a
    noticeable part of a reset that takes about a second. ``close_admin_sessions`` ends them.
    """
    key = admin.conninfo()
    with _ADMIN_LOCK:
        conn = _ADMIN_SESSIONS.get(key)
        if conn is None or conn.closed or conn.broken:
            conn = _ADMIN_SESSIONS[key] = psycopg.connect(admin.conninfo(connect_timeout="15"), autocommit=True)
    return conn


@contextmanager
def admin_connect(admin: DatabaseAddress) -> Iterator[psycopg.Connection]:
    """``admin_session`` as a context manager (the session stays open afterwards)."""
    yield admin_session(admin)


def close_admin_sessions() -> None:
    with _ADMIN_LOCK:
        sessions = list(_ADMIN_SESSIONS.values())
        _ADMIN_SESSIONS.clear()
    for conn in sessions:
        conn.close()


def database_oid(admin: DatabaseAddress, name: str) -> int | None:
    with admin_connect(admin) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else None


def create_scratch(admin: DatabaseAddress, name: str, encoding: str) -> None:
    """An empty database from template0, in the source's encoding when the local locale allows it."""
    with admin_connect(admin) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
                sql.Identifier(name), sql.Literal(encoding)))
        except psycopg.errors.InvalidParameterValue:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def read_state(admin: DatabaseAddress, snapshot: str) -> SyncState | None:
    with admin_connect(admin) as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                           (snapshot,)).fetchone()
    return SyncState.from_json(row[0]) if row else None


def write_state(conn: psycopg.Connection, database: str, state: SyncState) -> None:
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(database),
                                                               sql.Literal(state.to_json())))


def local_horizon(conn: psycopg.Connection) -> int:
    """The next transaction id: every row of a copy made after this has an older ``xmin``."""
    row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def install_snapshot(admin: DatabaseAddress, built: str, target: str, state: SyncState,
                     attempts: int = 20) -> list[str]:
    """Make the finished build the snapshot of ``target``; returns the retired previous snapshot, if any."""
    snapshot = snapshot_name(target)
    with admin_connect(admin) as conn:
        for attempt in range(attempts):
            terminate_sessions(conn, built)
            retired: list[str] = []
            try:
                with conn.transaction():
                    write_state(conn, built, state)
                    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (snapshot,)).fetchone():
                        old = scratch_name(target, "old")
                        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(snapshot),
                                                                                      sql.Identifier(old)))
                        retired.append(old)
                    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(built),
                                                                                  sql.Identifier(snapshot)))
                    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                        sql.Identifier(snapshot)))
                return retired
            except psycopg.errors.ObjectInUse:
                time.sleep(0.05 * (attempt + 1))  # a db.reset is copying the old snapshot: wait for it
    raise TetherError(f"Could not replace the snapshot {snapshot!r}: it stays in use (is a db.reset running?). "
                      f"Run the sync again; {target!r} is unchanged.")


def allow_connections(admin: DatabaseAddress, name: str, allowed: bool) -> None:
    with admin_connect(admin) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allowed else "false")))


def copy_database(admin: DatabaseAddress, template: str, name: str) -> int:
    """``CREATE DATABASE name TEMPLATE template``; returns the local transaction horizon taken just before."""
    with admin_connect(admin) as conn:
        _compress_wal(conn)
        horizon = local_horizon(conn)
        for attempt in range(20):
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)))
                return horizon
            except psycopg.errors.ObjectInUse:
                # A sync is updating the snapshot right now (or someone connected to it): wait a moment.
                time.sleep(0.05 * (attempt + 1))
    raise TetherError(f"Could not copy {template!r}: another session is using it (is a sync running?). Try again "
                      "when it has finished.")


def _compress_wal(conn: psycopg.Connection) -> None:
    """A database copy writes every page to the WAL; lz4 (superusers only) cuts that by half or more."""
    for method in ("lz4", "on"):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET wal_compression = {}").format(sql.Literal(method)))
            return
        except psycopg.Error:
            continue


def drop_now(admin: DatabaseAddress, names: list[str]) -> None:
    with admin_connect(admin) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drop_in_background(admin: DatabaseAddress, names: list[str]) -> None:
    """Drop ``names`` from a detached process (its output goes to .runtime/sync/reaper.log)."""
    if not names:
        return
    log = runtime_dir() / "sync" / "reaper.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # The detached process needs only the conninfo (password included, if any) and a passfile, if any.
    env = {key: value for key, value in os.environ.items()
           if key in ("PATH", "HOME", "LANG", "LC_ALL", "PGPASSFILE", "TETHER_PROJECT_ROOT", "TETHER_RUNTIME_DIR",
                      "PYTHONPATH", "VIRTUAL_ENV")}
    env[REAPER_ENV] = json.dumps({"conninfo": admin.conninfo(connect_timeout="15"), "names": names})
    with open(log, "a") as handle:
        subprocess.Popen([sys.executable, "-m", "tether.sync.local"], env=env, stdin=subprocess.DEVNULL,
                         stdout=handle, stderr=handle, start_new_session=True, cwd=str(Path.cwd()))


def _reap() -> int:
    """Entry point of the detached process: drop the databases named in $TETHER_SYNC_REAPER."""
    job = json.loads(os.environ.pop(REAPER_ENV, "{}") or "{}")
    failures = 0
    for name in job.get("names", []):
        try:
            with psycopg.connect(job["conninfo"], autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.Error as error:
            failures += 1
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} could not drop {name}: {' '.join(str(error).split())}",
                  flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_reap())
