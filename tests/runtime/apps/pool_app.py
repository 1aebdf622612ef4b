"""A long-running app on tether.runtime.pool.TargetPool (psycopg_pool), for the hot-swap tests."""

from __future__ import annotations

from typing import Any

from app_loop import run

from tether.runtime.pool import TargetPool

pool = TargetPool(min_size=2, max_size=6, timeout=5)


def query(sql: str) -> Any:
    with pool.connection() as connection:
        row = connection.execute(sql).fetchone()
        assert row is not None
        return row[0]


run(query, query)
pool.close()
