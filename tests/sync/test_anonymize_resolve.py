"""Binding the rules to the source, case by case, without a server (issue 21, mutation testing).

resolve_rules reads only the catalog and the facts it is given, so every case here is a small hand-made catalog:
which rule each column ends up with (and why, word for word), and every mistake's message as the user reads it.
"""

from __future__ import annotations

import pytest
from psycopg import sql

from tether.errors import ConfigError
from tether.sync.anonymization import Anonymization
from tether.sync.anonymize import (
    AppliedRule,
    applied_rules,
    column_expression,
    keyed_tables,
    resolve_rules,
    rule_problem,
    shape_of,
    type_problem,
)
from tether.sync.catalog import Column, Relation, ServerInfo, SourceCatalog
from tether.sync.expressions import Shape, bind, column_sql
from tether.sync.facts import ColumnFacts, ForeignKeyColumns, SourceFacts
from tether.sync.keys import SERVER, PseudonymKey, per_sync_key
from tether.sync.plan import Selection
from tether.sync.rules import NO_RULES, QuasiIdentifiers, Rule, RuleSet, parse_rule

KEY = per_sync_key()
TEXT = Shape("text", "text", "S")
INT8 = Shape("bigint", "int8", "N")
DATE = Shape("date", "date", "D")
FAIL_END = (". Nothing was copied. Fix the rules file (a rule for a missing table or column is refused so that a "
            "typo cannot leak the real one).")


def _column(name: str, type_name: str = "text", category: str = "S", *, type_sql: str | None = None,
            not_null: bool = False, generated: bool = False) -> Column:
    return Column(name, 1, type_sql or type_name, type_name, category, not_null, generated, True)


def _id(name: str = "id") -> Column:
    return _column(name, "int8", "N", type_sql="bigint", not_null=True)


def _relation(oid: int, qualified: str, *columns: Column, kind: str = "r", root: int | None = None) -> Relation:
    schema, name = qualified.split(".")
    return Relation(oid, schema, name, kind, "p", root, False, oid, True, columns)


def _catalog(*relations: Relation, parents: dict[int, list[int]] | None = None) -> SourceCatalog:
    server = ServerInfo(150000, "1", "t0", 1, "prod", "UTF8", "reader")
    return SourceCatalog(server, {relation.oid: relation for relation in relations}, [], [], {}, set(),
                         inheritance_parents=parents or {})


def _rules(tables: dict[str, dict[str, object]], **kwargs: object) -> RuleSet:
    parsed = {table: {column: parse_rule(spec) for column, spec in columns.items()}
              for table, columns in tables.items()}
    return RuleSet("rules.yaml", parsed, **kwargs)  # type: ignore[arg-type]


def _fk(name: str, table: int, columns: tuple[str, ...], references: int,
        referenced: tuple[str, ...]) -> ForeignKeyColumns:
    return ForeignKeyColumns(name, table, columns, references, referenced)


def _resolve(rules: RuleSet, catalog: SourceCatalog, facts: SourceFacts | None = None):
    return resolve_rules(rules, catalog, facts, KEY)


def _problems(rules: RuleSet, catalog: SourceCatalog, facts: SourceFacts | None = None) -> str:
    with pytest.raises(ConfigError) as raised:
        _resolve(rules, catalog, facts)
    message = raised.value.message
    start = "The anonymization rules in rules.yaml do not match the source database: "
    assert message.startswith(start) and message.endswith(FAIL_END), message
    return message[len(start):-len(FAIL_END)]


# --- shape_of --------------------------------------------------------------------------------------------------


VARCHAR = _column("v", "varchar", type_sql="character varying(12)")
ARRAY = _column("a", "_text", "A", type_sql="text[]")


@pytest.mark.parametrize(("column", "facts", "table", "shape"), [
    (VARCHAR, None, None, Shape("character varying(12)", "varchar", "S")),
    (VARCHAR, SourceFacts({(7, "v"): ColumnFacts(1, 12, False)}), 7, Shape("character varying(12)", "varchar", "S",
                                                                             12)),
    # Facts without the table they belong to are not looked at.
    (VARCHAR, SourceFacts({(7, "v"): ColumnFacts(1, 12, False)}), None, Shape("character varying(12)", "varchar",
                                                                                "S")),
    (VARCHAR, SourceFacts({(7, "v"): ColumnFacts(1, 12, False)}), 8, Shape("character varying(12)", "varchar", "S")),
    (ARRAY, None, None, Shape("text[]", "_text", "A", None, Shape("text", "text", "S"))),
    (ARRAY, SourceFacts({(7, "a"): ColumnFacts(1, 5, False, "varchar", "S", "character varying(5)")}), 7,
     Shape("text[]", "_text", "A", None, Shape("character varying(5)", "varchar", "S", 5))),
    (ARRAY, SourceFacts({(7, "a"): ColumnFacts(1, None, False, "int4", "N", "integer")}), 7,
     Shape("text[]", "_text", "A", None, Shape("integer", "int4", "N"))),
    # Facts that leave the element out: the column's own type names it.
    (ARRAY, SourceFacts({(7, "a"): ColumnFacts(1, 9, False)}), 7,
     Shape("text[]", "_text", "A", None, Shape("text", "text", "S", 9))),
], ids=["plain", "length", "no-table", "other-table", "array", "array-varchar", "array-int", "array-no-element"])
def test_shape_of(column, facts, table, shape):
    assert shape_of(column, facts, table) == shape


# --- what the user reads about a rule that does not fit ----------------------------------------------------------


