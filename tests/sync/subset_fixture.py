"""A source shaped for subsets, and the checks every subset test runs on the copy.

The schema holds what makes closures hard: a self-referencing tree, a two-table reference cycle, composite
and multi-column keys (one to a UNIQUE key, not the primary key), nullable parts of a key, partitioned tables
referencing partitioned tables (with a sub-partition), a table without any key, a small lookup table, a small
table nothing references and a large one nothing reaches. Every row is made by generate_series, so the data is
the same at every run.
"""

from __future__ import annotations

from psycopg import sql

from benchmarks.subset_check import count_problems, foreign_key_problems
from tether.conninfo import DatabaseAddress

from .conftest import execute

SUBSET_SQL = r"""
CREATE SCHEMA shop;
CREATE TABLE shop.countries (code text PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.categories (id integer PRIMARY KEY, parent_id integer REFERENCES shop.categories, name text);
CREATE TABLE shop.customers (
    id bigint PRIMARY KEY,
    email text NOT NULL UNIQUE,
    full_name text,
    country text REFERENCES shop.countries,
    referred_by bigint REFERENCES shop.customers,
    created_at timestamptz NOT NULL
);
-- A two-table cycle: a department's manager is an employee, an employee belongs to a department.
CREATE TABLE shop.departments (id integer PRIMARY KEY, name text, manager_id integer);
CREATE TABLE shop.employees (id integer PRIMARY KEY, department_id integer REFERENCES shop.departments, name text);
ALTER TABLE shop.departments ADD CONSTRAINT departments_manager_fkey FOREIGN KEY (manager_id)
    REFERENCES shop.employees DEFERRABLE INITIALLY DEFERRED;
-- Composite keys.
CREATE TABLE shop.warehouses (region text, code integer, name text, PRIMARY KEY (region, code));
CREATE TABLE shop.products (
    id integer PRIMARY KEY,
    category_id integer NOT NULL REFERENCES shop.categories,
    region text,
    warehouse_code integer,
    handled_by integer REFERENCES shop.employees,
    name text,
    FOREIGN KEY (region, warehouse_code) REFERENCES shop.warehouses
);
CREATE TABLE shop.price_lists (id integer PRIMARY KEY, currency text NOT NULL, version integer NOT NULL,
                               UNIQUE (currency, version));
-- No key at all, and a multi-column reference to a UNIQUE key whose parts may be NULL.
CREATE TABLE shop.prices (product_id integer REFERENCES shop.products, currency text, version integer,
                          amount numeric,
                          FOREIGN KEY (currency, version) REFERENCES shop.price_lists (currency, version));
-- Partitioned tables referencing partitioned tables, one partition itself partitioned.
CREATE TABLE shop.orders (
    id bigint, placed_on date, customer_id bigint NOT NULL REFERENCES shop.customers, status text,
    PRIMARY KEY (id, placed_on)
) PARTITION BY RANGE (placed_on);
CREATE TABLE shop.orders_2023 PARTITION OF shop.orders FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE shop.orders_2024 PARTITION OF shop.orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
    PARTITION BY HASH (id);
CREATE TABLE shop.orders_2024_a PARTITION OF shop.orders_2024 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE shop.orders_2024_b PARTITION OF shop.orders_2024 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE shop.order_lines (
    order_id bigint, placed_on date, line integer, product_id integer NOT NULL REFERENCES shop.products,
    quantity integer,
    PRIMARY KEY (order_id, placed_on, line),
    FOREIGN KEY (order_id, placed_on) REFERENCES shop.orders
) PARTITION BY RANGE (placed_on);
CREATE TABLE shop.order_lines_2023 PARTITION OF shop.order_lines FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE shop.order_lines_2024 PARTITION OF shop.order_lines FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE shop.reviews (id integer PRIMARY KEY, customer_id bigint NOT NULL REFERENCES shop.customers,
                           product_id integer NOT NULL REFERENCES shop.products, body text);
CREATE TABLE shop.review_votes (review_id integer REFERENCES shop.reviews, voter_id bigint REFERENCES shop.customers,
                                PRIMARY KEY (review_id, voter_id));
CREATE TABLE shop.settings (key text PRIMARY KEY, value text);
CREATE TABLE shop.audit_log (id bigint PRIMARY KEY, at timestamptz NOT NULL, payload text);

INSERT INTO shop.countries SELECT 'C' || g, 'Country ' || g FROM generate_series(1, 20) g;
-- A tree four levels deep: 1..5 roots, each next level points at the level above.
INSERT INTO shop.categories SELECT g, CASE WHEN g > 5 THEN (g - 1) / 5 END, 'cat ' || g FROM generate_series(1, 155) g;
INSERT INTO shop.customers
SELECT g, 'customer' || g || '@example.org', 'Customer Number ' || g, 'C' || (1 + g % 20),
       CASE WHEN g > 10 AND g % 4 = 0 THEN g - 7 END, timestamptz '2024-01-01' + g * interval '1 hour'
FROM generate_series(1, 600) g;
INSERT INTO shop.departments SELECT g, 'dept ' || g FROM generate_series(1, 12) g;
INSERT INTO shop.employees SELECT g, 1 + g % 12, 'employee ' || g FROM generate_series(1, 60) g;
UPDATE shop.departments SET manager_id = id * 5;  -- employee id*5 is in department 1 + (id*5) % 12
INSERT INTO shop.warehouses SELECT r, c, r || '-' || c FROM unnest(ARRAY['eu', 'us', 'ap']) r,
       generate_series(1, 8) c;
INSERT INTO shop.products
SELECT g, 6 + g % 150, CASE WHEN g % 10 <> 0 THEN (ARRAY['eu', 'us', 'ap'])[1 + g % 3] END, 1 + g % 8,
       CASE WHEN g % 3 = 0 THEN 1 + g % 60 END, 'product ' || g
FROM generate_series(1, 400) g;
INSERT INTO shop.price_lists SELECT g, (ARRAY['EUR', 'USD'])[1 + g % 2], g FROM generate_series(1, 10) g;
INSERT INTO shop.prices
SELECT 1 + g % 400, CASE WHEN g % 5 <> 0 THEN (ARRAY['EUR', 'USD'])[1 + (1 + g % 10) % 2] END, 1 + g % 10, g
FROM generate_series(1, 800) g;
INSERT INTO shop.orders
SELECT g, date '2023-06-01' + (g % 400), 1 + (g * 7) % 600, (ARRAY['new', 'paid', 'sent'])[1 + g % 3]
FROM generate_series(1, 3000) g;
INSERT INTO shop.order_lines
SELECT o.id, o.placed_on, l, 1 + (o.id * l) % 400, l FROM shop.orders o, generate_series(1, 3) l;
INSERT INTO shop.reviews SELECT g, 1 + (g * 13) % 600, 1 + g % 400, 'review ' || g FROM generate_series(1, 900) g;
INSERT INTO shop.review_votes SELECT r, 1 + (r * v * 17) % 600 FROM generate_series(1, 900) r, generate_series(1, 2) v
ON CONFLICT DO NOTHING;
INSERT INTO shop.settings SELECT 'key' || g, 'value' || g FROM generate_series(1, 10) g;
INSERT INTO shop.audit_log SELECT g, timestamptz '2024-01-01' + g * interval '1 minute', repeat('x', 200)
FROM generate_series(1, 20000) g;
ANALYZE;
"""

