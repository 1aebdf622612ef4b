"""pg_dump custom archives restored the way ``pg_dump | psql`` would, in dependency order, tolerant of missing roles.

Both ``db.restore`` and ``sync-prod`` restore an archive into a scratch database with ``pg_restore
--exit-on-error``, so a real error fails the whole restore. What may legitimately fail on another server
(a statement naming a role it lacks, a security label whose provider is not loaded there, a grant only a
superuser may make) is kept out of that run and replayed afterwards one statement at a time, in the
archive's order, skipping and listing what the local server refuses, as ``psql`` would print and move on:

1. **main**: every entry pg_restore applies (``--no-owner --no-privileges``);
2. **owners**: each object's ``ALTER ... OWNER TO`` (kept where the role exists locally, else the object
   stays with the restoring user, and is listed);
3. **deferred**: privileges, default privileges, policies, security labels, publications, and everything
   that depends on one of them (a comment on a policy comes after the policy, never before it);
4. **last**: event triggers and what depends on them, so that none fires while the rest is created.

Every REVOKE of the archive is applied, so no object ends up more open than at the source.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg
from psycopg import sql

from tether.errors import CommandFailed, TetherError
from tether.redact import redact

# Entry types (pg_dump's "desc") of more than one word, longest first, so ``kind()`` matches the whole type.
_MULTI_WORD_KINDS = sorted((
    "TABLE DATA", "SEQUENCE SET", "SEQUENCE OWNED BY", "MATERIALIZED VIEW DATA", "MATERIALIZED VIEW",
    "FK CONSTRAINT", "CHECK CONSTRAINT", "DEFAULT ACL", "EVENT TRIGGER", "SECURITY LABEL", "PUBLICATION TABLE",
    "PUBLICATION TABLES IN SCHEMA", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE", "FOREIGN DATA WRAPPER", "FOREIGN TABLE", "USER MAPPING", "OPERATOR CLASS",
    "OPERATOR FAMILY", "ACCESS METHOD", "SHELL TYPE", "PROCEDURAL LANGUAGE", "ROW SECURITY", "INDEX ATTACH",
    "TABLE ATTACH", "DATABASE PROPERTIES", "LARGE OBJECT", "LARGE OBJECTS", "SUBSCRIPTION TABLE",
), key=len, reverse=True)
DEFERRED_KINDS = frozenset({"ACL", "DEFAULT ACL", "POLICY", "SECURITY LABEL", "PUBLICATION", "PUBLICATION TABLE",
                            "PUBLICATION TABLES IN SCHEMA"})
# pg_restore's last pass: event triggers, then materialized views computed as their owners, privileges in place.
LAST_KINDS = frozenset({"EVENT TRIGGER", "MATERIALIZED VIEW DATA"})
# The database itself (only ``pg_restore --create`` restores these): tether applies its settings on its own.
DATABASE_KINDS = frozenset({"DATABASE", "DATABASE PROPERTIES"})
LARGE_OBJECT_KINDS = frozenset({"BLOB", "LARGE OBJECT"})  # PostgreSQL 17 renamed BLOB
LARGE_OBJECT_DATA_KINDS = frozenset({"BLOBS", "LARGE OBJECTS"})
DATA_KINDS = frozenset({"TABLE DATA", "SEQUENCE SET", *LARGE_OBJECT_DATA_KINDS})

_TOC_LINE = re.compile(r"^(?P<id>\d+); (?P<catalog>\d+) (?P<oid>\d+) (?P<rest>.*)$")
_DBNAME = re.compile(r"^;\s+dbname: (?P<name>.*)$")
_ENTRY_HEADER = re.compile(r"^--\n-- (?:Data for )?Name: [^\n]*; Type: (?P<kind>[^;\n]*); Schema: [^\n]*\n--\n",
                           re.MULTILINE)
_OWNER_STATEMENT = re.compile(r"^ALTER [A-Z ]+ .* OWNER TO .+;$")
_SESSION_LINE = re.compile(r"^(SET [a-z_]+ = .*;|SELECT pg_catalog\.set_config\(.*\);)$")

# What a statement may fail with on another server, and still be skipped (and listed) rather than fail the whole:
# a role (or a skipped object) that does not exist there, a privilege only a superuser has, a security label
# provider that is not loaded there, a setting that server does not know.
TOLERATED_ERRORS = {"42704": "missing there", "42501": "not allowed there", "22023": "not available there"}
# An owner that could not be given to a table cannot be given to the sequences it owns either ("cannot change
# owner of sequence ... linked to table"): they stay with the table's owner, as with psql.
OWNER_TOLERATED_ERRORS = {**TOLERATED_ERRORS, "0A000": "follows its table there"}


@dataclass(frozen=True)
class TocEntry:
    line: str
    catalog: int
    oid: int
    rest: str  # "TYPE schema name owner"
    dump_id: int = 0
    depends_on: tuple[int, ...] = ()  # dump ids (from ``pg_restore --list --verbose``)

    def kind(self) -> str:
        """The entry's type, as pg_dump names it (TABLE, FK CONSTRAINT, COMMENT, ACL ...)."""
        for kind in _MULTI_WORD_KINDS:
            if self.rest.startswith(kind + " "):
                return kind
        return self.rest.split(" ", 1)[0]

    @property
    def is_database(self) -> bool:
        """The database's own entries and its comment, labels and privileges (restored only with --create)."""
        kind = self.kind()
        return kind in DATABASE_KINDS or (kind in ("COMMENT", "ACL", "SECURITY LABEL")
                                          and self.rest.split(" ", 2)[1:2] == ["-"]
                                          and self.rest.split(" ", 3)[2:3] == ["DATABASE"])


