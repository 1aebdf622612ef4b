"""Fixtures for the fidelity tests: a source and a destination server that keep security labels, a third that
cannot, and the torture database (tests/fidelity/torture.sql) on the source as a template.

The reference for every copy is ``pg_dump | psql`` of the same source into the same destination server, run as
a user would (psql carries on past errors, such as a role the destination lacks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import FAST_TEST_SETTINGS, RunningPostgres
from tether.conninfo import DatabaseAddress
from tether.native.binaries import client_program
from tether.native.sysuser import service_user

HERE = Path(__file__).parent
TORTURE_SQL = HERE / "torture.sql"
ROLES_EVERYWHERE = ("torture_owner", "torture_member")
GHOST = "torture_ghost"  # exists on the source only
LABEL_PROVIDER = "tether_test_seclabel"


def _build_label_provider() -> Path:
    """Compile tests/fidelity/seclabel_provider.c against the installed server headers; returns the .so path."""
    pg_config = shutil.which("pg_config")
    include = subprocess.run([pg_config, "--includedir-server"], capture_output=True, text=True,
                             check=False).stdout.strip() if pg_config else ""
    if not include or not Path(include, "postgres.h").exists():
        pytest.fail("The fidelity tests build a security label provider and need PostgreSQL's server headers: "
                    "install postgresql-server-dev-15 (./dev installs it as root).")
    directory = Path(tempfile.mkdtemp(prefix="tether-seclabel-"))
    directory.chmod(0o755)  # the unprivileged server user loads it
    library = directory / f"{LABEL_PROVIDER}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-I{include}", "-o", str(library),
                    str(HERE / "seclabel_provider.c")], check=True, capture_output=True)
    library.chmod(0o755)
    return library


def execute(address: DatabaseAddress, statement: str | sql.Composable) -> list[tuple]:
    with psycopg.connect(address.conninfo(), autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def psql(address: DatabaseAddress, *args: str, stdin: bytes | None = None, check: bool = True) -> str:
    """Run psql as a user would (no ON_ERROR_STOP unless asked); returns its stderr."""
    argv = [str(client_program("psql")), "-X", "-q", f"--dbname={address.conninfo()}", *args]
    env = {**os.environ, "PGPASSWORD": address.password or ""}
    result = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr.decode())
    return result.stderr.decode()


def pg_dump_into_psql(source: DatabaseAddress, dest: DatabaseAddress) -> str:
    """The reference: ``pg_dump SOURCE | psql DEST`` (into a new database); returns psql's complaints."""
    execute(dest.with_database("postgres"), sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dest.database)))
    env = {**os.environ, "PGPASSWORD": source.password or ""}
    dump = subprocess.run([str(client_program("pg_dump")), f"--dbname={source.conninfo()}"], capture_output=True,
                          env=env, check=True).stdout
    return psql(dest, stdin=dump)


@dataclass
class Torture:
    source_admin: DatabaseAddress
    dest_admin: DatabaseAddress  # keeps security labels
    bare_admin: DatabaseAddress  # no label provider
    template: str

    def source(self) -> DatabaseAddress:
        """A private copy of the torture database that a test may change."""
        name = f"torture_{uuid.uuid4().hex[:8]}"
        execute(self.source_admin, sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                                    sql.Identifier(self.template)))
        # Database settings and subscriptions belong to the database, not its template: give the copy its own.
        psql(self.source_admin.with_database(name), "-v", "ON_ERROR_STOP=1", stdin=_per_database_sql(name))
        return self.source_admin.with_database(name)

    def dest(self, bare: bool = False) -> DatabaseAddress:
        return (self.bare_admin if bare else self.dest_admin).with_database(f"copy_{uuid.uuid4().hex[:8]}")


def _per_database_sql(database: str) -> bytes:
    name = '"' + database.replace('"', '""') + '"'
    return (f"ALTER DATABASE {name} SET search_path = app, public;\n"
            f"ALTER DATABASE {name} SET work_mem = '12MB';\n"
            f"ALTER ROLE torture_member IN DATABASE {name} SET statement_timeout = '7s';\n"
            f"ALTER ROLE torture_ghost IN DATABASE {name} SET statement_timeout = '9s';\n"
            # Never connected: its connection string is a production secret, which a copy must not hold.
            f"CREATE SUBSCRIPTION sub_elsewhere CONNECTION 'host=publisher.invalid dbname=x password=not-for-laptops' "
            "PUBLICATION pub_x WITH (connect = false, enabled = false, create_slot = false, slot_name = NONE);\n"
            ).encode()


@pytest.fixture(scope="session")
def torture(pg_server_factory: Callable[..., RunningPostgres]) -> Iterator[Torture]:
    library = _build_label_provider()
    preload = {**FAST_TEST_SETTINGS, "shared_preload_libraries": f"'{library.with_suffix('')}'",
               "wal_level": "logical"}
    user = service_user()
    if user:
        os.chown(library.parent, user.uid, user.gid)
    source = pg_server_factory(preload)
    dest = pg_server_factory(preload)
    bare = pg_server_factory()
    for server, roles in ((source, (*ROLES_EVERYWHERE, GHOST)), (dest, ROLES_EVERYWHERE), (bare, ROLES_EVERYWHERE)):
        for role in roles:
            execute(server.admin, sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    template = "torture_template"
    execute(source.admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
    psql(source.admin.with_database(template), "-v", "ON_ERROR_STOP=1", "-v", "seclabels=on",
         f"--file={TORTURE_SQL}")
    execute(source.admin, sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(template)))
    yield Torture(source.admin, dest.admin, bare.admin, template)
    shutil.rmtree(library.parent, ignore_errors=True)


@pytest.fixture
def dumps_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "dumps"
    monkeypatch.setenv("TETHER_DUMPS_DIR", str(path))
    return path
