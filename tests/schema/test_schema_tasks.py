"""The db.init and db.status tasks: refusals before connecting, dry runs, JSON for CI, drift as an exit code."""

from __future__ import annotations

import json
import os
import stat

import psycopg
import pytest
from invoke import Context
from invoke.exceptions import Exit

from tether.roles import role_passwords_file
from tether.tasks import schema

from .conftest import REPO_SQL

UNREACHABLE = "postgresql://admin:s3cret-Pa55@10.255.255.1:5432/app"


@pytest.fixture
def project(isolated_project, monkeypatch):
    """An isolated project root that still reads the real sql/, with no role passwords in the environment."""
    monkeypatch.setenv("TETHER_SQL_DIR", str(REPO_SQL))
    for variable in ("TETHER_API_USER_PASSWORD", "TETHER_READONLY_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    return isolated_project


def forbid_connections(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("the task connected before refusing")

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr("tether.endpoints.open_database", refuse)  # the task imports it when it runs


@pytest.mark.parametrize(("db", "flags"), [
    (UNREACHABLE, {}),
    ("prod", {}),
    (UNREACHABLE, {"json": True}),
], ids=["non-local-url", "prod", "non-local-json"])
def test_init_refuses_a_non_local_database_in_ci_without_yes_before_connecting(monkeypatch, project, db, flags):
    monkeypatch.setenv("CI", "true")
    forbid_connections(monkeypatch)
    with pytest.raises(Exit) as raised:
        schema.init(Context(), db=db, **flags)
    assert raised.value.code == 3
    assert "--yes" in str(raised.value.message) and "CI=true" in str(raised.value.message)
    assert "s3cret-Pa55" not in str(raised.value.message)


def test_dry_run_prints_the_pending_files_and_applies_nothing(pg_db, project, capsys):
    schema.init(Context(), db=pg_db.url(), dry_run=True)
    out = capsys.readouterr().out
    assert "pending  0001_roles.sql" in out and "pending  0009_row_level_security.sql" in out
    assert "Dry run: nothing was applied." in out
    assert pg_db.password not in out
    with psycopg.connect(pg_db.conninfo()) as conn:
        assert conn.execute("SELECT to_regclass('tether.schema_migrations')").fetchone() == (None,)


def test_init_then_status_as_json(pg_db, project, capsys):
    schema.init(Context(), db=pg_db.url())
    out = capsys.readouterr().out
    assert "applied  0009_row_level_security.sql" in out
    assert "passwords set for api_user, readonly" in out
    passwords = role_passwords_file()
    assert stat.S_IMODE(os.stat(passwords).st_mode) == 0o600
    secrets = json.loads(passwords.read_text())
    assert not any(secret in out for secret in secrets.values())
    with psycopg.connect(pg_db.with_credentials("api_user", secrets["api_user"]).conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM app.admin_configs").fetchone() == (3,)

    schema.status(Context(), db=pg_db.url(), json=True)
    report = json.loads(capsys.readouterr().out)
    assert report["database"] == pg_db.masked_url() and pg_db.password not in report["database"]
    assert [entry["version"] for entry in report["applied"]][-1] == sorted(p.name for p in REPO_SQL.glob("*.sql"))[-1]
    assert set(report["applied"][0]) == {"version", "checksum", "applied_at", "applied_by", "duration_ms"}
    assert report["pending"] == [] and report["drift"] == []

    schema.init(Context(), db=pg_db.url(), json=True)
    again = json.loads(capsys.readouterr().out)
    assert again["applied"] == [] and again["already_applied"] == len(report["applied"])


def test_status_flags_drift_with_exit_code_4(pg_db, project, sql_copy, monkeypatch, capsys):
    monkeypatch.setenv("TETHER_SQL_DIR", str(sql_copy))
    schema.init(Context(), db=pg_db.url(), json=True)
    capsys.readouterr()
    (sql_copy / "0006_notifications.sql").write_text("-- rewritten\n")
    with pytest.raises(Exit) as raised:
        schema.status(Context(), db=pg_db.url(), json=True)
    assert raised.value.code == 4
    report = json.loads(capsys.readouterr().out)
    assert [(d["version"], d["kind"]) for d in report["drift"]] == [("0006_notifications.sql", "changed")]
    assert "0006_notifications.sql changed after it was applied" in str(raised.value.message)
    with pytest.raises(Exit) as refused:
        schema.init(Context(), db=pg_db.url(), dry_run=True)
    assert refused.value.code == 4


def test_the_database_defaults_to_config_then_dev(pg_db, project, capsys):
    context = Context()
    context.config.tether = {"db": pg_db.url()}
    schema.status(context)
    assert f"pending: {len(list(REPO_SQL.glob('*.sql')))}" in capsys.readouterr().out
    assert schema.database_spec(Context(), None) == "dev"
    assert schema.database_spec(context, "test") == "test"