@dataclass(frozen=True)
class Toc:
    entries: list[TocEntry]
    database: str | None  # the dumped database's name, from the listing's header


def parse_toc(listing: str) -> Toc:
    """Entries of ``pg_restore --list --verbose`` (each with the dump ids it depends on) and the database name."""
    entries: list[TocEntry] = []
    database = None
    for line in listing.splitlines():
        match = _TOC_LINE.match(line)
        if match:
            entries.append(TocEntry(line, int(match["catalog"]), int(match["oid"]), match["rest"], int(match["id"])))
        elif line.startswith(";\tdepends on:") and entries:
            depends = tuple(int(part) for part in line.split(":", 1)[1].split())
            entries[-1] = replace(entries[-1], depends_on=entries[-1].depends_on + depends)
        elif database is None and (named := _DBNAME.match(line)):
            database = named["name"]
    return Toc(entries, database)


@dataclass
class Phases:
    """An archive's entries in the order they are restored (see the module doc); each list keeps archive order."""

    main: list[TocEntry] = field(default_factory=list)
    deferred: list[TocEntry] = field(default_factory=list)
    last: list[TocEntry] = field(default_factory=list)


def phases(entries: Sequence[TocEntry]) -> Phases:
    """Split entries into main, deferred and last, following dependencies; the database's own entries are left out.

    An entry goes with the latest phase of anything it depends on (transitively), so a comment, a label or a
    publication membership never reaches the server before its object.
    """
    rank: dict[int, int] = {}
    for entry in entries:  # archive order is dependency order: dependencies come first
        kind = entry.kind()
        own = 2 if kind in LAST_KINDS else 1 if kind in DEFERRED_KINDS or _is_extension_comment(entry) else 0
        rank[entry.dump_id] = max([own, *(rank.get(dependency, 0) for dependency in entry.depends_on)])
    # Dependencies may point forward in rare archives: settle until nothing changes.
    changed = True
    while changed:
        changed = False
        for entry in entries:
            wanted = max([rank[entry.dump_id], *(rank.get(dependency, 0) for dependency in entry.depends_on)])
            if wanted != rank[entry.dump_id]:
                rank[entry.dump_id], changed = wanted, True
    result = Phases()
    for entry in entries:
        if entry.is_database:
            continue
        (result.main, result.deferred, result.last)[rank[entry.dump_id]].append(entry)
    return result


