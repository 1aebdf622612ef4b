"""Replacing a local database atomically: build under a scratch name, then swap names in one transaction.

Restores and syncs build into ``<target>__tether_<purpose>_<stamp>``; only when that succeeded does the swap
rename the target away and the scratch database in, in a single transaction, so an interrupted run never
leaves the target half-written. Leftovers of interrupted runs are found by their names and dropped.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from tether.conninfo import DatabaseAddress
from tether.errors import TetherError
from tether.processes import pid_exists

MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1
SCRATCH_MARK = "__tether_"
_SCRATCH_PATTERN = re.compile(r"^(?P<target>.+)__tether_(?P<purpose>[a-z]+)_(?P<pid>\d+)_(?P<stamp>\d+)$")


@dataclass(frozen=True)
class ScratchName:
    target: str
    purpose: str
    pid: int
    stamp: int

    def __str__(self) -> str:
        return f"{self.target}{SCRATCH_MARK}{self.purpose}_{self.pid}_{self.stamp}"


def scratch_name(target: str, purpose: str) -> str:
    """A fresh scratch name for ``target``; ``purpose`` is a short lowercase word (restore, sync, old)."""
    name = str(ScratchName(target, purpose, os.getpid(), time.time_ns() // 1000))
    # Judged with the longest process id and purpose there can be, not this run's: a name that fits today must not
    # be refused tomorrow because the process got a longer pid.
    if len(target.encode()) > longest_target(purpose):
        raise TetherError(f"The database name {target!r} is too long ({len(target.encode())} bytes) to build beside "
                          f"it under a scratch name (at most {MAX_IDENTIFIER} bytes in all). Use a database name of "
                          f"at most {LONGEST_TARGET} bytes.")
    return name


# Linux's pid_max is at most 2**22 (7 digits); the stamp is microseconds since 1970 (16 digits until 2286).
_PID_DIGITS, _STAMP_DIGITS = 7, 16
_PURPOSES = ("restore", "reset", "sync", "old")


def longest_target(purpose: str) -> int:
    """The longest database name (bytes) whose scratch names for ``purpose`` always fit PostgreSQL's limit."""
    return MAX_IDENTIFIER - len(SCRATCH_MARK) - len(purpose) - 2 - _PID_DIGITS - _STAMP_DIGITS


LONGEST_TARGET = min(longest_target(purpose) for purpose in _PURPOSES)  # what a user is told: fits every command


def parse_scratch_name(name: str) -> ScratchName | None:
    match = _SCRATCH_PATTERN.match(name)
    if not match:
        return None
    return ScratchName(match["target"], match["purpose"], int(match["pid"]), int(match["stamp"]))


def _admin_connect(admin: DatabaseAddress) -> psycopg.Connection:
    return psycopg.connect(admin.conninfo(connect_timeout="10"), autocommit=True)


def database_exists(admin: DatabaseAddress, name: str) -> bool:
    with _admin_connect(admin) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def cleanup_leftovers(admin: DatabaseAddress, target: str, purposes: tuple[str, ...] = ()) -> list[str]:
    """Drop scratch databases of ``target`` whose creating process is gone; returns their names."""
    dropped: list[str] = []
    with _admin_connect(admin) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{target}{SCRATCH_MARK}%",))]
        for name in names:
            parsed = parse_scratch_name(name)
            if parsed is None or parsed.target != target or (purposes and parsed.purpose not in purposes):
                continue
            if parsed.pid == os.getpid() or pid_exists(parsed.pid):
                continue  # another run (or this one) is still building it
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped


def terminate_sessions(conn: psycopg.Connection, database: str) -> set[int]:
    """Disconnect every other session on ``database``; returns the process ids of the clients told to go.

    Ids, not a count: a session told to go stays listed until it has exited, so a caller that tries again
    soon after sees it a second time and must not count it twice. Only client backends are returned: an
    autovacuum worker on the database must go too (it would block the rename) but it is nobody's session.
    """
    rows = conn.execute(
        # In the select list, not the WHERE clause: there the planner may call it before excluding our own pid.
        "SELECT pid, backend_type = 'client backend', pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    ).fetchall()
    return {pid for pid, is_client, told in rows if told and is_client}


def swap_names(admin: DatabaseAddress, scratch: str, target: str, *, attempts: int = 20) -> tuple[int, str | None]:
    """Make ``scratch`` become ``target`` and rename the old ``target`` aside (not dropped).

    Both renames happen in one transaction, so at every instant exactly one complete database has the
    target's name. Sessions on the old target are terminated first (they could not survive a rename).
    Returns (sessions disconnected, the retired database's name, or None when there was no target).
    """
    disconnected: set[int] = set()
    with _admin_connect(admin) as conn:
        for attempt in range(attempts):
            disconnected |= terminate_sessions(conn, target)
            terminate_sessions(conn, scratch)
            try:
                with conn.transaction():
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone()
                    retired = scratch_name(target, "old") if exists else None
                    if retired:
                        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                            sql.Identifier(target), sql.Identifier(retired)))
                    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(scratch), sql.Identifier(target)))
                return len(disconnected), retired
            except psycopg.errors.ObjectInUse:
                # A client reconnected between terminate and rename; try again shortly.
                time.sleep(0.05 * (attempt + 1))
    raise TetherError(f"Could not swap in the new {target!r}: clients keep reconnecting to it. Stop the "
                      f"application that uses it and run the command again; {target!r} is unchanged and the "
                      f"new copy is kept as {scratch!r} until the next run cleans it up.")


def swap_in(admin: DatabaseAddress, scratch: str, target: str, *, attempts: int = 20) -> int:
    """``swap_names``, then drop the replaced database; returns the number of sessions disconnected."""
    disconnected, retired = swap_names(admin, scratch, target, attempts=attempts)
    if retired:
        drop_database(admin, retired)
    return disconnected


def drop_database(admin: DatabaseAddress, name: str) -> None:
    with _admin_connect(admin) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
