"""The spare copy of the snapshot: resets rename it in, and a spare of any other state is never used."""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg import sql

from tether.sync import engine
from tether.sync import local as localdb
from tether.sync.engine import sync
from tether.sync.reset import reset, reset_from_snapshot

from .conftest import database_names, execute
from .test_incremental import assert_same


def spare_label(admin, target: str) -> localdb.SpareLabel | None:
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        return localdb._spare_label(conn, localdb.spare_name(target))


def current_content(admin, target: str) -> str:
    state = localdb.SyncState.from_json(execute(
        admin, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (localdb.snapshot_name(target),))[0][0])
    assert state is not None and state.content_id
    return state.content_id


def test_reset_renames_the_current_spare_in_and_makes_the_next_one(sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False))
    first = spare_label(admin, dest.database)
    assert first is not None and first.content_id == current_content(admin, dest.database)
    assert execute(admin, "SELECT datallowconn FROM pg_database WHERE datname = %s",
                   (localdb.spare_name(dest.database),)) == [(False,)]  # nobody can change it by accident

    execute(dest, "DROP TABLE app.cache; TRUNCATE app.ledger_b CASCADE; UPDATE app.people SET full_name = 'x'")
    result = reset(dest, yes=True, drop_retired="now")
    assert result.from_spare
    assert_same(source, dest)
    assert execute(dest, "SELECT count(*) FROM app.cache") == execute(source, "SELECT count(*) FROM app.cache")
    second = spare_label(admin, dest.database)
    assert second is not None and second.content_id == first.content_id
    assert database_names(admin, dest.database) == sorted(
        [dest.database, localdb.snapshot_name(dest.database), localdb.spare_name(dest.database)])
    # The renamed-in spare counts as untouched: the next sync keeps it.
    assert sync(source, dest, sync_options(anonymize=False)).notes == []


def test_a_spare_of_another_state_is_never_used(sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    options = sync_options(anonymize=False)
    sync(source, dest, options)
    spare = localdb.spare_name(dest.database)
    # A spare left from an older state: different rows, and a label naming that other state.
    execute(admin, sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(spare)).as_string())
    execute(dest.with_database(spare), "DELETE FROM app.log_lines")
    execute(admin, sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(spare), sql.Literal(localdb.SpareLabel("an-older-state", 1).to_json())).as_string())

    execute(dest, "DELETE FROM app.cache")
    result = reset(dest, yes=True, drop_retired="now")
    assert not result.from_spare
    assert_same(source, dest)
    label = spare_label(admin, dest.database)
    assert label is not None and label.content_id == current_content(admin, dest.database)

    # An incremental sync changes the snapshot: the spare it leaves holds the new state, not the old one.
    execute(source, "INSERT INTO app.log_lines (line) VALUES ('after the first sync')")
    before = current_content(admin, dest.database)
    assert sync(source, dest, options).mode == "incremental"
    assert current_content(admin, dest.database) != before
    execute(dest, "DELETE FROM app.log_lines")
    assert reset(dest, yes=True, drop_retired="now").from_spare
    assert_same(source, dest)


def test_a_copy_made_while_the_snapshot_changed_is_thrown_away(sync_servers, sync_options, monkeypatch):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False, spare=False))
    assert spare_label(admin, dest.database) is None
    copy = localdb._copy_database

    def copy_then_sync_lands(conn, template, name, **options):
        horizon = copy(conn, template, name, **options)
        state = localdb._read_state(conn, template)
        assert state is not None
        state.content_id = "a-newer-sync"  # what a sync installing a new snapshot meanwhile leaves
        localdb.write_state(conn, template, state)
        return horizon

    monkeypatch.setattr(localdb, "_copy_database", copy_then_sync_lands)
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        outcome = localdb.make_spare(conn, dest.database)
    assert outcome.startswith("discarded")
    assert database_names(admin, dest.database) == sorted([dest.database, localdb.snapshot_name(dest.database)])


def test_spares_can_be_turned_off(sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False, spare=False))
    assert spare_label(admin, dest.database) is None
    assert not reset(dest, yes=True, drop_retired="now", spare=False).from_spare
    assert spare_label(admin, dest.database) is None
    # Nothing changed: the re-sync makes the missing spare when spares are on, and drops it when off.
    assert sync(source, dest, sync_options(anonymize=False)).mode == "unchanged"
    assert spare_label(admin, dest.database) is not None
    assert sync(source, dest, sync_options(anonymize=False, spare=False)).mode == "unchanged"
    assert spare_label(admin, dest.database) is None


