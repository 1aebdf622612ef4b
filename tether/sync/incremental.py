"""Knowing what changed since the last sync, on the source and in the local copy, without ever guessing wrong.

A table is unchanged when, in the new snapshot, it has the same file (relfilenode: TRUNCATE, VACUUM FULL
and rewrites change it), the same row count, and the same set of rows written by transactions the last
snapshot might not have seen. Every inserted or updated row version carries the id of the transaction
that wrote it (``xmin``); any transaction the last snapshot did not see has an id of at least that
snapshot's ``xmin`` horizon. So: rows with ``xmin`` at or above the horizon are fingerprinted (count and a
sum of hashes of their ``ctid`` and ``xmin``); new rows change that fingerprint, deleted rows change the
count or the fingerprint. Anything that cannot be decided (ids too far apart, a new table) means "copy".

The local copy is checked the same way against the transaction horizon taken just before it was made:
any row or catalog entry written there since, any row deleted, any truncation, and it is replaced.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tether.conninfo import DatabaseAddress
from tether.sync.catalog import Relation
from tether.sync.parallel import run_parallel
from tether.sync.snapshot import JoinedSessions, XidSnapshot, connect_local, joined_session

STATE_VERSION = 1
XID_SPACE = 2**32
MAX_WINDOW = 2**31 - 2**28  # beyond this, 32-bit transaction ids can no longer be ordered reliably


@dataclass(frozen=True)
class TableState:
    """A table as the last sync copied it."""

    rows: int
    relfilenode: int  # on the source
    window_rows: int  # rows written at or after the snapshot's horizon
    window_hash: str


@dataclass
class SyncState:
    """What the snapshot database holds and where it came from; kept as JSON in the database's comment."""

    source_system: str | None
    source_start: str
    source_database_oid: int
    source_database: str
    source_url: str
    synced_at: str
    horizon: int  # the source snapshot's xmin
    xmax: int
    schema_digest: str
    options_digest: str
    catalog_digest: str
    tables: dict[str, TableState]
    sequences: dict[str, list[Any]]  # name -> [value, is_called]
    local_relfilenodes: dict[str, int] = field(default_factory=dict)  # every table and matview of the working db
    snapshot_relfilenodes: dict[str, int] = field(default_factory=dict)  # the snapshot's own (copies share them); a
    # working database made from the spare brought up to date differs where tables were emptied. Empty: the same.
    local_rows: dict[str, int] = field(default_factory=dict)
    local_catalog_rows: dict[str, int] = field(default_factory=dict)
    dest_oid: int | None = None  # the working database made from the snapshot, and the local horizon then
    dest_horizon: int | None = None
    sequences_in_snapshot: bool = True  # False once a re-sync found only sequences changed (set on resets)
    content_id: str = ""  # new whenever the snapshot's contents change; a spare copy names the one it holds
    # The source database's own settings (ALTER DATABASE / ROLE ... IN DATABASE ... SET), given to every working
    # database made from the snapshot (CREATE DATABASE ... TEMPLATE does not copy them). See tether.archive.
    database_settings: list[str] = field(default_factory=list)
    # A subset sync: per table, a digest of the rows it took ("whole": all of them); see tether.sync.subset.
    subset_selections: dict[str, str] = field(default_factory=dict)
    version: int = STATE_VERSION

    def snapshot_files(self) -> dict[str, int]:
        """The relfilenodes a copy of the snapshot (a reset, a spare) has."""
        return self.snapshot_relfilenodes or self.local_relfilenodes

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> SyncState | None:
        """The stored state, or None when there is none or it was written by another version."""
        if not text:
            return None
        try:
            data = json.loads(text)
            if data.get("version") != STATE_VERSION:
                return None
            data["tables"] = {name: TableState(**value) for name, value in data["tables"].items()}
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def window_condition(reference: XidSnapshot, horizon: int) -> sql.Composable | None:
    """SQL true for rows whose ``xmin`` is at or above ``horizon``, read in a snapshot ``reference``.

    ``age(x)`` is the distance from the next transaction id (fixed for the statement) back to ``x`` in
    32-bit arithmetic, so ``age(xmin) <= age(horizon)`` is ``xmin >= horizon`` for every id less than 2^31
    old; older frozen rows may come out as "recent", which only ever costs a copy. None when the horizon is
    too far back to decide.
    """
    width = reference.xmax - horizon
    if width < 0 or width >= MAX_WINDOW:
        return None
    return sql.SQL("age(xmin) <= age({}::xid)").format(sql.Literal(str(horizon % XID_SPACE)))


