"""The sync's pure parts: rule parsing, patterns, command lines, TOC and script handling, xid windows."""

from __future__ import annotations

import datetime as dt

import pytest
from psycopg import sql

from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError, Refused
from tether.sync import schema
from tether.sync.anonymize import Rule, parse_rule, parse_rules, rule_problem
from tether.sync.catalog import Column, Relation, ServerInfo
from tether.sync.incremental import SyncState, TableState, window_condition
from tether.sync.plan import exclude_table_pattern, matches
from tether.sync.safety import LocalServer, check_distinct, check_local
from tether.sync.snapshot import XidSnapshot, session_options, source_conninfo

ADDRESS = DatabaseAddress("db.example.com", 5432, "shop", "reader", "p@ss:w/rd", (("options", "-c search_path=app"),))


@pytest.mark.parametrize(("spec", "expected"), [
    ("fake_email", Rule("fake_email")),
    (None, Rule("null")),
    ("null", Rule("null")),
    ({"fixed": "x"}, Rule("fixed", (("value", "x"),))),
    ({"fixed": None}, Rule("fixed", (("value", None),))),
    ("hash", Rule("hash")),
    ({"hash": {}}, Rule("hash")),
    ({"hash": {"length": 12}}, Rule("hash", (("length", 12),))),
    ({"mask": "partial"}, Rule("mask", (("char", "*"), ("keep_first", 1), ("keep_last", 2)))),
    ({"mask": {"keep_last": 4}}, Rule("mask", (("char", "*"), ("keep_first", 1), ("keep_last", 4)))),
    ({"random_date": ["1950-01-01", "2000-12-31"]},
     Rule("random_date", (("from", dt.date(1950, 1, 1)), ("to", dt.date(2000, 12, 31))))),
    ({"random_date": {"from": dt.date(1990, 1, 1), "to": dt.date(1990, 1, 1)}},
     Rule("random_date", (("from", dt.date(1990, 1, 1)), ("to", dt.date(1990, 1, 1))))),
    ({"random_int": {"min": 1, "max": 9}}, Rule("random_int", (("max", 9), ("min", 1)))),
    ({"random_number": [0, 1.5]}, Rule("random_number", (("decimals", 2), ("max", 1.5), ("min", 0)))),
    ("keep", Rule("keep")),
], ids=lambda value: repr(value)[:40])
def test_rules_parse(spec, expected):
    assert parse_rule(spec) == expected


@pytest.mark.parametrize("spec", [
    "fake_fax", {"fixed": 1, "hash": 2}, "fixed", {"hash": {"length": 3}}, {"mask": {"keep": 1}},
    {"mask": {"char": "**"}}, {"random_date": ["2000-01-01"]}, {"random_date": ["2001-01-01", "2000-01-01"]},
    {"random_date": ["yesterday", "2000-01-01"]}, {"random_int": [1.5, 3]}, {"random_int": [5, 1]},
    {"fake_email": {"x": 1}}, 42,
], ids=lambda value: repr(value)[:40])
def test_bad_rules_are_refused(spec):
    with pytest.raises(ValueError):
        parse_rule(spec)


def test_rules_file_errors_name_every_problem():
    with pytest.raises(ConfigError) as caught:
        parse_rules({"tables": {"people": {"email": "fake_email"}, "app.x": {"a": "nope"}}}, "rules.yaml")
    assert "'people' is not `schema.table`" in caught.value.message
    assert "app.x.a: unknown rule 'nope'" in caught.value.message
    with pytest.raises(ConfigError, match="the keys `tables`"):
        parse_rules({"table": {}}, "rules.yaml")


def test_rules_digest_changes_with_rules():
    one = parse_rules({"tables": {"app.t": {"a": "fake_email"}}}, "x")
    two = parse_rules({"tables": {"app.t": {"a": "hash"}}}, "x")
    assert one.digest() != two.digest()
    assert one.digest() == parse_rules({"tables": {"app.t": {"a": "fake_email"}}}, "y").digest()


def _column(type_name: str, category: str = "S", *, not_null: bool = False, generated: bool = False) -> Column:
    return Column("c", 1, type_name, type_name, category, not_null, generated, False)