def test_the_spare_is_made_in_the_background_by_default(sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False, drop_retired="background"))
    deadline = time.monotonic() + 60
    while (label := spare_label(admin, dest.database)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert label is not None and label.content_id == current_content(admin, dest.database)
    # The replaced databases are gone too, and no scratch copy is left behind.
    while len(database_names(admin, dest.database)) > 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert database_names(admin, dest.database) == sorted(
        [dest.database, localdb.snapshot_name(dest.database), localdb.spare_name(dest.database)])
    assert reset(dest, yes=True, drop_retired="now").from_spare


def snapshot_state(admin, target: str) -> localdb.SyncState:
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        state = localdb._read_state(conn, localdb.snapshot_name(target))
    assert state is not None
    return state


def rename(admin, old: str, new: str) -> None:
    execute(admin, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old),
                                                                   sql.Identifier(new)).as_string())


def test_a_reset_with_a_state_read_before_a_sync_landed_neither_uses_the_old_spare_nor_undoes_the_sync(
        sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False))
    read_before_the_prompt = snapshot_state(admin, dest.database)
    spare, aside = localdb.spare_name(dest.database), f"{dest.database}_aside"
    rename(admin, spare, aside)  # the old spare, not yet dropped when the next sync lands
    execute(source, "INSERT INTO app.log_lines (line) VALUES ('landed during the prompt')")
    assert sync(source, dest, sync_options(anonymize=False, spare=False)).mode == "incremental"
    landed = snapshot_state(admin, dest.database)
    rename(admin, aside, spare)

    execute(dest, "DELETE FROM app.log_lines")
    _, _, from_spare = reset_from_snapshot(admin, dest, read_before_the_prompt, "now")
    assert not from_spare
    assert_same(source, dest, ["app.log_lines"])
    assert snapshot_state(admin, dest.database).content_id == landed.content_id


def test_two_resets_at_once_the_second_copies_instead_of_failing(sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False))
    state = snapshot_state(admin, dest.database)
    spare = localdb.spare_name(dest.database)
    first = psycopg.connect(admin.conninfo())  # the first reset, in the middle of taking the spare
    first.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(spare),
                                                                  sql.Identifier(f"{dest.database}_taken")))
    outcome: list[object] = []
    second = threading.Thread(target=lambda: outcome.append(localdb.take_spare(admin, dest.database, state)))
    second.start()
    time.sleep(0.5)  # the second waits for the first's rename to commit
    first.commit()
    first.close()
    second.join(30)
    localdb.close_admin_sessions()
    assert outcome == [None]


def test_the_snapshot_state_commits_with_the_rows_it_describes(sync_servers, sync_options, monkeypatch):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False))
    before = snapshot_state(admin, dest.database).content_id
    execute(source, "INSERT INTO app.log_lines (line) VALUES ('changed')")
    seen: list[str] = []
    allow = localdb.allow_connections

    def closing(admin_address, name, allowed):
        if not allowed:  # the sync is done writing to the snapshot: its new state must already be there
            seen.append(snapshot_state(admin, dest.database).content_id)
        allow(admin_address, name, allowed)

    monkeypatch.setattr(localdb, "allow_connections", closing)
    monkeypatch.setattr(engine, "_unlogged_tables_emptied", lambda *_: [])  # it opens the snapshot earlier
    assert sync(source, dest, sync_options(anonymize=False)).mode == "incremental"
    assert seen and seen[0] != before


def test_a_snapshot_from_before_content_ids_gets_one_and_a_spare(sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False, spare=False))
    old = snapshot_state(admin, dest.database)
    old.content_id = ""
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        localdb.write_state(conn, localdb.snapshot_name(dest.database), old)
    assert sync(source, dest, sync_options(anonymize=False)).mode == "unchanged"
    given, label = snapshot_state(admin, dest.database).content_id, spare_label(admin, dest.database)
    assert given and label is not None and label.content_id == given
    execute(dest, "DELETE FROM app.cache")
    assert reset(dest, yes=True, drop_retired="now").from_spare
    assert_same(source, dest)


