-- The application's roles. Roles belong to the whole server, not to one database, so each is created
-- only when it is missing (another database on the same server may have created it already).
--
--   app_owner  owns every application object; nobody logs in as it. Later files switch to it with
--              SET LOCAL ROLE, so what they create belongs to it and not to whoever ran db.init.
--   api_user   the application: reads and writes rows in app.*, and nothing else.
--   readonly   production syncs and reporting: reads every row, writes nothing.
--
-- No passwords here: `invoke db.init` sets them afterwards from TETHER_API_USER_PASSWORD and
-- TETHER_READONLY_PASSWORD (or, for a local database, from generated ones kept in .runtime/).

-- Migrations run as an administrator: the dev stack's superuser, or on Cloud SQL a member of
-- cloudsqlsuperuser such as `postgres`. Run as an application role, this file would make that role a member
-- of app_owner, able to change the schema.
DO $$
BEGIN
    IF current_user IN ('api_user', 'readonly') THEN
        RAISE EXCEPTION 'db.init is connected as %, an application role', current_user
            USING HINT = 'Connect as an administrative role (the dev stack''s superuser, or postgres on Cloud SQL).';
    END IF;
END
$$;

DO $$
DECLARE
    wanted record;
BEGIN
    FOR wanted IN
        SELECT *
        FROM (VALUES
            ('app_owner', 'NOLOGIN', false),
            ('api_user', 'LOGIN', false),
            ('readonly', 'LOGIN', true)
        ) AS role_spec (name, login, read_only)
    LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = wanted.name);
        BEGIN
            EXECUTE format('CREATE ROLE %I %s NOCREATEDB NOCREATEROLE', wanted.name, wanted.login);
            IF wanted.login = 'LOGIN' THEN
                EXECUTE format('ALTER ROLE %I SET search_path = app, public', wanted.name);
            END IF;
            IF wanted.read_only THEN
                -- A second guard behind the grants: even a mistaken GRANT cannot make this role write.
                EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', wanted.name);
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            -- Created a moment ago from another database on this server; theirs is as good as ours.
            NULL;
        END;
    END LOOP;
END
$$;

-- The role running db.init must be able to SET ROLE app_owner. A superuser already can; on Cloud SQL
-- the `postgres` user (not a superuser) cannot until it is a member.
DO $$
BEGIN
    IF NOT pg_catalog.pg_has_role(current_user, 'app_owner', 'MEMBER') THEN
        EXECUTE format('GRANT app_owner TO %I', current_user);
    END IF;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO api_user, readonly', current_database());
END
$$;
