"""Re-syncs copy only what changed (and never skip a change); resets; consistency under writes; safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest

from tests.conftest import wait_for_sessions_to_end
from tether.errors import Refused, TetherError
from tether.native import postgres as native_pg
from tether.processes import pid_exists
from tether.sync.engine import sync
from tether.sync.local import snapshot_name, spare_name
from tether.sync.reset import reset
from tether.workdirs import work_root

from .conftest import database_names, execute, table_digest

CHECKED = ["app.teams", "app.people", "app.events_2023", "app.events_2024", "app.cache", "app.log_lines",
           "app.bookings", "app.ledger_a", "app.ledger_b", '"Mixed Schema"."Odd Table"', "app.team_sizes"]


def assert_same(source, dest, tables=CHECKED):
    for table in tables:
        assert table_digest(dest, table) == table_digest(source, table), table


@pytest.mark.slow
def test_resync_copies_exactly_the_changed_tables(sync_servers, sync_options):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    options = sync_options(anonymize=False)
    assert sync(source, dest, options).mode == "full"

    nothing = sync(source, dest, options)
    assert (nothing.mode, nothing.tables_copied, nothing.changed_tables) == ("unchanged", 0, [])
    assert nothing.tables_carried_over == 10 and nothing.verified

    steps = [
        # An insert, an update, a delete and a truncate, each in another table.
        ("INSERT INTO app.log_lines (line) VALUES ('new'); UPDATE app.bookings SET room = 9 WHERE id = 4",
         ["app.log_lines", "app.bookings"]),
        ("DELETE FROM app.cache WHERE key = 'k7'; TRUNCATE app.ledger_b", ["app.cache", "app.ledger_b"]),
        # Same row count, different rows: one deleted, one inserted.
        ("DELETE FROM \"Mixed Schema\".\"Odd Table\" WHERE \"Weird Col\" = 3; "
         "INSERT INTO \"Mixed Schema\".\"Odd Table\" VALUES (300, 'x', 'y')", ["Mixed Schema.Odd Table"]),
        # Truncated and filled again with identical rows.
        ("BEGIN; TRUNCATE app.cache; INSERT INTO app.cache SELECT 'k' || g, 'v' || g FROM generate_series(1, 50) g "
         "WHERE g <> 7; COMMIT", ["app.cache"]),
        # A referenced table (teams), a partition; the materialized view on people is computed again.
        ("UPDATE app.teams SET name = 'renamed' WHERE id = 2; UPDATE app.people SET team_id = 2 WHERE id < 50; "
         "INSERT INTO app.events (at, person_id) VALUES ('2024-05-05', 1); REFRESH MATERIALIZED VIEW app.team_sizes",
         ["app.events_2024", "app.people", "app.teams"]),
    ]
    for statement, changed in steps:
        execute(source, statement)
        summary = sync(source, dest, options)
        assert summary.mode == "incremental", statement
        assert sorted(summary.changed_tables) == sorted(changed), statement
        assert summary.tables_copied == len(changed) and summary.verified
        assert_same(source, dest)
    assert execute(dest, "SELECT members FROM app.team_sizes WHERE team_id = 2") == \
        execute(source, "SELECT members FROM app.team_sizes WHERE team_id = 2")
    # Sequences follow the source even when no row changed.
    execute(source, "SELECT nextval('app.invoice_numbers')")
    again = sync(source, dest, options)
    assert again.mode == "unchanged"
    assert execute(dest, "SELECT last_value FROM app.invoice_numbers") == [(4243,)]
    execute(dest, "SELECT setval('app.invoice_numbers', 1)")
    reset(dest, yes=True, drop_retired="now")  # the snapshot has 4242; the reset applies the last synced value
    assert execute(dest, "SELECT last_value FROM app.invoice_numbers") == [(4243,)]


def test_local_changes_are_replaced_on_resync_and_reset(sync_servers, sync_options, monkeypatch):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    options = sync_options(anonymize=False)
    sync(source, dest, options)
    execute(dest, "DELETE FROM app.ledger_b WHERE id > 100; UPDATE app.people SET full_name = 'local' WHERE id = 1")
    summary = sync(source, dest, options)
    assert summary.mode == "unchanged" and summary.tables_copied == 0
    assert any("local database replaced" in note for note in summary.notes)
    assert_same(source, dest)

    # db.reset: break things locally, reset, and the synced state is back; open sessions are told.
    execute(dest, "DROP TABLE app.cache; TRUNCATE app.ledger_b; CREATE TABLE junk (x int)")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Refused, match="--yes"):
        reset(dest, yes=False)
    assert execute(dest, "SELECT to_regclass('junk') IS NOT NULL") == [(True,)]
    # The test's own sessions on dest (just above) gone first: the reset is to count exactly the idle one.
    wait_for_sessions_to_end(sync_servers.dest_admin, dest.database)
    idle = psycopg.connect(dest.conninfo())
    try:
        result = reset(dest, yes=True, drop_retired="now")
    finally:
        idle.close()
    assert result.sessions_disconnected == 1
    assert_same(source, dest)
    assert execute(dest, "SELECT to_regclass('junk') IS NULL") == [(True,)]
    assert database_names(sync_servers.dest_admin, dest.database) == sorted(
        [dest.database, snapshot_name(dest.database), spare_name(dest.database)])
    # Nothing changed anywhere: the next sync keeps the local database as it is.
    assert sync(source, dest, options).notes == []


def test_reset_needs_a_snapshot(sync_servers):
    with pytest.raises(TetherError, match="Run `invoke sync-prod` first"):
        reset(sync_servers.dest(), yes=True)


def test_concurrent_writes_do_not_break_consistency(sync_servers, sync_options):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    stop = threading.Event()
    written = []

    def writer() -> None:
        with psycopg.connect(source.conninfo(), autocommit=True) as conn:
            next_id = 100_000
            while not stop.is_set():
                with conn.transaction():
                    conn.execute("INSERT INTO app.ledger_a VALUES (%s, 'a')", (next_id,))
                    conn.execute("INSERT INTO app.ledger_b VALUES (%s, 'b')", (next_id,))
                written.append(next_id)
                next_id += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        # The sync starts once the writer is writing (its connection can take a while under load): otherwise the
        # snapshot may come before the first write, and nothing here would be written while the sync runs.
        deadline = time.monotonic() + 30
        while len(written) < 5:
            assert thread.is_alive(), "the writer stopped"
            assert time.monotonic() < deadline, "the writer committed fewer than 5 rows in 30 s"
            time.sleep(0.01)
        summary = sync(source, dest, sync_options(anonymize=False, jobs=3))
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    assert len(written) > 20
    a = execute(dest, "SELECT count(*), max(id) FROM app.ledger_a")[0]
    b = execute(dest, "SELECT count(*), max(id) FROM app.ledger_b")[0]
    assert a == b  # both tables from the same instant, although copied by different workers
    assert 2000 < a[0] < 2000 + len(written)  # writes before the snapshot are in, later ones are not
    assert summary.row_counts["app.ledger_a"] == a[0]


def test_same_database_is_refused_whatever_the_host_name(sync_servers, sync_options):
    source = sync_servers.source_copy()
    execute(source, "CREATE TABLE marker (x int); INSERT INTO marker VALUES (42)")
    same = source.__class__("localhost", source.port, source.database, source.user, source.password)
    with pytest.raises(Refused, match="is the source database itself"):
        sync(source, same, sync_options(anonymize=False))
    assert execute(source, "SELECT x FROM marker") == [(42,)]
    assert database_names(sync_servers.source_admin, source.database + "__") == []


SYNC_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tether.conninfo import parse_database_url
    from tether.sync.engine import SyncOptions, sync
    source, dest = parse_database_url(sys.argv[1]), parse_database_url(sys.argv[2])
    sync(source, dest, SyncOptions(yes=True, anonymize=False, drop_retired="now", jobs=2))
""")


