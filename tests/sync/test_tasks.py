"""The sync tasks' wiring: flags become SyncOptions, the default source is production as the read-only user."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from invoke import Collection, Program

from tether.conninfo import parse_database_url
from tether.sync import engine, reset
from tether.sync.plan import Selection
from tether.sync.summary import ResetSummary, SyncSummary
from tether.tasks import sync as sync_tasks

LOCAL = "postgresql://me:pw@127.0.0.1:5432/dev"
SOURCE = "postgresql://reader:pw@prod.example.com:5432/shop"


@pytest.fixture
def calls(monkeypatch):
    seen: dict[str, object] = {}

    def fake_sync(source, dest, options, progress=None):
        seen.update(source=source, dest=dest, options=options)
        return SyncSummary(mode="full", source=source.masked_url(), dest=dest.masked_url(),
                           snapshot_database="dev__tether_snapshot", anonymized=options.anonymize)

    def fake_reset(dest, *, yes=False, **_):
        seen.update(reset=dest, yes=yes)
        return ResetSummary(dest=dest.masked_url(), snapshot_database="x", synced_at="then")

    @contextmanager
    def fake_open(spec, *, readonly=False):
        seen.update(spec=spec, readonly=readonly)
        yield parse_database_url(SOURCE)

    monkeypatch.setattr(engine, "sync", fake_sync)
    monkeypatch.setattr(reset, "reset", fake_reset)
    monkeypatch.setattr("tether.endpoints.open_database", fake_open)
    monkeypatch.setattr("tether.endpoints.dev_endpoints", lambda: pytest.fail("dev endpoints not expected"))
    return seen


def run(*argv: str) -> None:
    namespace = Collection()
    namespace.add_task(sync_tasks.sync_prod)
    db = Collection("db")
    db.add_task(sync_tasks.reset)
    namespace.add_collection(db)
    Program(namespace=namespace).run(["invoke", *argv], exit=False)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--dest", LOCAL, "--yes"],
     {"selection": Selection(), "anonymize": True, "yes": True, "full": False, "analyze": False}),
    (["--dest", LOCAL, "--tables", "app.*", "--tables", "audit.a,audit.b", "--exclude", "*.tmp_*",
      "--exclude-data", "app.sessions"],
     {"selection": Selection(("app.*", "audit.a", "audit.b"), ("*.tmp_*",), ("app.sessions",)), "yes": False}),
    (["--dest", LOCAL, "--no-anonymize", "--full", "--analyze", "--jobs", "3", "--allow-remote-dest"],
     {"anonymize": False, "full": True, "analyze": True, "jobs": 3, "allow_remote_dest": True}),
    (["--dest", LOCAL, "--rules", "my/rules.yaml"], {"rules_path": Path("my/rules.yaml")}),
], ids=["defaults", "patterns", "switches", "rules"])
def test_flags_become_options(calls, argv, expected):
    run("sync-prod", *argv)
    options = calls["options"]
    for key, value in expected.items():
        assert getattr(options, key) == value, key
    assert options.jobs >= 1
    assert calls["dest"] == parse_database_url(LOCAL)


def test_default_source_is_production_read_only(calls):
    run("sync-prod", "--dest", LOCAL, "--yes")
    assert calls["spec"] == "prod" and calls["readonly"] is True
    assert calls["source"] == parse_database_url(SOURCE)


def test_source_url_is_used_as_given(calls):
    run("sync-prod", "--source", SOURCE, "--dest", LOCAL)
    assert calls["spec"] == SOURCE


def test_reset_task(calls, capsys):
    run("db.reset", "--db", LOCAL, "--yes")
    assert calls["reset"] == parse_database_url(LOCAL) and calls["yes"] is True
    assert "Reset" in capsys.readouterr().out
