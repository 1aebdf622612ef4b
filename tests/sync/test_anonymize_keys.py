"""The pseudonym key: kept on the source, never on this machine, never in a logged statement (real servers).

The attack test plays someone who holds everything on the destination machine (the clone, .runtime, the
environment, the copied database) and tries to recover planted e-mails, phone numbers and birth dates by
dictionary and enumeration, with every secret-looking string found there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.conftest import FAST_TEST_SETTINGS
from tether.conninfo import DatabaseAddress
from tether.migrations import init_database
from tether.secrets import generate_password
from tether.sync import keys
from tether.sync.engine import sync
from tether.sync.plan import Selection

from .conftest import execute

REPO = Path(__file__).resolve().parents[2]
PEOPLE = 300
PLANT_SQL = """
INSERT INTO app.profiles (email, full_name, phone, birth_date)
SELECT 'prenom' || g || '.nom' || g || '@orange.fr', 'Prénom Nom ' || g,
       '06 12 34 ' || lpad((g / 10)::text, 2, '0') || ' ' || (g % 10) || (g % 7),
       date '1970-01-01' + (g * 53) % 15000
FROM generate_series(1, 300) g;
INSERT INTO app.groups (slug, name, owner_profile_id) VALUES ('club', 'Club', 1);
INSERT INTO app.resources (owner_profile_id, title, category) VALUES (1, 'Guide', 'docs');
INSERT INTO app.resource_shares (resource_id, shared_by_profile_id, recipient_email)
SELECT id, 1, 'ami@orange.fr' FROM app.resources;
"""


@dataclass
class Shop:
    """The sample schema on a server of its own that logs every statement, with planted people."""

    admin: DatabaseAddress  # superuser, database shop
    reader: DatabaseAddress  # readonly, as sync-prod connects to production
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _shop(pg_server_factory, name: str, with_key: bool, tmp_path_factory) -> Shop:
    server = pg_server_factory({**FAST_TEST_SETTINGS, "log_statement": "all", "log_connections": "on",
                                "log_min_error_statement": "error"})
    passwords = {"api_user": generate_password(), "readonly": generate_password()}
    sql_dir = tmp_path_factory.mktemp(f"sql-{name}")
    for path in sorted((REPO / "sql").glob("*.sql")):
        if with_key or "anonymization_key" not in path.name:
            shutil.copy(path, sql_dir / path.name)
    execute(server.admin, f'CREATE DATABASE "{name}"')
    admin = server.admin.with_database(name)
    init_database(admin, role_passwords=passwords, sql_dir=sql_dir)
    execute(admin, PLANT_SQL)
    return Shop(admin, admin.with_credentials("readonly", passwords["readonly"]), server.server.log_file)


@pytest.fixture(scope="module")
def shops(pg_server_factory, tmp_path_factory) -> dict[str, Shop]:
    return {"server": _shop(pg_server_factory, "shop", True, tmp_path_factory),
            "per-sync": _shop(pg_server_factory, "shop_without_key", False, tmp_path_factory)}


@pytest.fixture
def captured_keys(monkeypatch) -> Iterator[list[keys.PseudonymKey]]:
    """Every per-sync key a sync makes (it lives in memory only; the test needs it to look for it)."""
    made: list[keys.PseudonymKey] = []
    original = keys.per_sync_key

    def recording() -> keys.PseudonymKey:
        key = original()
        made.append(key)
        return key

    monkeypatch.setattr(keys, "per_sync_key", recording)
    yield made


def _server_key(shop: Shop) -> tuple[bytes, bytes]:
    (ipad, opad), = execute(shop.admin, "SELECT ipad, opad FROM tether_anon.key")
    return bytes(ipad), bytes(opad)


def test_readonly_may_use_the_key_but_never_read_it(shops):
    shop = shops["server"]
    with psycopg.connect(shop.reader.conninfo(), autocommit=True) as conn:
        digest = conn.execute("SELECT tether_anon.pseudonym('someone@example.org')").fetchone()[0]
        assert len(digest) == 32
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT ipad FROM tether_anon.key")
        # Not through a setting either (PostgreSQL Anonymizer's salt leaked through pg_db_role_setting).
        settings = conn.execute("SELECT coalesce(string_agg(array_to_string(setconfig, ','), ','), '') "
                                "FROM pg_db_role_setting").fetchone()[0]
        source = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'pseudonym'").fetchone()[0]
    ipad, opad = _server_key(shop)
    assert digest == hashlib.sha256(opad + hashlib.sha256(ipad + b"someone@example.org").digest()).digest()
    for text in (settings, source):
        assert ipad.hex() not in text and opad.hex() not in text
    # The application's own role may not even compute pseudonyms.
    assert execute(shop.admin, "SELECT has_function_privilege('api_user', 'tether_anon.pseudonym(text)', "
                               "'EXECUTE'), has_table_privilege('readonly', 'tether_anon.key', 'SELECT')") == \
        [(False, False)]


def test_a_server_key_gives_the_same_pseudonyms_on_every_sync_and_is_never_copied(shops, sync_servers,
                                                                                sync_options):
    shop = shops["server"]
    dest = sync_servers.dest()
    rules = REPO / "anonymize.yaml"
    first = sync(shop.reader, dest, sync_options(rules_path=rules))
    assert first.pseudonym_key == "server" and first.leak_scan["leaks"] == []
    emails = execute(dest, "SELECT id, email FROM app.profiles ORDER BY id")
    again = sync(shop.reader, dest, sync_options(rules_path=rules, full=True))
    assert again.pseudonym_key == "server"
    assert execute(dest, "SELECT id, email FROM app.profiles ORDER BY id") == emails
    # Nothing changed: a re-sync copies nothing (the key is the same, so the pseudonyms are).
    assert sync(shop.reader, dest, sync_options(rules_path=rules)).mode == "unchanged"
    # The key's table never travels; the pseudonyms are the HMAC under the server's key, of lower-cased e-mails.
    assert execute(dest, "SELECT to_regclass('tether_anon.key')") == [(None,)]
    ipad, opad = _server_key(shop)
    real = dict(execute(shop.admin, "SELECT id, email FROM app.profiles"))
    for key, fake in emails:
        digest = hashlib.sha256(opad + hashlib.sha256(ipad + f"tether:email:{real[key].lower()}".encode())
                                .digest()).hexdigest()
        assert fake == f"user_{digest[:32]}@example.com"


def test_a_source_without_the_key_gets_one_per_sync_and_never_mixes_two(shops, sync_servers, sync_options):
    shop = shops["per-sync"]
    dest = sync_servers.dest()
    rules = REPO / "anonymize.yaml"
    assert sync(shop.reader, dest, sync_options(rules_path=rules)).pseudonym_key == "per-sync"
    emails = dict(execute(dest, "SELECT id, email FROM app.profiles"))
    tokens = execute(dest, "SELECT id, share_token FROM app.resource_shares ORDER BY id")
    # Nothing changed: every table keeps the last sync's pseudonyms, which still match each other.
    assert sync(shop.reader, dest, sync_options(rules_path=rules)).mode == "unchanged"
    # A table without pseudonyms changed: only it is copied.
    execute(shop.admin, "UPDATE app.groups SET description = 'changed'")
    second = sync(shop.reader, dest, sync_options(rules_path=rules))
    assert second.mode == "incremental" and second.changed_tables == ["app.groups"]
    assert dict(execute(dest, "SELECT id, email FROM app.profiles")) == emails
    # A table holding pseudonyms changed: the new key cannot extend the old one's, so every table holding
    # pseudonyms is copied again with it, and none mixes two keys.
    execute(shop.admin, "UPDATE app.profiles SET bio = 'changed' WHERE id = 1")
    third = sync(shop.reader, dest, sync_options(rules_path=rules))
    assert set(third.changed_tables) == {"app.profiles", "app.resource_shares"}
    again = dict(execute(dest, "SELECT id, email FROM app.profiles"))
    assert again.keys() == emails.keys() and not set(again.values()) & set(emails.values())
    shares = execute(dest, "SELECT id, share_token FROM app.resource_shares ORDER BY id")
    assert len(shares) == len(tokens) == 1 and shares != tokens


def _machine_strings(project: Path, dest: DatabaseAddress, clone: Path | None) -> list[str]:
    """Everything on the destination machine an attacker could read: files, environment, the copy's rows."""
    texts: list[str] = []
    for root in (project, *([clone] if clone else [])):
        for path in root.rglob("*"):
            if path.is_file() and ".venv" not in path.parts and ".git" not in path.parts \
                    and path.stat().st_size < 2_000_000:
                texts.append(path.read_bytes().decode("utf-8", "replace"))
    texts.extend(os.environ.values())
    # Every row of every table, as text, in one query built on the server.
    with psycopg.connect(dest.conninfo(), autocommit=True) as conn:
        query = conn.execute(
            "SELECT string_agg(format('SELECT t::text FROM %I.%I AS t', schemaname, tablename), ' UNION ALL ') "
            "FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchone()[0]
        texts.extend(row[0] for row in conn.execute(query.encode()))
    return texts


def _secrets_in(texts: list[str]) -> set[str]:
    """Every string that could be a key or salt: long tokens (hex, base64, generated passwords)."""
    return {token for text in texts for token in re.findall(r"[A-Za-z0-9_+/=-]{20,}", text)
            if re.search(r"[0-9]", token) and re.search(r"[A-Za-z]", token)} | {""}


def _pads(secret: bytes) -> tuple[bytes, bytes]:
    key = secret if len(secret) <= 64 else hashlib.sha256(secret).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _guesses(secret: str, value: str) -> set[str]:
    """What an attacker would compare with the copy, for one guessed value and one candidate secret."""
    raw = secret.encode()
    keys_to_try = [raw]
    if re.fullmatch(r"(?:[0-9a-f]{2})+", secret):
        keys_to_try.append(bytes.fromhex(secret))
    found = {hashlib.md5((secret + value).encode(), usedforsecurity=False).hexdigest(),  # the old salted md5
             hashlib.sha256(value.encode()).hexdigest(), hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()}
    for key in keys_to_try:
        for prefix in ("", "tether:email:", "tether:hash:"):
            found.add(hmac.new(key, (prefix + value).encode(), hashlib.sha256).hexdigest())
            ipad, opad = (key[:64], key[64:]) if len(key) == 128 else _pads(key)
            found.add(hashlib.sha256(opad + hashlib.sha256(ipad + (prefix + value).encode()).digest()).hexdigest())
    return {guess[:32] for guess in found}


@pytest.mark.parametrize("mode", ["server", "per-sync"])
def test_an_attacker_with_the_whole_laptop_recovers_nothing(shops, sync_servers, sync_options, isolated_project,
                                                           captured_keys, mode):
    shop = shops[mode]
    log_before = len(shop.log_text())
    dest = sync_servers.dest()
    summary = sync(shop.reader, dest, sync_options(rules_path=REPO / "anonymize.yaml"))
    assert summary.pseudonym_key == mode
    real = {row[0]: row[1:] for row in execute(shop.admin, "SELECT id, email, phone, birth_date FROM app.profiles")}
    copied = {row[0]: row[1:] for row in execute(dest, "SELECT id, email, phone, birth_date FROM app.profiles")}
    assert copied.keys() == real.keys() and len(real) == PEOPLE

    texts = _machine_strings(isolated_project, dest, REPO)
    # 1. The key is nowhere on this machine, and in no statement the source logged.
    key_material = [value for key in captured_keys for value in key.session_settings.values()]
    if mode == "server":
        key_material += [pad.hex() for pad in _server_key(shop)]
    assert key_material
    source_log = shop.log_text()[log_before:]
    assert "COPY (SELECT" in source_log  # the server did log every statement (small tables come in batches)
    for material in key_material:
        assert material not in source_log
        assert not any(material in text for text in texts)
    # 2. Dictionary attack on the e-mails, with every secret-looking string found on the machine (and none).
    dictionary = [email.lower() for email, _, _ in real.values()] + [f"decoy{n}@orange.fr" for n in range(50)]
    fakes = {email.split("@")[0].removeprefix("user_") for email, _, _ in copied.values()}
    # Secrets live in state, not in source code: the clone's tracked files are searched for the key above.
    candidates = _secrets_in(_machine_strings(isolated_project, dest, None))
    assert len(candidates) > 100  # the attacker had material to try
    recovered = {value for secret in candidates for value in dictionary if _guesses(secret, value) & fakes}
    assert recovered == set()
    # Control: with the server's key (which this machine never had), the same attack recovers every e-mail.
    if mode == "server":
        ipad, opad = _server_key(shop)
        key_guess = {hashlib.sha256(opad + hashlib.sha256(ipad + f"tether:email:{value}".encode()).digest())
                     .hexdigest()[:32] for value in dictionary}
        assert len(key_guess & fakes) == PEOPLE
    # 3. Phones: enumerating every number of the planted range finds none in the copy, and no digit survives
    # beyond the "06" that says it is a mobile.
    space = {f"06 12 34 {a:02d} {b:02d}" for a in range(100) for b in range(100)}
    assert {phone for _, phone, _ in real.values()} <= space
    phones = [phone for _, phone, _ in copied.values()]
    assert not space & set(phones)
    same_tail = sum(copied[key][1][-2:] == real[key][1][-2:] for key in real)
    assert same_tail <= PEOPLE * 0.05
    # 4. Birth dates: never the real one, and no shift (the attacker's best guess) recovers more than chance.
    shifts = [(copied[key][2] - real[key][2]).days for key in real]
    assert 0 not in shifts and max(abs(shift) for shift in shifts) <= 45
    best = max(shifts.count(shift) for shift in set(shifts))
    assert best <= PEOPLE * 0.05


def test_nothing_key_like_is_written_under_runtime(shops, sync_servers, sync_options, isolated_project,
                                                   captured_keys):
    """Issue 21, survivor 5: the salt file was written 0644. There is no key file at all any more."""
    shop = shops["per-sync"]
    sync(shop.reader, sync_servers.dest(), sync_options(rules_path=REPO / "anonymize.yaml"))
    material = [value for key in captured_keys for value in key.session_settings.values()]
    assert material
    runtime = isolated_project / ".runtime"
    files = [path for path in runtime.rglob("*") if path.is_file()] if runtime.exists() else []
    for path in files:
        assert not re.search(r"salt|secret|key", path.name, re.I), path
        content = path.read_bytes().decode("utf-8", "replace")
        assert not any(value in content for value in material), path
    assert "TETHER_ANONYMIZE_SALT" not in os.environ


def test_the_check_says_which_key_it_would_use(shops, isolated_project):
    from tether.sync.anonymization import check_rules

    for mode, words in (("server", "source's secret"), ("per-sync", "this sync only")):
        report = check_rules(shops[mode].reader, REPO / "anonymize.yaml", Selection())
        assert report.ok and words in report.notes[0], report.lines()


def test_readonly_can_still_dump_production_and_the_dump_has_no_key(shops, tmp_path, isolated_project):
    """pg_dump locks every table it dumps: as readonly it could not lock the key's table, so db.dump leaves it out."""
    from tether.dumps import dump_database
    from tether.pgtools import DumpOptions

    shop = shops["server"]
    # Schema only: a readonly dump of the data also meets row-level security (pg_dump runs with row_security
    # off), which is another matter; the lock on the key's table is taken either way.
    result = dump_database(shop.reader, "prod", DumpOptions(schema_only=True), directory=tmp_path)
    content = result.path.read_bytes()
    assert b"tether_anon" in content  # the schema and its functions travel, the key does not
    for pad in _server_key(shop):
        assert pad.hex().encode() not in content and pad not in content
