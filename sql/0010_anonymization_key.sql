-- The secret key of `invoke sync-prod`'s pseudonyms, kept in this database and usable only through a function.
--
-- Deterministic pseudonyms (the same e-mail gives the same fake address in every table, so joins still match)
-- are HMAC-SHA256 of the value under a secret key. Whoever holds the key can test guesses against a copy
-- (every French mobile number, a dictionary of e-mails), so the key must never reach the laptops that receive
-- copies. Here it stays in the server, the way PostgreSQL Anonymizer keeps its salt there, but in a table
-- rather than a setting (settings given with ALTER DATABASE/ROLE are readable by everyone in
-- pg_db_role_setting):
--   tether_anon.key              one row, the key as the two HMAC pads; readable by its owner only
--   tether_anon.pseudonym(text)  SECURITY DEFINER: readonly may EXECUTE it, not SELECT the key
--   tether_anon.key_id()         a hash of the key: tells a sync that the key changed (no use for guessing)
-- The sync never copies tether_anon.key. To rotate the key (every pseudonym changes; the next sync copies
-- everything again): UPDATE tether_anon.key SET ... as in the INSERT below, as app_owner.

CREATE SCHEMA IF NOT EXISTS tether_anon AUTHORIZATION app_owner;
REVOKE ALL ON SCHEMA tether_anon FROM PUBLIC;
GRANT USAGE ON SCHEMA tether_anon TO readonly;

SET LOCAL ROLE app_owner;

CREATE TABLE tether_anon.key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    ipad     bytea NOT NULL CHECK (length(ipad) = 64),  -- the key XOR 0x36, HMAC's inner pad
    opad     bytea NOT NULL CHECK (length(opad) = 64),  -- the key XOR 0x5c, HMAC's outer pad
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON tether_anon.key FROM PUBLIC;

COMMENT ON TABLE tether_anon.key IS
    'Secret key of sync-prod pseudonyms. Never grant SELECT on it: whoever reads it can reverse pseudonyms.';

-- 64 random bytes from pgcrypto (0002), xored with the two pads byte by byte.
INSERT INTO tether_anon.key (ipad, opad)
SELECT decode(string_agg(lpad(to_hex(get_byte(k, i) # 54), 2, '0'), '' ORDER BY i), 'hex'),
       decode(string_agg(lpad(to_hex(get_byte(k, i) # 92), 2, '0'), '' ORDER BY i), 'hex')
FROM (SELECT public.gen_random_bytes(64) AS k) AS random_key, generate_series(0, 63) AS i;

-- SECURITY DEFINER: runs as app_owner, so it reads the key for callers who may not. Every name in the body is
-- schema-qualified (functions, the operator, the table), so a caller's search_path cannot substitute its own
-- objects; that is why there is no SET search_path clause, which would cost a setting change on every call
-- (a sync calls it once per pseudonymized value). IMMUTABLE: same key, same result, and the planner then
-- spends the least per call; the key changes only by hand, between syncs.
CREATE FUNCTION tether_anon.pseudonym(value text) RETURNS bytea
    LANGUAGE sql
    IMMUTABLE STRICT PARALLEL SAFE
    SECURITY DEFINER
AS $$
    SELECT pg_catalog.sha256(k.opad OPERATOR(pg_catalog.||)
                             pg_catalog.sha256(k.ipad OPERATOR(pg_catalog.||) pg_catalog.convert_to(value, 'UTF8')))
    FROM tether_anon.key AS k
$$;

CREATE FUNCTION tether_anon.key_id() RETURNS text
    LANGUAGE sql
    STABLE PARALLEL SAFE
    SECURITY DEFINER
AS $$
    SELECT pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to('tether key id', 'UTF8')
                                                               OPERATOR(pg_catalog.||) k.opad), 'hex'), 16)
    FROM tether_anon.key AS k
$$;

COMMENT ON FUNCTION tether_anon.pseudonym(text) IS 'HMAC-SHA256 of the value under the sync-prod key.';
COMMENT ON FUNCTION tether_anon.key_id() IS 'A short hash of the sync-prod key: changes when the key does.';

REVOKE EXECUTE ON FUNCTION tether_anon.pseudonym(text), tether_anon.key_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tether_anon.pseudonym(text), tether_anon.key_id() TO readonly;
