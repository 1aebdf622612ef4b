"""What the source database holds, read from its catalogs in the sync's snapshot: tables, columns, sequences."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

FIRST_USER_OID = 16384  # PostgreSQL's FirstNormalObjectId: everything below is built in
FIRST_INITDB_OID = 10000  # FirstGenbkiObjectId: below it, types are the same on every server of a major

# Each column type's whole tree (the type, a domain's base type, an array's element, a composite's attributes,
# a range's subtype, a multirange's range), and whether binary COPY works for all of it: (type, portable, local).
BINARY_TYPES = """
    WITH RECURSIVE tree(root, member) AS (
        SELECT t, t FROM ({types}) AS roots(t)
      UNION
        SELECT tree.root, child.oid
        FROM tree JOIN pg_type t ON t.oid = tree.member
        CROSS JOIN LATERAL (
            SELECT t.typbasetype WHERE t.typtype = 'd'
            UNION ALL SELECT t.typelem WHERE t.typelem <> 0
            UNION ALL SELECT a.atttypid FROM pg_attribute a
                      WHERE t.typrelid <> 0 AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid
            UNION ALL SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = t.oid
        ) AS child(oid)
    )
    SELECT tree.root,
           bool_and(t.typsend <> 0 AND t.typreceive <> 0 AND t.oid < {initdb} AND left(t.typname, 3) <> 'reg'),
           bool_and(t.typsend <> 0 AND t.typreceive <> 0)
    FROM tree JOIN pg_type t ON t.oid = tree.member
    GROUP BY tree.root
"""

_USER_NAMESPACES = sql.SQL("""
    n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'
