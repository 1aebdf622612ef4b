"""The restore path's refusals and what it reports, word for word, on the real session server (issue 21).

Each refusal is checked for its whole message and for what it leaves behind: the target as it was, no scratch
database. Dumps are small (one table), so each restore takes a fraction of a second.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from dumps_support import database_names, execute, marker, table_contents
from psycopg import sql

from tether import dumps
from tether.conninfo import parse_database_url
from tether.dump_manifest import manifest_path, sha256_of, size_of
from tether.errors import CommandFailed, ConfigError, Refused, TetherError, ToolMissing


@pytest.fixture
def small_dump(pg_db, dumps_path):
    """A dump of one small table; its manifest may be edited (the checksum covers the artifact only)."""
    execute(pg_db, "CREATE TABLE kept (id int PRIMARY KEY, v text); INSERT INTO kept VALUES (1, 'a'), (2, 'b')")
    return dumps.dump_database(pg_db, "small").path


def _edit_manifest(path: Path, **changes) -> None:
    manifest = json.loads(manifest_path(path).read_text())
    manifest.update(changes)
    manifest_path(path).write_text(json.dumps(manifest))


def _scratch_left(target) -> list[str]:
    return database_names(target, f"{target.database}__tether_%")


# --- finding the dump ---------------------------------------------------------------------------------------------


def test_a_dump_is_found_as_given_or_in_dumps(small_dump, dumps_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert dumps.resolve_dump_path(small_dump.name) == dumps_path / small_dump.name
    assert dumps.resolve_dump_path(f"elsewhere/{small_dump.name}") == dumps_path / small_dump.name
    assert dumps.resolve_dump_path(str(small_dump)) == small_dump.resolve()
    (tmp_path / "here.dump").write_text("x")
    assert dumps.resolve_dump_path("here.dump") == tmp_path / "here.dump"  # absolute, not relative to the cwd
    assert dumps.resolve_dump_path("here.dump").is_absolute()
    with pytest.raises(ConfigError) as raised:
        dumps.resolve_dump_path("gone.dump")
    assert raised.value.message == (f"There is no dump 'gone.dump' (looked in the current directory and in "
                                    f"{dumps_path}). List the dumps with `invoke db.dumps`.")


# --- refusals before anything is touched ---------------------------------------------------------------------


def test_a_snapshot_is_not_restored_as_a_dump(small_dump, target_db):
    _edit_manifest(small_dump, kind="redis")
    with pytest.raises(ConfigError) as raised:
        dumps.restore_dump(small_dump, target_db)
    assert raised.value.message == f"{small_dump.name} is a redis snapshot, not a PostgreSQL dump."
    manifest = json.loads(manifest_path(small_dump).read_text())
    del manifest["kind"]
    manifest_path(small_dump).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError) as raised:
        dumps.restore_dump(small_dump, target_db)
    assert raised.value.message == f"{small_dump.name} is a unknown snapshot, not a PostgreSQL dump."
    assert marker(target_db) == "original" and _scratch_left(target_db) == []


def test_a_data_only_dump_is_refused_with_what_to_do(small_dump, target_db):
    _edit_manifest(small_dump, options={"data_only": True})
    with pytest.raises(ConfigError) as raised:
        dumps.restore_dump(small_dump, target_db)
    assert raised.value.message == (
        f"{small_dump.name} was made with --data-only: it has no tables to put the rows in, and a restore builds a "
        "fresh database. Restore a full dump instead (or load this one yourself with pg_restore --data-only into a "
        "database that has the schema).")
    assert marker(target_db) == "original"


def test_a_manifest_without_options_restores(small_dump, target_db):
    """Manifests written before dump options were recorded have none: nothing to refuse."""
    manifest = json.loads(manifest_path(small_dump).read_text())
    del manifest["options"]
    manifest_path(small_dump).write_text(json.dumps(manifest))
    dumps.restore_dump(small_dump, target_db)
    assert table_contents(target_db) == {"public.kept": [("(1,a)",), ("(2,b)",)]}


def test_jobs_below_one_are_refused(small_dump, target_db):
    with pytest.raises(ConfigError) as raised:
        dumps.restore_dump(small_dump, target_db, jobs=0)
    assert raised.value.message == "--jobs must be at least 1, not 0."
    assert marker(target_db) == "original" and _scratch_left(target_db) == []


def test_a_remote_target_names_itself_and_the_dump_in_the_question(small_dump, monkeypatch):
    remote = parse_database_url("postgresql://app:hunter2hunter2@203.0.113.7:5433/shop")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Refused) as raised:
        dumps.restore_dump(small_dump, remote)
    assert raised.value.message.startswith(
        f"Refused: Replace the database 'shop' on 203.0.113.7:5433 (not this machine) with the dump "
        f"{small_dump.name}? This needs a confirmation")


def test_a_role_that_may_not_create_databases_is_told_so(pg_server, small_dump, target_db):
    role = f"no_createdb_{uuid.uuid4().hex[:6]}"
    execute(pg_server.admin, sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'plain-pw-123'").format(sql.Identifier(role)))
    try:
        plain = target_db.with_credentials(role, "plain-pw-123")
        with pytest.raises(TetherError) as raised:
            dumps.restore_dump(small_dump, plain)
        assert raised.value.message == (
            f"{role!r} may not create databases on {plain.host}:{plain.port}, which a restore needs (it builds a copy "
            "beside the target and swaps it in). Restore as the database's owner with CREATEDB, or as a superuser.")
        assert marker(target_db) == "original" and _scratch_left(target_db) == []
    finally:
        execute(pg_server.admin, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# --- what a restore builds, and what it reports --------------------------------------------------------------


@pytest.mark.parametrize("settings", [("LATIN1", "C", "C"), ("UTF8", "C.utf8", "C"), ("UTF8", "C", "C.utf8")],
                         ids=["latin1", "collate", "ctype"])
def test_the_copy_keeps_the_old_targets_encoding_and_locale(pg_server, small_dump, settings):
    name = f"enc_{uuid.uuid4().hex[:8]}"
    execute(pg_server.admin, sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}")
            .format(sql.Identifier(name), *map(sql.Literal, settings)))
    target = pg_server.admin.with_database(name)
    try:
        dumps.restore_dump(small_dump, target)
        with psycopg.connect(pg_server.admin.conninfo()) as conn:
            row = conn.execute("SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
                               "WHERE datname = %s", (name,)).fetchone()
        assert row == settings
        assert table_contents(target) == {"public.kept": [("(1,a)",), ("(2,b)",)]}
    finally:
        pg_server.drop_database(name)


def test_a_restore_into_a_new_database_reports_what_it_did(pg_server, small_dump):
    target = pg_server.admin.with_database(f"fresh_{uuid.uuid4().hex[:8]}")
    sizes: list[int] = []
    try:
        result = dumps.restore_dump(small_dump, target, on_progress=sizes.append)
        assert table_contents(target) == {"public.kept": [("(1,a)",), ("(2,b)",)]}
        assert (result.archive, result.database, result.target) == (small_dump, target.database,
                                                                     target.masked_url())
        assert (result.tables, result.disconnected_sessions, result.cleaned_leftovers) == (1, 0, [])
        assert (result.skipped, result.settings_skipped) == ([], [])
        assert 0 <= result.duration_seconds < 60
        assert _scratch_left(target) == []
    finally:
        pg_server.drop_database(target.database)


def test_a_slow_restore_reports_the_copys_growing_size(pg_server, pg_db, dumps_path):
    """Progress is the scratch database's size, polled while pg_restore runs (the target does not exist yet)."""
    execute(pg_db, r"""
        CREATE FUNCTION slow_gate(id integer) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            IF current_database() LIKE '%\_\_tether\_restore\_%' THEN PERFORM pg_sleep(0.1); END IF;
            RETURN true;
        END $$;
        CREATE TABLE slow (id integer CHECK (slow_gate(id)));
        INSERT INTO slow SELECT generate_series(1, 8);""")
    slow = dumps.dump_database(pg_db, "slow").path
    target = pg_server.admin.with_database(f"grown_{uuid.uuid4().hex[:8]}")
    sizes: list[int] = []
    try:
        dumps.restore_dump(slow, target, on_progress=sizes.append)
        assert sizes and all(size > 1_000_000 for size in sizes), sizes  # an empty database is ~7 MB
    finally:
        pg_server.drop_database(target.database)


