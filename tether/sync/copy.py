"""Streaming rows from the source to the local copy: N workers, each one source and one local session.

Every worker joins the exported snapshot once and keeps its sessions for all the tables it takes, so 300
small tables cost 300 pairs of COPY commands, not 300 connections. Rows flow as binary COPY when both sides
have the same types, straight from one socket to the other.

The streams start as soon as the snapshot exists, before the local tables do (pg_dump's many catalog queries
take seconds when production is far away): until the schema is in place, a worker writes each table's COPY
stream to a spool file, and a loader pours the spooled tables in once they exist, while the workers go on
straight into the local tables. On a slow link, one worker takes the smallest tables first, so that their
round trips overlap the big tables' transfer instead of coming after it.
"""

from __future__ import annotations

import contextlib
import queue
import select
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import Copy, pq, sql

from tether.conninfo import DatabaseAddress
from tether.errors import TetherError
from tether.redact import redact, server_error
from tether.sync.catalog import Relation
from tether.sync.plan import TableCopy, column_list
from tether.sync.progress import SyncProgress
from tether.sync.snapshot import connect_local, connect_source, join_snapshot

WRITE_BATCH = 256 * 1024  # bytes gathered before each write to the local server
FREEZE_MIN_BYTES = 8 * 1024 * 1024  # below this, the extra TRUNCATE costs more than frozen rows save
SPOOL_READ = 1024 * 1024
SPOOL_LIMIT = 2 * 1024**3
# Tables smaller than this travel in batches: up to BATCH_TABLES of them, or BATCH_BYTES, per query.
SMALL_TABLE_BYTES = 1024 * 1024
BATCH_TABLES = 50
BATCH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class CopySettings:
    jobs: int
    source_settings: Mapping[str, str] = field(default_factory=dict)  # startup settings: a sync's own key
    freeze: bool = True  # tables are new in this database: load big ones frozen (COPY ... FREEZE)
    small_first: bool = False  # one worker takes the smallest tables first (a link with long round trips)


@dataclass(frozen=True)
class CopyResult:
    table: str
    rows: int
    bytes: int
    seconds: float
    base_rows: int = 0  # rows the table held before (an extension's configuration table holds its own)


@dataclass(frozen=True)
class _Spooled:
    copy: TableCopy
    path: Path
    rows: int
    bytes: int
    seconds: float


@dataclass
class _Shared:
    queue: deque[TableCopy]
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    results: dict[str, CopyResult] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    connections: list[psycopg.Connection] = field(default_factory=list)

    def next_tables(self, smallest: bool = False) -> list[TableCopy]:
        """The next table, or a batch of small ones (sent to the source as one query); [] when none is left."""
        with self.lock:
            if self.stop.is_set() or not self.queue:
                return []
            take = self.queue.pop if smallest else self.queue.popleft
            batch = [take()]
            size = batch[0].relation.bytes
            while (self.queue and size < BATCH_BYTES and len(batch) < BATCH_TABLES
                   and batch[0].relation.bytes < SMALL_TABLE_BYTES):
                following = self.queue[-1] if smallest else self.queue[0]
                if following.relation.bytes >= SMALL_TABLE_BYTES:
                    break
                batch.append(take())
                size += following.relation.bytes
            return batch

    def fail(self, error: BaseException) -> None:
        with self.lock:
            if not self.stop.is_set():
                self.errors.append(error)
            self.stop.set()


@dataclass
class _Target:
    """Where the rows go, once it exists: the local database and the table hooks of the build."""

    address: DatabaseAddress
    wait_for: Callable[[TableCopy], None] | None
    on_committed: Callable[[TableCopy], None] | None


