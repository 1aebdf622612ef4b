"""Anonymization rules bound to the source: which rule each column of each copied table gets, and its SQL.

A table's rules reach its partitions and INHERITS children; a rule on a key reaches every column that
references it through a foreign key, and every column declared ``same_as`` it, so joins still hold; a key
that others reference gets a keyed (deterministic) rule. Mistakes (a missing table or column, a rule that
does not fit the column's type, conflicting rules on the two ends of a reference) are one ConfigError
before anything is copied. The SQL itself is in :mod:`tether.sync.expressions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from psycopg import sql

from tether.errors import ConfigError
from tether.sync.catalog import Column, Relation, SourceCatalog
from tether.sync.expressions import (
    INTEGER_BITS,
    KEYED_KINDS,
    RANDOM_KINDS,
    ResolvedRule,
    Shape,
    bind,
    column_sql,
)
from tether.sync.facts import SourceFacts
from tether.sync.keys import PseudonymKey, per_sync_key
from tether.sync.pii import name_words
from tether.sync.rules import (
    NO_RULES,
    RULE_KINDS,
    RULES_ENV,
    RULES_FILE,
    QuasiIdentifiers,
    Rule,
    RuleSet,
    anonymizes_nothing,
    default_rules_path,
    load_rules,
    parse_rule,
    parse_rules,
)

__all__ = ["NO_RULES", "RULES_ENV", "RULES_FILE", "RULE_KINDS", "AppliedRule", "QuasiIdentifiers", "Rule",
           "RuleSet", "anonymizes_nothing", "applied_rules", "column_expression", "default_rules_path",
           "load_rules", "parse_rule", "parse_rules", "resolve_rules", "rule_problem", "shape_of"]

_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})
_DATE_TYPES = frozenset({"date", "timestamp", "timestamptz"})
_TEXT_ONLY = frozenset({"fake_email", "fake_name", "fake_first_name", "fake_last_name", "fake_city",
                        "fake_address", "fake_iban", "mask", "scrub"})
# Rules that never give two different values the same result (a keyed hash or e-mail: up to 2^-64 odds).
INJECTIVE = frozenset({"fake_email", "hash", "keep"})
_FIRST_WORDS = frozenset({"first", "firstname", "prenom", "prenoms", "given", "givenname", "forename"})
_LAST_WORDS = frozenset({"last", "lastname", "surname", "family", "familyname", "nom", "patronyme", "maiden"})


@dataclass(frozen=True)
class AppliedRule:
    table: str
    column: str
    rule: str

    def as_dict(self) -> dict[str, str]:
        return {"table": self.table, "column": self.column, "rule": self.rule}


def applied_rules(relation: Relation, rules: Mapping[str, Rule]) -> list[AppliedRule]:
    return [AppliedRule(relation.qualified, column, rule.describe()) for column, rule in sorted(rules.items())]


def shape_of(column: Column, facts: SourceFacts | None = None, table: int | None = None) -> Shape:
    """What a rule's output must fit for ``column``: its type, its length, its array elements."""
    found = facts.column(table, column.name) if facts is not None and table is not None else None
    element = None
    if column.category == "A":
        name = found.element_type if found and found.element_type else column.type_name.lstrip("_")
        element = Shape(found.element_sql if found and found.element_sql else column.type_sql.removesuffix("[]"),
                        name, found.element_category if found and found.element_category else "S",
                        found.max_length if found else None)
    return Shape(column.type_sql, column.type_name, column.category,
                 None if column.category == "A" or found is None else found.max_length, element)


def column_expression(rule: Rule, column: Column) -> sql.Composable:
    """The SQL the source evaluates instead of ``column``, cast back to the column's own type."""
    if not isinstance(rule, ResolvedRule):  # a bare rule (tests, tools): a key for this expression only
        rule = bind(rule, shape_of(column), per_sync_key())
    return column_sql(rule, sql.Identifier(column.name))


def rule_problem(rule: Rule, column: Column, unique: bool = False, shape: Shape | None = None) -> str | None:
    """Why ``rule`` cannot apply to ``column`` (None when it can)."""
    shape = shape or shape_of(column)
    if column.generated:
        return "a generated column is computed again locally; anonymize the columns it is computed from"
    kind = rule.kind
    if kind == "null" and column.not_null:
        return "the null rule cannot apply to a NOT NULL column"
    if kind == "fixed" and rule.option("value") is None and column.not_null:
        return "a fixed null cannot apply to a NOT NULL column"
    if unique and kind not in INJECTIVE and not (kind == "null" and not column.not_null):
        return f"the column is unique and {kind} would repeat values; use fake_email or hash"
    return type_problem(rule, shape, column.not_null)