_ROW_HASH = sql.SQL("hashtextextended(ctid::text || ':' || xmin::text, 0)")
BATCH_BELOW = 1024 * 1024  # tables smaller than this are fingerprinted many to a query
BATCH_SIZE = 64


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    old_window_rows: int  # relative to the previous sync's horizon (compared)
    old_window_hash: str
    window_rows: int  # relative to this snapshot's horizon (stored for next time)
    window_hash: str


def fingerprint_query(relation: Relation, old: sql.Composable | None, new: sql.Composable) -> sql.Composed:
    old_condition = old if old is not None else sql.SQL("true")
    return sql.SQL(
        "SELECT {name}, count(*), count(*) FILTER (WHERE {o}), coalesce(sum({h}) FILTER (WHERE {o}), 0)::text, "
        "count(*) FILTER (WHERE {n}), coalesce(sum({h}) FILTER (WHERE {n}), 0)::text FROM ONLY {t}").format(
        name=sql.Literal(relation.qualified), o=old_condition, n=new, h=_ROW_HASH, t=relation.identifier)


def batched(queries: Iterable[tuple[str, sql.Composed, int]]) -> list[tuple[str, sql.Composed]]:
    """Big tables one query each (first), small ones many per UNION ALL: 300 tiny tables, a handful of queries."""
    ordered = sorted(queries, key=lambda item: -item[2])
    jobs = [(name, query) for name, query, size in ordered if size >= BATCH_BELOW]
    small = [query for _, query, size in ordered if size < BATCH_BELOW]
    for start in range(0, len(small), BATCH_SIZE):
        jobs.append((f"batch {start}", sql.SQL(" UNION ALL ").join(small[start:start + BATCH_SIZE])))
    return jobs


def _rows(conn: psycopg.Connection, query: sql.Composed) -> list[tuple[Any, ...]]:
    return conn.execute(query).fetchall()


def fingerprint_tables(source: DatabaseAddress, snapshot_id: str, xids: XidSnapshot, previous_horizon: int | None,
                       relations: Sequence[Relation], jobs: int,
                       sessions: JoinedSessions | None = None) -> dict[str, Fingerprint]:
    """Scan ``relations`` in the snapshot (in parallel) and fingerprint their rows; ``sessions``: sessions to the
    source opening (or open) in the snapshot, taken before new ones are opened; the ones not taken are closed."""
    new = window_condition(xids, xids.xmin)
    assert new is not None
    old = window_condition(xids, previous_horizon) if previous_horizon is not None else None
    queries = batched((relation.qualified, fingerprint_query(relation, old, new), relation.bytes)
                      for relation in relations)

    def open_session() -> psycopg.Connection:
        return sessions.take() if sessions is not None else joined_session(source, snapshot_id)

    try:
        results = run_parallel(queries, open_session, _rows, jobs)
    finally:
        if sessions is not None:
            sessions.release()  # fewer queries than sessions: the others close now, not at the end of the sync
    return {row[0]: Fingerprint(int(row[1]), int(row[2]), str(row[3]), int(row[4]), str(row[5]))
            for rows in results.values() for row in rows}


def local_table_check(relation_name: str, identifier: sql.Identifier, condition: sql.Composable) -> sql.Composed:
    return sql.SQL("SELECT {}, count(*), count(*) FILTER (WHERE {}) FROM ONLY {}").format(
        sql.Literal(relation_name), condition, identifier)