""")


@dataclass(frozen=True)
class Column:
    name: str
    number: int
    type_sql: str  # format_type(): a valid type name on the source, typmod included
    type_name: str  # the base type's name (through a domain): text, int4, uuid, date ...
    category: str  # pg_type.typcategory of the base type: S string, N numeric, D date/time, ...
    not_null: bool
    generated: bool
    # Binary COPY between two servers of the same major: every type in the column's type tree (through
    # domains, array elements, composite attributes, range subtypes) is built in and has send/receive
    # functions, and none is a reg* type (whose binary form is a server-specific OID). See BINARY_TYPES.
    binary_portable: bool
    # Binary COPY within one server (a snapshot to its copy): send/receive functions are enough.
    binary_local: bool = True
    send_function: str = ""  # the type's binary output function (int4send ...), to size its binary form


class _SchemaObject:
    """What tables and sequences share: a schema-qualified name."""

    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class Relation(_SchemaObject):
    oid: int
    schema: str
    name: str
    kind: str  # r table, p partitioned table, m materialized view, f foreign table
    persistence: str  # p permanent, u unlogged
    partition_root: int | None
    extension_member: bool
    relfilenode: int
    populated: bool
    columns: tuple[Column, ...] = ()
    bytes: int = 0
    readable: bool = True  # the source role has SELECT on it (pg_dump and COPY need that)
    # An extension's configuration table (pg_extension_config_dump): its rows matching this condition are the
    # user's, copied as pg_dump copies them ("" = all rows); None for any other table.
    extension_condition: str | None = None

    @property
    def has_storage(self) -> bool:
        return self.kind == "r"

    @property
    def copied_columns(self) -> tuple[Column, ...]:
        """Stored generated columns are computed again on the destination, so COPY leaves them out."""
        return tuple(column for column in self.columns if not column.generated)

    @property
    def binary_safe(self) -> bool:
        """Whether the rows may travel as binary COPY between two servers of the same major."""
        return all(column.binary_portable for column in self.copied_columns)

    @property
    def binary_local(self) -> bool:
        """Whether the rows may travel as binary COPY between two databases of one server."""
        return all(column.binary_local for column in self.copied_columns)


@dataclass(frozen=True)
class Sequence(_SchemaObject):
    oid: int
    schema: str
    name: str
    readable: bool
    owner_table: int | None
    owner_column: str | None


@dataclass(frozen=True)
class ForeignKey:
    oid: int
    name: str
    table: int
    references: int


@dataclass(frozen=True)
class ServerInfo:
    version_num: int
    system_identifier: str | None  # None when pg_control_system() is not allowed for this role
    start_time: str
    database_oid: int
    database: str
    encoding: str
    user: str

    @property
    def major(self) -> int:
        return self.version_num // 10000


@dataclass
class SourceCatalog:
    server: ServerInfo
    relations: dict[int, Relation]
    sequences: list[Sequence]
    foreign_keys: list[ForeignKey]
    dependent_views: dict[int, set[int]]  # relation oid -> views and materialized views reading it
    unique_columns: set[tuple[int, str]]  # (table oid, column) with a single-column unique index
    rls_restricted: set[int] = field(default_factory=set)  # tables whose rows this role may not all see
    index_owners: dict[tuple[int, int], int] = field(default_factory=dict)  # (catalog, oid) of an index or
    # of a primary key, unique or exclusion constraint -> the table it belongs to
    inheritance_parents: dict[int, list[int]] = field(default_factory=dict)  # table -> parents and partitions'
    index_kinds: dict[int, tuple[int, int]] = field(default_factory=dict)  # table -> (B-tree-like, GIN/GiST) count
    extensions: dict[str, str] = field(default_factory=dict)  # name -> version
    large_objects: int = 0
    unreadable_large_objects: list[int] = field(default_factory=list)  # the source role may not read these
    publications: int = 0
    subscriptions: list[str] = field(default_factory=list)  # never copied: a copy would connect to the publisher
    tablespaces: list[str] = field(default_factory=list)  # non-default tablespaces relations live in

    def load_weight(self, relation: Relation) -> float:
        """How much work a table is locally: its rows, plus its indexes (GIN and GiST cost the most to build).

        Copying the heaviest first lets their index builds overlap the copy of everything else.
        """
        plain, heavy = self.index_kinds.get(relation.oid, (0, 0))
        return relation.bytes * (1 + 0.3 * plain + 2.0 * heavy)

    def ancestors(self, oid: int) -> list[int]:
        """Partition root and INHERITS parents, transitively: rules given for them apply to ``oid`` too."""
        found: list[int] = []
        pending = [oid]
        while pending:
            current = pending.pop()
            relation = self.relations.get(current)
            parents = list(self.inheritance_parents.get(current, ()))
            if relation is not None and relation.partition_root is not None:
                parents.append(relation.partition_root)
            for parent in parents:
                if parent not in found and parent != oid:
                    found.append(parent)
                    pending.append(parent)
        return found

    def by_name(self) -> dict[str, Relation]:
        return {relation.qualified: relation for relation in self.relations.values()}

    def root_of(self, oid: int) -> int:
        relation = self.relations[oid]
        return relation.partition_root if relation.partition_root is not None else oid


_SERVER_INFO = """SELECT current_setting('server_version_num')::int, pg_postmaster_start_time()::text, d.oid, d.datname,
                         pg_encoding_to_char(d.encoding), current_user
                  FROM pg_database d WHERE d.datname = current_database()"""


def _server_from(row: tuple[Any, ...], identifier: str | None) -> ServerInfo:
    return ServerInfo(row[0], identifier, row[1], row[2], row[3], row[4], row[5])


def server_info(conn: psycopg.Connection) -> ServerInfo:
    """Version, identity (system identifier, start time, database oid) and encoding of the connected server."""
    row = conn.execute(_SERVER_INFO).fetchone()
    assert row is not None
    return _server_from(row, system_identifier(conn))


def system_identifier(conn: psycopg.Connection) -> str | None:
    """The cluster's unique id (pg_control_system()), or None when this role may not call it."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return str(row[0]) if row else None