@pytest.mark.parametrize(("rule", "column", "unique", "problem"), [
    ("keep", _column("c", generated=True), False,
     "a generated column is computed again locally; anonymize the columns it is computed from"),
    (None, _column("c", not_null=True), False, "the null rule cannot apply to a NOT NULL column"),
    (None, _column("c"), False, None),
    (None, _column("c"), True, None),  # NULLs never collide in a unique index
    (None, _column("c", not_null=True), True, "the null rule cannot apply to a NOT NULL column"),
    ({"fixed": None}, _column("c", not_null=True), False, "a fixed null cannot apply to a NOT NULL column"),
    ({"fixed": None}, _column("c"), False, None),
    ({"fixed": "x"}, _column("c", not_null=True), False, None),
    ({"fixed": "x"}, _column("c"), True, "the column is unique and fixed would repeat values; use fake_email or hash"),
    ("fake_name", _column("c"), True, "the column is unique and fake_name would repeat values; use fake_email or hash"),
    ("fake_email", _column("c"), True, None),
    ("hash", _column("c"), True, None),
    ("keep", _column("c"), True, None),
    ("fake_email", _column("c", "int4", "N", type_sql="integer"), False,
     "fake_email needs a text column, not integer"),
], ids=lambda value: repr(value)[:30])
def test_rule_problem_messages(rule, column, unique, problem):
    assert rule_problem(parse_rule(rule), column, unique) == problem


def test_rule_problem_judges_the_shape_it_is_given():
    integer = _column("c", "int4", "N", type_sql="integer")
    assert rule_problem(Rule("fake_email"), integer, shape=TEXT) is None
    assert rule_problem(Rule("hash"), _column("c"), shape=Shape("numeric", "numeric", "N")) == (
        "hash works on text, uuid and integer columns, not numeric")


NUMERIC = Shape("numeric(8,2)", "numeric", "N")
UUID = Shape("uuid", "uuid", "U")
JSONB = Shape("jsonb", "jsonb", "U")
TEXT_ARRAY = Shape("text[]", "_text", "A", element=TEXT)
INT_ARRAY = Shape("integer[]", "_int4", "A", element=Shape("integer", "int4", "N"))
TEXT_KINDS = ("fake_email", "fake_name", "fake_first_name", "fake_last_name", "fake_city", "fake_address",
              "fake_iban", "mask", "scrub")


@pytest.mark.parametrize(("rule", "shape", "problem"), [
    *((kind, DATE, f"{kind} needs a text column, not date") for kind in TEXT_KINDS),
    *(("mask", Shape(name, name, "S"), None) for name in ("text", "varchar", "bpchar", "citext", "name")),
    ("fake_phone", DATE, "fake_phone needs a text or integer column, not date"),
    ("fake_postcode", UUID, "fake_postcode needs a text or integer column, not uuid"),
    ("fake_phone", INT8, None), ("fake_postcode", Shape("smallint", "int2", "N"), None),
    ("fake_postcode", Shape("integer", "int4", "N"), None), ("fake_phone", TEXT, None),
    ("hash", NUMERIC, "hash works on text, uuid and integer columns, not numeric(8,2)"),
    ("hash", UUID, None), ("hash", INT8, None), ("hash", TEXT, None),
    (["random_date", "1950-01-01", "2000-01-01"], TEXT, "random_date needs a date or timestamp column, not text"),
    ({"shift_date": 3}, TEXT, "shift_date needs a date or timestamp column, not text"),
    *(({"shift_date": 3}, Shape(name, name, "D"), None) for name in ("date", "timestamp", "timestamptz")),
    ({"random_int": [1, 9]}, TEXT, "random_int needs a numeric column, not text"),
    ({"random_number": [0, 1]}, TEXT, "random_number needs a numeric column, not text"),
    ({"noise": {"relative": 0.1}}, TEXT, "noise needs a numeric column, not text"),
    ({"noise": {"relative": 0.1}}, NUMERIC, None),
    ({"generalize": "year"}, TEXT, "generalize year needs a date or timestamp column, not text"),
    ({"generalize": "month"}, INT8, "generalize month needs a date or timestamp column, not bigint"),
    ({"generalize": "month"}, DATE, None),
    ({"generalize": "departement"}, DATE,
     "generalize departement needs a text or integer postcode column, not date"),
    ({"generalize": "departement"}, TEXT, None), ({"generalize": "departement"}, INT8, None),
    ({"generalize": {"step": 5}}, TEXT, "generalize step needs a numeric column, not text"),
    ({"generalize": {"step": 5}}, NUMERIC, None),
    ({"inet": "random"}, TEXT, "inet needs an inet column, not text (scrub [ip] cleans addresses inside text)"),
    ({"inet": "random"}, Shape("inet", "inet", "I"), None),
    ({"json": {"a": "fake_name"}}, TEXT, "json needs a json or jsonb column, not text"),
    ({"json": {"a": "fake_name"}}, Shape("json", "json", "U"), None),
    ({"json": {"a": "fake_name", "b.c": {"shift_date": 3}}}, JSONB,
     "json path b.c: shift_date needs a date or timestamp column, not text (values inside json are text)"),
    ({"each": "fake_email"}, TEXT, "each needs an array column, not text"),
    ({"each": "fake_email"}, INT_ARRAY, "each: fake_email needs a text column, not integer"),
    ({"each": "fake_email"}, TEXT_ARRAY, None),
    ({"fixed": None}, TEXT, None),
], ids=lambda value: repr(value)[:40])
def test_type_problem_messages(rule, shape, problem):
    spec = {rule[0]: rule[1:]} if isinstance(rule, list) else rule
    assert type_problem(parse_rule(spec), shape) == problem


def test_type_problem_refuses_a_fixed_null_only_where_null_is_not_allowed():
    assert type_problem(Rule("fixed", (("value", None),)), TEXT, True) == (
        "a fixed null cannot apply to a NOT NULL column")
    assert type_problem(Rule("fixed", (("value", "x"),)), TEXT, True) is None


# --- applied rules and expressions -------------------------------------------------------------------------------