def _is_extension_comment(entry: TocEntry) -> bool:
    """``COMMENT ON EXTENSION`` needs the extension's owner (a superuser, usually): replayed, not required."""
    return entry.kind() == "COMMENT" and entry.rest.startswith("COMMENT - EXTENSION ")


def split_attachments(entries: Sequence[TocEntry]) -> tuple[list[TocEntry], list[TocEntry]]:
    """(entries for the parallel post-data run, entries to apply one at a time after it).

    ``ALTER INDEX ... ATTACH PARTITION`` run in parallel with work on the same partitioned table can deadlock
    (seen with ``pg_restore --jobs 2`` on sub-partitioned tables); those entries, and everything that depends on
    them (foreign keys to partitioned tables), go in the serial run.
    """
    serial: set[int] = set()
    for entry in entries:  # archive order: dependencies first
        if entry.kind() == "INDEX ATTACH" or serial & set(entry.depends_on):
            serial.add(entry.dump_id)
    return ([entry for entry in entries if entry.dump_id not in serial],
            [entry for entry in entries if entry.dump_id in serial])


def write_list(path: Path, entries: Iterable[TocEntry]) -> Path:
    path.write_text("".join(entry.line + "\n" for entry in entries))
    return path


# --- running pg_restore to read an archive ---------------------------------------------------------------------


def pg_restore_script_argv(program: Path | str, archive: Path | str, list_file: Path | str | None = None, *,
                           create: bool = False) -> list[str]:
    """The archive (or the entries in ``list_file``) as an SQL script on stdout, owners included, connecting nowhere.

    ``create``: include the database's own entries (its settings), which only ``--create`` writes.
    """
    argv = [str(program), "--file=-", "--no-tablespaces", *(["--create"] if create else [])]
    if list_file is not None:
        argv.append(f"--use-list={list_file}")
    return [*argv, str(archive)]


def pg_restore_list_argv(program: Path | str, archive: Path | str) -> list[str]:
    """The archive's table of contents with each entry's dependencies (``--verbose``)."""
    return [str(program), "--list", "--verbose", str(archive)]


_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|REDISCLI_AUTH", re.IGNORECASE)


def offline_env() -> dict[str, str]:
    """The environment for pg_restore runs that read an archive and connect nowhere: no secrets, no PG* target."""
    return {key: value for key, value in os.environ.items()
            if not _SECRET_NAME.search(key) and not (key.startswith("PG") and key != "PGPASSFILE")}


def run_program(argv: list[str], env: dict[str, str], what: str, hint: str = "", *,
                on_start: Callable[[subprocess.Popen[str]], None] | None = None) -> str:
    """Run a client program; a failure is a CommandFailed carrying the tail of its stderr.

    ``on_start`` receives the running process, for a caller in another thread that may have to stop it.
    """
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        if on_start is not None:
            on_start(process)
        stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise CommandFailed(what, process.returncode, redact(stderr), hint)  # no row's values in a message
    return stdout


@dataclass(frozen=True)
class ArchiveSql:
    """What ``replay_tolerant`` applies after pg_restore's run of the main entries, read from an archive."""

    owners: list[str]  # ALTER ... OWNER TO of the main entries (deferred ones carry their own)
    deferred: str  # script of the deferred entries, owners included
    last: str  # script of the last entries (event triggers)
    settings: list[str]  # the database's settings (see database_settings)
    digest: str  # script_digest of every entry but data, and of the settings