def type_problem(rule: Rule, shape: Shape, not_null: bool = False) -> str | None:
    """Why ``rule`` cannot produce a value of ``shape`` (None when it can)."""
    kind, name, category = rule.kind, shape.type_name, shape.category
    textual = name in _TEXT_TYPES
    integer = name in INTEGER_BITS
    if kind in _TEXT_ONLY and not textual:
        return f"{kind} needs a text column, not {shape.type_sql}"
    if kind in ("fake_phone", "fake_postcode") and not (textual or integer):
        return f"{kind} needs a text or integer column, not {shape.type_sql}"
    if kind == "hash" and not (textual or name == "uuid" or integer):
        return f"hash works on text, uuid and integer columns, not {shape.type_sql}"
    if kind in ("random_date", "shift_date") and name not in _DATE_TYPES:
        return f"{kind} needs a date or timestamp column, not {shape.type_sql}"
    if kind in ("random_int", "random_number", "noise") and category != "N":
        return f"{kind} needs a numeric column, not {shape.type_sql}"
    if kind == "generalize":
        to = rule.option("to")
        if to in ("year", "month") and name not in _DATE_TYPES:
            return f"generalize {to} needs a date or timestamp column, not {shape.type_sql}"
        if to == "departement" and not (textual or integer):
            return f"generalize departement needs a text or integer postcode column, not {shape.type_sql}"
        if rule.option("step") is not None and category != "N":
            return f"generalize step needs a numeric column, not {shape.type_sql}"
    if kind == "inet" and name != "inet":
        return f"inet needs an inet column, not {shape.type_sql} (scrub [ip] cleans addresses inside text)"
    if kind == "json" and name not in ("json", "jsonb"):
        return f"json needs a json or jsonb column, not {shape.type_sql}"
    if kind == "json":
        text = Shape("text", "text", "S")
        for path, inner in rule.option("paths"):
            problem = type_problem(inner, text)
            if problem:
                return f"json path {path}: {problem} (values inside json are text)"
    if kind == "each":
        if shape.element is None:
            return f"each needs an array column, not {shape.type_sql}"
        problem = type_problem(rule.option("rule"), shape.element)
        if problem:
            return f"each: {problem}"
    if kind == "fixed" and rule.option("value") is None and not_null:
        return "a fixed null cannot apply to a NOT NULL column"
    return None


def _refined(rule: Rule, column: str) -> tuple[Rule, str]:
    """``fake_name`` on a first-name (or last-name) column gives a first (or last) name, not a full name."""
    if rule.kind != "fake_name":
        return rule, ""
    words = set(name_words(column))
    if words & _FIRST_WORDS:
        return Rule("fake_first_name", rule.options), "a first-name column: first names only"
    if words & _LAST_WORDS and "full" not in words:
        return Rule("fake_last_name", rule.options), "a last-name column: last names only"
    return rule, ""


@dataclass(frozen=True)
class _Entry:
    rule: Rule
    origin: str = ""
    canonical: tuple[int, str] | None = None  # (table, column) whose pseudonyms this column holds