def test_applied_rules_are_listed_by_column():
    relation = _relation(5, "app.people", _column("a"), _column("b"))
    applied = applied_rules(relation, {"b": Rule("hash"), "a": Rule("fixed", (("value", "x"),))})
    assert applied == [AppliedRule("app.people", "a", 'fixed {"value": "x"}'), AppliedRule("app.people", "b", "hash")]
    assert applied[1].as_dict() == {"table": "app.people", "column": "b", "rule": "hash"}


def test_column_expression_binds_a_bare_rule_to_the_column_and_keeps_a_bound_one():
    column = _column("code", "int4", "N", type_sql="integer")
    bound = bind(Rule("fixed", (("value", 7),)), Shape("integer", "int4", "N"), KEY)
    assert column_expression(bound, column).as_string() == column_sql(bound, sql.Identifier("code")).as_string()
    assert column_expression(Rule("fixed", (("value", 7),)), column).as_string() == (
        column_sql(bound, sql.Identifier("code")).as_string())
    # A rule bound elsewhere keeps its own shape: it is not bound again to this column's.
    other = bind(Rule("fixed", (("value", 7),)), Shape("bigint", "int8", "N"), KEY)
    assert column_expression(other, column).as_string() == column_sql(other, sql.Identifier("code")).as_string()
    assert "bigint" in column_expression(other, column).as_string()


# --- resolve_rules: mistakes ------------------------------------------------------------------------------------


def test_every_mistake_in_the_rules_is_named_at_once():
    catalog = _catalog(_relation(1, "app.t", _column("a"), _column("b")), _relation(2, "app.v", _column("a"),
                                                                                  kind="v"))
    rules = _rules({"app.nope": {"a": "hash"}, "app.v": {"a": "hash"}, "app.t": {"a": "hash", "zz": "hash"}},
                   quasi_identifiers=(QuasiIdentifiers("app.t", ("b", "qq")), QuasiIdentifiers("app.gone", ("x",))))
    assert _problems(rules, catalog) == (
        "table app.nope does not exist in the source; app.v is not a table; column app.t.zz does not exist; "
        "quasi_identifiers: column app.t.qq does not exist; quasi_identifiers: column app.gone.x does not exist")


def test_rules_that_do_not_fit_their_columns_are_named_with_their_column():
    catalog = _catalog(_relation(1, "app.t", _column("a", not_null=True), _column("b", "date", "D")),
                       _relation(2, "app.u", _column("c")))
    rules = _rules({"app.t": {"a": None, "b": "fake_email"}, "app.u": {"c": "fake_city"}})
    assert _problems(rules, catalog) == ("app.t.a: the null rule cannot apply to a NOT NULL column; "
                                         "app.t.b: fake_email needs a text column, not date")


def test_a_partitioned_table_takes_rules():
    catalog = _catalog(_relation(1, "app.events", _column("who"), kind="p"))
    resolved = _resolve(_rules({"app.events": {"who": "fake_city"}}), catalog)
    assert resolved == {1: {"who": bind(Rule("fake_city"), TEXT, KEY)}}


# --- resolve_rules: which rule each column gets, and why -------------------------------------------------------


def test_rules_are_bound_to_their_column_shape_locale_and_key():
    catalog = _catalog(_relation(1, "app.people", _column("email", "varchar", type_sql="character varying(40)"),
                                 _column("city"), _column("note")))
    facts = SourceFacts({(1, "email"): ColumnFacts(1, 40, False)})
    rules = _rules({"app.people": {"email": "fake_email", "city": "fake_city"}}, locale="en")
    resolved = resolve_rules(rules, catalog, facts, KEY)
    shape = Shape("character varying(40)", "varchar", "S", 40)
    assert resolved == {1: {"email": bind(Rule("fake_email"), shape, KEY, locale="en"),
                            "city": bind(Rule("fake_city"), TEXT, KEY, locale="en")}}
    assert resolved[1]["email"].key is KEY and resolved[1]["city"].locale == "en"
    assert keyed_tables(resolved) == {1}  # fake_email is keyed; fake_city alone is not
    assert keyed_tables({1: {"city": resolved[1]["city"]}}) == set()


def test_without_a_key_or_facts_each_resolution_makes_its_own_key():
    catalog = _catalog(_relation(1, "app.people", _column("email")))
    resolved = resolve_rules(_rules({"app.people": {"email": "hash"}}), catalog)
    assert resolved == {1: {"email": bind(Rule("hash"), TEXT, KEY)}}
    assert resolved[1]["email"].key.session_settings != KEY.session_settings


def test_a_first_name_column_gets_first_names_and_says_why():
    catalog = _catalog(_relation(1, "app.people", _column("prenom"), _column("surname"), _column("full_name")))
    resolved = _resolve(_rules({"app.people": {"prenom": "fake_name", "surname": "fake_name",
                                               "full_name": "fake_name"}}), catalog)
    assert resolved[1] == {
        "full_name": bind(Rule("fake_name"), TEXT, KEY),
        "prenom": bind(Rule("fake_first_name"), TEXT, KEY, origin="a first-name column: first names only"),
        "surname": bind(Rule("fake_last_name"), TEXT, KEY, origin="a last-name column: last names only")}


@pytest.mark.parametrize(("name", "kind"), [
    *((word, "fake_first_name") for word in ("first", "firstname", "prenom", "prenoms", "given", "givenname",
                                             "forename")),
    *((word, "fake_last_name") for word in ("last", "lastname", "surname", "family", "familyname", "nom",
                                            "patronyme", "maiden")),
    ("full_last_name", "fake_name"), ("display_name", "fake_name"), ("first_full", "fake_first_name"),
])
def test_name_columns(name, kind):
    catalog = _catalog(_relation(1, "app.people", _column(name)))
    resolved = _resolve(_rules({"app.people": {name: {"fake_name": {"locale": "en"}}}}), catalog)
    assert (resolved[1][name].kind, resolved[1][name].options) == (kind, (("locale", "en"),))


