"""The psycopg pool and SQLAlchemy engine adapters, in this process, on two real databases.

Switching is done here by writing the state file the way tether does; the real `invoke` switch with real
app processes is in test_live_switch.py. These tests hold references to the old pool and engine on purpose:
the old target's connections must close because the adapter closes them, not because Python collects them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from tests.conftest import RunningPostgres
from tether.runtime import ProductionRefused, TargetReader
from tether.runtime.contract import PRODUCTION_GUARD, TargetState, render_state
from tether.runtime.engine import TargetEngine
from tether.runtime.pool import TargetPool

from .conftest import env_text, write_project
from .test_reader import replace_file

APP_NAME = f"tether-app:{os.getpid()}"


@dataclass
class TwoTargets:
    server: RunningPostgres
    local: str  # database names
    production: str
    root: Path

    def switch(self, target: str, guard: str | None = PRODUCTION_GUARD) -> None:
        state = TargetState(target, "test", None, guard if target == "production" else None)
        replace_file(self.root / ".runtime" / "db-target.json", render_state(state))

    def connections(self, database: str) -> int:
        with psycopg.connect(self.server.admin.conninfo(), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
                               (APP_NAME, database)).fetchone()
        assert row is not None
        return int(row[0])

    def connections_once(self, database: str, expected: int, timeout: float = 10) -> int:
        """The count of ``connections(database)`` as soon as it is ``expected``; the last count after ``timeout``.

        A client that closes a connection does not wait for the server process behind it: that backend stays in
        pg_stat_activity until it has exited, a moment later on a quiet machine, longer under load. Where this is
        asked, nothing opens a connection to ``database`` any more: the count only falls, so waiting for the
        expected one cannot let a count that is too low pass.
        """
        deadline = time.monotonic() + timeout
        while (count := self.connections(database)) != expected and time.monotonic() < deadline:
            time.sleep(0.02)
        return count

    def reader(self) -> TargetReader:
        return TargetReader(self.root, {})


@pytest.fixture
def targets(pg_server: RunningPostgres, tmp_path: Path) -> Iterator[TwoTargets]:
    local, production = pg_server.create_database(), pg_server.create_database()
    root = write_project(tmp_path, render_state(TargetState("local")), env_text(local.url(), production.url()))
    yield TwoTargets(pg_server, local.database, production.database, root)
    pg_server.drop_database(local.database)
    pg_server.drop_database(production.database)


def current_database(connection: psycopg.Connection) -> str:
    row = connection.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def test_the_pool_moves_and_closes_the_old_targets_connections(targets: TwoTargets) -> None:
    with TargetPool(reader=targets.reader(), min_size=2, max_size=4) as pool:
        with pool.connection() as connection:
            assert current_database(connection) == targets.local
            application = connection.execute("SELECT current_setting('application_name')").fetchone()
            assert application == (APP_NAME,)
        old_pool = pool.pool()
        with pool.connection() as in_flight:
            targets.switch("production")
            with pool.connection() as connection:
                assert current_database(connection) == targets.production
            # The request in flight still finishes where it started.
            assert current_database(in_flight) == targets.local
            assert old_pool.closed and targets.connections_once(targets.local, 1) == 1
        assert targets.connections_once(targets.local, 0) == 0  # given back to a closed pool: closed
        assert targets.connections(targets.production) >= 1
        targets.switch("local")
        with pool.connection() as connection:
            assert current_database(connection) == targets.local
        assert targets.connections_once(targets.production, 0) == 0
    assert targets.connections_once(targets.local, 0) == 0


def test_a_request_waiting_in_the_old_pool_is_served_by_the_new_one(targets: TwoTargets) -> None:
    pool = TargetPool(reader=targets.reader(), min_size=1, max_size=1, timeout=10)
    answers: list[str] = []
    try:
        with pool.connection() as busy:
            assert current_database(busy) == targets.local

            def waiting_request() -> None:
                with pool.connection() as connection:  # waits: the only connection is busy
                    answers.append(current_database(connection))

            waiter = threading.Thread(target=waiting_request)
            waiter.start()
            waiter.join(0.3)
            assert waiter.is_alive()
            targets.switch("production")
            pool.pool()  # the next request notices the switch and closes the old pool, failing its waiters
            waiter.join(10)
        assert answers == [targets.production]
    finally:
        pool.close()


def test_the_pool_refuses_production_without_the_marker(targets: TwoTargets) -> None:
    targets.switch("production", guard=None)
    with TargetPool(reader=targets.reader()) as pool, pytest.raises(ProductionRefused), pool.connection():
        pass
    assert targets.connections(targets.production) == 0


def test_the_engine_moves_and_closes_the_old_targets_connections(targets: TwoTargets) -> None:
    engine = TargetEngine(reader=targets.reader(), pool_size=2)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_database()")).scalar_one() == targets.local
            assert connection.execute(text("SELECT current_setting('application_name')")).scalar_one() == APP_NAME
        old_engine = engine.current()
        with engine.begin() as in_flight:
            in_flight.execute(text("SELECT 1"))
            targets.switch("production")
            with engine.connect() as connection:
                assert connection.execute(text("SELECT current_database()")).scalar_one() == targets.production
            assert in_flight.execute(text("SELECT current_database()")).scalar_one() == targets.local
            assert targets.connections_once(targets.local, 1) == 1  # the idle ones are closed already
        assert old_engine is not engine.current()
        assert targets.connections_once(targets.local, 0) == 0  # given back to the disposed pool: closed
    finally:
        engine.dispose()
    assert targets.connections_once(targets.production, 0) == 0


def test_sessions_bind_to_the_target_of_their_transaction(targets: TwoTargets) -> None:
    engine = TargetEngine(reader=targets.reader())
    session_factory = engine.sessionmaker()
    try:
        with session_factory() as session:
            assert session.execute(text("SELECT current_database()")).scalar_one() == targets.local
            targets.switch("production")
            # Same transaction: same connection, same database.
            assert session.execute(text("SELECT current_database()")).scalar_one() == targets.local
            session.commit()
            assert session.execute(text("SELECT current_database()")).scalar_one() == targets.production
            session.commit()
            targets.switch("local")
            with session.begin():  # an explicit transaction binds to the target of its first statement too
                assert session.execute(text("SELECT current_database()")).scalar_one() == targets.local
                with session.begin_nested():
                    targets.switch("production")
                    assert session.execute(text("SELECT current_database()")).scalar_one() == targets.local
                assert session.execute(text("SELECT current_database()")).scalar_one() == targets.local
            assert session.execute(text("SELECT current_database()")).scalar_one() == targets.production
            session.commit()
        assert targets.connections_once(targets.local, 0) == 0
    finally:
        engine.dispose()