def test_database_size_is_zero_when_it_cannot_be_read(pg_server):
    with psycopg.connect(pg_server.admin.conninfo(), autocommit=True) as conn:
        real = conn.execute("SELECT pg_database_size('postgres')").fetchone()[0]
        assert dumps._database_size(conn, "postgres") == real
        assert dumps._database_size(conn, f"missing_{uuid.uuid4().hex[:6]}") == 0


def test_sessions_on_the_old_target_are_counted_and_a_leftover_is_cleaned(pg_server, small_dump, target_db):
    leftover = f"{target_db.database}__tether_restore_{2**22 + 12345}_1"
    execute(pg_server.admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(leftover)))
    idle = psycopg.connect(target_db.conninfo())
    try:
        result = dumps.restore_dump(small_dump, target_db)
    finally:
        idle.close()
    assert result.disconnected_sessions == 1 and result.cleaned_leftovers == [leftover]
    assert _scratch_left(target_db) == []


@pytest.mark.parametrize(("ghosts", "listed"), [
    (["public.g1"], "public.g1"),
    ([f"public.g{n}" for n in range(1, 6)], "public.g1, public.g2, public.g3, public.g4, public.g5"),
    ([f"public.g{n}" for n in range(1, 7)], "public.g1, public.g2, public.g3, public.g4, public.g5…"),
], ids=["one", "five", "six"])
def test_tables_missing_from_the_restored_copy_stop_the_swap(small_dump, target_db, ghosts, listed):
    manifest = json.loads(manifest_path(small_dump).read_text())
    manifest["row_estimates"] = {"public.kept": 2, **dict.fromkeys(ghosts, 1)}
    manifest_path(small_dump).write_text(json.dumps(manifest))
    with pytest.raises(TetherError) as raised:
        dumps.restore_dump(small_dump, target_db)
    assert raised.value.message == (
        f"pg_restore finished but {len(ghosts)} table(s) of the dump are missing from the restored copy ({listed}). "
        f"{target_db.database!r} is unchanged.")
    assert marker(target_db) == "original" and _scratch_left(target_db) == []


