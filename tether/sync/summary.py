"""What a sync or reset did, as a value: printed for people at the end, and as JSON (``--json``) for CI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SyncSummary:
    """The ``--json`` document of ``invoke sync-prod`` (every field is listed in the README)."""

    mode: str  # full | incremental | unchanged
    source: str  # masked URL
    dest: str  # masked URL of the local database
    snapshot_database: str | None  # None: kept no snapshot (--no-snapshot)
    anonymized: bool
    tables: int = 0  # tables whose rows the local database holds
    tables_copied: int = 0  # of those, copied by this run
    tables_carried_over: int = 0  # unchanged since the last sync, kept from the snapshot
    tables_schema_only: int = 0  # created without rows (--exclude-data, foreign tables)
    tables_excluded: int = 0  # relations left out entirely (--tables/--exclude and what depends on them)
    rows: int = 0  # rows in the local copy's tables
    rows_copied: int = 0
    bytes_copied: int = 0  # COPY stream bytes moved by this run
    source_bytes: int = 0  # bytes received from the source: the rows' COPY streams and pg_dump's archive
    source_seconds: float = 0.0  # from the first row stream to the last
    source_mbit_per_second: float = 0.0  # the throughput achieved from the source (what a slow link limits)
    tables_spooled: int = 0  # tables read before their local table existed (while pg_dump was still running)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase
    jobs: int = 1
    rules_applied: list[dict[str, str]] = field(default_factory=list)
    changed_tables: list[str] = field(default_factory=list)  # incremental: what was copied again, and why none
    sessions_disconnected: int = 0
    skipped_privileges: list[str] = field(default_factory=list)  # grants, policies, labels the local server refused
    owners_mapped: list[str] = field(default_factory=list)  # objects left to the local user: their owner is missing
    settings_skipped: list[str] = field(default_factory=list)  # database settings the local server refused
    notes: list[str] = field(default_factory=list)
    verified: bool = False  # every table's local row count equals the source snapshot's
    row_counts: dict[str, int] = field(default_factory=dict)
    materialized_views_refreshed: int = 0
    sequences_set: int = 0
    pseudonym_key: str | None = None  # "server": stable across syncs; "per-sync": stable within this sync only
    leak_scan: dict[str, Any] = field(default_factory=dict)  # tether.sync.leaks.LeakReport.as_dict()
    subset: dict[str, Any] | None = None  # --subset: rows per table by category, bytes, fraction (subset_report)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["phases"] = {name: round(value, 3) for name, value in self.phases.items()}
        return data

    def lines(self) -> list[str]:
        """The human summary, a few lines."""
        what = {"full": "Full sync", "incremental": "Incremental sync", "unchanged": "Nothing changed"}[self.mode]
        what += " (subset)" if self.subset is not None else ""
        lines = [f"{what}: {self.source} → {self.dest} in {self.seconds:.1f} s"]
        lines.append(f"  tables: {self.tables} with rows ({self.tables_copied} copied, {self.tables_carried_over} "
                     f"unchanged), {self.tables_schema_only} without rows, {self.tables_excluded} left out")
        lines.append(f"  rows: {self.rows:,} ({self.rows_copied:,} copied, {self.bytes_copied / 1e6:,.1f} MB)"
                     + ("; row counts verified against the source snapshot" if self.verified else ""))
        if self.source_bytes:
            lines.append(f"  from the source: {self.source_bytes / 1e6:,.1f} MB in {self.source_seconds:.1f} s "
                         f"({self.source_mbit_per_second:,.0f} Mbit/s)")
        if self.anonymized:
            lines.append(f"  anonymized: {len(self.rules_applied)} column rules applied on the source")
            if self.pseudonym_key == "server":
                lines.append("  pseudonyms: keyed by the source's secret (tether_anon), the same on every sync")
            elif self.pseudonym_key == "per-sync":
                lines.append("  pseudonyms: keyed by a secret made for this sync only (the source has no tether_anon "
                             "key): stable within this sync only")
            if self.leak_scan:
                scan = self.leak_scan
                lines.append(f"  leak scan: {scan['columns_checked']} ruled columns, {scan['rows_sampled']} rows "
                             f"compared with the source, {len(scan['leaks'])} leaks"
                             + (f", {len(scan['not_checked'])} not checked (see --json)" if scan["not_checked"]
                                else ""))
        else:
            lines.append("  NOT anonymized: the local database holds real personal data")
        if self.subset is not None:
            from tether.sync.subset_report import summary_lines

            lines.extend(summary_lines(self.subset))
        if self.changed_tables:
            shown = ", ".join(self.changed_tables[:8]) + (" …" if len(self.changed_tables) > 8 else "")
            lines.append(f"  changed since the last sync: {shown}")
        lines.append(f"  sessions disconnected from the local database: {self.sessions_disconnected}")
        if self.skipped_privileges:
            lines.append(f"  skipped {len(self.skipped_privileges)} privilege, policy or label statements this server "
                         "refused, mostly naming roles it lacks (see --json)")
        if self.owners_mapped:
            lines.append(f"  {len(self.owners_mapped)} objects belong to the local user: their owner role does not "
                         "exist on this server (see --json)")
        if self.settings_skipped:
            lines.append(f"  skipped {len(self.settings_skipped)} database settings this server refused (see --json)")
        lines.extend(f"  note: {note}" for note in self.notes[:10])
        if len(self.notes) > 10:
            lines.append(f"  … and {len(self.notes) - 10} more notes (see --json)")
        if self.snapshot_database:
            lines.append(f"  reset to this state any time: invoke db.reset (snapshot {self.snapshot_database})")
        return lines


@dataclass
class ResetSummary:
    """The ``--json`` document of ``invoke db.reset``."""

    dest: str
    snapshot_database: str
    synced_at: str
    seconds: float = 0.0
    sessions_disconnected: int = 0
    from_spare: bool = False  # the ready spare copy was renamed in (else the snapshot was copied)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data

    def lines(self) -> list[str]:
        how = "the ready spare copy" if self.from_spare else "a copy of the snapshot"
        return [f"Reset {self.dest} to the sync of {self.synced_at} in {self.seconds:.1f} s from {how} "
                f"({self.sessions_disconnected} sessions disconnected)."]
