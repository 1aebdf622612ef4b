"""The schema dump starts while the plan's review still runs, and goes away with the sync when the review stops it.

pg_dump reads catalogs, never rows, so overlapping it with the review moves nothing personal early; it must still
leave nothing behind (no process, no archive in the work directory) when the sync stops before using it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.sync import engine
from tether.sync.anonymization import Anonymization
from tether.sync.engine import sync
from tether.workdirs import work_root

from .conftest import table_digest


def _children_running(word: str) -> list[int]:
    """Processes whose parent is this test process and whose command line names ``word``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == os.getpid() and fields[0] not in ("Z", "X") and word in cmdline:
            found.append(int(entry.name))
    return found


def _wait_for(predicate, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _slow_pg_dump(tmp_path: Path, monkeypatch, seconds: float) -> Path:
    """pg_dump behind a wrapper that waits first (a far-away source) and writes its pid where the test reads it."""
    real_programs = engine._programs
    pid_file = tmp_path / "wrapper.pid"

    def programs(context):
        pg_dump, pg_restore = real_programs(context)
        wrapper = tmp_path / "pg_dump"
        wrapper.write_text(f"#!{sys.executable}\nimport os, sys, time\n"
                           f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                           f"time.sleep({seconds})\nos.execv({str(pg_dump)!r}, [{str(pg_dump)!r}, *sys.argv[1:]])\n")
        wrapper.chmod(0o755)
        return wrapper, pg_restore

    monkeypatch.setattr(engine, "_programs", programs)
    return pid_file


def test_pg_dump_runs_while_the_review_looks_at_the_source(sync_servers, sync_options, monkeypatch, tmp_path):
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    pid_file = _slow_pg_dump(tmp_path, monkeypatch, 0.5)
    seen: list[bool] = []
    enforce = Anonymization.enforce

    def review_that_looks_for_pg_dump(self, snapshot, address, snapshot_id, catalog, plan):
        seen.append(_wait_for(pid_file.exists))  # the dump started before the review was done
        return enforce(self, snapshot, address, snapshot_id, catalog, plan)

    monkeypatch.setattr(Anonymization, "enforce", review_that_looks_for_pg_dump)
    summary = sync(source, dest, sync_options())
    assert seen == [True]
    assert summary.verified and summary.mode == "full"
    assert table_digest(dest, "app.teams") == table_digest(source, "app.teams")


def test_a_review_that_stops_the_sync_stops_the_dump_too(sync_servers, sync_options, monkeypatch, tmp_path):
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    pid_file = _slow_pg_dump(tmp_path, monkeypatch, 120)
    before = set(work_root().glob("sync-*")) if work_root().exists() else set()

    def review_that_refuses(self, snapshot, address, snapshot_id, catalog, plan):
        assert _wait_for(pid_file.exists)
        raise TetherError("The sync stopped before copying anything: a column looks personal.")

    monkeypatch.setattr(Anonymization, "enforce", review_that_refuses)
    started = time.monotonic()
    with pytest.raises(TetherError, match="stopped before copying anything"):
        sync(source, dest, sync_options())
    assert time.monotonic() - started < 60  # the dump was stopped, not waited out (it sleeps two minutes first)
    wrapper_pid = int(pid_file.read_text())
    # No process left, and nothing of the source left on disk.
    assert not _children_running("pg_dump")
    assert not Path(f"/proc/{wrapper_pid}").exists() or \
        Path(f"/proc/{wrapper_pid}/stat").read_text().split(") ")[1][0] in "ZX"
    assert set(work_root().glob("sync-*")) <= before


def test_a_resync_of_the_same_catalog_starts_no_dump(sync_servers, sync_options, monkeypatch):
    source, dest = sync_servers.source_copy(), sync_servers.dest()
    sync(source, dest, sync_options())
    started: list[bool] = []
    start = engine._EarlySchemaDump.start

    def recording(self, context, snap):
        started.append(True)
        start(self, context, snap)

    monkeypatch.setattr(engine._EarlySchemaDump, "start", recording)
    summary = sync(source, dest, sync_options())
    assert summary.mode == "unchanged" and started == []


def test_large_objects_wait_for_the_review(sync_servers, sync_options, monkeypatch, tmp_path):
    """pg_dump brings large objects' contents: opaque bytes that may be personal, so no dump before the review."""
    import psycopg

    source, dest = sync_servers.source_copy(), sync_servers.dest()
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT lo_from_bytea(0, 'scanned passport of a customer'::bytea)")
    rules = tmp_path / "rules.yaml"
    rules.write_text(Path(sync_options().rules_path).read_text() + "\nlarge_objects: keep\n")
    pid_file = _slow_pg_dump(tmp_path, monkeypatch, 0)
    dumped_before_review: list[bool] = []
    enforce = Anonymization.enforce

    def recording(self, snapshot, address, snapshot_id, catalog, plan):
        time.sleep(1)  # room for an early dump to start, if one were started
        dumped_before_review.append(pid_file.exists())
        return enforce(self, snapshot, address, snapshot_id, catalog, plan)

    monkeypatch.setattr(Anonymization, "enforce", recording)
    summary = sync(source, dest, sync_options(rules_path=rules))
    assert dumped_before_review == [False] and pid_file.exists()
    assert summary.verified
