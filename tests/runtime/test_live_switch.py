"""Real long-running apps follow `invoke target.production --yes` and `invoke target.local` without a restart.

Three apps run at once, each answering ``SELECT current_setting('port')`` in a loop (quick queries in two
loops, 0.6 s queries back to back in a third): a Python app on the psycopg pool adapter, one on the
SQLAlchemy engine adapter, and a Node app on node-postgres (installed from npm). Production is played by a
second local server, so the port tells the targets apart. The switches are the real `invoke` command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import RunningPostgres
from tether.envsync import sync_env_files

from .conftest import NODE_MODULE, REPO_ROOT, EnvProject

APPS_DIR = Path(__file__).parent / "apps"
FOLLOW_WITHIN_SECONDS = 1.0  # the goal: an app's next query after a switch goes to the new target within a second
# What the test allows: the goal, but 3 s on CI, where the apps (and the servers they connect to) share two loaded
# cores with the rest of the suite and a new connection alone can take longer than a second. Read at import: the
# fixtures delete CI from the test's environment.
FOLLOW_LIMIT_SECONDS = 3.0 if os.environ.get("CI") else FOLLOW_WITHIN_SECONDS
# A request ends within moments of a switch, and then the adapters close the old target's connections; the server
# processes behind them take their time to exit under load.
OLD_TARGET_IDLE_WITHIN_SECONDS = 10
# The file system's clock is coarse (a few ms behind time.time()): a query that started this soon after the
# state file's mtime may have read the state just before the rename.
CLOCK_SLACK_SECONDS = 0.1  # (20 ms sufficed on a quiet machine; under a load of 9 the kernel's clock lags more)


@dataclass
class App:
    name: str
    process: subprocess.Popen[str]
    records: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def start_reading(self) -> None:
        assert self.process.stdout is not None and self.process.stderr is not None
        stdout, stderr = self.process.stdout, self.process.stderr
        threading.Thread(target=lambda: self.records.extend(json.loads(line) for line in stdout), daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(stderr), daemon=True).start()

    def answered(self, port: str, after: float = 0.0) -> bool:
        return any(record["port"] == port and record["end"] > after for record in list(self.records))


@pytest.fixture(scope="session")
def production_server(pg_server_factory: Callable[..., RunningPostgres]) -> RunningPostgres:
    """A second real server playing production (the Cloud SQL proxy's port, in the prod stack config)."""
    return pg_server_factory()


def mirror_role_and_database(server: RunningPostgres, project: EnvProject) -> None:
    """The app role (with the project's password) and the prod database on the production server."""
    db = project.databases
    with psycopg.connect(server.admin.conninfo(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db.role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(db.role),
                                                                         sql.Literal(project.password)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db.prod,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db.prod),
                                                                       sql.Identifier(db.role)))


def invoke(project: EnvProject, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    result = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO_ROOT), *args], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"invoke {' '.join(args)} failed: {result.stdout}{result.stderr}"
    return result


