"""Checking a subset copy from the outside: every foreign key again by an anti-join, and each table's rows
against the subset plan sync-prod printed. Used by the benchmark and the subset tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from tether.conninfo import DatabaseAddress

FOREIGN_KEYS = """
    SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text, c.convalidated,
           (SELECT relkind FROM pg_class WHERE oid = c.conrelid) = 'p',
           (SELECT relkind FROM pg_class WHERE oid = c.confrelid) = 'p',
           ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
           ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
    FROM pg_constraint c WHERE c.contype = 'f' AND c.conparentid = 0
"""


def anti_join(child: str, child_partitioned: bool, parent: str, parent_partitioned: bool,
              columns: list[str], referenced: list[str]) -> sql.Composed:
    """Rows of ``child`` whose key (all of it non-NULL) has no row in ``parent``: a foreign key that does not hold."""
    return sql.SQL("SELECT count(*) FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
        sql.SQL(("" if child_partitioned else "ONLY ") + child),
        sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(column)) for column in columns),
        sql.SQL(("" if parent_partitioned else "ONLY ") + parent),
        sql.SQL(" AND ").join(sql.SQL("p.{} = c.{}").format(sql.Identifier(mine), sql.Identifier(theirs))
                              for mine, theirs in zip(referenced, columns, strict=True)))


def foreign_key_problems(address: DatabaseAddress) -> list[str]:
    """Every foreign key checked again whatever its catalog flag says, and any not marked valid."""
    problems = []
    with psycopg.connect(address.conninfo(), autocommit=True) as conn:
        for name, child, parent, valid, child_p, parent_p, columns, referenced in conn.execute(FOREIGN_KEYS):
            if not valid:
                problems.append(f"{child}.{name} is NOT VALID")
            row = conn.execute(anti_join(child, child_p, parent, parent_p, columns, referenced)).fetchone()
            if row and row[0]:
                problems.append(f"{child}.{name}: {row[0]} rows reference missing {parent} rows")
    return problems


def count_problems(address: DatabaseAddress, subset: Mapping[str, Any]) -> list[str]:
    """Each table's rows against the plan's count (``subset`` is the ``subset`` part of sync-prod's --json)."""
    wrong = []
    with psycopg.connect(address.conninfo(), autocommit=True) as conn:
        for table in subset["tables"]:
            schema, name = table["table"].split(".", 1)
            row = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, name))).fetchone()
            if not row or row[0] != table["rows"]:
                wrong.append(f"{table['table']}: {row[0] if row else None} locally, {table['rows']} in the plan")
    return wrong