# The relations a sync considers, as a subquery every catalog query below can use: so that they can all be sent
# at once (one round trip in pipeline mode) instead of one after the other.
_RELATION_OIDS = sql.SQL("""
    SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm', 'f') AND c.relpersistence <> 't' AND {}""").format(_USER_NAMESPACES)


def _catalog_queries() -> dict[str, sql.SQL | sql.Composed]:
    oids = _RELATION_OIDS
    return {
        "relations": sql.SQL("""
            SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence,
                   CASE WHEN c.relispartition THEN pg_partition_root(c.oid)::oid END,
                   EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                                       AND d.deptype = 'e'),
                   c.relfilenode, c.relispopulated, has_table_privilege(c.oid, 'SELECT'),
                   (SELECT coalesce(e.extcondition[array_position(e.extconfig, c.oid)], '') FROM pg_extension e
                    WHERE c.oid = ANY(e.extconfig))
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid IN ({})
            ORDER BY n.nspname, c.relname""").format(oids),
        "columns": sql.SQL("""
            SELECT a.attrelid, a.attname, a.attnum, format_type(a.atttypid, a.atttypmod),
                   coalesce(bt.typname, t.typname), coalesce(bt.typcategory, t.typcategory), a.attnotnull,
                   a.attgenerated <> '', a.atttypid, t.typsend::regproc::text
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
            WHERE a.attrelid IN ({}) AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attrelid, a.attnum""").format(oids),
        "binary": sql.SQL(BINARY_TYPES).format(
            types=sql.SQL("SELECT DISTINCT atttypid FROM pg_attribute WHERE attrelid IN ({}) AND attnum > 0 "
                          "AND NOT attisdropped").format(oids),
            initdb=sql.Literal(FIRST_INITDB_OID)),
        "sequences": sql.SQL("""
            SELECT c.oid, n.nspname, c.relname, has_sequence_privilege(c.oid, 'SELECT'), d.refobjid, a.attname
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                 AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
            LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
            WHERE c.relkind = 'S' AND {}
              AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                                                         AND e.objid = c.oid AND e.deptype = 'e')
            ORDER BY n.nspname, c.relname""").format(_USER_NAMESPACES),
        "foreign_keys": sql.SQL("SELECT oid, conname, conrelid, confrelid FROM pg_constraint WHERE contype = 'f' "
                                "AND conrelid IN ({})").format(oids),
        "dependent_views": sql.SQL("""
            SELECT DISTINCT rw.ev_class, d.refobjid
            FROM pg_rewrite rw JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
            WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid <> rw.ev_class AND rw.ev_class >= {}""").format(
            sql.Literal(FIRST_USER_OID)),
        "unique_columns": sql.SQL("""
            SELECT i.indrelid, a.attname FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indisunique AND i.indnkeyatts = 1 AND i.indexprs IS NULL AND i.indpred IS NULL
              AND i.indrelid IN ({})""").format(oids),
        "index_owners": sql.SQL("""
            SELECT 'pg_class'::regclass::oid, indexrelid, indrelid FROM pg_index WHERE indrelid IN ({oids})
            UNION ALL
            SELECT 'pg_constraint'::regclass::oid, oid, conrelid FROM pg_constraint
            WHERE contype IN ('p', 'u', 'x') AND conrelid IN ({oids})""").format(oids=oids),
        "inheritance": sql.SQL("SELECT inhrelid, inhparent FROM pg_inherits WHERE inhrelid IN ({})").format(oids),
        "index_kinds": sql.SQL("""
            SELECT i.indrelid, count(*) FILTER (WHERE am.amname NOT IN ('gin', 'gist', 'spgist')),
                   count(*) FILTER (WHERE am.amname IN ('gin', 'gist', 'spgist'))
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
            WHERE i.indrelid IN ({}) GROUP BY i.indrelid""").format(oids),
        "extensions": sql.SQL("SELECT extname, extversion FROM pg_extension"),
        "large_objects": _LARGE_OBJECT_ACCESS,
        "others": sql.SQL("""
            SELECT (SELECT count(*) FROM pg_publication),
                   (SELECT coalesce(array_agg(subname ORDER BY subname), '{}') FROM pg_subscription
                    WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
                   (SELECT coalesce(array_agg(DISTINCT t.spcname ORDER BY t.spcname), '{}') FROM pg_class c
                    JOIN pg_tablespace t ON t.oid = c.reltablespace WHERE c.reltablespace <> 0
                      AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'pg_toast'::regnamespace))"""),
        "rls": _rls_query(oids),
        "server": sql.SQL(_SERVER_INFO),
    }


