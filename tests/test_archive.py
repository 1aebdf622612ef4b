"""tether.archive's pure parts: reading pg_restore's listing and scripts, and the order entries are restored in."""

from __future__ import annotations

from tether import archive

TOC = """;
; Archive created at 2024-01-01
;     dbname: Shop DB
;
214; 1259 16390 TABLE app people postgres
3345; 0 0 ACL - SCHEMA app postgres
3346; 0 0 ACL app TABLE people postgres
;	depends on: 214
3347; 0 0 DEFAULT ACL app DEFAULT PRIVILEGES FOR TABLES postgres
3340; 0 0 COMMENT - EXTENSION pg_trgm
3341; 0 0 COMMENT app TABLE people postgres
;	depends on: 214
3200; 2606 16400 FK CONSTRAINT app people people_team_id_fkey postgres
;	depends on: 214
3300; 3256 16500 POLICY app people p_ghost postgres
;	depends on: 214
3301; 0 0 COMMENT app POLICY p_ghost ON people postgres
;	depends on: 3300
3302; 0 0 SECURITY LABEL app TABLE people postgres
;	depends on: 214
217; 1255 41452 FUNCTION public et() postgres
3203; 3466 41453 EVENT TRIGGER - e postgres
;	depends on: 217
3364; 0 0 COMMENT - EVENT TRIGGER e postgres
;	depends on: 3203
3348; 6104 41455 PUBLICATION - pub postgres
3349; 6106 41456 PUBLICATION TABLE app pub people postgres
;	depends on: 214 3348
3363; 0 0 COMMENT - PUBLICATION pub postgres
;	depends on: 3348
3350; 2613 4242 BLOB - 4242 alice
3351; 0 0 BLOBS - BLOBS
3357; 1262 41445 DATABASE - Shop DB postgres
3358; 0 0 DATABASE PROPERTIES - Shop DB postgres
3359; 0 0 COMMENT - DATABASE "Shop DB" postgres
3305; 1259 16600 INDEX app people_tags_idx postgres
"""


def test_listing_parse_keeps_dependencies_and_the_database_name():
    toc = archive.parse_toc(TOC)
    assert toc.database == "Shop DB"
    by_id = {entry.dump_id: entry for entry in toc.entries}
    assert by_id[3349].depends_on == (214, 3348)
    assert [by_id[i].kind() for i in (3347, 3200, 3302, 3203, 3349, 3358)] == [
        "DEFAULT ACL", "FK CONSTRAINT", "SECURITY LABEL", "EVENT TRIGGER", "PUBLICATION TABLE", "DATABASE PROPERTIES"]


def test_phases_follow_dependencies_not_sections():
    order = archive.phases(archive.parse_toc(TOC).entries)
    main = [entry.rest for entry in order.main]
    deferred = [entry.rest for entry in order.deferred]
    last = [entry.rest for entry in order.last]
    # A comment follows its object into the later phase: never restored before the policy or trigger exists.
    assert "COMMENT app POLICY p_ghost ON people postgres" in deferred
    assert deferred.index("COMMENT app POLICY p_ghost ON people postgres") > deferred.index(
        "POLICY app people p_ghost postgres")
    assert last == ["EVENT TRIGGER - e postgres", "COMMENT - EVENT TRIGGER e postgres"]
    assert {"ACL - SCHEMA app postgres", "SECURITY LABEL app TABLE people postgres", "PUBLICATION - pub postgres",
            "PUBLICATION TABLE app pub people postgres", "COMMENT - PUBLICATION pub postgres",
            "COMMENT - EXTENSION pg_trgm"} <= set(deferred)
    assert "COMMENT app TABLE people postgres" in main and "FUNCTION public et() postgres" in main
    assert "BLOB - 4242 alice" in main and "BLOBS - BLOBS " in [entry.rest + " " for entry in order.main]
    # The database's own entries are never restored into another database.
    assert not any("DATABASE" in rest.split(" ")[0] or "- DATABASE" in rest for rest in main + deferred + last)


