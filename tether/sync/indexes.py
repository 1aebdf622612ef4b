"""Building each table's indexes as soon as its rows are committed, while other tables are still being copied.

Index builds on small tables cost little CPU but one fsync each (PostgreSQL syncs every new B-tree at once),
and those on big tables cost CPU: both overlap well with copying. Only indexes, primary keys, unique and
exclusion constraints of plain tables start early; foreign keys, triggers, policies and everything about
partitioned tables wait for the final ``pg_restore --section=post-data``, which knows their dependencies.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tether.archive import (
    TocEntry,
    offline_env,
    pg_restore_script_argv,
    run_program,
    split_script,
    sql_only,
    write_list,
)
from tether.conninfo import DatabaseAddress
from tether.errors import TetherError
from tether.sync.catalog import SourceCatalog
from tether.sync.snapshot import connect_local

EARLY_KINDS = ("INDEX", "CONSTRAINT")


def early_entries(entries: Iterable[TocEntry], catalog: SourceCatalog, excluded: set[int]) -> dict[int, list[TocEntry]]:
    """Post-data entries that build one index of one plain (not partitioned) table, by table oid."""
    groups: dict[int, list[TocEntry]] = {}
    for entry in entries:
        if entry.kind() not in EARLY_KINDS:
            continue
        owner = catalog.index_owners.get((entry.catalog, entry.oid))
        relation = catalog.relations.get(owner) if owner is not None else None
        if relation is None or relation.kind != "r" or relation.partition_root is not None or owner in excluded:
            continue
        groups.setdefault(relation.oid, []).append(entry)
    return groups


@dataclass(frozen=True)
class EarlyScript:
    prologue: str  # the script's SET commands (search_path and friends), run once per session
    statements: dict[int, list[str]]  # table oid -> its index statements


def early_script(pg_restore: Path, archive: Path, groups: dict[int, list[TocEntry]],
                 work_dir: Path) -> EarlyScript | None:
    """The SQL of each early entry, from one pg_restore run; None if the script does not line up with the list."""
    ordered = [(oid, entry) for oid, entries in groups.items() for entry in entries]
    if not ordered:
        return EarlyScript("", {})
    list_file = write_list(work_dir / "early.list", (entry for _, entry in ordered))
    script = run_program(pg_restore_script_argv(pg_restore, archive, list_file), offline_env(),
                         "pg_restore --file=- (indexes)")
    prologue, chunks = split_script(sql_only(script))
    if len(chunks) != len(ordered) or any(chunk.kind not in EARLY_KINDS for chunk in chunks):
        return None
    statements: dict[int, list[str]] = {}
    for (oid, _), chunk in zip(ordered, chunks, strict=True):
        statements.setdefault(oid, []).append(chunk.body)
    return EarlyScript(prologue, statements)


@dataclass
class IndexBuilder:
    """A pool of local sessions running index statements as tables become ready, biggest tables first."""

    target: DatabaseAddress
    script: EarlyScript
    jobs: int
    _queue: queue.PriorityQueue[tuple[int, int, str | None]] = field(default_factory=queue.PriorityQueue)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _errors: list[BaseException] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        for number in range(self.jobs):
            thread = threading.Thread(target=self._work, name=f"sync-index-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def table_ready(self, oid: int, size: int = 0) -> None:
        for statement in self.script.statements.get(oid, ()):
            self._queue.put((-size, next(self._order), statement))

    def finish(self) -> None:
        """Wait for every queued statement; the first failure is raised."""
        for _ in self._threads:
            self._queue.put((2**62, next(self._order), None))
        for thread in self._threads:
            while thread.is_alive():
                thread.join(0.2)
        if self._errors:
            raise self._errors[0]

    def abort(self) -> None:
        """Stop after the statements already running (used when the sync fails elsewhere)."""
        self._stop.set()
        with contextlib.suppress(BaseException):
            self.finish()

    def _work(self) -> None:
        try:
            with connect_local(self.target) as conn:
                if self.script.prologue.strip():
                    conn.execute(self.script.prologue)
                while True:
                    _, _, statement = self._queue.get()
                    if statement is None:
                        return
                    if self._stop.is_set() or self._errors:
                        continue
                    try:
                        conn.execute(statement)
                    except psycopg.Error as error:
                        raise TetherError(f"Building an index locally failed: {' '.join(str(error).split())} "
                                          f"(statement: {' '.join(statement.split())[:300]})") from None
        except BaseException as error:
            self._errors.append(error)
            self._stop.set()
