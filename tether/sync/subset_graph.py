"""The tables of a subset as a graph: foreign keys with their columns, partition leaves, sampling keys, and how
each table is reached (a root, a child of one, referenced by one, copied whole, or left empty).

The graph is read from the source's catalogs in the sync's snapshot (read-only queries); the classification is a
pure function of it and the spec, so ``--subset-plan`` and the sync agree on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg

from tether.errors import ConfigError
from tether.sync.catalog import SourceCatalog
from tether.sync.plan import SyncPlan, matches
from tether.sync.subset_spec import SPEC_HELP, Root, SubsetSpec

ROOT, CHILDREN, REFERENCED, WHOLE, EMPTY = "root", "children", "referenced", "whole", "empty"
FEW_ROWS = 1_000  # a small table naming sampled rows is still copied whole up to this many rows
FEW_ROWS_BYTES = 64 * 1024  # the same, for a table the planner has no row count for


@dataclass(frozen=True)
class Link:
    """One foreign key as the closure follows it: ``child``'s columns reference ``parent``'s.

    Both ends are the tables the constraint is declared on (a partitioned table covers its partitions); the
    copies PostgreSQL makes of it on each partition are not listed again.
    """

    name: str
    child: int
    parent: int
    child_columns: tuple[str, ...]
    parent_columns: tuple[str, ...]


@dataclass
class SubsetGraph:
    catalog: SourceCatalog
    copied: set[int]  # leaf tables whose rows the sync copies (the plan's copies)
    links: list[Link]
    leaves: dict[int, tuple[int, ...]]  # any table or partitioned table -> its copied leaf tables
    sample_keys: dict[int, tuple[str, ...]]  # table -> primary key (or a unique NOT NULL key); () = the whole row
    estimates: dict[int, float] = field(default_factory=dict)  # leaf -> the planner's row estimate (-1 unknown)
    all_leaves_copied: dict[int, bool] = field(default_factory=dict)

    def unit(self, oid: int) -> int:
        """The table a user names for ``oid``: its partition root, else itself."""
        return self.catalog.root_of(oid)

    def name(self, oid: int) -> str:
        return self.catalog.relations[oid].qualified

    def unit_bytes(self, unit: int) -> int:
        return sum(self.catalog.relations[leaf].bytes for leaf in self.leaves.get(unit, ()))


def read_graph(conn: psycopg.Connection, catalog: SourceCatalog, plan: SyncPlan) -> SubsetGraph:
    """Foreign keys (with columns), partition trees and keys of the tables the plan fills, in the snapshot."""
    copied = {copy.relation.oid for copy in plan.copies}
    tables = [oid for oid, relation in catalog.relations.items() if relation.kind in ("r", "p")]
    links = [Link(str(row[0]), int(row[1]), int(row[2]), tuple(row[3]), tuple(row[4])) for row in conn.execute("""
        SELECT c.conname, c.conrelid, c.confrelid,
               ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(num, pos)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.pos),
               ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(num, pos)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.pos)
        FROM pg_constraint c
        WHERE c.contype = 'f' AND c.conparentid = 0 AND c.conrelid = ANY(%s) AND c.confrelid = ANY(%s)
        ORDER BY c.conrelid, c.conname""", (tables, tables))]
    links = [link for link in links if link.child in catalog.relations and link.parent in catalog.relations
             and _has_link(catalog, plan, link)]
    # Partitions below each table, at any depth (a partitioned table's rows live in its leaves).
    below: dict[int, list[int]] = {oid: [oid] for oid in tables}
    for top, member in conn.execute("""
            WITH RECURSIVE tree(top, member) AS (
                SELECT c.oid, c.oid FROM pg_class c WHERE c.oid = ANY(%s) AND c.relkind = 'p'
              UNION ALL
                SELECT tree.top, i.inhrelid FROM tree
                JOIN pg_inherits i ON i.inhparent = tree.member
                JOIN pg_class c ON c.oid = i.inhrelid AND c.relispartition)
            SELECT top, member FROM tree WHERE top <> member""", (tables,)):
        below.setdefault(int(top), [int(top)]).append(int(member))
    leaves = {oid: tuple(sorted(member for member in members if member in copied)) for oid, members in below.items()}
    all_copied = {oid: all(member in copied for member in members
                           if catalog.relations.get(member) is not None and catalog.relations[member].kind != "p")
                  for oid, members in below.items()}
    keys: dict[int, tuple[str, ...]] = {}
    for table, primary, columns in conn.execute("""
            SELECT i.indrelid, i.indisprimary,
                   ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(num, pos)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.pos)
            FROM pg_index i
            WHERE i.indrelid = ANY(%s) AND i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL
              AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) AS k(num)
                              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
                              WHERE NOT a.attnotnull OR k.num = 0)
            ORDER BY i.indrelid, i.indisprimary DESC, i.indnkeyatts, i.indexrelid""", (tables,)):
        if int(table) not in keys and (primary or columns):
            keys[int(table)] = tuple(columns)
    estimates = {int(oid): float(tuples) for oid, tuples in conn.execute(
        "SELECT oid, reltuples FROM pg_class WHERE oid = ANY(%s)", (sorted(copied),))}
    return SubsetGraph(catalog, copied, links, leaves, keys, estimates, all_copied)


def _has_link(catalog: SourceCatalog, plan: SyncPlan, link: Link) -> bool:
    """A key the copy keeps, between tables whose rows are copied (others are left out or stay empty)."""
    excluded = plan.excluded_oids
    return (catalog.root_of(link.child) not in excluded and catalog.root_of(link.parent) not in excluded
            and len(link.child_columns) == len(link.parent_columns) > 0)


@dataclass(frozen=True)
class Reach:
    """How a table (a partition tree counts as one) gets its rows in the subset."""

    how: str  # root | children | referenced | whole | empty
    reason: str
    depth: int = 0  # children: steps from a root


@dataclass
class Classification:
    reach: dict[int, Reach]  # unit (table or partition root) -> how it is reached
    roots: dict[int, list[Root]]  # unit -> its specs
    children: set[int]  # units whose rows may be pulled in as children
    notes: list[str]


def _units(graph: SubsetGraph) -> list[int]:
    """The tables the sync fills, as the user names them (partition roots, not partitions), by name."""
    units = {graph.unit(oid) for oid in graph.copied}
    return sorted(units, key=graph.name)


def _match(graph: SubsetGraph, units: Iterable[int], pattern: str, exact: bool) -> list[int]:
    if exact:
        return [unit for unit in units if graph.name(unit) == pattern]
    return [unit for unit in units if matches(graph.catalog.relations[unit], pattern)]


def classify(graph: SubsetGraph, spec: SubsetSpec) -> Classification:
    """Roots from the specs, children within the depth, then: small tables whole, tables the others reference
    (transitively) referenced, the rest empty. Unknown names are one ConfigError."""
    units = _units(graph)
    every = sorted({graph.unit(oid) for oid, relation in graph.catalog.relations.items()
                    if relation.kind in ("r", "p")}, key=graph.name)
    problems: list[str] = []
    roots: dict[int, list[Root]] = {}
    for root in spec.roots:
        hits = _match(graph, units, root.table, root.exact)
        if not hits:
            others = _match(graph, every, root.table, root.exact)
            problems.append(f"{root.describe()}: " + (
                f"{', '.join(graph.name(oid) for oid in others)} has no rows copied (--exclude, --exclude-data "
                "or --tables leaves it out)" if others else "no table in the source matches"))
        for unit in hits:
            roots.setdefault(unit, []).append(root)
    listed: set[int] = set()
    for pattern in spec.children:
        hits = _match(graph, units, pattern, False)
        if not hits:
            problems.append(f"--subset-children {pattern}: no table whose rows are copied matches")
        listed.update(hits)
    if problems:
        raise ConfigError(f"The subset does not match the source ({spec.origin}): " + "; ".join(problems) + ". "
                          + SPEC_HELP)
    reach: dict[int, Reach] = {unit: Reach(ROOT, "root: " + ", ".join(root.describe() for root in specs))
                               for unit, specs in roots.items()}
    unit_links = [(graph.unit(link.child), graph.unit(link.parent)) for link in graph.links]
    # Children, breadth first: a listed table whose rows reference a root's (or a child's) rows, within the depth.
    frontier = set(roots)
    for depth in range(1, spec.depth + 1):
        found: dict[int, int] = {}
        for child, parent in unit_links:
            if parent in frontier and child in listed and child not in reach:
                found.setdefault(child, parent)
        for child, parent in sorted(found.items(), key=lambda item: graph.name(item[0])):
            reach[child] = Reach(CHILDREN, f"children of {graph.name(parent)} (depth {depth})", depth)
        frontier = set(found) | frontier
    notes = [f"{graph.name(unit)} is listed as a child but references no selected table within depth "
             f"{spec.depth}" for unit in sorted(listed - set(reach), key=graph.name)]
    # A table whose rows lead (through its references) to a sampled table is copied whole only when it has few
    # rows (a list of admins, settings someone edited): all the rows of a bigger one would drag in every row they
    # point at, and the sample with them.
    sampled = set(reach)
    leads = _leading_to(sampled, unit_links)
    held_back: dict[int, int] = {}
    for unit in units:
        if unit in reach:
            continue
        size = graph.unit_bytes(unit)
        relation = graph.catalog.relations[unit]
        if relation.extension_condition is not None:
            reach[unit] = Reach(WHOLE, "an extension's configuration table: its user rows are copied whole")
        elif size <= spec.whole_below and unit not in leads:
            reach[unit] = Reach(WHOLE, f"small ({_size(size)} ≤ {_size(spec.whole_below)}): copied whole")
        elif size <= spec.whole_below and _few_rows(graph, unit):
            reach[unit] = Reach(WHOLE, f"small, at most {FEW_ROWS:,} rows: copied whole (the rows of "
                                       f"{graph.name(leads[unit])} it names come along)")
        elif size <= spec.whole_below:
            held_back[unit] = leads[unit]
    # Referenced: whatever the filled tables point at, transitively.
    pending = [unit for unit in reach]
    while pending:
        current = pending.pop()
        for child, parent in unit_links:
            if child == current and parent not in reach:
                reach[parent] = Reach(REFERENCED, f"referenced by {graph.name(child)}")
                pending.append(parent)
    for unit in units:
        if unit in held_back and unit not in reach:
            reach[unit] = Reach(EMPTY, f"references the sampled {graph.name(held_back[unit])}: left empty (add it to "
                                       "--subset-children for its rows that reference the selected ones)")
        elif unit not in reach:
            reach[unit] = Reach(EMPTY, f"nothing reaches it and it is large ({_size(graph.unit_bytes(unit))} > "
                                       f"{_size(spec.whole_below)}): left empty")
    return Classification(reach, roots, {unit for unit, found in reach.items() if found.how == CHILDREN}, notes)


def _few_rows(graph: SubsetGraph, unit: int) -> bool:
    """At most FEW_ROWS rows by the planner's estimate; a table never analyzed must fit in FEW_ROWS_BYTES."""
    leaves = graph.leaves.get(unit, ())
    estimates = [graph.estimates.get(leaf, -1.0) for leaf in leaves]
    if any(estimate < 0 for estimate in estimates):
        return graph.unit_bytes(unit) <= FEW_ROWS_BYTES
    return sum(estimates) <= FEW_ROWS


def _leading_to(targets: set[int], links: list[tuple[int, int]]) -> dict[int, int]:
    """Tables (not in ``targets``) whose references lead to one of ``targets``, directly or through others; each
    with the target it reaches."""
    found: dict[int, int] = {}
    pending = [(target, target) for target in targets]
    while pending:
        current, target = pending.pop()
        for child, parent in links:
            if parent == current and child not in targets and child not in found:
                found[child] = target
                pending.append((child, target))
    return found


def _size(size: int) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def reaching(reach: Mapping[int, Reach], how: str) -> list[int]:
    return [unit for unit, found in reach.items() if found.how == how]
