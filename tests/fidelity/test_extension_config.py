"""An extension's configuration table (pg_extension_config_dump) brings the user's rows, as pg_dump does: the
extension's own rows come from CREATE EXTENSION on the destination, the rows matching its condition are copied."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import dumps
from tether.sync.engine import SyncOptions, sync

from .catalog_compare import differences
from .conftest import execute, pg_dump_into_psql

CONTROL = """comment = 'tether test extension with a configuration table'
default_version = '1.0'
relocatable = false
schema = public
"""
SCRIPT = """
CREATE TABLE spatial_refs (id integer PRIMARY KEY, name text);
INSERT INTO spatial_refs VALUES (1, 'builtin one'), (2, 'builtin two'), (3, 'builtin three');
SELECT pg_catalog.pg_extension_config_dump('spatial_refs', 'WHERE id > 100');
"""


@pytest.fixture(scope="module")
def extension_name(torture) -> Iterator[str]:
    """A throwaway extension installed into the servers' extension directory (removed afterwards)."""
    share = Path(execute(torture.source_admin, "SELECT setting FROM pg_config WHERE name = 'SHAREDIR'")[0][0],
                 "extension")
    if not os.access(share, os.W_OK):
        pytest.fail(f"This test installs a throwaway extension into {share}, which needs root (as in CI).")
    name = f"tether_cfg_{uuid.uuid4().hex[:8]}"
    files = [share / f"{name}.control", share / f"{name}--1.0.sql"]
    files[0].write_text(CONTROL)
    files[1].write_text(SCRIPT)
    yield name
    for file in files:
        file.unlink(missing_ok=True)


def test_configuration_rows_arrive_once(torture, isolated_project, extension_name, tmp_path, monkeypatch):
    source = torture.source()
    execute(source, f"CREATE EXTENSION {extension_name}")
    execute(source, "INSERT INTO spatial_refs VALUES (101, 'mine'), (102, 'also mine')")
    reference = torture.dest()
    pg_dump_into_psql(source, reference)
    copy = torture.dest()
    summary = sync(source, copy, SyncOptions(yes=True, drop_retired="now", anonymize=False))
    assert execute(copy, "SELECT id FROM spatial_refs ORDER BY id") == [(1,), (2,), (3,), (101,), (102,)]
    assert summary.row_counts["public.spatial_refs"] == 5 and summary.verified
    assert differences(reference.conninfo(), copy.conninfo(), ignore=["setting "]) == []

    monkeypatch.setenv("TETHER_DUMPS_DIR", str(tmp_path / "dumps"))
    restored = torture.dest()
    dumps.restore_dump(dumps.dump_database(source, "cfg").path, restored)
    assert differences(reference.conninfo(), restored.conninfo(), ignore=["setting "]) == []