@pytest.mark.parametrize(("rule", "column", "unique", "problem"), [
    (Rule("fake_email"), _column("text"), True, None),
    (Rule("hash"), _column("uuid", "U"), True, None),
    (Rule("hash"), _column("int8", "N"), False, None),
    (Rule("fake_name"), _column("text"), True, "unique"),
    (Rule("null"), _column("text", not_null=True), False, "NOT NULL"),
    (Rule("fake_email"), _column("int4", "N"), False, "text column"),
    (Rule("mask"), _column("date", "D"), False, "text column"),
    (Rule("random_date"), _column("text"), False, "date or timestamp"),
    (Rule("random_int"), _column("text"), False, "numeric"),
    (Rule("hash"), _column("jsonb", "U"), False, "text, uuid and integer"),
    (Rule("keep"), _column("text", generated=True), False, "generated"),
], ids=lambda value: getattr(value, "kind", None) or getattr(value, "type_name", None) or repr(value))
def test_rule_fits_column(rule, column, unique, problem):
    found = rule_problem(rule, column, unique)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def _relation(schema_name: str, name: str) -> Relation:
    return Relation(1, schema_name, name, "r", "p", None, False, 1, True)


@pytest.mark.parametrize(("schema_name", "name", "pattern", "expected"), [
    ("app", "users", "app.*", True),
    ("app", "users", "*.users", True),
    ("app", "users", "users", True),
    ("app", "users", "user?", True),
    ("audit", "audit_log", "*.audit_*", True),
    ("app", "users", "App.*", False),
    ("app", "audit_log", "audit.*", False),
    ("Mixed Schema", "Odd Table", "Mixed Schema.Odd*", True),
], ids=str)
def test_patterns(schema_name, name, pattern, expected):
    assert matches(_relation(schema_name, name), pattern) is expected


@pytest.mark.parametrize(("schema_name", "name", "pattern"), [
    ("app", "users", '"app"."users"'),
    ("My S", "we*rd", '"My S"."we*rd"'),
    ("app", 'say "hi"', '"app"."say ""hi"""'),
])
def test_exclude_patterns_are_exact(schema_name, name, pattern):
    assert exclude_table_pattern(_relation(schema_name, name)) == pattern


def test_pg_dump_argv_has_no_password_and_reads_the_snapshot(tmp_path):
    argv = schema.pg_dump_argv("pg_dump", ADDRESS, "00000003-0000001B-1", tmp_path / "a.dump", ['"app"."x"'])
    joined = " ".join(argv)
    assert "p@ss:w/rd" not in joined and "password=" not in joined
    # Everything but the tables' rows: large objects and the database's settings come through pg_dump.
    assert "--snapshot=00000003-0000001B-1" in argv and "--exclude-table-data=*.*" in argv
    assert "--create" in argv and "--schema-only" not in argv and "--no-blobs" not in argv
    assert "--no-blobs" in schema.pg_dump_argv("pg_dump", ADDRESS, "1-1", tmp_path / "a", large_objects=False)
    assert '--exclude-table="app"."x"' in argv
    assert "--no-subscriptions" in argv and "--format=custom" in argv
    env = schema.source_env(ADDRESS)
    assert env["PGPASSWORD"] == "p@ss:w/rd"
    assert "default_transaction_read_only=on" in env["PGOPTIONS"] and "search_path=app" in env["PGOPTIONS"]


@pytest.mark.parametrize(("jobs", "expected"), [(1, "--single-transaction"), (4, "--jobs=4")])
def test_pg_restore_argv(tmp_path, jobs, expected):
    argv = schema.pg_restore_argv("pg_restore", ADDRESS, tmp_path / "a.dump", section="post-data",
                                  list_file=tmp_path / "l", jobs=jobs)
    assert expected in argv and "--exit-on-error" in argv and "--no-owner" in argv
    assert "--section=post-data" in argv and "p@ss:w/rd" not in " ".join(argv)


def test_source_sessions_are_read_only():
    conninfo = source_conninfo(ADDRESS)
    assert "default_transaction_read_only=on" in conninfo
    assert session_options(ADDRESS, {"a": "b"}) == "-c search_path=app -c a=b"


def test_xid_snapshot_parse():
    assert XidSnapshot.parse("100:105:101,103") == XidSnapshot(100, 105, (101, 103))
    assert XidSnapshot.parse("7:7:") == XidSnapshot(7, 7, ())
    assert str(XidSnapshot(100, 105, (101, 103))) == "100:105:101,103"


