"""Which relations a sync creates, which it fills, and how each table's rows are selected on the source."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from psycopg import sql

from tether.errors import ConfigError
from tether.sync.anonymize import AppliedRule, Rule, applied_rules, column_expression
from tether.sync.catalog import Relation, SourceCatalog

_EXTENSION_WHERE = re.compile(r"^\s*WHERE\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Selection:
    """The user's patterns: globs on ``schema.table`` (a pattern without a dot matches the table name)."""

    tables: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_data: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, list[str]]:
        return {"tables": sorted(self.tables), "exclude": sorted(self.exclude),
                "exclude_data": sorted(self.exclude_data)}


@dataclass(frozen=True)
class TableCopy:
    """One table whose rows are copied: the columns both sides list, and the source's SELECT list."""

    relation: Relation
    rules: Mapping[str, Rule]
    binary: bool
    row_filter: sql.Composable | None = None  # a subset's rows (tether.sync.subset): ANDed into the WHERE
    expected_rows: int | None = None  # a subset's plan says how many rows the copy must hold

    @property
    def name(self) -> str:
        return self.relation.qualified

    @property
    def appends(self) -> bool:
        """An extension's configuration table already holds the extension's own rows: the user's are added."""
        return self.relation.extension_condition is not None

    def column_list(self) -> sql.Composable:
        return column_list(self.relation)

    def copy_out(self) -> sql.Composed:
        """``COPY ... TO STDOUT`` on the source: the table itself, or a SELECT applying the rules."""
        options = sql.SQL(" (FORMAT BINARY)" if self.binary else "")
        condition = self.relation.extension_condition
        if not self.rules and not condition and self.row_filter is None:
            return sql.SQL("COPY {}{} TO STDOUT{}").format(self.relation.identifier, self.column_list(), options)
        selected = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(column_expression(self.rules[column.name], column), sql.Identifier(column.name))
            if column.name in self.rules else sql.Identifier(column.name)
            for column in self.relation.copied_columns)
        # The extension's own condition, as pg_dump applies it (SQL the extension's script wrote on the source).
        where: sql.Composable = sql.SQL(" " + condition) if condition else sql.SQL("")
        if self.row_filter is not None:
            own = _EXTENSION_WHERE.sub("", condition or "", count=1).strip()
            where = (sql.SQL(" WHERE ({}) AND ({})").format(sql.SQL(own), self.row_filter) if own
                     else sql.SQL(" WHERE ({})").format(self.row_filter))
        return sql.SQL("COPY (SELECT {} FROM ONLY {}{}) TO STDOUT{}").format(selected, self.relation.identifier,
                                                                            where, options)

    def copy_in(self, freeze: bool = False) -> sql.Composed:
        options = [*(["FORMAT BINARY"] if self.binary else []), *(["FREEZE"] if freeze else [])]
        suffix = sql.SQL(f" ({', '.join(options)})" if options else "")
        return sql.SQL("COPY {}{} FROM STDIN{}").format(self.relation.identifier, self.column_list(), suffix)


def column_list(relation: Relation) -> sql.Composable:
    """`` (a, b)``: the columns COPY moves, by name (children may order them differently); nothing at all for
    a table without copied columns, which still has rows (COPY then moves one empty line per row)."""
    columns = relation.copied_columns
    if not columns:
        return sql.SQL("")
    return sql.SQL(" ({})").format(sql.SQL(", ").join(sql.Identifier(column.name) for column in columns))


@dataclass
class SyncPlan:
    excluded: list[Relation]  # not created at all (pg_dump --exclude-table)
    schema_only: list[Relation]  # created, left empty (--exclude-data, foreign tables)
    copies: list[TableCopy]  # created and filled, biggest first
    skipped_foreign_keys: set[int]  # constraint oids left out: they point at an excluded table
    notes: list[str] = field(default_factory=list)
    rules_applied: list[AppliedRule] = field(default_factory=list)
    large_objects: bool = True  # copy the source's large objects (with their owners, privileges and comments)
    subset_selections: dict[str, str] = field(default_factory=dict)  # a subset's rows per table (their digest)

    @property
    def excluded_oids(self) -> set[int]:
        return {relation.oid for relation in self.excluded}


def matches(relation: Relation, pattern: str) -> bool:
    target = relation.qualified if "." in pattern else relation.name
    return fnmatch.fnmatchcase(target, pattern)


def _matching(relations: Iterable[Relation], patterns: Sequence[str], flag: str) -> set[int]:
    found: set[int] = set()
    relations = list(relations)
    unmatched = []
    for pattern in patterns:
        hits = {relation.oid for relation in relations if matches(relation, pattern)}
        if not hits:
            unmatched.append(pattern)
        found |= hits
    if unmatched:
        raise ConfigError(f"{flag} {' '.join(unmatched)} matches no table in the source. Patterns are globs on "
                          "schema.table (app.*, *.audit_*) or on the table name alone; check the spelling, "
                          "a pattern that matches nothing would silently copy what it meant to leave out.")
    return found


