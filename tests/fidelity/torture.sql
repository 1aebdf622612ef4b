-- A database holding every kind of object the catalogs allow, for comparing a copy with pg_dump | psql.
-- Roles (created by the fixture): torture_owner and torture_member exist on both servers, torture_ghost only
-- on the source. :seclabels is 'on' when the servers load the test label provider (tether_test_seclabel).

CREATE EXTENSION pg_trgm;
CREATE EXTENSION citext;
CREATE EXTENSION hstore WITH SCHEMA public;
CREATE EXTENSION postgres_fdw;
COMMENT ON EXTENSION hstore IS 'key/value pairs';

CREATE SCHEMA app AUTHORIZATION torture_owner;
CREATE SCHEMA "Odd ""Schema""";
CREATE SCHEMA ghostly AUTHORIZATION torture_ghost;
COMMENT ON SCHEMA app IS 'the application';
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA app TO torture_member, torture_ghost;

-- Database settings (ALTER DATABASE / ROLE ... IN DATABASE ... SET) belong to each database, not to its
-- template: the fixture gives every copy of this database its own (see conftest.py).

SET ROLE torture_owner;

-- Types, including ones without binary I/O and containers of them.
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.positive AS integer CHECK (VALUE > 0);
ALTER DOMAIN app.positive ADD CONSTRAINT small CHECK (VALUE < 1000000);
COMMENT ON DOMAIN app.positive IS 'a positive integer';
COMMENT ON CONSTRAINT small ON DOMAIN app.positive IS 'not too big';
CREATE TYPE app.pair AS (a integer, b text);
COMMENT ON TYPE app.pair IS 'a composite';
CREATE DOMAIN app.acl_domain AS aclitem;
CREATE TYPE app.with_acl AS (who aclitem, note text);
CREATE TYPE app.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi,
                                    multirange_type_name = app.floatmultirange);
RESET ROLE;

CREATE TABLE app.tab_core_types (
    id integer PRIMARY KEY,
    acl aclitem,
    acls aclitem[],
    acl_dom app.acl_domain,
    acl_pair app.with_acl,
    gts gtsvector,
    rel regclass,
    typ regtype,
    proc regproc,
    nsp regnamespace,
    rol regrole,
    cfg regconfig,
    pair app.pair,
    pairs app.pair[],
    mood app.mood,
    moods app.mood[],
    fr app.floatrange,
    frm app.floatmultirange,
    kv hstore,
    ci citext,
    doc jsonb,
    ts tsvector,
    pt point,
    money_col money,
    bits bit varying(12),
    ip inet,
    mac macaddr8,
    lsn pg_lsn,
    snap pg_snapshot,
    iv interval,
    b bytea
);
ALTER TABLE app.tab_core_types OWNER TO torture_owner;