def app_environment(project: EnvProject) -> dict[str, str]:
    # Nothing a test run sets that the guards read: these apps are dev servers, not test processes.
    drop = {"TETHER_PROJECT_ROOT", "DATABASE_URL", "TEST_DATABASE_URL", "NODE_ENV", "CI"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    return {**env, "TETHER_ROOT": str(project.root), "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def running_apps(env_project: EnvProject, node: str, node_app_dir: Path, tmp_path: Path) -> Iterator[list[App]]:
    stop_file = tmp_path / "stop"
    env = app_environment(env_project)
    shutil.copy(APPS_DIR / "pg_app.mjs", node_app_dir / "pg_app.mjs")
    commands = {
        "psycopg pool": [sys.executable, str(APPS_DIR / "pool_app.py"), str(stop_file)],
        "SQLAlchemy engine": [sys.executable, str(APPS_DIR / "engine_app.py"), str(stop_file)],
        "node-postgres": [node, str(node_app_dir / "pg_app.mjs"), str(NODE_MODULE), str(stop_file)],
    }
    sync_env_files()  # `invoke env` before the apps start: an app started first would find no .env (and say so)
    apps = []
    for name, command in commands.items():
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        apps.append(App(name, process))
        apps[-1].start_reading()
    yield apps
    stop_file.touch()
    for app in apps:
        try:
            app.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            app.process.kill()
            app.process.wait()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, apps: list[App]) -> float:
    """Poll ``condition``; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        for app in apps:
            assert app.process.poll() is None, f"{app.name} exited: {''.join(app.stderr)[-3000:]}"
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - started


def connections_from(server: RunningPostgres, pids: list[int]) -> int:
    names = [f"tether-app:{pid}" for pid in pids]
    with psycopg.connect(server.admin.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)",
                           (names,)).fetchone()
    assert row is not None
    return int(row[0])


def check_the_switch(app: App, old_port: str, new_port: str, switched_at: float,
                     completed_at: float) -> dict[str, float]:
    """The app followed: its next query on the new target within a second, none failed, none came back late.

    ``switched_at`` is when the state file was replaced, ``completed_at`` when ``.env`` followed it: readers keep
    their answer until both agree (a loaded machine can put more than the clock slack between the two), so the
    second counts from ``completed_at``, when the switch is complete as the contract defines it.
    """
    records = list(app.records)
    failed = [record for record in records if record["error"]]
    assert failed == [], f"{app.name}: failed queries {failed[:3]}"
    first_new = min(record["end"] for record in records if record["port"] == new_port and record["end"] > switched_at)
    assert first_new - completed_at < FOLLOW_LIMIT_SECONDS, f"{app.name} took {first_new - completed_at:.3f} s"
    started_after = [record for record in records if record["start"] > completed_at + CLOCK_SLACK_SECONDS]
    late = [round(record["start"] - completed_at, 3) for record in started_after if record["port"] != new_port]
    assert started_after and not late, f"{app.name}: queries started {late} s after the switch went to the old target"
    # The long query in flight at the switch finished where it started.
    spanning = [record for record in records if record["kind"] == "long"
                and record["start"] < switched_at - CLOCK_SLACK_SECONDS < record["end"]]
    assert all(record["port"] == old_port for record in spanning), app.name
    return {"follow_seconds": first_new - switched_at, "spanning_long_queries": len(spanning),
            "last_old_answer": max((record["end"] for record in spanning), default=switched_at)}


def test_running_apps_follow_the_switches_without_a_restart(env_project: EnvProject,
                                                            production_server: RunningPostgres,
                                                            pg_server: RunningPostgres,
                                                            running_apps: list[App],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    mirror_role_and_database(production_server, env_project)
    env_project.write_prod_stack(proxy_port=production_server.server.port)
    local_port, production_port = str(pg_server.server.port), str(production_server.server.port)
    apps = running_apps
    pids = [app.process.pid for app in apps]
    state_file = env_project.root / ".runtime" / "db-target.json"

    wait_for(lambda: all(app.answered(local_port) for app in apps), 30, "every app on local", apps)
    measured: dict[str, list[float]] = {app.name: [] for app in apps}
    for command, old, new, old_server in ((["target.production", "--yes"], local_port, production_port, pg_server),
                                          (["target.local"], production_port, local_port, production_server)):
        invoke(env_project, *command)
        switched_at = state_file.stat().st_mtime_ns / 1e9
        completed_at = max(switched_at, (env_project.root / ".env").stat().st_mtime_ns / 1e9)
        wait_for(lambda at=switched_at, port=new: all(app.answered(port, at) for app in apps),  # type: ignore[misc]
                 10, f"every app on port {new}", apps)
        time.sleep(0.8)  # let the long queries that spanned the switch finish
        # And at least one query per app that started after the switch was complete (a loaded machine is slow).
        wait_for(lambda at=completed_at + CLOCK_SLACK_SECONDS: all(  # type: ignore[misc]
            any(record["start"] > at for record in list(app.records)) for app in apps),
            10, "a query started after the switch, in every app", apps)
        results = {app.name: check_the_switch(app, old, new, switched_at, completed_at) for app in apps}
        for name, result in results.items():
            measured[name].append(result["follow_seconds"])
        # Once the requests that started there ended, nothing stays connected to the old target.
        idle_after = wait_for(lambda server=old_server: connections_from(server, pids) == 0,  # type: ignore[misc]
                              OLD_TARGET_IDLE_WITHIN_SECONDS, f"no connection left on port {old}", apps)
        assert connections_from(production_server if new == production_port else pg_server, pids) > 0
        if new == production_port:
            shown = json.loads(invoke(env_project, "target", "--json").stdout)
            on_production = {app["pid"] for app in shown["apps"] if app["target"] == "production"}
            assert set(pids) <= on_production and not [app for app in shown["apps"] if app["target"] == "local"]
        print(f"{command[0]}: followed in {results}; old target idle {idle_after:.3f} s after the last answer")
    with capsys.disabled():
        print("\nseconds from the state file's write to each app's first answer from the new target:",
              {name: [round(value, 3) for value in values] for name, values in measured.items()})
