"""A psycopg connection pool that follows the active target (needs ``psycopg-pool``, imported here only).

``TargetPool.connection()`` checks the target (one ``stat``) before handing out a connection. When the
target moved, a new ``psycopg_pool.ConnectionPool`` opens on it and the old one is closed: its idle
connections at once, the ones in use when their request returns them. So a request in flight finishes
where it started and the next one goes to the new target.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tether.runtime.contract import application_name
from tether.runtime.follow import Follower
from tether.runtime.reader import TargetReader, default_reader

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

RETIRE_TIMEOUT_SECONDS = 5.0


class TargetPool:
    """``psycopg_pool.ConnectionPool`` options (``min_size``, ``max_size``, ``kwargs``, ``configure``…) apply
    to the pool of each target; ``application_name`` is set to ``tether-app:<pid>`` for ``invoke target``."""

    def __init__(self, *, reader: TargetReader | None = None, **pool_options: Any) -> None:
        self._reader = reader or default_reader()
        self._options = pool_options
        self._follower: Follower[ConnectionPool[Any]] = Follower(self._reader.database_url, self._open, retire)
        self._closed = False

    @property
    def target(self) -> str:
        return self._reader.active_target()

    def pool(self) -> ConnectionPool[Any]:
        """The pool of the active target, opened on first use or when the target moved."""
        if self._closed:
            from psycopg_pool import PoolClosed

            raise PoolClosed("this TargetPool is closed")
        return self._follower.current()

    def getconn(self, timeout: float | None = None) -> tuple[Connection[Any], ConnectionPool[Any]]:
        """A connection of the active target's pool, and that pool (give the connection back to it)."""
        from psycopg_pool import PoolClosed

        while True:
            pool = self.pool()
            try:
                connection = pool.getconn(timeout)
            except PoolClosed:
                if self._closed:
                    raise
                continue  # retired while this thread waited in it: take the new target's pool
            if self._follower.is_current(pool):
                return connection, pool
            pool.putconn(connection)  # the target moved while waiting: nothing ran on it yet

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Connection[Any]]:
        """Like ``ConnectionPool.connection()``: commit on success, roll back on error, then give it back."""
        connection, pool = self.getconn(timeout)
        try:
            with connection:
                yield connection
        finally:
            pool.putconn(connection)

    def close(self) -> None:
        self._closed = True
        self._follower.close()

    def __enter__(self) -> TargetPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, url: str) -> ConnectionPool[Any]:
        from psycopg_pool import ConnectionPool

        options = dict(self._options)
        kwargs = {**(options.pop("kwargs", None) or {}), "application_name": application_name(os.getpid())}
        options.setdefault("name", f"tether-{self._reader.active_target()}")
        return ConnectionPool(url, kwargs=kwargs, open=True, **options)


def retire(pool: ConnectionPool[Any]) -> None:
    """Close ``pool``: idle connections now, connections in use as they come back (psycopg_pool does both)."""
    pool.close(timeout=RETIRE_TIMEOUT_SECONDS)