def test_partitions_and_children_take_their_parents_rules_nearest_first():
    catalog = _catalog(
        _relation(1, "app.base", _column("email"), _column("city"), _column("note"), kind="p"),
        _relation(2, "app.mid", _column("email"), _column("city"), _column("note"), root=1, kind="p"),
        _relation(3, "app.leaf", _column("email"), _column("city"), _column("note"), _column("prenom")),
        _relation(4, "app.other", _column("email")),
        parents={3: [2]})
    rules = _rules({"app.base": {"email": "fake_email", "city": "fake_city", "note": {"fixed": "a"}},
                    "app.mid": {"city": "fake_address"},
                    "app.leaf": {"note": {"fixed": "c"}, "prenom": "fake_name"}})
    resolved = _resolve(rules, catalog)
    assert resolved[3] == {
        "email": bind(Rule("fake_email"), TEXT, KEY, origin="from app.base"),
        "city": bind(Rule("fake_address"), TEXT, KEY, origin="from app.mid"),
        "note": bind(Rule("fixed", (("value", "c"),)), TEXT, KEY),
        "prenom": bind(Rule("fake_first_name"), TEXT, KEY, origin="a first-name column: first names only")}
    assert resolved[2]["city"].origin == "" and resolved[2]["email"].origin == "from app.base"
    assert 4 not in resolved


def test_a_parents_rule_reaches_only_the_columns_a_child_has():
    catalog = _catalog(_relation(1, "app.base", _column("email"), _column("extra")),
                       _relation(2, "app.child", _column("email")), parents={2: [1]})
    resolved = _resolve(_rules({"app.base": {"extra": "fake_city", "email": "fake_name"}}), catalog)
    assert resolved[2] == {"email": bind(Rule("fake_name"), TEXT, KEY, origin="from app.base")}


def test_a_parents_rule_combines_with_the_first_name_note():
    catalog = _catalog(_relation(1, "app.base", _column("firstName")), _relation(2, "app.p1", _column("firstName"),
                                                                                  root=1))
    resolved = _resolve(_rules({"app.base": {"firstName": "fake_name"}}), catalog)
    assert resolved[2]["firstName"].origin == "from app.base; a first-name column: first names only"


# --- resolve_rules: foreign keys -------------------------------------------------------------------------------


PEOPLE = _relation(1, "app.people", _id(), _column("email"))
ORDERS = _relation(2, "app.orders", _id(), _column("buyer", "int8", "N", type_sql="bigint"),
                   _column("code", "int4", "N", type_sql="integer"))
BUYER_FK = _fk("orders_buyer_fkey", 2, ("buyer",), 1, ("id",))


def _with_keys(*keys: ForeignKeyColumns) -> SourceFacts:
    return SourceFacts(foreign_keys=list(keys))


def test_a_reference_follows_its_keys_rule_and_both_are_keyed():
    resolved = _resolve(_rules({"app.people": {"id": "hash"}}), _catalog(PEOPLE, ORDERS), _with_keys(BUYER_FK))
    assert resolved == {
        1: {"id": bind(Rule("hash"), INT8, KEY, deterministic=True)},
        2: {"buyer": bind(Rule("hash"), INT8, KEY, deterministic=True, canonical=INT8,
                          origin="follows foreign key orders_buyer_fkey to app.people.id")}}


def test_a_reference_to_a_table_outside_the_catalog_is_ignored():
    facts = _with_keys(_fk("x_fkey", 2, ("buyer",), 99, ("id",)), _fk("y_fkey", 99, ("id",), 1, ("id",)))
    resolved = _resolve(_rules({"app.people": {"id": "hash"}}), _catalog(PEOPLE, ORDERS), facts)
    assert resolved == {1: {"id": bind(Rule("hash"), INT8, KEY)}}


def test_a_random_fake_on_a_referenced_key_is_drawn_by_the_key_instead():
    people = _relation(1, "app.people", _column("login"))
    orders = _relation(2, "app.orders", _column("login"))
    facts = _with_keys(_fk("orders_login_fkey", 2, ("login",), 1, ("login",)))
    for kind in ("fake_name", "fake_first_name", "fake_last_name", "fake_city", "fake_postcode", "fake_address",
                 "fake_phone", "fake_iban"):
        resolved = _resolve(_rules({"app.people": {"login": kind}}), _catalog(people, orders), facts)
        assert resolved[1]["login"] == bind(Rule(kind), TEXT, KEY, deterministic=True), kind
        assert keyed_tables(resolved) == {1, 2}


@pytest.mark.parametrize("spec", [{"random_int": [1, 9]}, {"noise": {"relative": 0.1}},
                                  {"random_number": [1, 9]}])
def test_a_random_rule_on_a_referenced_key_is_refused(spec):
    rules = _rules({"app.people": {"id": spec}})
    kind = next(iter(spec))
    why = ("other columns reference this one (foreign keys or same_as), so its rule must give the same pseudonym "
           f"for the same value: {kind} is random; use hash")
    # The reference took the key's rule, so it is named too.
    assert _problems(rules, _catalog(PEOPLE, ORDERS), _with_keys(BUYER_FK)) == (
        f"app.people.id: {why}; app.orders.buyer: {why}")


def test_a_rule_on_a_reference_to_a_kept_key_is_refused():
    facts = _with_keys(BUYER_FK)
    assert _problems(_rules({"app.orders": {"buyer": "hash"}}), _catalog(PEOPLE, ORDERS), facts) == (
        "app.orders.buyer: references app.people.id (foreign key orders_buyer_fkey), which is kept as it is: a rule "
        "here would break the reference; put the rule on the referenced column, and this one follows")
    # keep and same_as on the reference break nothing.
    assert _resolve(_rules({"app.orders": {"buyer": "keep"}}), _catalog(PEOPLE, ORDERS), facts) == {
        2: {"buyer": bind(Rule("keep"), INT8, KEY)}}
    assert _resolve(_rules({"app.orders": {"buyer": {"same_as": "app.people.id"}}}), _catalog(PEOPLE, ORDERS),
                    facts) == {2: {"buyer": bind(Rule("keep"), INT8, KEY, origin="same as app.people.id, which is "
                                                                                   "kept")}}


