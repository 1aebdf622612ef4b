"""`invoke target` lists the app processes connected through the helpers, per target, from pg_stat_activity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke import Context

from tether.envsync import sync_env_files
from tether.tasks import env as env_tasks

from .conftest import EnvProject
from .test_live_switch import APPS_DIR, app_environment

PROD_PASSWORD = "pr0d:@/%#?& x\""  # hostile, in a form every .env reader reads alike


@pytest.fixture
def idle_app(env_project: EnvProject, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    sync_env_files()
    stop_file = tmp_path / "stop"
    process = subprocess.Popen([sys.executable, str(APPS_DIR / "idle_app.py"), str(stop_file)],
                               env=app_environment(env_project), stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield process
    stop_file.touch()
    process.wait(timeout=15)


def test_connected_apps_are_listed_with_their_target(env_project: EnvProject, idle_app: subprocess.Popen[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    env_tasks.show_target(Context(), json=True)
    shown = json.loads(capsys.readouterr().out)
    mine = [app for app in shown["apps"] if app["pid"] == idle_app.pid]
    assert [(app["target"], app["connections"], app["busy"]) for app in mine] == [("local", 1, 0)]
    assert "idle_app.py" in mine[0]["command"]
    assert shown["unreachable"] == {}

    env_tasks.show_target(Context())
    text = capsys.readouterr().out
    line = next(line for line in text.splitlines() if f"pid {idle_app.pid}" in line)
    assert line.split()[0] == "local" and "1 connection" in line and "idle_app.py" in line


def test_an_unreachable_target_is_named_without_its_password(env_project: EnvProject,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    env_project.use_password(PROD_PASSWORD)
    sync_env_files()
    env_project.monkeypatch.setenv("TETHER_PROD_PASSWORD", "wrong-password-1234")
    env_project.write_prod_stack()
    sync_env_files()  # .env's production URL now carries a password the server refuses
    env_tasks.show_target(Context())
    text = capsys.readouterr().out
    assert "production: not asked (" in text and "password authentication failed" in text
    assert "wrong-password-1234" not in text and PROD_PASSWORD not in text
    env_tasks.show_target(Context(), json=True)
    shown = json.loads(capsys.readouterr().out)
    assert set(shown["unreachable"]) == {"production"}
    assert "wrong-password-1234" not in json.dumps(shown)


def test_nothing_is_asked_before_env_is_written(env_project: EnvProject,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    env_tasks.show_target(Context(), json=True)
    shown = json.loads(capsys.readouterr().out)
    assert (shown["apps"], shown["unreachable"]) == ([], {})
    assert not (env_project.root / ".env").exists()
    assert os.environ.get("TETHER_PROJECT_ROOT") == str(env_project.root)
