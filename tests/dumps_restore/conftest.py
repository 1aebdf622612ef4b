"""Fixtures for the dump and restore tests: a sample database, a target to replace, an isolated dumps/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dumps_support import create_sample, execute

from tests.conftest import wait_for_sessions_to_end
from tether.conninfo import DatabaseAddress


@pytest.fixture
def sample_db(pg_db: DatabaseAddress) -> DatabaseAddress:
    """A fresh database with tables, sequences, a view, non-ASCII text, bytea, jsonb and NULLs."""
    return create_sample(pg_db)


@pytest.fixture
def target_db(pg_server: Any) -> Any:
    """A second fresh database that restores replace; holds a marker table to prove it was (not) touched."""
    address = pg_server.create_database()
    execute(address, "CREATE TABLE marker (value text); INSERT INTO marker VALUES ('original')")
    wait_for_sessions_to_end(pg_server.admin, address.database)  # or a restore would count it as disconnected
    yield address
    pg_server.drop_database(address.database)


@pytest.fixture
def dumps_path(isolated_project: Path) -> Path:
    path = isolated_project / "dumps"
    path.mkdir(exist_ok=True)
    return path