def resolve_rules(rules: RuleSet, catalog: SourceCatalog, facts: SourceFacts | None = None,
                  key: PseudonymKey | None = None) -> dict[int, dict[str, ResolvedRule]]:
    """Rules per table oid for every relation of the catalog, bound to their columns and the sync's key.

    A table or column that does not exist is an error, because a typo would leak the column it meant.
    """
    facts = facts or SourceFacts()
    key = key or per_sync_key()
    by_name = catalog.by_name()
    problems: list[str] = []
    named: dict[int, dict[str, Rule]] = {}
    for table, columns in rules.tables.items():
        relation = by_name.get(table)
        if relation is None or relation.kind not in ("r", "p"):
            problems.append(f"table {table} does not exist in the source" if relation is None
                            else f"{table} is not a table")
            continue
        known = {column.name for column in relation.columns}
        missing = [f"column {table}.{name} does not exist" for name in columns if name not in known]
        problems.extend(missing)
        named[relation.oid] = {name: rule for name, rule in columns.items() if name in known}
    for quasi in rules.quasi_identifiers:
        relation = by_name.get(quasi.table)
        known = {column.name for column in relation.columns} if relation else set()
        problems.extend(f"quasi_identifiers: column {quasi.table}.{name} does not exist"
                        for name in quasi.columns if name not in known)
    if problems:
        _fail(rules, problems)

    entries: dict[tuple[int, str], _Entry] = {}
    for oid, relation in catalog.relations.items():
        names = {column.name for column in relation.columns}
        for ancestor in reversed(catalog.ancestors(oid)):  # a partition or child table has its parents' columns
            for column, rule in named.get(ancestor, {}).items():
                if column in names:
                    entries[(oid, column)] = _Entry(rule, f"from {catalog.relations[ancestor].qualified}"
                                                    if ancestor in catalog.relations else "")
        for column, rule in named.get(oid, {}).items():
            entries[(oid, column)] = _Entry(rule)
    referenced = _follow_references(entries, catalog, facts, by_name, problems)
    # What is still same_as never reached a column with a rule of its own: a loop (a same_as b, b same_as a).
    problems.extend(f"{catalog.relations[oid].qualified}.{name}: same_as {entry.rule.option('column')} goes round "
                    "in a loop of same_as without reaching a column with a rule of its own"
                    for (oid, name), entry in entries.items() if entry.rule.kind == "same_as")
    for place, entry in list(entries.items()):
        if entry.rule.kind in ("json", "each"):
            entries[place] = replace(entry, rule=_nested_keys(entry.rule, entries, catalog, facts, by_name, key,
                                                              rules.locale, referenced, problems,
                                                              f"{catalog.relations[place[0]].qualified}.{place[1]}"))
    if problems:
        _fail(rules, problems)

    resolved: dict[int, dict[str, ResolvedRule]] = {}
    for (oid, name), entry in sorted(entries.items()):
        relation = catalog.relations[oid]
        column_ = next(column for column in relation.columns if column.name == name)
        shape = shape_of(column_, facts, oid)
        rule, refined = _refined(entry.rule, name)
        deterministic = (oid, name) in referenced or entry.canonical is not None
        canonical_shape = None
        if entry.canonical is not None:
            target = catalog.relations[entry.canonical[0]]
            target_column = next(c for c in target.columns if c.name == entry.canonical[1])
            canonical_shape = shape_of(target_column, facts, target.oid)
        problem = rule_problem(rule, column_, shape=shape)
        if problem is None and deterministic and rule.kind in RANDOM_KINDS and not _can_be_keyed(rule):
            problem = (f"other columns reference this one (foreign keys or same_as), so its rule must give the same "
                       f"pseudonym for the same value: {rule.kind} is random; use hash")
        if problem:
            problems.append(f"{relation.qualified}.{name}: {problem}")
            continue
        origin = "; ".join(part for part in (entry.origin, refined) if part)
        resolved.setdefault(oid, {})[name] = bind(rule, shape, key, locale=rules.locale, deterministic=deterministic,
                                                 canonical=canonical_shape, origin=origin)
    if problems:
        _fail(rules, problems)
    return {oid: columns for oid, columns in resolved.items()}


def _can_be_keyed(rule: Rule) -> bool:
    """Fakes drawn from a pool (or digits) can be drawn by the key instead of at random."""
    return rule.kind in ("fake_name", "fake_first_name", "fake_last_name", "fake_city", "fake_postcode",
                         "fake_address", "fake_phone", "fake_iban")


def _same(one: Rule, other: Rule) -> bool:
    return (one.kind, one.options) == (other.kind, other.options)


