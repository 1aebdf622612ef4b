"""Streaming rows from the source to the local copy: N workers, each one source and one local session.

Every worker joins the exported snapshot once and keeps one local transaction for all the tables it
takes (big tables first, then the small ones in a stream), so 300 small tables cost 300 pairs of COPY
commands and a single commit, not 300 connections or commits. Rows flow as binary COPY when both sides
have the same types, straight from one socket to the other: nothing is written to disk in between.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import Copy, pq, sql

from tether.conninfo import DatabaseAddress
from tether.errors import TetherError
from tether.sync.anonymize import SALT_SETTING
from tether.sync.catalog import Relation
from tether.sync.plan import TableCopy, column_list
from tether.sync.progress import SyncProgress
from tether.sync.snapshot import connect_local, connect_source, join_snapshot

WRITE_BATCH = 256 * 1024  # bytes gathered before each write to the local server
FREEZE_MIN_BYTES = 8 * 1024 * 1024  # below this, the extra TRUNCATE costs more than frozen rows save


@dataclass(frozen=True)
class CopySettings:
    jobs: int
    salt: str
    freeze: bool = True  # tables are new in this database: load big ones frozen (COPY ... FREEZE)


@dataclass(frozen=True)
class CopyResult:
    table: str
    rows: int
    bytes: int
    seconds: float
    base_rows: int = 0  # rows the table held before (an extension's configuration table holds its own)


@dataclass
class _Shared:
    queue: deque[TableCopy]
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    results: dict[str, CopyResult] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    connections: list[psycopg.Connection] = field(default_factory=list)

    def next_table(self) -> TableCopy | None:
        with self.lock:
            if self.stop.is_set() or not self.queue:
                return None
            return self.queue.popleft()


def copy_tables(source: DatabaseAddress, snapshot_id: str, dest: DatabaseAddress, copies: Sequence[TableCopy],
                settings: CopySettings, progress: SyncProgress,
                on_committed: Callable[[TableCopy], None] | None = None,
                wait_for: Callable[[TableCopy], None] | None = None) -> dict[str, CopyResult]:
    """Copy ``copies`` (in this order, across ``settings.jobs`` workers); returns each table's result.

    Each table is committed on its own (cheap: local commits do not wait for the disk), so that
    ``on_committed`` can start building its indexes while the others are still being copied.
    ``wait_for(copy)`` returns once the table exists locally (it may still be being created).
    """
    shared = _Shared(deque(copies))
    workers = [threading.Thread(target=_worker,
                                args=(source, snapshot_id, dest, settings, shared, progress, on_committed,
                                      wait_for),
                                name=f"sync-copy-{number}", daemon=True)
               for number in range(max(1, min(settings.jobs, len(copies))))]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            while worker.is_alive():
                worker.join(0.2)
    except BaseException:
        shared.stop.set()
        _cancel(shared)
        for worker in workers:
            worker.join(10)
        raise
    if shared.errors:
        raise shared.errors[0]
    return shared.results


def _cancel(shared: _Shared) -> None:
    with shared.lock:
        connections = list(shared.connections)
    for conn in connections:
        with contextlib.suppress(psycopg.Error):
            conn.cancel_safe(timeout=5)


def _worker(source: DatabaseAddress, snapshot_id: str, dest: DatabaseAddress, settings: CopySettings,
            shared: _Shared, progress: SyncProgress, on_committed: Callable[[TableCopy], None] | None,
            wait_for: Callable[[TableCopy], None] | None) -> None:
    try:
        with connect_source(source) as src, connect_local(dest) as dst:
            with shared.lock:
                shared.connections.extend((src, dst))
            join_snapshot(src, snapshot_id)
            src.execute("SELECT set_config(%s, %s, false)", (SALT_SETTING, settings.salt))
            while (copy := shared.next_table()) is not None:
                if wait_for is not None:
                    wait_for(copy)  # between tables: no lock is held while waiting
                with dst.transaction():
                    result = copy_table(src, dst, copy, settings, progress.advance_table)
                progress.finish_table(copy.name, result.rows, result.bytes)
                with shared.lock:
                    shared.results[copy.name] = result
                if on_committed is not None:
                    on_committed(copy)
            src.execute("ROLLBACK")
    except BaseException as error:
        with shared.lock:
            if not shared.stop.is_set():
                shared.errors.append(error)
            shared.stop.set()


def copy_table(src: psycopg.Connection, dst: psycopg.Connection, copy: TableCopy, settings: CopySettings,
               advance: Callable[[str, int, int], None]) -> CopyResult:
    """Stream one table inside the workers' open transactions; the row counts of both ends must agree."""
    started = time.perf_counter()
    if copy.expected_rows == 0 and not copy.appends:
        return CopyResult(copy.name, 0, 0, 0.0)  # a subset takes no row of it: the new (or emptied) table is right
    base_rows = 0
    if copy.appends:
        row = dst.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(copy.relation.identifier)).fetchone()
        base_rows = int(row[0]) if row else 0
    freeze = settings.freeze and copy.relation.bytes >= FREEZE_MIN_BYTES and not copy.appends
    if freeze:
        # COPY FREEZE needs the table to be new or emptied in this transaction; frozen rows spare the
        # first reader from setting hint bits on every page (and writing them all out again).
        dst.execute(sql.SQL("TRUNCATE ONLY {}").format(copy.relation.identifier))
    source = SourceRows(src, copy.copy_out().as_bytes(src))
    with dst.cursor() as in_cursor:
        try:
            with in_cursor.copy(copy.copy_in(freeze)) as into:
                total = _pour(source, into, lambda written: advance(copy.name, written, source.rows_read))
        except psycopg.Error as error:
            raise TetherError(f"Copying {copy.name} failed: {' '.join(str(error).split())}") from None
        except SourceError as error:
            raise TetherError(f"Reading {copy.name} from the source failed: {error}") from None
        local_rows = in_cursor.rowcount
    if source.rows != local_rows:
        raise TetherError(f"Copying {copy.name}: the source sent {source.rows} rows but the local database "
                          f"stored {local_rows}. The local database was not replaced.")
    return CopyResult(copy.name, source.rows, total, time.perf_counter() - started, base_rows)


