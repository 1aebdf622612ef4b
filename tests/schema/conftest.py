"""Fixtures for the schema tests: copies of sql/, fixed role passwords, and one initialized database per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.conninfo import DatabaseAddress
from tether.migrations import init_database
from tether.secrets import generate_password

REPO_SQL = Path(__file__).resolve().parents[2] / "sql"


def write_sql(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A copy of the project's sql/ that a test may edit."""
    return Path(shutil.copytree(REPO_SQL, tmp_path / "sql"))


@pytest.fixture(scope="session")
def role_passwords() -> dict[str, str]:
    # Roles are cluster-wide: every initialization in this session sets the same passwords, so a test that
    # logs in as api_user never depends on which database was initialized last.
    return {"api_user": generate_password(), "readonly": generate_password()}


@pytest.fixture(scope="module")
def schema_db(pg_server, role_passwords: dict[str, str]) -> Iterator[DatabaseAddress]:
    """A database with the whole sample schema applied (superuser address); shared by a module's tests."""
    address = pg_server.create_database()
    init_database(address, role_passwords=role_passwords, sql_dir=REPO_SQL)
    yield address
    pg_server.drop_database(address.database)