def _follow_references(entries: dict[tuple[int, str], _Entry], catalog: SourceCatalog, facts: SourceFacts,
                       by_name: Mapping[str, Relation], problems: list[str]) -> set[tuple[int, str]]:
    """Give every referencing column its key's rule (foreign keys, ``same_as``); return the referenced keys."""
    referenced: set[tuple[int, str]] = set()
    for _ in range(20):  # chains of references: until nothing changes
        changed = False
        for (oid, name), entry in list(entries.items()):
            if entry.rule.kind != "same_as":
                continue
            target_name = entry.rule.option("column")
            schema, table, column = target_name.split(".")
            target = by_name.get(f"{schema}.{table}")
            where = f"{catalog.relations[oid].qualified}.{name}"
            if target is None or column not in {c.name for c in target.columns}:
                problems.append(f"{where}: same_as {target_name}, which does not exist")
                entries.pop((oid, name))
                continue
            target_entry = entries.get((target.oid, column))
            if target_entry is None or target_entry.rule.kind == "same_as":
                continue  # not known yet: the column may still get its key's rule through a foreign key
            entries[(oid, name)] = _Entry(target_entry.rule, f"same as {target_name}",
                                          target_entry.canonical or (target.oid, column))
            if target_entry.rule.kind != "keep":
                referenced.add(target_entry.canonical or (target.oid, column))
            changed = True
        for key in facts.foreign_keys:
            if key.table not in catalog.relations or key.references not in catalog.relations:
                continue
            child, parent = catalog.relations[key.table], catalog.relations[key.references]
            for column, parent_column in zip(key.columns, key.referenced_columns, strict=False):
                parent_entry = entries.get((parent.oid, parent_column))
                child_entry = entries.get((child.oid, column))
                if parent_entry is not None and parent_entry.rule.kind == "same_as":
                    continue  # resolved on a later round
                # A key kept on purpose (``keep``) is kept as surely as one without a rule: a rule on the
                # reference would break it all the same.
                if parent_entry is None or parent_entry.rule.kind == "keep":
                    if child_entry is not None and child_entry.rule.kind not in ("keep", "same_as"):
                        problems.append(f"{child.qualified}.{column}: references {parent.qualified}.{parent_column} "
                                        f"(foreign key {key.name}), which is kept as it is: a rule here would break "
                                        "the reference; put the rule on the referenced column, and this one follows")
                        entries[(child.oid, column)] = _Entry(Rule("keep"))
                    continue
                source = parent_entry.canonical or (parent.oid, parent_column)
                referenced.add(source)
                if child_entry is None or (child_entry.rule.kind == "same_as"
                                           and child_entry.rule.option("column") == _qualified(catalog, source)):
                    entries[(child.oid, column)] = _Entry(
                        parent_entry.rule, f"follows foreign key {key.name} to {parent.qualified}.{parent_column}",
                        source)
                    changed = True
                elif child_entry.rule.kind != "same_as" and not _same(child_entry.rule, parent_entry.rule):
                    if child_entry.canonical == source:
                        continue
                    problems.append(f"{child.qualified}.{column}: has {child_entry.rule.describe()} but references "
                                    f"{parent.qualified}.{parent_column} (foreign key {key.name}), anonymized with "
                                    f"{parent_entry.rule.describe()}: remove this column's rule, it follows its key")
                    entries[(child.oid, column)] = _Entry(parent_entry.rule, "", source)
                elif child_entry.canonical != source and child_entry.rule.kind != "same_as":
                    entries[(child.oid, column)] = replace(child_entry, canonical=source)
                    changed = True
        if not changed:
            # Nothing more follows a key: a same_as whose column has no rule at all (none written, none
            # reached through a foreign key) keeps its values, as that column does.
            for (oid, name), entry in list(entries.items()):
                target_name = entry.rule.option("column")
                if entry.rule.kind == "same_as" and _entry_of(target_name, entries, by_name) is None:
                    entries[(oid, name)] = _Entry(Rule("keep"), f"same as {target_name}, which is kept")
                    changed = True
        if not changed:
            break
    return referenced


def _entry_of(qualified: str, entries: Mapping[tuple[int, str], _Entry],
              by_name: Mapping[str, Relation]) -> _Entry | None:
    schema, table, column = qualified.split(".")
    return entries.get((by_name[f"{schema}.{table}"].oid, column))


def _nested_keys(rule: Rule, entries: Mapping[tuple[int, str], _Entry], catalog: SourceCatalog,
                 facts: SourceFacts, by_name: Mapping[str, Relation], key: PseudonymKey, locale: str,
                 referenced: set[tuple[int, str]], problems: list[str], where: str) -> Rule:
    """``same_as`` inside a json path or an array's elements, bound to the key's rule (a key kept: keep)."""

    def bound(inner: Rule, label: str) -> Rule:
        if inner.kind != "same_as":
            return inner
        schema, table, column = inner.option("column").split(".")
        target = by_name.get(f"{schema}.{table}")
        if target is None or column not in {c.name for c in target.columns}:
            problems.append(f"{where} ({label}): same_as {inner.option('column')}, which does not exist")
            return Rule("keep")
        entry = entries.get((target.oid, column))
        if entry is None or entry.rule.kind in ("keep", "same_as"):
            return Rule("keep")
        source = entry.canonical or (target.oid, column)
        referenced.add(source)
        key_column = next(c for c in catalog.relations[source[0]].columns if c.name == source[1])
        return bind(entry.rule, shape_of(key_column, facts, source[0]), key, locale=locale, deterministic=True,
                    canonical=shape_of(key_column, facts, source[0]), origin=f"same as {inner.option('column')}")

    if rule.kind == "each":
        return Rule("each", (("rule", bound(rule.option("rule"), "each element")),))
    return Rule("json", (("paths", tuple((path, bound(inner, path)) for path, inner in rule.option("paths"))),))


def _qualified(catalog: SourceCatalog, column: tuple[int, str]) -> str:
    return f"{catalog.relations[column[0]].qualified}.{column[1]}"


def keyed_tables(resolved: Mapping[int, Mapping[str, ResolvedRule]]) -> set[int]:
    """Tables holding keyed pseudonyms: with a key made for one sync, a re-sync must copy them again."""
    return {oid for oid, columns in resolved.items() if any(rule.keyed for rule in columns.values())}


def _fail(rules: RuleSet, problems: list[str]) -> None:
    raise ConfigError(f"The anonymization rules in {rules.origin} do not match the source database: "
                      + "; ".join(problems) + ". Nothing was copied. Fix the rules file (a rule for a missing "
                      "table or column is refused so that a typo cannot leak the real one).")


__all__ += ["INJECTIVE", "KEYED_KINDS", "keyed_tables", "type_problem"]
