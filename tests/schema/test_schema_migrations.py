"""Applying migrations to real PostgreSQL: the ledger, re-runs, drift, failures, the lock and concurrent runs."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tether.errors import TetherError
from tether.migrations import (
    LOCK_KEY,
    DriftError,
    LockTimeout,
    MigrationError,
    MigrationEvent,
    init_database,
    inspect_database,
    load_migrations,
)

from .conftest import REPO_SQL, write_sql


def ledger(address) -> list[tuple[str, str, str]]:
    with psycopg.connect(address.conninfo()) as conn:
        return conn.execute("SELECT version, checksum, applied_by FROM tether.schema_migrations ORDER BY version"
                            ).fetchall()


def relation_exists(address, name: str) -> bool:
    with psycopg.connect(address.conninfo()) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchall()[0][0]


def test_a_fresh_database_gets_every_file_and_a_complete_ledger(pg_db, role_passwords):
    files = load_migrations(REPO_SQL)
    result = init_database(pg_db, role_passwords=role_passwords, sql_dir=REPO_SQL)
    assert result.applied == tuple(m.version for m in files)
    assert result.already_applied == 0
    assert set(result.passwords_set) == {"api_user", "readonly"}
    assert ledger(pg_db) == [(m.version, m.checksum, pg_db.user) for m in files]
    plan = inspect_database(pg_db, sql_dir=REPO_SQL)
    assert not plan.pending and not plan.drift and len(plan.applied) == len(files)

    with psycopg.connect(pg_db.conninfo()) as conn:
        first_times = conn.execute("SELECT version, applied_at FROM tether.schema_migrations").fetchall()
    again = init_database(pg_db, role_passwords=role_passwords, sql_dir=REPO_SQL)
    assert again.applied == () and again.already_applied == len(files)
    with psycopg.connect(pg_db.conninfo()) as conn:
        assert conn.execute("SELECT version, applied_at FROM tether.schema_migrations").fetchall() == first_times


def test_an_edited_file_is_drift_and_nothing_is_applied(pg_db, role_passwords, sql_copy):
    init_database(pg_db, role_passwords=role_passwords, sql_dir=sql_copy)
    edited = sql_copy / "0004_profiles_and_groups.sql"
    before = load_migrations(sql_copy)[3].checksum
    edited.write_text(edited.read_text().replace("bio             text,", "bio             varchar(500),"))
    after = load_migrations(sql_copy)[3].checksum
    write_sql(sql_copy, {"0100_next.sql": "CREATE TABLE app.next_thing (id int);\n"})

    with pytest.raises(DriftError) as raised:
        init_database(pg_db, role_passwords=role_passwords, sql_dir=sql_copy)
    message = raised.value.message
    assert "0004_profiles_and_groups.sql changed after it was applied" in message
    assert before in message and after in message and before != after
    assert "0100_next.sql" not in [row[0] for row in ledger(pg_db)]
    assert not relation_exists(pg_db, "app.next_thing")

    plan = inspect_database(pg_db, sql_dir=sql_copy)
    assert [(d.version, d.kind, d.recorded_checksum, d.file_checksum) for d in plan.drift] == [
        ("0004_profiles_and_groups.sql", "changed", before, after)]


def test_a_removed_file_is_drift_too(pg_db, role_passwords, sql_copy):
    init_database(pg_db, role_passwords=role_passwords, sql_dir=sql_copy)
    (sql_copy / "0008_admin_configs.sql").unlink()
    with pytest.raises(DriftError, match=r"0008_admin_configs\.sql was applied .* but is no longer in"):
        init_database(pg_db, role_passwords=role_passwords, sql_dir=sql_copy)


BROKEN = """\
-- A file whose second statement fails: the first must be rolled back with it.
CREATE TABLE public.half_done (id int);

CREATE INDEX half_done_idx
    ON public.half_done (id);

INSERT INTO public.half_done (id)
    SELECT id FROM public.no_such_table;
