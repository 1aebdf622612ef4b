"""No message prints row contents: server errors, pg_restore output and copy failures are redacted."""

from __future__ import annotations

import psycopg
import pytest

from tether.archive import run_program
from tether.errors import CommandFailed, TetherError
from tether.native.binaries import client_program
from tether.redact import redact, server_error
from tether.sync.catalog import read_catalog
from tether.sync.copy import CopySettings, copy_table
from tether.sync.plan import TableCopy

SECRET = "jeanne.secret@orange.fr"


@pytest.mark.parametrize(("text", "kept", "gone"), [
    ('ERROR:  duplicate key value violates unique constraint "people_email_key"\n'
     f"DETAIL:  Key (email)=({SECRET}) already exists.", 'constraint "people_email_key"', SECRET),
    (f'new row for relation "t" violates check constraint "c" Failing row contains (1, {SECRET}).',
     'check constraint "c"', SECRET),
    (f'invalid input syntax for type uuid: "{SECRET}"', "invalid input syntax for type uuid", SECRET),
    ('value "123456789012" is out of range for type integer', "out of range", "123456789012"),
    (f'COPY people, line 3, column email: "{SECRET}"\nCONTEXT:  COPY people, line 3: "3\t{SECRET}"', "", SECRET),
    ('insert or update on table "a" violates foreign key constraint "fk" Key (x)=(0612345678) is not present',
     'foreign key constraint "fk"', "0612345678"),
    ('null value in column "email" of relation "people" violates not-null constraint', 'column "email"', "\u2026"),
], ids=["unique", "check", "syntax", "range", "copy-context", "foreign-key", "names-kept"])
def test_values_are_removed_and_names_kept(text, kept, gone):
    redacted = redact(text)
    assert kept in redacted and gone not in redacted


def test_a_real_server_error_loses_its_detail(pg_db):
    with psycopg.connect(pg_db.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE people (email text UNIQUE)")
        conn.execute("INSERT INTO people VALUES (%s)", (SECRET,))
        with pytest.raises(psycopg.errors.UniqueViolation) as caught:
            conn.execute("INSERT INTO people VALUES (%s)", (SECRET,))
    assert SECRET in str(caught.value)  # what PostgreSQL says, and what must not be printed
    assert server_error(caught.value) == 'duplicate key value violates unique constraint "people_email_key"'


def test_a_client_program_failure_is_redacted(pg_db):
    psql = client_program("psql")
    with psycopg.connect(pg_db.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE dup (email text)")
        conn.execute("INSERT INTO dup VALUES (%s), (%s)", (SECRET, SECRET))
    script = "CREATE UNIQUE INDEX dup_email ON dup (email)"
    with pytest.raises(CommandFailed) as caught:
        run_program([str(psql), "-X", "-v", "ON_ERROR_STOP=1", "-c", script], {**pg_db.libpq_env()}, "psql")
    assert "could not create unique index" in caught.value.message and SECRET not in caught.value.message


def test_a_failed_copy_names_the_constraint_not_the_row(pg_server, pg_db):
    other = pg_server.create_database()
    with psycopg.connect(pg_db.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE people (email text)")
        conn.execute("INSERT INTO people VALUES (%s), (%s)", (SECRET, SECRET))
        relation = read_catalog(conn).by_name()["public.people"]
    with psycopg.connect(other.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE people (email text UNIQUE)")
    with psycopg.connect(pg_db.conninfo(), autocommit=True) as src, \
            psycopg.connect(other.conninfo(), autocommit=True) as dst:
        src.execute("BEGIN")
        with pytest.raises(TetherError) as caught, dst.transaction():
            copy_table(src, dst, TableCopy(relation, {}, binary=False), CopySettings(jobs=1), lambda *_: None)
    assert "people_email_key" in caught.value.message and SECRET not in caught.value.message
