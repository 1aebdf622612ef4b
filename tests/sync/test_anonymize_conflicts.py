"""Rules that would break the copy are refused before a row moves (real servers): unique indexes (composite,
expression, partial, NULLS NOT DISTINCT), lengths, CHECK and domain constraints, partition bounds, values that
differ only by case, foreign keys, and key-like columns with no foreign key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.sync.anonymization import check_rules
from tether.sync.engine import sync
from tether.sync.plan import Selection

from .conftest import RULES_YAML, database_names, execute


def _check(source, tmp_path: Path, extra: str, rules: str = RULES_YAML):
    path = tmp_path / "rules.yaml"
    path.write_text(rules + extra)
    return check_rules(source, path, Selection())


@pytest.fixture
def source(sync_servers, isolated_project):
    return sync_servers.source_copy()


@pytest.mark.parametrize(("setup", "extra", "problem"), [
    ("CREATE TABLE app.badges (person text, code text, UNIQUE (person, code))",
     "  app.badges:\n    person: fake_name\n", "unique index badges_person_code_key covers person"),
    ("CREATE TABLE app.badges (token text, UNIQUE NULLS NOT DISTINCT (token))",
     "  app.badges:\n    token: null\n", "treats NULLs as equal"),
    ("CREATE TABLE app.badges (email text); CREATE UNIQUE INDEX badges_lower ON app.badges (left(email, 3))",
     "  app.badges:\n    email: fake_email\n", "through an expression"),
    ("CREATE TABLE app.badges (email text); CREATE UNIQUE INDEX badges_lower ON app.badges (lower(email))",
     "  app.badges:\n    email: fake_name\n", "through an expression"),
    ("CREATE TABLE app.badges (code text, nickname text); "
     "CREATE UNIQUE INDEX badges_code ON app.badges (code) WHERE nickname <> ''",
     "  app.badges:\n    nickname: fake_first_name\n", "is partial"),
    ("CREATE TABLE app.badges (email varchar(20) UNIQUE)",
     "  app.badges:\n    email: fake_email\n", "leaves fake_email only 3 hex digits"),
    ("CREATE TABLE app.badges (code varchar(5))",
     "  app.badges:\n    code: {fixed: 'too long'}\n", "the fixed value is 8 characters long"),
    ("ALTER TABLE app.people ADD CONSTRAINT born_after_1970 CHECK (birth_date >= '1970-01-01')",
     "", "would break check constraint born_after_1970"),
    ("CREATE DOMAIN app.company_email AS text CHECK (VALUE LIKE '%@company.test'); "
     "CREATE TABLE app.staff (email app.company_email); INSERT INTO app.staff VALUES ('jo@company.test')",
     "  app.staff:\n    email: fake_email\n", 'violates check constraint "company_email_check"'),
    ("", "  app.events:\n    at: {shift_date: {days: 400}}\n", "partition bounds of app.events_2023"),
    ("CREATE TABLE app.accounts (login text UNIQUE); INSERT INTO app.accounts VALUES ('Bob@x.org'), ('bob@x.org')",
     "  app.accounts:\n    login: fake_email\n", "differ only by case"),
], ids=["composite", "nulls-not-distinct", "expression", "lower-fake-name", "partial", "varchar-short",
        "fixed-too-long", "check", "domain", "partition-key", "case-folding"])
def test_a_rule_that_would_break_the_copy_is_a_problem(source, tmp_path, setup, extra, problem):
    if setup:
        execute(source, setup)
    report = _check(source, tmp_path, extra)
    assert not report.ok and any(problem in text for text in report.problems), report.problems
    assert not any("Bob@" in text or "bob@" in text or "jo@company" in text for text in report.problems)


@pytest.mark.parametrize(("setup", "extra"), [
    ("CREATE TABLE app.badges (person text, code text, UNIQUE (person, code))",
     "  app.badges:\n    person: hash\n"),
    ("CREATE TABLE app.badges (token text UNIQUE)", "  app.badges:\n    token: null\n"),  # NULLs never conflict
    ("CREATE TABLE app.badges (email text); CREATE UNIQUE INDEX badges_lower ON app.badges (lower(email))",
     "  app.badges:\n    email: fake_email\n"),
    ("CREATE TABLE app.badges (code text, email text); "
     "CREATE UNIQUE INDEX badges_code ON app.badges (code) WHERE email IS NOT NULL",
     "  app.badges:\n    email: fake_email\n"),
    ("CREATE TABLE app.accounts (login text UNIQUE); INSERT INTO app.accounts VALUES ('Bob@x.org'), ('bob@x.org')",
     "  app.accounts:\n    login: {fake_email: {case_sensitive: true}}\n"),
], ids=["composite-hash", "nullable-null", "lower-fake-email", "null-test-predicate", "case-sensitive"])
def test_rules_that_keep_constraints_pass(source, tmp_path, setup, extra):
    execute(source, setup)
    report = _check(source, tmp_path, extra)
    assert report.ok, report.lines()


def test_a_refused_rule_stops_the_sync_before_anything_is_written(sync_servers, sync_options, source, tmp_path):
    execute(source, "ALTER TABLE app.people ADD CONSTRAINT born_after_1970 CHECK (birth_date >= '1970-01-01')")
    dest = sync_servers.dest()
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML)
    with pytest.raises(ConfigError) as caught:
        sync(source, dest, sync_options(rules_path=path))
    assert "born_after_1970" in caught.value.message and "before copying anything" in caught.value.message
    assert database_names(sync_servers.dest_admin, dest.database) == []


def test_a_rule_on_a_key_reaches_every_reference(sync_servers, sync_options, source, tmp_path):
    """people.id (bigint) is pseudonymized: teams.lead_id and people.manager_id follow it through their foreign
    keys, events.person_id (no foreign key) through same_as; every reference still finds its row."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML + "    id: hash\n  app.events:\n    person_id: {same_as: app.people.id}\n")
    dest = sync_servers.dest()
    summary = sync(source, dest, sync_options(rules_path=path))
    applied = {(rule["table"], rule["column"]): rule["rule"] for rule in summary.rules_applied}
    assert "follows foreign key teams_lead_fkey" in applied[("app.teams", "lead_id")]
    assert "follows foreign key people_manager_id_fkey" in applied[("app.people", "manager_id")]
    assert "same as app.people.id" in applied[("app.events_2023", "person_id")]
    real_ids = {row[0] for row in execute(source, "SELECT id FROM app.people")}
    ids = {row[0] for row in execute(dest, "SELECT id FROM app.people")}
    assert len(ids) == 300 and not ids & real_ids and all(value > 0 for value in ids)
    joins = ("SELECT count(*) FROM app.teams t JOIN app.people p ON p.id = t.lead_id",
             "SELECT count(*) FROM app.people c JOIN app.people m ON m.id = c.manager_id",
             "SELECT count(*) FROM app.events e JOIN app.people p ON p.id = e.person_id")
    for query in joins:
        assert execute(dest, query) == execute(source, query), query


