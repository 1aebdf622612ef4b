"""What the anonymization needs to know about the source beyond the sync's catalog, read in the snapshot.

Column lengths and array element types (so outputs fit), unique indexes (composite, expression, partial),
CHECK constraints, partition keys and foreign keys by column (so rules that would break them are refused
before a row moves), and row estimates (so a short pseudonym is refused where it would collide).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

_CHECK = re.compile(r"^CHECK \((?P<expression>.*)\)(?P<no_inherit> NO INHERIT)?(?P<not_valid> NOT VALID)?$", re.S)


@dataclass(frozen=True)
class ColumnFacts:
    number: int
    max_length: int | None  # varchar(n) / char(n), of the column or of its array's elements
    domain: bool  # a domain type: its CHECKs apply when a rule's output is cast back
    element_type: str | None = None  # an array's element base type (text, varchar, jsonb, ...)
    element_category: str | None = None
    element_sql: str | None = None  # the element type as PostgreSQL writes it, typmod included


@dataclass(frozen=True)
class UniqueIndex:
    table: int
    name: str
    keys: tuple[str | None, ...]  # key columns; None for an expression
    key_texts: tuple[str, ...]  # each key as pg_get_indexdef writes it (the column name, or the expression)
    referenced: tuple[str, ...]  # every column the index reads: keys, expressions, predicate
    predicate: str | None
    nulls_not_distinct: bool


@dataclass(frozen=True)
class CheckConstraint:
    table: int
    name: str
    expression: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ForeignKeyColumns:
    name: str
    table: int
    columns: tuple[str, ...]
    references: int
    referenced_columns: tuple[str, ...]


@dataclass
class SourceFacts:
    columns: dict[tuple[int, str], ColumnFacts] = field(default_factory=dict)
    unique_indexes: dict[int, list[UniqueIndex]] = field(default_factory=dict)
    checks: dict[int, list[CheckConstraint]] = field(default_factory=dict)
    partition_keys: dict[int, tuple[set[str], str]] = field(default_factory=dict)  # table -> (columns, definition)
    foreign_keys: list[ForeignKeyColumns] = field(default_factory=list)
    estimated_rows: dict[int, float] = field(default_factory=dict)

    def column(self, table: int, name: str) -> ColumnFacts | None:
        return self.columns.get((table, name))


def read_facts(conn: psycopg.Connection, oids: Sequence[int]) -> SourceFacts:
    """Everything above for the tables ``oids`` (all of the catalog's relations, usually)."""
    oids = list(oids)
    facts = SourceFacts()
    names: dict[tuple[int, int], str] = {}
    nulls = ("i.indnullsnotdistinct" if int(conn.info.server_version) >= 150000 else "false")
    queries = (
        """
            SELECT a.attrelid, a.attname, a.attnum, t.typtype = 'd',
                   CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
                   coalesce(bt.typname, t.typname), et.typname, et.typcategory,
                   CASE WHEN et.oid IS NOT NULL
                        THEN format_type(et.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) END
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
            LEFT JOIN pg_type et ON coalesce(bt.typcategory, t.typcategory) = 'A'
                                AND et.oid = coalesce(bt.typelem, t.typelem)
            WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped""",
        f"""
            SELECT i.indrelid, c.relname, i.indkey::int2[], i.indnkeyatts,
                   ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) AS k),
                   ARRAY(SELECT DISTINCT d.refobjsubid::int FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                           AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid AND d.refobjsubid > 0),
                   pg_get_expr(i.indpred, i.indrelid), {nulls}
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indisunique AND i.indrelid = ANY(%s)""",  # noqa: S608 - nulls: a fixed column
        """
            SELECT c.conrelid, c.conname, pg_get_constraintdef(c.oid, true),
                   ARRAY(SELECT a.attname FROM pg_attribute a
                         WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey))
            FROM pg_constraint c WHERE c.contype = 'c' AND c.conrelid = ANY(%s)""",
        """
            SELECT p.partrelid, pg_get_partkeydef(p.partrelid),
                   ARRAY(SELECT a.attname FROM pg_attribute a
                         WHERE a.attrelid = p.partrelid AND a.attnum = ANY(p.partattrs::int2[]))
            FROM pg_partitioned_table p WHERE p.partrelid = ANY(%s)""",
        """
            SELECT c.conname, c.conrelid,
                   ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(number, position)
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.number ORDER BY k.position),
                   c.confrelid,
                   ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(number, position)
                         JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.number ORDER BY k.position)
            FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = ANY(%s)""",
        "SELECT oid, reltuples FROM pg_class WHERE oid = ANY(%s)",
    )
    # Sent together, one round trip instead of six (production may be far away).
    with conn.pipeline():
        cursors = [conn.execute(query, (oids,)) for query in queries]
        rows = [cursor.fetchall() for cursor in cursors]
    for row in rows[0]:
        table, name, number, domain, typmod, base, element, element_category, element_sql = row
        sized = (base in ("varchar", "bpchar") or element in ("varchar", "bpchar")) and typmod is not None
        length = typmod - 4 if sized and typmod > 4 else None
        facts.columns[(table, name)] = ColumnFacts(number, length, bool(domain), element, element_category,
                                                   element_sql)
        names[(table, number)] = name
    for row in rows[1]:
        table, name, indkey, key_count, key_texts, referenced, predicate, nulls_not_distinct = row
        keys = tuple(names.get((table, number)) if number else None for number in list(indkey)[:key_count])
        read = {names[(table, number)] for number in referenced if (table, number) in names}
        read |= {key for key in keys if key}
        facts.unique_indexes.setdefault(table, []).append(UniqueIndex(
            table, name, keys, tuple(key_texts), tuple(sorted(read)), predicate, bool(nulls_not_distinct)))
    for table, name, definition, columns in rows[2]:
        match = _CHECK.match(definition)
        if match and not match.group("not_valid"):  # a NOT VALID check may already fail on old rows
            facts.checks.setdefault(table, []).append(
                CheckConstraint(table, name, match.group("expression"), tuple(columns)))
    for table, definition, columns in rows[3]:
        facts.partition_keys[table] = (set(columns), definition)
    for name, table, columns, references, referenced in rows[4]:
        facts.foreign_keys.append(ForeignKeyColumns(name, table, tuple(columns), references, tuple(referenced)))
    facts.estimated_rows = {int(oid): float(estimate) for oid, estimate in rows[5]}
    return facts


def partition_key_columns(facts: SourceFacts, ancestors: Sequence[int]) -> set[str]:
    """The columns that decide which partition a row of a table with these ancestors belongs to."""
    found: set[str] = set()
    for ancestor in ancestors:
        columns, definition = facts.partition_keys.get(ancestor, (set(), ""))
        found |= columns
        # Expression keys (``RANGE (lower(email))``) name their columns only in the definition.
        found |= {word.strip('"') for word in re.findall(r'"[^"]+"|\b\w+\b', definition)}
    return found
