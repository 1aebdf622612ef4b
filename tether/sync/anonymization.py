"""What a sync does to protect personal data, prepared once per sync: the key, the bound rules, the checks.

The engine calls four things, in this order: :meth:`Anonymization.prepare` (in the snapshot, before planning),
:meth:`Anonymization.enforce` (after planning, before anything is written: unreviewed personal columns, rules
that would break constraints, k-anonymity floors), :attr:`Anonymization.session_settings` (for the copy's
source sessions) and :meth:`Anonymization.scan_for_leaks` (after the copy, before the swap).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError, TetherError
from tether.redact import server_error
from tether.sync import pii
from tether.sync.anonymize import keyed_tables, resolve_rules
from tether.sync.catalog import Relation, SourceCatalog, read_catalog
from tether.sync.expressions import ResolvedRule
from tether.sync.facts import SourceFacts, read_facts
from tether.sync.keys import KEY_SCHEMA, KEY_TABLE, PseudonymKey, detect_key, is_key_table, keyed_session
from tether.sync.leaks import LeakReport, SourceSamples, leak_scan, sample_source
from tether.sync.plan import Selection, SyncPlan, build_plan
from tether.sync.review import RulesReport, review, unreviewed_message
from tether.sync.rules import NO_RULES, RuleSet, default_rules_path, load_rules
from tether.sync.snapshot import exported_snapshot


@dataclass
class Anonymization:
    rules: RuleSet
    key: PseudonymKey | None  # None: anonymization is off
    facts: SourceFacts = field(default_factory=SourceFacts)
    resolved: dict[int, dict[str, ResolvedRule]] = field(default_factory=dict)

    @classmethod
    def off(cls) -> Anonymization:
        return cls(NO_RULES, None)

    @classmethod
    def prepare(cls, conn: psycopg.Connection, catalog: SourceCatalog, rules: RuleSet) -> Anonymization:
        """Find the key, read what the rules depend on, bind every rule (a mistake is a ConfigError here)."""
        key = detect_key(conn)
        facts = read_facts(conn, list(catalog.relations))
        return cls(rules, key, facts, resolve_rules(rules, catalog, facts, key))

    @property
    def enabled(self) -> bool:
        return self.key is not None

    @property
    def session_settings(self) -> Mapping[str, str]:
        """Settings for the source sessions that copy rows (a key made for this sync, or nothing)."""
        return self.key.session_settings if self.key is not None else {}

    @property
    def key_identity(self) -> str:
        """What the copied rows depend on, key-wise (the server key's id; never a per-sync key's value)."""
        return self.key.identity if self.key is not None else ""

    def selection(self, selection: Selection, catalog: SourceCatalog) -> Selection:
        """The user's selection, minus the key's table: the sync role may not read it, and it must not travel."""
        if any(is_key_table(relation.schema, relation.name) for relation in catalog.relations.values()):
            return Selection(selection.tables, (*selection.exclude, f"{KEY_SCHEMA}.{KEY_TABLE}"),
                             selection.exclude_data)
        return selection

    def enforce(self, snapshot: psycopg.Connection, source: DatabaseAddress, snapshot_id: str,
                catalog: SourceCatalog, plan: SyncPlan) -> RulesReport:
        """Stop the sync (nothing written yet) on any finding or problem; else return the report."""
        report = self.review(snapshot, source, snapshot_id, catalog, plan)
        if report.problems:
            raise ConfigError("The sync stopped before copying anything: the rules would break the copy or the "
                              "privacy floor: " + "; ".join(report.problems) + ". `invoke sync-prod --check-rules` "
                              "prints this report without copying.")
        if report.findings:
            raise ConfigError(unreviewed_message(report))
        return report

    def review(self, snapshot: psycopg.Connection, source: DatabaseAddress, snapshot_id: str,
               catalog: SourceCatalog, plan: SyncPlan, rows: int = pii.SAMPLE_ROWS) -> RulesReport:
        assert self.key is not None
        key = self.key
        with contextlib.ExitStack() as sessions:
            # Opened by the review's second thread, while the first samples on the snapshot session.
            def keyed() -> psycopg.Connection:
                return sessions.enter_context(keyed_session(source, snapshot_id, key))

            return review(snapshot, keyed, catalog, plan, self.rules, self.resolved, self.facts, source.masked_url(),
                          rows)

    def recopied(self, changed: Sequence[str], relations: Sequence[Relation]) -> list[str]:
        """Incremental syncs with a key made for this sync: when a table holding pseudonyms changed, every table
        holding them is copied again, so that no two carry pseudonyms of different keys. When none changed, the
        copies all keep the last sync's key and still match each other.
        """
        if self.key is None or self.key.stable:
            return list(changed)
        keyed = {relation.qualified for relation in relations if relation.oid in keyed_tables(self.resolved)}
        return sorted(set(changed) | keyed) if keyed & set(changed) else list(changed)

    def _ruled(self, tables: Sequence[Relation]) -> list[tuple[Relation, Mapping[str, ResolvedRule]]]:
        return [(relation, self.resolved[relation.oid]) for relation in tables if self.resolved.get(relation.oid)]

    def sample_for_leaks(self, source: DatabaseAddress, snapshot_id: str,
                         tables: Sequence[Relation]) -> SourceSamples | None:
        """The source's side of the leak scan over ``tables``, in the snapshot: a full sync takes it while the rows
        travel, so that the scan after the copy needs no round trip to production."""
        if self.key is None:
            return None
        with keyed_session(source, snapshot_id, self.key) as keyed:
            return sample_source(keyed, self._ruled(tables), self.facts)

    def scan_for_leaks(self, source: DatabaseAddress, snapshot_id: str, local: psycopg.Connection,
                       tables: Sequence[Relation], samples: SourceSamples | None = None) -> LeakReport:
        """The leak scan over the copied ``tables`` (``local`` in a transaction); raises when a value leaked.
        ``samples``: the source's side, taken earlier by ``sample_for_leaks`` for the same tables."""
        if self.key is None:
            return LeakReport()
        ruled = self._ruled(tables)
        if samples is not None:
            report = leak_scan(samples, local, ruled, self.facts)
        else:
            with keyed_session(source, snapshot_id, self.key) as keyed:
                report = leak_scan(keyed, local, ruled, self.facts)
        report.raise_on_leaks()
        return report


def check_rules(source: DatabaseAddress, rules_path: Path | None, selection: Selection) -> RulesReport:
    """``sync-prod --check-rules``: the review of the rules against the source, copying nothing."""
    rules = load_rules(rules_path or default_rules_path())
    try:
        with exported_snapshot(source) as snap:
            catalog = read_catalog(snap.conn)
            anonymization = Anonymization.prepare(snap.conn, catalog, rules)
            plan = build_plan(catalog, anonymization.selection(selection, catalog), anonymization.resolved,
                              binary_allowed=False)
            report = anonymization.review(snap.conn, source, snap.snapshot_id, catalog, plan,
                                          pii.THOROUGH_SAMPLE_ROWS)
    except psycopg.Error as error:
        raise TetherError(f"Checking the rules against {source.masked_url()} failed: {server_error(error)}") from None
    if anonymization.key is not None:
        report.notes.insert(0, f"pseudonyms would be {anonymization.key.describe()}")
    return report
