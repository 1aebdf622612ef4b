"""The structure of the copy: one pg_dump of the source in the snapshot, restored before and after the data.

pg_dump writes everything but the tables' rows (``--exclude-table-data``): the schema, large objects, the
database's settings (``--create``). Pre-data (types, tables, functions, views) goes in as one transaction
before the rows; post-data (indexes, constraints, foreign keys, triggers) goes in after them with
``pg_restore --jobs``, which builds indexes in parallel and each constraint after the index it needs. Owners,
privileges, policies, security labels, publications and event triggers come last, replayed in dependency
order by ``tether.archive`` so that what names a role the local server lacks is skipped and listed instead
of failing the sync.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tether.archive import DATA_KINDS, LARGE_OBJECT_DATA_KINDS, Phases, TocEntry, phases, script_digest
from tether.conninfo import DatabaseAddress
from tether.pgtools import connection_argument, program_env
from tether.sync.snapshot import LOCAL_SETTINGS, SOURCE_SETTINGS, session_options

# What a local copy leaves out: tablespaces (the laptop has none of production's) and subscriptions (a restored
# subscription holds the publisher's connection string, a production secret, and would try to connect to it).
DUMP_SKIPS = ("--no-tablespaces", "--no-subscriptions")
# pg_restore applies the main entries without owners and privileges: tether.archive replays those afterwards.
RESTORE_SKIPS = ("--no-owner", "--no-privileges", "--no-tablespaces", "--no-subscriptions")
NO_TABLE_DATA = "*.*"  # every table, view and sequence in every schema: rows travel through COPY instead
PG_CLASS = 1259  # pg_class's oid: the catalog of tables, views, sequences and indexes


def pg_dump_argv(program: Path | str, source: DatabaseAddress, snapshot_id: str, archive: Path | str,
                 exclude_patterns: Sequence[str] = (), *, large_objects: bool = True) -> list[str]:
    """One custom archive of the source without table rows, read in the sync's snapshot.

    ``--create`` adds the database's own settings (applied by tether, not restored); large objects come with
    their contents unless ``large_objects`` is False.
    """
    return [str(program), f"--dbname={connection_argument(source)}", "--no-password", "--format=custom",
            "--create", f"--exclude-table-data={NO_TABLE_DATA}", f"--snapshot={snapshot_id}", "--compress=0",
            "--lock-wait-timeout=60000", *DUMP_SKIPS, *([] if large_objects else ["--no-blobs"]),
            *(f"--exclude-table={pattern}" for pattern in exclude_patterns), f"--file={archive}"]


def pg_restore_argv(program: Path | str, dest: DatabaseAddress, archive: Path | str, *, section: str,
                    list_file: Path | str, jobs: int = 1) -> list[str]:
    """``pg_restore`` of one section of the archive, limited to the entries in ``list_file``."""
    argv = [str(program), f"--dbname={connection_argument(dest)}", "--no-password", *RESTORE_SKIPS,
            "--exit-on-error", f"--section={section}", f"--use-list={list_file}"]
    argv.append(f"--jobs={jobs}" if jobs > 1 else "--single-transaction")
    return [*argv, str(archive)]


def source_env(source: DatabaseAddress) -> dict[str, str]:
    env = program_env(source, readonly=True, base=os.environ)
    env["PGOPTIONS"] = session_options(source, SOURCE_SETTINGS)
    return env


def local_env(dest: DatabaseAddress) -> dict[str, str]:
    env = program_env(dest, base=os.environ)
    env["PGOPTIONS"] = session_options(dest, LOCAL_SETTINGS)
    return env


def first_wave(entries: Sequence[TocEntry], tables: set[int]) -> set[int]:
    """Dump ids to restore first so that ``tables`` (relation oids) can be filled while the rest is created.

    That is each table's entry and everything it depends on, then, until nothing changes, every entry
    that depends on one of those tables (or on an entry added so) and on nothing outside the set:
    sequences, defaults and comments of those tables, views on them alone. Everything else comes in the
    second wave, in archive order.
    """
    by_id = {entry.dump_id: entry for entry in entries}
    anchors = {entry.dump_id for entry in entries if entry.catalog == PG_CLASS and entry.oid in tables
               and entry.kind() == "TABLE"}
    wave = set(anchors)
    pending = list(wave)
    while pending:
        for dependency in by_id[pending.pop()].depends_on:
            if dependency in by_id and dependency not in wave:
                wave.add(dependency)
                pending.append(dependency)
    changed = True
    while changed:
        changed = False
        for entry in entries:
            depends = set(entry.depends_on)
            if entry.dump_id not in wave and depends & anchors and depends <= wave:
                wave.add(entry.dump_id)
                anchors.add(entry.dump_id)
                changed = True
    return wave


def restore_phases(entries: Iterable[TocEntry], skipped_constraints: set[int]) -> Phases:
    """The archive's entries in restore order (see tether.archive), without what the sync does itself (rows,
    sequence values, materialized view contents) and without foreign keys to excluded tables."""
    kept = [entry for entry in entries
            if not (entry.kind() == "FK CONSTRAINT" and entry.oid in skipped_constraints)
            and entry.kind() not in DATA_KINDS - LARGE_OBJECT_DATA_KINDS
            and entry.kind() != "MATERIALIZED VIEW DATA"]
    return phases(kept)


def schema_entries(order: Phases) -> list[TocEntry]:
    """Every entry but large objects' contents: what the schema's fingerprint is computed from."""
    return [entry for entry in [*order.main, *order.deferred, *order.last]
            if entry.kind() not in LARGE_OBJECT_DATA_KINDS]


def schema_digest(script: str) -> str:
    """A fingerprint of the schema script (see tether.archive.script_digest)."""
    return script_digest(script)
