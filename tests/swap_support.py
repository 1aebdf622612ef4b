"""Databases that carry a marker, so a test can tell which copy ended up under which name."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tests.conftest import wait_for_sessions_to_end


def make_marked(admin, name, marker):
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(admin.with_database(name).conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (value text)")
        conn.execute("INSERT INTO marker VALUES (%s)", (marker,))
    # Gone before the test goes on: a swap would count this session among those it disconnected.
    wait_for_sessions_to_end(admin, name)


def marker_of(admin, name):
    with psycopg.connect(admin.with_database(name).conninfo()) as conn:
        return conn.execute("SELECT value FROM marker").fetchone()[0]