SET ROLE torture_owner;
CREATE FUNCTION app.twice(integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
COMMENT ON FUNCTION app.twice(integer) IS 'doubles';
REVOKE EXECUTE ON FUNCTION app.twice(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.twice(integer) TO torture_member, torture_ghost;
CREATE PROCEDURE app.noop() LANGUAGE sql AS 'SELECT 1';
CREATE AGGREGATE app.product(integer) (sfunc = int4mul, stype = integer, initcond = '1');
CREATE FUNCTION app.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.touched := coalesce(NEW.touched, 0) + 1; RETURN NEW; END $$;
RESET ROLE;

INSERT INTO app.tab_core_types
SELECT g, 'torture_member=r/torture_owner'::aclitem, ARRAY['torture_owner=arwdDxt/torture_owner'::aclitem],
       'torture_member=w/torture_owner', ROW('torture_member=r/torture_owner', 'n' || g)::app.with_acl, NULL,
       'app.tab_core_types'::regclass, 'app.pair'::regtype, 'app.twice'::regproc, 'app'::regnamespace,
       'torture_owner'::regrole, 'english'::regconfig, ROW(g, 'p' || g)::app.pair,
       ARRAY[ROW(g, 'x')::app.pair, ROW(g + 1, NULL)::app.pair], 'ok', '{sad,happy}', '[1.5,2.5)',
       '{[1,2),[3,4)}', 'a=>1, b=>NULL', 'MiXeD ' || g, jsonb_build_object('g', g, 'nested', jsonb_build_array(1, 'x')),
       to_tsvector('english', 'the quick brown fox ' || g), point(g, -g), g * 1.25, B'1011', ('10.1.2.' || g || '/32')::inet,
       '08:00:2b:01:02:03:04:05', ('0/' || to_hex(g * 4096))::pg_lsn, '10:20:10,14,15', make_interval(days => g),
       decode(repeat(to_hex(g % 16), 8), 'hex')
FROM generate_series(1, 40) g;

-- Tables with no columns, which still hold rows; and one whose only column was dropped.
CREATE TABLE app.nothing ();
INSERT INTO app.nothing SELECT FROM generate_series(1, 3);
CREATE TABLE app.dropped_all (gone integer);
INSERT INTO app.dropped_all SELECT generate_series(1, 5);
ALTER TABLE app.dropped_all DROP COLUMN gone;
CREATE TABLE app.only_generated (answer integer GENERATED ALWAYS AS (42) STORED);
INSERT INTO app.only_generated SELECT FROM generate_series(1, 4);

-- Inheritance with dropped and reordered columns.
CREATE TABLE app.animal (id integer PRIMARY KEY, junk text, name text NOT NULL, legs integer);
ALTER TABLE app.animal DROP COLUMN junk;
CREATE TABLE app.dog (good boolean DEFAULT true, legs integer, name text NOT NULL, id integer NOT NULL);
ALTER TABLE app.dog INHERIT app.animal;
CREATE TABLE app.bird (wings integer) INHERITS (app.animal);
INSERT INTO app.animal VALUES (1, 'generic', 4);
INSERT INTO app.dog VALUES (true, 4, 'rex', 2), (false, 3, 'tripod', 3);
INSERT INTO app.bird (id, name, legs, wings) VALUES (4, 'tweety', 2, 2);
COMMENT ON COLUMN app.dog.good IS 'always';

-- Partitioned tables with foreign keys both ways, a default partition and sub-partitions.
CREATE TABLE app.accounts (id integer PRIMARY KEY, label text, touched integer);
INSERT INTO app.accounts SELECT g, 'acct ' || g FROM generate_series(1, 20) g;
CREATE TABLE app.events (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    account_id integer NOT NULL REFERENCES app.accounts (id) ON DELETE CASCADE,
    at date NOT NULL,
    kind text,
    payload jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE app.events_2023 PARTITION OF app.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
    PARTITION BY RANGE (at);
CREATE TABLE app.events_2024_h1 PARTITION OF app.events_2024 FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE app.events_2024_rest PARTITION OF app.events_2024 DEFAULT;
CREATE TABLE app.events_other PARTITION OF app.events DEFAULT;
INSERT INTO app.events (account_id, at, kind, payload)
SELECT 1 + g % 20, date '2023-06-01' + g * 3, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, jsonb_build_object('g', g)
FROM generate_series(1, 300) g;
CREATE TABLE app.event_notes (event_id bigint, event_at date, note text,
    FOREIGN KEY (event_id, event_at) REFERENCES app.events (id, at));
INSERT INTO app.event_notes SELECT id, at, 'note' FROM app.events WHERE id % 10 = 0;
CREATE INDEX events_kind_idx ON app.events (kind);
COMMENT ON INDEX app.events_kind_idx IS 'by kind';

-- Every index kind, constraints of every kind, statistics objects, rules, triggers in each state.
CREATE TABLE app.things (
    id serial PRIMARY KEY,
    code text NOT NULL UNIQUE,
    during tsrange,
    tags text[],
    doc jsonb,
    body text,
    pos point,
    touched integer,
    qty integer CHECK (qty >= 0),
    EXCLUDE USING gist (during WITH &&)
);
ALTER TABLE app.things ADD CONSTRAINT qty_not_valid CHECK (qty < 100000) NOT VALID;
COMMENT ON CONSTRAINT qty_not_valid ON app.things IS 'checked later';
CREATE INDEX things_tags_gin ON app.things USING gin (tags);
CREATE INDEX things_body_trgm ON app.things USING gist (body gist_trgm_ops);
CREATE INDEX things_pos_spgist ON app.things USING spgist (pos);
CREATE INDEX things_id_brin ON app.things USING brin (id);
CREATE INDEX things_code_hash ON app.things USING hash (code);
CREATE INDEX things_lower_partial ON app.things (lower(body)) WHERE qty > 3;
CREATE INDEX things_cover ON app.things (code) INCLUDE (qty);
ALTER TABLE app.things CLUSTER ON things_cover;
INSERT INTO app.things (code, during, tags, doc, body, pos, qty)
SELECT 'c' || g, tsrange(timestamp '2024-01-01' + g * interval '1 day', timestamp '2024-01-01' + (g + 1) * interval '1 day'),
       ARRAY['t' || g % 5, 'all'], jsonb_build_object('g', g), 'body of thing ' || g, point(g, g), g
FROM generate_series(1, 200) g;
CREATE STATISTICS app.things_stats (dependencies, ndistinct) ON code, qty FROM app.things;
COMMENT ON STATISTICS app.things_stats IS 'extended statistics';
CREATE TRIGGER things_stamp BEFORE INSERT OR UPDATE ON app.things FOR EACH ROW EXECUTE FUNCTION app.stamp();
CREATE TRIGGER things_stamp_replica BEFORE INSERT OR UPDATE ON app.things FOR EACH ROW EXECUTE FUNCTION app.stamp();
CREATE TRIGGER things_stamp_always BEFORE INSERT OR UPDATE ON app.things FOR EACH ROW EXECUTE FUNCTION app.stamp();
CREATE TRIGGER things_stamp_off BEFORE UPDATE ON app.things FOR EACH ROW EXECUTE FUNCTION app.stamp();
ALTER TABLE app.things ENABLE REPLICA TRIGGER things_stamp_replica;
ALTER TABLE app.things ENABLE ALWAYS TRIGGER things_stamp_always;
ALTER TABLE app.things DISABLE TRIGGER things_stamp_off;
COMMENT ON TRIGGER things_stamp ON app.things IS 'counts touches';
CREATE TABLE app.things_log (thing_id integer, at timestamptz DEFAULT '2024-01-01');
CREATE RULE things_log_delete AS ON DELETE TO app.things DO ALSO INSERT INTO app.things_log (thing_id) VALUES (OLD.id);
COMMENT ON RULE things_log_delete ON app.things IS 'an audit rule';
ALTER TABLE app.things REPLICA IDENTITY USING INDEX things_code_key;
ALTER TABLE app.things ALTER COLUMN body SET STATISTICS 500;
ALTER TABLE app.things ALTER COLUMN doc SET STORAGE EXTERNAL;  -- (not body: PostgreSQL 15.18 crashes updating a gist_trgm index on an EXTERNAL column)
ALTER TABLE app.things SET (fillfactor = 80, autovacuum_enabled = false);

-- Self-referencing and circular foreign keys, deferrable.
CREATE TABLE app.nodes (id integer PRIMARY KEY, parent integer REFERENCES app.nodes (id));
INSERT INTO app.nodes VALUES (1, NULL), (2, 1), (3, 2);
CREATE TABLE app.chicken (id integer PRIMARY KEY, egg integer);
CREATE TABLE app.egg (id integer PRIMARY KEY, chicken integer REFERENCES app.chicken (id) DEFERRABLE INITIALLY DEFERRED);
ALTER TABLE app.chicken ADD FOREIGN KEY (egg) REFERENCES app.egg (id) DEFERRABLE INITIALLY DEFERRED;
BEGIN; INSERT INTO app.chicken VALUES (1, 1); INSERT INTO app.egg VALUES (1, 1); COMMIT;

-- Views, materialized views (populated, stale, and never populated), with owners and grants.
CREATE VIEW app.thing_codes WITH (security_barrier) AS SELECT id, code FROM app.things WHERE qty > 10;
COMMENT ON VIEW app.thing_codes IS 'a view';
CREATE MATERIALIZED VIEW app.thing_totals AS SELECT count(*) AS things, sum(qty) AS qty FROM app.things;
CREATE MATERIALIZED VIEW app.stale_totals AS SELECT count(*) AS things FROM app.things;
INSERT INTO app.things (code, qty) VALUES ('late', 1);  -- stale_totals no longer matches
CREATE MATERIALIZED VIEW app.never_filled AS SELECT id FROM app.things WITH NO DATA;
CREATE UNIQUE INDEX thing_totals_idx ON app.thing_totals (things);
COMMENT ON MATERIALIZED VIEW app.stale_totals IS 'stale on purpose';
ALTER VIEW app.thing_codes OWNER TO torture_owner;
ALTER MATERIALIZED VIEW app.thing_totals OWNER TO torture_owner;
ALTER MATERIALIZED VIEW app.stale_totals OWNER TO torture_ghost;
GRANT SELECT ON app.things TO torture_owner;  -- a refresh runs as the view's owner

-- Sequences: standalone with options, owned by a column, identity; with privileges.
CREATE SEQUENCE app.invoice_no AS integer START 1000 INCREMENT 7 MAXVALUE 900000 CACHE 3 CYCLE;
SELECT nextval('app.invoice_no') FROM generate_series(1, 5);
COMMENT ON SEQUENCE app.invoice_no IS 'invoice numbers';
GRANT USAGE ON SEQUENCE app.invoice_no TO torture_member;

-- Row-level security with policies for existing and missing roles, forced; comments on policies.
CREATE TABLE app.secrets (id integer PRIMARY KEY, owner_name text, secret text);
INSERT INTO app.secrets SELECT g, 'o' || g, 's' || g FROM generate_series(1, 10) g;
ALTER TABLE app.secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY secrets_member ON app.secrets FOR SELECT TO torture_member USING (owner_name = current_user);
CREATE POLICY secrets_ghost ON app.secrets AS RESTRICTIVE TO torture_ghost USING (false);
CREATE POLICY secrets_all ON app.secrets USING (true) WITH CHECK (id > 0);
COMMENT ON POLICY secrets_member ON app.secrets IS 'members see their own';
COMMENT ON POLICY secrets_ghost ON app.secrets IS 'the ghost sees nothing';

-- Ownership and privileges: an owner missing on the destination, pg_database_owner, column grants, revokes.
CREATE TABLE app.ghost_owned (id integer, v text);
INSERT INTO app.ghost_owned VALUES (1, 'boo');
ALTER TABLE app.ghost_owned OWNER TO torture_ghost;
GRANT SELECT ON app.ghost_owned TO torture_member;
CREATE TABLE public.datdba_only (id integer);
ALTER TABLE public.datdba_only OWNER TO pg_database_owner;
REVOKE DELETE ON public.datdba_only FROM pg_database_owner;
CREATE TABLE app.column_grants (id integer, visible text, hidden text);
ALTER TABLE app.column_grants OWNER TO torture_owner;
GRANT SELECT (id, visible) ON app.column_grants TO torture_member;
GRANT UPDATE (visible) ON app.column_grants TO torture_ghost;
REVOKE ALL ON app.column_grants FROM torture_owner;
GRANT SELECT ON app.column_grants TO torture_owner;
GRANT SELECT ON app.accounts TO torture_member WITH GRANT OPTION;
SET ROLE torture_member;
GRANT SELECT ON app.accounts TO torture_ghost;
RESET ROLE;
ALTER DEFAULT PRIVILEGES FOR ROLE torture_owner IN SCHEMA app GRANT SELECT ON TABLES TO torture_member;
ALTER DEFAULT PRIVILEGES FOR ROLE torture_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE torture_ghost GRANT SELECT ON TABLES TO torture_member;
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT USAGE ON SEQUENCES TO torture_member;

-- Unlogged, and odd names.
CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v text);
INSERT INTO app.cache VALUES ('a', '1'), ('b', '2');
CREATE TABLE "Odd ""Schema"""."Odd ""Table""" ("Col ""1""" integer, "select" text);
INSERT INTO "Odd ""Schema"""."Odd ""Table""" VALUES (1, 'x'), (2, NULL);

-- Collations, text search, casts, operators, operator classes, conversions.
CREATE COLLATION app.fr_ci (provider = icu, locale = 'fr-FR-u-ks-level2', deterministic = false);
COMMENT ON COLLATION app.fr_ci IS 'case-insensitive French';
CREATE TABLE app.words (w text COLLATE app.fr_ci);
INSERT INTO app.words VALUES ('Été'), ('ete');
CREATE TEXT SEARCH CONFIGURATION app.simple_fr (COPY = pg_catalog.french);
COMMENT ON TEXT SEARCH CONFIGURATION app.simple_fr IS 'french';
CREATE TEXT SEARCH DICTIONARY app.stem (TEMPLATE = snowball, LANGUAGE = english);
CREATE FUNCTION app.pair_eq(app.pair, app.pair) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1.a = $2.a';
CREATE OPERATOR app.=== (LEFTARG = app.pair, RIGHTARG = app.pair, FUNCTION = app.pair_eq, COMMUTATOR = OPERATOR(app.===));
COMMENT ON OPERATOR app.=== (app.pair, app.pair) IS 'same a';
CREATE FUNCTION app.mood_text(app.mood) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT $1::text';
CREATE CAST (app.mood AS text) WITH FUNCTION app.mood_text(app.mood);
CREATE OPERATOR CLASS app.int4_desc_ops FOR TYPE integer USING btree AS
    OPERATOR 1 >, OPERATOR 3 =, OPERATOR 5 <, FUNCTION 1 btint4cmp(integer, integer);

-- A foreign server, user mappings and a foreign table (its rows are not copied, as with pg_dump).
CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db.invalid', dbname 'x');
COMMENT ON SERVER elsewhere IS 'nowhere';
CREATE USER MAPPING FOR torture_owner SERVER elsewhere OPTIONS (user 'remote');
CREATE FOREIGN TABLE app.remote_things (id integer, code text) SERVER elsewhere OPTIONS (table_name 'things');
GRANT SELECT ON app.remote_things TO torture_member;

-- Event triggers in each enabled state, with comments.
CREATE FUNCTION app.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
CREATE EVENT TRIGGER et_origin ON ddl_command_end EXECUTE FUNCTION app.log_ddl();
CREATE EVENT TRIGGER et_disabled ON ddl_command_start EXECUTE FUNCTION app.log_ddl();
CREATE EVENT TRIGGER et_replica ON sql_drop EXECUTE FUNCTION app.log_ddl();
CREATE EVENT TRIGGER et_always ON table_rewrite WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION app.log_ddl();
ALTER EVENT TRIGGER et_disabled DISABLE;
ALTER EVENT TRIGGER et_replica ENABLE REPLICA;
ALTER EVENT TRIGGER et_always ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER et_origin IS 'logs DDL';
COMMENT ON EVENT TRIGGER et_always IS 'always on';

-- Publications of every kind.
CREATE PUBLICATION pub_all FOR ALL TABLES;
CREATE PUBLICATION pub_some FOR TABLE app.things (id, code) WHERE (qty > 5), app.accounts WITH (publish = 'insert');
CREATE PUBLICATION pub_schema FOR TABLES IN SCHEMA app;
COMMENT ON PUBLICATION pub_some IS 'some things';
ALTER PUBLICATION pub_some OWNER TO torture_owner;
-- (A subscription, like the database's settings, belongs to one database, not to its template: see conftest.py.)

-- Large objects: owned by an existing and a missing role, with privileges and comments, one empty.
SELECT lo_from_bytea(424201, convert_to('hello large object', 'UTF8'));
SELECT lo_from_bytea(424202, decode(repeat('00ff', 40000), 'hex'));
SELECT lo_create(424203);
ALTER LARGE OBJECT 424201 OWNER TO torture_owner;
ALTER LARGE OBJECT 424202 OWNER TO torture_ghost;
GRANT SELECT ON LARGE OBJECT 424201 TO torture_member;
COMMENT ON LARGE OBJECT 424201 IS 'a greeting';
CREATE TABLE app.documents (id integer PRIMARY KEY, blob oid);
INSERT INTO app.documents VALUES (1, 424201), (2, 424202);

-- A table with an extension-configuration-like trigger-free setup: hstore values and a citext key.
CREATE TABLE app.settings (name citext PRIMARY KEY, value hstore);
INSERT INTO app.settings VALUES ('Theme', 'color=>blue'), ('theme2', NULL);

-- Security labels on many kinds of objects (only when the servers load the test provider).
\if :seclabels
SECURITY LABEL FOR tether_test ON SCHEMA app IS 'schema-label';
SECURITY LABEL FOR tether_test ON TABLE app.things IS 'table-label';
SECURITY LABEL FOR tether_test ON COLUMN app.things.code IS 'column-label';
SECURITY LABEL FOR tether_test ON FUNCTION app.twice(integer) IS 'function-label';
SECURITY LABEL FOR tether_test ON TYPE app.mood IS 'type-label';
SECURITY LABEL FOR tether_test ON DOMAIN app.positive IS 'domain-label';
SECURITY LABEL FOR tether_test ON SEQUENCE app.invoice_no IS 'sequence-label';
SECURITY LABEL FOR tether_test ON VIEW app.thing_codes IS 'view-label';
SECURITY LABEL FOR tether_test ON MATERIALIZED VIEW app.thing_totals IS 'matview-label';
SECURITY LABEL FOR tether_test ON EVENT TRIGGER et_origin IS 'event-trigger-label';
SECURITY LABEL FOR tether_test ON PUBLICATION pub_some IS 'publication-label';
SECURITY LABEL FOR tether_test ON LARGE OBJECT 424201 IS 'lo-label';
SECURITY LABEL FOR tether_test ON FOREIGN TABLE app.remote_things IS 'foreign-label';
\endif
