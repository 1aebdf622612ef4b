"""Never clobber the wrong database: the destination must be local and must not be the source itself.

Host names prove nothing (127.0.0.1, localhost, a proxy port and a socket can all reach one server), so
"same database" is decided by what the servers say about themselves: the cluster's system identifier and
the database's oid.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from tether.conninfo import DatabaseAddress, libpq_reason
from tether.errors import Refused, TetherError
from tether.swap import SCRATCH_MARK
from tether.sync.catalog import ServerInfo, system_identifier
from tether.sync.local import admin_session


@dataclass(frozen=True)
class LocalServer:
    """The destination's server as seen from its maintenance database."""

    system_identifier: str | None
    start_time: str
    version_num: int
    database_oid: int | None  # of the destination database, None when it does not exist yet
    maintenance: DatabaseAddress  # where to run CREATE/ALTER/DROP DATABASE
    superuser: bool = False
    available_extensions: frozenset[str] = frozenset()  # what CREATE EXTENSION can install here
    wal_level: str = "replica"

    @property
    def major(self) -> int:
        return self.version_num // 10000


def check_local(dest: DatabaseAddress, allow_remote: bool) -> None:
    """Refuse a destination that is not on this machine unless explicitly allowed (checked before anything else)."""
    if dest.is_local or allow_remote:
        return
    raise Refused(f"Refused: the destination {dest.masked_url()} is not a local server ({dest.host}). sync-prod "
                  "and db.reset replace the destination database entirely, which is meant for a laptop's dev "
                  "database, not a shared or cloud server. If you really mean it, add --allow-remote-dest (and "
                  "--yes to confirm without a prompt).")


def inspect_local(dest: DatabaseAddress) -> LocalServer:
    """Connect to the destination's server (its ``postgres`` or ``template1`` database) and describe it."""
    last_error: Exception | None = None
    for maintenance_db in ("postgres", "template1"):
        if maintenance_db == dest.database:
            continue
        address = dest.with_database(maintenance_db)
        try:
            conn = admin_session(address)
        except psycopg.OperationalError as error:
            last_error = error
            continue
        row = conn.execute("SELECT pg_postmaster_start_time()::text, current_setting('server_version_num')::int,"
                           " (SELECT oid FROM pg_database WHERE datname = %s),"
                           " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
                           " (SELECT array_agg(name) FROM pg_available_extensions), current_setting('wal_level')",
                           (dest.database,)).fetchone()
        assert row is not None
        return LocalServer(system_identifier(conn), row[0], row[1], row[2], address, bool(row[3]),
                           frozenset(row[4] or ()), str(row[5]))
    detail = libpq_reason(last_error, dest.password) if last_error else "no maintenance database"
    raise TetherError(f"Could not connect to the destination server {dest.masked_url()} (through its postgres or "
                      f"template1 database): {detail}. Is the local server running (`invoke up`), and may "
                      f"{dest.user!r} connect and create databases?")


def check_extensions(extensions: dict[str, str], local: LocalServer) -> None:
    """Refuse, before anything is written, a source whose extensions the local server cannot install."""
    missing = sorted(f"{name} {version}" for name, version in extensions.items()
                     if name not in local.available_extensions)
    if missing and local.available_extensions:
        major = local.major
        raise TetherError(f"The source uses extensions the local server (PostgreSQL {major}) does not have: "
                          f"{', '.join(missing)}. The copy would fail while creating the schema; nothing was written. "
                          "Install them on this machine (on Debian and Ubuntu, most come as "
                          f"postgresql-{major}-<name>, e.g. postgresql-{major}-postgis-3; the contrib ones in "
                          "postgresql-contrib) and run the sync again.")


def same_server(source: ServerInfo, local: LocalServer) -> bool:
    if source.system_identifier and local.system_identifier:
        return source.system_identifier == local.system_identifier
    # A role that may not read the control file: the postmaster's start time (to the microsecond) stands in.
    return source.start_time == local.start_time


def check_distinct(source: ServerInfo, local: LocalServer, dest: DatabaseAddress) -> None:
    """Refuse when the destination is the source database (or one of the sync's own copies of it)."""
    if not same_server(source, local):
        return
    if local.database_oid == source.database_oid or source.database == dest.database:
        raise Refused(f"Refused: the destination {dest.masked_url()} is the source database itself (same server "
                      f"and database {source.database!r}, whatever the host name says). Syncing would destroy "
                      "it. Point --dest at another database.")
    if source.database.startswith(dest.database + SCRATCH_MARK):
        raise Refused(f"Refused: the source {source.database!r} is one of the sync's own copies of "
                      f"{dest.database!r}. Point --source at the production database.")
