"""`invoke env` against the real servers: contents, nasty passwords, modes, user lines, --check, warnings."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from invoke import Config, Context, MockContext
from invoke.exceptions import Exit

from tether.conninfo import parse_database_url
from tether.envfiles import MANAGED_BEGIN, MANAGED_END
from tether.envsync import sync_env_files
from tether.native.binaries import client_program
from tether.tasks.env import env

from .conftest import EnvProject, parse_dotenv, read_with_python_dotenv, source_with_shell
from .test_envfiles import NASTY

MAIN_FILES = [".env.local", ".env.test", ".env.production", ".env"]
# Passwords the server accepts and the files must carry end to end (dotenv, shell, libpq, URLs).
SERVER_PASSWORDS = [case for case in NASTY if case[0] in {
    "everything", "percent-escape-lookalike", "single-quote", "double-quote", "command-substitution",
    "backslash-before-quote", "unicode"}]

# psql (libpq) once with only the PG* variables, once with libpq's own parse of DATABASE_URL.
CONNECT_FROM_SHELL = ('set -a; . "$1"; set +a; "$2" -XAt -c "SELECT current_user || \' \' || current_database()"; '
                      '"$2" -XAt -d "$DATABASE_URL" -c "SELECT current_user || \' \' || current_database()"')


def connect_as(url: str) -> tuple[str, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def values(root: Path, name: str) -> dict[str, str]:
    return parse_dotenv((root / name).read_text())


@pytest.mark.parametrize("password", [value for _, value in SERVER_PASSWORDS],
                         ids=[case_id for case_id, _ in SERVER_PASSWORDS])
def test_nasty_passwords_survive_every_file_and_form(env_project: EnvProject, password: str, node_dotenv) -> None:
    env_project.use_password(password)
    report = sync_env_files()
    assert report.ok and not report.warnings
    root, db = env_project.root, env_project.databases
    expected_database = {".env.local": db.dev, ".env.test": db.test, ".env.production": db.prod, ".env": db.dev}
    for name in MAIN_FILES:
        parsed = values(root, name)
        assert source_with_shell(root / name) == parsed, name  # the shell reads exactly what dotenv reads
        assert read_with_python_dotenv(root / name) == parsed, name
        assert node_dotenv(root / name) == parsed, name
        assert parsed["PGPASSWORD"] == password
        for key, url in parsed.items():
            if key.startswith(("DATABASE_URL", "TEST_DATABASE_URL")):
                assert parse_database_url(url).password == password, (name, key)
        assert connect_as(parsed["DATABASE_URL"]) == (db.role, expected_database[name]), name
    # libpq's own URL parser and PG* variables, in a process that only sourced the file.
    result = subprocess.run(["bash", "-c", CONNECT_FROM_SHELL, "bash", str(root / ".env.local"),
                             str(client_program("psql"))],
                            env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [f"{db.role} {db.dev}"] * 2


def test_the_files_hold_the_documented_variables(env_project: EnvProject) -> None:
    sync_env_files()
    root, db = env_project.root, env_project.databases
    local = values(root, ".env.local")
    assert set(local) == {"DATABASE_URL", "DATABASE_URL_ASYNCPG", "DATABASE_URL_PSYCOPG", "DATABASE_URL_LOCAL",
                          "TEST_DATABASE_URL", "TEST_DATABASE_URL_ASYNCPG", "TEST_DATABASE_URL_PSYCOPG",
                          "REDIS_URL", "PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD"}
    assert local["DATABASE_URL_ASYNCPG"].startswith("postgresql+asyncpg://")
    assert local["DATABASE_URL_PSYCOPG"].startswith("postgresql+psycopg://")
    assert parse_database_url(local["TEST_DATABASE_URL"]).database == db.test
    assert (local["PGPORT"], local["PGDATABASE"], local["PGUSER"]) == (str(db.admin.port), db.dev, db.role)

    test = values(root, ".env.test")
    assert not any("PRODUCTION" in key for key in test)
    assert parse_database_url(test["DATABASE_URL"]).database == db.test
    assert test["REDIS_URL"].endswith("/1")

    production = values(root, ".env.production")
    assert production["INSTANCE_CONNECTION_NAME"] == "acme-prod:europe-west1:app-postgres-prod"
    assert production["DATABASE_URL"] == production["DATABASE_URL_PRODUCTION"]
    socket = parse_database_url(production["DATABASE_URL_SOCKET"])
    assert (socket.host, socket.database) == ("/cloudsql/acme-prod:europe-west1:app-postgres-prod", db.prod)
    assert production["DATABASE_URL_SOCKET_ASYNCPG"].startswith("postgresql+asyncpg://")
    assert production["PGHOST"] == "127.0.0.1"

    active = values(root, ".env")
    assert active["TETHER_DB_TARGET"] == "local"
    assert active["DATABASE_URL"] == local["DATABASE_URL"] == active["DATABASE_URL_LOCAL"]
    assert active["DATABASE_URL_PRODUCTION"] == production["DATABASE_URL"]
    assert not (root / ".env.docker").exists()  # native backend: there is no Docker network


def test_files_are_0600_even_when_they_were_not(env_project: EnvProject) -> None:
    loose = env_project.root / ".env.local"
    loose.write_text("MINE=1\n")
    loose.chmod(0o644)
    sync_env_files()
    for name in MAIN_FILES:
        assert stat.S_IMODE((env_project.root / name).stat().st_mode) == 0o600, name
    assert not list(env_project.root.glob(".*.tmp"))


def test_user_lines_outside_the_block_are_kept_verbatim(env_project: EnvProject) -> None:
    root = env_project.root
    sync_env_files()
    path = root / ".env.local"
    before = "# my notes\nSENTRY_DSN='https://k@sentry.example/1'   # trailing comment\n\n"
    after = "\nFEATURE_X=on\nexport   WEIRD =  spaced\n"
    path.write_text(before + path.read_text() + after)
    env_project.write_outputs(redis_port=env_project.redis.address.port + 1)  # the block must change
    report = sync_env_files()
    assert {item.name: item.status for item in report.files}[".env.local"] == "updated"
    text = path.read_text()
    assert text.startswith(before)
    assert text.endswith(after)
    assert text.count(MANAGED_BEGIN) == text.count(MANAGED_END) == 1
    assert f":{env_project.redis.address.port + 1}/0" in values(root, ".env.local")["REDIS_URL"]


def test_a_file_without_a_block_gets_one_and_keeps_its_lines(env_project: EnvProject) -> None:
    path = env_project.root / ".env"
    path.write_text("DATABASE_URL=postgresql://me@elsewhere/mine\nOTHER=1\n")
    report = sync_env_files()
    assert path.read_text().endswith("DATABASE_URL=postgresql://me@elsewhere/mine\nOTHER=1\n")
    assert any(".env: your lines below the managed block set DATABASE_URL" in w for w in report.warnings)


def test_a_second_run_changes_nothing(env_project: EnvProject) -> None:
    sync_env_files()
    snapshot = env_project.snapshot()
    report = sync_env_files()
    assert {item.status for item in report.files} == {"unchanged"}
    assert env_project.snapshot() == snapshot


def test_check_names_missing_files_then_passes_then_catches_staleness(env_project: EnvProject,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = env_project.snapshot()
    with pytest.raises(Exit) as missing:
        env(Context(), check=True)
    assert missing.value.code == 1
    for name in MAIN_FILES:
        assert f"{name} (missing)" in str(missing.value.message)
    assert env_project.snapshot() == snapshot  # --check wrote nothing

    env(Context())
    env(Context(), check=True)  # fresh: no Exit

    env_project.write_outputs(redis_port=env_project.redis.address.port + 7)
    snapshot = env_project.snapshot()
    capsys.readouterr()
    with pytest.raises(Exit) as stale:
        env(Context(), check=True, json=True)
    document = json.loads(capsys.readouterr().out)
    statuses = {item["name"]: item["status"] for item in document["files"]}
    assert statuses == {".env.local": "stale", ".env.test": "stale", ".env.production": "ok", ".env": "stale"}
    assert document["ok"] is False
    message = str(stale.value.message)
    assert ".env.local (stale)" in message and ".env.production" not in message
    assert env_project.snapshot() == snapshot


def test_check_catches_a_password_change_and_a_loose_mode(env_project: EnvProject) -> None:
    sync_env_files()
    env_project.monkeypatch.setenv("TETHER_PROD_PASSWORD", "rotated")
    report = sync_env_files(check=True)
    assert {item.name for item in report.problems} == {".env.production", ".env"}
    env_project.monkeypatch.setenv("TETHER_PROD_PASSWORD", env_project.password)
    (env_project.root / ".env.test").chmod(0o640)
    assert [(item.name, item.status) for item in sync_env_files(check=True).problems] == [(".env.test", "insecure")]


def test_without_a_production_password_the_files_are_still_written(env_project: EnvProject) -> None:
    env_project.monkeypatch.delenv("TETHER_PROD_PASSWORD")
    report = sync_env_files()
    assert report.ok
    production = values(env_project.root, ".env.production")
    assert production["PGPASSWORD"] == ""
    assert parse_database_url(production["DATABASE_URL"]).password is None
    assert any("TETHER_PROD_PASSWORD" in note for note in report.notes)
    assert "TETHER_PROD_PASSWORD was not set" in (env_project.root / ".env.production").read_text()


def test_docker_backend_adds_in_network_addresses(env_project: EnvProject) -> None:
    env_project.write_outputs(backend="docker")
    sync_env_files()
    docker = values(env_project.root, ".env.docker")
    assert docker["RUNNING_IN_DOCKER"] == "1"
    dev = parse_database_url(docker["DATABASE_URL"])
    assert (dev.host, dev.port, dev.password) == ("postgres-dev", 5432, env_project.password)
    assert parse_database_url(docker["TEST_DATABASE_URL"]).host == "postgres-test"
    assert docker["REDIS_URL"].endswith("@redis:6379/0")
    assert docker["PGHOST"] == "postgres-dev"
    assert stat.S_IMODE((env_project.root / ".env.docker").stat().st_mode) == 0o600


def test_files_not_ignored_by_git_are_warned_about(env_project: EnvProject, capsys: pytest.CaptureFixture[str]) -> None:
    (env_project.root / ".gitignore").unlink()
    env(Context())
    out = capsys.readouterr().out
    for name in MAIN_FILES:
        assert f"warning: {name} is not ignored by git" in out


def test_git_itself_decides_inside_a_work_tree(env_project: EnvProject) -> None:
    root = env_project.root
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    report = sync_env_files()
    assert not report.warnings and all(item.ignored for item in report.files)
    subprocess.run(["git", "-C", str(root), "add", "-f", ".env.test"], check=True)  # tracked: a leak
    report = sync_env_files(check=True)
    assert [item.name for item in report.files if not item.ignored] == [".env.test"]


@pytest.mark.parametrize(("config", "flag", "expected"), [
    ({}, None, {"ASYNCPG", "PSYCOPG"}),
    ({"env": {"drivers": ["asyncpg"]}}, None, {"ASYNCPG"}),
    ({"env": {"drivers": "psycopg"}}, None, {"PSYCOPG"}),
    ({"env": {"drivers": ["asyncpg"]}}, "psycopg2", {"PSYCOPG2"}),
    ({}, "", set()),
], ids=["default", "config-list", "config-string", "flag-beats-config", "flag-none"])
def test_driver_variants_follow_flag_then_config_then_default(env_project: EnvProject, config: dict[str, object],
                                                              flag: str | None, expected: set[str]) -> None:
    env(Context(config=Config(overrides=config)), drivers=flag)
    local = values(env_project.root, ".env.local")
    assert {key.removeprefix("DATABASE_URL_") for key in local if key.startswith("DATABASE_URL_")} == \
        expected | {"LOCAL"}


def test_task_errors_are_one_masked_paragraph(env_project: EnvProject) -> None:
    with pytest.raises(Exit) as bad_driver:
        env(MockContext(), drivers="asyncpg;rm -rf")
    assert bad_driver.value.code == 2 and "not a driver name" in str(bad_driver.value.message)

    outputs = env_project.root / ".runtime" / "native" / "outputs.json"
    outputs.write_text("{not json")
    with pytest.raises(Exit) as unreadable:
        env(MockContext())
    assert unreadable.value.code == 2
    assert str(outputs) in str(unreadable.value.message) and "invoke up" in str(unreadable.value.message)

    outputs.write_text(json.dumps({"postgresDev": {}, "postgresTest": {}}))
    with pytest.raises(Exit) as incomplete:
        env(MockContext())
    assert "`redis`" in str(incomplete.value.message) and "invoke up" in str(incomplete.value.message)


def test_a_damaged_block_stops_without_touching_the_file(env_project: EnvProject) -> None:
    path = env_project.root / ".env.local"
    path.write_text(f"MINE=1\n{MANAGED_BEGIN}\nA=1\n")
    with pytest.raises(Exit) as damaged:
        env(Context())
    assert damaged.value.code == 2 and str(path) in str(damaged.value.message)
    assert path.read_text() == f"MINE=1\n{MANAGED_BEGIN}\nA=1\n"


def test_an_unquotable_password_is_refused_and_not_printed(env_project: EnvProject) -> None:
    env_project.write_outputs("it's $5")
    with pytest.raises(Exit) as refused:
        env(Context())
    message = str(refused.value.message)
    assert "PGPASSWORD in .env.local" in message and "it's $5" not in message
    assert not (env_project.root / ".env.local").exists()  # refused before anything was written
