"""Fixtures for the sync tests: the session's server as the source, a second server as the local destination.

The source fixture database holds every kind of object a real database has; tests that change the
source work on their own copy of it (CREATE DATABASE ... TEMPLATE, instant on the test servers).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tether.conninfo import DatabaseAddress
from tether.sync.engine import SyncOptions
from tether.sync.plan import Selection

GHOST_ROLE = "tether_sync_ghost"  # exists on the source server only
READER_ROLE = "tether_sync_reader"  # SELECT-only login role on the source
READER_PASSWORD = "reader-Pass@word:1"

FIXTURE_SQL = r"""
CREATE EXTENSION pg_trgm;
CREATE EXTENSION citext;
CREATE SCHEMA app;
CREATE SCHEMA "Mixed Schema";
COMMENT ON SCHEMA app IS 'The application';

CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.positive AS integer CHECK (VALUE > 0);
CREATE TYPE app.pair AS (a integer, b text);

CREATE TABLE app.teams (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    lead_id bigint,
    updated_at timestamptz
);
CREATE TABLE app.people (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    full_name text,
    phone text,
    birth_date date,
    bio text,
    mood app.mood NOT NULL DEFAULT 'ok',
    score app.positive,
    tags text[] NOT NULL DEFAULT '{}',
    moods app.mood[],
    pair app.pair,
    doc jsonb NOT NULL DEFAULT '{}',
    manager_id bigint REFERENCES app.people (id),
    team_id integer REFERENCES app.teams (id),
    name_length integer GENERATED ALWAYS AS (length(full_name)) STORED,
    avatar bytea,
    created_at timestamptz NOT NULL DEFAULT '2024-01-01'
);
ALTER TABLE app.teams ADD CONSTRAINT teams_lead_fkey FOREIGN KEY (lead_id) REFERENCES app.people (id)
    DEFERRABLE INITIALLY DEFERRED;
COMMENT ON TABLE app.people IS 'People; personal columns are anonymized';
COMMENT ON COLUMN app.people.email IS 'Where we write to';

CREATE INDEX people_created_at_idx ON app.people (created_at);
CREATE INDEX people_tags_idx ON app.people USING gin (tags);
CREATE INDEX people_name_trgm_idx ON app.people USING gin (full_name gin_trgm_ops);
CREATE INDEX people_top_idx ON app.people (created_at) WHERE manager_id IS NULL;
CREATE INDEX people_lower_name_idx ON app.people (lower(full_name));