def test_references_must_not_disagree_with_their_key(source, tmp_path):
    with pytest.raises(ConfigError) as caught:
        _check(source, tmp_path, "    id: hash\n  app.teams:\n    lead_id: {random_int: [1, 9]}\n")
    assert "remove this column's rule, it follows its key" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        _check(source, tmp_path, "    id: {random_int: [1, 1000000]}\n")
    assert "must give the same pseudonym" in caught.value.message
    with pytest.raises(ConfigError) as caught:  # a reference to a kept key must stay as it is
        _check(source, tmp_path, "  app.teams:\n    lead_id: {random_int: [1, 5]}\n")
    assert "which is kept as it is" in caught.value.message


def test_a_key_like_column_without_foreign_key_is_listed(source, tmp_path):
    kept = _check(source, tmp_path, "")
    assert any("app.events.person_id looks like a key of app.people.id" in note for note in kept.notes)
    report = _check(source, tmp_path, "    id: hash\n")
    (finding,) = [finding for finding in report.findings if finding.column == "person_id"]
    assert finding.table == "app.events" and finding.suggestion == "{same_as: app.people.id}"
    assert "named like a key of app.people.id, which is anonymized (hash)" in finding.reasons[0]


def test_chains_of_same_as_and_foreign_keys_resolve(source, tmp_path):
    """badges.owner holds stickers.owner's values, which hold people.id's; badge_links references badges."""
    execute(source, "CREATE TABLE app.stickers (owner bigint UNIQUE); CREATE TABLE app.badges (owner bigint UNIQUE); "
                    "CREATE TABLE app.badge_links (owner bigint REFERENCES app.badges (owner))")
    report = _check(source, tmp_path, "    id: hash\n  app.badges:\n    owner: {same_as: app.stickers.owner}\n"
                                      "  app.stickers:\n    owner: {same_as: app.people.id}\n"
                                      "  app.badge_links:\n    owner: hash\n"
                                      "  app.events:\n    person_id: {same_as: app.people.id}\n")
    assert report.ok, (report.problems, report.findings)
