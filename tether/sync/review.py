"""The review of a rules file against the source, before anything is copied: unreviewed personal columns.

A column that looks personal (by its name, or by a sample of its content) and has no rule stops the sync:
either it gets a rule, or ``keep`` says someone reviewed it and it may be copied as it is. The same report is
what ``invoke sync-prod --check-rules`` prints (``--json`` for CI), without copying anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError, TetherError
from tether.sync import pii
from tether.sync.anonymize import (
    Rule,
    RuleSet,
    anonymizes_nothing,
    default_rules_path,
    load_rules,
    resolve_rules,
)
from tether.sync.catalog import Column, Relation, SourceCatalog, read_catalog
from tether.sync.plan import Selection, SyncPlan, build_plan
from tether.sync.snapshot import exported_snapshot

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

    @property
    def ok(self) -> bool:
        return not self.findings and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"version": REPORT_VERSION, "ok": self.ok, "source": self.source, "rules_file": self.rules_file,
                "tables_checked": self.tables_checked, "columns_checked": self.columns_checked,
                "rows_sampled_per_table": self.rows_sampled_per_table,
                "findings": [finding.as_dict() for finding in self.findings], "problems": list(self.problems),
                "notes": list(self.notes)}

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
                    rules: Mapping[int, Mapping[str, Rule]]) -> tuple[list[Finding], int, int]:
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
    counts = pii.sample_content(conn, targets, estimates)
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


def review(conn: psycopg.Connection, catalog: SourceCatalog, plan: SyncPlan, rules: RuleSet,
           resolved: Mapping[int, Mapping[str, Rule]], source: str) -> RulesReport:
    """Everything the rules must pass before a row moves, as one report."""
    report = RulesReport(source=source, rules_file=rules.origin)
    if anonymizes_nothing(rules):
        report.problems.append("the rules anonymize nothing (no rule, or only `keep`): a sync would refuse them")
    report.findings, report.tables_checked, report.columns_checked = find_unreviewed(conn, catalog, plan, resolved)
    return report


def enforce_review(conn: psycopg.Connection, catalog: SourceCatalog, plan: SyncPlan, rules: RuleSet,
                   resolved: Mapping[int, Mapping[str, Rule]], source: str) -> RulesReport:
    """The sync's gate: raise (nothing written yet) when the review finds anything; else return the report."""
    report = review(conn, catalog, plan, rules, resolved, source)
    if report.problems:
        raise ConfigError("The sync stopped before copying anything: " + "; ".join(report.problems) + ".")
    if report.findings:
        raise ConfigError(unreviewed_message(report))
    return report


def check_rules(source: DatabaseAddress, rules_path: Path | None, selection: Selection) -> RulesReport:
    """``sync-prod --check-rules``: the review of the rules against the source, copying nothing."""
    rules = load_rules(rules_path or default_rules_path())
    try:
        with exported_snapshot(source) as snap:
            catalog = read_catalog(snap.conn)
            resolved = resolve_rules(rules, catalog)
            plan = build_plan(catalog, selection, resolved, binary_allowed=False)
            return review(snap.conn, catalog, plan, rules, resolved, source.masked_url())
    except psycopg.Error as error:
        raise TetherError(f"Checking the rules against {source.masked_url()} failed: "
                          f"{' '.join(str(error).split())}") from None


NO_ANONYMIZE_WARNING = ("--no-anonymize: the local copy will hold production's real personal data (customers' "
                        "e-mails, names, phone numbers, ...) on this machine, unprotected. Copy it anyway?")
