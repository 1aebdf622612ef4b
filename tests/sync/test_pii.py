"""Personal-column detection: names in English and French, and content classified on a real server."""

from __future__ import annotations

import psycopg
import pytest

from tether.sync import pii
from tether.sync.catalog import Column, Relation, read_catalog

TYPES = {"text": ("text", "S"), "varchar": ("varchar", "S"), "citext": ("citext", "S"), "int": ("int4", "N"),
         "bigint": ("int8", "N"), "bool": ("bool", "B"), "date": ("date", "D"), "timestamptz": ("timestamptz", "D"),
         "inet": ("inet", "I"), "jsonb": ("jsonb", "U"), "bytea": ("bytea", "U"), "uuid": ("uuid", "U"),
         "text[]": ("_text", "A"), "float8": ("float8", "N")}


def _relation(table: str) -> Relation:
    return Relation(1, "app", table, "r", "p", None, False, 1, True)


def _column(name: str, type_key: str) -> Column:
    type_name, category = TYPES[type_key]
    return Column(name, 1, type_key, type_name, category, False, False, False)


@pytest.mark.parametrize(("table", "column", "type_key", "expected"), [
    ("people", "email", "text", "email"),
    ("people", "E-mail", "varchar", "email"),
    ("people", "eMailAddress", "citext", "email"),
    ("people", "adresse_courriel", "text", "email"),
    ("people", "courrielPro", "text", "email"),
    ("people", "contact_emails", "text[]", "email"),
    ("people", "telephone", "text", "phone"),
    ("people", "téléphone_fixe", "text", "phone"),
    ("people", "numTel", "varchar", "phone"),
    ("people", "portable", "text", "phone"),
    ("people", "mobile_number", "bigint", "phone"),
    ("people", "first_name", "text", "person_name"),
    ("people", "prénom", "text", "person_name"),
    ("people", "lastName", "text", "person_name"),
    ("people", "nom_de_famille", "text", "person_name"),
    ("utilisateurs", "nom", "text", "person_name"),
    ("users", "name", "text", "person_name"),
    ("orders", "customer_name", "text", "person_name"),
    ("cards", "holder_name", "text", "person_name"),
    ("people", "username", "text", "username"),
    ("people", "adresse", "text", "address"),
    ("people", "rue", "text", "address"),
    ("people", "code_postal", "varchar", "address"),
    ("people", "codePostal", "int", "address"),
    ("people", "ville", "text", "address"),
    ("people", "zip", "text", "address"),
    ("sessions", "ip", "inet", "ip"),
    ("sessions", "last_sign_in_ip", "inet", "ip"),
    ("sessions", "remote_addr", "text", "ip"),
    ("people", "birth_date", "date", "birth"),
    ("people", "dateDeNaissance", "date", "birth"),
    ("people", "date_de_naissance", "text", "birth"),
    ("people", "dob", "date", "birth"),
    ("people", "password_hash", "text", "secret"),
    ("people", "mot_de_passe", "text", "secret"),
    ("api", "apiKey", "text", "secret"),
    ("shares", "share_token", "text", "secret"),
    ("shares", "reset_token", "uuid", "secret"),
    ("people", "iban", "text", "bank"),
    ("people", "bic", "text", "bank"),
    ("people", "rib", "text", "bank"),
    ("payments", "card_last4", "text", "bank"),
    ("people", "siret", "text", "national_id"),
    ("people", "nir", "text", "national_id"),
    ("people", "numero_secu", "text", "national_id"),
    ("people", "ssn", "text", "national_id"),
    ("people", "numéro_sécurité_sociale", "text", "national_id"),
    ("people", "passport_number", "text", "national_id"),
    ("places", "latitude", "float8", "geolocation"),
    ("people", "avatar_url", "text", "photo"),
    ("people", "has_disability", "bool", "health"),
    ("people", "bio", "text", "about"),
    ("people", "salaire", "int", "income"),
], ids=lambda value: str(value))
def test_personal_names_are_recognised(table, column, type_key, expected):
    found = [category.key for category, _ in pii.name_reasons(_relation(table), _column(column, type_key))]
    assert expected in found


@pytest.mark.parametrize(("table", "column", "type_key"), [
    ("people", "email_count", "int"),  # a number of e-mails, not an e-mail
    ("people", "is_email_verified", "bool"),
    ("people", "email_verified_at", "timestamptz"),
    ("people", "email_template_id", "bigint"),
    ("people", "phone_prefix", "text"),
    ("devices", "mobile_platform", "text"),
    ("people", "user_id", "bigint"),
    ("teams", "name", "text"),  # a team's name: not a person's
    ("categories", "nom", "text"),
    ("files", "file_name", "text"),
    ("products", "product_name", "text"),
    ("hotels", "hotel_code", "text"),  # "tel" hides inside a word, not as one
    ("people", "created_at", "timestamptz"),
    ("admin_configs", "key", "text"),
    ("events", "payload", "jsonb"),
], ids=lambda value: str(value))
def test_other_names_are_not_taken_for_personal(table, column, type_key):
    assert pii.name_reasons(_relation(table), _column(column, type_key)) == []


