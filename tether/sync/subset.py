"""A referentially complete subset of the source, computed with read-only queries in the sync's snapshot.

Rows are named by (leaf table, ctid): within one exported snapshot every session sees the same row versions at
the same places, so the plan's sessions and the copy workers agree on them, and ctids name rows of tables
without any key too. The closure keeps the row sets in this process (the source may be a read replica: no
temporary table, no write), and runs in rounds: the roots' rows; the rows of the listed child tables that
reference them, level by level down to the depth; then, until nothing new turns up, every row a selected row
references, through every foreign key (composite ones, self-references and cycles included). Each round looks
rows up by the key values the previous round read (tether.sync.subset_queries), so a table is never scanned
again to find the rows it already gave. Each copy then selects its table's rows by ctid (or, for a percentage,
by the same immutable hash predicate plus the ctids of the rows added to it), so what arrives is exactly the
plan's rows, and every foreign key holds.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from tether.errors import ConfigError
from tether.sync.catalog import Relation, SourceCatalog
from tether.sync.plan import SyncPlan, TableCopy
from tether.sync.subset_graph import WHOLE, Classification, Reach, SubsetGraph, classify, read_graph
from tether.sync.subset_queries import (
    ctid_filter,
    lookup_query,
    root_query,
    sample_predicate,
    text_array,
    whole_lookup_query,
)
from tether.sync.subset_spec import Root, SubsetSpec

CHUNK = 20_000  # key values per query: a few hundred kB of parameters


@dataclass
class LeafRows:
    """What the subset takes from one leaf table, by category; ``predicate`` rows are selected by the sample's
    hash (not listed), the others by ctid."""

    relation: Relation
    unit: str
    reach: Reach
    selected: set[int] = field(default_factory=set)
    children: set[int] = field(default_factory=set)
    referenced: set[int] = field(default_factory=set)
    predicate: sql.Composable | None = None  # the percentage roots' sample, on this leaf's own columns
    predicate_rows: set[int] = field(default_factory=set)  # of ``selected``: those the predicate selects
    whole_rows: int = 0

    def __contains__(self, ctid: int) -> bool:
        return ctid in self.selected or ctid in self.children or ctid in self.referenced

    @property
    def whole(self) -> bool:
        return self.reach.how == WHOLE

    @property
    def counts(self) -> dict[str, int]:
        return {"selected": len(self.selected), "children": len(self.children),
                "referenced": len(self.referenced), "whole": self.whole_rows}

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def listed(self) -> set[int]:
        """The rows the copy names by ctid: all but those the predicate selects."""
        return (self.selected - self.predicate_rows) | self.children | self.referenced

    def row_filter(self) -> sql.Composable | None:
        """The WHERE condition of the copy (None: every row)."""
        if self.whole:
            return None
        listed = self.listed()
        parts: list[sql.Composable] = []
        if self.predicate is not None:
            parts.append(self.predicate)
        if listed:
            parts.append(ctid_filter(listed))
        return sql.SQL(" OR ").join(parts) if parts else sql.SQL("false")

    def digest(self) -> str:
        """Names exactly the rows taken: a re-sync copies the table again when it differs."""
        if self.whole:
            return "whole"
        text = "|".join(map(str, sorted(self.selected | self.children | self.referenced)))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class SubsetResult:
    """The plan of a subset: how each table is reached and the rows taken from each leaf table."""

    spec: SubsetSpec
    graph: SubsetGraph
    classification: Classification
    leaves: dict[int, LeafRows]
    seconds: float = 0.0
    queries: int = 0
    rounds: int = 0

    def apply(self, plan: SyncPlan) -> SyncPlan:
        """The plan with each copy limited to the subset's rows (and the row count it must end with)."""
        copies: list[TableCopy] = []
        for copy in plan.copies:
            leaf = self.leaves.get(copy.relation.oid)
            if leaf is None or leaf.whole:
                copies.append(copy)
                continue
            copies.append(replace(copy, row_filter=leaf.row_filter(), expected_rows=leaf.rows))
        # Biggest share of work first, as the full sync orders them by size.
        copies.sort(key=lambda copy: (-self._weight(copy.relation), copy.name))
        selections = {leaf.relation.qualified: leaf.digest() for leaf in self.leaves.values()}
        return replace(plan, copies=copies, subset_selections=selections)

    def _weight(self, relation: Relation) -> float:
        leaf = self.leaves.get(relation.oid)
        estimate = self.graph.estimates.get(relation.oid, -1.0)
        if leaf is None or leaf.whole or estimate <= 0:
            return float(relation.bytes)
        return relation.bytes * min(1.0, leaf.rows / estimate)


