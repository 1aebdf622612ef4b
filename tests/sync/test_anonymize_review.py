"""Personal data never arrives by accident: empty rules, unreviewed personal columns, --check-rules (real servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit

from tether.errors import ConfigError, Refused
from tether.migrations import init_database
from tether.secrets import generate_password
from tether.sync.anonymization import check_rules
from tether.sync.engine import sync
from tether.sync.plan import Selection
from tether.tasks import sync as sync_tasks

from .conftest import RULES_YAML, database_names, execute

REPO = Path(__file__).resolve().parents[2]


def _rules(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _untouched(sync_servers, dest) -> None:
    assert database_names(sync_servers.dest_admin, dest.database) == [dest.database]
    assert execute(dest, "SELECT x FROM mine") == [(1,)]


@pytest.fixture
def dest_with_data(sync_servers):
    dest = sync_servers.dest()
    execute(sync_servers.dest_admin, f'CREATE DATABASE "{dest.database}"')
    execute(dest, "CREATE TABLE mine (x int); INSERT INTO mine VALUES (1)")
    return dest


@pytest.mark.parametrize("text", [
    "",
    "# nothing here yet\n# tables:\n",
    "tables: {}\n",
    "tables:\n",
    "tables:\n  app.people:\n    email: keep\n",
], ids=["empty", "comments-only", "empty-tables", "null-tables", "keep-only"])
def test_rules_that_anonymize_nothing_are_refused(sync_servers, sync_options, tmp_path, dest_with_data, text):
    source = sync_servers.source_copy()
    with pytest.raises(ConfigError) as caught:
        sync(source, dest_with_data, sync_options(rules_path=_rules(tmp_path, text)))
    assert "anonymize nothing" in caught.value.message and "--no-anonymize" in caught.value.message
    _untouched(sync_servers, dest_with_data)


def test_no_anonymize_has_its_own_warning(sync_servers, sync_options, dest_with_data, monkeypatch):
    monkeypatch.setenv("CI", "true")
    source = sync_servers.source_copy()
    with pytest.raises(Refused) as caught:
        sync(source, dest_with_data, sync_options(anonymize=False, yes=False))
    assert "real personal data" in caught.value.message and "--no-anonymize" in caught.value.message
    _untouched(sync_servers, dest_with_data)


def test_a_personal_column_added_by_a_migration_stops_the_sync(sync_servers, sync_options, dest_with_data):
    source = sync_servers.source_copy()
    # A later migration: a new personal column, empty so far (its name is enough) and a partitioned table.
    execute(source, "ALTER TABLE app.people ADD COLUMN telephone_portable text; "
                    "ALTER TABLE app.events ADD COLUMN ip_address inet")
    with pytest.raises(ConfigError) as caught:
        sync(source, dest_with_data, sync_options())
    message = caught.value.message
    assert "app.people.telephone_portable (text): named like a phone number" in message
    # The partitioned table is where the rule goes; its partitions are not listed one by one.
    assert "app.events.ip_address (inet): named like an IP or network address" in message
    assert "events_2023" not in message
    assert "`keep`" in message and "add a rule" in message and "--check-rules" in message
    _untouched(sync_servers, dest_with_data)


def test_content_alone_reveals_a_personal_column(sync_servers, sync_options, dest_with_data, tmp_path):
    source = sync_servers.source_copy()
    # Named `contact`: nothing in the name says e-mail, the values do. Inside jsonb too, with no hint either.
    execute(source, "ALTER TABLE app.teams ADD COLUMN contact text, ADD COLUMN extra jsonb; "
                    "UPDATE app.teams SET contact = 'lead' || id || '@customer.example', "
                    "extra = jsonb_build_object('who', jsonb_build_array('x', '+33 6 12 34 56 7' || id, "
                    "'+33 6 98 76 54 3' || id))")
    with pytest.raises(ConfigError) as caught:
        sync(source, dest_with_data, sync_options())
    message = caught.value.message
    assert "app.teams.contact (text): 5 of 5 sampled values are e-mail addresses" in message
    assert "app.teams.extra (jsonb): 10 of 15 sampled values are phone numbers" in message
    assert "customer.example" not in message and "12 34" not in message  # counts, never the values
    _untouched(sync_servers, dest_with_data)


def test_keep_silences_one_reviewed_column(sync_servers, sync_options, tmp_path):
    source = sync_servers.source_copy()
    execute(source, "ALTER TABLE app.teams ADD COLUMN contact text, ADD COLUMN fax text; "
                    "UPDATE app.teams SET contact = 'team' || id || '@company.example'")
    only_contact = RULES_YAML + "  app.teams:\n    contact: keep\n"
    with pytest.raises(ConfigError) as caught:
        sync(source, sync_servers.dest(), sync_options(rules_path=_rules(tmp_path, only_contact)))
    assert "app.teams.fax" in caught.value.message and "app.teams.contact" not in caught.value.message
    both = only_contact + "    fax: keep\n"
    dest = sync_servers.dest()
    summary = sync(source, dest, sync_options(rules_path=_rules(tmp_path, both, "both.yaml")))
    assert summary.verified
    assert execute(dest, "SELECT count(*) FROM app.teams WHERE contact LIKE '%@company.example'") == [(5,)]


def test_rules_on_a_parent_table_review_its_partitions(sync_servers, sync_options, tmp_path):
    source = sync_servers.source_copy()
    execute(source, "ALTER TABLE app.events ADD COLUMN email text; UPDATE app.events SET email = 'e' || id || '@x.org'")
    rules = _rules(tmp_path, RULES_YAML + "  app.events:\n    email: fake_email\n")
    dest = sync_servers.dest()
    summary = sync(source, dest, sync_options(rules_path=rules))
    assert summary.verified
    assert execute(dest, "SELECT count(*) FROM app.events WHERE email LIKE '%@x.org'") == [(0,)]


def test_check_rules_reports_without_copying(sync_servers, isolated_project, rules_file, capsys):
    source = sync_servers.source_copy()
    before = database_names(sync_servers.dest_admin, "")
    execute(source, "ALTER TABLE app.people ADD COLUMN iban text; ALTER TABLE app.teams ADD COLUMN notes text; "
                    "UPDATE app.teams SET notes = 'call +33 6 12 34 56 78 or +33 7 12 34 56 78'")
    with pytest.raises(Exit) as caught:
        sync_tasks.sync_prod(Context(), source=source.url(), rules=str(rules_file), check_rules=True, json=True)
    assert caught.value.code == 1 and "2 personal-looking column(s)" in str(caught.value.message)
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"version", "ok", "source", "rules_file", "tables_checked", "columns_checked",
                         "rows_sampled_per_table", "findings", "problems", "notes", "k_anonymity"}
    assert data["ok"] is False and data["problems"] == [] and data["tables_checked"] == 10
    assert [(f["table"], f["column"], f["type"], f["suggested_rule"]) for f in data["findings"]] == [
        ("app.people", "iban", "text", "fake_iban"), ("app.teams", "notes", "text", "fake_phone")]
    assert data["findings"][1]["reasons"] == ["5 of 5 sampled values contain phone numbers"]
    assert source.password not in json.dumps(data)
    assert database_names(sync_servers.dest_admin, "") == before  # nothing created anywhere

    fixed = rules_file.parent / "fixed.yaml"
    fixed.write_text(RULES_YAML.replace("    avatar: null\n", "    avatar: null\n    iban: null\n")
                     + "  app.teams:\n    notes: {fixed: ''}\n")
    sync_tasks.sync_prod(Context(), source=source.url(), rules=str(fixed), check_rules=True)
    out = capsys.readouterr().out
    assert "OK: every column that looks personal has a rule." in out


def test_rules_pointing_at_a_directory_say_so(sync_servers, isolated_project, tmp_path):
    source = sync_servers.source_copy()
    with pytest.raises(Exit) as caught:
        sync_tasks.sync_prod(Context(), source=source.url(), dest=sync_servers.dest().url(), rules=str(tmp_path),
                             yes=True)
    assert "is a directory" in str(caught.value.message) and caught.value.code == ConfigError.exit_code


@pytest.fixture(scope="module")
def sample_schema(pg_server_factory):
    """The shipped sql/ applied on a server of its own (its roles and passwords are cluster-wide)."""
    server = pg_server_factory()
    address = server.admin.with_database("sample")
    execute(server.admin, "CREATE DATABASE sample")
    init_database(address, role_passwords={"api_user": generate_password(), "readonly": generate_password()},
                  sql_dir=REPO / "sql")
    return address


def test_the_shipped_schema_and_rules_give_no_finding(sample_schema, isolated_project):
    report = check_rules(sample_schema, REPO / "anonymize.yaml", Selection())
    assert report.problems == [] and report.findings == [] and report.ok
    assert report.tables_checked >= 12


def test_the_scan_finds_what_is_planted_in_the_shipped_schema(sample_schema, isolated_project):
    planted = sample_schema.with_database("planted")
    execute(sample_schema.with_database("postgres"), "CREATE DATABASE planted TEMPLATE sample")
    execute(planted, "ALTER TABLE app.profiles ADD COLUMN date_de_naissance date, ADD COLUMN rue text; "
                     "ALTER TABLE app.groups ADD COLUMN numero_secu text; "
                     "INSERT INTO app.profiles (email) VALUES ('someone@real.example'); "
                     "INSERT INTO app.groups (slug, name, owner_profile_id) "
                     "SELECT 'g', 'G', id FROM app.profiles; "
                     "INSERT INTO app.resources (owner_profile_id, title, category, metadata) "
                     "SELECT id, 'T', 'c', '{\"reply_to\": \"jean.dupont@orange.fr\"}' FROM app.profiles")
    report = check_rules(planted, REPO / "anonymize.yaml", Selection())
    assert [(finding.table, finding.column) for finding in report.findings] == [
        ("app.groups", "numero_secu"), ("app.profiles", "date_de_naissance"), ("app.profiles", "rue"),
        ("app.resources", "metadata")]
