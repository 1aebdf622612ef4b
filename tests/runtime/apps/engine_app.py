"""A long-running app on tether.runtime.engine.TargetEngine (SQLAlchemy), for the hot-swap tests.

Quick queries use ``engine.connect()``; the long ones go through an ORM ``Session`` from ``sessionmaker()``.
"""

from __future__ import annotations

from typing import Any

from app_loop import run
from sqlalchemy import text

from tether.runtime.engine import TargetEngine

engine = TargetEngine(pool_size=3, max_overflow=2)
Session = engine.sessionmaker()


def quick(sql: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar_one()


def long(sql: str) -> Any:
    with Session() as session, session.begin():
        return session.execute(text(sql)).scalar_one()


run(quick, long)
engine.dispose()