def build_plan(catalog: SourceCatalog, selection: Selection, rules: Mapping[int, Mapping[str, Rule]],
               *, binary_allowed: bool, large_objects: bool = True, as_text: set[int] | None = None) -> SyncPlan:
    """Apply the patterns; partitions follow their root, views follow the tables they read.

    ``large_objects``: copy the source's large objects (every one must be readable by the source role).
    ``as_text``: tables whose rows are smaller as text COPY (sent so over a slow link).
    """
    selectable = [relation for relation in catalog.relations.values() if relation.partition_root is None]
    chosen = ({relation.oid for relation in selectable} if not selection.tables
              else _matching(selectable, selection.tables, "--tables"))
    chosen -= _matching(selectable, selection.exclude, "--exclude")
    no_data = _matching(selectable, selection.exclude_data, "--exclude-data")
    notes: list[str] = []

    excluded = {oid for oid in catalog.relations if catalog.root_of(oid) not in chosen}
    # A view or materialized view reading an excluded relation cannot be created either.
    pending = list(excluded)
    while pending:
        for view in catalog.dependent_views.get(pending.pop(), set()):
            if view not in excluded and view in catalog.relations:
                excluded.add(view)
                pending.append(view)
                notes.append(f"{catalog.relations[view].qualified} left out: it reads an excluded relation")
    data_off = {oid for oid in catalog.relations if catalog.root_of(oid) in no_data} - excluded

    def has_data(oid: int) -> bool:
        relation = catalog.relations[oid]
        return (relation.has_storage and oid not in excluded and oid not in data_off
                and (not relation.extension_member or relation.extension_condition is not None))

    unreadable = sorted(catalog.relations[oid].qualified for oid in catalog.relations
                        if oid not in excluded and not catalog.relations[oid].readable
                        and (not catalog.relations[oid].extension_member
                             or catalog.relations[oid].extension_condition is not None))
    if unreadable:
        shown = ", ".join(unreadable[:10]) + (f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else "")
        raise ConfigError(f"The source role {catalog.server.user!r} may not read {shown} (no SELECT privilege), and "
                          "pg_dump and the copy both need to. Grant it SELECT on them (the readonly role has it on "
                          "the application's tables), or leave them out with --exclude.")
    if large_objects and catalog.unreadable_large_objects:
        shown = ", ".join(str(oid) for oid in catalog.unreadable_large_objects[:10])
        more = len(catalog.unreadable_large_objects) - 10
        count = len(catalog.unreadable_large_objects)
        raise ConfigError(f"The source role {catalog.server.user!r} may not read {count}"
                          f" of the source's {catalog.large_objects} large objects ({shown}{' …' if more > 0 else ''})."
                          " Grant it SELECT on them (GRANT SELECT ON LARGE OBJECT ...), or leave all large objects "
                          "out with --exclude-large-objects.")

    skipped_keys: set[int] = set()
    problems: list[str] = []
    for key in catalog.foreign_keys:
        if key.table in excluded:
            continue
        source, target = catalog.relations[key.table], catalog.relations.get(key.references)
        target_name = target.qualified if target else str(key.references)
        if key.references in excluded:
            skipped_keys.add(key.oid)
            notes.append(f"foreign key {source.qualified}.{key.name} left out: {target_name} is excluded")
        fills = has_data(key.table) or any(has_data(oid) for oid, rel in catalog.relations.items()
                                           if rel.partition_root == key.table)
        target_empty = key.references in excluded or key.references in data_off
        if fills and target_empty and key.table != key.references:
            problems.append(f"{source.qualified} keeps its rows but references {target_name} "
                            f"(foreign key {key.name}), whose rows are left out")
    if problems:
        raise ConfigError("The table selection would break foreign keys: " + "; ".join(sorted(set(problems)))
                          + ". Leave out the referencing tables' rows too (--exclude-data or --exclude), or "
                          "keep the referenced tables' rows.")

    restricted = [catalog.relations[oid].qualified for oid in catalog.rls_restricted if has_data(oid)]
    if restricted:
        raise ConfigError(f"Row-level security may hide rows of {', '.join(sorted(restricted))} from the source "
                          f"role {catalog.server.user!r}, so the copy could silently miss rows. Give that role a "
                          "SELECT policy USING (true) on them (or BYPASSRLS), or leave their rows out with "
                          "--exclude-data.")

    copies: list[TableCopy] = []
    rules_applied: list[AppliedRule] = []
    for oid, relation in catalog.relations.items():
        if not has_data(oid):
            continue
        table_rules = rules.get(oid, {})
        binary = binary_allowed and relation.binary_safe and oid not in (as_text or set())
        copies.append(TableCopy(relation, table_rules, binary))
        rules_applied.extend(applied_rules(relation, table_rules))
    copies.sort(key=lambda copy: (-catalog.load_weight(copy.relation), copy.name))
    schema_only = [relation for oid, relation in catalog.relations.items()
                   if oid not in excluded and relation.kind in ("r", "f") and not has_data(oid)]
    if catalog.large_objects and not large_objects:
        notes.append(f"{catalog.large_objects} large objects left out (--exclude-large-objects)")
    return SyncPlan(excluded=[catalog.relations[oid] for oid in sorted(excluded)], schema_only=schema_only,
                    copies=copies, skipped_foreign_keys=skipped_keys, notes=notes, rules_applied=rules_applied,
                    large_objects=large_objects and catalog.large_objects > 0)


def exclude_table_pattern(relation: Relation) -> str:
    """A pg_dump ``--exclude-table`` pattern matching exactly this relation (quoted: no wildcards apply)."""
    def quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    return f"{quote(relation.schema)}.{quote(relation.name)}"
