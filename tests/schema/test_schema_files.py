"""The pure parts of migrations: splitting scripts, locating errors, planning, drift messages, role passwords."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.migrations import (
    AppliedMigration,
    Migration,
    MigrationError,
    ScriptSyntaxError,
    ServerError,
    drift_message,
    error_line,
    failure_message,
    is_transaction_control,
    load_migrations,
    parse_migration,
    plan_migrations,
    split_statements,
)
from tether.roles import local_role_passwords, password_env_var, resolve_role_passwords, role_passwords_file

from .conftest import REPO_SQL, write_sql

SPLIT_CASES = [
    ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("SELECT ';'; SELECT 2", ["SELECT ';'", "SELECT 2"]),
    ("SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine'", "SELECT 2"]),
    ("SELECT E'it\\'s;'; SELECT 2", ["SELECT E'it\\'s;'", "SELECT 2"]),
    # standard_conforming_strings: a backslash in a plain string is an ordinary character.
    ("SELECT 'a\\'; SELECT 2", ["SELECT 'a\\'", "SELECT 2"]),
    ('SELECT "odd;name" FROM t; SELECT 2', ['SELECT "odd;name" FROM t', "SELECT 2"]),
    ("DO $$ BEGIN PERFORM 1; END $$; SELECT 2", ["DO $$ BEGIN PERFORM 1; END $$", "SELECT 2"]),
    ("SELECT $fn$ $$ ; $fn$; SELECT 2", ["SELECT $fn$ $$ ; $fn$", "SELECT 2"]),
    ("SELECT a$b$c FROM t; SELECT 2", ["SELECT a$b$c FROM t", "SELECT 2"]),
    ("PREPARE q AS SELECT $1; SELECT 2", ["PREPARE q AS SELECT $1", "SELECT 2"]),
    ("-- a; b\nSELECT 1; /* x; /* nested; */ y; */ SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); SELECT 2",
     ["CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))", "SELECT 2"]),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;"
     " SELECT 3",
     ["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END",
      "SELECT 3"]),
    ("create or replace procedure p() begin atomic insert into t values (1); end; call p()",
     ["create or replace procedure p() begin atomic insert into t values (1); end", "call p()"]),
    ("BEGIN; SELECT 1; COMMIT", ["BEGIN", "SELECT 1", "COMMIT"]),
    ("SELECT 1;;\n;\nSELECT 2\n", ["SELECT 1", "SELECT 2"]),
    ("SELECT 'ünïcode;' AS é; SELECT 2", ["SELECT 'ünïcode;' AS é", "SELECT 2"]),
    ("-- only a comment\n/* and another */\n", []),
    ("", []),
]


@pytest.mark.parametrize(("script", "expected"), SPLIT_CASES, ids=[f"case{i}" for i in range(len(SPLIT_CASES))])
def test_split_statements_cuts_where_psql_would(script, expected):
    assert [statement.text for statement in split_statements(script)] == expected


def test_split_statements_records_where_each_statement_starts():
    script = "-- header\n\nCREATE TABLE a (\n  id int\n);\n\n  /* c */ SELECT 1;\nSELECT\n2"
    statements = split_statements(script)
    assert [(s.line, s.text.split()[0]) for s in statements] == [(3, "CREATE"), (7, "SELECT"), (8, "SELECT")]
    assert all(script[s.offset:].startswith(s.text) for s in statements)


@pytest.mark.parametrize(("script", "line", "reason"), [
    ("SELECT 1;\nSELECT 'open", 2, "string"),
    ("SELECT 1;\n\nDO $body$ BEGIN", 3, "$body$"),
    ("/* never closed", 1, "comment"),
    ('SELECT "x', 1, "quoted identifier"),
    ("SELECT 1;\n\\connect other\nSELECT 2;", 2, "meta-command"),
], ids=["string", "dollar-quote", "comment", "identifier", "psql-meta-command"])
def test_split_statements_refuses_what_it_cannot_cut(script, line, reason):
    with pytest.raises(ScriptSyntaxError) as raised:
        split_statements(script)
    assert raised.value.line == line
    assert reason in raised.value.reason


def migration(text: str, name: str = "0007_x.sql") -> Migration:
    return Migration(name, Path("/nowhere/sql") / name, hashlib.sha256(text.encode()).hexdigest(), text)


def test_error_line_uses_the_position_postgres_reports():
    text = "SELECT 1;\n\nCREATE TABLE t (\n  a int,\n  b nosuchtype\n);\n"
    statement = split_statements(text)[1]
    position = statement.text.index("nosuchtype") + 1
    assert error_line(text, statement, ServerError("type does not exist", position=position)) == 5


def test_error_line_inside_a_do_block_counts_plpgsql_lines_from_the_body():
    text = "SELECT 1;\nDO $$\nBEGIN\n  PERFORM 1;\n  RAISE EXCEPTION 'boom';\nEND\n$$;\n"
    statement = split_statements(text)[1]
    error = ServerError("boom", context="PL/pgSQL function inline_code_block line 4 at RAISE")
    assert error_line(text, statement, error) == 5


def test_error_line_without_a_position_is_the_statement_start():
    text = "SELECT 1;\n\nCREATE TABLE t ();\n"
    assert error_line(text, split_statements(text)[1], ServerError('relation "t" already exists')) == 3


def test_failure_message_names_file_line_postgres_message_and_what_was_kept():
    text = "CREATE TABLE ok (id int);\nCREATE INDEX ON ok (missing);\n"
    m = migration(text)
    statement = split_statements(text)[1]
    error = ServerError('column "missing" does not exist', "42703", hint="Perhaps you meant id.",
                        position=statement.text.index("missing") + 1)
    message = failure_message(m, statement, error, applied_before=2)
    assert "0007_x.sql failed at line 2" in message
    assert 'column "missing" does not exist (SQLSTATE 42703)' in message
    assert "2 | CREATE INDEX ON ok (missing);" in message
    assert "Hint: Perhaps you meant id." in message
    assert "rolled back" in message and "2 files applied before it" in message


def test_parse_migration_names_the_file_and_line_of_a_script_it_cannot_read():
    with pytest.raises(MigrationError, match=r"0007_x\.sql cannot be read as SQL at line 2: .*never closed"):
        parse_migration(migration("SELECT 1;\nSELECT 'oops;\n"))
    with pytest.raises(MigrationError, match="contains no SQL statement"):
        parse_migration(migration("-- nothing yet\n"))


@pytest.mark.parametrize(("statement", "control"), [
    ("BEGIN", True), ("begin transaction isolation level serializable", True), ("START TRANSACTION", True),
    ("COMMIT", True), ("END", True), ("ROLLBACK", True), ("abort", True), ("ROLLBACK AND CHAIN", True),
    ("ROLLBACK TO SAVEPOINT s", False), ("SAVEPOINT s", False), ("RELEASE SAVEPOINT s", False),
    ("START_TIME_TABLE", False), ("SELECT 'BEGIN'", False), ("CREATE TABLE commit_log (id int)", False),
])
def test_transaction_control_is_recognised(statement, control):
    assert is_transaction_control(statement) is control


def test_a_file_that_controls_its_own_transaction_is_refused_before_anything_runs():
    with pytest.raises(MigrationError, match=r"0007_x\.sql line 3 controls the transaction \(COMMIT\)"):
        parse_migration(migration("CREATE TABLE a (id int);\n\nCOMMIT;\nCREATE TABLE b (id int);\n"))


def applied(version: str, checksum: str) -> AppliedMigration:
    return AppliedMigration(version, checksum, datetime(2024, 1, 1, tzinfo=UTC), "postgres", 3)


def test_plan_separates_applied_pending_and_drift():
    a, b, c = (migration(f"SELECT {n}", f"000{n}_{name}.sql") for n, name in ((1, "a"), (2, "b"), (3, "c")))
    ledger = [applied("0001_a.sql", a.checksum), applied("0002_b.sql", "0" * 64), applied("0000_gone.sql", "1" * 64)]
    plan = plan_migrations([a, b, c], ledger)
    assert [m.version for m in plan.pending] == ["0003_c.sql"]
    assert [(d.version, d.kind) for d in plan.drift] == [("0002_b.sql", "changed"), ("0000_gone.sql", "missing")]
    assert plan.as_dict("db")["pending"] == [{"version": "0003_c.sql", "checksum": c.checksum}]


def test_drift_message_names_the_file_and_both_checksums():
    b = migration("SELECT 2", "0002_b.sql")
    plan = plan_migrations([b], [applied("0002_b.sql", "0" * 64)])
    message = drift_message(plan.drift, "postgresql://u:********@h/db", Path("/repo/sql"))
    assert "0002_b.sql changed after it was applied" in message
    assert "0" * 64 in message and b.checksum in message
    assert "Nothing was applied" in message


def test_load_migrations_orders_lexically_and_checksums_the_bytes(tmp_path):
    directory = write_sql(tmp_path / "sql", {"0010_later.sql": "SELECT 10;\n", "0002_early.sql": "SELECT 2;\n",
                                             "README.md": "not a migration"})
    migrations = load_migrations(directory)
    assert [m.version for m in migrations] == ["0002_early.sql", "0010_later.sql"]
    assert migrations[0].checksum == hashlib.sha256(b"SELECT 2;\n").hexdigest()


@pytest.mark.parametrize(("files", "message"), [
    ({"roles.sql": "SELECT 1;"}, "must start with a digit"),
    ({}, "holds no migration files"),
    ({"0001_latin1.sql": None}, "is not UTF-8"),
], ids=["unnumbered", "empty", "not-utf8"])
def test_load_migrations_refuses_a_directory_it_cannot_order(tmp_path, files, message):
    directory = tmp_path / "sql"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_bytes(b"SELECT '\xe9';" if text is None else text.encode())
    with pytest.raises(ConfigError, match=message):
        load_migrations(directory)


def test_load_migrations_needs_the_directory(tmp_path):
    with pytest.raises(ConfigError, match="no migrations directory"):
        load_migrations(tmp_path / "absent")


def test_the_sample_schema_files_parse_and_hold_no_passwords():
    migrations = load_migrations(REPO_SQL)
    assert [m.version for m in migrations][:3] == ["0001_roles.sql", "0002_extensions.sql", "0003_app_schema.sql"]
    for m in migrations:
        assert parse_migration(m)
        assert not re.search(r"\bPASSWORD\s+'", m.text, re.IGNORECASE), m.version
        assert "tether:" not in m.text.lower()  # no directives: a file is plain SQL


@pytest.mark.parametrize(("role", "variable"), [
    ("api_user", "TETHER_API_USER_PASSWORD"),
    ("readonly", "TETHER_READONLY_PASSWORD"),
    ("report-bot", "TETHER_REPORT_BOT_PASSWORD"),
])
def test_password_env_var(role, variable):
    assert password_env_var(role) == variable


def test_explicit_passwords_win_over_the_environment():
    chosen = resolve_role_passwords(["api_user", "readonly"], local=False, explicit={"api_user": "given"},
                                    environ={"TETHER_API_USER_PASSWORD": "env-a", "TETHER_READONLY_PASSWORD": "env-r"})
    assert chosen == {"api_user": "given", "readonly": "env-r"}


def test_a_shared_database_gets_no_generated_password(isolated_project):
    assert resolve_role_passwords(["api_user", "readonly"], local=False, environ={}) == {}
    assert not role_passwords_file().exists()


def test_local_passwords_are_generated_once_and_kept_private(isolated_project):
    first = resolve_role_passwords(["api_user", "readonly"], local=True, environ={"TETHER_READONLY_PASSWORD": "r"})
    assert first["readonly"] == "r" and len(first["api_user"]) >= 24
    path = role_passwords_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.is_relative_to(isolated_project)
    again = local_role_passwords(["api_user", "readonly"])
    assert again["api_user"] == first["api_user"]
    assert resolve_role_passwords(["api_user"], local=True, environ={}) == {"api_user": first["api_user"]}


def test_an_unreadable_passwords_file_is_a_clear_error(isolated_project):
    role_passwords_file().write_text("{not json")
    with pytest.raises(ConfigError, match=r"Delete it and run `invoke db\.init` again"):
        local_role_passwords(["api_user"])

