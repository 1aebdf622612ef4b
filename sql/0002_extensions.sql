-- Extensions the schema uses. All three are on Cloud SQL's supported list and are trusted extensions
-- (PostgreSQL 13+), so creating them needs the CREATE privilege on the database, not a superuser.

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;   -- fuzzy matching on resource titles
CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;    -- case-insensitive tag suggestions
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;  -- random share tokens (gen_random_bytes)
