"""Each rule: parsed from YAML, checked against the column's type, and its SQL evaluated on a real server."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tether.errors import ConfigError
from tether.sync.anonymize import type_problem
from tether.sync.expressions import Shape, bind, column_sql, max_output
from tether.sync.fakes import POOLS
from tether.sync.keys import per_sync_key
from tether.sync.rules import Rule, json_path, parse_rule, parse_rules

TEXT = Shape("text", "text", "S")
CITEXT = Shape("citext", "citext", "S")
KEY = per_sync_key()


@pytest.mark.parametrize("spec", [
    "fake_phone", "fake_iban", "fake_city", {"fake_name": {"locale": "en"}}, {"fake_first_name": {"consistent": True}},
    {"hash": {"length": 16, "case_insensitive": True}},
    {"fake_email": {"domain": "test.example", "case_sensitive": True}},
    {"shift_date": {"days": 30}}, {"shift_date": 7}, {"generalize": "year"}, {"generalize": "departement"},
    {"generalize": {"step": 5}}, {"noise": {"relative": 0.1}}, {"noise": {"absolute": 3}}, {"inet": "random"},
    {"inet": {"keep_prefix": 24}}, {"json": {"a.b": "fake_name", "c.*.d": None}}, {"each": "fake_email"},
    {"scrub": ["email", "iban"]}, "scrub", {"same_as": "auth.users.id"}, {"each": {"same_as": "a.b.c"}},
    {"json": {"owner": {"same_as": "auth.users.id"}}},
], ids=repr)
def test_new_rules_parse(spec):
    rule = parse_rule(spec)
    assert rule.kind == (spec if isinstance(spec, str) else next(iter(spec)))


@pytest.mark.parametrize("spec", [
    {"fake_phone": {"x": 1}}, {"fake_name": {"locale": "de"}}, {"hash": {"length": 65}},
    {"fake_email": {"domain": "not a domain"}}, {"shift_date": {"days": 0}}, {"shift_date": "soon"},
    {"generalize": "week"}, {"noise": {"relative": 1.5}}, {"noise": {"percent": 3}}, {"inet": {"keep_prefix": 32}},
    {"json": {}}, {"json": {"a..b": "fake_name"}}, {"json": {"a": {"json": {"b": "hash"}}}}, "each",
    {"each": {"each": "hash"}}, {"scrub": ["ssn"]}, {"same_as": "users.id"}, {"fake_first_name": {"consistent": 1}},
], ids=repr)
def test_bad_new_rules_are_refused(spec):
    with pytest.raises(ValueError):
        parse_rule(spec)


def test_rules_file_top_level_keys():
    rules = parse_rules({"locale": "en", "tables": {"app.t": {"c": "fake_name"}},
                         "quasi_identifiers": {"app.t": {"columns": ["c"], "min_group": 3}}}, "f")
    assert rules.locale == "en" and rules.quasi_identifiers[0].min_group == 3
    for bad in ({"locale": "de"}, {"quasi_identifiers": {"app.t": {"columns": ["c"], "min_group": 1}}},
                {"quasi_identifiers": ["app.t"]}):
        with pytest.raises(ConfigError):
            parse_rules(bad, "f")


@pytest.mark.parametrize(("rule", "shape", "problem"), [
    (Rule("fake_phone"), Shape("bigint", "int8", "N"), None),
    (Rule("fake_phone"), Shape("date", "date", "D"), "text or integer"),
    (Rule("shift_date", (("days", 3),)), TEXT, "date or timestamp"),
    (Rule("generalize", (("to", "year"),)), TEXT, "date or timestamp"),
    (Rule("generalize", (("to", "departement"),)), Shape("integer", "int4", "N"), None),
    (Rule("noise", (("relative", 0.1),)), TEXT, "numeric"),
    (Rule("inet", (("keep_prefix", 16), ("keep_prefix_v6", 32))), TEXT, "inet column"),
    (Rule("json", (("paths", (("a", Rule("fake_name")),)),)), TEXT, "json or jsonb"),
    (Rule("json", (("paths", (("a", Rule("shift_date", (("days", 3),))),)),)), Shape("jsonb", "jsonb", "U"),
     "values inside json are text"),
    (Rule("each", (("rule", Rule("fake_email")),)), TEXT, "array column"),
    (Rule("each", (("rule", Rule("fake_email")),)), Shape("text[]", "_text", "A", element=TEXT), None),
    (Rule("each", (("rule", Rule("fake_email")),)),
     Shape("integer[]", "_int4", "A", element=Shape("integer", "int4", "N")), "each: fake_email needs a text"),
    (Rule("hash"), Shape("numeric", "numeric", "N"), "text, uuid and integer"),
], ids=lambda value: getattr(value, "kind", None) or getattr(value, "type_sql", None) or repr(value))
def test_rules_fit_types(rule, shape, problem):
    found = type_problem(rule, shape)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_json_paths():
    assert json_path("address.city") == ("address", "city")
    assert json_path("contacts.*.email") == ("contacts", "*", "email")


def test_outputs_fit_the_column_length():
    # user_ + hex + @example.com: 32 hex digits when they fit, fewer in a narrower column, never more than it holds.
    assert max_output(bind(Rule("fake_email"), Shape("character varying(60)", "varchar", "S", 60), KEY)) == 49
    assert max_output(bind(Rule("fake_email"), Shape("character varying(40)", "varchar", "S", 40), KEY)) == 40
    assert max_output(bind(Rule("hash"), Shape("character varying(20)", "varchar", "S", 20), KEY)) == 20
    assert max(map(len, POOLS["fr"].first_names)) == max_output(bind(Rule("fake_first_name"), TEXT, KEY))


@pytest.fixture(scope="module")
def keyed(pg_server) -> Iterator[psycopg.Connection]:
    """A session that holds a per-sync key, as the copy's source sessions do."""
    options = " ".join(f"-c {name}={value}" for name, value in KEY.session_settings.items())
    with psycopg.connect(pg_server.admin.conninfo(), options=options, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        yield conn


def evaluate(conn: psycopg.Connection, rule: Rule, value: object, shape: Shape = TEXT, **bound: object) -> object:
    resolved = bind(rule, shape, KEY, **bound)  # type: ignore[arg-type]
    literal = sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(shape.type_sql))
    row = conn.execute(sql.SQL("SELECT {}").format(column_sql(resolved, literal))).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize("phone", ["06 12 34 56 78", "+33 6 12 34 56 78", "0612345678", "+33 (0)6 12 34 56 78",
                                   "+1 (415) 555-2671", "06.12.34.56.78", "+44 20 7946 0958"])
