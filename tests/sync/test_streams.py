"""Rows stream from the source while the schema is still being dumped: spooled, then poured in once tables exist."""

from __future__ import annotations

import time

from tether.sync import engine
from tether.sync.engine import sync

from .conftest import table_digest


def test_tables_read_before_the_schema_exists_arrive_whole(sync_servers, sync_options, monkeypatch):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    dump_schema = engine._dump_schema

    def slow_dump(context, snap):  # a far-away source: pg_dump's round trips take a while
        time.sleep(3)
        dump_schema(context, snap)

    monkeypatch.setattr(engine, "_dump_schema", slow_dump)
    summary = sync(source, dest, sync_options(anonymize=False, jobs=2))
    assert summary.verified and summary.tables_spooled == summary.tables_copied == summary.tables
    for table in ("app.people", "app.teams", "app.events_2024", "app.ledger_b", '"Mixed Schema"."Odd Table"'):
        assert table_digest(dest, table) == table_digest(source, table)
    assert summary.source_bytes > summary.bytes_copied > 0 and summary.source_mbit_per_second > 0


def test_a_far_source_gets_one_worker_on_the_smallest_tables(sync_servers, sync_options, monkeypatch):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    seen: list[bool] = []
    original = engine.CopySettings

    def recording(**values):
        seen.append(values.get("small_first", False))
        return original(**values)

    monkeypatch.setattr(engine, "CopySettings", recording)
    monkeypatch.setattr(engine, "_round_trip", lambda conn: 0.02)
    summary = sync(source, dest, sync_options(anonymize=False, jobs=2))
    assert summary.verified and seen == [True]
    assert table_digest(dest, "app.people") == table_digest(source, "app.people")


def test_spooling_stops_at_its_limit_and_the_rest_waits_for_the_tables(sync_servers, sync_options, monkeypatch):
    from tether.sync import copy

    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    dump_schema = engine._dump_schema

    def slow_dump(context, snap):
        time.sleep(2)
        dump_schema(context, snap)

    monkeypatch.setattr(engine, "_dump_schema", slow_dump)
    monkeypatch.setattr(copy, "SPOOL_LIMIT", 1)  # one batch per worker, then wait
    monkeypatch.setattr(copy, "BATCH_TABLES", 1)
    summary = sync(source, dest, sync_options(anonymize=False, jobs=2))
    # Each worker spools one batch at most (the limit is checked between batches): the rest waits.
    assert summary.verified and 0 < summary.tables_spooled <= 2 < summary.tables
    assert table_digest(dest, "app.people") == table_digest(source, "app.people")
