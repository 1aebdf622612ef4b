"""`invoke target`: show, switch after SELECT 1, confirmation and CI refusal, lock, audit, crash safety."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import psycopg
import pytest
from invoke import Collection, Context, MockContext, Program
from invoke.exceptions import Exit

from tether import target
from tether.conninfo import parse_database_url
from tether.envsync import sync_env_files
from tether.errors import ConfigError, TetherError
from tether.tasks import env as env_tasks

from .conftest import EnvProject, closed_port, parse_dotenv

# Every URL metacharacter and a single quote (both quote kinds at once cannot be written for every reader).
NASTY_PROD_PASSWORD = "pr0d:@/%#?& 'x"


def env_values(project: EnvProject) -> dict[str, str]:
    return parse_dotenv((project.root / ".env").read_text())


def test_the_default_target_is_local(env_project: EnvProject, capsys: pytest.CaptureFixture[str]) -> None:
    assert target.read_target() == target.TargetState("local")
    env_tasks.show_target(Context())
    assert "not written yet" in capsys.readouterr().out
    sync_env_files()
    env_tasks.show_target(Context(), json=True)
    shown = json.loads(capsys.readouterr().out)
    assert (shown["target"], shown["env_target"], shown["in_sync"]) == ("local", "local", True)
    assert env_project.password not in json.dumps(shown)
    assert "********" in shown["database_url"]


def test_switch_to_production_and_back(env_project: EnvProject, capsys: pytest.CaptureFixture[str]) -> None:
    db = env_project.databases
    env_project.use_password(NASTY_PROD_PASSWORD)
    sync_env_files()
    env_tasks.use_production(Context(), yes=True, json=True)
    switched = json.loads(capsys.readouterr().out)
    assert (switched["from"], switched["to"]) == ("local", "production")
    assert NASTY_PROD_PASSWORD not in json.dumps(switched)

    values = env_values(env_project)
    assert values["TETHER_DB_TARGET"] == "production"
    assert values["DATABASE_URL"] == values["DATABASE_URL_PRODUCTION"]
    assert parse_database_url(values["DATABASE_URL_ASYNCPG"]).database == db.prod
    assert values["PGDATABASE"] == db.prod and values["PGPASSWORD"] == NASTY_PROD_PASSWORD
    with psycopg.connect(values["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (db.prod,)

    state = json.loads(target.target_file().read_text())
    assert state["target"] == "production" and state["user"] and state["when"].endswith("+00:00")
    sync_env_files(check=True)  # .env written by the switch is what `invoke env` would write

    env_tasks.use_local(Context())
    assert "production → local" in capsys.readouterr().out
    assert env_values(env_project)["PGDATABASE"] == db.dev
    audit = target.read_audit()
    assert [(line["from"], line["to"]) for line in audit] == [("local", "production"), ("production", "local")]
    assert all(line["user"] and line["time"] for line in audit)
    assert oct(target.audit_file().stat().st_mode & 0o777) == "0o600"


def test_a_dead_target_keeps_the_old_one(env_project: EnvProject) -> None:
    env_project.use_password(NASTY_PROD_PASSWORD)
    env_project.write_prod_stack(proxy_port=closed_port())  # nothing listens there: the proxy is not running
    sync_env_files()
    before = (env_project.root / ".env").read_bytes()
    with pytest.raises(Exit) as failed:
        env_tasks.use_production(MockContext(), yes=True)
    message = str(failed.value.message)
    assert "stays local" in message and "invoke proxy.start" in message
    assert NASTY_PROD_PASSWORD not in message and "********" in message
    assert target.read_target().target == "local"
    assert not target.target_file().exists() and target.read_audit() == []
    assert (env_project.root / ".env").read_bytes() == before


def test_a_wrong_password_keeps_the_old_one(env_project: EnvProject) -> None:
    sync_env_files()
    env_project.monkeypatch.setenv("TETHER_PROD_PASSWORD", "not-the-password")
    with pytest.raises(target.TargetUnreachable, match="password authentication failed") as failed:
        target.switch_target("production", yes=True)
    assert "not-the-password" not in failed.value.message
    assert target.read_target().target == "local"


def test_production_is_refused_in_ci_without_yes(env_project: EnvProject) -> None:
    sync_env_files()
    before = (env_project.root / ".env").read_bytes()
    env_project.monkeypatch.setenv("CI", "true")
    with pytest.raises(Exit) as refused:
        env_tasks.use_production(Context())
    assert refused.value.code == 3 and "--yes" in str(refused.value.message)
    assert target.read_target().target == "local" and target.read_audit() == []
    assert (env_project.root / ".env").read_bytes() == before
    env_tasks.use_production(Context(), yes=True)
    assert target.read_target().target == "production"


def test_local_needs_no_confirmation_even_in_ci(env_project: EnvProject) -> None:
    env_project.monkeypatch.setenv("CI", "true")
    env_tasks.use_local(Context())
    assert [(line["from"], line["to"]) for line in target.read_audit()] == [("local", "local")]


def run_concurrently(calls: Sequence[Callable[[], object]]) -> list[BaseException]:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as error:  # collected and asserted on below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def assert_serialized(project: EnvProject, switches: int) -> None:
    audit = target.read_audit()
    assert len(audit) == switches
    # Serialized switches form a chain: each one starts where the previous one ended.
    for earlier, later in itertools.pairwise(audit):
        assert later["from"] == earlier["to"]
    final = target.read_target()
    assert final.target == audit[-1]["to"]
    assert env_values(project)["TETHER_DB_TARGET"] == final.target
    sync_env_files(check=True)
    assert not list(target.runtime_dir().glob(".*.tmp")) and not list(project.root.glob(".*.tmp"))


def test_concurrent_switches_in_threads_are_serialized(env_project: EnvProject) -> None:
    sync_env_files()
    calls = [lambda to=to: target.switch_target(to, yes=True) for to in ["production", "local"] * 3]
    assert run_concurrently(calls) == []
    assert_serialized(env_project, 6)


def test_concurrent_switches_in_processes_are_serialized(env_project: EnvProject) -> None:
    sync_env_files()
    gate = env_project.root / "gate"
    gate.mkdir()
    # Each child imports everything, says it is ready, then waits for `go`: the switches start together.
    script = ("import os, pathlib, sys, time\n"
              "from tether.target import switch_target\n"
              "gate = pathlib.Path(sys.argv[2])\n"
              "(gate / f'ready-{os.getpid()}').touch()\n"
              "while not (gate / 'go').exists():\n"
              "    time.sleep(0.002)\n"
              "switch_target(sys.argv[1], yes=True)\n")
    processes = [subprocess.Popen([sys.executable, "-c", script, to, str(gate)], env=dict(os.environ))
                 for to in ("production", "local") * 2]
    while len(list(gate.glob("ready-*"))) < len(processes):
        assert all(process.poll() is None for process in processes), "a child died before the start"
        time.sleep(0.01)
    (gate / "go").touch()
    assert [process.wait(timeout=60) for process in processes] == [0] * 4
    assert_serialized(env_project, 4)


def test_a_crash_between_state_and_env_leaves_valid_files(env_project: EnvProject,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    sync_env_files()
    before = (env_project.root / ".env").read_bytes()
    # The child dies (no cleanup, no finally) right after writing the state file, before rewriting .env.
    script = ("import os, tether.target as t\n"
              "t.write_env_file = lambda *args, **kwargs: os._exit(9)\n"
              "t.switch_target('production', yes=True)\n")
    assert subprocess.run([sys.executable, "-c", script], env=dict(os.environ), check=False).returncode == 9
    assert target.read_target().target == "production"
    assert (env_project.root / ".env").read_bytes() == before
    view = target.describe_target()
    assert (view.env_target, view.in_sync) == ("local", False)
    env_tasks.show_target(Context())
    assert "run `invoke env` to rewrite it" in capsys.readouterr().out
    with target.target_lock(timeout=1):  # the dead process's lock went with it
        pass
    assert {item.name for item in sync_env_files(check=True).problems} == {".env"}
    sync_env_files()
    assert target.describe_target().in_sync


def test_a_held_lock_times_out_with_a_clear_error(env_project: EnvProject) -> None:
    with target.target_lock(), pytest.raises(TetherError, match=r"db-target\.lock"), target.target_lock(timeout=0.2):
        pass


def test_a_damaged_state_file_is_reported_and_a_switch_repairs_it(env_project: EnvProject) -> None:
    target.target_file().write_text("{half")
    with pytest.raises(ConfigError, match=r"invoke target\.local"):
        target.read_target()
    result = target.switch_target("local")
    assert result.previous.target == "unknown" and target.read_target().target == "local"


def test_unknown_targets_are_refused(env_project: EnvProject) -> None:
    with pytest.raises(ConfigError, match="use local or production"):
        target.switch_target("staging")


def test_the_proposed_collection_parses_like_the_readme_says(env_project: EnvProject,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    targets = Collection("target")
    targets.add_task(env_tasks.show_target, name="show", default=True)
    targets.add_task(env_tasks.use_local, name="local")
    targets.add_task(env_tasks.use_production, name="production")
    namespace = Collection(env_tasks.env, targets)
    program = Program(namespace=namespace, version="test")
    program.run(["invoke", "env", "--drivers", "asyncpg"], exit=False)
    program.run(["invoke", "target.production", "--yes"], exit=False)
    assert "local → production" in capsys.readouterr().out
    program.run(["invoke", "target", "--json"], exit=False)
    shown = json.loads(capsys.readouterr().out)
    assert (shown["target"], shown["in_sync"]) == ("production", True)
    assert "DATABASE_URL_PSYCOPG" not in (env_project.root / ".env.local").read_text()


def test_up_while_on_production_keeps_the_production_password(env_project: EnvProject) -> None:
    """`./dev up` rewrites the env files from a shell without TETHER_PROD_PASSWORD: .env must keep it."""
    env_project.use_password(NASTY_PROD_PASSWORD)
    sync_env_files()
    env_tasks.use_production(Context(), yes=True)
    env_project.monkeypatch.delenv("TETHER_PROD_PASSWORD")
    report = sync_env_files()  # what `invoke up` does last
    values = env_values(env_project)
    assert values["TETHER_DB_TARGET"] == "production" and values["PGPASSWORD"] == NASTY_PROD_PASSWORD
    assert parse_database_url(values["DATABASE_URL"]).password == NASTY_PROD_PASSWORD
    with psycopg.connect(values["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    production = parse_dotenv((env_project.root / ".env.production").read_text())
    assert production["PGPASSWORD"] == NASTY_PROD_PASSWORD
    assert any("was kept" in note for note in report.notes)
    assert all(item.status == "unchanged" for item in report.files)  # nothing rewritten, nothing lost