def read_archive(program: Path | str, archive: Path | str, toc: Toc, order: Phases, work_dir: Path) -> ArchiveSql:
    """Ask ``pg_restore`` (connecting nowhere) for the SQL of ``order``'s entries: owners, deferred, last, settings."""

    def script(entries: Sequence[TocEntry], name: str, *, create: bool = False) -> str:
        if not entries:
            return ""
        return run_program(pg_restore_script_argv(program, archive, write_list(work_dir / f"{name}.list", entries),
                                                  create=create), offline_env(), f"pg_restore --file=- ({name})")

    schema = script([entry for entry in [*order.main, *order.deferred, *order.last]
                     if entry.kind() not in DATA_KINDS], "schema")
    properties = [entry for entry in toc.entries if entry.kind() == "DATABASE PROPERTIES"]
    settings = database_settings(script(properties, "settings", create=True), toc.database)
    owners = [chunk.owner for chunk in split_script(sql_only(schema))[1]
              if chunk.owner and chunk.kind not in DEFERRED_KINDS | LAST_KINDS]
    return ArchiveSql(owners, script(order.deferred, "deferred"), script(order.last, "last"), settings,
                      script_digest(schema + "\n".join(settings)))


def replay_after_restore(conn: psycopg.Connection, sql_text: ArchiveSql,
                         between: Callable[[], None] | None = None) -> list[Skipped]:
    """Owners and deferred entries, then ``between()`` (a sync refreshes materialized views there), then the last
    entries; each part in its own transaction. Returns what the local server refused (see replay_tolerant)."""
    deferred = Replay.of_script(sql_text.deferred)
    deferred.statements[:0] = [("OWNER", owner) for owner in sql_text.owners]
    skipped = replay_tolerant(conn, deferred)
    if between is not None:
        between()
    return skipped + replay_tolerant(conn, Replay.of_script(sql_text.last))


# --- scripts (pg_restore --file=-) ----------------------------------------------------------------------------


def sql_only(script: str) -> str:
    """The script without psql meta-commands: recent pg_dump releases wrap it in ``\\restrict KEY`` lines."""
    return "\n".join(line for line in script.splitlines() if not line.startswith("\\"))


def script_digest(script: str) -> str:
    """A fingerprint of a script, ignoring lines that name program versions or carry random keys."""
    kept = [line for line in sql_only(script).splitlines() if line.strip() and not line.startswith("-- Dumped ")]
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()


@dataclass(frozen=True)
class Chunk:
    """One archive entry's SQL in a script, its ``ALTER ... OWNER TO`` split off."""

    kind: str
    body: str
    owner: str | None = None


def split_script(script: str) -> tuple[str, list[Chunk]]:
    """(prologue of SET commands, each entry's SQL) from a pg_restore script."""
    matches = list(_ENTRY_HEADER.finditer(script))
    if not matches:
        return script, []
    prologue = script[:matches[0].start()]
    chunks = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(script)
        body = script[match.end():end].strip()
        if body:
            chunks.append(_with_owner(match["kind"], body))
    return prologue, chunks


def _with_owner(kind: str, body: str) -> Chunk:
    """pg_restore writes an object's owner as the last statement of its entry (session SETs for the next
    entry may follow it); that line becomes the chunk's ``owner``."""
    lines = body.splitlines()
    index = len(lines) - 1
    while index >= 0 and (not lines[index].strip() or _SESSION_LINE.match(lines[index])):
        index -= 1
    if index > 0 and _OWNER_STATEMENT.match(lines[index]):
        owner = lines[index]
        rest = "\n".join(lines[:index] + lines[index + 1:]).strip()
        return Chunk(kind, rest, owner)
    return Chunk(kind, body)


def statements_of(chunk: Chunk) -> list[str]:
    """ACL entries are one GRANT/REVOKE (or SET/RESET SESSION AUTHORIZATION) per line, and a table's security
    labels one per column: each stands alone, as in psql; anything else is one statement."""
    lines = [line for line in chunk.body.splitlines() if line.strip() and not line.startswith("--")]
    if chunk.kind in ("ACL", "DEFAULT ACL", "SECURITY LABEL") and all(line.rstrip().endswith(";") for line in lines):
        return lines
    return [chunk.body] if chunk.body else []


