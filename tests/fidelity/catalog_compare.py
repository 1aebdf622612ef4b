"""Two databases compared object by object, from their catalogs, and row by row: what differs between them.

The reference for a copy is what ``pg_dump | psql`` makes of the same source. Objects are keyed by
``pg_identify_object`` (type and identity: names, never OIDs), and each carries its owner, ACL, comment,
security labels, extension membership and a definition read with PostgreSQL's own deparsers. Rows are
compared per table as a count and an order-independent sum of md5s of each row's text.

Run by hand: ``python -m tests.fidelity.catalog_compare URL_A URL_B`` prints the differences.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql

_USER_OBJECT = """
    (ident.schema IS NULL OR (ident.schema NOT IN ('pg_catalog', 'information_schema')
                              AND ident.schema !~ '^pg_toast' AND ident.schema !~ '^pg_temp'))
"""

# catalog, oid column, owner column, ACL column, extra condition, definition expression (x is the catalog row)
_CATALOGS: tuple[tuple[str, str, str | None, str | None, str, str], ...] = (
    ("pg_namespace", "oid", "nspowner", "nspacl",
     "(x.oid >= 16384 OR x.nspname = 'public')", "''"),
    ("pg_class", "oid", "relowner", "relacl", "x.relkind <> 't'",
     """concat_ws(' | ', x.relkind, x.relpersistence, x.reloptions::text, x.relrowsecurity, x.relforcerowsecurity,
                  x.relreplident, x.relispartition, pg_get_expr(x.relpartbound, x.oid),
                  CASE WHEN x.relkind = 'p' THEN pg_get_partkeydef(x.oid) END,
                  CASE WHEN x.relkind IN ('v', 'm') THEN pg_get_viewdef(x.oid) END,
                  CASE WHEN x.relkind = 'm' THEN x.relispopulated::text END,
                  CASE WHEN x.relkind IN ('i', 'I') THEN pg_get_indexdef(x.oid) END,
                  CASE WHEN x.relkind IN ('i', 'I') THEN (SELECT concat_ws(',', i.indisclustered, i.indisreplident,
                       i.indisvalid) FROM pg_index i WHERE i.indexrelid = x.oid) END,
                  (SELECT string_agg(inhparent::regclass::text, ',' ORDER BY inhseqno) FROM pg_inherits
                   WHERE inhrelid = x.oid),
                  (SELECT concat_ws(',', s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmax, s.seqmin,
                       s.seqcache, s.seqcycle) FROM pg_sequence s WHERE s.seqrelid = x.oid),
                  (SELECT spcname FROM pg_tablespace WHERE oid = x.reltablespace),
                  (SELECT amname FROM pg_am WHERE oid = x.relam), x.reloftype::regtype::text)"""),
    ("pg_proc", "oid", "proowner", "proacl", "true",
     """concat_ws(' | ', x.prokind, pg_get_function_identity_arguments(x.oid), pg_get_function_result(x.oid),
                  x.prosrc, x.probin, x.prolang::regclass, x.provolatile, x.proisstrict, x.prosecdef,
                  x.proleakproof, x.proparallel, x.procost, x.prorows, x.proconfig::text,
                  x.prosupport::text, x.proretset,
                  CASE WHEN x.prokind <> 'a' THEN pg_get_function_arguments(x.oid) END)"""),
    ("pg_type", "oid", "typowner", "typacl",
     "x.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = x.typrelid) = 'c'",
     """concat_ws(' | ', x.typtype, x.typlen, x.typbyval, x.typcategory, x.typdelim, x.typalign, x.typstorage,
                  x.typnotnull, format_type(x.typbasetype, x.typtypmod), x.typdefault, x.typcollation::regcollation,
                  x.typinput::regproc, x.typoutput::regproc, x.typreceive::regproc, x.typsend::regproc,
                  (SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = x.oid),
                  (SELECT concat_ws(',', format_type(rngsubtype, NULL), rngsubopc::regclass, rngcollation,
                                    rngcanonical, rngsubdiff) FROM pg_range WHERE rngtypid = x.oid))"""),
    ("pg_constraint", "oid", None, None, "true",
     """concat_ws(' | ', x.contype, pg_get_constraintdef(x.oid), x.condeferrable, x.condeferred, x.convalidated,
                  x.conislocal, x.coninhcount, x.connoinherit)"""),
    ("pg_trigger", "oid", None, None, "NOT x.tgisinternal",
     "concat_ws(' | ', pg_get_triggerdef(x.oid), x.tgenabled)"),
    ("pg_rewrite", "oid", None, None, "true", "concat_ws(' | ', pg_get_ruledef(x.oid), x.ev_enabled)"),
    ("pg_policy", "oid", None, None, "true",
     """concat_ws(' | ', x.polcmd, x.polpermissive,
                  (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END, ',' ORDER BY 1)
                   FROM unnest(x.polroles) r),
                  pg_get_expr(x.polqual, x.polrelid), pg_get_expr(x.polwithcheck, x.polrelid))"""),
    ("pg_event_trigger", "oid", "evtowner", None, "true",
     "concat_ws(' | ', x.evtevent, x.evtfoid::regproc, x.evtenabled, x.evttags::text)"),
    ("pg_publication", "oid", "pubowner", None, "true",
     "concat_ws(' | ', x.puballtables, x.pubinsert, x.pubupdate, x.pubdelete, x.pubtruncate, x.pubviaroot)"),
    ("pg_publication_rel", "oid", None, None, "true",
     "concat_ws(' | ', pg_get_expr(x.prqual, x.prrelid), x.prattrs::text)"),
    ("pg_publication_namespace", "oid", None, None, "true", "''"),
    ("pg_statistic_ext", "oid", "stxowner", None, "true",
     "concat_ws(' | ', pg_get_statisticsobjdef(x.oid), x.stxstattarget)"),
    ("pg_collation", "oid", "collowner", None, "x.oid >= 16384",
     "concat_ws(' | ', x.collprovider, x.collisdeterministic, x.collencoding, x.collcollate, x.collctype, "
     "x.colliculocale)"),
    ("pg_conversion", "oid", "conowner", None, "x.oid >= 16384",
     "concat_ws(' | ', x.conforencoding, x.contoencoding, x.conproc::regproc, x.condefault)"),
    ("pg_operator", "oid", "oprowner", None, "x.oid >= 16384",
     """concat_ws(' | ', x.oprkind, x.oprcanmerge, x.oprcanhash, x.oprcode::regproc, x.oprcom::regoperator,
                  x.oprnegate::regoperator, x.oprrest::regproc, x.oprjoin::regproc)"""),
    ("pg_opfamily", "oid", "opfowner", None, "x.oid >= 16384", "''"),
    ("pg_opclass", "oid", "opcowner", None, "x.oid >= 16384",
     "concat_ws(' | ', x.opcdefault, format_type(x.opcintype, NULL), format_type(x.opckeytype, NULL))"),
    ("pg_amop", "oid", None, None, "x.oid >= 16384", "concat_ws(' | ', x.amoppurpose, x.amopsortfamily)"),
    ("pg_amproc", "oid", None, None, "x.oid >= 16384", "x.amproc::regprocedure::text"),
    ("pg_am", "oid", None, None, "x.oid >= 16384", "concat_ws(' | ', x.amtype, x.amhandler::regproc)"),
    ("pg_cast", "oid", None, None, "x.oid >= 16384", "concat_ws(' | ', x.castfunc::regprocedure, x.castcontext, "
                                                     "x.castmethod)"),
    ("pg_transform", "oid", None, None, "true", "concat_ws(' | ', x.trffromsql::regprocedure, "
                                                "x.trftosql::regprocedure)"),
    ("pg_language", "oid", "lanowner", "lanacl", "x.oid >= 16384",
     "concat_ws(' | ', x.lanispl, x.lanpltrusted, x.lanplcallfoid::regproc, x.laninline::regproc, "
     "x.lanvalidator::regproc)"),
    ("pg_foreign_data_wrapper", "oid", "fdwowner", "fdwacl", "true",
     "concat_ws(' | ', x.fdwhandler::regproc, x.fdwvalidator::regproc, x.fdwoptions::text)"),
    ("pg_foreign_server", "oid", "srvowner", "srvacl", "true",
     "concat_ws(' | ', x.srvtype, x.srvversion, x.srvoptions::text)"),
    ("pg_user_mapping", "oid", None, None, "true", "x.umoptions::text"),
    ("pg_foreign_table", "ftrelid", None, None, "true", "x.ftoptions::text"),
    ("pg_extension", "oid", "extowner", None, "true",
     "concat_ws(' | ', x.extversion, x.extrelocatable, x.extconfig::regclass[]::text, x.extcondition::text)"),
    ("pg_ts_config", "oid", "cfgowner", None, "x.oid >= 16384",
     """concat_ws(' | ', x.cfgparser::regclass, (SELECT string_agg(concat(m.maptokentype, ':', m.mapseqno, ':',
                  m.mapdict::regdictionary), ',' ORDER BY m.maptokentype, m.mapseqno) FROM pg_ts_config_map m
                  WHERE m.mapcfg = x.oid))"""),
    ("pg_ts_dict", "oid", "dictowner", None, "x.oid >= 16384", "concat_ws(' | ', x.dictinitoption)"),
    ("pg_ts_parser", "oid", None, None, "x.oid >= 16384", "x.prsstart::regproc::text"),
    ("pg_ts_template", "oid", None, None, "x.oid >= 16384", "x.tmplinit::regproc::text"),
    ("pg_default_acl", "oid", None, "defaclacl", "true", "x.defaclobjtype::text"),
    ("pg_attrdef", "oid", None, None, "true", "pg_get_expr(x.adbin, x.adrelid)"),
    ("pg_largeobject_metadata", "oid", "lomowner", "lomacl", "true", "''"),
)

# Some server builds stamp every column with options of their own (`pg_attver=<n>`, different in every database,
# ignored by ALTER ... SET and left out by pg_dump): they say nothing about what was copied, so they are left out.
_COLUMNS = """
    SELECT (pg_identify_object('pg_class'::regclass, a.attrelid, a.attnum)).identity,
           concat_ws(' | ', format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, a.attgenerated,
                     a.attcollation::regcollation, a.attstattarget, a.attstorage, a.attcompression,
                     (SELECT array_agg(o ORDER BY o) FROM unnest(a.attoptions) o WHERE o !~ '^pg_')::text,
                     a.attfdwoptions::text, a.attislocal, a.attinhcount,
                     rank() OVER (PARTITION BY a.attrelid ORDER BY a.attnum)),
           a.attacl::text,
           col_description(a.attrelid, a.attnum),
           (SELECT string_agg(provider || '=' || label, ',' ORDER BY provider) FROM pg_seclabel s
            WHERE s.classoid = 'pg_class'::regclass AND s.objoid = a.attrelid AND s.objsubid = a.attnum)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