def _pipelined(conn: psycopg.Connection,
               queries: dict[str, sql.SQL | sql.Composed]) -> dict[str, list[tuple[Any, ...]]]:
    """Every query's rows, the queries sent together (one round trip in pipeline mode)."""
    with conn.pipeline():
        cursors = {name: conn.execute(query) for name, query in queries.items()}
        return {name: cursor.fetchall() for name, cursor in cursors.items()}


def read_catalog(conn: psycopg.Connection) -> SourceCatalog:
    """Everything the sync needs to know about the source's relations, in the connection's snapshot.

    The queries travel together: two round trips in all (the system identifier, which a role may not be
    allowed to read, is asked on its own), which matters when production is far away.
    """
    found = _pipelined(conn, _catalog_queries())
    relations: dict[int, Relation] = {}
    for row in found["relations"]:
        relations[row[0]] = Relation(row[0], row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]), row[8],
                                     readable=bool(row[9]), extension_condition=row[10])
    binary = {row[0]: (bool(row[1]), bool(row[2])) for row in found["binary"]}
    columns: dict[int, list[Column]] = {}
    for row in found["columns"]:
        portable, local = binary.get(row[8], (False, False))
        columns.setdefault(row[0], []).append(Column(row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                                                     portable, local, row[9] if row[9] != "-" else ""))
    for oid, relation in list(relations.items()):
        relations[oid] = _with(relation, columns=tuple(columns.get(oid, ())))
    sequences = [Sequence(*row) for row in found["sequences"]]
    foreign_keys = [ForeignKey(*row) for row in found["foreign_keys"]]
    dependent_views: dict[int, set[int]] = {}
    for view, relation in found["dependent_views"]:
        dependent_views.setdefault(relation, set()).add(view)
    unique_columns = {(row[0], row[1]) for row in found["unique_columns"]}
    index_owners = {(row[0], row[1]): row[2] for row in found["index_owners"]}
    inheritance_parents: dict[int, list[int]] = {}
    for child, parent in found["inheritance"]:
        inheritance_parents.setdefault(child, []).append(parent)
    index_kinds = {row[0]: (int(row[1]), int(row[2])) for row in found["index_kinds"]}
    extensions = {str(name): str(version) for name, version in found["extensions"]}
    large_objects, unreadable = _large_objects_from(found["large_objects"][0])
    others = found["others"][0]
    server = _server_from(found["server"][0], system_identifier(conn))
    return SourceCatalog(server, relations, sequences, foreign_keys, dependent_views, unique_columns,
                         {row[0] for row in found["rls"]}, index_owners, inheritance_parents, index_kinds, extensions,
                         large_objects, unreadable, int(others[0]), list(others[1]), list(others[2]))


_LARGE_OBJECT_ACCESS = sql.SQL("""
    SELECT count(*), coalesce(array_agg(m.oid ORDER BY m.oid) FILTER (WHERE NOT (
               (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
               OR current_setting('lo_compat_privileges')::boolean
               OR pg_has_role(m.lomowner, 'USAGE')
               OR EXISTS (SELECT 1 FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a
                          WHERE a.privilege_type = 'SELECT'
                            AND CASE WHEN a.grantee = 0 THEN true ELSE pg_has_role(a.grantee, 'USAGE') END))),
               '{}')
    FROM pg_largeobject_metadata m""")