class RowStreams:
    """The copy workers (and the spool loader) of one sync; see the module doc.

    ``start()`` begins reading (spooling while there is no target), ``attach()`` names the local database
    once its tables are being created, ``finish()`` waits for every table and returns the results.
    """

    def __init__(self, source: DatabaseAddress, snapshot_id: str, copies: Sequence[TableCopy],
                 settings: CopySettings, progress: SyncProgress, spool_dir: Path) -> None:
        self.source, self.snapshot_id, self.settings, self.progress = source, snapshot_id, settings, progress
        self.spool_dir = spool_dir
        self.count = len(copies)
        # A subset that takes no row of a table: nothing to read, the new (empty) table is right as it is.
        self._empty = [copy for copy in copies if copy.expected_rows == 0 and not copy.appends]
        self._shared = _Shared(deque(copy for copy in copies if copy not in self._empty))
        self._target: _Target | None = None
        self._attached = threading.Event()
        self._spooled: queue.Queue[_Spooled | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._loader: threading.Thread | None = None
        self.spooled_tables = 0
        self.spooled_bytes = 0
        # Spool at most this much (a quarter of the free disk, 2 GiB at most): a slow pg_dump on a fast link
        # must not fill the laptop's disk.
        self.spool_limit = min(SPOOL_LIMIT, shutil.disk_usage(spool_dir.parent).free // 4)

    def start(self) -> RowStreams:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        workers = max(1, min(self.settings.jobs, len(self._shared.queue)))
        for number in range(workers):
            smallest = self.settings.small_first and workers > 1 and number == workers - 1
            thread = threading.Thread(target=self._worker, args=(smallest,), name=f"sync-copy-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._loader = threading.Thread(target=self._load_spooled, name="sync-spool-loader", daemon=True)
        self._loader.start()
        return self

    def attach(self, address: DatabaseAddress, wait_for: Callable[[TableCopy], None] | None = None,
               on_committed: Callable[[TableCopy], None] | None = None) -> None:
        self._target = _Target(address, wait_for, on_committed)
        self._attached.set()

    def finish(self) -> dict[str, CopyResult]:
        """Wait for every table (read, spooled and loaded); the first failure is raised."""
        if not self._attached.is_set():
            raise RuntimeError("RowStreams.finish() before attach()")
        try:
            for thread in self._threads:
                while thread.is_alive():
                    thread.join(0.2)
            self._spooled.put(None)
            assert self._loader is not None
            while self._loader.is_alive():
                self._loader.join(0.2)
        except BaseException:
            self.abort()
            raise
        if self._shared.errors:
            raise self._shared.errors[0]
        return self._shared.results

    def abort(self) -> None:
        """Stop every worker and the loader (their server-side commands are cancelled); used on failure."""
        shared = self._shared
        shared.stop.set()
        self._attached.set()
        self._spooled.put(None)
        with shared.lock:
            connections = list(shared.connections)
        for conn in connections:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5)
        for thread in [*self._threads, *([self._loader] if self._loader else [])]:
            thread.join(10)

    def _register(self, conn: psycopg.Connection) -> None:
        with self._shared.lock:
            self._shared.connections.append(conn)

    def _worker(self, smallest: bool) -> None:
        shared, progress = self._shared, self.progress
        try:
            with connect_source(self.source, self.settings.source_settings) as src, \
                    contextlib.ExitStack() as local:
                self._register(src)
                join_snapshot(src, self.snapshot_id)
                dst: psycopg.Connection | None = None
                while batch := shared.next_tables(smallest):
                    if not self._attached.is_set() and self.spooled_bytes >= self.spool_limit:
                        while not self._attached.wait(0.2) and not shared.stop.is_set():
                            pass  # enough is spooled: the next tables wait for their local tables instead
                    if not self._attached.is_set():
                        for copy, rows in self._read(src, batch):
                            self._spooled.put(self._spool(copy, rows))
                        continue
                    target = self._target
                    assert target is not None
                    if dst is None:
                        dst = local.enter_context(connect_local(target.address))
                        self._register(dst)
                    if target.wait_for is not None:
                        for copy in batch:
                            target.wait_for(copy)  # between tables: no lock is held while waiting
                    with dst.transaction():  # one commit per batch of small tables
                        results = [copy_table(src, dst, copy, self.settings, progress.advance_table, rows)
                                   for copy, rows in self._read(src, batch)]
                    for copy, result in zip(batch, results, strict=True):
                        self._done(copy, result, target)
                src.execute("ROLLBACK")
        except BaseException as error:
            shared.fail(error)

    @staticmethod
    def _read(src: psycopg.Connection, batch: list[TableCopy]) -> Iterator[tuple[TableCopy, SourceRows]]:
        """Each table of ``batch`` with its rows' stream (one query for the whole batch); read them in order."""
        queries = [copy.copy_out().as_bytes(src) for copy in batch]
        if len(batch) == 1:
            yield batch[0], SourceRows(src, queries[0])
            return
        yield from zip(batch, SourceBatch(src, queries).streams(), strict=True)

    def _spool(self, copy: TableCopy, source: SourceRows) -> _Spooled:
        """The table's COPY stream into a file of its own (the local table does not exist yet)."""
        started = time.perf_counter()
        path = self.spool_dir / f"{copy.relation.oid}.copy"
        total = reported = 0
        try:
            with open(path, "wb", buffering=WRITE_BATCH) as spool:
                for data in source:
                    spool.write(data)
                    total += len(data)
                    if total - reported >= 4 * WRITE_BATCH:
                        self.progress.advance_table(copy.name, total - reported, source.rows_read)
                        reported = total
        except SourceError as error:
            raise TetherError(f"Reading {copy.name} from the source failed: {error}") from None
        self.progress.advance_table(copy.name, total - reported, source.rows_read)
        with self._shared.lock:
            self.spooled_tables += 1
            self.spooled_bytes += total
        return _Spooled(copy, path, source.rows, total, time.perf_counter() - started)

    def _load_spooled(self) -> None:
        """Pour spooled tables into the local ones, as soon as each exists."""
        shared = self._shared
        try:
            self._attached.wait()
            target = self._target
            if target is None or shared.stop.is_set():
                return
            for copy in self._empty:
                if target.wait_for is not None:
                    target.wait_for(copy)
                self._done(copy, CopyResult(copy.name, 0, 0, 0.0), target)
            with contextlib.ExitStack() as local:
                dst: psycopg.Connection | None = None
                while (item := self._spooled.get()) is not None:
                    if shared.stop.is_set():
                        return
                    if dst is None:
                        dst = local.enter_context(connect_local(target.address))
                        self._register(dst)
                    if target.wait_for is not None:
                        target.wait_for(item.copy)
                    started = time.perf_counter()
                    with dst.transaction():
                        base_rows = load_spooled(dst, item.copy, item.path, self.settings, item.rows)
                    item.path.unlink(missing_ok=True)
                    result = CopyResult(item.copy.name, item.rows, item.bytes,
                                        item.seconds + time.perf_counter() - started, base_rows)
                    self._done(item.copy, result, target)
        except BaseException as error:
            shared.fail(error)

    def _done(self, copy: TableCopy, result: CopyResult, target: _Target) -> None:
        self.progress.finish_table(copy.name, result.rows, result.bytes)
        with self._shared.lock:
            self._shared.results[copy.name] = result
        if target.on_committed is not None:
            target.on_committed(copy)


def load_spooled(dst: psycopg.Connection, copy: TableCopy, path: Path, settings: CopySettings, rows: int) -> int:
    """A spooled COPY stream of ``rows`` rows into its table (in the caller's transaction); returns the rows the
    table held before."""
    base_rows = _prepare(dst, copy, settings)
    freeze = _freezes(copy, settings)
    with dst.cursor() as in_cursor, open(path, "rb") as spool:
        try:
            with in_cursor.copy(copy.copy_in(freeze)) as into:
                while block := spool.read(SPOOL_READ):
                    into.write(block)
        except psycopg.Error as error:
            raise TetherError(f"Copying {copy.name} failed: {server_error(error)}") from None
        stored = in_cursor.rowcount
    if stored != rows:
        raise TetherError(f"Copying {copy.name}: the source sent {rows} rows but the local database stored {stored}. "
                          "The local database was not replaced.")
    return base_rows


def _freezes(copy: TableCopy, settings: CopySettings) -> bool:
    return settings.freeze and copy.relation.bytes >= FREEZE_MIN_BYTES and not copy.appends


def _prepare(dst: psycopg.Connection, copy: TableCopy, settings: CopySettings) -> int:
    """Before rows go in: count an extension's own rows; empty the table for a frozen load. Returns that count."""
    base_rows = 0
    if copy.appends:
        row = dst.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(copy.relation.identifier)).fetchone()
        base_rows = int(row[0]) if row else 0
    if _freezes(copy, settings):
        # COPY FREEZE needs the table to be new or emptied in this transaction; frozen rows spare the
        # first reader from setting hint bits on every page (and writing them all out again).
        dst.execute(sql.SQL("TRUNCATE ONLY {}").format(copy.relation.identifier))
    return base_rows


def copy_table(src: psycopg.Connection, dst: psycopg.Connection, copy: TableCopy, settings: CopySettings,
               advance: Callable[[str, int, int], None], source: SourceRows | None = None) -> CopyResult:
    """Stream one table inside the workers' open transactions; the row counts of both ends must agree.

    ``source``: the table's stream when it comes in a batch (else its COPY is sent here).
    """
    started = time.perf_counter()
    base_rows = _prepare(dst, copy, settings)
    freeze = _freezes(copy, settings)
    source = source or SourceRows(src, copy.copy_out().as_bytes(src))
    with dst.cursor() as in_cursor:
        try:
            with in_cursor.copy(copy.copy_in(freeze)) as into:
                total = _pour(source, into, lambda written: advance(copy.name, written, source.rows_read))
        except psycopg.Error as error:
            raise TetherError(f"Copying {copy.name} failed: {server_error(error)}") from None
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

    def __init__(self, conn: psycopg.Connection, query: bytes, *, in_batch: bool = False) -> None:
        self.pgconn = conn.pgconn
        self.query = query
        self.in_batch = in_batch  # one of a SourceBatch: already sent, and more results follow
        self.rows = 0  # as the server reports it, once done
        self.rows_read = 0

    def __iter__(self) -> Iterator[memoryview]:
        pgconn = self.pgconn
        if not self.in_batch:
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
        if not self.in_batch or final is None or final.status != pq.ExecStatus.COMMAND_OK:
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


class SourceBatch:
    """Several ``COPY ... TO STDOUT`` sent as one query: one round trip for many small tables.

    The simple query protocol runs the statements one after another, each answering with its own COPY
    stream; ``streams()`` yields one SourceRows per statement, to be read in order, each to its end.
    """

    def __init__(self, conn: psycopg.Connection, queries: Sequence[bytes]) -> None:
        self.conn = conn
        self.queries = list(queries)

    def streams(self) -> Iterator[SourceRows]:
        pgconn = self.conn.pgconn
        pgconn.send_query(b";\n".join(self.queries))
        first = SourceRows(self.conn, b"", in_batch=True)
        while pgconn.flush() == 1:
            first._wait(write=True)
        yield first
        for _ in self.queries[1:]:
            yield SourceRows(self.conn, b"", in_batch=True)
        first._drain()


def _message(result: pq.abc.PGresult | None) -> str:
    if result is None:
        return "the source server sent no result"
    text = redact((result.error_message or b"").decode("utf-8", "replace"))  # never a row's values
    return " ".join(text.split()) or f"unexpected status {pq.ExecStatus(result.status).name}"
