"""The sync's last checks can fail: a row count that does not match, a row changed locally (issue 21).

Survivor 3: the row-count verification must stop a copy whose counts disagree with the source snapshot, and
leave no destination database behind. Survivor 4: a local UPDATE keeps the row count, and a re-sync must still
notice it and reset the local database. Real servers throughout; only the copy's report of its own row count is
bent, as a bug in the copy would bend it.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from tether.errors import TetherError
from tether.sync import engine
from tether.sync.catalog import Relation
from tether.sync.copy import CopyResult
from tether.sync.engine import sync
from tether.sync.incremental import SyncState, TableState
from tether.sync.local import snapshot_name, spare_name
from tether.sync.plan import Selection, SyncPlan, TableCopy
from tether.sync.summary import SyncSummary

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
    assert summary.phases["verify"] > 0  # the time the counts took, under their own name


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


# --- the comparison itself, case by case (no server: _check_counts reads only what it is given) ------------------


def _table(name: str, kind: str = "r", *, appends: bool = False) -> Relation:
    schema, table = name.split(".")
    return Relation(len(name), schema, table, kind, "p", None, False, 1, True,
                    extension_condition="WHERE true" if appends else None)


def _context(copies: list[TableCopy], schema_only: list[Relation] = ()) -> SimpleNamespace:
    """What _check_counts reads of the sync's context: the plan and the summary it fills in."""
    plan = SyncPlan(excluded=[], schema_only=list(schema_only), copies=copies, skipped_foreign_keys=set())
    return SimpleNamespace(plan=plan, summary=SyncSummary("full", "src", "dst", None, False))


def _copy(name: str, *, appends: bool = False, expected: int | None = None) -> TableCopy:
    return TableCopy(_table(name, appends=appends), {}, False, expected_rows=expected)


def _result(name: str, rows: int, base: int = 0) -> CopyResult:
    return CopyResult(name, rows, 0, 0.0, base_rows=base)


def _previous(local_rows: dict[str, int], tables: dict[str, int]) -> SyncState:
    return SyncState(source_system="1", source_start="t", source_database_oid=5, source_database="db",
                     source_url="postgresql://x", synced_at="now", horizon=10, xmax=12, schema_digest="s",
                     options_digest="o", catalog_digest="c",
                     tables={name: TableState(rows, 1, 0, "") for name, rows in tables.items()}, sequences={},
                     local_rows=local_rows)


MISMATCH = "The copy does not match the source snapshot ({}). The local database was not replaced."


def test_counts_that_match_are_returned_and_summed():
    context = _context([_copy("app.a"), _copy("app.b")])
    relations = dict.fromkeys(["app.a", "app.b", "app.view", "app.empty"])
    counted = {"app.a": 3, "app.b": 3, "app.view": 4}
    results = {"app.b": _result("app.b", 2, base=1), "app.a": _result("app.a", 3)}
    local = engine._check_counts(context, relations, counted, results, None)
    assert local == {"app.a": 3, "app.b": 3, "app.view": 4, "app.empty": 0}  # not counted, nothing before: 0
    assert context.summary.verified is True
    assert list(context.summary.row_counts.items()) == [("app.a", 3), ("app.b", 3)]
    assert context.summary.rows == 6


def test_an_incremental_sync_expects_the_last_counts_of_what_it_did_not_copy():
    context = _context([_copy("app.a"), _copy("app.kept"), _copy("app.ext", appends=True), _copy("app.new_ext",
                                                                                                  appends=True)])
    previous = _previous({"app.kept": 7, "app.ext": 9, "app.view": 11}, {"app.kept": 7, "app.ext": 2})
    relations = dict.fromkeys(["app.a", "app.kept", "app.ext", "app.new_ext", "app.view"])
    counted = {"app.a": 1, "app.kept": 7, "app.ext": 9, "app.new_ext": 0}
    local = engine._check_counts(context, relations, counted, {"app.a": _result("app.a", 1)}, previous)
    # An extension's table holds its own rows besides the copied ones: the last local count is what it must hold.
    assert context.summary.row_counts == {"app.a": 1, "app.ext": 9, "app.kept": 7, "app.new_ext": 0}
    assert local["app.view"] == 11  # not counted again: the last sync's count stands
    with pytest.raises(TetherError) as raised:
        engine._check_counts(context, relations, {**counted, "app.kept": 8}, {"app.a": _result("app.a", 1)},
                             previous)
    assert raised.value.message == MISMATCH.format("app.kept: 7 in the source snapshot, 8 locally")


def test_every_wrong_count_is_named_and_nothing_is_marked_verified():
    context = _context([_copy("app.a"), _copy("app.b"), _copy("app.c"), _copy("app.gone")],
                       schema_only=[_table("app.log"), _table("app.remote", "f"), _table("app.quiet")])
    relations = dict.fromkeys(["app.a", "app.b", "app.c", "app.log", "app.remote"])
    counted = {"app.a": 2, "app.b": 5, "app.c": 1, "app.log": 3, "app.remote": 40}
    results = {name: _result(name, rows) for name, rows in (("app.a", 3), ("app.b", 5), ("app.c", 0),
                                                            ("app.gone", 0))}
    with pytest.raises(TetherError) as raised:
        engine._check_counts(context, relations, counted, results, None)
    # A foreign table's rows live on its server, not here: only plain tables must be empty.
    assert raised.value.message == MISMATCH.format(
        "app.a: 3 in the source snapshot, 2 locally; app.c: 0 in the source snapshot, 1 locally; "
        "app.gone: 0 in the source snapshot, None locally; app.log")
    assert context.summary.verified is False and context.summary.row_counts == {}


def test_a_subset_copy_must_hold_exactly_the_rows_its_plan_named():
    context = _context([_copy("app.a", expected=5), _copy("app.b", expected=2)])
    relations = dict.fromkeys(["app.a", "app.b"])
    results = {"app.a": _result("app.a", 4), "app.b": _result("app.b", 2)}
    with pytest.raises(TetherError) as raised:
        engine._check_counts(context, relations, {"app.a": 4, "app.b": 2}, results, None)
    assert raised.value.message == MISMATCH.format("app.a: 5 in the subset's plan, 4 locally")
    exact = _context([_copy("app.a", expected=4)])
    assert engine._check_counts(exact, {"app.a": None}, {"app.a": 4}, {"app.a": _result("app.a", 4)}, None) == {
        "app.a": 4}
    assert exact.summary.verified is True


def test_a_table_the_copy_did_not_report_is_expected_empty_without_a_last_sync():
    context = _context([_copy("app.a"), _copy("app.quiet"), _copy("app.ext", appends=True)])
    relations = dict.fromkeys(["app.a", "app.quiet", "app.ext"])
    local = engine._check_counts(context, relations, {"app.a": 1, "app.quiet": 0, "app.ext": 0},
                                 {"app.a": _result("app.a", 1)}, None)
    assert local == {"app.a": 1, "app.quiet": 0, "app.ext": 0}
    assert context.summary.row_counts == {"app.a": 1, "app.ext": 0, "app.quiet": 0}


def test_a_table_carried_over_is_expected_to_hold_what_the_source_had_not_what_was_local():
    """The last sync's source count, not its local count, is what a table copied then must hold now."""
    context = _context([_copy("app.kept")])
    previous = _previous({"app.kept": 6}, {"app.kept": 7})
    with pytest.raises(TetherError) as raised:
        engine._check_counts(context, {"app.kept": None}, {"app.kept": 6}, {}, previous)
    assert raised.value.message == MISMATCH.format("app.kept: 7 in the source snapshot, 6 locally")