def test_a_failed_pg_restore_says_once_that_the_target_is_unchanged(pg_db, target_db, dumps_path):
    """pg_restore fails inside the scratch copy: the copy is dropped, and the message says it once."""
    execute(pg_db, r"""
        CREATE FUNCTION gate(id integer) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            IF current_database() LIKE '%\_\_tether\_restore\_%' THEN RAISE EXCEPTION 'gate closed'; END IF;
            RETURN true;
        END $$;
        CREATE TABLE gated (id integer CHECK (gate(id)));
        INSERT INTO gated VALUES (1);""")
    broken = dumps.dump_database(pg_db, "gated").path
    with pytest.raises(CommandFailed) as raised:
        dumps.restore_dump(broken, target_db)
    message = raised.value.message
    assert message.startswith(f"pg_restore of {broken.name} failed with exit code 1. Its last output was:\n")
    assert message.endswith(f"\n{target_db.database!r} is unchanged. If the error names an extension or a library "
                            "that exists only where the dump was made, install it locally and run the restore again.")
    assert "gate closed" in message and message.count(f"{target_db.database!r} is unchanged.") == 1, message
    assert marker(target_db) == "original" and _scratch_left(target_db) == []


def test_an_archive_pg_restore_cannot_read_is_named(small_dump, target_db):
    """A damaged archive whose manifest was rewritten to match it: pg_restore --list is the first to fail."""
    data = small_dump.read_bytes()
    small_dump.write_bytes(data[:200])
    _edit_manifest(small_dump, size_bytes=size_of(small_dump), sha256=sha256_of(small_dump))
    with pytest.raises(CommandFailed) as raised:
        dumps.restore_dump(small_dump, target_db)
    assert raised.value.message.startswith(f"pg_restore --list {small_dump.name} failed with exit code 1.")
    assert marker(target_db) == "original" and _scratch_left(target_db) == []