"""


@dataclass(frozen=True)
class Difference:
    what: str
    key: str
    left: str | None
    right: str | None

    def __str__(self) -> str:
        return f"{self.what} {self.key}: {self.left!r} != {self.right!r}"


def _objects(conn: psycopg.Connection) -> dict[str, dict[str, str | None]]:
    found: dict[str, dict[str, str | None]] = {}
    for catalog, oid_column, owner, acl, condition, definition in _CATALOGS:
        if not conn.execute("SELECT to_regclass(%s)", (catalog,)).fetchone()[0]:  # type: ignore[index]
            continue
        query = f"""
            SELECT ident.type, ident.identity,
                   {f"x.{owner}::regrole::text" if owner else "NULL"},
                   {f"x.{acl}::text" if acl else "NULL"},
                   (SELECT description FROM pg_description d WHERE d.classoid = '{catalog}'::regclass
                      AND d.objoid = x.{oid_column} AND d.objsubid = 0),
                   (SELECT string_agg(provider || '=' || label, ',' ORDER BY provider) FROM pg_seclabel s
                    WHERE s.classoid = '{catalog}'::regclass AND s.objoid = x.{oid_column} AND s.objsubid = 0),
                   (SELECT string_agg(e.extname, ',') FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                    WHERE d.classid = '{catalog}'::regclass AND d.objid = x.{oid_column} AND d.deptype = 'e'),
                   {definition}
            FROM {catalog} x, LATERAL pg_identify_object('{catalog}'::regclass, x.{oid_column}, 0) ident
            WHERE {condition} AND {_USER_OBJECT}"""  # noqa: S608 (catalog names from the table above)
        # Foreign tables and large objects are identified (and commented) through another catalog's oid.
        alias = {"pg_foreign_table": "pg_class", "pg_largeobject_metadata": "pg_largeobject"}.get(catalog)
        if alias:
            query = query.replace(f"'{catalog}'::regclass", f"'{alias}'::regclass")
        for kind, identity, owner_name, acl_text, comment, labels, extension, body in conn.execute(query):
            key = f"{kind} {identity}" + (" (foreign table options)" if catalog == "pg_foreign_table" else "")
            found[key] = {"owner": owner_name, "acl": acl_text, "comment": comment, "labels": labels,
                          "extension": extension, "definition": body}
    for identity, body, acl_text, comment, labels in conn.execute(_COLUMNS):
        found[f"column {identity}"] = {"owner": None, "acl": acl_text, "comment": comment, "labels": labels,
                                      "extension": None, "definition": body}
    for role, setting in conn.execute("""
            SELECT coalesce(r.rolname, '(all roles)'), unnest(s.setconfig) FROM pg_db_role_setting s
            LEFT JOIN pg_roles r ON r.oid = s.setrole
            WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"""):
        found[f"setting {role} {setting.split('=', 1)[0]}"] = {"definition": setting}
    return found


def _rows(conn: psycopg.Connection) -> dict[str, str]:
    tables = conn.execute("""
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname !~ '^pg_toast' AND (c.relkind = 'r' OR c.relispopulated)
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                                     AND d.deptype = 'e')""").fetchall()
    found: dict[str, str] = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 15))::bit(60)::bigint::numeric), 0)"
                        " FROM ONLY {} t").format(sql.Identifier(schema, table))
        try:
            with conn.transaction():
                count, total = conn.execute(query).fetchone()  # type: ignore[misc]
            found[f"{schema}.{table}"] = f"{count} rows, sum {total}"
        except psycopg.Error as error:
            found[f"{schema}.{table}"] = f"unreadable: {error.sqlstate}"
    for oid, digest in conn.execute("SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata"):
        found[f"large object {oid}"] = digest
    return found


def describe(conninfo: str) -> tuple[dict[str, dict[str, str | None]], dict[str, str]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET search_path = pg_catalog")  # deparsed definitions are then fully qualified
        return _objects(conn), _rows(conn)


def differences(left: str, right: str, *, ignore: Iterable[str] = ()) -> list[Difference]:
    """Every object attribute and table content that differs between the databases at ``left`` and ``right``.

    ``ignore``: substrings of keys to leave out (deliberate differences a test names).
    """
    skip = tuple(ignore)
    left_objects, left_rows = describe(left)
    right_objects, right_rows = describe(right)
    found: list[Difference] = []
    for key in sorted(left_objects.keys() | right_objects.keys()):
        if any(part in key for part in skip):
            continue
        a, b = left_objects.get(key), right_objects.get(key)
        if a is None or b is None:
            found.append(Difference("object", key, "present" if a else None, "present" if b else None))
            continue
        for attribute in sorted(a.keys() | b.keys()):
            if a.get(attribute) != b.get(attribute):
                found.append(Difference(attribute, key, a.get(attribute), b.get(attribute)))
    for key in sorted(left_rows.keys() | right_rows.keys()):
        if any(part in key for part in skip):
            continue
        if left_rows.get(key) != right_rows.get(key):
            found.append(Difference("rows", key, left_rows.get(key), right_rows.get(key)))
    return found


if __name__ == "__main__":
    result = differences(sys.argv[1], sys.argv[2])
    for difference in result:
        print(difference)
    print(f"{len(result)} difference(s)")
    sys.exit(1 if result else 0)
