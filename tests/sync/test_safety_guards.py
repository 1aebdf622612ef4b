"""The sync's refusals, case by case, and what it learns about the local server (issue 21, mutation testing).

inspect_local talks to a real server; the refusals are pure and tested with tables of cases.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from tests.conftest import FAST_TEST_SETTINGS
from tether.conninfo import DatabaseAddress
from tether.errors import Refused, TetherError
from tether.sync.catalog import ServerInfo
from tether.sync.local import close_admin_sessions
from tether.sync.safety import LocalServer, check_distinct, check_extensions, check_local, inspect_local, same_server

ADDRESS = DatabaseAddress("127.0.0.1", 5435, "dev", "me", "pw")


@pytest.mark.parametrize(("host", "allow", "refused"), [
    ("127.0.0.1", False, False), ("localhost", False, False), ("/var/run/postgresql", False, False),
    ("10.1.2.3", False, True), ("db.example.com", False, True), ("10.1.2.3", True, False),
], ids=["loopback", "localhost", "socket", "private-ip", "hostname", "allowed"])
def test_check_local(host, allow, refused):
    dest = DatabaseAddress(host, 5432, "dev", "me", "s3cret-pw")
    if not refused:
        check_local(dest, allow)
        return
    with pytest.raises(Refused) as raised:
        check_local(dest, allow)
    message = raised.value.message
    assert message == (
        f"Refused: the destination {dest.masked_url()} is not a local server ({host}). sync-prod and db.reset "
        "replace the destination database entirely, which is meant for a laptop's dev database, not a shared or "
        "cloud server. If you really mean it, add --allow-remote-dest (and --yes to confirm without a prompt).")
    assert "s3cret-pw" not in message


def _local(available: frozenset[str], version: int = 150004) -> LocalServer:
    return LocalServer("1", "t0", version, None, ADDRESS.with_database("postgres"), available_extensions=available)


def test_extensions_the_local_server_lacks_are_refused_before_anything_is_written():
    local = _local(frozenset({"plpgsql", "pg_trgm"}))
    check_extensions({"plpgsql": "1.0", "pg_trgm": "1.6"}, local)
    with pytest.raises(TetherError) as raised:
        check_extensions({"postgis": "3.4.2", "plpgsql": "1.0", "citext": "1.6"}, local)
    assert raised.value.message == (
        "The source uses extensions the local server (PostgreSQL 15) does not have: citext 1.6, postgis 3.4.2. The "
        "copy would fail while creating the schema; nothing was written. Install them on this machine (on Debian and "
        "Ubuntu, most come as postgresql-15-<name>, e.g. postgresql-15-postgis-3; the contrib ones in "
        "postgresql-contrib) and run the sync again.")
    # A server that lists no available extensions (no pg_available_extensions) cannot be judged: let it try.
    check_extensions({"postgis": "3.4.2"}, _local(frozenset()))


@pytest.mark.parametrize(("source", "local", "same"), [
    (("42", "t0"), ("42", "t1"), True),  # the identifier decides, the start time is not looked at
    (("42", "t0"), ("43", "t0"), False),
    ((None, "t0"), ("43", "t0"), True),  # one side without an identifier: the start time decides
    (("42", "t0"), (None, "t0"), True),
    (("42", "t0"), (None, "t1"), False),
    ((None, "t0"), (None, "t1"), False),
], ids=["same-id", "other-id", "no-source-id", "no-local-id", "no-local-id-other-start", "no-ids"])
def test_same_server(source, local, same):
    info = ServerInfo(150000, source[0], source[1], 5, "prod", "UTF8", "reader")
    server = LocalServer(local[0], local[1], 150000, None, ADDRESS)
    assert same_server(info, server) is same


def test_check_distinct_messages_name_the_danger():
    source = ServerInfo(150000, "42", "t0", 5, "prod", "UTF8", "reader")
    same = LocalServer("42", "t0", 150000, 5, ADDRESS.with_database("postgres"))
    with pytest.raises(Refused) as raised:
        check_distinct(source, same, ADDRESS.with_database("copy"))
    assert raised.value.message == (
        f"Refused: the destination {ADDRESS.with_database('copy').masked_url()} is the source database itself (same "
        "server and database 'prod', whatever the host name says). Syncing would destroy it. Point --dest at another "
        "database.")
    scratch = ServerInfo(150000, "42", "t0", 7, "dev__tether_sync_1_2", "UTF8", "reader")
    with pytest.raises(Refused) as raised:
        check_distinct(scratch, LocalServer("42", "t0", 150000, 6, ADDRESS), ADDRESS)
    assert raised.value.message == ("Refused: the source 'dev__tether_sync_1_2' is one of the sync's own copies of "
                                    "'dev'. Point --source at the production database.")
    # A database whose name merely starts like the destination's is another database.
    check_distinct(ServerInfo(150000, "42", "t0", 7, "dev_old", "UTF8", "reader"),
                   LocalServer("42", "t0", 150000, 6, ADDRESS), ADDRESS)


def test_local_server_major():
    assert _local(frozenset(), 150004).major == 15 and _local(frozenset(), 90624).major == 9


def test_inspect_local_describes_the_server_as_it_is(pg_server):
    admin = pg_server.admin
    with psycopg.connect(admin.conninfo()) as conn:
        system = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()[0]
        start, version, wal = conn.execute("SELECT pg_postmaster_start_time()::text, "
                                           "current_setting('server_version_num')::int, "
                                           "current_setting('wal_level')").fetchone()
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = 'template1'").fetchone()[0]
    try:
        missing = inspect_local(admin.with_database(f"absent_{uuid.uuid4().hex[:8]}"))
        assert (missing.system_identifier, missing.start_time, missing.version_num, missing.wal_level) == (
            system, start, version, wal)
        assert missing.database_oid is None and missing.superuser is True
        assert missing.maintenance == admin.with_database("postgres")
        assert {"plpgsql", "pg_trgm", "citext"} <= missing.available_extensions
        # The destination is the postgres database itself: template1 is the maintenance database then.
        itself = inspect_local(admin)
        assert itself.maintenance == admin.with_database("template1")
        assert inspect_local(admin.with_database("template1")).database_oid == oid
    finally:
        close_admin_sessions()


def test_inspect_local_as_a_role_without_superuser(pg_server):
    admin = pg_server.admin
    role = f"tether_plain_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'plain-pw' CREATEDB").format(sql.Identifier(role)))
    try:
        local = inspect_local(admin.with_credentials(role, "plain-pw").with_database("dev_x"))
        assert local.superuser is False
        assert local.start_time and local.version_num >= 150000
    finally:
        close_admin_sessions()
        with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_inspect_local_says_why_it_cannot_connect(pg_server):
    wrong = pg_server.admin.with_credentials("postgres", "not-the-password-123").with_database("dev")
    with pytest.raises(TetherError) as raised:
        inspect_local(wrong)
    message = raised.value.message
    assert message.startswith(f"Could not connect to the destination server {wrong.masked_url()} (through its "
                              "postgres or template1 database): ")
    assert "password authentication failed" in message and "not-the-password-123" not in message
    assert "Is the local server running (`invoke up`), and may 'postgres' connect and create databases?" in message


def test_inspect_local_falls_back_to_template1_and_reads_the_wal_level(pg_server_factory):
    """A server without a postgres database (it may be dropped) is described through template1; and its
    wal_level is read, not assumed (this one is logical, not the default replica)."""
    server = pg_server_factory({**FAST_TEST_SETTINGS, "wal_level": "logical"})
    admin = server.admin
    with psycopg.connect(admin.with_database("template1").conninfo(), autocommit=True) as conn:
        conn.execute("DROP DATABASE postgres")
    try:
        local = inspect_local(admin.with_database("dev"))
        assert local.maintenance == admin.with_database("template1")
        assert local.wal_level == "logical"
    finally:
        close_admin_sessions()


def test_the_password_is_masked_in_libpqs_reason_too(pg_server):
    """libpq quotes the user name; a password that is also part of it is masked there (as everywhere)."""
    role = f"tether_{uuid.uuid4().hex[:6]}_pw"
    with psycopg.connect(pg_server.admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'the-right-one'").format(sql.Identifier(role)))
    try:
        wrong = pg_server.admin.with_credentials(role, role).with_database("dev")  # its name as its password
        with pytest.raises(TetherError) as raised:
            inspect_local(wrong)
        assert 'password authentication failed for user "********"' in raised.value.message
    finally:
        with psycopg.connect(pg_server.admin.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
