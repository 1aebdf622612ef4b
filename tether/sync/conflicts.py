"""Rules that would break the copy, found before a row moves: unique indexes, lengths, CHECKs, partitions.

A rule that can give two rows the same value cannot go on a unique column (NULLs never conflict, so ``null``
can, unless the index says NULLS NOT DISTINCT); a short pseudonym on a big unique column would collide; a
fixed value longer than ``varchar(n)`` does not fit. CHECK constraints, domain checks and partition bounds
that read a ruled column are evaluated on the source, in the snapshot, on the rules' output (random rules at
both ends of their range) before anything is copied. Messages name constraints and counts, never values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from tether.redact import server_error
from tether.sync.catalog import Relation, SourceCatalog
from tether.sync.expressions import (
    INTEGER_BITS,
    MIN_UNIQUE_HEX,
    RANDOM_KINDS,
    ResolvedRule,
    column_sql,
    email_hex_length,
    hash_hex_length,
)
from tether.sync.facts import SourceFacts, UniqueIndex, partition_key_columns
from tether.sync.pii import jit_off

COLLISION_ODDS = 1e-6  # the largest chance of two rows getting one pseudonym we accept on a unique column
ASSUMED_ROWS = 100_000  # for a table never analyzed (reltuples -1)
_WRAPPERS = re.compile(r"^(?:(?:lower|upper)\()?\(?(?P<column>\"(?:[^\"]|\"\")+\"|\w+)\)?(?:::(?:text|citext|"
                       r"character varying))?\)?$")
_NULL_TEST = r"\(?{}\s+IS\s+(?:NOT\s+)?NULL\)?"


Rules = Mapping[int, Mapping[str, ResolvedRule]]


def unique_bits(rule: ResolvedRule) -> float:
    """How many bits of the value's identity a rule's output keeps (inf: exactly injective)."""
    if rule.kind == "keep":
        return math.inf
    shape = rule.canonical or rule.shape
    if rule.kind == "hash":
        if shape.type_name == "uuid":
            return 128
        if shape.type_name in INTEGER_BITS:
            return math.inf  # a keyed permutation
        return 4 * hash_hex_length(rule)
    if rule.kind == "fake_email":
        return 4 * email_hex_length(rule)
    return 0


def _collision_odds(bits: float, rows: float) -> float:
    return 0.0 if math.isinf(bits) else rows * rows / 2 ** (bits + 1)


@dataclass
class PreScan:
    """Constraints of one table to evaluate on the rules' output before copying."""

    relation: Relation
    checks: list[tuple[str, str]] = field(default_factory=list)  # (what, SQL boolean expression)
    columns: set[str] = field(default_factory=set)  # what the expressions read
    case_folded: list[str] = field(default_factory=list)  # unique columns whose pseudonym ignores case
    domain_columns: list[str] = field(default_factory=list)  # ruled columns of a domain type (its CHECKs)


def _owner(catalog: SourceCatalog, relation: Relation) -> str:
    root = relation.partition_root
    return catalog.relations[root].qualified if root is not None and root in catalog.relations else relation.qualified


