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

    def fake_reset(dest, *, yes=False, spare=True, **_):
        seen.update(reset=dest, yes=yes, spare=spare)
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


def run(*argv: str, exit: bool = False) -> None:
    namespace = Collection()
    namespace.add_task(sync_tasks.sync_prod)
    db = Collection("db")
    db.add_task(sync_tasks.reset)
    namespace.add_collection(db)
    # Declared, as tasks.py does, so that INVOKE_SYNC_SPARE and INVOKE_SYNC_SNAPSHOT are read.
    namespace.configure({"sync": {"spare": None, "snapshot": None}})
    Program(namespace=namespace).run(["invoke", *argv], exit=exit)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--dest", LOCAL, "--yes"],
     {"selection": Selection(), "anonymize": True, "yes": True, "full": False, "analyze": False, "snapshot": True}),
    (["--dest", LOCAL, "--tables", "app.*", "--tables", "audit.a,audit.b", "--exclude", "*.tmp_*",
      "--exclude-data", "app.sessions"],
     {"selection": Selection(("app.*", "audit.a", "audit.b"), ("*.tmp_*",), ("app.sessions",)), "yes": False}),
    (["--dest", LOCAL, "--no-anonymize", "--full", "--analyze", "--jobs", "3", "--allow-remote-dest"],
     {"anonymize": False, "full": True, "analyze": True, "jobs": 3, "allow_remote_dest": True}),
    (["--dest", LOCAL, "--rules", "my/rules.yaml"], {"rules_path": Path("my/rules.yaml")}),
    (["--dest", LOCAL, "--no-snapshot"], {"snapshot": False, "spare": True}),
], ids=["defaults", "patterns", "switches", "rules", "no-snapshot"])
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


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("false", False), ("Off", False), ("yes", True)],
                         ids=["default", "false", "off", "yes"])
def test_spare_setting_reaches_sync_and_reset(calls, monkeypatch, value, expected):
    if value is not None:
        monkeypatch.setenv("INVOKE_SYNC_SPARE", value)
    run("sync-prod", "--dest", LOCAL, "--yes")
    run("db.reset", "--db", LOCAL, "--yes")
    assert calls["options"].spare is expected and calls["spare"] is expected


def test_a_spare_setting_that_is_not_yes_or_no_is_one_clear_error(calls, monkeypatch, capsys):
    monkeypatch.setenv("INVOKE_SYNC_SPARE", "sometimes")
    with pytest.raises(SystemExit) as exit_:
        run("db.reset", "--db", LOCAL, "--yes", exit=True)
    assert exit_.value.code != 0
    error = capsys.readouterr().err
    assert "sync.spare must be true or false, not 'sometimes'" in error and "Traceback" not in error
    assert "reset" not in calls


@pytest.mark.parametrize(("value", "flag", "expected"), [
    (None, False, True), ("false", False, False), ("no", False, False), ("true", True, False)],
    ids=["default", "false", "no", "flag-wins"])
def test_snapshot_setting_reaches_sync(calls, monkeypatch, value, flag, expected):
    if value is not None:
        monkeypatch.setenv("INVOKE_SYNC_SNAPSHOT", value)
    run("sync-prod", "--dest", LOCAL, "--yes", *(["--no-snapshot"] if flag else []))
    assert calls["options"].snapshot is expected