def test_fake_phones_keep_the_format_and_draw_the_digits(keyed, phone):
    fakes = {evaluate(keyed, Rule("fake_phone"), phone) for _ in range(5)}
    shape = re.sub(r"\d", "9", phone)
    digits = re.sub(r"\D", "", phone)
    keep = max(1, len(digits) - 8)
    for fake in fakes:
        assert re.sub(r"\d", "9", fake) == shape and re.sub(r"\D", "", fake)[:keep] == digits[:keep]
    assert len(fakes) > 1 and phone not in fakes


def test_fake_ibans_are_valid_and_follow_the_grouping(keyed):
    for source in ("FR7630006000011234567890189", "FR76 3000 6000 0112 3456 7890 189"):
        fake = evaluate(keyed, Rule("fake_iban"), source)
        compact = fake.replace(" ", "")
        assert re.fullmatch(r"FR\d{25}", compact) and (" " in fake) == (" " in source)
        assert int("".join(str(int(char, 36)) for char in compact[4:] + compact[:4])) % 97 == 1


def test_integer_keys_get_a_keyed_permutation(keyed):
    shape = Shape("smallint", "int2", "N")
    resolved = bind(Rule("hash"), shape, KEY)
    query = sql.SQL("SELECT count(DISTINCT v), count(*) FILTER (WHERE (v < 0) <> (g < 0)), count(*) FILTER "
                    "(WHERE v = g) FROM (SELECT g, {} AS v FROM generate_series(-32768, 32767) AS g) AS p").format(
        column_sql(resolved, sql.SQL("g::smallint")))
    distinct, sign_changed, fixed = keyed.execute(query).fetchone()
    assert distinct == 65536 and sign_changed == 0 and fixed < 20  # injective, negatives stay negative


def test_case_insensitive_pseudonyms_match_lower_joins(keyed):
    first = evaluate(keyed, Rule("fake_email"), "Jeanne.Dupont@Orange.fr")
    assert first == evaluate(keyed, Rule("fake_email"), "jeanne.dupont@orange.fr")
    assert evaluate(keyed, Rule("hash"), "Bob", CITEXT) == evaluate(keyed, Rule("hash"), "bob", CITEXT)
    assert evaluate(keyed, Rule("hash"), "Bob") != evaluate(keyed, Rule("hash"), "bob")
    sensitive = Rule("fake_email", (("case_sensitive", True),))
    assert evaluate(keyed, sensitive, "A@x.org") != evaluate(keyed, sensitive, "a@x.org")