def _large_objects_from(row: tuple[Any, ...]) -> tuple[int, list[int]]:
    return int(row[0]), [int(oid) for oid in row[1]]


def large_object_access(conn: psycopg.Connection) -> tuple[int, list[int]]:
    """How many large objects the database holds, and those the connected role may not read (as PostgreSQL 15
    decides: superuser, lo_compat_privileges, the owner's privileges, or SELECT granted to it or PUBLIC)."""
    row = conn.execute(_LARGE_OBJECT_ACCESS).fetchone()
    assert row is not None
    return _large_objects_from(row)


def _rls_query(oids: sql.Composable) -> sql.Composed:
    """Tables (among ``oids``, a subquery) where row-level security may hide rows from the connected role.

    A role sees every row when it bypasses RLS (superuser, BYPASSRLS, or owner of a table that does not
    FORCE it), or when a permissive SELECT policy for it says ``USING (true)`` and no restrictive one says
    otherwise. Anything else could silently drop rows from the copy, so those tables are refused.
    """
    applies = sql.SQL(
        "(p.polroles = '{{0}}' OR EXISTS (SELECT 1 FROM unnest(p.polroles) r WHERE pg_has_role(r, 'USAGE')))")
    return sql.SQL("""
        SELECT c.oid FROM pg_class c
        WHERE c.oid IN ({oids}) AND c.relrowsecurity
          AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
          AND NOT (pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity)
          AND NOT (
              EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polpermissive
                        AND p.polcmd IN ('r', '*') AND {applies}
                        AND pg_get_expr(p.polqual, p.polrelid) = 'true')
              AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND NOT p.polpermissive
                        AND p.polcmd IN ('r', '*') AND {applies}
                        AND coalesce(pg_get_expr(p.polqual, p.polrelid), 'true') <> 'true'))""").format(
        oids=oids, applies=applies)


def rls_restricted(conn: psycopg.Connection, oids: list[int]) -> set[int]:
    """Tables of ``oids`` where row-level security may hide rows from the connected role (see _rls_query)."""
    rows = conn.execute(_rls_query(sql.SQL("SELECT unnest({}::oid[])").format(sql.Literal(oids))))
    return {row[0] for row in rows}


def table_sizes(conn: psycopg.Connection, oids: list[int]) -> dict[int, int]:
    """Bytes on disk (heap and TOAST) per table, to copy the big ones first and to size progress bars."""
    rows = conn.execute("SELECT c.oid, pg_table_size(c.oid) FROM pg_class c WHERE c.oid = ANY(%s)", (oids,))
    return {row[0]: int(row[1] or 0) for row in rows}


def _with(relation: Relation, **changes: object) -> Relation:
    from dataclasses import replace

    return replace(relation, **changes)  # type: ignore[arg-type]


def with_sizes(catalog: SourceCatalog, sizes: dict[int, int]) -> None:
    for oid, size in sizes.items():
        catalog.relations[oid] = _with(catalog.relations[oid], bytes=size)


def catalog_fingerprint(conn: psycopg.Connection) -> str:
    """A fingerprint of the database's schema, read in the snapshot without running pg_dump.

    Every schema change writes or deletes rows of the database's own catalogs, and every written row has
    a new (ctid, xmin); VACUUM and ANALYZE update catalog rows in place and keep both. Role names are
    included because grants name them. Equal fingerprints mean the schema is unchanged; a different one
    (a TRUNCATE also rewrites a pg_class row) only means pg_dump must be asked.
    """
    names = [row[0] for row in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace AND relkind = 'r' "
        "AND NOT relisshared AND relname NOT IN ('pg_statistic', 'pg_largeobject') "
        "AND has_table_privilege(oid, 'SELECT') ORDER BY relname")]
    row_hash = sql.SQL("coalesce(sum(hashtextextended(ctid::text || ':' || xmin::text, 0)), 0)")
    parts: list[sql.Composable] = [
        sql.SQL("SELECT {}, count(*), {} FROM pg_catalog.{}").format(sql.Literal(name), row_hash, sql.Identifier(name))
        for name in names]
    parts.append(sql.SQL("SELECT 'roles', count(*), coalesce(sum(hashtextextended(oid::text || ':' || rolname, 0)), 0)"
                         " FROM pg_catalog.pg_roles"))
    # The database's own settings live in a shared catalog, which the loop above leaves out.
    parts.append(sql.SQL("SELECT 'settings', count(*), coalesce(sum(hashtextextended(setrole::text || ':' || "
                         "setconfig::text, 0)), 0) FROM pg_catalog.pg_db_role_setting WHERE setdatabase = "
                         "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"))
    parts.append(_large_objects_part(conn))
    rows = conn.execute(sql.SQL(" UNION ALL ").join(parts)).fetchall()
    digest = hashlib.sha256(repr(sorted((str(name), int(count), str(total)) for name, count, total in rows)).encode())
    return digest.hexdigest()


