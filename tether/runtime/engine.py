"""A SQLAlchemy engine that follows the active target (needs ``SQLAlchemy``, imported here only).

``TargetEngine.connect()``, ``.begin()`` and the sessions of ``.sessionmaker()`` check the target (one
``stat``) when they take a connection. When the target moved, a new ``Engine`` is created on it and the old
one's pool is disposed: idle connections close at once, and a connection still in use is closed when its
request gives it back (SQLAlchemy alone would put it back into the disposed pool, open on the old target).
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
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import sessionmaker as SessionMaker


class TargetEngine:
    """``create_engine`` options (``pool_size``, ``echo``, ``connect_args``…) apply to each target's engine;
    ``driver`` picks the DBAPI (``postgresql+<driver>://``), psycopg (3) by default."""

    def __init__(self, driver: str = "psycopg", *, reader: TargetReader | None = None, **engine_options: Any):
        self._reader = reader or default_reader()
        self._driver = driver
        self._options = engine_options
        self._follower: Follower[Engine] = Follower(lambda: self._reader.database_url(self._driver), self._create,
                                                    retire)

    @property
    def target(self) -> str:
        return self._reader.active_target()

    def current(self) -> Engine:
        """The engine of the active target, created on first use or when the target moved."""
        return self._follower.current()

    def connect(self) -> Connection:
        """``Engine.connect()`` on the active target (use it in a ``with`` block)."""
        while True:
            engine = self.current()
            connection = engine.connect()
            if self._follower.is_current(engine):
                return connection
            connection.close()  # the target moved while connecting: nothing ran on it yet

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """``Engine.begin()`` on the active target: one transaction, committed unless the block raises."""
        with self.connect() as connection, connection.begin():
            yield connection

    def sessionmaker(self, **options: Any) -> SessionMaker[Any]:
        """A ``sessionmaker`` whose sessions bind to the active target at the start of each transaction.

        The engine is pinned for the rest of the transaction: SQLAlchemy asks ``get_bind`` for every
        statement and would otherwise open a second connection, on the new target, in the middle of it.
        """
        from sqlalchemy import event
        from sqlalchemy.orm import Session, sessionmaker

        follower = self

        class TargetSession(Session):
            _tether_engine: Engine | None = None

            def get_bind(self, *args: Any, **kwargs: Any) -> Any:
                pinned = self._tether_engine
                if pinned is not None and self.in_transaction():
                    return pinned
                self._tether_engine = follower.current()
                return self._tether_engine

        def unpin(session: Any, transaction: Any) -> None:
            if transaction.parent is None:  # the outermost transaction ended; a savepoint's end changes nothing
                session._tether_engine = None

        event.listen(TargetSession, "after_transaction_end", unpin)
        return sessionmaker(class_=TargetSession, **options)

    def dispose(self) -> None:
        self._follower.close()

    def _create(self, url: str) -> Engine:
        from sqlalchemy import create_engine

        options = dict(self._options)
        connect_args = {**(options.pop("connect_args", None) or {}),
                        "application_name": application_name(os.getpid())}
        return create_engine(url, connect_args=connect_args, **options)


def retire(engine: Engine) -> None:
    """Close ``engine``'s idle connections now and each connection in use when it is given back."""
    from sqlalchemy import event

    pool = engine.pool
    event.listen(pool, "checkin", _close_on_checkin)  # before dispose: no return slips between the two
    pool.dispose()


def _close_on_checkin(dbapi_connection: Any, record: Any) -> None:
    record.close()