"""


def test_a_failing_file_is_rolled_back_and_the_error_shows_file_line_and_message(pg_db, tmp_path, role_passwords):
    directory = write_sql(tmp_path / "sql", {
        "0001_first.sql": "CREATE TABLE public.first (id int);\n",
        "0002_broken.sql": BROKEN,
        "0003_after.sql": "CREATE TABLE public.after (id int);\n",
    })
    with pytest.raises(MigrationError) as raised:
        init_database(pg_db, role_passwords=role_passwords, sql_dir=directory)
    message = raised.value.message
    assert "0002_broken.sql failed at line 8" in message
    assert 'relation "public.no_such_table" does not exist (SQLSTATE 42P01)' in message
    assert "8 | SELECT id FROM public.no_such_table;" in message
    assert "the 1 file applied before it in this run stay" in message

    assert [row[0] for row in ledger(pg_db)] == ["0001_first.sql"]
    assert relation_exists(pg_db, "public.first")
    assert not relation_exists(pg_db, "public.half_done")
    assert not relation_exists(pg_db, "public.after")

    # Fixed, the next run picks up where this one stopped (and the lock was released).
    (directory / "0002_broken.sql").write_text(BROKEN.replace("public.no_such_table", "public.first"))
    result = init_database(pg_db, role_passwords=role_passwords, sql_dir=directory)
    assert result.applied == ("0002_broken.sql", "0003_after.sql")


def test_an_error_inside_a_do_block_points_at_its_line_in_the_file(pg_db, tmp_path, role_passwords):
    directory = write_sql(tmp_path / "sql", {"0001_do.sql": (
        "SELECT 1;\n"
        "DO $$\n"
        "DECLARE\n"
        "    n int := 0;\n"
        "BEGIN\n"
        "    RAISE EXCEPTION 'not ready: %', n USING HINT = 'seed it first';\n"
        "END\n"
        "$$;\n")})
    with pytest.raises(MigrationError) as raised:
        init_database(pg_db, role_passwords=role_passwords, sql_dir=directory)
    assert "0001_do.sql failed at line 6: not ready: 0 (SQLSTATE P0001)" in raised.value.message
    assert "Hint: seed it first." in raised.value.message


def test_a_file_that_sets_its_role_for_the_session_does_not_leak_into_the_next(pg_db, tmp_path, role_passwords):
    directory = write_sql(tmp_path / "sql", {
        "0001_owner.sql": ("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tether_test_owner') THEN "
                           "CREATE ROLE tether_test_owner NOLOGIN; END IF; END $$;\n"),
        "0002_as_owner.sql": "SET ROLE tether_test_owner;\nSET search_path = pg_catalog;\nSELECT 1;\n",
        "0003_next.sql": "CREATE TABLE public.made_after (id int);\n",
    })
    try:
        init_database(pg_db, role_passwords=role_passwords, sql_dir=directory)
        with psycopg.connect(pg_db.conninfo()) as conn:
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'made_after'").fetchall()[0][0]
        assert owner == pg_db.user
        assert [row[2] for row in ledger(pg_db)] == [pg_db.user] * 3
    finally:
        with psycopg.connect(pg_db.conninfo(), autocommit=True) as conn:
            conn.execute("DROP OWNED BY tether_test_owner")
            conn.execute("DROP ROLE IF EXISTS tether_test_owner")


def test_a_held_lock_makes_a_run_wait_then_give_up_with_a_clear_message(pg_db, role_passwords):
    with psycopg.connect(pg_db.conninfo(application_name="someone else"), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        pid = holder.info.backend_pid
        events: list[MigrationEvent] = []
        with pytest.raises(LockTimeout) as raised:
            init_database(pg_db, role_passwords=role_passwords, sql_dir=REPO_SQL, lock_wait=0.5, progress=events.append)
    assert f"process {pid} (someone else" in raised.value.message
    assert "Nothing was applied" in raised.value.message
    assert [event.kind for event in events] == ["waiting"]
    assert not relation_exists(pg_db, "tether.schema_migrations")


def test_concurrent_runs_apply_each_file_exactly_once(pg_db, role_passwords):
    files = [m.version for m in load_migrations(REPO_SQL)]
    waiting = [threading.Event(), threading.Event()]
    results: list[object] = [(), ()]

    def run(slot: int) -> None:
        def progress(event: MigrationEvent) -> None:
            if event.kind == "waiting":
                waiting[slot].set()
        try:
            results[slot] = init_database(pg_db, role_passwords=role_passwords, sql_dir=REPO_SQL,
                                          progress=progress).applied
        except BaseException as error:  # the assertion below shows it
            results[slot] = error

    # Hold the lock until both runs are queued behind it, so they really start together.
    with psycopg.connect(pg_db.conninfo(), autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        threads = [threading.Thread(target=run, args=(slot,)) for slot in (0, 1)]
        for thread in threads:
            thread.start()
        assert all(event.wait(30) for event in waiting), "both runs should have queued on the lock"
        gate.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        for thread in threads:
            thread.join(60)

    assert not any(isinstance(result, BaseException) for result in results), results
    assert set(results) == {(), tuple(files)}  # one run applied everything, the other nothing
    assert [row[0] for row in ledger(pg_db)] == files


def test_a_database_that_does_not_exist_is_a_clear_error(pg_server, role_passwords):
    missing = pg_server.admin.with_database("no_such_database_here")
    with pytest.raises(TetherError, match=r"Cannot connect to postgresql://postgres:\*+@127\.0\.0\.1:\d+/no_such"):
        init_database(missing, role_passwords=role_passwords, sql_dir=REPO_SQL)


def test_server_warnings_are_reported_with_their_file(pg_db, tmp_path, role_passwords):
    script = "DO $$ BEGIN RAISE WARNING 'check the grants'; END $$;\n"
    directory = write_sql(tmp_path / "sql", {"0001_warns.sql": script})
    events: list[MigrationEvent] = []
    init_database(pg_db, role_passwords=role_passwords, sql_dir=directory, progress=events.append)
    assert MigrationEvent("warning", "0001_warns.sql", detail="check the grants") in events