SCRIPT = """--
-- PostgreSQL database dump
--
\\restrict abcDEF123

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: alice
--

CREATE FUNCTION public.f() RETURNS integer
    LANGUAGE sql
    AS $$ SELECT 1 $$;


ALTER FUNCTION public.f() OWNER TO alice;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: teams teams_ghost; Type: POLICY; Schema: app; Owner: -
--

CREATE POLICY teams_ghost ON app.teams FOR SELECT TO tether_sync_ghost USING ((id > 1));


--
-- Name: TABLE people; Type: ACL; Schema: app; Owner: -
--

GRANT SELECT ON TABLE app.people TO tether_sync_ghost;
REVOKE ALL ON TABLE app.people FROM PUBLIC;


\\unrestrict abcDEF123
"""


def test_script_chunks_owner_statements_and_digest():
    prologue, chunks = archive.split_script(archive.sql_only(SCRIPT))
    assert "SET statement_timeout = 0;" in prologue and "\\restrict" not in prologue
    assert [chunk.kind for chunk in chunks] == ["FUNCTION", "POLICY", "ACL"]
    # The owner is split off even when session SETs for the next entry follow it.
    assert chunks[0].owner == "ALTER FUNCTION public.f() OWNER TO alice;"
    assert "OWNER TO" not in chunks[0].body and "SET default_table_access_method = heap;" in chunks[0].body
    assert chunks[1].owner is None
    assert archive.statements_of(chunks[2]) == ["GRANT SELECT ON TABLE app.people TO tether_sync_ghost;",
                                                "REVOKE ALL ON TABLE app.people FROM PUBLIC;"]
    assert archive.owner_statements(SCRIPT) == ["ALTER FUNCTION public.f() OWNER TO alice;"]
    replay = archive.Replay.of_script(SCRIPT)
    assert [kind for kind, _ in replay.statements] == ["FUNCTION", "OWNER", "POLICY", "ACL", "ACL"]
    # The random \restrict key and the version lines do not change the fingerprint; SQL does.
    same = SCRIPT.replace("abcDEF123", "zzz999") + "-- Dumped by pg_dump version 99\n"
    assert archive.script_digest(SCRIPT) == archive.script_digest(same)
    assert archive.script_digest(SCRIPT) != archive.script_digest(SCRIPT.replace("id > 1", "id > 2"))


def test_owner_inside_a_function_body_is_not_taken_for_the_entry_owner():
    body = "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$\nALTER TABLE t OWNER TO bob;\n$$;"
    chunk = archive._with_owner("FUNCTION", body)
    assert chunk.owner is None and chunk.body == body


SETTINGS_SCRIPT = """\\connect "Shop DB"
ALTER DATABASE "Shop DB" SET search_path TO '$user', 'public', 'My Schema';
ALTER DATABASE "Shop DB" SET work_mem TO '64MB';
ALTER ROLE "App User" IN DATABASE "Shop DB" SET statement_timeout TO '5s';
ALTER ROLE app IN DATABASE other SET x TO 'y';
"""


def test_database_settings_are_retargeted():
    templates = archive.database_settings(SETTINGS_SCRIPT, "Shop DB")
    assert len(templates) == 3
    statements = archive.settings_for(templates, 'dev "copy"')
    target = '"dev ""copy"""'
    assert statements[0] == "ALTER DATABASE " + target + " SET search_path TO '$user', 'public', 'My Schema';"
    assert statements[2] == 'ALTER ROLE "App User" IN DATABASE ' + target + " SET statement_timeout TO '5s';"
    assert archive.database_settings("ALTER DATABASE shop SET a TO 'b';", "shop") == [
        f"ALTER DATABASE {archive.DATABASE_MARK} SET a TO 'b';"]


def test_partition_index_attachments_and_what_needs_them_run_alone():
    toc = archive.parse_toc("""
10; 1259 1 INDEX app events_kind_idx postgres
11; 1259 2 INDEX app events_2024_kind_idx postgres
12; 0 0 INDEX ATTACH app events_2024_kind_idx postgres
;	depends on: 10 11
13; 2606 3 FK CONSTRAINT app notes notes_event_fkey postgres
;	depends on: 12
14; 2606 4 FK CONSTRAINT app other other_fkey postgres
""")
    parallel, serial = archive.split_attachments(toc.entries)
    assert [entry.dump_id for entry in parallel] == [10, 11, 14]
    assert [entry.dump_id for entry in serial] == [12, 13]
