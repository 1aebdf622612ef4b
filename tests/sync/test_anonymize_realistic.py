"""A realistic database with French personal data in jsonb, arrays, citext, free text and partitions (real servers):
a sync with a complete rule set finishes, every join that held in production still holds, nothing leaks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from psycopg import sql

from tether.sync import anonymize
from tether.sync.anonymization import check_rules
from tether.sync.engine import sync
from tether.sync.fakes import POOLS
from tether.sync.plan import Selection

from .conftest import execute
from .realistic import REALISTIC_RULES, REALISTIC_SQL

JOINS = {
    "uuid foreign key": "SELECT count(*) FROM app.profiles p JOIN auth.users u ON u.id = p.user_id",
    "citext foreign key": "SELECT count(*) FROM app.orders o JOIN auth.users u ON u.email = o.buyer_email",
    "lower() join": "SELECT count(*) FROM app.invitations i JOIN auth.users u "
                    "ON lower(i.invited_email) = lower(u.email)",
    "same_as, no foreign key": "SELECT count(*) FROM app.events e JOIN auth.users u ON u.id = e.user_id",
    "partition's own rows": "SELECT count(*) FROM app.events_2025 e JOIN auth.users u ON u.id = e.user_id",
    "key inside jsonb": "SELECT count(*) FROM app.events e JOIN auth.users u ON u.id = (e.payload->>'user_id')::uuid",
    "keys in an array": "SELECT count(*) FROM app.teams t JOIN auth.users u ON u.id = ANY(t.member_ids)",
}


@pytest.fixture(scope="module")
def realistic(sync_servers):
    source = sync_servers.source_admin.with_database("realistic_source")
    execute(sync_servers.source_admin, 'DROP DATABASE IF EXISTS "realistic_source" WITH (FORCE)')
    execute(sync_servers.source_admin, 'CREATE DATABASE "realistic_source"')
    execute(source, REALISTIC_SQL)
    return source


@pytest.fixture
def realistic_rules(tmp_path: Path) -> Path:
    path = tmp_path / "realistic.yaml"
    path.write_text(REALISTIC_RULES)
    return path


def test_a_realistic_database_syncs_with_every_join_and_nothing_left(sync_servers, sync_options, realistic,
                                                                   realistic_rules):
    dest = sync_servers.dest()
    summary = sync(realistic, dest, sync_options(rules_path=realistic_rules))
    assert summary.verified and summary.pseudonym_key == "per-sync"
    for name, query in JOINS.items():
        assert execute(dest, query) == execute(realistic, query), name
    assert execute(dest, JOINS["lower() join"]) == [(215,)]
    # The leak scan compared every ruled column with the source and found nothing.
    scan = summary.leak_scan
    assert scan["leaks"] == [] and scan["columns_checked"] >= 18 and scan["rows_sampled"] >= 500
    assert scan["not_checked"] == []
    # The foreign key on a citext e-mail followed its key's rule, without being named in the file.
    applied = {(rule["table"], rule["column"]): rule["rule"] for rule in summary.rules_applied}
    assert applied[("app.orders", "buyer_email")].startswith("fake_email (follows foreign key")
    assert applied[("app.events_2024", "payload")].startswith("json") and "from app.events" in \
        applied[("app.events_2024", "payload")]

    users = execute(dest, "SELECT email, raw_user_meta_data, last_sign_in_ip::text, encrypted_password "
                          "FROM auth.users")
    assert all(re.fullmatch(r"user_[0-9a-f]{32}@example\.com", row[0]) for row in users)
    first_names, last_names = set(POOLS["fr"].first_names), set(POOLS["fr"].last_names)
    for _, meta, ip, password in users:
        assert set(meta) == {"full_name", "phone", "address", "avatar"}
        assert meta["phone"] is None and meta["avatar"] is None
        first, last = meta["full_name"].split(" ", 1)
        assert first in first_names and last in last_names
        assert meta["address"]["city"] in POOLS["fr"].cities
        number, street = meta["address"]["street"].split(" ", 1)
        assert number.isdigit() and street in POOLS["fr"].streets
        assert ip.startswith("82.64.") and password.startswith("$2a$10$invalid")

    profiles = execute(dest, "SELECT id, prenom, nom, telephone, date_de_naissance, code_postal, ville, iban, "
                             "contact_emails, notes, user_id::text FROM app.profiles ORDER BY id")
    real = {row[0]: row[1:] for row in execute(realistic, "SELECT id, user_id::text, date_de_naissance, telephone "
                                                          "FROM app.profiles")}
    assert len(profiles) == 400
    for key, prenom, nom, phone, born, postcode, city, iban, emails, notes, user_id in profiles:
        real_user, real_born, real_phone = real[key]
        assert prenom in first_names and nom in last_names  # a first-name column gets a first name only
        assert re.fullmatch(r"06 \d\d \d\d \d\d \d\d", phone) and phone != real_phone  # the format kept
        assert 1 <= abs((born - real_born).days) <= 30  # shifted, never by 0 days
        assert re.fullmatch(r"\d{2}000", postcode)  # the département only
        assert city in POOLS["fr"].cities
        assert re.fullmatch(r"FR\d{25}", iban) and int(_iban_number(iban)) % 97 == 1
        assert len(emails) == 2 and all(re.fullmatch(r"user_[0-9a-f]{32}@example\.com", email) for email in emails)
        assert notes in ("Client fidèle", "Rappeler au [phone] ou écrire à [email]. IBAN [iban].")
        assert user_id != real_user  # the key is pseudonymized, and its references followed
    payloads = execute(dest, "SELECT payload FROM app.events_2025")
    assert payloads and all(payload["ip"] is None and payload["email"].startswith("user_")
                            and payload["items"][0]["buyer"].startswith("user_") for (payload,) in payloads)


def _iban_number(iban: str) -> str:
    moved = iban[4:] + iban[:4]
    return "".join(str(int(char, 36)) for char in moved)


def test_check_rules_reports_k_anonymity_of_the_named_quasi_identifiers(realistic, realistic_rules,
                                                                       isolated_project):
    report = check_rules(realistic, realistic_rules, Selection())
    assert report.ok, report.lines()
    (group,) = report.k_anonymity
    assert group["table"] == "app.profiles" and group["columns"] == ["date_de_naissance", "code_postal"]
    assert group["smallest_group"] == 1 and group["rows"] == 400  # shifted dates stay almost unique
    # Birth years only, as a quasi-identifier with a floor: the report counts the groups the copy will have.
    generalized = realistic_rules.read_text().replace("date_de_naissance: {shift_date: {days: 30}}",
                                                      "date_de_naissance: {generalize: year}")
    years = execute(realistic, "SELECT count(*), min(n) FROM (SELECT count(*) AS n FROM app.profiles "
                               "GROUP BY date_trunc('year', date_de_naissance)) AS g")[0]
    for floor, ok in ((years[1], True), (years[1] + 1, False)):
        realistic_rules.write_text(generalized.replace(
            "  app.profiles: [date_de_naissance, code_postal]",
            f"  app.profiles: {{columns: [date_de_naissance], min_group: {floor}}}"))
        report = check_rules(realistic, realistic_rules, Selection())
        (group,) = report.k_anonymity
        assert (group["groups"], group["smallest_group"]) == years and group["ok"] is ok
        assert report.ok is ok and any(f"min_group of {floor}" in problem for problem in report.problems) is not ok


def test_partitions_get_their_parents_rules(sync_servers, sync_options, realistic, realistic_rules, monkeypatch):
    """Issue 21, survivor 1: with the parent's rules lost, partitions' real payloads were copied."""
    dest = sync_servers.dest()
    summary = sync(realistic, dest, sync_options(rules_path=realistic_rules))
    partitions = {rule["table"] for rule in summary.rules_applied if rule["column"] == "payload"}
    assert partitions == {"app.events_2024", "app.events_2025"}
    for partition in ("events_2024", "events_2025"):
        query = sql.SQL("SELECT payload->>'email' FROM {}").format(sql.Identifier("app", partition))
        real = {row[0] for row in execute(realistic, query)}
        copied = {row[0] for row in execute(dest, query)}
        assert copied and not real & copied, partition
    # Break the lookup that gives partitions their parent's rules: the sync must not copy raw payloads.
    monkeypatch.setattr(anonymize.SourceCatalog, "ancestors", lambda self, oid: [])
    with pytest.raises(Exception) as caught:
        sync(realistic, sync_servers.dest(), sync_options(rules_path=realistic_rules))
    assert "app.events" in str(caught.value)