@pytest.mark.slow
def test_kill_9_mid_sync_leaves_the_old_database_untouched(sync_servers, sync_options):
    source = sync_servers.source_copy()
    execute(source, "INSERT INTO app.log_lines (line) SELECT repeat('x', 200) FROM generate_series(1, 200000)")
    dest = sync_servers.dest()
    execute(sync_servers.dest_admin, f'CREATE DATABASE "{dest.database}"')
    execute(dest, "CREATE TABLE precious (id int PRIMARY KEY, note text); "
                  "INSERT INTO precious SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
    before = table_digest(dest, "precious")
    process = subprocess.Popen([sys.executable, "-c", SYNC_SCRIPT, source.url(), dest.url()],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            copying = execute(sync_servers.dest_admin, "SELECT count(*) FROM pg_stat_activity "
                                                       "WHERE datname LIKE %s AND query LIKE 'COPY%%'",
                              (dest.database + "__tether_sync_%",))
            if copying[0][0]:
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.01)
        else:
            pytest.fail("the sync never started copying")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(10)
    assert process.returncode == -signal.SIGKILL
    assert table_digest(dest, "precious") == before
    leftovers = [name for name in database_names(sync_servers.dest_admin, dest.database)
                 if name != dest.database]
    assert leftovers and all("__tether_sync_" in name for name in leftovers)
    # What the killed sync held on disk (pg_dump's archive, spooled rows) is in the project's private work
    # directory, never in /tmp; the next command removes it.
    killed = [entry for entry in work_root().iterdir() if entry.name.startswith(f"sync-{process.pid}-")]
    assert killed and all(oct(entry.stat().st_mode & 0o777) == "0o700" for entry in killed)

    summary = sync(source, dest, sync_options(anonymize=False))
    assert summary.verified
    assert not any(entry.exists() for entry in killed)
    assert database_names(sync_servers.dest_admin, dest.database) == sorted(
        [dest.database, snapshot_name(dest.database), spare_name(dest.database)])
    assert execute(dest, "SELECT to_regclass('precious') IS NULL") == [(True,)]
    assert_same(source, dest)


def test_a_failed_incremental_sync_keeps_snapshot_and_local_database(sync_servers, sync_options, monkeypatch):
    from tether.sync import engine

    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    options = sync_options(anonymize=False)
    sync(source, dest, options)
    execute(source, "INSERT INTO app.log_lines (line) VALUES ('one'); UPDATE app.bookings SET room = 7")
    calls = []
    real_copy_table = engine.copy_table

    def failing(*args, **kwargs):
        calls.append(args[2].name)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real_copy_table(*args, **kwargs)

    monkeypatch.setattr(engine, "copy_table", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        sync(source, dest, options)
    monkeypatch.undo()
    assert len(calls) == 2
    # The local database and the snapshot both still hold the last synced state.
    assert execute(dest, "SELECT count(*) FROM app.log_lines WHERE line = 'one'") == [(0,)]
    reset(dest, yes=True, drop_retired="now")
    assert execute(dest, "SELECT count(*) FROM app.log_lines WHERE line = 'one'") == [(0,)]
    assert execute(dest, "SELECT count(*) FROM app.bookings WHERE room = 7") == [(0,)]
    # The next sync sees both changes still pending.
    summary = sync(source, dest, options)
    assert sorted(summary.changed_tables) == ["app.bookings", "app.log_lines"]
    assert_same(source, dest)


def test_local_user_without_superuser(sync_servers, sync_options):
    from .conftest import ensure_role

    ensure_role(sync_servers.dest_admin, "tether_sync_local", "local-pw")
    execute(sync_servers.dest_admin, "ALTER ROLE tether_sync_local CREATEDB")
    source = sync_servers.source_copy()
    dest = sync_servers.dest().with_credentials("tether_sync_local", "local-pw")
    options = sync_options(anonymize=False)
    assert sync(source, dest, options).verified
    assert_same(source, dest)
    execute(source, "INSERT INTO app.cache VALUES ('new', 'row')")
    summary = sync(source, dest, options)
    assert summary.mode == "full" and "needs a superuser" in summary.notes[0]
    assert_same(source, dest)


def test_replaced_databases_are_dropped_in_the_background(sync_servers, isolated_project):
    from tether.sync.local import drop_in_background

    name = sync_servers.dest().database
    execute(sync_servers.dest_admin, f'CREATE DATABASE "{name}"')
    drop_in_background(sync_servers.dest_admin, [name])
    deadline = time.monotonic() + 20
    while database_names(sync_servers.dest_admin, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert database_names(sync_servers.dest_admin, name) == []
    log = isolated_project / ".runtime" / "sync" / "reaper.log"
    assert log.exists() and "could not drop" not in log.read_text()


@pytest.mark.slow
def test_a_local_crash_that_empties_unlogged_tables_makes_the_next_sync_full(sync_servers, sync_options,
                                                                              pg_server_factory):
    source, local = sync_servers.source_copy(), pg_server_factory()
    dest = local.admin.with_database("dev_crashed")
    options = sync_options(anonymize=False)
    sync(source, dest, options)
    assert execute(dest, "SELECT count(*) FROM app.cache") == execute(source, "SELECT count(*) FROM app.cache")
    pid = native_pg.running_pid(local.server)
    assert pid is not None
    os.kill(pid, signal.SIGQUIT)  # an immediate shutdown, as after a crash: recovery runs at the next start
    deadline = time.monotonic() + 30
    while pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    native_pg.start(local.server)
    assert execute(dest, "SELECT count(*) FROM app.cache") == [(0,)]  # PostgreSQL emptied it, in the snapshot too

    summary = sync(source, dest, options)
    assert summary.mode == "full" and "unlogged tables" in summary.notes[0] and "app.cache" in summary.notes[0]
    assert_same(source, dest)
