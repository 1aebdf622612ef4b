"""The sync's last checks can fail: a row count that does not match, a row changed locally (issue 21).

Survivor 3: the row-count verification must stop a copy whose counts disagree with the source snapshot, and
leave no destination database behind. Survivor 4: a local UPDATE keeps the row count, and a re-sync must still
notice it and reset the local database. Real servers throughout; only the copy's report of its own row count is
bent, as a bug in the copy would bend it.
"""

from __future__ import annotations

import dataclasses

import pytest

from tether.errors import TetherError
from tether.sync import engine
from tether.sync.engine import sync
from tether.sync.local import snapshot_name, spare_name
from tether.sync.plan import Selection

from .conftest import database_names, execute, table_digest

CHECKED = ["app.teams", "app.people", "app.events_2023", "app.events_2024", "app.cache", "app.log_lines",
           "app.bookings", "app.ledger_a", "app.ledger_b", '"Mixed Schema"."Odd Table"', "app.team_sizes"]


def assert_same(source, dest, tables=CHECKED):
    for table in tables:
        assert table_digest(dest, table) == table_digest(source, table), table


def _one_too_many(results, table):
    result = results[table]
    results[table] = dataclasses.replace(result, rows=result.rows + 1)
    return results


def test_a_copy_reporting_one_row_too_many_stops_the_sync_and_leaves_no_database(sync_servers, sync_options,
                                                                                 monkeypatch):
    real_copy = engine._copy
    monkeypatch.setattr(engine, "_copy", lambda *args, **kwargs: _one_too_many(real_copy(*args, **kwargs),
                                                                                "app.bookings"))
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    with pytest.raises(TetherError) as raised:
        sync(source, dest, sync_options(anonymize=False))
    message = raised.value.message
    assert "does not match the source snapshot" in message
    assert "app.bookings: 31 in the source snapshot, 30 locally" in message
    assert "local database was not replaced" in message
    assert "app.people" not in message  # only the table that is wrong is named
    assert database_names(sync_servers.dest_admin, dest.database) == []


def test_a_count_mismatch_in_an_incremental_sync_keeps_the_last_synced_state(sync_servers, sync_options,
                                                                             monkeypatch):
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    options = sync_options(anonymize=False)
    sync(source, dest, options)
    before = table_digest(dest, "app.bookings")
    execute(source, "INSERT INTO app.bookings VALUES (99, 1, tstzrange('2030-01-01', '2030-01-02'))")
    real_copy_table = engine.copy_table

    def one_too_many(*args, **kwargs):
        result = real_copy_table(*args, **kwargs)
        return dataclasses.replace(result, rows=result.rows + 1)

    monkeypatch.setattr(engine, "copy_table", one_too_many)
    with pytest.raises(TetherError, match=r"app\.bookings: 32 in the source snapshot, 31 locally"):
        sync(source, dest, options)
    assert table_digest(dest, "app.bookings") == before
    assert database_names(sync_servers.dest_admin, dest.database) == sorted(
        [dest.database, snapshot_name(dest.database), spare_name(dest.database)])
    monkeypatch.undo()
    # The snapshot still holds the last synced state: the change is found again and copied.
    summary = sync(source, dest, options)
    assert summary.mode == "incremental" and summary.changed_tables == ["app.bookings"]
    assert summary.verified and summary.row_counts["app.bookings"] == 31
    assert_same(source, dest)


def test_rows_found_in_a_table_meant_to_stay_empty_stop_the_sync(sync_servers, sync_options, monkeypatch):
    """--exclude-data tables are created empty; rows in one (a trigger, a default partition) fail the check."""
    real_finish = engine._finish_local

    def finish_and_leak(context, target, *args, **kwargs):
        real_finish(context, target, *args, **kwargs)
        execute(target, "INSERT INTO app.log_lines (line) VALUES ('leaked')")

    monkeypatch.setattr(engine, "_finish_local", finish_and_leak)
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    selection = Selection(exclude_data=("app.log_lines",))
    with pytest.raises(TetherError) as raised:
        sync(source, dest, sync_options(selection=selection))
    assert "does not match the source snapshot (app.log_lines)" in raised.value.message
    assert database_names(sync_servers.dest_admin, dest.database) == []


def test_a_verified_sync_reports_every_table_count(sync_servers, sync_options):
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    summary = sync(source, dest, sync_options(selection=Selection(exclude_data=("app.log_lines",))))
    assert summary.verified
    assert summary.row_counts == {
        "app.bookings": 30, "app.cache": 50, "app.events_2023": 213, "app.events_2024": 187, "app.ledger_a": 2000,
        "app.ledger_b": 2000, "app.people": 300, "app.teams": 5, "Mixed Schema.Odd Table": 20}
    assert summary.rows == sum(summary.row_counts.values())
    assert execute(dest, "SELECT count(*) FROM app.log_lines") == [(0,)]


def test_a_local_update_that_keeps_the_row_count_is_still_replaced_on_resync(sync_servers, sync_options):
    """Survivor 4: the count alone cannot see an UPDATE; the rows written since the sync must be looked at too."""
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    options = sync_options(anonymize=False)
    sync(source, dest, options)
    execute(dest, "UPDATE app.bookings SET room = 3 WHERE id = 1")
    assert execute(dest, "SELECT count(*) FROM app.bookings") == [(30,)]
    summary = sync(source, dest, options)
    assert summary.mode == "unchanged" and summary.tables_copied == 0
    assert summary.notes == ["local database replaced from the snapshot: rows of app.bookings changed locally"]
    assert_same(source, dest)
    # Untouched since: the next sync keeps it as it is.
    assert sync(source, dest, options).notes == []