def test_window_condition():
    reference = XidSnapshot(2**32 + 50, 2**32 + 60)
    condition = window_condition(reference, 2**32 - 10)
    assert condition is not None
    assert condition.as_string(None) == "age(xmin) <= age('4294967286'::xid)"  # the horizon's low 32 bits
    assert window_condition(reference, reference.xmax - 2**31) is None  # too far back to order ids
    assert window_condition(reference, reference.xmax + 1) is None


def test_state_round_trip():
    state = SyncState(source_system="1", source_start="t", source_database_oid=5, source_database="db",
                      source_url="postgresql://x", synced_at="now", horizon=10, xmax=12, schema_digest="s",
                      options_digest="o", catalog_digest="c", tables={"app.t": TableState(3, 99, 1, "42")},
                      sequences={"app.s": [5, True]}, dest_oid=7, dest_horizon=8)
    assert SyncState.from_json(state.to_json()) == state
    assert SyncState.from_json("not json") is None
    assert SyncState.from_json('{"version": 999}') is None
    assert SyncState.from_json(None) is None


def test_non_local_destination_is_refused():
    check_local(DatabaseAddress("localhost", 5432, "dev", "me"), allow_remote=False)
    check_local(DatabaseAddress("/var/run/postgresql", 5432, "dev", "me"), allow_remote=False)
    with pytest.raises(Refused, match="--allow-remote-dest"):
        check_local(DatabaseAddress("10.1.2.3", 5432, "dev", "me"), allow_remote=False)
    check_local(DatabaseAddress("10.1.2.3", 5432, "dev", "me"), allow_remote=True)


def _server(system: str | None, start: str = "t0", oid: int = 5, name: str = "prod") -> ServerInfo:
    return ServerInfo(150000, system, start, oid, name, "UTF8", "reader")


@pytest.mark.parametrize(("source", "local_system", "local_start", "dest_oid", "dest_name", "refused"), [
    (_server("42"), "42", "t0", 5, "whatever", True),  # same cluster, same database oid
    (_server("42"), "42", "t0", None, "prod", True),  # same cluster, same name
    (_server("42"), "42", "t0", 6, "dev", False),  # same cluster, another database
    (_server("42"), "43", "t0", 5, "prod", False),  # another cluster: oids and names may repeat
    (_server(None, "t0"), None, "t0", 5, "x", True),  # no system identifier: the start time decides
    (_server(None, "t0"), "43", "t1", 5, "x", False),
    (_server("42", name="dev__tether_sync_1_2"), "42", "t0", 6, "dev", True),  # the sync's own scratch copy
], ids=["same-oid", "same-name", "other-db", "other-cluster", "start-time-same", "start-time-other", "scratch"])
def test_same_database_is_refused(source, local_system, local_start, dest_oid, dest_name, refused):
    local = LocalServer(local_system, local_start, 150000, dest_oid, ADDRESS.with_database("postgres"))
    dest = ADDRESS.with_database(dest_name)
    if refused:
        with pytest.raises(Refused):
            check_distinct(source, local, dest)
    else:
        check_distinct(source, local, dest)


def test_copy_statements_quote_identifiers_and_select_rules():
    from tether.sync.plan import TableCopy

    columns = (Column("E-mail", 1, "text", "text", "S", True, False, False),
               Column("gen", 2, "integer", "int4", "N", False, True, False),
               Column("n", 3, "integer", "int4", "N", False, False, False))
    relation = Relation(1, "Mixed Schema", 'Odd "T"', "r", "p", None, False, 1, True, columns)
    plain = TableCopy(relation, {}, binary=True)
    assert plain.copy_out().as_string(None) == \
        'COPY "Mixed Schema"."Odd ""T""" ("E-mail", "n") TO STDOUT (FORMAT BINARY)'
    assert plain.copy_in(freeze=True).as_string(None) == \
        'COPY "Mixed Schema"."Odd ""T""" ("E-mail", "n") FROM STDIN (FORMAT BINARY, FREEZE)'
    ruled = TableCopy(relation, {"E-mail": Rule("fake_email")}, binary=False)
    out = ruled.copy_out().as_string(None)
    # Keyed by a secret the statement only names (a setting of the session), never contains.
    assert out.startswith("COPY (SELECT ('user_' || left(encode(sha256(decode(current_setting("
                          "'tether.anonymize_opad'), 'hex')")
    assert "lower((\"E-mail\")::text)" in out
    assert out.endswith(' AS "E-mail", "n" FROM ONLY "Mixed Schema"."Odd ""T""") TO STDOUT')
    assert isinstance(ruled.copy_in(), sql.Composed)
