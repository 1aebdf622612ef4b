"""Proof after the copy: a sample of every ruled column, compared row by row with the source, before the swap.

For each copied table with rules, up to 100 rows are sampled on the source (in the sync's snapshot) and found
again in the copy by a unique key (its pseudonym computed on the source when the key itself has a rule). A
value that arrived unchanged where a rule says it changes is a leak: the sync fails and the local database is
not replaced. Raw values never come to this machine: the source sends digests of them (md5 with a random
salt made for this scan), the copy's values are digested the same way locally, and only digests are
compared. Random rules may hit the real value by chance (a random date on the right day): a column leaks when
more values survive than chance explains. Messages give counts, never values.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tether.errors import TetherError
from tether.sync.catalog import Relation
from tether.sync.expressions import SCRUB_PATTERNS, ResolvedRule, column_sql
from tether.sync.facts import SourceFacts, UniqueIndex
from tether.sync.fakes import POOLS
from tether.sync.pii import sample_clause

SAMPLE_ROWS = 100
# The same text for the same value on both servers, whatever their sessions' defaults.
TEXT_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres", "extra_float_digits": "3",
                 "bytea_output": "hex"}
NOT_REPLACED_KINDS = frozenset({"keep", "generalize", "noise"})  # blurred or kept by design: not compared


@dataclass(frozen=True)
class ColumnResult:
    table: str
    column: str
    rule: str
    compared: int  # rows (or values) compared
    unchanged: int
    expected: float  # unchanged values chance alone explains

    @property
    def leaked(self) -> bool:
        allowed = self.expected + 3 * math.sqrt(self.expected) + (1 if self.expected > 0 else 0)
        return self.unchanged > allowed

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "column": self.column, "rule": self.rule, "compared": self.compared,
                "unchanged": self.unchanged, "expected_by_chance": round(self.expected, 3)}


@dataclass
class LeakReport:
    tables: int = 0
    columns: list[ColumnResult] = field(default_factory=list)
    rows_sampled: int = 0
    not_checked: list[str] = field(default_factory=list)

    @property
    def leaks(self) -> list[ColumnResult]:
        return [column for column in self.columns if column.leaked]

    def as_dict(self) -> dict[str, Any]:
        return {"tables": self.tables, "columns_checked": len(self.columns), "rows_sampled": self.rows_sampled,
                "leaks": [column.as_dict() for column in self.leaks], "not_checked": list(self.not_checked)}

    def line(self) -> str:
        found = (f"{len(self.leaks)} column(s) with values copied unchanged" if self.leaks
                 else "no value copied unchanged")
        skipped = f"; {len(self.not_checked)} column(s) not checked (see --json)" if self.not_checked else ""
        return (f"leak scan: {len(self.columns)} ruled column(s) in {self.tables} table(s), {self.rows_sampled} "
                f"rows compared with the source: {found}{skipped}")

    def raise_on_leaks(self) -> None:
        if self.leaks:
            shown = "; ".join(f"{leak.table}.{leak.column} ({leak.rule}): {leak.unchanged} of {leak.compared} "
                              "sampled values unchanged" for leak in self.leaks[:10])
            raise TetherError(f"The leak scan after the copy found values that arrived unchanged although a rule "
                              f"replaces them: {shown}. The local database was not replaced. This should not "
                              "happen: report it with this message (it holds no value).")


def chance(rule: ResolvedRule) -> float:
    """The chance that a rule gives back a row's own real value (0 for keyed and shifted outputs)."""
    kind = rule.kind
    pool = POOLS[rule.option("locale") or rule.locale]
    if kind == "random_date":
        return 1.0 / ((rule.option("to") - rule.option("from")).days + 1) if rule.shape.type_name == "date" else 0.0
    if kind == "random_int":
        return 1.0 / (rule.option("max") - rule.option("min") + 1)
    if kind == "random_number":
        steps = (rule.option("max") - rule.option("min")) * 10 ** rule.option("decimals", 2) + 1
        return 1.0 / max(steps, 1)
    sizes = {"fake_first_name": len(pool.first_names), "fake_last_name": len(pool.last_names),
             "fake_name": len(pool.first_names) * len(pool.last_names), "fake_city": len(pool.cities),
             "fake_postcode": len(pool.postcodes), "fake_address": 199 * len(pool.streets)}
    if kind in sizes:
        return 1.0 / sizes[kind]
    if kind == "inet":
        return 2.0 ** -(32 - rule.option("keep_prefix"))
    if kind == "fixed":
        return 0.0
    return 0.0


