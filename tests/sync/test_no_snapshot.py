"""``--no-snapshot``: the build itself becomes the local database; no snapshot, spare or stale state is left."""

from __future__ import annotations

import pytest

from tether.errors import TetherError
from tether.sync import local as localdb
from tether.sync.engine import sync
from tether.sync.reset import reset

from .conftest import database_names, execute
from .test_incremental import assert_same


def test_a_sync_without_snapshot_retires_the_old_one_and_leaves_only_the_database(sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    sync(source, dest, sync_options(anonymize=False))
    assert localdb.snapshot_name(dest.database) in database_names(admin, dest.database)

    execute(source, "INSERT INTO app.log_lines (line) VALUES ('after the first sync')")
    summary = sync(source, dest, sync_options(anonymize=False, snapshot=False))
    assert summary.mode == "full" and summary.snapshot_database is None
    assert any("--no-snapshot" in note for note in summary.notes)
    assert not any("reset to this state" in line for line in summary.lines())
    assert_same(source, dest)
    # The old snapshot (which described the replaced database) and its spare are gone, not just unused.
    assert database_names(admin, dest.database) == [dest.database]
    assert localdb.read_state(admin, localdb.snapshot_name(dest.database)) is None

    execute(dest, "DELETE FROM app.log_lines")
    with pytest.raises(TetherError) as raised:
        reset(dest, yes=True, drop_retired="now")
    assert "--no-snapshot" in raised.value.message
    assert execute(dest, "SELECT count(*) FROM app.log_lines") == [(0,)]  # refused: nothing was replaced

    # A later sync that keeps a snapshot starts from nothing, and db.reset works again.
    again = sync(source, dest, sync_options(anonymize=False))
    assert again.mode == "full" and "no earlier sync" in again.notes[0]
    execute(dest, "DELETE FROM app.log_lines")
    reset(dest, yes=True, drop_retired="now")
    assert_same(source, dest)


def test_every_sync_without_snapshot_is_full(sync_servers, sync_options):
    source, dest, admin = sync_servers.source_copy(), sync_servers.dest(), sync_servers.dest_admin
    options = sync_options(anonymize=False, snapshot=False)
    sync(source, dest, options)
    second = sync(source, dest, options)
    assert second.mode == "full" and second.tables_copied == second.tables
    assert "no snapshot is kept" in second.notes[0]
    assert_same(source, dest)
    assert database_names(admin, dest.database) == [dest.database]