def _large_objects_part(conn: psycopg.Connection) -> sql.Composed:
    """A query of (name, count, hash) over the large objects' contents, which change pg_largeobject only: its row
    versions where the role may read that catalog (as for the catalogs above), else every readable object's bytes."""
    row = conn.execute("SELECT has_table_privilege('pg_catalog.pg_largeobject', 'SELECT')").fetchone()
    if row and row[0]:
        return sql.SQL("SELECT 'large objects', count(*), coalesce(sum(hashtextextended(ctid::text || ':' || "
                       "xmin::text, 0)), 0) FROM pg_catalog.pg_largeobject").format()
    _, unreadable = large_object_access(conn)
    return sql.SQL("SELECT 'large objects', count(*), coalesce(sum(hashtextextended(oid::text || ':' || "
                   "md5(lo_get(oid)), 0)), 0) FROM pg_catalog.pg_largeobject_metadata "
                   "WHERE NOT oid = ANY({})").format(sql.Literal(unreadable))


def large_object_fingerprint(conn: psycopg.Connection) -> str:
    """A fingerprint of every large object's contents: a re-sync copies everything again when it changes."""
    row = conn.execute(_large_objects_part(conn)).fetchone()
    return f"{row[1]}:{row[2]}" if row else ""


SIZE_SAMPLE_ROWS = 1000


def smaller_as_text(conn: psycopg.Connection, relations: list[Relation]) -> set[int]:
    """Tables whose rows take fewer bytes as text COPY than as binary, judged on a sample of each.

    Text wins for small numbers, short strings and NULLs (no 4-byte length per field); binary for bytea (half
    the hex), timestamps and wide numbers. Over a slow link the bytes decide. One query for all the tables.
    """
    parts: list[sql.Composable] = []
    for relation in relations:
        columns = [column for column in relation.copied_columns if column.send_function]
        if len(columns) != len(relation.copied_columns) or not columns:
            continue
        text = sql.SQL(" + ").join(
            sql.SQL("coalesce(octet_length({}::text) + 1, 3)").format(sql.Identifier(column.name))
            for column in columns)
        binary = sql.SQL(" + ").join(
            sql.SQL("coalesce(octet_length(pg_catalog.{}({})) + 4, 4)").format(
                sql.Identifier(column.send_function), sql.Identifier(column.name)) for column in columns)
        parts.append(sql.SQL("(SELECT {}::oid, sum({})::bigint, sum(2 + {})::bigint FROM (SELECT * FROM ONLY {} "
                             "LIMIT {}) sample)").format(sql.Literal(relation.oid), text, binary, relation.identifier,
                                                         sql.Literal(SIZE_SAMPLE_ROWS)))
    if not parts:
        return set()
    rows = conn.execute(sql.SQL(" UNION ALL ").join(parts)).fetchall()
    return {int(oid) for oid, text_bytes, binary_bytes in rows
            if text_bytes is not None and binary_bytes is not None and text_bytes < binary_bytes}
