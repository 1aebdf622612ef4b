"""The subset's SQL builders (pure), and the sample hash pinned on a real server: the same seed must keep
choosing the same rows on every PostgreSQL version and machine the suite runs on."""

from __future__ import annotations

import psycopg
import pytest

from tether.sync.catalog import Column, Relation
from tether.sync.subset_queries import (
    ctid_filter,
    lookup_query,
    root_query,
    sample_hash,
    seed_number,
    text_array,
    tid_array,
    tid_text,
    whole_lookup_query,
)
from tether.sync.subset_spec import parse_root


def relation(kind: str = "r", columns: tuple[str, ...] = ("id", "owner_id")) -> Relation:
    return Relation(1, "app", "things", kind, "p", None, False, 1, True,
                    tuple(Column(name, number, "bigint", "int8", "N", True, False, True)
                          for number, name in enumerate(columns, 1)))


def text(composed) -> str:
    return composed.as_string(None)


def test_ctids_round_trip_as_numbers():
    assert tid_text((7 << 16) | 3) == "(7,3)"
    assert tid_array([(2 << 16) | 1, 5, (2 << 16)]) == '{"(0,5)","(2,0)","(2,1)"}'
    assert text(ctid_filter([5])) == "ctid = ANY('{\"(0,5)\"}'::tid[])"


def test_seed_numbers_are_stable_and_signed():
    assert seed_number("tether") == 4451536227473964961
    assert seed_number("another") != seed_number("tether")
    assert all(-(2**63) <= seed_number(str(value)) < 2**63 for value in range(200))


@pytest.mark.parametrize(("columns", "types", "expected"), [
    (("id",), ("bigint",), '"t"."id" = ANY(%s::text[]::bigint[])'),
    (("tags",), ("text[]",), 'IN (SELECT "v0"::text[] FROM unnest(%s::text[]) AS v("v0"))'),
    (("region", "code"), ("text", "integer"),
     '("t"."region", "t"."code") IN (SELECT "v0"::text, "v1"::integer FROM unnest(%s::text[], %s::text[]) '
     'AS v("v0", "v1"))'),
], ids=["one-column", "array-column", "composite"])
def test_lookups_pass_key_values_cast_to_their_own_types(columns, types, expected):
    query = text(lookup_query(relation(), columns, types, ("id", "owner_id")))
    assert query.startswith('SELECT "t".tableoid::oid, ')
    assert '("t"."id")::text, ("t"."owner_id")::text FROM ONLY "app"."things" AS "t"' in query
    assert expected in query


def test_partitioned_tables_are_read_with_their_partitions():
    assert 'FROM "app"."things" AS "t"' in text(lookup_query(relation("p"), ("id",), ("bigint",), ()))
    whole = text(whole_lookup_query(relation(), ("id",), relation("p"), ("owner_id",), ()))
    assert 'IN (SELECT "s"."owner_id" FROM "app"."things" AS s)' in whole


def test_root_queries():
    seed = seed_number("s")
    percent = text(root_query(relation(), parse_root("app.things:5%"), "s", ("id",), ("owner_id",)))
    assert percent.endswith(f'WHERE ((hashtextextended(("id")::text, {seed}) & 9223372036854775807) % 1000000 '
                            "< 50000)")
    rows = text(root_query(relation(), parse_root("app.things:10"), "s", (), ()))
    assert rows.endswith('ORDER BY (hashtextextended((ROW("id", "owner_id"))::text, '
                         f'{seed}) & 9223372036854775807), (ROW("id", "owner_id"))::text LIMIT 10')
    where = text(root_query(relation(), parse_root("app.things:where=id % 3 = 0 -- c"), "s", ("id",), ()))
    assert where.endswith("WHERE (\nid %% 3 = 0 -- c\n)")  # run with a parameter: % doubled


def test_the_sample_hash_is_pinned(pg_db):
    """Values recorded on PostgreSQL 15: a server that hashes differently would sample other rows."""
    query = "SELECT " + text(sample_hash("tether", ("id",), relation())).replace('"id"', "%s")
    with psycopg.connect(pg_db.conninfo()) as conn:
        assert conn.execute(query, ("42",)).fetchone() == (9147969477854684342,)
        assert conn.execute(query, ("(1,2024-01-01)",)).fetchone() == (5373278087270026206,)


def test_key_values_travel_as_one_text_array_intact(pg_db):
    values = ["plain", 'quo"te', "back\\slash", "comma,and{braces}", "", "NULL", " spaced ", "ünï", "a\nb"]
    with psycopg.connect(pg_db.conninfo()) as conn:
        assert conn.execute("SELECT %s::text[]", (text_array(values),)).fetchone() == (values,)