def _pour(source: SourceRows, into: Copy, report: Callable[[int], None] = lambda _: None) -> int:
    """Write the rows into ``into`` in batches of WRITE_BATCH bytes; returns the bytes written.

    ``report(bytes written since the last report)`` is called every few batches and once at the end.
    """
    total = reported = 0
    batch = bytearray()
    for data in source:
        batch += data
        if len(batch) >= WRITE_BATCH:
            into.write(batch)
            total += len(batch)
            batch = bytearray()
            if total - reported >= 4 * WRITE_BATCH:
                report(total - reported)
                reported = total
    if batch:
        into.write(batch)
        total += len(batch)
    report(total - reported)
    return total


def copy_between(src: psycopg.Connection, dst: psycopg.Connection, relation: Relation) -> int:
    """COPY of ``relation`` from one local database to another (both in their open transactions); its rows.

    Binary where every column type has binary I/O (both databases are on one server, so OIDs agree), else text.
    """
    table, columns = relation.identifier, column_list(relation)
    options = sql.SQL(" (FORMAT BINARY)" if relation.binary_local else "")
    source = SourceRows(src, sql.SQL("COPY {}{} TO STDOUT{}").format(table, columns, options).as_bytes(src))
    with dst.cursor() as in_cursor:
        try:
            with in_cursor.copy(sql.SQL("COPY {}{} FROM STDIN{}").format(table, columns, options)) as into:
                _pour(source, into)
        except SourceError as error:
            raise TetherError(f"Reading {relation.qualified} locally failed: {error}") from None
        stored = in_cursor.rowcount
    if stored != source.rows:
        raise TetherError(f"Copying {relation.qualified} locally: {source.rows} rows read, {stored} stored.")
    return stored


class SourceError(Exception):
    """The source ended a COPY with an error (its message is the exception's text)."""


class SourceRows:
    """``COPY ... TO STDOUT`` read straight from libpq, one row at a time.

    psycopg's own COPY reader costs a generator round trip per row; with hundreds of thousands of small
    rows that is most of the Python time of a sync. This loop asks libpq for the next row and only waits
    (in select, without holding the GIL) when none is buffered. The session must be idle (in its
    transaction) and is idle again when the iteration ends; on error it is left to be closed.
    """

    def __init__(self, conn: psycopg.Connection, query: bytes) -> None:
        self.pgconn = conn.pgconn
        self.query = query
        self.rows = 0  # as the server reports it, once done
        self.rows_read = 0

    def __iter__(self) -> Iterator[memoryview]:
        pgconn = self.pgconn
        pgconn.send_query(self.query)
        while pgconn.flush() == 1:
            self._wait(write=True)
        started = self._result()
        if started is None or started.status != pq.ExecStatus.COPY_OUT:
            self._drain()
            raise SourceError(_message(started))
        get = pgconn.get_copy_data
        while True:
            size, data = get(1)
            if size > 0:
                self.rows_read += 1
                yield data
            elif size == 0:
                self._wait()
                pgconn.consume_input()
            else:
                break
        final = self._result()
        self._drain()
        if final is None or final.status != pq.ExecStatus.COMMAND_OK:
            raise SourceError(_message(final))
        self.rows = int(final.command_tuples or 0)

    def _wait(self, write: bool = False) -> None:
        socket = self.pgconn.socket
        select.select([] if write else [socket], [socket] if write else [], [], 1.0)

    def _result(self) -> pq.abc.PGresult | None:
        pgconn = self.pgconn
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                return pgconn.get_result()
            self._wait()

    def _drain(self) -> None:
        while self._result() is not None:
            pass


def _message(result: pq.abc.PGresult | None) -> str:
    if result is None:
        return "the source server sent no result"
    text = (result.error_message or b"").decode("utf-8", "replace")
    return " ".join(text.split()) or f"unexpected status {pq.ExecStatus(result.status).name}"