@contextmanager
def stable_text(conn: psycopg.Connection) -> Iterator[None]:
    """TEXT_SETTINGS for the open transaction, then the session's own again."""
    names = list(TEXT_SETTINGS)
    # One round trip each way (production may be far away): the subquery's row, the settings as they were, is
    # made before the outer set_config calls run.
    row = conn.execute(sql.SQL("SELECT was.*, {} FROM (SELECT {} OFFSET 0) AS was").format(
        _set_all(TEXT_SETTINGS),
        sql.SQL(", ").join(sql.SQL("current_setting({})").format(sql.Literal(name)) for name in names))).fetchone()
    previous = dict(zip(names, row or (), strict=False))
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS and previous:
            conn.execute(sql.SQL("SELECT {}").format(_set_all(previous)))


def _set_all(settings: Mapping[str, str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
                              for name, value in settings.items())


@dataclass(frozen=True)
class _Check:
    """One ruled column's comparison: what the source sends, what the copy sends, how they compare."""

    column: str
    rule: ResolvedRule
    how: str  # value | null | fixed | set | scrub
    source: sql.Composable | None
    local: sql.Composable | None
    chance: float


def _digest(nonce: str, value: sql.Composable) -> sql.Composable:
    """A salted digest of the value's text; none for an empty one (a rule may keep '' as it is)."""
    return sql.SQL("md5({} || lower(NULLIF(({})::text, '')))").format(sql.Literal(nonce), value)


def _json_path(path: str) -> str:
    parts = ["$"]
    for segment in path.split("."):
        parts.append("[*]" if segment == "*" else '."' + segment.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "".join(parts)


def _checks(relation: Relation, rules: Mapping[str, ResolvedRule], nonce: str) -> tuple[list[_Check], list[str]]:
    checks: list[_Check] = []
    skipped: list[str] = []
    for name, rule in sorted(rules.items()):
        if rule.kind in NOT_REPLACED_KINDS:
            continue
        column = sql.Identifier(name)
        where = f"{relation.qualified}.{name}"
        if rule.kind == "null":
            checks.append(_Check(name, rule, "null", sql.SQL("({}) IS NOT NULL").format(column),
                                 sql.SQL("({}) IS NOT NULL").format(column), 0.0))
        elif rule.kind == "fixed":
            fixed = sql.SQL("md5({} || lower({}))").format(sql.Literal(nonce), sql.Literal(
                str(rule.option("value"))))
            checks.append(_Check(name, rule, "fixed", sql.SQL("NULLIF({}, {})").format(_digest(nonce, column), fixed),
                                 _digest(nonce, column), 0.0))
        elif rule.kind == "scrub":
            found = sql.SQL(" OR ").join(sql.SQL('(({})::text COLLATE "C") ~ {}').format(column,
                                                                                   sql.Literal(SCRUB_PATTERNS[kind]))
                                         for kind in rule.option("kinds"))
            checks.append(_Check(name, rule, "scrub", None, sql.SQL("({})").format(found), 0.0))
        elif rule.kind in ("each", "json"):
            if rule.kind == "each":
                inner = rule.option("rule")
                values = sql.SQL("ARRAY(SELECT {} FROM unnest({}) AS element WHERE element IS NOT NULL)").format(
                    _digest(nonce, sql.Identifier("element")), column)
                kinds = [inner]
            else:
                kinds = [inner for _, inner in rule.option("paths")]
                paths = [path for path, inner in rule.option("paths") if inner.kind not in NOT_REPLACED_KINDS
                         and inner.kind not in ("null", "fixed", "scrub")]
                if not paths:
                    continue
                values = sql.SQL("ARRAY(SELECT {} FROM ({}) AS found(item) WHERE jsonb_typeof(item) IN "
                                 "('string', 'number'))").format(
                    _digest(nonce, sql.SQL("item #>> '{}'")),
                    sql.SQL(" UNION ALL ").join(
                        sql.SQL("SELECT jsonb_path_query(({})::jsonb, {})").format(column, sql.Literal(_json_path(p)))
                        for p in paths))
            if any(inner.kind in NOT_REPLACED_KINDS for inner in kinds):
                skipped.append(f"{where}: some of its values are kept or blurred by design")
            probability = max((chance(rule.inner(inner, rule.shape)) for inner in kinds), default=0.0)
            checks.append(_Check(name, rule, "set", values, values, probability))
        else:
            checks.append(_Check(name, rule, "value", _digest(nonce, column), _digest(nonce, column), chance(rule)))
    return checks, skipped


def _row_key(relation: Relation, indexes: Sequence[UniqueIndex], rules: Mapping[str, ResolvedRule]) -> \
        tuple[str, ...] | None:
    """Columns that find a sampled row again in the copy: a full unique key, each column kept or keyed."""
    usable = []
    for index in indexes:
        if index.predicate or any(key is None for key in index.keys):
            continue
        keys = tuple(key for key in index.keys if key is not None)
        ruled = [key for key in keys if key in rules and rules[key].kind != "keep"]
        if all(rules[key].keyed for key in ruled) and not any(rules[key].kind == "null" for key in ruled):
            usable.append((len(ruled), len(keys), keys))
    return min(usable)[2] if usable else None


@dataclass(frozen=True)
class SourceSamples:
    """The source's side of a leak scan: digests of sampled rows, taken in the snapshot (while the copy runs, in a
    full sync), salted with ``nonce``, which the copy's side must use too."""

    nonce: str
    rows: dict[int, list[tuple[Any, ...]]]  # table oid -> (key..., digests...) rows


def sample_source(source: psycopg.Connection, tables: Sequence[tuple[Relation, Mapping[str, ResolvedRule]]],
                  facts: SourceFacts) -> SourceSamples:
    """The source's sample for every table ``leak_scan`` compares; ``source`` is a keyed session in the snapshot,
    inside a transaction. The queries travel together: one round trip, however many tables."""
    nonce = secrets.token_hex(16)
    queries: dict[int, sql.Composed] = {}
    for relation, rules in tables:
        checks, _ = _checks(relation, rules, nonce)
        key = _row_key(relation, facts.unique_indexes.get(relation.oid, []), rules)
        if key is not None and checks:
            queries[relation.oid] = _source_query(relation, key, rules, checks, facts)
    with stable_text(source), source.pipeline():
        cursors = {oid: source.execute(query) for oid, query in queries.items()}
        rows = {oid: cursor.fetchall() for oid, cursor in cursors.items()}
    return SourceSamples(nonce, rows)


def leak_scan(source: psycopg.Connection | SourceSamples, local: psycopg.Connection,
              tables: Sequence[tuple[Relation, Mapping[str, ResolvedRule]]], facts: SourceFacts) -> LeakReport:
    """Compare a sample of every ruled column of ``tables`` in ``local`` with the source: ``source`` is a keyed
    session in the snapshot, or its samples taken earlier by ``sample_source`` for these tables. Connections must
    be inside a transaction; their settings are restored afterwards.
    """
    report = LeakReport()
    samples = source if isinstance(source, SourceSamples) else sample_source(source, tables, facts)
    with stable_text(local):
        for relation, rules in tables:
            checks, skipped = _checks(relation, rules, samples.nonce)
            report.not_checked.extend(skipped)
            if not checks:
                continue
            report.tables += 1
            key = _row_key(relation, facts.unique_indexes.get(relation.oid, []), rules)
            if key is None:
                report.not_checked.extend(f"{relation.qualified}.{check.column}: no unique key to find its rows "
                                          "in the copy" for check in checks if check.how != "scrub")
                checks = [check for check in checks if check.how == "scrub"]
                if not checks:
                    continue
                report.columns.extend(_scrub_only(local, relation, checks))
                continue
            if relation.oid not in samples.rows:  # never pass a table unseen: a sample taken for other tables
                raise TetherError(f"The leak scan has no sample of {relation.qualified} from the source, so it cannot "
                                  "prove its rules applied; the local database was not replaced. Run the sync again.")
            report.rows_sampled += _compare(samples.rows[relation.oid], local, relation, key, checks, report)
    return report


def _scrub_only(local: psycopg.Connection, relation: Relation, checks: Sequence[_Check]) -> list[ColumnResult]:
    results = []
    for check in checks:
        assert check.local is not None
        row = local.execute(sql.SQL("SELECT count(*), count(*) FILTER (WHERE {}) FROM (SELECT * FROM ONLY {} LIMIT {}) "
                                    "AS sampled WHERE {} IS NOT NULL").format(
            check.local, relation.identifier, sql.Literal(SAMPLE_ROWS), sql.Identifier(check.column))).fetchone()
        assert row is not None
        results.append(ColumnResult(relation.qualified, check.column, check.rule.describe(), int(row[0]), int(row[1]),
                                    0.0))
    return results


def _source_query(relation: Relation, key: tuple[str, ...], rules: Mapping[str, ResolvedRule],
                  checks: Sequence[_Check], facts: SourceFacts) -> sql.Composed:
    """Rows of (the key as the copy holds it, the digest of each checked value) from a sample of the source."""
    key_sql = [sql.SQL("({})::text").format(column_sql(rules[name], sql.Identifier(name)) if name in rules
                                            else sql.Identifier(name)) for name in key]
    source_values = [check.source for check in checks if check.source is not None]
    return sql.SQL("SELECT {} FROM ONLY {}{} LIMIT {}").format(
        sql.SQL(", ").join([*key_sql, *source_values]), relation.identifier,
        sample_clause(facts.estimated_rows.get(relation.oid, 0.0)), sql.Literal(SAMPLE_ROWS))


def _compare(sampled: Sequence[tuple[Any, ...]], local: psycopg.Connection, relation: Relation,
             key: tuple[str, ...], checks: Sequence[_Check], report: LeakReport) -> int:
    if not sampled:
        return 0
    width = len(key)
    by_key = {tuple(row[:width]): row[width:] for row in sampled}
    arrays = [list(column) for column in zip(*by_key.keys(), strict=True)]
    local_values = [check.local for check in checks if check.local is not None]
    matched = local.execute(sql.SQL(
        "SELECT {keys}, {values} FROM ONLY {table} WHERE ({keys}) IN (SELECT * FROM unnest({arrays}))").format(
        keys=sql.SQL(", ").join(sql.SQL("({})::text").format(sql.Identifier(name)) for name in key),
        values=sql.SQL(", ").join(local_values), table=relation.identifier,
        # Literals, not parameters: the digests' and patterns' SQL holds % signs.
        arrays=sql.SQL(", ").join(sql.SQL("{}::text[]").format(sql.Literal(values)) for values in arrays))).fetchall()
    counts = {check.column: [0, 0] for check in checks}
    for row in matched:
        theirs = by_key.get(tuple(row[:width]))
        if theirs is None:
            continue
        ours = row[width:]
        source_index = 0
        for index, check in enumerate(checks):
            mine = ours[index]
            real = None
            if check.source is not None:
                real = theirs[source_index]
                source_index += 1
            compared, unchanged = _verdict(check, real, mine)
            counts[check.column][0] += compared
            counts[check.column][1] += unchanged
    for check in checks:
        compared, unchanged = counts[check.column]
        report.columns.append(ColumnResult(relation.qualified, check.column, check.rule.describe(), compared,
                                           unchanged, compared * check.chance))
    return len(matched)


def _verdict(check: _Check, real: Any, mine: Any) -> tuple[int, int]:
    """(values compared, values unchanged) for one row."""
    if check.how == "scrub":
        return 1, int(bool(mine))
    if check.how == "null":
        return (1, int(bool(mine))) if real else (0, 0)
    if check.how == "set":
        if not real or mine is None:
            return 0, 0
        return len(mine), len(set(mine) & set(real))
    if real is None or mine is None:
        return 0, 0
    return 1, int(real == mine)
