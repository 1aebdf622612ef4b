"""Under CI=true nothing prompts: every task that can ask refuses without --yes, names the flag, and touches nothing.

The list of tasks with a --yes flag is read from tasks.py, so a new prompting task without a case here fails.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit


def _load_root_tasks():
    # `tasks` alone would resolve to tests/tasks/; load the repository's tasks.py by path.
    import importlib.util

    spec = importlib.util.spec_from_file_location("repo_tasks", Path(__file__).resolve().parents[1] / "tasks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


root_tasks = _load_root_tasks()
REMOTE_URL = "postgresql://app:s3cret-pw@10.255.255.1:5432/app"  # never contacted: refusals come first
# Production as .env.production names it: loopback, but the Cloud SQL proxy's port.
PROXIED_PROD_URL = "postgresql://api_user:s3cret-pw@127.0.0.1:5434/app?sslmode=disable"


def _tasks_with_yes() -> set[str]:
    found = set()

    def walk(collection, prefix=""):
        for name, task in collection.tasks.items():
            if "yes" in inspect.signature(task.body).parameters:
                found.add(prefix + name)
        for name, sub in collection.collections.items():
            walk(sub, f"{prefix}{name}.")

    walk(root_tasks.ns)
    return found


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if anything tries to connect beyond loopback."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else ""
        if host and not str(host).startswith("127.") and host not in {"::1", "localhost"}:
            raise AssertionError(f"tried to connect to {address} before refusing")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


def _refusal_cases(root: Path, dump_file: Path | None = None) -> dict[str, Callable[[], object]]:
    from tether.tasks import devstack, dumps, env, schema, stacks

    cases: dict[str, Callable[[], object]] = {
        "down": lambda: devstack.down(Context(), backend="native", purge=True),
        "db.init": lambda: schema.init(Context(), db=REMOTE_URL),
        "deploy": lambda: stacks.deploy(Context(), stack="prod"),
        "target.production": lambda: env.use_production(Context()),
        "db.restore": lambda: dumps.restore(Context(), file=str(dump_file), db=REMOTE_URL),
    }
    try:
        from tether.tasks import sync

        cases["sync-prod"] = lambda: sync.sync_prod(Context(), source="postgresql://ro:pw@127.0.0.1:1/src",
                                                    dest=REMOTE_URL)
        cases["db.reset"] = lambda: sync.reset(Context(), db=REMOTE_URL)
    except ImportError:
        pass
    return cases


def test_every_prompting_task_has_a_refusal_case(isolated_project):
    assert _tasks_with_yes() <= set(_refusal_cases(isolated_project))


@pytest.mark.parametrize("task_name", sorted(_tasks_with_yes()))
def test_task_refuses_in_ci_without_yes(task_name, isolated_project, monkeypatch, pg_db, no_network):
    from tether.dumps import dump_database

    # A real, verified dump, so db.restore gets as far as its confirmation.
    dump_file = dump_database(pg_db, "refusal").path if task_name == "db.restore" else None
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("TETHER_PROD_PASSWORD", "prod-secret-value")
    monkeypatch.setenv("TETHER_PROD_INSTANCE", "proj:europe-west1:inst")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no Pulumi CLI either way
    before = sorted(p.relative_to(isolated_project) for p in isolated_project.rglob("*"))
    with pytest.raises(Exit) as raised:
        _refusal_cases(isolated_project, dump_file)[task_name]()
    message = str(raised.value.message or "")
    assert raised.value.code == 3, message  # Refused
    assert "--yes" in message, message
    assert "s3cret-pw" not in message and "prod-secret-value" not in message
    after = sorted(p.relative_to(isolated_project) for p in isolated_project.rglob("*")
                   if ".runtime" not in p.parts)
    assert [p for p in after if p not in before] == []


@pytest.mark.parametrize("url", [REMOTE_URL, PROXIED_PROD_URL], ids=["remote-host", "proxied-prod"])
def test_writes_to_non_local_urls_are_refused(url, isolated_project, monkeypatch, pg_db, no_network):
    from tether.dumps import dump_database
    from tether.tasks import dumps, schema

    dump_file = dump_database(pg_db, "refusal").path
    monkeypatch.setenv("CI", "true")
    for call in (lambda: schema.init(Context(), db=url), lambda: dumps.restore(Context(), file=str(dump_file), db=url)):
        with pytest.raises(Exit) as raised:
            call()
        assert raised.value.code == 3 and "--yes" in str(raised.value.message)


@pytest.mark.parametrize(("url", "local"), [
    ("postgresql://u@127.0.0.1:5435/app_dev", True),
    ("postgresql://u@localhost:5433/test_db", True),
    ("postgresql://u@/db?host=/var/run/postgresql", True),
    ("postgresql://u@127.0.0.1:5434/app", False),  # the prod stack's proxyPort
    ("postgresql://u@10.1.2.3:5432/app", False),
    ("postgresql://u@db.example.com:5432/app", False),
], ids=["dev", "localhost", "socket", "proxy-port", "private-ip", "hostname"])
def test_locality_decision(url, local, isolated_project):
    from tether.conninfo import parse_database_url

    assert parse_database_url(url).is_local is local


@pytest.mark.parametrize("task_name", ["sync-prod", "db.reset"])
def test_sync_tasks_ask_before_replacing_a_local_database(task_name, isolated_project, monkeypatch, pg_server,
                                                          tmp_path, no_network):
    """The confirmation itself, on a LOCAL destination: no "not a local server" refusal can answer for it.

    A confirmation that always said yes would replace the database here; the test sees the change.
    """
    import psycopg

    from tether.sync.engine import SyncOptions, sync
    from tether.tasks import sync as sync_tasks

    source = pg_server.create_database()
    dest = pg_server.admin.with_database(f"dev_{source.database}")
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, note text); INSERT INTO items VALUES (1), (2)")
    rules = tmp_path / "rules.yaml"
    rules.write_text("tables:\n  public.items:\n    note: null\n")  # rules that anonymize nothing are refused
    if task_name == "db.reset":  # a real sync first, so that the reset gets as far as its question
        sync(source, dest, SyncOptions(yes=True, rules_path=rules, drop_retired="now", spare=False))
    else:
        pg_server.create_database(dest.database)
        with psycopg.connect(dest.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, note text)")
    with psycopg.connect(dest.conninfo(), autocommit=True) as conn:
        conn.execute("INSERT INTO items VALUES (42)")  # local work the command would throw away
    monkeypatch.setenv("CI", "true")
    calls = {
        "sync-prod": lambda: sync_tasks.sync_prod(Context(), source=source.url(), dest=dest.url(), rules=str(rules)),
        "db.reset": lambda: sync_tasks.reset(Context(), db=dest.url()),
    }
    with pytest.raises(Exit) as raised:
        calls[task_name]()
    message = str(raised.value.message or "")
    assert raised.value.code == 3, message
    question = "Replace the local database" if task_name == "sync-prod" else "Reset the local database"
    assert question in message and "CI=true is set" in message and "--yes" in message, message
    assert "not a local server" not in message
    with psycopg.connect(dest.conninfo()) as conn:
        assert conn.execute("SELECT id FROM items ORDER BY id").fetchall() == (
            [(42,)] if task_name == "sync-prod" else [(1,), (2,), (42,)])
    with psycopg.connect(pg_server.admin.conninfo()) as conn:
        scratch = conn.execute("SELECT count(*) FROM pg_database WHERE starts_with(datname, %s)",
                               (dest.database + "__tether_",)).fetchone()
    assert scratch == ((1,) if task_name == "db.reset" else (0,))  # only the snapshot of the first sync
