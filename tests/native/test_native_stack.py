"""The native dev stack for real: servers started, killed, restarted and checked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from invoke import Context
from invoke.exceptions import Exit

from tests.conftest import free_port
from tether import devenv
from tether.devenv import check_all
from tether.endpoints import dev_endpoints
from tether.errors import TetherError
from tether.native import stack
from tether.processes import processes_in
from tether.tasks import devstack

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["postgres-dev", "postgres-test", "redis"]
pytestmark = pytest.mark.serial  # one module-scoped stack, used by its tests in order: they stay on one worker


def _write_stack_file(root: Path, ports: dict[str, int], extra: str = "") -> None:
    (root / "stacks" / "dev").mkdir(parents=True, exist_ok=True)
    (root / "stacks" / "dev" / "Pulumi.dev.yaml").write_text(
        "config:\n"
        f"  tether-dev:devPort: {ports['dev']}\n"
        f"  tether-dev:testPort: {ports['test']}\n"
        f"  tether-dev:redisPort: {ports['redis']}\n" + extra
    )


@pytest.fixture(scope="module")
def native_project():
    """A project root with its own ports and data directory; the stack is torn down at the end."""
    root = Path(tempfile.mkdtemp(prefix="tether-native-project-"))
    data = Path(tempfile.mkdtemp(prefix="tether-native-data-"))
    data.chmod(0o755)
    saved = {key: os.environ.get(key) for key in ("TETHER_PROJECT_ROOT", "TETHER_NATIVE_DATA", "TETHER_SQL_DIR")}
    os.environ["TETHER_PROJECT_ROOT"] = str(root)
    os.environ["TETHER_SQL_DIR"] = str(REPO / "sql")
    os.environ["TETHER_NATIVE_DATA"] = str(data / "native")
    ports = {"dev": free_port(), "test": free_port(), "redis": free_port()}
    _write_stack_file(root, ports)
    yield root, ports
    stack.down()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)


def test_up_creates_then_is_a_no_op(native_project):
    first = stack.up()
    assert first == {"postgres-dev": "created", "postgres-test": "created", "redis": "started"}
    assert stack.up() == {"postgres-dev": "running", "postgres-test": "running", "redis": "running"}
    results = check_all(dev_endpoints())
    assert [result.service for result in results] == SERVICES and all(result.healthy for result in results)


def test_outputs_match_the_stack_shape_and_are_private(native_project):
    root, ports = native_project
    outputs_file = root / ".runtime" / "native" / "outputs.json"
    assert outputs_file.stat().st_mode & 0o777 == 0o600
    outputs = json.loads(outputs_file.read_text())
    assert outputs["postgresDev"]["port"] == ports["dev"]
    assert outputs["postgresTest"]["database"] == "test_db"
    assert outputs["redis"]["internalHost"] == "redis"
    endpoints = dev_endpoints()
    assert endpoints.dev.address.user == "app" and endpoints.test.address.user == "test_user"


def test_servers_do_not_run_as_root(native_project):
    """As root the servers run as the unprivileged service user; otherwise as the user who ran `up`."""
    from tether.native.sysuser import service_user

    user = service_user()
    expected_uid = user.uid if user is not None else os.geteuid()
    assert expected_uid != 0
    states = stack.status()
    assert [state.service for state in states] == SERVICES
    for state in states:
        assert state.running and state.pid is not None, state
        owner_uid = int(Path(f"/proc/{state.pid}/status").read_text().split("Uid:")[1].split()[0])
        assert owner_uid == expected_uid, state


def test_data_survives_down_and_up(native_project):
    address = dev_endpoints().dev.address
    with psycopg.connect(address.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS keepme (v text)")
        conn.execute("INSERT INTO keepme VALUES ('still here')")
    assert stack.down() == {"postgres-dev": "stopped", "postgres-test": "stopped", "redis": "stopped"}
    assert not any(check.healthy for check in check_all(dev_endpoints(), timeout=1))
    assert stack.up()["postgres-dev"] == "started"
    with psycopg.connect(address.conninfo()) as conn:
        assert ("still here",) in conn.execute("SELECT v FROM keepme").fetchall()


def test_killed_postgres_is_noticed_and_restarted(native_project):
    dev_state = next(s for s in stack.status() if s.service == "postgres-dev")
    os.kill(dev_state.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{dev_state.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not next(s for s in stack.status() if s.service == "postgres-dev").running
    assert stack.up()["postgres-dev"] == "started"
    assert check_all(dev_endpoints())[0].healthy


def test_wrong_redis_password_is_unhealthy(native_project):
    from dataclasses import replace

    from tether.health import check_redis

    address = dev_endpoints().redis.address
    result = check_redis("redis", replace(address, password="wrong-password"))
    assert not result.healthy
    assert "wrong-password" not in result.detail
    assert "wrongpass" in result.detail.lower() or "invalid" in result.detail.lower()


def test_health_task_json_parses_and_reports_every_service(native_project, capsys):
    devstack.health(Context(), json=True)
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] is True
    assert {service["service"] for service in report["services"]} == {"postgres-dev", "postgres-test", "redis"}
    assert all("********" in service["url"] for service in report["services"])


def test_status_task_json(native_project, capsys, monkeypatch):
    # `status` gives each health check 1 s, to stay quick beside a hung server; on a loaded machine a healthy
    # server can take longer to answer a new connection, so here the checks get their own default (3 s).
    real_check_all = devenv.check_all
    monkeypatch.setattr(devenv, "check_all", lambda endpoints, timeout: real_check_all(endpoints))
    devstack.status(Context(), json=True)
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "native"
    assert [service["service"] for service in report["services"]] == SERVICES
    for service in report["services"]:
        assert service["running"] and service["healthy"] and service["data_bytes"] > 0, service


def test_health_task_exits_non_zero_when_a_service_is_down(native_project, capsys):
    stack.down()
    with pytest.raises(Exit) as raised:
        devstack.health(Context(), json=True)
    assert raised.value.code == 1
    assert json.loads(capsys.readouterr().out)["healthy"] is False
    stack.up()


def test_purge_is_refused_in_ci_without_yes(native_project, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Exit) as raised:
        devstack.down(Context(), backend="native", purge=True)
    assert "--yes" in str(raised.value.message)
    states = stack.status()
    assert [state.service for state in states] == SERVICES and all(state.running for state in states)


def test_up_task_migrates_writes_env_files_and_masks_urls(native_project, capsys):
    root = native_project[0]
    devstack.up(Context(), backend="native", json=True)
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] and report["backend"] == "native"
    migrations = len(list((REPO / "sql").glob("*.sql")))
    assert f"schema dev: {migrations} applied" in report["steps"]
    assert f"schema test: {migrations} applied" in report["steps"]
    assert (root / ".env.local").stat().st_mode & 0o777 == 0o600
    devstack.up(Context(), backend="native", json=True)  # warm: nothing left to apply
    assert "schema dev: 0 applied" in json.loads(capsys.readouterr().out)["steps"]
    secrets = json.loads((native_project[0] / ".runtime" / "native" / "secrets.json").read_text())
    printed = json.dumps(report)
    assert not any(password in printed for password in secrets.values())


def test_taken_port_gives_a_clear_error(isolated_project, monkeypatch, tmp_path):
    data = Path(tempfile.mkdtemp(prefix="tether-native-taken-"))
    data.chmod(0o755)
    monkeypatch.setenv("TETHER_NATIVE_DATA", str(data / "native"))
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    _write_stack_file(isolated_project, {"dev": taken, "test": free_port(), "redis": free_port()})
    try:
        with pytest.raises(TetherError) as raised:
            stack.up()
        message = str(raised.value)
        assert f"Port {taken}" in message and "postgres-dev" in message
        assert f"pid {os.getpid()}" in message  # the owner (this test process) is named
    finally:
        blocker.close()
        stack.down()
        shutil.rmtree(data, ignore_errors=True)


def test_data_directory_of_another_major_is_refused_untouched(isolated_project, monkeypatch):
    data = Path(tempfile.mkdtemp(prefix="tether-native-major-"))
    data.chmod(0o755)
    monkeypatch.setenv("TETHER_NATIVE_DATA", str(data / "native"))
    _write_stack_file(isolated_project, {"dev": free_port(), "test": free_port(), "redis": free_port()})
    foreign = data / "native" / "postgres-dev"
    foreign.mkdir(parents=True)
    (foreign / "PG_VERSION").write_text("13\n")
    (foreign / "base").mkdir()
    (foreign / "base" / "precious").write_text("data")
    try:
        with pytest.raises(TetherError, match="created by PostgreSQL 13"):
            stack.up()
        assert (foreign / "base" / "precious").read_text() == "data"
        assert (foreign / "PG_VERSION").read_text() == "13\n"
    finally:
        stack.down()
        shutil.rmtree(data, ignore_errors=True)


def test_invoke_list_is_fast_and_complete():
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=REPO, capture_output=True, text=True,
                            check=True)
    elapsed = time.perf_counter() - started
    for name in ("up", "down", "status", "health", "psql"):
        assert f"  {name} " in result.stdout
    print(f"invoke --list took {elapsed:.3f}s")  # informational; the speed goal is measured, not asserted
    heavy = ('pulumi', 'psycopg', 'rich', 'tether.proxy', 'tether.production', 'tether.migrations', 'tether.sync',
             'benchmarks')
    probe = f"import sys, tasks; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or " \
            f"'.'.join(m.split('.')[:2]) in {heavy!r}))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    # Every command imports tasks.py: domain modules are imported by the task that needs them.
    assert loaded.stdout.strip() == "[]", "tasks.py must not import these at import time"


def test_a_failed_up_leaves_nothing_half_started(isolated_project, monkeypatch):
    """Redis failing to start (here: a redis-server that exits 1) stops the PostgreSQL servers this `up` started."""
    data = Path(tempfile.mkdtemp(prefix="tether-native-failed-"))
    data.chmod(0o755)
    monkeypatch.setenv("TETHER_NATIVE_DATA", str(data / "native"))
    _write_stack_file(isolated_project, {"dev": free_port(), "test": free_port(), "redis": free_port()})
    broken = data / "redis-server"
    broken.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR' >&2\nexit 1\n")
    broken.chmod(0o755)
    working = stack.redis_programs
    monkeypatch.setattr(stack, "redis_programs", lambda: (broken, broken))
    try:
        with pytest.raises(TetherError, match="Redis on port"):
            stack.up()
        states = stack.status()
        assert [state.service for state in states] == SERVICES
        assert not any(state.running for state in states), states
        for service in ("postgres-dev", "postgres-test"):
            # `pg_ctl stop -w` returns once the pid file is gone; the postmaster exits a moment later (longer
            # under load).
            deadline = time.monotonic() + 10
            while processes_in(data / "native" / service, "postgres") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert processes_in(data / "native" / service, "postgres") == []
        monkeypatch.setattr(stack, "redis_programs", working)
        assert stack.up() == {"postgres-dev": "started", "postgres-test": "started", "redis": "started"}
    finally:
        stack.down()
        shutil.rmtree(data, ignore_errors=True)