def local_unchanged(dest: DatabaseAddress, state: SyncState, jobs: int) -> tuple[bool, str]:
    """Whether the local working database is exactly as the last sync or reset left it, and if not, why."""
    if state.dest_oid is None or state.dest_horizon is None:
        return False, "the last sync did not record the local database's state"
    with connect_local(dest) as conn:
        row = conn.execute("SELECT oid, pg_current_snapshot()::text FROM pg_database "
                           "WHERE datname = current_database()").fetchone()
        assert row is not None
        if row[0] != state.dest_oid:
            return False, "the local database was replaced since the last sync"
        condition = window_condition(XidSnapshot.parse(row[1]), state.dest_horizon)
        if condition is None:
            return False, "too many transactions ran locally since the last sync"
        relations = local_relations(conn)
        if {name: relation.relfilenode for name, relation in relations.items()} != state.local_relfilenodes:
            return False, "tables were created, dropped, truncated or rewritten locally"
        catalogs = catalog_rows(conn, condition)
        if any(written for _, written in catalogs.values()):
            return False, "the local schema changed"
        if {name: rows for name, (rows, _) in catalogs.items()} != state.local_catalog_rows:
            return False, "the local schema changed"
    queries = batched((name, local_table_check(name, relation.identifier, condition), relation.bytes)
                      for name, relation in relations.items())
    results = run_parallel(queries, lambda: connect_local(dest), _rows, jobs)
    for rows in results.values():
        for name, count, written in rows:
            if written or count != state.local_rows.get(name):
                return False, f"rows of {name} changed locally"
    return True, "unchanged since the last sync"


@dataclass(frozen=True)
class LocalRelation:
    identifier: sql.Identifier
    relfilenode: int
    bytes: int


def local_relations(conn: psycopg.Connection) -> dict[str, LocalRelation]:
    """Every user table and populated materialized view with storage in the connected database (one never
    populated, as at the source, cannot even be counted)."""
    rows = conn.execute("""
        SELECT n.nspname, c.relname, c.relfilenode, pg_relation_size(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated)) AND c.relpersistence <> 't'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'""")
    return {f"{schema}.{name}": LocalRelation(sql.Identifier(schema, name), int(node), int(size))
            for schema, name, node, size in rows}


def catalog_rows(conn: psycopg.Connection, condition: sql.Composable | None) -> dict[str, tuple[int, int]]:
    """Row counts of the database's own catalogs (and, given a window, how many rows it holds).

    Planner statistics are left out: (auto)ANALYZE rewrites them without changing any data or schema.
    """
    names = [row[0] for row in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace AND relkind = 'r' "
        "AND NOT relisshared AND relname NOT IN ('pg_statistic', 'pg_statistic_ext_data') "
        "AND has_table_privilege(oid, 'SELECT') ORDER BY relname")]
    window = condition if condition is not None else sql.SQL("false")
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, count(*), count(*) FILTER (WHERE {}) FROM pg_catalog.{}").format(
            sql.Literal(name), window, sql.Identifier(name)) for name in names)
    return {row[0]: (int(row[1]), int(row[2])) for row in conn.execute(query)}


def changed_tables(previous: SyncState, relations: Iterable[Relation],
                   fingerprints: dict[str, Fingerprint], selections: dict[str, str] | None = None) -> list[str]:
    """Names of the tables whose rows may differ from the last sync's copy.

    ``selections``: a subset's rows per table. A table the subset takes other rows from is copied again; one it
    takes only some rows from is compared without its row count (the count is the subset's, and a row deleted
    outside the subset changes nothing here, while one deleted inside it changes the selection).
    """
    changed = []
    for relation in relations:
        name = relation.qualified
        before = previous.tables.get(name)
        now = fingerprints[name]
        selection = (selections or {}).get(name)
        partial = selection is not None and selection != "whole"
        if (before is None or before.relfilenode != relation.relfilenode
                or (before.rows != now.rows and not partial)
                or before.window_rows != now.old_window_rows or before.window_hash != now.old_window_hash
                or (selections is not None and previous.subset_selections.get(name) != selection)):
            changed.append(name)
    return changed
