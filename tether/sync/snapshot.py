"""One consistent view of the source: an exported snapshot that every worker session (and pg_dump) imports.

All source sessions are read-only (``default_transaction_read_only`` plus ``READ ONLY`` transactions), so
nothing in a sync can write to production, whatever the role may do.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.pq import ConnStatus, TransactionStatus

from tether.conninfo import DatabaseAddress, libpq_reason
from tether.errors import TetherError

APPLICATION_NAME = "tether sync-prod"
SOURCE_SETTINGS = {
    "default_transaction_read_only": "on",
    # As pg_dump does: names of other objects in the rows (regclass, regproc ... columns) are written
    # schema-qualified, whatever search_path the source database or role sets.
    "search_path": "pg_catalog",
    "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "lock_timeout": "60s",
}
LOCAL_SETTINGS = {
    # The scratch database is thrown away if anything fails, so its commits need not wait for the disk.
    "synchronous_commit": "off",
    "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "lock_timeout": "0",
    # A working database carries the source database's own settings: ours win in the sync's sessions.
    "default_transaction_read_only": "off",
    "search_path": "pg_catalog",  # and read back the same way
    "maintenance_work_mem": "256MB",
}
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


def session_options(address: DatabaseAddress, settings: Mapping[str, str]) -> str:
    """The libpq ``options`` value: the address's own options, then ours (``-c name=value`` each)."""
    own = [value for key, value in address.options if key == "options" and value]
    return " ".join([*own, *(f"-c {name}={value}" for name, value in settings.items())])


def source_conninfo(address: DatabaseAddress, settings: Mapping[str, str] | None = None) -> str:
    """``settings`` (the anonymization key of a sync, say) go in the startup packet: no statement, no log line."""
    return address.conninfo(options=session_options(address, {**SOURCE_SETTINGS, **(settings or {})}),
                            application_name=APPLICATION_NAME, connect_timeout="15")


def local_conninfo(address: DatabaseAddress) -> str:
    return address.conninfo(options=session_options(address, LOCAL_SETTINGS), application_name=APPLICATION_NAME,
                            connect_timeout="15")


def connect_source(address: DatabaseAddress, settings: Mapping[str, str] | None = None) -> psycopg.Connection:
    return _connect(address, source_conninfo(address, settings), "source")


def connect_local(address: DatabaseAddress) -> psycopg.Connection:
    return _connect(address, local_conninfo(address), "local")


def _connect(address: DatabaseAddress, conninfo: str, role: str) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as error:
        message = libpq_reason(error, address.password)
        raise TetherError(f"Could not connect to the {role} database {address.masked_url()}: {message}. "
                          "Check that the server is running and the URL, user and password are right.") from None


@dataclass(frozen=True)
class XidSnapshot:
    """A ``pg_snapshot``: transactions below ``xmin`` are finished; from ``xmax`` on they had not started."""

    xmin: int
    xmax: int
    xip: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> XidSnapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), tuple(int(x) for x in xip.split(",") if x))

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in self.xip)}"


@dataclass
class SourceSnapshot:
    conn: psycopg.Connection  # the session holding the snapshot open; also reads the catalog
    snapshot_id: str
    xids: XidSnapshot


@contextmanager
def exported_snapshot(address: DatabaseAddress) -> Iterator[SourceSnapshot]:
    """Open a REPEATABLE READ READ ONLY transaction on the source and export its snapshot for the others."""
    conn = connect_source(address)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot(), pg_current_snapshot()::text").fetchone()
        assert row is not None
        yield SourceSnapshot(conn, row[0], XidSnapshot.parse(row[1]))
    finally:
        conn.close()


def join_snapshot(conn: psycopg.Connection, snapshot_id: str) -> None:
    """Start a transaction on ``conn`` that sees exactly what the exporting session sees."""
    if not _SNAPSHOT_ID.match(snapshot_id):
        raise ValueError(f"not a snapshot id: {snapshot_id!r}")
    with conn.pipeline():  # one round trip, not two: production may be far away
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))


def joined_session(source: DatabaseAddress, snapshot_id: str) -> psycopg.Connection:
    """A new session to the source, in the snapshot ``snapshot_id`` (closed again if joining fails)."""
    conn = connect_source(source)
    try:
        join_snapshot(conn, snapshot_id)
    except BaseException:
        conn.close()
        raise
    return conn


def _still_open(conn: psycopg.Connection) -> bool:
    """Whether an idle session is still usable, without a round trip: a server that ended it (an idle timeout, a
    pooler, an administrator) has sent its goodbye, which reading what is already there reveals."""
    if conn.closed or conn.info.transaction_status != TransactionStatus.INTRANS:
        return False
    try:
        for _ in range(3):  # the goodbye message, then the end of the stream (libpq reports it on the next read)
            conn.pgconn.consume_input()
    except psycopg.OperationalError:
        return False
    return conn.pgconn.status == ConnStatus.OK and conn.info.transaction_status == TransactionStatus.INTRANS


class JoinedSessions:
    """Sessions to the source joined to a snapshot, opened in the background before they are needed (each costs
    round trips when production is far away). ``take`` hands one out, warm or, failing that, new; its taker
    closes it. ``release`` closes the ones nobody took, at once: an idle session in the snapshot holds back
    vacuum on production and counts against its connection limit. Callable from any thread.
    """

    def __init__(self, source: DatabaseAddress, snapshot_id: str, count: int) -> None:
        self.source, self.snapshot_id = source, snapshot_id
        self._lock = threading.Lock()
        self._taken: list[psycopg.Connection] = []
        self._opener = ThreadPoolExecutor(max_workers=max(1, count), thread_name_prefix="sync-warm")
        self._warm: list[Future[psycopg.Connection]] = [self._opener.submit(self._join) for _ in range(count)]

    def __bool__(self) -> bool:
        return bool(self._warm) or bool(self._taken)

    def _join(self) -> psycopg.Connection:
        return joined_session(self.source, self.snapshot_id)

    def take(self) -> psycopg.Connection:
        with self._lock:
            warm = self._warm.pop() if self._warm else None
        conn = None
        if warm is not None:
            with contextlib.suppress(Exception):  # it failed to open or died while waiting: open another
                candidate = warm.result()
                if _still_open(candidate):
                    conn = candidate
                else:
                    candidate.close()
        conn = conn or self._join()
        with self._lock:
            self._taken.append(conn)
        return conn

    def cancel_taken(self) -> None:
        """Cancel what the taken sessions are running (thread-safe: a cancel request, not a close)."""
        with self._lock:
            taken = list(self._taken)
        for conn in taken:
            with contextlib.suppress(Exception):
                if not conn.closed:
                    conn.cancel()

    def release(self) -> None:
        with self._lock:
            untaken, self._warm = self._warm, []
        for warm in untaken:
            with contextlib.suppress(BaseException):
                warm.result().close()

    def close(self) -> None:
        self.release()
        self._opener.shutdown(wait=True)


def lock_tables(conn: psycopg.Connection, relations: list[sql.Identifier]) -> None:
    """ACCESS SHARE locks (what pg_dump takes): no one can drop or rewrite these tables until we are done."""
    for start in range(0, len(relations), 500):
        batch = relations[start:start + 500]
        try:
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(sql.SQL(", ").join(batch)))
        except psycopg.errors.LockNotAvailable:
            raise TetherError("A table on the source stayed locked by another session (a schema change or a "
                              "long maintenance command) for over a minute. Try again when it is finished; "
                              "nothing was written.") from None