def test_no_spare_is_made_when_the_disk_could_not_also_hold_the_next_sync(sync_servers, sync_options, monkeypatch):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False, spare=False))
    size = execute(admin, "SELECT pg_database_size(%s)", (localdb.snapshot_name(dest.database),))[0][0]
    disk = localdb.shutil.disk_usage("/")
    monkeypatch.setattr(localdb.shutil, "disk_usage", lambda path: disk._replace(free=2 * size))
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        outcome = localdb.make_spare(conn, dest.database)
    assert outcome.startswith("skipped:") and "GB free on the server's disk" in outcome
    assert spare_label(admin, dest.database) is None
    execute(dest, "DELETE FROM app.cache")
    assert not reset(dest, yes=True, drop_retired="now").from_spare  # the reset copies the snapshot instead
    assert_same(source, dest)
    monkeypatch.undo()
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        assert localdb.make_spare(conn, dest.database) == "made"


def test_an_incremental_sync_brings_the_spare_up_to_date_instead_of_copying_the_snapshot(sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    options = sync_options(anonymize=False)
    sync(source, dest, options)
    # A truncated-and-refilled table gets a new file in both copies: the bookkeeping must follow the working one.
    execute(source, "BEGIN; TRUNCATE app.cache; INSERT INTO app.cache VALUES ('only', 'row'); COMMIT; "
                    "UPDATE app.people SET full_name = 'changed' WHERE id = 3; "
                    "SELECT setval('app.invoice_numbers', 5000)")
    summary = sync(source, dest, options)
    assert summary.mode == "incremental" and sorted(summary.changed_tables) == ["app.cache", "app.people"]
    assert any("spare copy with the 2 changed tables" in note for note in summary.notes)
    assert_same(source, dest)
    assert execute(dest, "SELECT last_value FROM app.invoice_numbers") == [(5000,)]
    assert execute(dest, "SELECT members FROM app.team_sizes ORDER BY team_id") == \
        execute(source, "SELECT members FROM app.team_sizes ORDER BY team_id")
    # Untouched since: kept as it is, not reset.
    again = sync(source, dest, options)
    assert (again.mode, again.notes) == ("unchanged", [])
    # After a reset (a copy of the snapshot, whose files differ from that working copy's), the same holds.
    execute(dest, "UPDATE app.people SET full_name = 'local'")
    assert reset(dest, yes=True, drop_retired="now").from_spare
    assert_same(source, dest)
    again = sync(source, dest, options)
    assert (again.mode, again.notes) == ("unchanged", [])
    assert spare_label(admin, dest.database).content_id == current_content(admin, dest.database)


def test_without_a_current_spare_an_incremental_sync_copies_the_snapshot(sync_servers, sync_options):
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    sync(source, dest, sync_options(anonymize=False, spare=False))
    execute(source, "INSERT INTO app.log_lines (line) VALUES ('new')")
    summary = sync(source, dest, sync_options(anonymize=False))
    assert summary.mode == "incremental" and not any("spare" in note for note in summary.notes)
    assert_same(source, dest)


def test_a_reset_during_an_incremental_sync_still_renames_the_spare_in(sync_servers, sync_options, monkeypatch):
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    options = sync_options(anonymize=False)
    sync(source, dest, options)
    execute(source, "INSERT INTO app.log_lines (line) VALUES ('new')")
    resets: list[tuple[bool, float]] = []
    copy_table = engine.copy_table

    def copy_while_someone_resets(*args, **kwargs):
        if not resets:  # the sync is filling the snapshot (connected to it) right now
            started = time.monotonic()
            resets.append((reset(dest, yes=True, drop_retired="now").from_spare, time.monotonic() - started))
        return copy_table(*args, **kwargs)

    monkeypatch.setattr(engine, "copy_table", copy_while_someone_resets)
    summary = sync(source, dest, options)
    assert summary.mode == "incremental"
    # The reset's new spare finds the snapshot in use by the sync: one try, in which PostgreSQL waits 5 s for the
    # sync to leave, then the reset goes on without it. 30 s leaves a loaded machine room for that wait and the
    # reset; retrying (20 tries of 5 s) would not fit.
    assert resets and resets[0][0] and resets[0][1] < 30
    assert_same(source, dest)