def test_a_rule_on_a_reference_to_a_key_kept_on_purpose_is_refused_too():
    """`keep` on the key keeps it as surely as no rule does: a rule on its reference would break the join."""
    facts = _with_keys(_fk("f", 2, ("code",), 1, ("id",)))
    assert _problems(_rules({"app.people": {"id": "keep"}, "app.orders": {"code": "hash"}}),
                     _catalog(PEOPLE, ORDERS), facts) == (
        "app.orders.code: references app.people.id (foreign key f), which is kept as it is: a rule here would break "
        "the reference; put the rule on the referenced column, and this one follows")
    resolved = _resolve(_rules({"app.people": {"id": "keep"}, "app.orders": {"code": "keep"}}),
                        _catalog(PEOPLE, ORDERS), facts)
    assert resolved == {1: {"id": bind(Rule("keep"), INT8, KEY)},
                        2: {"code": bind(Rule("keep"), Shape("integer", "int4", "N"), KEY)}}


def test_a_reference_with_another_rule_than_its_key_is_refused():
    rules = _rules({"app.people": {"id": "hash"}, "app.orders": {"buyer": {"random_int": [1, 9]}}})
    assert _problems(rules, _catalog(PEOPLE, ORDERS), _with_keys(BUYER_FK)) == (
        'app.orders.buyer: has random_int {"max": 9, "min": 1} but references app.people.id (foreign key '
        "orders_buyer_fkey), anonymized with hash: remove this column's rule, it follows its key")


def test_a_reference_that_repeats_its_keys_rule_holds_the_keys_pseudonyms():
    rules = _rules({"app.people": {"id": "hash"}, "app.orders": {"buyer": "hash"}})
    resolved = _resolve(rules, _catalog(PEOPLE, ORDERS), _with_keys(BUYER_FK))
    assert resolved[2] == {"buyer": bind(Rule("hash"), INT8, KEY, deterministic=True, canonical=INT8)}


