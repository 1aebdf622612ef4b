"""Databases that carry a marker, so a test can tell which copy ended up under which name."""

from __future__ import annotations

import psycopg
from psycopg import sql


def make_marked(admin, name, marker):
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(admin.with_database(name).conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (value text)")
        conn.execute("INSERT INTO marker VALUES (%s)", (marker,))


def marker_of(admin, name):
    with psycopg.connect(admin.with_database(name).conninfo()) as conn:
        return conn.execute("SELECT value FROM marker").fetchone()[0]