Say = Callable[[str], None]
OpenSession = Callable[[], psycopg.Connection]  # another session in the same snapshot (read-only)
Found = dict[int, dict[int, tuple[Any, ...]]]  # leaf table -> ctid -> its row (see Row): rows a round turned up
CARRIED = 2  # where a row's carried values start


def _say_nothing(_: str) -> None:
    """The default progress callback: say nothing."""


def compute_subset(conn: psycopg.Connection, catalog: SourceCatalog, plan: SyncPlan, spec: SubsetSpec,
                   say: Say = _say_nothing, open_session: OpenSession | None = None,
                   jobs: int = 1) -> SubsetResult:
    """Classify the tables and collect the subset's rows, in ``conn``'s snapshot (read-only queries only).

    ``open_session`` and ``jobs``: each round's queries run on up to ``jobs`` sessions of the same snapshot.
    """
    started = time.perf_counter()
    graph = read_graph(conn, catalog, plan)
    classification = classify(graph, spec)
    with _Sessions(conn, open_session, jobs) as sessions:
        closure = _Closure(sessions, graph, classification, spec, say)
        closure.run()
    return SubsetResult(spec, graph, classification, closure.leaves, time.perf_counter() - started,
                        sessions.queries, closure.rounds)


Job = tuple[sql.Composed, list[str]]
Row = tuple[Any, ...]  # (leaf oid, ctid number, carried values as text...)