def test_the_databases_own_settings_follow_it(pg_server, pg_db, target_db, dumps_path):
    execute(pg_db, "CREATE TABLE t (id int)")
    execute(pg_server.admin, sql.SQL("ALTER DATABASE {} SET work_mem = '7MB'").format(sql.Identifier(pg_db.database)))
    path = dumps.dump_database(pg_db, "settings").path
    result = dumps.restore_dump(path, target_db)
    with psycopg.connect(target_db.conninfo()) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
    assert result.settings_skipped == []


def test_a_dump_made_by_a_newer_pg_dump_needs_a_pg_restore_as_new(small_dump, target_db):
    _edit_manifest(small_dump, pg_dump_version="99.1")
    with pytest.raises(ToolMissing) as raised:
        dumps.restore_dump(small_dump, target_db)
    assert "pg_restore 99 or newer" in raised.value.message
    assert marker(target_db) == "original" and _scratch_left(target_db) == []


# --- the rest of the path: parallel restores, confirmed remote targets, minimal manifests ------------------------


@pytest.fixture
def partitioned_dump(pg_db, dumps_path):
    """A partitioned table with an index: its dump holds INDEX ATTACH entries for the partitions' indexes."""
    execute(pg_db, "CREATE TABLE events (id int, at date, note text) PARTITION BY RANGE (at);"
                   "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
                   "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');"
                   "CREATE INDEX events_at ON events (at);"
                   "INSERT INTO events VALUES (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b')")
    return dumps.dump_database(pg_db, "partitioned").path


@dataclass
class _Runs:
    """What each pg_restore run was given, and the work directories that existed while it ran."""

    argv: list[list[str]] = field(default_factory=list)
    work_dirs: list[str] = field(default_factory=list)


def _recorded_runs(monkeypatch) -> _Runs:
    from tether.workdirs import work_root

    runs = _Runs()
    real_run = dumps.run_with_progress

    def recording(argv, *args, **kwargs):
        runs.argv.append([str(arg) for arg in argv])
        runs.work_dirs.extend(entry.name for entry in work_root().iterdir())
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(dumps, "run_with_progress", recording)
    return runs


def test_a_killed_restores_work_directory_is_one_the_next_run_recognizes(small_dump, target_db, monkeypatch):
    """The next command removes the work directories of dead processes by their name: kind-pid-stamp."""
    import os

    from tether.workdirs import _NAME

    runs = _recorded_runs(monkeypatch)
    dumps.restore_dump(small_dump, target_db)
    mine = [name for name in runs.work_dirs if f"-{os.getpid()}-" in name]
    assert mine and all(_NAME.match(name) and name.startswith("restore-") for name in mine)


def _partitions_attached(target) -> None:
    with psycopg.connect(target.conninfo()) as conn:
        attached = conn.execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE c.relkind = 'i' AND i.inhparent = 'events_at'::regclass").fetchone()
        assert attached == (2,)  # both partitions' indexes belong to the partitioned one, as in the source
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (2,)


def test_a_parallel_restore_attaches_partition_indexes_in_a_second_serial_pass(partitioned_dump, target_db,
                                                                               monkeypatch):
    """pg_restore --jobs and a partitioned index's ATTACH entries do not mix: they go in a serial run after."""
    runs = _recorded_runs(monkeypatch).argv
    result = dumps.restore_dump(partitioned_dump, target_db, jobs=2)
    assert len(runs) == 2
    assert "--jobs=2" in runs[0] and not any(arg.startswith("--jobs") for arg in runs[1])
    assert all(any(arg.startswith("--use-list=") for arg in run) for run in runs)
    _partitions_attached(target_db)
    assert result.tables == 3 and result.skipped == []


