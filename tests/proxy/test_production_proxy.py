"""Production through the proxy: which address, which credentials, and a real query end to end via the stand-in."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from tests.conftest import free_port
from tether.endpoints import open_database
from tether.errors import ConfigError
from tether.production import (
    load_production_settings,
    password_secret_id,
    prod_instance,
    production_address,
    production_database,
)
from tether.proxy import process_alive, proxy_status, start_proxy

from .conftest import state_files_exist

SECRET = "Prod-Pa55word-xyz"


def write_prod_stack(root: Path, **config: object) -> None:
    path = root / "stacks" / "prod" / "Pulumi.prod.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"config": {f"tether-prod:{key}": value for key, value in config.items()}}))


@pytest.fixture
def settings(isolated_project):
    write_prod_stack(isolated_project, gcpProject="my-project", region="europe-west1", proxyPort=6543)
    return load_production_settings()


@pytest.mark.parametrize(("readonly", "variable", "user"), [
    (False, "TETHER_PROD_PASSWORD", "api_user"),
    (True, "TETHER_PROD_READONLY_PASSWORD", "readonly"),
], ids=["app-user", "readonly-user"])
def test_address_through_the_proxy(settings, readonly, variable, user):
    address = production_address(settings, {variable: SECRET}, readonly=readonly)
    assert (address.host, address.port, address.database, address.user, address.password) == (
        "127.0.0.1", 6543, "app", user, SECRET)
    assert ("sslmode", "disable") in address.options
    assert SECRET not in repr(address)


@pytest.mark.parametrize(("readonly", "variable", "secret"), [
    (False, "TETHER_PROD_PASSWORD", "app-postgres-prod-api_user-password"),
    (True, "TETHER_PROD_READONLY_PASSWORD", "app-postgres-prod-readonly-password"),
], ids=["app-user", "readonly-user"])
def test_missing_password_names_the_variable_and_the_secret(settings, readonly, variable, secret):
    with pytest.raises(ConfigError) as info:
        production_address(settings, {}, readonly=readonly)
    assert variable in info.value.message
    assert f"gcloud secrets versions access latest --secret={secret} --project=my-project" in info.value.message
    assert password_secret_id(settings, "readonly" if readonly else "api_user") == secret


def test_iam_needs_no_password_but_a_user(settings):
    address = production_address(settings, {"TETHER_PROD_IAM_USER": "dev@example.com"}, iam=True)
    assert (address.user, address.password) == ("dev@example.com", None)
    with pytest.raises(ConfigError, match="TETHER_PROD_IAM_USER"):
        production_address(settings, {"TETHER_PROD_PASSWORD": SECRET}, iam=True)


def test_instance_from_the_stack_or_the_environment(isolated_project, settings):
    assert prod_instance(settings, {}) == "my-project:europe-west1:app-postgres-prod"
    assert prod_instance(settings, {"TETHER_PROD_INSTANCE": "other-project:us-east1:db"}) == "other-project:us-east1:db"
    write_prod_stack(isolated_project)  # no gcpProject
    with pytest.raises(ConfigError, match="gcpProject"):
        prod_instance(load_production_settings(), {})
    with pytest.raises(ConfigError, match="PROJECT:REGION:INSTANCE"):
        prod_instance(settings, {"TETHER_PROD_INSTANCE": "db?address=0.0.0.0"})


@pytest.fixture
def prod_behind_fake_proxy(fake_proxy, isolated_project, pg_db, pg_server, monkeypatch):
    """A prod stack whose "Cloud SQL" is the test server, with a real read-only role on it."""
    readonly = f"ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(readonly),
                                                                       sql.Literal(SECRET)))
    port = free_port()
    write_prod_stack(isolated_project, gcpProject="my-project", region="europe-west1", databaseName=pg_db.database,
                     appUser="postgres", readonlyUser=readonly, proxyPort=port)
    monkeypatch.setenv("TETHER_PROD_PASSWORD", pg_server.admin.password)
    monkeypatch.setenv("TETHER_PROD_READONLY_PASSWORD", SECRET)
    yield port, readonly
    with psycopg.connect(pg_server.admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(readonly)))


def test_production_database_starts_the_proxy_for_the_block(prod_behind_fake_proxy, pg_db):
    port, readonly = prod_behind_fake_proxy
    with production_database() as address:
        status = proxy_status()
        assert status.running and status.port == port == address.port
        with psycopg.connect(address.conninfo()) as conn:
            assert conn.execute("SELECT current_database(), current_user").fetchone() == (pg_db.database, "postgres")
    assert not process_alive(status.pid)
    assert not state_files_exist()

    with open_database("prod", readonly=True) as address, psycopg.connect(address.conninfo()) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == readonly


def test_production_database_reuses_a_running_proxy(prod_behind_fake_proxy):
    port, _ = prod_behind_fake_proxy
    running = start_proxy("my-project:europe-west1:app-postgres-prod", port, timeout=10)
    with production_database() as address, psycopg.connect(address.conninfo()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert process_alive(running.pid)


def test_a_missing_password_fails_before_any_proxy_starts(prod_behind_fake_proxy, monkeypatch):
    monkeypatch.delenv("TETHER_PROD_PASSWORD")
    with pytest.raises(ConfigError, match="TETHER_PROD_PASSWORD"), production_database():
        pass
    assert not state_files_exist()
    assert not proxy_status().running


def test_secret_ids_match_the_prod_stack(settings):
    from infra.prod.cloudsql import secret_id

    for user in ("api_user", "readonly", "first.last"):
        assert password_secret_id(settings, user) == secret_id(settings.instance_name, user)