class _Sessions:
    """The snapshot's own session and, once a round has several queries, more sessions joined to it."""

    def __init__(self, conn: psycopg.Connection, open_session: OpenSession | None, jobs: int) -> None:
        self.conn, self.open_session, self.jobs = conn, open_session, max(1, jobs)
        self.extra: list[psycopg.Connection] = []
        self.queries = 0

    def __enter__(self) -> _Sessions:
        return self

    def __exit__(self, *_: object) -> None:
        for conn in self.extra:
            conn.close()

    def run(self, jobs: list[Job]) -> list[list[Row]]:
        """Each job's rows, in the order of ``jobs``."""
        self.queries += len(jobs)
        wanted = min(self.jobs, len(jobs)) - 1
        if wanted > 0 and self.open_session is not None:
            while len(self.extra) < wanted:
                self.extra.append(self.open_session())
        sessions = [self.conn, *self.extra[:max(0, wanted)]]
        results: list[list[Row]] = [[] for _ in jobs]
        if len(sessions) == 1:
            for index, job in enumerate(jobs):
                results[index] = _fetch(self.conn, job)
            return results
        lock = threading.Lock()
        pending = iter(range(len(jobs)))
        errors: list[BaseException] = []

        def work(conn: psycopg.Connection) -> None:
            try:
                while True:
                    with lock:
                        index = next(pending, None)
                    if index is None or errors:
                        return
                    results[index] = _fetch(conn, jobs[index])
            except BaseException as error:
                with lock:
                    errors.append(error)

        threads = [threading.Thread(target=work, args=(conn,), name="sync-subset", daemon=True) for conn in sessions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return results


def _fetch(conn: psycopg.Connection, job: Job) -> list[Row]:
    """The rows as the server sent them: (leaf oid, ctid, carried values...); no per-row copy in Python."""
    query, params = job
    return conn.execute(query, params or None).fetchall()



class _Closure:
    """The rounds of the closure; the row sets live in ``leaves``."""

    def __init__(self, sessions: _Sessions, graph: SubsetGraph, classification: Classification,
                 spec: SubsetSpec, say: Say) -> None:
        self.sessions, self.graph, self.classification, self.spec, self.say = (sessions, graph, classification,
                                                                               spec, say)
        self.conn = sessions.conn
        self.relations = graph.catalog.relations
        self.leaves: dict[int, LeafRows] = {}
        for leaf in sorted(graph.copied):
            unit = graph.unit(leaf)
            self.leaves[leaf] = LeafRows(self.relations[leaf], self.relations[unit].qualified,
                                         classification.reach[unit])
        # The columns each table's rows carry from round to round: those its foreign keys use, either way.
        used: dict[int, set[str]] = {}
        for link in graph.links:
            used.setdefault(graph.unit(link.child), set()).update(link.child_columns)
            used.setdefault(graph.unit(link.parent), set()).update(link.parent_columns)
        self.carried = {unit: tuple(sorted(columns)) for unit, columns in used.items()}
        # Child rows by the key they were found through: their parent through that key is in already.
        self.found_through: dict[tuple[int, int], set[int]] = {}
        self.rounds = 0

    def carry(self, oid: int) -> tuple[str, ...]:
        return self.carried.get(self.graph.unit(oid), ())

    def run(self) -> None:
        self.say("subset: selecting the roots' rows")
        frontier = self._roots()
        expandable = {leaf: dict(rows) for leaf, rows in frontier.items()}
        for depth in range(1, self.spec.depth + 1):
            if not expandable or not self.classification.children:
                break
            self.say(f"subset: rows that reference them, depth {depth}")
            expandable = self._children(expandable)
            for leaf, rows in expandable.items():
                frontier.setdefault(leaf, {}).update(rows)
        self._count_whole()
        pending: dict[int, dict[int, tuple[Any, ...]] | None] = {leaf: rows for leaf, rows in frontier.items()
                                                                 if rows}
        pending.update({leaf: None for leaf, rows in self.leaves.items() if rows.whole})
        while pending:
            self.rounds += 1
            found = self._parents(pending)
            total = sum(len(rows) for rows in found.values())
            if total:
                self.say(f"subset: round {self.rounds}: {total:,} referenced rows added")
            pending = {leaf: rows for leaf, rows in found.items() if rows}

    def _roots(self) -> Found:
        found: Found = {}
        for unit, roots in self.classification.roots.items():
            relation = self.relations[unit]
            key = self.graph.sample_keys.get(unit, ())
            for root in roots:
                query = root_query(relation, root, self.spec.seed, key, self.carry(unit))
                for row in self._root_rows(query, root, relation):
                    leaf, ctid = row[0], row[1]
                    rows = self.leaves.get(leaf)
                    if rows is None:  # a partition whose rows are not copied (a foreign table)
                        continue
                    rows.selected.add(ctid)
                    found.setdefault(leaf, {})[ctid] = row
                    if root.kind == "percent":
                        rows.predicate_rows.add(ctid)
                if root.kind == "percent":
                    predicate = sample_predicate(self.spec.seed, key, relation, root)
                    for leaf in self.graph.leaves.get(unit, ()):
                        rows = self.leaves[leaf]
                        rows.predicate = predicate if rows.predicate is None else sql.SQL("{} OR {}").format(
                            rows.predicate, predicate)
        return found

    def _root_rows(self, query: sql.Composed, root: Root, relation: Relation) -> list[Row]:
        if root.kind != "where":
            return self.sessions.run([(query, [])])[0]
        # The user's condition: checked in a savepoint (an error must not end the snapshot's transaction), with
        # a parameter so that it runs as one prepared statement (a second statement in it is refused).
        checked = sql.SQL("{} AND %s").format(query)
        try:
            with self.conn.transaction():
                self.sessions.queries += 1
                return self.conn.execute(checked, [True]).fetchall()
        except psycopg.Error as error:
            message = " ".join(str(error).split())
            raise ConfigError(f"The subset condition {root.describe()} failed on the source: {message}. It is "
                              f"SQL evaluated on {relation.qualified} in a read-only session whose search_path is "
                              "pg_catalog: qualify other tables and functions (app.f(), not f()).") from None

    def _key_values(self, source: int, rows: dict[int, tuple[Any, ...]], columns: tuple[str, ...],
                    skip: set[int] | None = None) -> set[tuple[str, ...]]:
        """The distinct non-NULL values of ``columns`` in ``rows`` of leaf ``source`` (a NULL references nothing)."""
        carried = self.carry(source)
        positions = [carried.index(column) + CARRIED for column in columns]
        chosen = rows.values() if not skip else [row for ctid, row in rows.items() if ctid not in skip]
        if len(positions) == 1:
            position = positions[0]
            return {(row[position],) for row in chosen if row[position] is not None}
        picked = (tuple(row[position] for position in positions) for row in chosen)
        return {values for values in picked if None not in values}

    def _types(self, oid: int, columns: Sequence[str]) -> list[str]:
        types = {column.name: column.type_sql for column in self.relations[oid].columns}
        return [types[column] for column in columns]

    def _lookups(self, target: int, columns: tuple[str, ...], value_types: list[str],
                 keys: set[tuple[str, ...]]) -> list[Job]:
        query = lookup_query(self.relations[target], columns, value_types, self.carry(target))
        ordered = sorted(keys)
        return [(query, [text_array(column) for column in zip(*ordered[start:start + CHUNK], strict=True)])
                for start in range(0, len(ordered), CHUNK)]

    def _children(self, expandable: Found) -> Found:
        """One level down: rows of listed child tables that reference the ``expandable`` rows."""
        jobs: list[Job] = []
        links: list[int] = []
        for number, link in enumerate(self.graph.links):
            if self.graph.unit(link.child) not in self.classification.children:
                continue
            keys: set[tuple[str, ...]] = set()
            for leaf in self.graph.leaves.get(link.parent, ()):
                if expandable.get(leaf):
                    keys.update(self._key_values(leaf, expandable[leaf], link.parent_columns))
            for job in self._lookups(link.child, link.child_columns, self._types(link.parent, link.parent_columns),
                                     keys):
                jobs.append(job)
                links.append(number)
        found: Found = {}
        for number, rows_found in zip(links, self.sessions.run(jobs), strict=True):
            for row in rows_found:
                child, ctid = row[0], row[1]
                rows = self.leaves.get(child)
                if rows is None or rows.whole:
                    continue
                self.found_through.setdefault((child, number), set()).add(ctid)
                if ctid in rows:
                    continue
                rows.children.add(ctid)
                found.setdefault(child, {})[ctid] = row
        return found

    def _parents(self, pending: dict[int, dict[int, tuple[Any, ...]] | None]) -> Found:
        """One round up: the rows the ``pending`` rows reference that are not in yet (None: every row)."""
        jobs: list[Job] = []
        for number, link in enumerate(self.graph.links):
            targets = self.graph.leaves.get(link.parent, ())
            if not targets or all(self.leaves[leaf].whole for leaf in targets):
                continue  # every row of the referenced table is in already
            parent = self.relations[link.parent]
            keys: set[tuple[str, ...]] = set()
            for leaf in self.graph.leaves.get(link.child, ()):
                if leaf not in pending:
                    continue
                delta = pending[leaf]
                if delta is None:
                    jobs.append((whole_lookup_query(parent, link.parent_columns, self.relations[leaf],
                                                    link.child_columns, self.carry(link.parent)), []))
                else:
                    keys.update(self._key_values(leaf, delta, link.child_columns,
                                                 self.found_through.get((leaf, number))))
            jobs.extend(self._lookups(link.parent, link.parent_columns, self._types(link.child, link.child_columns),
                                      keys))
        found: Found = {}
        for rows_found in self.sessions.run(jobs):
            for row in rows_found:
                target, ctid = row[0], row[1]
                rows = self.leaves.get(target)
                if rows is None or rows.whole or ctid in rows:
                    continue
                rows.referenced.add(ctid)
                found.setdefault(target, {})[ctid] = row
        return found

    def _count_whole(self) -> None:
        whole = [rows for rows in self.leaves.values() if rows.whole]
        for start in range(0, len(whole), 100):
            batch = whole[start:start + 100]
            query = sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT {}::oid, count(*) FROM ONLY {}").format(sql.Literal(rows.relation.oid),
                                                                       rows.relation.identifier) for rows in batch)
            self.sessions.queries += 1
            for oid, count in self.conn.execute(query).fetchall():
                self.leaves[int(oid)].whole_rows = int(count)
