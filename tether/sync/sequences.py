"""Sequences at their source values, and materialized views filled from the copied rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from tether.sync.catalog import Relation, Sequence


def read_sequences(conn: psycopg.Connection, sequences: Iterable[Sequence], relations: Mapping[int, Relation],
                   excluded: set[int]) -> tuple[dict[str, list[Any]], list[str]]:
    """Current values (name -> [value, is_called]) and notes about those the role may not read.

    A sequence the role may not SELECT is set from the largest value of the column it belongs to, which
    is what the application needs to keep inserting without collisions.
    """
    values: dict[str, list[Any]] = {}
    notes: list[str] = []
    readable: list[Sequence] = []
    for sequence in sequences:
        if sequence.owner_table is not None and sequence.owner_table in excluded:
            continue
        if sequence.readable:
            readable.append(sequence)
            continue
        table = relations.get(sequence.owner_table) if sequence.owner_table is not None else None
        if table is None or sequence.owner_column is None:
            notes.append(f"sequence {sequence.qualified} left at its start: the source role may not read it")
            continue
        row = conn.execute(sql.SQL("SELECT max({})::bigint FROM {}").format(
            sql.Identifier(sequence.owner_column), table.identifier)).fetchone()
        if row and row[0] is not None:
            values[sequence.qualified] = [int(row[0]), True]
        notes.append(f"sequence {sequence.qualified} set from max({table.qualified}.{sequence.owner_column}): "
                     "the source role may not read the sequence itself")
    for start in range(0, len(readable), 200):
        batch = readable[start:start + 200]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}, last_value, is_called FROM {}").format(sql.Literal(sequence.qualified),
                                                                       sequence.identifier)
            for sequence in batch)
        for name, value, called in conn.execute(query):
            values[name] = [int(value), bool(called)]
    return values, notes


def apply_sequences(conn: psycopg.Connection, values: Mapping[str, list[Any]],
                    identifiers: Mapping[str, sql.Identifier]) -> None:
    """setval every sequence in one statement."""
    if not values:
        return
    names = [identifiers[name].as_string(conn) for name in values if name in identifiers]
    known = [name for name in values if name in identifiers]
    conn.execute("SELECT count(setval(x.name::regclass, x.value, x.called)) "
                 "FROM unnest(%s::text[], %s::bigint[], %s::bool[]) AS x(name, value, called)",
                 (names, [values[name][0] for name in known], [values[name][1] for name in known]))


def local_sequences(conn: psycopg.Connection) -> dict[str, sql.Identifier]:
    rows = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relkind = 'S'")
    return {f"{schema}.{name}": sql.Identifier(schema, name) for schema, name in rows}


def refresh_materialized_views(conn: psycopg.Connection, views: Iterable[Relation],
                               failures: list[str] | None = None) -> list[str]:
    """REFRESH the materialized views the source had populated, in an order their dependencies allow.

    They are computed again from the copied (anonymized) rows, so they hold no raw personal data either.
    A refresh runs as the view's owner; one that fails (an owner without the privileges it needs, say) fails
    the call, or, given ``failures``, is listed there and the view left unpopulated, as ``pg_dump | psql``
    would leave it.
    """
    pending = list(views)
    refreshed: list[str] = []
    while pending:
        waiting = []
        for view in pending:
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(view.identifier))
                refreshed.append(view.qualified)
            except psycopg.errors.ObjectNotInPrerequisiteState:
                waiting.append(view)  # it reads another materialized view not refreshed yet
            except psycopg.Error as error:
                if failures is None:
                    raise
                failures.append(f"{view.qualified} ({' '.join(str(error).split())})")
        if waiting and len(waiting) == len(pending):
            if failures is None:
                conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(waiting[0].identifier))
            else:  # it reads a view that could not be refreshed
                failures.extend(f"{view.qualified} (reads an unpopulated materialized view)" for view in waiting)
                waiting = []
        pending = waiting
    return refreshed
