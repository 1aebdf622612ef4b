-- The `app` schema, owned by app_owner, and the privileges every table created in it later receives.

-- PostgreSQL 15 already denies CREATE on `public` to everyone; older templates (and Cloud SQL 14) do not.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION app_owner;
GRANT USAGE ON SCHEMA app TO api_user, readonly;

-- Default privileges apply to objects app_owner creates from now on, in this database. api_user reads and
-- writes rows but may not TRUNCATE, add triggers or reference tables; readonly only reads (sequences
-- included, which pg_dump needs to copy their current values).
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO api_user;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app
    GRANT USAGE ON SEQUENCES TO api_user;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app
    GRANT SELECT ON TABLES TO readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app
    GRANT SELECT ON SEQUENCES TO readonly;
-- Functions are executable by PUBLIC unless we say otherwise; only the two login roles need them.
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner
    REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app
    GRANT EXECUTE ON FUNCTIONS TO api_user, readonly;

-- The sync and reporting role may read the migration ledger (to compare schema versions), nothing more.
GRANT USAGE ON SCHEMA tether TO readonly;
GRANT SELECT ON tether.schema_migrations TO readonly;

SET LOCAL ROLE app_owner;

CREATE FUNCTION app.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION app.touch_updated_at() IS 'BEFORE UPDATE trigger: keeps updated_at current.';

-- Who is asking: the application runs `SELECT set_config('app.current_profile_id', '42', true)` at the start
-- of each transaction. Unset means nobody, so row-level security shows nothing. No SET clause, so the
-- planner can inline it into policies.
CREATE FUNCTION app.current_profile_id() RETURNS bigint
    LANGUAGE sql
    STABLE
    PARALLEL SAFE
AS $$
    SELECT NULLIF(pg_catalog.current_setting('app.current_profile_id', true), '')::bigint
$$;

COMMENT ON FUNCTION app.current_profile_id() IS
    'The profile the application acts for in this transaction (setting app.current_profile_id), or NULL.';