def owner_statements(script: str) -> list[str]:
    """Every ``ALTER ... OWNER TO`` of a script, in order."""
    return [chunk.owner for chunk in split_script(sql_only(script))[1] if chunk.owner]


# --- replaying what another server may refuse -----------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A statement the local server refused for a tolerated reason (see TOLERATED_ERRORS)."""

    statement: str
    reason: str

    def __str__(self) -> str:
        return f"{one_line(self.statement)} ({one_line(self.reason)})"


@dataclass
class Replay:
    """Statements to replay in order, each in its own savepoint after a failed all-at-once attempt."""

    prologue: str = ""
    statements: list[tuple[str, str]] = field(default_factory=list)  # (kind, statement)

    @classmethod
    def of_script(cls, script: str, *, with_owners: bool = True) -> Replay:
        prologue, chunks = split_script(sql_only(script))
        replay = cls(prologue)
        for chunk in chunks:
            replay.statements.extend((chunk.kind, statement) for statement in statements_of(chunk))
            if with_owners and chunk.owner:
                replay.statements.append(("OWNER", chunk.owner))
        return replay

    def extend(self, kind: str, statements: Iterable[str]) -> Replay:
        self.statements.extend((kind, statement) for statement in statements)
        return self


def replay_tolerant(conn: psycopg.Connection, replay: Replay) -> list[Skipped]:
    """Apply ``replay`` in one transaction; statements the server refuses for a tolerated reason are skipped
    and returned, any other error is a TetherError naming the statement (and nothing is applied)."""
    skipped: list[Skipped] = []
    if not replay.statements:
        return skipped
    with conn.transaction():
        if replay.prologue.strip():
            conn.execute(replay.prologue)
        try:
            with conn.transaction():
                conn.execute("\n".join(statement for _, statement in replay.statements))
            return skipped
        except psycopg.Error:
            pass  # replay one statement at a time, to keep all the others and name the one that fails
        for kind, statement in replay.statements:
            try:
                with conn.transaction():
                    conn.execute(statement)
            except psycopg.Error as error:
                tolerated = OWNER_TOLERATED_ERRORS if kind == "OWNER" else TOLERATED_ERRORS
                if error.sqlstate not in tolerated:
                    raise TetherError(f"Could not apply {kind.lower()} `{one_line(statement)}` locally: "
                                      f"{one_line(str(error))}") from None
                skipped.append(Skipped(statement, str(error)))
    return skipped


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


# --- the database's own settings -------------------------------------------------------------------------------

DATABASE_MARK = "\x00database\x00"  # where the target database's name goes in a settings statement
_IDENTIFIER = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_DATABASE_SETTING = re.compile(rf"^(?P<head>ALTER DATABASE )(?P<db>{_IDENTIFIER})(?P<tail> (?:RE)?SET .*;)$")
_ROLE_SETTING = re.compile(rf"^(?P<head>ALTER ROLE {_IDENTIFIER} IN DATABASE )(?P<db>{_IDENTIFIER})"
                           r"(?P<tail> (?:RE)?SET .*;)$")


def _unquote(identifier: str) -> str:
    return identifier[1:-1].replace('""', '"') if identifier.startswith('"') else identifier


def database_settings(script: str, database: str | None) -> list[str]:
    """``ALTER DATABASE ... SET`` and ``ALTER ROLE ... IN DATABASE ... SET`` of a ``pg_restore --create`` script
    of the DATABASE PROPERTIES entry, with the database's name replaced by DATABASE_MARK."""
    found: list[str] = []
    for line in sql_only(script).splitlines():
        match = _DATABASE_SETTING.match(line) or _ROLE_SETTING.match(line)
        if match and (database is None or _unquote(match["db"]) == database):
            found.append(match["head"] + DATABASE_MARK + match["tail"])
    return found


def settings_for(templates: Iterable[str], database: str) -> list[str]:
    """The settings statements for the database named ``database``."""
    name = sql.Identifier(database).as_string(None)
    return [template.replace(DATABASE_MARK, name) for template in templates]