CREATE TABLE app.events (
    id bigserial,
    at timestamptz NOT NULL,
    person_id bigint,
    payload jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE app.events_2023 PARTITION OF app.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE INDEX events_person_idx ON app.events (person_id);

CREATE UNLOGGED TABLE app.cache (key text, value text);
CREATE TABLE app.log_lines (line text, at timestamptz DEFAULT '2024-01-01');
CREATE INDEX log_lines_at_brin ON app.log_lines USING brin (at);

CREATE TABLE app.bookings (
    id integer PRIMARY KEY,
    room integer CONSTRAINT room_positive CHECK (room > 0),
    during tstzrange NOT NULL,
    CONSTRAINT bookings_no_overlap EXCLUDE USING gist (during WITH &&)
);

CREATE TABLE app.ledger_a (id bigint PRIMARY KEY, note text);
CREATE TABLE app.ledger_b (id bigint PRIMARY KEY REFERENCES app.ledger_a (id), note text);

CREATE TABLE "Mixed Schema"."Odd Table" ("Weird Col" integer PRIMARY KEY, "lower" text, "Sel""ect" text);

CREATE SEQUENCE app.invoice_numbers START 1000;
SELECT setval('app.invoice_numbers', 4242);

CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := '2000-01-01'; RETURN NEW; END $$;
CREATE TRIGGER teams_touch BEFORE INSERT OR UPDATE ON app.teams FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE FUNCTION app.label(p app.people) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT p.full_name $$;

CREATE VIEW app.people_emails AS SELECT id, email FROM app.people;
CREATE MATERIALIZED VIEW app.team_sizes AS
    SELECT team_id, count(*) AS members FROM app.people GROUP BY team_id;
CREATE MATERIALIZED VIEW app.odd_count AS SELECT count(*) AS n FROM "Mixed Schema"."Odd Table";

ALTER TABLE app.teams ENABLE ROW LEVEL SECURITY;
CREATE POLICY teams_reader ON app.teams FOR SELECT TO tether_sync_reader USING (true);
CREATE POLICY teams_ghost ON app.teams FOR SELECT TO tether_sync_ghost USING (id > 1);

GRANT SELECT ON app.people TO tether_sync_ghost;
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO tether_sync_ghost;

-- Rows: the triggers run now, on the source; the copy must not run them again.
INSERT INTO app.teams (name) SELECT 'team ' || g FROM generate_series(1, 5) g;
INSERT INTO app.people (email, full_name, phone, birth_date, bio, mood, score, tags, moods, pair, doc, team_id,
                        avatar, created_at)
SELECT 'Person' || g || '@Example.org', 'Person Number ' || g, '+1555' || lpad(g::text, 6, '0'),
       date '1970-01-01' + g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'bio ' || g END,
       (ARRAY['sad', 'ok', 'happy']::app.mood[])[1 + g % 3], 1 + g % 7, ARRAY['t' || g % 4, 'x'],
       ARRAY['ok', 'happy']::app.mood[], ROW(g, 'p' || g)::app.pair, jsonb_build_object('n', g),
       1 + g % 5, decode(md5(g::text), 'hex'), timestamptz '2024-01-01' + g * interval '1 hour'
FROM generate_series(1, 300) g;
UPDATE app.people SET manager_id = 1 + (id % 10) WHERE id > 10;
UPDATE app.teams SET lead_id = id;
INSERT INTO app.events (at, person_id, payload)
SELECT timestamptz '2023-06-01' + g * interval '1 day', 1 + g % 300, jsonb_build_object('g', g)
FROM generate_series(1, 400) g;
INSERT INTO app.cache SELECT 'k' || g, 'v' || g FROM generate_series(1, 50) g;
INSERT INTO app.log_lines (line) SELECT 'line ' || g FROM generate_series(1, 100) g;
INSERT INTO app.log_lines (line) SELECT 'line ' || g FROM generate_series(1, 3) g;  -- duplicates: no key
INSERT INTO app.bookings SELECT g, 1 + g % 3,
       tstzrange(timestamptz '2024-01-01' + g * interval '1 day', timestamptz '2024-01-01' + (g + 1) * interval '1 day')
FROM generate_series(1, 30) g;
INSERT INTO app.ledger_a SELECT g, 'a' FROM generate_series(1, 2000) g;
INSERT INTO app.ledger_b SELECT g, 'b' FROM generate_series(1, 2000) g;
INSERT INTO "Mixed Schema"."Odd Table" SELECT g, 'L' || g, 'S' || g FROM generate_series(1, 20) g;
REFRESH MATERIALIZED VIEW app.team_sizes;
REFRESH MATERIALIZED VIEW app.odd_count;
"""

RULES_YAML = """
tables:
  app.people:
    email: fake_email
    full_name: fake_name
    phone: {mask: {keep_first: 2, keep_last: 2}}
    birth_date: {random_date: {from: 1950-01-01, to: 1999-12-31}}
    bio: {fixed: "redacted"}
    avatar: null
"""


def execute(address: DatabaseAddress, statement: str, params: tuple[object, ...] | None = None) -> list[tuple]:
    with psycopg.connect(address.conninfo(), autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def ensure_role(admin: DatabaseAddress, name: str, login_password: str | None = None) -> None:
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            return
        if login_password:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name),
                                                                           sql.Literal(login_password)))
        else:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))


@dataclass
class SyncServers:
    source_admin: DatabaseAddress  # superuser on the source server, database postgres
    dest_admin: DatabaseAddress  # superuser on the local server, database postgres
    fixture: str  # the pristine fixture database on the source (a template: never change it)

    def source_copy(self) -> DatabaseAddress:
        """A private copy of the fixture database that a test may change."""
        name = f"src_{uuid.uuid4().hex[:10]}"
        execute(self.source_admin, f'CREATE DATABASE "{name}" TEMPLATE "{self.fixture}"')
        return self.source_admin.with_database(name)

    def dest(self, name: str | None = None) -> DatabaseAddress:
        return self.dest_admin.with_database(name or f"dev_{uuid.uuid4().hex[:8]}")

    def reader(self, source: DatabaseAddress) -> DatabaseAddress:
        return source.with_credentials(READER_ROLE, READER_PASSWORD)


@pytest.fixture(scope="session")
def sync_servers(pg_server, pg_server_factory) -> Iterator[SyncServers]:
    source_admin = pg_server.admin
    dest_server = pg_server_factory()
    ensure_role(source_admin, GHOST_ROLE)
    ensure_role(source_admin, READER_ROLE, READER_PASSWORD)
    fixture = f"sync_fixture_{uuid.uuid4().hex[:6]}"
    execute(source_admin, f'CREATE DATABASE "{fixture}"')
    address = source_admin.with_database(fixture)
    with psycopg.connect(address.conninfo(), autocommit=True) as conn:
        conn.execute(FIXTURE_SQL)
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(fixture),
                                                                         sql.Identifier(READER_ROLE)))
        conn.execute(sql.SQL('GRANT USAGE ON SCHEMA app, "Mixed Schema" TO {}').format(sql.Identifier(READER_ROLE)))
        conn.execute(sql.SQL('GRANT SELECT ON ALL TABLES IN SCHEMA app, "Mixed Schema" TO {}').format(
            sql.Identifier(READER_ROLE)))
    execute(source_admin, f'ALTER DATABASE "{fixture}" IS_TEMPLATE true')
    yield SyncServers(source_admin, dest_server.admin, fixture)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML)
    return path


@pytest.fixture
def sync_options(isolated_project: Path, rules_file: Path) -> Callable[..., SyncOptions]:
    """SyncOptions for tests: confirmed, dropping replaced copies at once, with the fixture's rules."""

    def make(**changes: object) -> SyncOptions:
        values: dict[str, object] = {"yes": True, "drop_retired": "now", "rules_path": rules_file, "jobs": 2}
        values.update(changes)
        if "selection" not in values:
            values["selection"] = Selection()
        return SyncOptions(**values)  # type: ignore[arg-type]

    return make


def table_digest(address: DatabaseAddress, table: str, columns: str = "*") -> tuple[int, str]:
    """(rows, md5 of every row's text in order): equal digests mean equal contents."""
    query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) "
                    "FROM (SELECT {} FROM ONLY {}) r").format(sql.SQL(columns), sql.SQL(table))
    with psycopg.connect(address.conninfo()) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0], row[1]


def database_names(admin: DatabaseAddress, prefix: str) -> list[str]:
    rows = execute(admin, "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (prefix + "%",))
    return [row[0] for row in rows]