@pytest.mark.parametrize(("rule", "value", "shape", "check"), [
    (Rule("generalize", (("to", "departement"),)), "75011", TEXT, lambda out: out == "75000"),
    (Rule("generalize", (("to", "departement"),)), "2A004", TEXT, lambda out: out == "2A000"),
    (Rule("generalize", (("to", "departement"),)), "97411", TEXT, lambda out: out == "97400"),
    (Rule("generalize", (("to", "departement"),)), 75011, Shape("integer", "int4", "N"), lambda out: out == 75000),
    (Rule("generalize", (("to", "year"),)), "1987-06-05", Shape("date", "date", "D"),
     lambda out: out == dt.date(1987, 1, 1)),
    (Rule("generalize", (("step", 5),)), 43, Shape("integer", "int4", "N"), lambda out: out == 40),
    (Rule("shift_date", (("days", 3),)), "2000-01-10", Shape("date", "date", "D"),
     lambda out: 1 <= abs((out - dt.date(2000, 1, 10)).days) <= 3),
    (Rule("noise", (("relative", 0.1),)), 1000, Shape("integer", "int4", "N"), lambda out: 900 <= out <= 1100),
    (Rule("inet", (("keep_prefix", 16), ("keep_prefix_v6", 32))), "82.64.1.2/24", Shape("inet", "inet", "I"),
     lambda out: str(out).startswith("82.64.") and str(out).endswith("/24")),
    (Rule("inet", (("keep_prefix", 16), ("keep_prefix_v6", 32))), "2a01:cb00:1:2::5", Shape("inet", "inet", "I"),
     lambda out: str(out).startswith("2a01:cb00:")),
    (Rule("scrub", (("kinds", ("email", "phone", "iban", "card", "nir", "ip")),)),
     "Écrire à jean@x.fr ou 06 12 34 56 78, IBAN FR76 3000 6000 0112 3456 7890 189, carte 4111 1111 1111 1111, "
     "depuis 82.64.1.2; commande 8f3a9c2e1b", TEXT,
     lambda out: out == "Écrire à [email] ou [phone], IBAN [iban], carte [card], depuis [ip]; commande 8f3a9c2e1b"),
    (Rule("json", (("paths", (("a.b", Rule("fake_city")), ("list.*.mail", Rule("fake_email")), ("gone", Rule("null")),
                              ("n", Rule("fixed", (("value", 7),))))),)),
     '{"a": {"b": "Lyon", "c": 1}, "list": [{"mail": "x@y.fr"}, {"other": 2}], "gone": "z", "n": 3, "keep": "k"}',
     Shape("jsonb", "jsonb", "U"),
     lambda out: out["a"]["b"] in POOLS["fr"].cities and out["a"]["c"] == 1 and out["list"][1] == {"other": 2}
     and out["list"][0]["mail"].startswith("user_") and out["gone"] is None and out["n"] == 7 and out["keep"] == "k"),
    (Rule("json", (("paths", (("missing.path", Rule("fake_city")),)),)), '{"a": 1}', Shape("json", "json", "U"),
     lambda out: out == {"a": 1}),
    (Rule("each", (("rule", Rule("fake_email")),)), ["A@x.fr", None, "b@y.fr"],
     Shape("text[]", "_text", "A", element=TEXT),
     lambda out: len(out) == 3 and out[1] is None and all(v.startswith("user_") for v in (out[0], out[2]))),
    (Rule("fake_name"), "Jean Dupont", Shape("character varying(6)", "varchar", "S", 6), lambda out: len(out) <= 6),
    (Rule("hash"), "550e8400-e29b-41d4-a716-446655440000", Shape("uuid", "uuid", "U"),
     lambda out: str(out) != "550e8400-e29b-41d4-a716-446655440000"),
], ids=lambda value: getattr(value, "kind", None) if isinstance(value, Rule) else None)
def test_rule_outputs(keyed, rule, value, shape, check):
    out = evaluate(keyed, rule, value, shape)
    assert check(out), out


@pytest.mark.parametrize("kind", ["fake_name", "fake_first_name", "fake_last_name", "fake_city", "fake_postcode",
                                  "fake_address", "fake_phone", "fake_iban", "fake_email", "hash", "mask",
                                  "scrub", "fixed", "generalize", "shift_date"])
def test_null_stays_null(keyed, kind):
    options = {"fixed": (("value", "x"),), "generalize": (("to", "departement"),), "shift_date": (("days", 3),),
               "mask": (("char", "*"), ("keep_first", 1), ("keep_last", 2)),
               "scrub": (("kinds", ("email",)),)}.get(kind, ())
    shape = Shape("date", "date", "D") if kind == "shift_date" else TEXT
    assert evaluate(keyed, Rule(kind, options), None, shape) is None


def test_a_first_name_column_gets_first_names(keyed):
    from tether.sync.anonymize import _refined

    assert _refined(Rule("fake_name"), "prenom")[0].kind == "fake_first_name"
    assert _refined(Rule("fake_name"), "firstName")[0].kind == "fake_first_name"
    assert _refined(Rule("fake_name"), "nom_de_famille")[0].kind == "fake_last_name"
    assert _refined(Rule("fake_name"), "full_name")[0].kind == "fake_name"
    assert evaluate(keyed, Rule("fake_first_name"), "Jean") in POOLS["fr"].first_names
