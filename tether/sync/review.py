"""The review of a rules file against the source, before anything is copied: unreviewed personal columns.

A column that looks personal (by its name, or by a sample of its content) and has no rule stops the sync:
either it gets a rule, or ``keep`` says someone reviewed it and it may be copied as it is. The same report is
what ``invoke sync-prod --check-rules`` prints (``--json`` for CI), without copying anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tether.errors import ConfigError
from tether.sync import pii
from tether.sync.anonymize import column_expression
from tether.sync.catalog import Column, Relation, SourceCatalog
from tether.sync.conflicts import run_pre_scans, static_conflicts
from tether.sync.expressions import ResolvedRule
from tether.sync.facts import SourceFacts
from tether.sync.pii import jit_off
from tether.sync.plan import SyncPlan
from tether.sync.rules import Rule, RuleSet, anonymizes_nothing

REPORT_VERSION = 1


@dataclass(frozen=True)
class Finding:
    """A column that looks personal and has no rule: where, of what type, why, and a rule to start from."""

    table: str
    column: str
    type: str
    reasons: tuple[str, ...]
    suggestion: str
    partitions: int = 0  # a partitioned table's column: in how many partitions the sample found it

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "column": self.column, "type": self.type, "reasons": list(self.reasons),
                "suggested_rule": self.suggestion}

    def line(self) -> str:
        return f"{self.table}.{self.column} ({self.type}): {'; '.join(self.reasons)} — e.g. {self.suggestion}"


@dataclass
class RulesReport:
    """The ``--check-rules`` document (its JSON form is described in docs/anonymization.md)."""

    source: str
    rules_file: str
    tables_checked: int = 0
    columns_checked: int = 0
    rows_sampled_per_table: int = pii.SAMPLE_ROWS
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the rules themselves cannot be used as they are
    notes: list[str] = field(default_factory=list)
    k_anonymity: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"version": REPORT_VERSION, "ok": self.ok, "source": self.source, "rules_file": self.rules_file,
                "tables_checked": self.tables_checked, "columns_checked": self.columns_checked,
                "rows_sampled_per_table": self.rows_sampled_per_table,
                "findings": [finding.as_dict() for finding in self.findings], "problems": list(self.problems),
                "notes": list(self.notes), "k_anonymity": list(self.k_anonymity)}

    def lines(self) -> list[str]:
        head = (f"Rules {self.rules_file} checked against {self.source}: {self.tables_checked} tables, "
                f"{self.columns_checked} columns, up to {self.rows_sampled_per_table} rows sampled per table.")
        lines = [head]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s) with the rules:")
            lines.extend(f"  - {problem}" for problem in self.problems)
        if self.findings:
            lines.append(f"{len(self.findings)} column(s) look personal and have no rule:")
            lines.extend(f"  - {finding.line()}" for finding in self.findings)
            lines.append(WAYS_ON)
        for group in self.k_anonymity:
            lines.append(f"k-anonymity of {group['table']} ({', '.join(group['columns'])}) once anonymized: "
                         f"smallest group {group['smallest_group']}, {group['groups']} groups, "
                         f"{group['rows_in_smaller_groups']} of {group['rows']} rows in groups smaller than "
                         f"{group['threshold']}")
        lines.extend(f"note: {note}" for note in self.notes)
        if self.ok:
            lines.append("OK: every column that looks personal has a rule.")
        return lines


WAYS_ON = ("For each column, either add a rule under `tables:` in the rules file (for instance "
           "`app.people: {phone: fake_phone}`), or write `keep` for it to record that you reviewed it and it "
           "may be copied as it is.")


def unreviewed_message(report: RulesReport) -> str:
    """The one paragraph a sync stops with when columns look personal and have no rule."""
    shown = "; ".join(finding.line() for finding in report.findings[:25])
    more = f"; and {len(report.findings) - 25} more" if len(report.findings) > 25 else ""
    return (f"The sync stopped before copying anything: {len(report.findings)} column(s) of the source look "
            f"personal and have no anonymization rule in {report.rules_file}: {shown}{more}. {WAYS_ON} "
            "`invoke sync-prod --check-rules` prints this report without copying (--json for CI).")


def require_anonymization(rules: RuleSet) -> None:
    """Refuse a rule set that would anonymize nothing (empty, comments only, ``tables: {}``, only ``keep``)."""
    if anonymizes_nothing(rules):
        raise ConfigError(f"The anonymization rules in {rules.origin} anonymize nothing (no rule, or only `keep`): "
                          "a sync with them would copy real personal data while calling the copy anonymized. "
                          "Write rules for the personal columns (see anonymize.yaml at the repository root; "
                          "`invoke sync-prod --check-rules` lists the columns that look personal), or pass "
                          "--no-anonymize to copy real data knowingly.")


def _reviewed(rules: Mapping[int, Mapping[str, Rule]], relation: Relation, column: Column) -> bool:
    return column.name in rules.get(relation.oid, {})


def find_unreviewed(conn: psycopg.Connection, catalog: SourceCatalog, plan: SyncPlan,
                    rules: Mapping[int, Mapping[str, Rule]], rows: int = pii.SAMPLE_ROWS) -> \
        tuple[list[Finding], int, int]:
    """Columns of the copied tables that look personal and have no rule; also (tables, columns) looked at.

    Partitions are reported under their partitioned table, where the rule belongs (it reaches them all).
    """
    targets: list[tuple[Relation, list[Column]]] = []
    by_name: dict[tuple[int, str], list[str]] = {}
    suggestion: dict[tuple[int, str], str] = {}
    types: dict[tuple[int, str], str] = {}
    columns_seen = 0
    for copy in plan.copies:
        relation = copy.relation
        owner = catalog.relations.get(relation.partition_root or relation.oid, relation)
        unruled = [column for column in relation.copied_columns if not _reviewed(rules, relation, column)]
        columns_seen += len(relation.copied_columns)
        for column in unruled:
            key = (owner.oid, column.name)
            types[key] = column.type_sql
            if key in by_name:
                continue
            reasons = pii.name_reasons(owner, column)
            by_name[key] = [f"named like {category.label} (“{word}”)" for category, word in reasons]
            if reasons:
                suggestion[key] = reasons[0][0].suggestion
        targets.append((relation, [column for column in pii.sampled_columns(relation) if column in unruled]))
    estimates = pii.estimated_rows(conn, [relation.oid for relation, columns in targets if columns])
    counts = pii.sample_content(conn, targets, estimates, rows)
    content: dict[tuple[int, str], list[str]] = {}
    partitions: dict[tuple[int, str], int] = {}
    for relation, columns in targets:
        owner_oid = relation.partition_root or relation.oid
        for column in columns:
            sampled = counts.get((relation.oid, column.name))
            if sampled is None:
                continue
            found = sampled.reasons()
            key = (owner_oid, column.name)
            if found:
                partitions[key] = partitions.get(key, 0) + 1
                if key not in content:
                    content[key] = [text for _, text in found]
                    suggestion.setdefault(key, _content_suggestion(column, [d for d, _ in found]))
    findings = []
    for key in sorted(set(by_name) | set(content), key=lambda k: (catalog.relations[k[0]].qualified, k[1])):
        why = [*by_name.get(key, []), *content.get(key, [])]
        if not why:
            continue
        relation = catalog.relations[key[0]]
        if relation.kind == "p" and partitions.get(key):
            why[-1] += f" (in {partitions[key]} partition(s))"
        findings.append(Finding(relation.qualified, key[1], types[key], tuple(why), suggestion[key],
                                partitions.get(key, 0)))
    return findings, len(plan.copies), columns_seen


def _content_suggestion(column: Column, detectors: Sequence[pii.Detector]) -> str:
    """A rule for what the sample found: a replacement for whole values, scrubbing for text that contains them."""
    mostly = detectors[0]
    if pii.type_family(column) == pii.JSON:
        return "{json: {path.to.value: fake_email}}" if mostly.key == "email" else "null"
    if column.category == "A":
        return "{each: fake_email}" if mostly.key == "email" else "null"
    if mostly.key == "email":
        return "fake_email"
    if mostly.key == "phone":
        return "fake_phone"
    if mostly.key == "ip":
        return "{inet: {keep_prefix: 16}}" if column.type_name in ("inet", "cidr") else "null"
    return "hash"


def review(snapshot: psycopg.Connection, keyed: psycopg.Connection | Callable[[], psycopg.Connection],
           catalog: SourceCatalog, plan: SyncPlan,
           rules: RuleSet, resolved: Mapping[int, Mapping[str, ResolvedRule]], facts: SourceFacts,
           source: str, rows: int = pii.SAMPLE_ROWS) -> RulesReport:
    """Everything the rules must pass before a row moves, as one report.

    ``snapshot`` is the sync's snapshot session; ``keyed`` a session in the same snapshot that can compute
    pseudonyms (constraints and k-anonymity are evaluated on the rules' output).
    """
    report = RulesReport(source=source, rules_file=rules.origin, rows_sampled_per_table=rows)
    if anonymizes_nothing(rules):
        report.problems.append("the rules anonymize nothing (no rule, or only `keep`): a sync would refuse them")
    copied = [copy.relation for copy in plan.copies]
    static, scans = static_conflicts(catalog, facts, resolved, copied)

    def keyed_checks() -> tuple[list[str], list[dict[str, Any]]]:
        if not scans and not rules.quasi_identifiers:
            return [], []  # nothing to evaluate on the rules' output: no need to connect
        session = keyed() if callable(keyed) else keyed
        return run_pre_scans(session, scans, resolved), k_anonymity(session, catalog, rules, resolved)

    # The two sessions work at once: the content sample on the snapshot session, the constraint and k-anonymity
    # scans on the keyed one (which, when given as a callable, connects meanwhile: round trips to production).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-keyed") as pool:
        keyed_results = pool.submit(keyed_checks)
        report.findings, report.tables_checked, report.columns_checked = find_unreviewed(snapshot, catalog, plan,
                                                                                         resolved, rows)
        pre_scan_problems, report.k_anonymity = keyed_results.result()
    keys, notes = unreviewed_keys(catalog, plan, resolved, facts)
    report.findings.extend(keys)
    report.notes.extend(notes)
    report.problems.extend(static)
    report.problems.extend(pre_scan_problems)
    report.problems.extend(f"{group['table']} ({', '.join(group['columns'])}): the smallest group of people sharing "
                           f"these values once anonymized has {group['smallest_group']} row(s), below the "
                           f"min_group of {group['min_group']}; generalize them further (generalize: year, "
                           "departement)" for group in report.k_anonymity if group["ok"] is False)
    return report


KEY_SUFFIXES = frozenset({"id", "uuid", "ref", "fk"})
IRREGULAR_PLURALS = {"person": "people", "child": "children", "man": "men", "woman": "women"}


def _key_target(catalog: SourceCatalog, facts: SourceFacts, words: list[str]) -> tuple[Relation, str] | None:
    """The table and key column a ``*_id`` column seems to point at (``user_id`` → users.id), if one exists."""
    stem = [word for word in words[:-1] if word]
    if not stem:
        return None
    wanted = {"_".join(stem), stem[-1]}
    names = {name for base in wanted for name in (base, base + "s", base + "es", IRREGULAR_PLURALS.get(base, base),
                                                    base[:-1] + "ies" if base.endswith("y") else base)}
    for relation in catalog.relations.values():
        if relation.kind in ("r", "p") and relation.partition_root is None and relation.name.lower() in names:
            columns = {column.name for column in relation.columns}
            if "id" in columns:
                return relation, "id"
            singles = [index.keys[0] for index in facts.unique_indexes.get(relation.oid, [])
                       if len(index.keys) == 1 and index.keys[0] and not index.predicate]
            if singles:
                return relation, str(singles[0])
    return None


def unreviewed_keys(catalog: SourceCatalog, plan: SyncPlan, resolved: Mapping[int, Mapping[str, ResolvedRule]],
                    facts: SourceFacts) -> tuple[list[Finding], list[str]]:
    """Columns named like a key (``user_id``) with no foreign key and no rule.

    When the key they seem to hold is pseudonymized, they stop the sync: copied as they are, they would keep
    the real key beside the pseudonyms (and joins would break). Otherwise they are a note.
    """
    with_keys = {(key.table, column) for key in facts.foreign_keys for column in key.columns}
    findings: dict[tuple[str, str], Finding] = {}
    notes: dict[str, None] = {}
    for copy in plan.copies:
        relation = copy.relation
        owner = catalog.relations.get(relation.partition_root or relation.oid, relation)
        for column in relation.copied_columns:
            words = pii.name_words(column.name)
            if (len(words) < 2 or words[-1] not in KEY_SUFFIXES or column.name in resolved.get(relation.oid, {})
                    or (relation.oid, column.name) in with_keys):
                continue
            target = _key_target(catalog, facts, words)
            if target is None or target[0].oid in (relation.oid, owner.oid):
                continue
            table, key = target
            rule = resolved.get(table.oid, {}).get(key)
            qualified = f"{table.qualified}.{key}"
            if rule is not None and rule.kind != "keep":
                findings[(owner.qualified, column.name)] = Finding(
                    owner.qualified, column.name, column.type_sql,
                    (f"named like a key of {qualified}, which is anonymized ({rule.kind}), with no foreign key "
                     "to follow it",), f"{{same_as: {qualified}}}")
            else:
                notes[f"{owner.qualified}.{column.name} looks like a key of {qualified} but has no foreign key: "
                      f"if {qualified} ever gets a rule, give this column {{same_as: {qualified}}}"] = None
    return list(findings.values()), list(notes)


def k_anonymity(conn: psycopg.Connection, catalog: SourceCatalog, rules: RuleSet,
                resolved: Mapping[int, Mapping[str, ResolvedRule]]) -> list[dict[str, Any]]:
    """For each set of quasi-identifiers the rules name: the smallest group of rows sharing their anonymized
    values (k), the number of groups, and the rows in groups smaller than min_group (or 5)."""
    found = []
    by_name = catalog.by_name()
    with jit_off(conn):
        for quasi in rules.quasi_identifiers:
            relation = by_name[quasi.table]
            table_rules = resolved.get(relation.oid, {})
            selected = sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(column_expression(table_rules[name], _column(relation, name))
                                           if name in table_rules else sql.Identifier(name), sql.Identifier(name))
                for name in quasi.columns)
            floor = quasi.min_group or DEFAULT_K
            row = conn.execute(sql.SQL(
                "SELECT coalesce(min(n), 0), count(*), coalesce(sum(n), 0), "
                "coalesce(sum(n) FILTER (WHERE n < {floor}), 0) FROM (SELECT count(*) AS n FROM (SELECT {selected} "
                "FROM {table}) AS anonymized GROUP BY {columns}) AS groups").format(
                floor=sql.Literal(floor), selected=selected, table=relation.identifier,
                columns=sql.SQL(", ").join(sql.Identifier(name) for name in quasi.columns))).fetchone()
            assert row is not None
            smallest, groups, rows, below = (int(value) for value in row)
            found.append({"table": quasi.table, "columns": list(quasi.columns), "smallest_group": smallest,
                          "groups": groups, "rows": rows, "threshold": floor, "rows_in_smaller_groups": below,
                          "min_group": quasi.min_group,
                          "ok": None if quasi.min_group is None else (rows == 0 or smallest >= quasi.min_group)})
    return found


DEFAULT_K = 5


def _column(relation: Relation, name: str) -> Column:
    return next(column for column in relation.columns if column.name == name)


NO_ANONYMIZE_WARNING = ("--no-anonymize: the local copy will hold production's real personal data (customers' "
                        "e-mails, names, phone numbers, ...) on this machine, unprotected. Copy it anyway?")