def test_a_same_as_on_a_reference_to_its_own_key_follows_the_foreign_key():
    rules = _rules({"app.people": {"id": "hash"}, "app.orders": {"buyer": {"same_as": "app.people.id"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, ORDERS), _with_keys(BUYER_FK))
    assert resolved[2]["buyer"] == bind(Rule("hash"), INT8, KEY, deterministic=True, canonical=INT8,
                                        origin="same as app.people.id")


def test_a_composite_foreign_key_pairs_its_columns_in_order():
    people = _relation(1, "app.people", _column("a"), _column("b"))
    orders = _relation(2, "app.orders", _column("x"), _column("y"))
    facts = _with_keys(_fk("pair_fkey", 2, ("y", "x"), 1, ("a", "b")))
    resolved = _resolve(_rules({"app.people": {"a": "hash", "b": "fake_email"}}), _catalog(people, orders), facts)
    assert resolved[2] == {
        "y": bind(Rule("hash"), TEXT, KEY, deterministic=True, canonical=TEXT,
                  origin="follows foreign key pair_fkey to app.people.a"),
        "x": bind(Rule("fake_email"), TEXT, KEY, deterministic=True, canonical=TEXT,
                  origin="follows foreign key pair_fkey to app.people.b")}


def test_chains_of_foreign_keys_all_hold_the_first_keys_pseudonyms():
    uuid_key = _column("id", "uuid", "U")
    people = _relation(1, "app.people", uuid_key)
    orders = _relation(2, "app.orders", _column("buyer", "uuid", "U"))
    lines = _relation(3, "app.lines", _column("buyer"))
    # Listed child first: the chain resolves over several rounds.
    facts = _with_keys(_fk("lines_fkey", 3, ("buyer",), 2, ("buyer",)), _fk("orders_fkey", 2, ("buyer",), 1, ("id",)))
    resolved = _resolve(_rules({"app.people": {"id": "hash"}}), _catalog(people, orders, lines), facts)
    assert resolved[3] == {"buyer": bind(Rule("hash"), TEXT, KEY, deterministic=True, canonical=UUID,
                                         origin="follows foreign key lines_fkey to app.orders.buyer")}
    assert resolved[2]["buyer"].canonical == UUID and resolved[1]["id"].deterministic


# --- resolve_rules: same_as --------------------------------------------------------------------------------------


def test_same_as_takes_the_targets_rule_and_makes_both_keyed():
    events = _relation(3, "app.events", _column("who", "int8", "N", type_sql="bigint"))
    rules = _rules({"app.people": {"id": "hash"}, "app.events": {"who": {"same_as": "app.people.id"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, events))
    assert resolved == {1: {"id": bind(Rule("hash"), INT8, KEY, deterministic=True)},
                        3: {"who": bind(Rule("hash"), INT8, KEY, deterministic=True, canonical=INT8,
                                        origin="same as app.people.id")}}


def test_same_as_a_kept_column_keeps_it_and_is_not_keyed():
    events = _relation(3, "app.events", _column("who", "int8", "N", type_sql="bigint"))
    rules = _rules({"app.people": {"id": "keep"}, "app.events": {"who": {"same_as": "app.people.id"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, events))
    assert resolved == {1: {"id": bind(Rule("keep"), INT8, KEY)},
                        3: {"who": bind(Rule("keep"), INT8, KEY, deterministic=True, canonical=INT8,
                                        origin="same as app.people.id")}}
    assert keyed_tables(resolved) == set()


def test_chains_of_same_as_reach_the_first_key():
    events = _relation(3, "app.events", _column("who"), _column("also"))
    rules = _rules({"app.people": {"email": "fake_email"},
                    "app.events": {"also": {"same_as": "app.events.who"}, "who": {"same_as": "app.people.email"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, events))
    assert resolved[3] == {
        "who": bind(Rule("fake_email"), TEXT, KEY, deterministic=True, canonical=TEXT,
                    origin="same as app.people.email"),
        "also": bind(Rule("fake_email"), TEXT, KEY, deterministic=True, canonical=TEXT,
                     origin="same as app.events.who")}
    assert resolved[1]["email"].deterministic


@pytest.mark.parametrize("target", ["app.nope.id", "app.people.nope"])
def test_same_as_a_column_that_does_not_exist_is_refused(target):
    events = _relation(3, "app.events", _column("who"))
    rules = _rules({"app.events": {"who": {"same_as": target}}})
    assert _problems(rules, _catalog(PEOPLE, events)) == f"app.events.who: same_as {target}, which does not exist"


# --- resolve_rules: same_as inside json and arrays ---------------------------------------------------------------


DOCS = _relation(4, "app.docs", _column("body", "jsonb", "U"), _column("owners", "_int8", "A", type_sql="bigint[]"))


def test_same_as_inside_json_and_arrays_takes_the_keys_rule():
    rules = _rules({"app.people": {"id": "hash"},
                    "app.docs": {"body": {"json": {"owner": {"same_as": "app.people.id"}, "name": "fake_name"}},
                                 "owners": {"each": {"same_as": "app.people.id"}}}})
    resolved = _resolve(rules, _catalog(PEOPLE, DOCS))
    key_rule = bind(Rule("hash"), INT8, KEY, deterministic=True, canonical=INT8, origin="same as app.people.id")
    # Without facts the element's category is not known: "S" stands in (the sync always reads the facts).
    owners = Shape("bigint[]", "_int8", "A", element=Shape("bigint", "int8", "S"))
    assert resolved[4]["owners"] == bind(Rule("each", (("rule", key_rule),)), owners, KEY)
    body = resolved[4]["body"]
    assert body == bind(Rule("json", (("paths", (("owner", key_rule), ("name", Rule("fake_name")))),)),
                        Shape("jsonb", "jsonb", "U"), KEY)
    assert resolved[1]["id"].deterministic  # the key of a pseudonym inside json is keyed too


def test_same_as_inside_json_and_arrays_of_a_kept_key_keeps_the_value():
    rules = _rules({"app.docs": {"body": {"json": {"owner": {"same_as": "app.people.id"}}},
                                 "owners": {"each": {"same_as": "app.people.email"}}},
                    "app.people": {"email": {"same_as": "app.people.id"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, DOCS))
    assert resolved[4]["body"].option("paths") == (("owner", Rule("keep")),)
    assert resolved[4]["owners"].option("rule") == Rule("keep")


def test_same_as_inside_json_and_arrays_follows_the_key_to_its_canonical_column():
    events = _relation(3, "app.events", _column("who", "int8", "N", type_sql="bigint"))
    rules = _rules({"app.people": {"id": "hash"}, "app.events": {"who": {"same_as": "app.people.id"}},
                    "app.docs": {"owners": {"each": {"same_as": "app.events.who"}}}})
    resolved = _resolve(rules, _catalog(PEOPLE, events, DOCS))
    assert resolved[4]["owners"].option("rule") == bind(Rule("hash"), INT8, KEY, deterministic=True, canonical=INT8,
                                                        origin="same as app.events.who")


def test_same_as_inside_json_and_arrays_to_a_missing_column_is_refused():
    rules = _rules({"app.docs": {"body": {"json": {"a.b": {"same_as": "app.people.nope"}}},
                                 "owners": {"each": {"same_as": "app.gone.id"}}}})
    assert _problems(rules, _catalog(PEOPLE, DOCS)) == (
        "app.docs.body (a.b): same_as app.people.nope, which does not exist; "
        "app.docs.owners (each element): same_as app.gone.id, which does not exist")


# --- the sync's Anonymization: its pure parts ---------------------------------------------------------------------


SERVER_KEY = PseudonymKey(SERVER, "key-7")


def test_anonymization_off_has_no_key_and_no_settings():
    off = Anonymization.off()
    assert (off.rules, off.key, off.enabled, off.key_identity, dict(off.session_settings)) == (
        NO_RULES, None, False, "", {})
    assert off.recopied(["app.b", "app.a"], []) == ["app.b", "app.a"]


def test_anonymization_with_a_key_hands_its_settings_and_identity_on():
    on = Anonymization(NO_RULES, KEY)
    assert on.enabled and on.session_settings == KEY.session_settings and on.key_identity == "per-sync"
    assert Anonymization(NO_RULES, SERVER_KEY).key_identity == "key-7"


def test_the_keys_table_is_left_out_of_the_selection_only_where_it_exists():
    with_key = _catalog(_relation(1, "app.t", _column("a")), _relation(2, "tether_anon.key", _column("k")))
    selection = Selection(("app.*",), ("app.logs",), ("app.cache",))
    anonymization = Anonymization(NO_RULES, KEY)
    assert anonymization.selection(selection, with_key) == Selection(("app.*",), ("app.logs", "tether_anon.key"),
                                                                      ("app.cache",))
    without = _catalog(_relation(1, "app.t", _column("a")), _relation(3, "tether_anon.other", _column("k")))
    assert anonymization.selection(selection, without) is selection


def test_a_per_sync_key_recopies_every_keyed_table_when_one_changed():
    relations = [_relation(1, "app.people", _column("email")), _relation(2, "app.orders", _column("buyer")),
                 _relation(3, "app.notes", _column("body")), _relation(4, "app.cities", _column("name"))]
    resolved = {1: {"email": bind(Rule("fake_email"), TEXT, KEY)},
                2: {"buyer": bind(Rule("fake_name"), TEXT, KEY, deterministic=True)},
                4: {"name": bind(Rule("fake_city"), TEXT, KEY)}}  # random, not keyed
    per_sync = Anonymization(NO_RULES, KEY, resolved=resolved)
    assert per_sync.recopied(["app.people"], relations) == ["app.orders", "app.people"]
    assert per_sync.recopied(["app.orders", "app.notes"], relations) == ["app.notes", "app.orders", "app.people"]
    # No keyed table changed: the copies all keep the last sync's key and still match.
    assert per_sync.recopied(["app.notes", "app.cities"], relations) == ["app.notes", "app.cities"]
    # The server's key gives the same pseudonyms on every sync: nothing more to copy.
    assert Anonymization(NO_RULES, SERVER_KEY, resolved=resolved).recopied(["app.people"], relations) == [
        "app.people"]


# --- resolve_rules: rounds, orders and facts (issue 21: the survivors of the first mutation run) --------------


def test_same_as_a_column_that_follows_a_foreign_key_takes_the_keys_rule():
    """orders.buyer has no rule of its own but follows people.id through its foreign key: a same_as on it must
    hold the key's pseudonyms, not the real ids (it was resolved as kept before the foreign keys were followed)."""
    events = _relation(3, "app.events", _column("who", "int8", "N", type_sql="bigint"))
    rules = _rules({"app.people": {"id": "hash"}, "app.events": {"who": {"same_as": "app.orders.buyer"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, ORDERS, events), _with_keys(BUYER_FK))
    assert resolved[3] == {"who": bind(Rule("hash"), INT8, KEY, deterministic=True, canonical=INT8,
                                       origin="same as app.orders.buyer")}


def test_a_loop_of_same_as_is_refused():
    catalog = _catalog(_relation(1, "app.t", _column("a"), _column("b"), _column("c")))
    rules = _rules({"app.t": {"a": {"same_as": "app.t.b"}, "b": {"same_as": "app.t.a"}, "c": "fake_city"}})
    assert _problems(rules, catalog) == (
        "app.t.a: same_as app.t.b goes round in a loop of same_as without reaching a column with a rule of its own; "
        "app.t.b: same_as app.t.a goes round in a loop of same_as without reaching a column with a rule of its own")


def test_every_same_as_to_a_missing_column_is_named():
    events = _relation(3, "app.events", _column("who"), _column("what"))
    rules = _rules({"app.events": {"who": {"same_as": "app.people.nope"}, "what": {"same_as": "app.gone.x"}}})
    assert _problems(rules, _catalog(PEOPLE, events)) == (
        "app.events.who: same_as app.people.nope, which does not exist; "
        "app.events.what: same_as app.gone.x, which does not exist")


def test_a_chain_of_same_as_to_a_kept_column_keeps_every_link():
    events = _relation(3, "app.events", _column("a", "int8", "N", type_sql="bigint"),
                       _column("b", "int8", "N", type_sql="bigint"))
    # a is listed first: it can only follow b once b is known to be kept.
    rules = _rules({"app.events": {"a": {"same_as": "app.events.b"}, "b": {"same_as": "app.people.id"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, events))
    assert resolved[3] == {
        "a": bind(Rule("keep"), INT8, KEY, deterministic=True, canonical=INT8, origin="same as app.events.b"),
        "b": bind(Rule("keep"), INT8, KEY, origin="same as app.people.id, which is kept")}


def test_a_foreign_key_outside_the_catalog_does_not_stop_the_next_ones():
    facts = _with_keys(_fk("outside_fkey", 99, ("id",), 1, ("id",)), BUYER_FK)
    resolved = _resolve(_rules({"app.people": {"id": "hash"}}), _catalog(PEOPLE, ORDERS), facts)
    assert resolved[2]["buyer"].origin == "follows foreign key orders_buyer_fkey to app.people.id"


def test_a_reference_to_a_key_resolved_in_a_later_round_follows_its_foreign_key():
    """orders.buyer references staff.person, whose same_as is only resolved in the second round."""
    staff = _relation(4, "app.staff", _column("person", "int8", "N", type_sql="bigint"),
                      _column("alias", "int8", "N", type_sql="bigint"))
    rules = _rules({"app.people": {"id": "hash"},
                    "app.staff": {"person": {"same_as": "app.staff.alias"}, "alias": {"same_as": "app.people.id"}}})
    facts = _with_keys(_fk("orders_staff_fkey", 2, ("buyer",), 4, ("person",)))
    resolved = _resolve(rules, _catalog(PEOPLE, ORDERS, staff), facts)
    assert resolved[2] == {"buyer": bind(Rule("hash"), INT8, KEY, deterministic=True, canonical=INT8,
                                         origin="follows foreign key orders_staff_fkey to app.staff.person")}


def test_a_composite_key_half_kept_refuses_the_rule_and_follows_the_other_half():
    people = _relation(1, "app.people", _column("a"), _column("b"))
    orders = _relation(2, "app.orders", _column("x"), _column("y"))
    facts = _with_keys(_fk("pair_fkey", 2, ("x", "y"), 1, ("a", "b")))
    resolved = _resolve(_rules({"app.people": {"b": "hash"}}), _catalog(people, orders), facts)
    assert resolved[2] == {"y": bind(Rule("hash"), TEXT, KEY, deterministic=True, canonical=TEXT,
                                     origin="follows foreign key pair_fkey to app.people.b")}
    # A second round (the other key is followed) does not name the refused rule twice.
    assert _problems(_rules({"app.people": {"b": "hash"}, "app.orders": {"x": "fake_city"}}),
                     _catalog(people, orders), facts) == (
        "app.orders.x: references app.people.a (foreign key pair_fkey), which is kept as it is: a rule here would "
        "break the reference; put the rule on the referenced column, and this one follows")


def test_a_child_of_a_parent_without_rules_keeps_its_own():
    catalog = _catalog(_relation(1, "app.base", _column("email")), _relation(2, "app.child", _column("email")),
                       parents={2: [1]})
    resolved = _resolve(_rules({"app.child": {"email": "fake_email"}}), catalog)
    assert resolved == {2: {"email": bind(Rule("fake_email"), TEXT, KEY)}}


def test_shapes_come_from_the_facts_for_keys_references_and_nested_rules():
    people = _relation(1, "app.people", _column("code", "varchar", type_sql="character varying(20)"))
    orders = _relation(2, "app.orders", _column("buyer", "varchar", type_sql="character varying(30)"))
    docs = _relation(4, "app.docs", _column("body", "jsonb", "U"),
                     _column("emails", "_email", "A", type_sql="app.email[]"))
    facts = SourceFacts({(1, "code"): ColumnFacts(1, 20, False), (2, "buyer"): ColumnFacts(1, 30, False),
                         (4, "emails"): ColumnFacts(2, None, True, "text", "S", "app.email")},
                        foreign_keys=[_fk("orders_code_fkey", 2, ("buyer",), 1, ("code",))])
    rules = _rules({"app.people": {"code": "hash"},
                    "app.docs": {"body": {"json": {"o": {"same_as": "app.people.code"}}},
                                 "emails": {"each": "fake_email"}}})
    resolved = _resolve(rules, _catalog(people, orders, docs), facts)
    code = Shape("character varying(20)", "varchar", "S", 20)
    assert resolved[2]["buyer"].shape == Shape("character varying(30)", "varchar", "S", 30)
    assert resolved[2]["buyer"].canonical == code
    nested = resolved[4]["body"].option("paths")[0][1]
    assert nested == bind(Rule("hash"), code, KEY, deterministic=True, canonical=code,
                          origin="same as app.people.code")
    assert nested.key is KEY
    # An array of a domain over text: its elements are text, as the facts say.
    assert resolved[4]["emails"].shape.element == Shape("app.email", "text", "S")


def test_shape_of_without_facts_and_of_an_array_of_an_odd_type():
    assert shape_of(VARCHAR, None, 7) == Shape("character varying(12)", "varchar", "S")
    odd = _column("m", "_Xmood", "A", type_sql='"Xmood"[]')
    assert shape_of(odd) == Shape('"Xmood"[]', "_Xmood", "A", None, Shape('"Xmood"', "Xmood", "S"))


def test_a_fixed_null_on_a_unique_not_null_column_is_refused_for_the_null():
    column = _column("c", not_null=True)
    assert rule_problem(Rule("fixed", (("value", None),)), column, True) == (
        "a fixed null cannot apply to a NOT NULL column")


STAFF = _relation(4, "app.staff", _column("alias", "int8", "N", type_sql="bigint"))


def test_a_reference_whose_same_as_is_resolved_late_keeps_its_same_as():
    """orders.buyer is same_as staff.alias (itself same_as people.id) and references people.id: when the foreign
    keys are first looked at, buyer is still same_as; it ends with the key's rule, by its same_as."""
    rules = _rules({"app.people": {"id": "hash"}, "app.orders": {"buyer": {"same_as": "app.staff.alias"}},
                    "app.staff": {"alias": {"same_as": "app.people.id"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, ORDERS, STAFF), _with_keys(BUYER_FK))
    assert resolved[2] == {"buyer": bind(Rule("hash"), INT8, KEY, deterministic=True, canonical=INT8,
                                         origin="same as app.staff.alias")}


def test_a_same_as_to_a_kept_column_on_a_reference_to_a_kept_key_is_fine():
    rules = _rules({"app.orders": {"buyer": {"same_as": "app.people.email"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, ORDERS), _with_keys(BUYER_FK))
    assert resolved == {2: {"buyer": bind(Rule("keep"), INT8, KEY, origin="same as app.people.email, which is kept")}}


def test_a_same_as_to_a_kept_column_beside_references_that_repeat_their_keys_rule():
    events = _relation(3, "app.events", _column("who"))
    rules = _rules({"app.people": {"id": "hash"}, "app.orders": {"buyer": "hash"},
                    "app.events": {"who": {"same_as": "app.people.email"}}})
    resolved = _resolve(rules, _catalog(PEOPLE, ORDERS, events), _with_keys(BUYER_FK))
    assert resolved[3] == {"who": bind(Rule("keep"), TEXT, KEY, origin="same as app.people.email, which is kept")}
    assert resolved[2]["buyer"].canonical == INT8


def test_same_as_inside_json_uses_the_rules_locale():
    rules = _rules({"app.people": {"email": "fake_email"},
                    "app.docs": {"body": {"json": {"o": {"same_as": "app.people.email"}}}}}, locale="en")
    resolved = _resolve(rules, _catalog(PEOPLE, DOCS))
    assert resolved[4]["body"].option("paths")[0][1].locale == "en"


def test_a_long_chain_of_references_listed_backwards_all_hold_the_first_keys_pseudonyms():
    """orders.buyer repeats people.id's rule; l1..l4 each reference the one before, their keys listed last first:
    the key's format (uuid) reaches every link, one round at a time."""
    people = _relation(1, "app.people", _column("id", "uuid", "U"))
    orders = _relation(2, "app.orders", _column("buyer"))
    links = [_relation(10 + n, f"app.l{n}", _column("buyer")) for n in range(1, 5)]
    keys = [_fk(f"l{n}_fkey", 10 + n, ("buyer",), 10 + n - 1 if n > 1 else 2, ("buyer",)) for n in range(4, 0, -1)]
    facts = _with_keys(*keys, _fk("orders_fkey", 2, ("buyer",), 1, ("id",)))
    rules = _rules({"app.people": {"id": "hash"}, "app.orders": {"buyer": "hash"}})
    resolved = _resolve(rules, _catalog(people, orders, *links), facts)
    assert {oid: (cols["buyer"].kind, cols["buyer"].canonical) for oid, cols in resolved.items() if oid != 1} == {
        oid: ("hash", UUID) for oid in (2, 11, 12, 13, 14)}
