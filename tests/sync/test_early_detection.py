"""The round-trip savings for a far-away production keep every guarantee: sessions opened ahead of time see the
snapshot, close as soon as they are not needed, are replaced when they died meanwhile; an early scan for changes
never starts before a prompt and never outlives a failed sync; the leak scan never passes a table it has no
source sample of; settings changed for a few queries come back as they were."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import psycopg
import pytest

from tether.errors import TetherError
from tether.sync import engine
from tether.sync.engine import SyncOptions, _EarlyDetection, _may_detect_early, sync
from tether.sync.incremental import SyncState
from tether.sync.leaks import TEXT_SETTINGS, SourceSamples, stable_text
from tether.sync.pii import jit_off
from tether.sync.snapshot import JoinedSessions, connect_source, exported_snapshot

from .conftest import execute


def _state(catalog_digest: str = "same") -> SyncState:
    return SyncState(source_system="1", source_start="", source_database_oid=1, source_database="app",
                     source_url="postgresql://prod/app", synced_at="2026-12-07T00:00:00+00:00", horizon=1, xmax=1,
                     schema_digest="s", options_digest="o", catalog_digest=catalog_digest, tables={}, sequences={})


@pytest.mark.parametrize(("change", "expected"), [
    ({}, True),
    ({"yes": False}, False),  # a prompt comes first: nothing is read for the sync before the user agrees
    ({"full": True}, False),
    ({"snapshot": False}, False),
    ({"subset": object()}, False),
])
def test_early_detection_only_for_a_confirmed_resync_of_everything(change, expected):
    options = replace(SyncOptions(yes=True), **change)  # a subset: only whether there is one matters here
    assert _may_detect_early(options, _state(), "same") is expected


def test_early_detection_needs_the_last_syncs_schema():
    options = SyncOptions(yes=True)
    assert _may_detect_early(options, _state("same"), "same")
    assert not _may_detect_early(options, _state("other"), "same")
    assert not _may_detect_early(options, None, "same")


def _sessions_of(admin, database: str) -> int:
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                           (database,)).fetchone()
    assert row is not None
    return int(row[0])


def _wait_event(admin, pid: int) -> str | None:
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return None if row is None else row[0]


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_joined_sessions_see_the_snapshot_and_the_untaken_ones_close_at_once(sync_servers):
    source = sync_servers.source_copy()
    execute(source, "CREATE TABLE public.counted (n int); INSERT INTO public.counted VALUES (1)")
    with exported_snapshot(source) as snap:
        sessions = JoinedSessions(source, snap.snapshot_id, 3)
        try:
            execute(source, "INSERT INTO public.counted VALUES (2)")  # after the snapshot: no joined session sees it
            taken = sessions.take()
            assert taken.execute("SELECT count(*) FROM public.counted").fetchone() == (1,)
            _wait_for(lambda: _sessions_of(sync_servers.source_admin, source.database) == 4)
            sessions.release()  # the two nobody took
            _wait_for(lambda: _sessions_of(sync_servers.source_admin, source.database) == 2)
            taken.close()
        finally:
            sessions.close()
    _wait_for(lambda: _sessions_of(sync_servers.source_admin, source.database) == 0)


def test_a_warm_session_that_died_while_waiting_is_replaced(sync_servers):
    source = sync_servers.source_copy()
    with exported_snapshot(source) as snap:
        sessions = JoinedSessions(source, snap.snapshot_id, 1)
        try:
            _wait_for(lambda: _sessions_of(sync_servers.source_admin, source.database) == 2)
            with psycopg.connect(sync_servers.source_admin.conninfo(), autocommit=True) as admin:
                # An idle-in-transaction timeout or a pooler would do the same to the warm session.
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                              "AND pid <> %s", (source.database, snap.conn.info.backend_pid))
            _wait_for(lambda: _sessions_of(sync_servers.source_admin, source.database) == 1)
            taken = sessions.take()  # the dead one is noticed when used: take() must not hand it out blindly
            try:
                assert taken.execute("SELECT 1").fetchone() == (1,)
            except psycopg.OperationalError:
                pytest.fail("take() handed out a session the server had already closed")
            taken.close()
        finally:
            sessions.close()


def test_a_failed_sync_cancels_its_early_scan_instead_of_waiting_for_it(sync_servers):
    source = sync_servers.source_copy()
    with exported_snapshot(source) as snap:
        early = _EarlyDetection(source, snap)
        early.warm_up(1)
        assert early.sessions is not None
        started = threading.Event()
        backend: list[int] = []

        def long_scan(sessions: JoinedSessions) -> None:
            conn = sessions.take()
            backend.append(conn.info.backend_pid)
            started.set()
            with conn:
                conn.execute("SELECT pg_sleep(60)")

        early.start(long_scan, early.sessions)
        assert started.wait(10)
        # Close only once the scan's query runs: a cancel that reached the session before it would be lost, and
        # the test would wait out the whole minute instead of showing that the running query is cancelled.
        _wait_for(lambda: _wait_event(sync_servers.source_admin, backend[0]) == "PgSleep")
        began = time.monotonic()
        early.close(failed=True)
        assert time.monotonic() - began < 10
        assert early.changes is not None and isinstance(early.changes.exception(), psycopg.errors.QueryCanceled)


def test_the_leak_scan_never_passes_a_table_it_has_no_source_sample_of(sync_servers, sync_options):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    sync(source, dest, sync_options())
    real = engine.Anonymization.sample_for_leaks

    def forgetting(self, address, snapshot_id, tables):
        samples = real(self, address, snapshot_id, tables)
        return SourceSamples(samples.nonce, {}) if samples is not None else None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine.Anonymization, "sample_for_leaks", forgetting)
        with pytest.raises(TetherError, match=r"has no sample of .* from the source"):
            sync(source, dest, replace(sync_options(), full=True))


def test_settings_changed_for_a_few_queries_come_back_as_they_were(sync_servers):
    source = sync_servers.source_copy()
    with connect_source(source) as conn:
        conn.execute("BEGIN")
        conn.execute("SET LOCAL DateStyle = 'SQL, DMY'")
        conn.execute("SET LOCAL jit = on")
        with stable_text(conn):
            shown = conn.execute("SHOW DateStyle").fetchone()
            assert shown is not None and shown[0] == TEXT_SETTINGS["DateStyle"]
        assert conn.execute("SHOW DateStyle").fetchone() == ("SQL, DMY",)
        with jit_off(conn):
            assert conn.execute("SHOW jit").fetchone() == ("off",)
        assert conn.execute("SHOW jit").fetchone() == ("on",)
        conn.execute("ROLLBACK")
