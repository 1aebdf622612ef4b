"""The leak scan after the copy (real servers): a rule that lets values through fails the sync before the swap,
full or incremental, and says so without printing a value."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.sync import expressions
from tether.sync.engine import sync
from tether.sync.leaks import ColumnResult

from .conftest import RULES_YAML, database_names, execute

PHONE_RULES = RULES_YAML.replace("    phone: {mask: {keep_first: 2, keep_last: 2}}\n", "    phone: fake_phone\n") + \
    "  app.log_lines:\n    line: {scrub: [email, phone]}\n"


@pytest.fixture
def phone_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(PHONE_RULES)
    return path


@pytest.fixture
def source(sync_servers):
    source = sync_servers.source_copy()
    execute(source, "UPDATE app.log_lines SET line = line || ' call +33 6 12 34 56 78'")
    execute(source, "UPDATE app.people SET phone = '' WHERE id % 4 = 0")  # kept empty by fake_phone: no leak
    return source


def test_a_clean_copy_passes_and_reports_its_scan(sync_servers, sync_options, source, phone_rules):
    summary = sync(source, sync_servers.dest(), sync_options(rules_path=phone_rules))
    scan = summary.leak_scan
    assert scan["leaks"] == [] and scan["rows_sampled"] >= 100
    # log_lines has no unique key: its scrubbed text is still checked (for what scrubbing removes).
    assert "app.log_lines.line: no unique key" not in " ".join(scan["not_checked"])
    assert any("leak scan:" in line and "0 leaks" in line for line in summary.lines())


@pytest.mark.parametrize(("kind", "column"), [("fake_phone", "app.people.phone"), ("scrub", "app.log_lines.line"),
                                              ("fake_email", "app.people.email")])
def test_a_rule_that_lets_values_through_fails_before_the_swap(sync_servers, sync_options, source, phone_rules,
                                                             monkeypatch, kind, column):
    monkeypatch.setitem(expressions._BUILDERS, kind, expressions._keep)  # a bug: the rule returns the value
    dest = sync_servers.dest()
    with pytest.raises(TetherError) as caught:
        sync(source, dest, sync_options(rules_path=phone_rules))
    message = caught.value.message
    assert "leak scan" in message and column in message and "not replaced" in message
    assert "+1555" not in message and "@Example.org" not in message and "12 34" not in message
    assert database_names(sync_servers.dest_admin, dest.database) == []


def test_an_incremental_sync_is_scanned_too(sync_servers, sync_options, source, phone_rules, monkeypatch):
    dest = sync_servers.dest()
    sync(source, dest, sync_options(rules_path=phone_rules))
    phones = execute(dest, "SELECT id, phone FROM app.people ORDER BY id")
    execute(source, "UPDATE app.people SET bio = 'changed' WHERE id = 1")
    monkeypatch.setitem(expressions._BUILDERS, "fake_phone", expressions._keep)
    with pytest.raises(TetherError, match="leak scan"):
        sync(source, dest, sync_options(rules_path=phone_rules))
    assert execute(dest, "SELECT id, phone FROM app.people ORDER BY id") == phones  # the last good copy stays


@pytest.mark.parametrize(("expected", "unchanged", "leaked"), [
    (0.0, 0, False), (0.0, 1, True), (0.5, 2, False), (0.5, 5, True), (10.0, 19, False), (10.0, 30, True),
])
def test_chance_explains_a_few_unchanged_values_of_random_rules(expected, unchanged, leaked):
    assert ColumnResult("t", "c", "r", 100, unchanged, expected).leaked is leaked