@pytest.mark.parametrize(("name", "words"), [
    ("dateDeNaissance", ["date", "de", "naissance"]),
    ("E-mail_2", ["e", "mail", "2"]),
    ("IPAddress", ["ip", "address"]),
    ("Prénom", ["prenom"]),
    ("card_last4", ["card", "last", "4"]),
])
def test_name_words(name, words):
    assert pii.name_words(name) == words


CONTENT_SQL = """
CREATE TABLE content (
    id serial PRIMARY KEY,
    contact text, note text, doc jsonb, emails text[], ip text, card text, not_card text, iban text,
    iban_in_text text, nir text, phone_fr text, phone_us text, plain text, versions text, pair_with_mail text
);
INSERT INTO content (contact, note, doc, emails, ip, card, not_card, iban, iban_in_text, nir, phone_fr, phone_us,
                     plain, versions, pair_with_mail)
SELECT 'client' || g || '@exemple.fr',
       'Rappeler au 06 12 34 56 ' || lpad(g::text, 2, '0') || ' après 18h',
       jsonb_build_object('contact', jsonb_build_object('mail', 'a' || g || '@b.co'), 'n', g),
       ARRAY['x' || g || '@y.fr', 'plain'],
       '192.168.' || (g % 200) || '.' || (g % 250),
       '4111 1111 1111 1111',
       '4111 1111 1111 1112',
       'FR76 3000 6000 0112 3456 7890 189',
       'Mon IBAN : FR76 3000 6000 0112 3456 7890 189, merci',
       '1 84 05 73 108 073 39',
       '+33 6 12 34 56 ' || lpad(g::text, 2, '0'),
       '(415) 555-' || lpad(g::text, 4, '0'),
       'hello world ' || g,
       '2024-01-0' || (1 + g % 9),
       '(' || g || ',someone' || g || '@mail.test)'
FROM generate_series(1, 60) g;
"""


def test_content_sample_classifies_values_on_the_server(pg_db):
    with psycopg.connect(pg_db.conninfo(), autocommit=True) as conn:
        conn.execute(CONTENT_SQL)
        conn.execute("BEGIN")  # as in a sync: inside the snapshot's transaction
        relation = read_catalog(conn).by_name()["public.content"]
        columns = pii.sampled_columns(relation)
        counts = pii.sample_content(conn, [(relation, columns)], {}, rows=pii.THOROUGH_SAMPLE_ROWS)
        assert conn.execute("SELECT current_setting('jit')").fetchone() == ("on",)  # put back as it was
    found = {name: sorted(detector.key for detector, _ in counts[(relation.oid, name)].reasons())
             for _, name in counts}
    assert found == {
        "contact": ["email"], "note": ["phone"], "doc": ["email"], "emails": ["email"], "ip": ["ip"],
        "card": ["card"], "not_card": [], "iban": ["iban"], "iban_in_text": ["iban"], "nir": ["nir"],
        "phone_fr": ["phone"], "phone_us": ["phone"], "plain": [], "versions": [], "pair_with_mail": ["email"],
    }
    assert counts[(relation.oid, "contact")].whole["email"] == 60
    note = counts[(relation.oid, "note")]
    assert note.contained["phone"] == 60 and note.whole["phone"] == 0
    reasons = dict((d.key, text) for d, text in counts[(relation.oid, "doc")].reasons())
    assert reasons["email"] == "60 of 120 sampled values are e-mail addresses"  # strings and numbers of the json


def test_a_sync_samples_fewer_rows_than_the_check(pg_db):
    with psycopg.connect(pg_db.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE many AS SELECT 'p' || g || '@x.org' AS contact FROM generate_series(1, 500) g")
        relation = read_catalog(conn).by_name()["public.many"]
        columns = pii.sampled_columns(relation)
        quick = pii.sample_content(conn, [(relation, columns)], {})
        thorough = pii.sample_content(conn, [(relation, columns)], {}, rows=pii.THOROUGH_SAMPLE_ROWS)
    assert quick[(relation.oid, "contact")].values == pii.SAMPLE_ROWS < pii.THOROUGH_SAMPLE_ROWS
    assert thorough[(relation.oid, "contact")].values == pii.THOROUGH_SAMPLE_ROWS


def test_big_tables_are_sampled_by_pages():
    assert pii.sample_clause(1000).as_string(None) == ""
    assert "TABLESAMPLE SYSTEM" in pii.sample_clause(10_000_000).as_string(None)