def static_conflicts(catalog: SourceCatalog, facts: SourceFacts, rules: Rules,
                     copied: Sequence[Relation]) -> tuple[list[str], list[PreScan]]:
    """Problems the rules have with the copied tables' unique indexes and lengths; and what to check on data."""
    problems: dict[str, None] = {}
    scans: list[PreScan] = []
    for relation in copied:
        table_rules = {name: rule for name, rule in rules.get(relation.oid, {}).items() if rule.kind != "keep"}
        if not table_rules:
            continue
        owner = _owner(catalog, relation)
        scan = PreScan(relation)
        rows = facts.estimated_rows.get(relation.oid, -1)
        rows = ASSUMED_ROWS if rows < 0 else max(rows, 1000)
        for name, rule in sorted(table_rules.items()):
            length = rule.shape.max_length
            output = rule.max_output()
            if rule.kind == "fixed" and length is not None and output is not None and output > length:
                problems[f"{owner}.{name}: the fixed value is {output} characters long and the column holds "
                         f"{length} ({rule.shape.type_sql})"] = None
            if rule.kind == "fake_iban" and length is not None and length < 27:
                problems[f"{owner}.{name}: fake_iban writes 27 characters (33 grouped by four) and the column "
                         f"holds {length}"] = None
            if rule.kind in ("fake_email", "hash") and rule.shape.textual and unique_bits(rule) < 32:
                problems[f"{owner}.{name}: {rule.shape.type_sql} leaves {rule.kind} only "
                         f"{int(unique_bits(rule) // 4)} hex digits; widen the column or use another rule"] = None
            facts_of = facts.column(relation.oid, name)
            if facts_of is not None and facts_of.domain:
                scan.domain_columns.append(name)
                scan.columns.add(name)
        for index in facts.unique_indexes.get(relation.oid, []):
            _unique_problems(owner, index, table_rules, rows, problems, scan)
        for check in facts.checks.get(relation.oid, []):
            if set(check.columns) & set(table_rules):
                scan.checks.append((f"check constraint {check.name}", check.expression))
                scan.columns |= set(check.columns)
        keys = partition_key_columns(facts, catalog.ancestors(relation.oid)) & set(table_rules)
        if keys and relation.partition_root is not None:
            scan.checks.append((f"the partition bounds of {relation.qualified} ({', '.join(sorted(keys))} "
                                "decide the partition)", "__partition__"))
            scan.columns |= {column.name for column in relation.copied_columns}
        if scan.checks or scan.case_folded or scan.domain_columns:
            scans.append(scan)
    return list(problems), scans


def _unique_problems(owner: str, index: UniqueIndex, rules: Mapping[str, ResolvedRule], rows: float,
                     problems: dict[str, None], scan: PreScan) -> None:
    where = f"{owner}: unique index {index.name}"
    for name in index.referenced:
        rule = rules.get(name)
        if rule is None:
            continue
        if name in index.keys:
            if rule.kind == "null":
                if index.nulls_not_distinct:
                    problems[f"{where} treats NULLs as equal (NULLS NOT DISTINCT): null on {name} would repeat "
                             "them; use hash"] = None
                continue
            bits = unique_bits(rule)
            if bits == 0:
                problems[f"{where} covers {name}, and {rule.kind} can give two rows the same value; use hash "
                         "(or fake_email) on it"] = None
            elif _collision_odds(bits, rows) > COLLISION_ODDS:
                problems[f"{where} covers {name}: {rule.kind} keeps {int(bits)} bits here, and with about "
                         f"{int(rows):,} rows two values would likely collide; keep at least {MIN_UNIQUE_HEX} hex "
                         "digits (a longer hash, a wider column)"] = None
            elif rule.case_insensitive and not rule.shape.citext and (rule.canonical is None
                                                                        or not rule.canonical.citext):
                scan.case_folded.append(name)
                scan.columns.add(name)
            continue
        expression_keys = [text for key, text in zip(index.keys, index.key_texts, strict=False) if key is None]
        in_keys = [text for text in expression_keys if _mentions(text, name)]
        if in_keys:
            plain = all(_plain_wrapper(text, name) for text in in_keys)
            if not plain or unique_bits(rule) == 0:
                problems[f"{where} reads {name} through an expression ({'; '.join(in_keys)}) that {rule.kind} may "
                         "not keep unique; use hash, or keep"] = None
            continue
        if index.predicate and _mentions(index.predicate, name) and not _only_null_tests(index.predicate, name):
            problems[f"{where} is partial ({index.predicate}) and {rule.kind} on {name} changes which rows it "
                     "covers; use keep on it"] = None


def _identifier_pattern(name: str) -> str:
    quoted = '"' + name.replace('"', '""') + '"'
    return "(?:" + re.escape(quoted) + (r"|\b" + re.escape(name) + r"\b" if re.fullmatch(r"[a-z_][a-z0-9_]*", name)
                                        else "") + ")"


def _mentions(text: str, name: str) -> bool:
    return re.search(_identifier_pattern(name), text) is not None


def _plain_wrapper(text: str, name: str) -> bool:
    """``lower(email)``, ``(email)::text``, ``upper((email)::text)``: a keyed output stays unique through them."""
    match = _WRAPPERS.match(text.strip())
    return match is not None and re.fullmatch(_identifier_pattern(name), match.group("column")) is not None


