"""Dumps and restores against the real session PostgreSQL server."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from dumps_support import (
    create_sample,
    database_names,
    execute,
    marker,
    sequence_values,
    table_contents,
)
from psycopg import sql

from tether import dumps, pgtools
from tether.conninfo import parse_database_url
from tether.dump_manifest import DumpIntegrityError, manifest_path
from tether.errors import CommandFailed, ConfigError, Refused, TetherError, ToolMissing
from tether.native import binaries
from tether.pgtools import DumpOptions


def test_round_trip_restores_every_table_sequence_and_view(sample_db, target_db, dumps_path):
    result = dumps.dump_database(sample_db, "dev")
    assert result.path.parent == dumps_path and result.path.suffix == ".dump"
    assert result.path.stat().st_mode & 0o777 == 0o600
    manifest = json.loads(manifest_path(result.path).read_text())
    assert manifest["sha256"] == result.manifest["sha256"] and manifest["size_bytes"] == result.path.stat().st_size
    assert manifest["server_version_num"] // 10000 == 15 and manifest["pg_dump_version"].startswith("15")
    assert manifest["row_estimates"]["public.tickets"] == 50
    assert manifest["row_estimates"]["public.Odd Name ✓"] == 3
    assert sample_db.password not in manifest_path(result.path).read_text()

    restored = dumps.restore_dump(result.path.name, target_db)  # a bare name is looked up in dumps/

    assert table_contents(target_db) == table_contents(sample_db)
    assert sequence_values(target_db) == sequence_values(sample_db)
    with psycopg.connect(target_db.conninfo()) as conn:
        assert conn.execute("SELECT author, title FROM book_titles WHERE id = 2").fetchone() == ("李白", "静夜思")
        assert conn.execute("SELECT nextval('ticket_numbers')").fetchone() == (1000 + 50 * 7,)
        assert conn.execute("SELECT to_regclass('marker')").fetchone() == (None,)  # the old database is gone
    assert restored.tables == len(manifest["row_estimates"])
    assert database_names(target_db, f"{target_db.database}__tether_%") == []


def test_directory_format_with_parallel_jobs(sample_db, target_db, dumps_path):
    result = dumps.dump_database(sample_db, "dev", DumpOptions(format="directory", jobs=2))
    assert result.path.is_dir() and result.path.name.endswith(".dir")
    assert result.path.stat().st_mode & 0o777 == 0o700
    assert dumps.verify_dump(result.path)["format"] == "directory"
    dumps.restore_dump(result.path, target_db, jobs=2)
    assert table_contents(target_db) == table_contents(sample_db)


def test_dump_session_is_read_only(pg_db):
    psql = binaries.client_program("psql")
    env = pgtools.program_env(pg_db, readonly=True)
    attempt = subprocess.run(pgtools.psql_argv(psql, pg_db, command="CREATE TABLE should_fail (x int)"),
                             env=env, capture_output=True, text=True, check=False)
    assert attempt.returncode != 0
    assert "read-only transaction" in attempt.stderr


def test_corrupted_dump_is_refused_and_target_untouched(sample_db, target_db, dumps_path):
    result = dumps.dump_database(sample_db, "dev")
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    result.path.write_bytes(bytes(data))
    with pytest.raises(DumpIntegrityError, match="checksum"):
        dumps.restore_dump(result.path, target_db)
    manifest_path(result.path).unlink()
    with pytest.raises(DumpIntegrityError, match="no manifest"):
        dumps.restore_dump(result.path, target_db)
    assert marker(target_db) == "original"
    assert database_names(target_db, f"{target_db.database}__tether_%") == []
    listing = {entry.name: entry for entry in dumps.list_dumps()}
    assert listing[result.path.name].verified is False


def test_roles_only_in_production_do_not_break_the_restore_but_real_errors_do(pg_server, pg_db, target_db,
                                                                            dumps_path):
    role = f"prod_only_{uuid.uuid4().hex[:8]}"
    role_name = sql.Identifier(role)
    execute(pg_server.admin, sql.SQL("CREATE ROLE {}").format(role_name))
    execute(pg_db, sql.SQL("""
        CREATE TABLE owned (id int PRIMARY KEY, v text);
        INSERT INTO owned VALUES (1, 'a');
        ALTER TABLE owned OWNER TO {role};
        GRANT SELECT ON owned TO PUBLIC;
        ALTER DEFAULT PRIVILEGES FOR ROLE {role} GRANT SELECT ON TABLES TO PUBLIC;
    """).format(role=role_name))
    owned_only = dumps.dump_database(pg_db, "prodlike")
    execute(pg_db, sql.SQL("ALTER TABLE owned ENABLE ROW LEVEL SECURITY; "
                           "CREATE POLICY p ON owned TO {} USING (true); COMMENT ON POLICY p ON owned IS 'p'")
            .format(role_name))
    with_policy = dumps.dump_database(pg_db, "prodlike")
    # A real error: a check that fails only while being restored (into a tether scratch database).
    execute(pg_db, r"""
        CREATE FUNCTION gate(id integer) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            IF current_database() LIKE '%\_\_tether\_restore\_%' THEN RAISE EXCEPTION 'gate closed for %', id; END IF;
            RETURN true;
        END $$;
        CREATE TABLE gated (id integer CHECK (gate(id)));
        INSERT INTO gated VALUES (1);""")
    broken = dumps.dump_database(pg_db, "prodlike")
    pg_server.drop_database(pg_db.database)
    execute(pg_server.admin, sql.SQL("DROP ROLE {}").format(role_name))  # now the role exists only "in production"

    dumps.restore_dump(owned_only.path, target_db)
    assert table_contents(target_db) == {"public.owned": [("(1,a)",)]}

    # The policy for a role this server lacks is skipped (with its comment) and listed, as psql would.
    result = dumps.restore_dump(with_policy.path, target_db)
    assert any(role in skipped and "POLICY" in skipped for skipped in result.skipped)
    assert any(role in skipped and "OWNER" in skipped for skipped in result.skipped)
    assert table_contents(target_db) == {"public.owned": [("(1,a)",)]}
    with psycopg.connect(target_db.conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_policy").fetchone() == (0,)
        assert conn.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'owned'").fetchone() == (True,)

    execute(target_db, "CREATE TABLE marker (value text); INSERT INTO marker VALUES ('second')")
    with pytest.raises(CommandFailed) as failure:
        dumps.restore_dump(broken.path, target_db)
    assert "gate closed" in failure.value.message and "is unchanged" in failure.value.message
    assert marker(target_db) == "second"
    assert database_names(target_db, f"{target_db.database}__tether_%") == []


SLOW_TABLE = r"""
CREATE FUNCTION slow_gate(id integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    -- Sleep only while being restored into a scratch database, so the test can kill the restore mid-COPY.
    IF current_database() LIKE '%\_\_tether\_restore\_%' THEN PERFORM pg_sleep(0.1); END IF;
    RETURN true;
END $$;
CREATE TABLE slow (id integer PRIMARY KEY CHECK (slow_gate(id)));
INSERT INTO slow SELECT generate_series(1, 100);
"""


def _pg_restores_into(database: str) -> list[int]:
    """Live pg_restore processes (not zombies) whose command line names ``database``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            alive = "State:\tZ" not in (entry / "status").read_text()
            if alive and argv[0].endswith(b"pg_restore") and any(database.encode() in part for part in argv):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def test_killed_restore_leaves_target_intact_and_next_run_cleans_up(pg_server, pg_db, target_db, dumps_path):
    execute(pg_db, SLOW_TABLE)
    slow = dumps.dump_database(pg_db, "slow")
    fast_source = create_sample(pg_server.create_database())
    fast = dumps.dump_database(fast_source, "fast")
    pg_server.drop_database(fast_source.database)

    process = multiprocessing.get_context("fork").Process(target=dumps.restore_dump, args=(slow.path, target_db))
    process.start()
    admin = target_db.with_database("postgres")
    deadline = time.monotonic() + 20
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        while True:
            busy = conn.execute(
                "SELECT datname FROM pg_stat_activity WHERE datname LIKE %s AND wait_event = 'PgSleep' "
                "AND application_name = 'pg_restore'", (f"{target_db.database}__tether_restore_%",)).fetchall()
            if busy or time.monotonic() > deadline or not process.is_alive():
                break
            time.sleep(0.02)
    assert busy, "pg_restore never reached the slow table"
    process.kill()
    process.join()
    assert process.exitcode == -9

    scratch = busy[0][0]
    deadline = time.monotonic() + 10
    while _pg_restores_into(scratch) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _pg_restores_into(scratch) == [], "pg_restore outlived the killed run"

    assert marker(target_db) == "original"
    leftovers = database_names(target_db, f"{target_db.database}__tether_%")
    assert leftovers == [scratch]

    result = dumps.restore_dump(fast.path, target_db)
    assert result.cleaned_leftovers == leftovers
    assert database_names(target_db, f"{target_db.database}__tether_%") == []
    assert "public.tickets" in table_contents(target_db)


def test_old_pg_dump_is_a_clear_version_mismatch(sample_db, dumps_path, tmp_path, monkeypatch):
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    fake = fake_bin / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.17'\n")
    fake.chmod(0o755)
    empty_lib = tmp_path / "empty-lib"
    empty_lib.mkdir()
    monkeypatch.setenv("PATH", str(fake_bin))
    monkeypatch.setenv("TETHER_POSTGRES_LIB", str(empty_lib))
    monkeypatch.setattr(binaries, "POSTGRES_LIB", empty_lib)  # read once at import

    with pytest.raises(ToolMissing) as missing:
        dumps.dump_database(sample_db, "dev")
    message = missing.value.message
    assert "`pg_dump 15 or newer` is not installed" in message
    assert "runs PostgreSQL 15." in message and "server version mismatch" in message
    assert "postgresql-client-15" in message
    assert sample_db.password not in message
    assert list(dumps_path.iterdir()) == []


def test_keep_prunes_older_dumps_of_the_same_database_only(sample_db, dumps_path):
    other = dumps.dump_database(sample_db, "test", DumpOptions(schema_only=True))
    made = [dumps.dump_database(sample_db, "dev", DumpOptions(schema_only=True)) for _ in range(2)]
    last = dumps.dump_database(sample_db, "dev", DumpOptions(schema_only=True), keep=2)
    assert last.pruned == [made[0].path.name]
    remaining = sorted(path.name for path in dumps_path.iterdir())
    expected = [other.path, made[1].path, last.path]
    assert remaining == sorted([p.name for p in expected] + [manifest_path(p).name for p in expected])
    with pytest.raises(ConfigError, match="--keep"):
        dumps.dump_database(sample_db, "dev", keep=0)


def _archive_sql(path) -> str:
    pg_restore = binaries.client_program("pg_restore")
    return subprocess.run([str(pg_restore), "--file=-", str(path)], capture_output=True, text=True,
                          check=True).stdout


def test_schema_only_data_only_and_excluded_table_data(sample_db, target_db, dumps_path):
    schema = dumps.dump_database(sample_db, "dev", DumpOptions(schema_only=True))
    schema_sql = _archive_sql(schema.path)
    assert "CREATE TABLE public.books" in schema_sql and "COPY public." not in schema_sql
    dumps.restore_dump(schema.path, target_db)
    contents = table_contents(target_db)
    assert set(contents) == set(table_contents(sample_db)) and all(rows == [] for rows in contents.values())

    data = dumps.dump_database(sample_db, "dev", DumpOptions(data_only=True))
    data_sql = _archive_sql(data.path)
    assert "COPY public.books" in data_sql and "CREATE TABLE" not in data_sql
    with pytest.raises(ConfigError, match="--data-only"):
        dumps.restore_dump(data.path, target_db)

    partial = dumps.dump_database(sample_db, "dev", DumpOptions(exclude_table_data=("public.tickets",)))
    dumps.restore_dump(partial.path, target_db)
    contents = table_contents(target_db)
    assert contents["public.tickets"] == [] and contents["public.books"] == table_contents(sample_db)["public.books"]


def test_non_local_restore_is_refused_in_ci_before_connecting(sample_db, dumps_path, monkeypatch):
    result = dumps.dump_database(sample_db, "dev")
    remote = parse_database_url("postgresql://app:hunter2hunter2@203.0.113.7:5432/app")

    def no_connections(*args, **kwargs):
        raise AssertionError("a refused restore must not connect anywhere")

    monkeypatch.setattr(psycopg, "connect", no_connections)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Refused) as refused:
        dumps.restore_dump(result.path, remote)
    assert "--yes" in refused.value.message and "203.0.113.7" in refused.value.message
    assert refused.value.exit_code == 3


