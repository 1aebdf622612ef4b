"""The read-only SQL of a subset: the roots' rows, the rows a set of key values points at or is pointed at by,
the sample's hash predicate, and the ctid lists the copies select by. Pure builders; tether.sync.subset runs them.

Every query returns ``(leaf table oid, ctid as a bigint, the carried columns as text...)``: the carried columns
are the ones foreign keys use, so the next round looks rows up by their key values (an index lookup on the
other table), never by scanning the table the rows came from again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from psycopg import sql

from tether.sync.catalog import Relation
from tether.sync.subset_spec import SAMPLE_SCALE, Root


def ctid_number(alias: str | None = None) -> sql.Composable:
    """A row's ctid as one bigint (block << 16 | line pointer): compact in memory, and turned back in tid_text."""
    ctid = sql.SQL("{}.ctid").format(sql.Identifier(alias)) if alias else sql.SQL("ctid")
    return sql.SQL("((({c})::text::point)[0]::int8 << 16) | (({c})::text::point)[1]::int8").format(c=ctid)


def tid_text(number: int) -> str:
    return f"({number >> 16},{number & 0xFFFF})"


def tid_array(numbers: Iterable[int]) -> str:
    """The text of a ``tid[]``: ``{"(0,1)","(0,2)"}``."""
    return "{" + ",".join(f'"({number >> 16},{number & 0xFFFF})"' for number in sorted(numbers)) + "}"


def text_array(values: Iterable[str]) -> str:
    """A ``text[]`` literal: one parameter for many key values (psycopg would dump a list element by element)."""
    return "{" + ",".join('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values) + "}"


def seed_number(seed: str) -> int:
    """The seed as the 64-bit integer hashtextextended takes (from its SHA-256, so any text will do)."""
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big", signed=True)


def _key_expression(key: tuple[str, ...], relation: Relation) -> sql.Composable:
    columns = key or tuple(column.name for column in relation.columns)
    if len(columns) == 1:
        return sql.Identifier(columns[0])
    return sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(column) for column in columns))


def sample_hash(seed: str, key: tuple[str, ...], relation: Relation) -> sql.Composable:
    """A non-negative bigint from the row's key and the seed: the same rows for the same seed at every sync.

    hashtextextended is the function behind hash partitioning, which PostgreSQL keeps stable across versions (a
    changed hash would strand upgraded partitioned tables); four times cheaper than md5 here. The key is the
    table's primary key (or a unique NOT NULL key), else the whole row, as text.
    """
    return sql.SQL("(hashtextextended(({})::text, {}) & 9223372036854775807)").format(
        _key_expression(key, relation), sql.Literal(seed_number(seed)))


def sample_predicate(seed: str, key: tuple[str, ...], relation: Relation, root: Root) -> sql.Composable:
    """True for the rows a percentage root takes; unqualified columns, so it also filters a partition's copy."""
    return sql.SQL("({} % {} < {})").format(sample_hash(seed, key, relation), sql.Literal(SAMPLE_SCALE),
                                           sql.Literal(root.threshold))


def table_reference(relation: Relation) -> sql.Composable:
    """FROM target: a partitioned table with its partitions, any other table ONLY itself (not its INHERITS
    children, which foreign keys do not cover)."""
    return sql.SQL("{}{}").format(sql.SQL("" if relation.kind == "p" else "ONLY "), relation.identifier)


def _select(relation: Relation, carried: Sequence[str], alias: str | None) -> sql.Composed:
    """``SELECT tableoid, ctid, carried columns as text FROM relation [AS alias]``."""
    def column(name: str) -> sql.Composable:
        return sql.Identifier(alias, name) if alias else sql.Identifier(name)

    prefix = sql.SQL("{}.").format(sql.Identifier(alias)) if alias else sql.SQL("")
    values = sql.SQL("").join(sql.SQL(", ({})::text").format(column(name)) for name in carried)
    return sql.SQL("SELECT {}tableoid::oid, {}{} FROM {}{}").format(
        prefix, ctid_number(alias), values, table_reference(relation),
        sql.SQL(" AS {}").format(sql.Identifier(alias)) if alias else sql.SQL(""))


def lookup_query(target: Relation, columns: Sequence[str], value_types: Sequence[str],
                 carried: Sequence[str]) -> sql.Composed:
    """The rows of ``target`` whose ``columns`` equal one of the value tuples given as text arrays (one parameter
    per column), each value cast back to the type of the column it was read from (``value_types``).

    Parents: the referenced table's key columns against the referencing rows' values; children: the referencing
    columns against the referenced rows' keys. A NULL never matches, as a foreign key with a NULL references
    nothing.
    """
    if len(columns) == 1 and not value_types[0].endswith("]"):
        # One column: an array the planner can size (an index scan for a few keys, a hashed filter for many).
        return sql.SQL("{} WHERE {} = ANY(%s::text[]::{}[])").format(
            _select(target, carried, "t"), sql.Identifier("t", columns[0]), sql.SQL(value_types[0]))
    names = [sql.Identifier(f"v{index}") for index in range(len(columns))]
    return sql.SQL("{} WHERE ({}) IN (SELECT {} FROM unnest({}) AS v({}))").format(
        _select(target, carried, "t"),
        sql.SQL(", ").join(sql.Identifier("t", column) for column in columns),
        sql.SQL(", ").join(sql.SQL("{}::{}").format(name, sql.SQL(type_sql))
                           for name, type_sql in zip(names, value_types, strict=True)),
        sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in columns), sql.SQL(", ").join(names))


def whole_lookup_query(target: Relation, columns: Sequence[str], source: Relation, source_columns: Sequence[str],
                       carried: Sequence[str]) -> sql.Composed:
    """The rows of ``target`` whose ``columns`` match ``source_columns`` of any row of ``source`` (a table copied
    whole: every row of it is in)."""
    return sql.SQL("{} WHERE ({}) IN (SELECT {} FROM {} AS s)").format(
        _select(target, carried, "t"), sql.SQL(", ").join(sql.Identifier("t", column) for column in columns),
        sql.SQL(", ").join(sql.Identifier("s", column) for column in source_columns), table_reference(source))


def root_query(relation: Relation, root: Root, seed: str, key: tuple[str, ...],
               carried: Sequence[str]) -> sql.Composed:
    """The rows one spec selects. No alias: a where= condition may name the table (app.profiles.created_at)."""
    select = _select(relation, carried, None)
    if root.kind == "percent":
        return sql.SQL("{} WHERE {}").format(select, sample_predicate(seed, key, relation, root))
    if root.kind == "rows":
        return sql.SQL("{} ORDER BY {}, ({})::text LIMIT {}").format(
            select, sample_hash(seed, key, relation), sql.SQL("ROW({})").format(sql.SQL(", ").join(
                sql.Identifier(column) for column in (key or [column.name for column in relation.columns]))),
            sql.Literal(int(root.value)))
    # On lines of its own, so that a trailing -- comment in it cannot swallow the rest of the statement; its %
    # doubled, as it runs with a parameter (tether.sync.subset checks it as one prepared statement).
    return sql.SQL("{} WHERE (\n{}\n)").format(select, sql.SQL(str(root.value).replace("%", "%%")))


def ctid_filter(listed: Iterable[int]) -> sql.Composable:
    """The copy's condition for the rows named by ctid (a TID scan when few, a hashed filter when many)."""
    return sql.SQL("ctid = ANY({}::tid[])").format(sql.Literal(tid_array(listed)))
