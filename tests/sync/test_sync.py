"""A full sync between two real servers: everything arrives, anonymized, selected, and nothing on bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess

import psycopg
import pytest
from invoke import Context

from tether.errors import ConfigError, Refused
from tether.native.binaries import client_program
from tether.sync.engine import sync
from tether.sync.local import snapshot_name, spare_name
from tether.sync.plan import Selection
from tether.tasks import sync as sync_tasks

from .conftest import GHOST_ROLE, READER_ROLE, database_names, execute, table_digest

TABLES = ["app.teams", "app.people", "app.events_2023", "app.events_2024", "app.cache", "app.log_lines",
          "app.bookings", "app.ledger_a", "app.ledger_b", '"Mixed Schema"."Odd Table"', "app.team_sizes",
          "app.odd_count"]


def schema_text(address) -> str:
    """pg_dump --schema-only without owners and grants, minus lines that differ for no reason."""
    program = client_program("pg_dump")
    env = {**os.environ, **address.libpq_env()}
    result = subprocess.run([str(program), "--schema-only", "--no-owner", "--no-privileges"], env=env,
                            capture_output=True, text=True, check=True)
    lines = [line for line in result.stdout.splitlines()
             if line.strip() and line != "--" and not line.startswith(("\\", "-- Dumped", "-- PostgreSQL database"))]
    return "\n".join(lines) + "\n"


def without_entries(text: str, words: tuple[str, ...]) -> str:
    """The schema text without the entries (header and statements) that mention any of ``words``."""
    entries = re.split(r"(?m)^(?=-- Name: )", text)
    return "".join(entry for entry in entries if not any(word in entry for word in words)).rstrip("\n")


@pytest.mark.parametrize("early_bytes", [None, 8192], ids=["one-wave", "two-waves"])
def test_full_sync_copies_every_kind_of_object(sync_servers, sync_options, monkeypatch, early_bytes):
    from tether.sync import engine

    if early_bytes:  # tables this big are created first and filled while the rest of the schema is created
        monkeypatch.setattr(engine, "EARLY_TABLE_BYTES", early_bytes)
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    analyze = early_bytes is not None  # and statistics, on request
    # Only the sync may make statistics here: on a busy machine autovacuum once analyzed the new table before
    # the check (the setting travels with the table, so it holds in the copy too).
    execute(source, "ALTER TABLE app.people SET (autovacuum_enabled = false)")
    summary = sync(source, dest, sync_options(anonymize=False, analyze=analyze))

    assert summary.mode == "full" and summary.verified and not summary.anonymized
    statistics = execute(dest, "SELECT count(*) FROM pg_stats WHERE schemaname = 'app' AND tablename = 'people'")
    assert (statistics[0][0] > 0) is analyze
    assert summary.tables == 10  # tables with storage, partitions included, matviews not
    # Policies for roles the local server lacks are skipped (and reported), not a failure.
    expected = without_entries(schema_text(source), (GHOST_ROLE, READER_ROLE))
    assert without_entries(schema_text(dest), ()) == expected
    assert "CREATE POLICY teams_reader" in schema_text(source)
    assert any(GHOST_ROLE in skipped and "POLICY" in skipped for skipped in summary.skipped_privileges)
    assert any(f"GRANT SELECT ON TABLE app.people TO {GHOST_ROLE}" in skipped
               for skipped in summary.skipped_privileges)
    for table in TABLES:
        assert table_digest(dest, table) == table_digest(source, table), table
    assert table_digest(dest, "app.events") == table_digest(source, "app.events")
    sequences = "SELECT last_value, is_called FROM {}"
    for sequence in ("app.invoice_numbers", "app.people_id_seq", "app.teams_id_seq", "app.events_id_seq"):
        assert execute(dest, sequences.format(sequence)) == execute(source, sequences.format(sequence)), sequence
    # Triggers exist locally but did not fire while rows were copied.
    assert execute(dest, "SELECT DISTINCT updated_at::date::text FROM app.teams") == [("2000-01-01",)]
    assert execute(dest, "SELECT count(*) FROM pg_trigger WHERE tgname = 'teams_touch'") == [(1,)]
    # The working database, the snapshot kept for db.reset and its spare copy; no scratch copies left.
    assert database_names(sync_servers.dest_admin, dest.database) == sorted(
        [dest.database, snapshot_name(dest.database), spare_name(dest.database)])
    assert execute(sync_servers.dest_admin, "SELECT datallowconn FROM pg_database WHERE datname = %s",
                   (snapshot_name(dest.database),)) == [(False,)]


def test_anonymization_is_applied_deterministic_and_unique(sync_servers, sync_options):
    source = sync_servers.source_copy()
    # A child table (INHERITS) holds the same personal columns: its parent's rules apply to it too.
    execute(source, "CREATE TABLE app.people_archive (archived_at date) INHERITS (app.people); "
                    "INSERT INTO app.people_archive (id, email, full_name, phone, avatar) "
                    "VALUES (9999, 'old@example.org', 'Old Person', '+1999', '\\x00')")
    dest = sync_servers.dest()
    summary = sync(source, dest, sync_options())
    assert {(rule["column"], rule["rule"].split()[0]) for rule in summary.rules_applied} == {
        ("email", "fake_email"), ("full_name", "fake_name"), ("phone", "mask"), ("birth_date", "random_date"),
        ("bio", "fixed"), ("avatar", "null")}
    real = {row[0].lower() for row in execute(source, "SELECT email FROM app.people")}
    fake = [row[0] for row in execute(dest, "SELECT email FROM ONLY app.people ORDER BY id")]
    assert not real & {email.lower() for email in fake}
    assert len(set(fake)) == len(fake) == 300
    assert all(re.fullmatch(r"user_[0-9a-f]{32}@example\.com", email) for email in fake)
    assert execute(dest, "SELECT count(*) FROM app.people WHERE full_name LIKE 'Person%' OR avatar IS NOT NULL "
                         "OR phone !~ '^\\+1\\*+\\d\\d$' OR birth_date NOT BETWEEN '1950-01-01' AND '1999-12-31'") \
        == [(0,)]
    assert execute(dest, "SELECT count(*) FILTER (WHERE bio = 'redacted'), count(*) FILTER (WHERE bio IS NULL) "
                         "FROM ONLY app.people") == [(200, 100)]
    archived = execute(dest, "SELECT email, full_name, avatar FROM app.people_archive")
    assert len(archived) == 1 and archived[0][0].startswith("user_") and archived[0][1] != "Old Person"
    assert archived[0][2] is None
    # Columns without rules, and generated columns computed from anonymized ones, are as expected.
    assert table_digest(dest, "app.people", "id, mood, tags, doc") == \
        table_digest(source, "app.people", "id, mood, tags, doc")
    assert execute(dest, "SELECT count(*) FROM app.people WHERE name_length <> length(full_name)") == [(0,)]
    # This source has no tether_anon key: pseudonyms are keyed for one sync only, never stored, so the next
    # sync gives other ones (tests/sync/test_anonymize_keys.py covers the server's key: the same on every sync).
    again = sync(source, dest, sync_options(full=True))
    assert again.mode == "full" and again.pseudonym_key == "per-sync"
    second = [row[0] for row in execute(dest, "SELECT email FROM ONLY app.people ORDER BY id")]
    assert len(set(second)) == 300 and not set(second) & set(fake)


def test_a_rule_naming_a_missing_table_or_column_stops_before_writing(sync_servers, sync_options, tmp_path):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    execute(sync_servers.dest_admin, f'CREATE DATABASE "{dest.database}"')
    execute(dest, "CREATE TABLE mine (x int); INSERT INTO mine VALUES (1)")
    for rules in ("tables:\n  app.peeple:\n    email: fake_email\n",
                  "tables:\n  app.people:\n    emial: fake_email\n"):
        path = tmp_path / "typo.yaml"
        path.write_text(rules)
        with pytest.raises(ConfigError, match="does not exist") as caught:
            sync(source, dest, sync_options(rules_path=path))
        assert "Nothing was copied" in caught.value.message
    assert database_names(sync_servers.dest_admin, dest.database) == [dest.database]
    assert execute(dest, "SELECT x FROM mine") == [(1,)]


def test_select_tables_exclude_and_exclude_data(sync_servers, sync_options):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    selection = Selection(tables=("app.*",), exclude=("app.cache", "*.ledger_*"), exclude_data=("log_lines",))
    summary = sync(source, dest, sync_options(selection=selection))
    tables = {row[0] for row in execute(dest, "SELECT schemaname || '.' || tablename FROM pg_tables "
                                              "WHERE schemaname IN ('app', 'Mixed Schema')")}
    assert "app.cache" not in tables and "app.ledger_a" not in tables and "Mixed Schema.Odd Table" not in tables
    assert {"app.people", "app.teams", "app.log_lines", "app.events_2023"} <= tables
    assert execute(dest, "SELECT count(*) FROM app.log_lines") == [(0,)]
    assert execute(dest, "SELECT count(*) FROM app.people") == [(300,)]
    # A materialized view reading an excluded table is left out too, and said so.
    assert execute(dest, "SELECT count(*) FROM pg_matviews WHERE matviewname = 'odd_count'") == [(0,)]
    assert any("odd_count" in note for note in summary.notes)
    assert summary.tables_schema_only == 1 and summary.tables_excluded >= 5


def test_selection_errors(sync_servers, sync_options):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    with pytest.raises(ConfigError, match="matches no table"):
        sync(source, dest, sync_options(selection=Selection(exclude_data=("app.sesions",))))
    # people keeps its rows but would point at teams whose rows are left out.
    with pytest.raises(ConfigError, match="foreign key"):
        sync(source, dest, sync_options(selection=Selection(exclude_data=("app.teams",))))
    assert database_names(sync_servers.dest_admin, dest.database) == []


def test_ci_without_yes_refuses_before_writing(sync_servers, sync_options, monkeypatch):
    monkeypatch.setenv("CI", "true")
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    with pytest.raises(Refused, match="--yes"):
        sync(source, dest, sync_options(yes=False))
    assert database_names(sync_servers.dest_admin, dest.database) == []


def test_task_prints_documented_json(sync_servers, isolated_project, rules_file, capsys, monkeypatch):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    sync_tasks.sync_prod(Context(), source=source.url(), dest=dest.url(), rules=str(rules_file), yes=True,
                         json=True, exclude=["app.cache,app.odd_count"], jobs=3)
    data = json.loads(capsys.readouterr().out)
    documented = {"mode", "source", "dest", "snapshot_database", "anonymized", "tables", "tables_copied",
                  "tables_carried_over", "tables_schema_only", "tables_excluded", "rows", "rows_copied",
                  "bytes_copied", "source_bytes", "source_seconds", "source_mbit_per_second", "tables_spooled",
                  "seconds", "phases", "jobs", "rules_applied", "changed_tables",
                  "sessions_disconnected", "skipped_privileges", "owners_mapped", "settings_skipped", "notes",
                  "verified", "row_counts", "materialized_views_refreshed", "sequences_set", "pseudonym_key",
                  "leak_scan", "subset"}
    assert set(data) == documented and data["subset"] is None  # a whole copy, not a --subset
    assert data["mode"] == "full" and data["verified"] is True and data["jobs"] == 3
    assert data["rows"] == sum(data["row_counts"].values()) == data["rows_copied"]
    assert "********" in data["source"] and source.password not in json.dumps(data)
    assert data["tables_excluded"] == 2

    sync_tasks.reset(Context(), db=dest.url(), yes=True, json=True)
    reset = json.loads(capsys.readouterr().out)
    assert set(reset) == {"dest", "snapshot_database", "synced_at", "seconds", "sessions_disconnected",
                          "from_spare"}


def test_task_reports_bad_input_as_one_message(sync_servers, isolated_project, tmp_path):
    from invoke.exceptions import Exit

    source = sync_servers.source_copy()
    with pytest.raises(Exit) as caught:
        sync_tasks.sync_prod(Context(), source=source.url(), dest="postgresql://me@10.9.8.7/dev", yes=True)
    assert "not a local server" in str(caught.value.message) and caught.value.code == Refused.exit_code
    missing = tmp_path / "none.yaml"
    with pytest.raises(Exit) as caught:
        sync_tasks.sync_prod(Context(), source=source.url(), dest=sync_servers.dest().url(), rules=str(missing),
                             yes=True)
    assert "no anonymization rules file" in str(caught.value.message)
    with pytest.raises(Exit) as caught:
        sync_tasks.reset(Context(), db=sync_servers.dest().url(), yes=True)
    assert "sync-prod" in str(caught.value.message)


def test_source_role_with_select_only(sync_servers, sync_options):
    source = sync_servers.source_copy()
    reader = sync_servers.reader(source)
    # Really only SELECT: no writes, no sequences.
    with psycopg.connect(reader.conninfo()) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("INSERT INTO app.cache VALUES ('x', 'y')")
    dest = sync_servers.dest()
    summary = sync(reader, dest, sync_options(anonymize=False))
    assert summary.verified
    for table in ("app.people", "app.teams", "app.events_2024", '"Mixed Schema"."Odd Table"'):
        assert table_digest(dest, table) == table_digest(source, table)
    # Sequences it may not read are set from their column's largest value (and said so).
    assert execute(dest, "SELECT last_value FROM app.people_id_seq") == [(300,)]
    assert any("people_id_seq" in note for note in summary.notes)


def test_a_source_table_the_role_may_not_read_is_one_clear_error(sync_servers, sync_options):
    from tether.errors import TetherError

    source = sync_servers.source_copy()
    execute(source, "REVOKE SELECT ON app.cache FROM tether_sync_reader")
    dest = sync_servers.dest()
    with pytest.raises(TetherError) as caught:
        sync(sync_servers.reader(source), dest, sync_options(anonymize=False))
    # Named before anything is written, with the flag that leaves it out.
    assert "may not read app.cache" in caught.value.message and "--exclude" in caught.value.message
    assert database_names(sync_servers.dest_admin, dest.database) == []
    assert database_names(sync_servers.dest_admin, f"{dest.database}__tether%") == []
    summary = sync(sync_servers.reader(source), dest, sync_options(anonymize=False,
                                                                   selection=Selection(exclude=("app.cache",))))
    assert summary.verified and "app.cache" not in summary.row_counts