def _only_null_tests(predicate: str, name: str) -> bool:
    """True when ``name`` appears in the predicate only as ``name IS [NOT] NULL`` (rules keep NULLs NULL)."""
    without = re.sub(_NULL_TEST.format(_identifier_pattern(name)), "", predicate, flags=re.I)
    return not _mentions(without, name)


def run_pre_scans(conn: psycopg.Connection, scans: Sequence[PreScan], rules: Rules) -> list[str]:
    """Evaluate each table's constraints on the rules' output, in ``conn`` (a keyed session in the snapshot).

    Random rules are evaluated at both ends of their range, and as drawn; a violation at any of them is
    reported with the constraint's name and a count of rows.
    """
    problems: list[str] = []
    with jit_off(conn):
        for scan in scans:
            problems.extend(_run_scan(conn, scan, rules.get(scan.relation.oid, {})))
    return problems


def _run_scan(conn: psycopg.Connection, scan: PreScan, rules: Mapping[str, ResolvedRule]) -> list[str]:
    relation = scan.relation
    found: list[str] = []
    for name in scan.case_folded:
        column = sql.Identifier(name)
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM ONLY {} WHERE {} IS NOT NULL GROUP BY lower(({})::text) "
                        "HAVING count(DISTINCT {}) > 1)").format(relation.identifier, column, column, column)
        row = _guarded(conn, query, found, relation, name)
        if row and row[0]:
            found.append(f"{relation.qualified}.{name}: values under a unique index differ only by case, and "
                         f"{rules[name].kind} ignores case (so that lower() joins keep matching); give it "
                         "{case_sensitive: true} (fake_email) or drop case_insensitive (hash)")
    if not scan.checks and not scan.domain_columns:
        return found
    random = any(rule.kind in RANDOM_KINDS for name, rule in rules.items() if name in scan.columns)
    for variant in (None, "low", "high") if random else (None,):
        selected = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(column_sql(rules[column.name], sql.Identifier(column.name), variant)
                                       if column.name in rules else sql.Identifier(column.name),
                                       sql.Identifier(column.name))
            for column in relation.copied_columns if column.name in scan.columns)
        tests: list[sql.Composable] = [sql.SQL("count(*) FILTER (WHERE NOT ({}))").format(
                     sql.SQL(expression) if expression != "__partition__"
                     else sql.SQL("coalesce({}, true)").format(_partition_bound(conn, relation)))
                 for _, expression in scan.checks]
        # A domain's CHECKs run when a value is cast to it: count the values, so that the casts happen.
        tests += [sql.SQL("count({})").format(sql.Identifier(name)) for name in scan.domain_columns]
        query = sql.SQL("SELECT {} FROM (SELECT {} FROM ONLY {}) AS anonymized").format(
            sql.SQL(", ").join(tests), selected, relation.identifier)
        row = _guarded(conn, query, found, relation, None)
        if row is None:
            break
        for (what, _), count in zip(scan.checks, row, strict=False):
            if count:
                at = {None: "", "low": " at the low end of a random rule's range",
                      "high": " at the high end of a random rule's range"}[variant]
                found.append(f"{relation.qualified}: {count} row(s) would break {what}{at} once anonymized; "
                             "change the rules of the columns it reads")
        if any(row[:len(scan.checks)]):
            break
    return found


def _partition_bound(conn: psycopg.Connection, relation: Relation) -> sql.Composable:
    row = conn.execute("SELECT pg_get_partition_constraintdef(%s)", (relation.oid,)).fetchone()
    return sql.SQL(row[0]) if row and row[0] else sql.SQL("true")


def _guarded(conn: psycopg.Connection, query: sql.Composed, found: list[str], relation: Relation,
             column: str | None) -> tuple | None:
    """Run ``query`` in a savepoint: a failure (a domain CHECK, a cast) is reported, the transaction goes on."""
    conn.execute("SAVEPOINT tether_pre_scan")
    try:
        row = conn.execute(query).fetchone()
    except psycopg.Error as error:
        conn.execute("ROLLBACK TO SAVEPOINT tether_pre_scan")
        where = f"{relation.qualified}.{column}" if column else relation.qualified
        found.append(f"{where}: the rules' output fails on the source ({server_error(error)}); change the rules "
                     "of that table")
        return None
    conn.execute("RELEASE SAVEPOINT tether_pre_scan")
    return row