def test_invalid_dump_options_fail_before_connecting(dumps_path):
    unreachable = parse_database_url("postgresql://x:y@127.0.0.1:1/none")
    with pytest.raises(ConfigError, match="--format directory"):
        dumps.dump_database(unreachable, "dev", DumpOptions(jobs=2))


def test_unreachable_server_is_one_clear_message(dumps_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    address = parse_database_url(f"postgresql://app:pw-not-shown@127.0.0.1:{closed_port}/app")
    with pytest.raises(TetherError) as failure:
        dumps.dump_database(address, "dev")
    assert "Cannot connect to postgresql://app:********@127.0.0.1" in failure.value.message
    assert "pw-not-shown" not in failure.value.message


def test_a_role_under_row_level_security_gets_a_refusal_that_says_what_to_do(pg_db, dumps_path):
    """pg_dump refuses rather than dump only the rows a policy lets the role see; the user learns why and how on."""
    role, password = f"reader_{uuid.uuid4().hex[:8]}", "pw-not-shown-" + uuid.uuid4().hex[:6]
    setup = (f"CREATE ROLE {role} LOGIN PASSWORD '{password}'; CREATE TABLE guarded (a int); "  # noqa: S608
             "INSERT INTO guarded VALUES (1), (-1); ALTER TABLE guarded ENABLE ROW LEVEL SECURITY; "
             f"CREATE POLICY positive ON guarded USING (a > 0); GRANT SELECT ON guarded TO {role}")
    execute(pg_db, setup)
    reader = dataclasses.replace(pg_db, user=role, password=password)
    try:
        with pytest.raises(CommandFailed) as failure:
            dumps.dump_database(reader, "dev")
        message = failure.value.message
        assert "row-level security" in message and "BYPASSRLS" in message
        assert "an incomplete backup" in message and "Nothing was written to dumps/" in message
        assert password not in message
        assert not list(dumps_path.iterdir())
    finally:
        execute(pg_db, f"DROP TABLE guarded; DROP ROLE {role}")


def test_dump_advice_names_the_cause_or_stays_silent():
    rls = 'ERROR:  query would be affected by row-level security policy for table "s"'
    assert "BYPASSRLS" in dumps.dump_advice(rls)
    assert "pg_read_all_data" in dumps.dump_advice("ERROR:  permission denied for table t")
    assert dumps.dump_advice("pg_dump: error: connection to server failed") == ""