def test_a_one_job_restore_is_a_single_run_of_pg_restore(partitioned_dump, target_db, monkeypatch):
    runs = _recorded_runs(monkeypatch).argv
    dumps.restore_dump(partitioned_dump, target_db, jobs=1)
    assert len(runs) == 1 and not any(arg.startswith("--jobs") for arg in runs[0])
    _partitions_attached(target_db)


def test_a_confirmed_restore_into_a_remote_target_goes_ahead(small_dump, target_db, monkeypatch):
    """--yes is the answer a pipeline gives; it must reach the question (taken here for a remote server)."""
    from tether.conninfo import DatabaseAddress

    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(DatabaseAddress, "is_local", property(lambda self: False))
    with pytest.raises(Refused):
        dumps.restore_dump(small_dump, target_db)
    assert marker(target_db) == "original" and _scratch_left(target_db) == []
    dumps.restore_dump(small_dump, target_db, yes=True)
    assert table_contents(target_db) == {"public.kept": [("(1,a)",), ("(2,b)",)]}


def test_a_manifest_with_only_its_kind_and_checksum_restores(small_dump, target_db):
    """A dump from elsewhere, given a manifest by hand: no pg_dump version, no table list. Any pg_restore
    will do, and there is no list of tables to check the copy against."""
    manifest = json.loads(manifest_path(small_dump).read_text())
    minimal = {key: manifest[key] for key in ("kind", "sha256", "size_bytes")}
    manifest_path(small_dump).write_text(json.dumps(minimal))
    result = dumps.restore_dump(small_dump, target_db)
    assert table_contents(target_db) == {"public.kept": [("(1,a)",), ("(2,b)",)]}
    assert result.tables == 0


def _probing_pg_restore(tmp_path, monkeypatch) -> None:
    """pg_restore behind a wrapper: it needs a variable of the caller's environment (as a TLS setting or the
    locale would be), and in leak mode fails printing the password it was given, as no real one should."""
    import sys

    real = dumps.client_program("pg_restore")
    wrapper = tmp_path / "pg_restore"
    wrapper.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        "if os.environ.get('TETHER_PROBE') != 'kept':\n"
        "    sys.exit(print('the caller environment did not reach pg_restore', file=sys.stderr) or 3)\n"
        "if os.environ.get('TETHER_PROBE_MODE') == 'leak' and '--list' not in sys.argv \\\n"
        "        and not any(a.startswith('--file') for a in sys.argv):\n"
        "    sys.exit(print('failing with password ' + os.environ.get('PGPASSWORD', '?'), file=sys.stderr) or 1)\n"
        f"os.execv({str(real)!r}, [{str(real)!r}, *sys.argv[1:]])\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(dumps, "client_program", lambda name, **kwargs: wrapper)
    monkeypatch.setenv("TETHER_PROBE", "kept")


def test_pg_restore_runs_in_the_callers_environment(partitioned_dump, target_db, tmp_path, monkeypatch):
    _probing_pg_restore(tmp_path, monkeypatch)
    dumps.restore_dump(partitioned_dump, target_db, jobs=2)  # both runs: the parallel one and the serial one
    _partitions_attached(target_db)


def test_a_password_in_pg_restores_error_output_is_masked(small_dump, target_db, tmp_path, monkeypatch):
    assert target_db.password
    _probing_pg_restore(tmp_path, monkeypatch)
    monkeypatch.setenv("TETHER_PROBE_MODE", "leak")
    with pytest.raises(CommandFailed) as raised:
        dumps.restore_dump(small_dump, target_db)
    assert "failing with password" in raised.value.message
    assert target_db.password not in raised.value.message
    assert marker(target_db) == "original" and _scratch_left(target_db) == []