SUBSET_RULES = """
tables:
  shop.customers:
    email: fake_email
    full_name: fake_name
  shop.employees:
    name: fake_name
"""


def create_source(admin: DatabaseAddress, name: str, reader: str) -> DatabaseAddress:
    """The subset source database (a template the tests copy), readable by the SELECT-only ``reader`` role."""
    execute(admin, f'CREATE DATABASE "{name}"')
    address = admin.with_database(name)
    execute(address, SUBSET_SQL)
    execute(address, sql.SQL("GRANT CONNECT ON DATABASE {} TO {}; GRANT USAGE ON SCHEMA shop TO {}; "
                             "GRANT SELECT ON ALL TABLES IN SCHEMA shop TO {}").format(
        sql.Identifier(name), sql.Identifier(reader), sql.Identifier(reader), sql.Identifier(reader)).as_string())
    return address


def foreign_key_violations(address: DatabaseAddress) -> list[str]:
    """Every foreign key of the database checked again by an anti-join, and any not marked valid."""
    return foreign_key_problems(address)


def counts_match_plan(address: DatabaseAddress, subset: dict) -> list[str]:
    return count_problems(address, subset)


def check_copy(address: DatabaseAddress, subset: dict) -> None:
    """What every subset test asserts: every foreign key holds, and each table has the plan's rows."""
    assert foreign_key_violations(address) == []
    assert counts_match_plan(address, subset) == []
    assert execute(address, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated") == [(0,)]


def ids(address: DatabaseAddress, table: str, column: str = "id") -> set:
    """The values of ``column`` in ``table`` (a table name, possibly followed by WHERE ...: test constants)."""
    return {row[0] for row in execute(address, f"SELECT {column} FROM {table}")}  # noqa: S608
