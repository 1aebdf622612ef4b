"""The fixtures start real servers that answer."""

import psycopg

from tether.redis_client import ping


def test_postgres_fixture_answers(pg_db):
    with psycopg.connect(pg_db.conninfo()) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == pg_db.database


def test_redis_fixture_requires_password(redis_server):
    assert ping(redis_server.address) == "PONG"
