"""Schema migrations: the files in sql/, the ledger that records them, and applying the pending ones safely."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tether import paths
from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError, TetherError

if TYPE_CHECKING:
    import psycopg

LEDGER_SCHEMA = "tether"
LEDGER_TABLE = "schema_migrations"
# PostgreSQL scopes advisory locks to one database: runs against the same database queue up, runs against
# two databases of one server do not wait for each other.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"tether.schema_migrations").digest()[:8], "big", signed=True)
# A leading digit keeps the lexical order the order the team meant ("roles.sql" would sort after "0009").
VERSION_PATTERN = re.compile(r"^[0-9][0-9A-Za-z_.\-]*\.sql$")
DEFAULT_LOCK_WAIT = 60.0
# How long one statement may wait for a table lock: an ALTER TABLE queued behind a long query blocks every
# query behind it, so a migration gives up instead of stalling the application.
DEFAULT_STATEMENT_LOCK_TIMEOUT = "30s"


class MigrationError(TetherError):
    """A migration file could not be read, parsed or applied."""


class DriftError(TetherError):
    """Files that were applied have changed or disappeared since."""

    exit_code = 4


class LockTimeout(TetherError):
    """Another run held the migration lock for longer than we were willing to wait."""


# ---------------------------------------------------------------------------------------------- the files


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a file and where it starts (character offset and 1-based line)."""

    text: str
    offset: int
    line: int


@dataclass(frozen=True)
class Migration:
    """One file of sql/: its name is its version, its checksum the sha256 of its bytes."""

    version: str
    path: Path
    checksum: str
    text: str


class ScriptSyntaxError(ValueError):
    """The splitter could not cut a script into statements (an unterminated quote, a psql meta-command)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


_IDENT_START = re.compile(r"[A-Za-z_\u0080-\uffff]")
_IDENT_REST = re.compile(r"[A-Za-z0-9_$\u0080-\uffff]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
_ROUTINE_HEADS = (("create", "function"), ("create", "procedure"),
                  ("create", "or", "replace", "function"), ("create", "or", "replace", "procedure"))


def line_at(text: str, offset: int) -> int:
    """The 1-based line of character ``offset``."""
    return text.count("\n", 0, offset) + 1


def _skip_block_comment(script: str, start: int) -> int:
    depth, index = 0, start
    while index < len(script):
        if script.startswith("/*", index):
            depth, index = depth + 1, index + 2
        elif script.startswith("*/", index):
            depth, index = depth - 1, index + 2
            if depth == 0:
                return index
        else:
            index += 1
    raise ScriptSyntaxError(line_at(script, start), "a /* comment is never closed")


def _skip_quoted(script: str, start: int, quote: str, backslash_escapes: bool) -> int:
    index = start + 1
    while index < len(script):
        char = script[index]
        if backslash_escapes and char == "\\":
            index += 2
        elif char == quote:
            if script.startswith(quote, index + 1):  # a doubled quote stands for itself
                index += 2
            else:
                return index + 1
        else:
            index += 1
    kind = "quoted identifier" if quote == '"' else "string"
    raise ScriptSyntaxError(line_at(script, start), f"a {kind} opened here is never closed")


def split_statements(script: str) -> list[Statement]:
    """Cut a script into statements at semicolons, the way psql does.

    Semicolons inside strings, quoted identifiers, dollar quotes, comments, parentheses and
    ``BEGIN ATOMIC ... END`` routine bodies do not end a statement. psql meta-commands (``\\connect``,
    ``\\set``) are refused: the files are plain SQL.
    """
    statements: list[Statement] = []
    start: int | None = None
    parens = begin_depth = 0
    words: list[str] = []
    index = 0

    def finish(end: int) -> None:
        nonlocal start, parens, begin_depth, words
        if start is not None:
            text = script[start:end].rstrip()
            statements.append(Statement(text, start, line_at(script, start)))
        start, parens, begin_depth, words = None, 0, 0, []

    while index < len(script):
        char = script[index]
        if script.startswith("--", index):
            newline = script.find("\n", index)
            index = len(script) if newline < 0 else newline
            continue
        if script.startswith("/*", index):
            index = _skip_block_comment(script, index)
            continue
        if char.isspace() or (char == ";" and start is None):  # blank space and empty statements
            index += 1
            continue
        if start is None:
            start = index
        if char == "'":
            escape = index > 0 and script[index - 1] in "eE" and (index < 2 or not _is_ident_char(script[index - 2]))
            index = _skip_quoted(script, index, "'", backslash_escapes=escape)
        elif char == '"':
            index = _skip_quoted(script, index, '"', backslash_escapes=False)
        elif char == "$" and (tag := _DOLLAR_TAG.match(script, index)):
            close = script.find(tag.group(), tag.end())
            if close < 0:
                raise ScriptSyntaxError(line_at(script, index), f"the dollar quote {tag.group()} is never closed")
            index = close + len(tag.group())
        elif _IDENT_START.match(char):
            end = _IDENT_REST.match(script, index + 1)
            word_end = end.end() if end else index + 1
            word = script[index:word_end].lower()
            words.append(word)
            begin_depth = _track_routine_body(words, word, begin_depth, parens)
            index = word_end
        elif char == "\\":
            raise ScriptSyntaxError(line_at(script, index), "psql meta-commands (\\connect, \\set, ...) are not "
                                    "supported: migration files are plain SQL")
        else:
            if char == "(":
                parens += 1
            elif char == ")":
                parens = max(0, parens - 1)
            elif char == ";" and parens == 0 and begin_depth == 0:
                finish(index)
            index += 1
    finish(len(script))
    return statements


def _is_ident_char(char: str) -> bool:
    return char.isalnum() or char in "_$" or ord(char) >= 0x80


def _track_routine_body(words: list[str], word: str, depth: int, parens: int) -> int:
    """psql's rule: in CREATE [OR REPLACE] FUNCTION|PROCEDURE, BEGIN (and CASE inside it) opens, END closes."""
    if parens or not any(tuple(words[: len(head)]) == head for head in _ROUTINE_HEADS):
        return depth
    if word == "begin" or (word == "case" and depth > 0):
        return depth + 1
    if word == "end" and depth > 0:
        return depth - 1
    return depth


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The ``*.sql`` files of ``directory`` (default: the project's sql/), in lexical order."""
    directory = directory or paths.sql_dir()
    if not directory.is_dir():
        raise ConfigError(f"There is no migrations directory {directory}. Create it with one file per migration "
                          "(0001_roles.sql, 0002_...), or point TETHER_SQL_DIR at yours.")
    files = sorted((path for path in directory.glob("*.sql") if path.is_file()), key=lambda path: path.name)
    if not files:
        raise ConfigError(f"{directory} holds no migration files (*.sql). Add one file per migration, named so "
                          "that they sort in the order they apply: 0001_roles.sql, 0002_....")
    migrations = []
    for path in files:
        if not VERSION_PATTERN.match(path.name):
            raise ConfigError(f"Migration file {display_path(path)} must start with a digit (for example "
                              f"0010_{path.name}) so that lexical order is the order it applies in. Rename it.")
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(f"Migration file {display_path(path)} is not UTF-8 ({error}). Save it as UTF-8.") \
                from None
        migrations.append(Migration(path.name, path, hashlib.sha256(data).hexdigest(), text))
    return migrations


def parse_migration(migration: Migration) -> list[Statement]:
    """The statements of one file, or a MigrationError naming the file and line."""
    try:
        statements = split_statements(migration.text)
    except ScriptSyntaxError as error:
        raise MigrationError(f"Migration {display_path(migration.path)} cannot be read as SQL at line "
                             f"{error.line}: {error.reason}. Nothing was applied.") from None
    if not statements:
        raise MigrationError(f"Migration {display_path(migration.path)} contains no SQL statement. Add its SQL, "
                             "or delete the file if it was created by mistake. Nothing was applied.")
    for statement in statements:
        if is_transaction_control(statement.text):
            raise MigrationError(
                f"Migration {display_path(migration.path)} line {statement.line} controls the transaction "
                f"({statement.text.split()[0].upper()}): each file already runs in one transaction together with "
                "its ledger row, and ending it early would record a half-applied file. Remove the statement; put "
                "work that must commit separately in a file of its own. Nothing was applied.")
    return statements


def is_transaction_control(statement: str) -> bool:
    """BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT (savepoints are fine)."""
    words = statement.lower().split(None, 2)
    if not words:
        return False
    if words[0] in {"begin", "commit", "end", "abort"}:
        return True
    second = words[1].rstrip(";") if len(words) > 1 else ""
    if words[0] == "start":
        return second == "transaction"
    return words[0] == "rollback" and second not in {"to"}


def display_path(path: Path) -> str:
    """``sql/0001_roles.sql`` inside the project, the full path elsewhere."""
    try:
        return str(path.resolve().relative_to(paths.project_root()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------- ledger and plan


@dataclass(frozen=True)
class AppliedMigration:
    version: str
    checksum: str
    applied_at: datetime
    applied_by: str
    duration_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "checksum": self.checksum, "applied_at": self.applied_at.isoformat(),
                "applied_by": self.applied_by, "duration_ms": self.duration_ms}


@dataclass(frozen=True)
class Drift:
    """An applied file that changed (``changed``) or is gone from sql/ (``missing``)."""

    version: str
    kind: Literal["changed", "missing"]
    recorded_checksum: str
    file_checksum: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "kind": self.kind, "recorded_checksum": self.recorded_checksum,
                "file_checksum": self.file_checksum}


@dataclass(frozen=True)
class MigrationPlan:
    """Where a database stands against sql/: what was applied, what is pending, what drifted."""

    applied: tuple[AppliedMigration, ...]
    pending: tuple[Migration, ...]
    drift: tuple[Drift, ...]

    def as_dict(self, database: str) -> dict[str, Any]:
        return {
            "database": database,
            "applied": [entry.as_dict() for entry in self.applied],
            "pending": [{"version": m.version, "checksum": m.checksum} for m in self.pending],
            "drift": [entry.as_dict() for entry in self.drift],
        }


def plan_migrations(migrations: Sequence[Migration], ledger: Sequence[AppliedMigration]) -> MigrationPlan:
    """Compare the files with the ledger (pure)."""
    files = {migration.version: migration for migration in migrations}
    recorded = {entry.version for entry in ledger}
    drift: list[Drift] = []
    for entry in ledger:
        migration = files.get(entry.version)
        if migration is None:
            drift.append(Drift(entry.version, "missing", entry.checksum, None))
        elif migration.checksum != entry.checksum:
            drift.append(Drift(entry.version, "changed", entry.checksum, migration.checksum))
    pending = tuple(migration for migration in migrations if migration.version not in recorded)
    return MigrationPlan(tuple(ledger), pending, tuple(drift))


def drift_message(drift: Sequence[Drift], database: str, directory: Path) -> str:
    """One paragraph naming every drifted file and both checksums."""
    where = display_path(directory)
    findings = []
    for entry in drift:
        if entry.kind == "changed":
            findings.append(f"{entry.version} changed after it was applied (ledger sha256 {entry.recorded_checksum}, "
                            f"file sha256 {entry.file_checksum})")
        else:
            findings.append(f"{entry.version} was applied (ledger sha256 {entry.recorded_checksum}) but is no "
                            f"longer in {where}")
    return (f"The migrations recorded in {database} no longer match {where}: " + "; ".join(findings) + ". "
            "A migration that was applied must never be edited or removed, because other databases already ran "
            "the old version: restore it from version control (git log -p -- <file>) and put the change in a new "
            "file that sorts after the others. Nothing was applied.")


def _ledger_name() -> Any:
    from psycopg import sql

    return sql.Identifier(LEDGER_SCHEMA, LEDGER_TABLE)


def ledger_exists(conn: psycopg.Connection[Any]) -> bool:
    name = _ledger_name().as_string(conn)
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def read_ledger(conn: psycopg.Connection[Any]) -> list[AppliedMigration]:
    """The ledger's rows by version; empty when the ledger does not exist yet."""
    from psycopg import sql

    if not ledger_exists(conn):
        return []
    query = sql.SQL("SELECT version, checksum, applied_at, applied_by, duration_ms FROM {} ORDER BY version")
    rows = conn.execute(query.format(_ledger_name())).fetchall()
    return [AppliedMigration(str(v), str(c), at, str(by), int(ms)) for v, c, at, by, ms in rows]


def ensure_ledger(conn: psycopg.Connection[Any]) -> None:
    from psycopg import sql

    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(LEDGER_SCHEMA)))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " version text PRIMARY KEY,"
            " checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{{64}}$'),"
            " applied_at timestamptz NOT NULL DEFAULT now(),"
            " applied_by text NOT NULL DEFAULT session_user,"
            " duration_ms integer NOT NULL)").format(_ledger_name()))
        comment = "Schema migrations applied by `invoke db.init` (tether): one row per sql/ file."
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(_ledger_name(), sql.Literal(comment)))


# ------------------------------------------------------------------------------------------ connecting


@dataclass(frozen=True)
class MigrationEvent:
    """Progress for whoever shows it: waiting for the lock, applying a file, done with it, a server warning."""

    kind: Literal["waiting", "applying", "applied", "warning"]
    version: str = ""
    duration_ms: int = 0
    detail: str = ""


Progress = Callable[[MigrationEvent], None]


def _ignore(_event: MigrationEvent) -> None:
    return None


def connect(address: DatabaseAddress, purpose: str) -> psycopg.Connection[Any]:
    """An autocommit connection (transactions are explicit), or a TetherError saying why there is none."""
    import psycopg

    options = dict(address.options)
    extra = {"application_name": f"tether {purpose}", "client_encoding": "UTF8"}
    if "connect_timeout" not in options:
        extra["connect_timeout"] = "10"
    try:
        return psycopg.connect(address.conninfo(**extra), autocommit=True)
    except psycopg.OperationalError as error:
        reason = " ".join(str(error).split())
        raise TetherError(f"Cannot connect to {address.masked_url()} for {purpose}: {reason}. Check that the "
                          "database is running (`invoke status`, `invoke up`) and that the address is right.") from None


def _lock_holder(conn: psycopg.Connection[Any]) -> str:
    classid, objid = (LOCK_KEY >> 32) & 0xFFFFFFFF, LOCK_KEY & 0xFFFFFFFF
    row = conn.execute(
        "SELECT a.pid, a.usename, a.application_name, a.client_addr::text, a.backend_start"
        " FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid AND l.objid = %s::oid"
        " AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (classid, objid)).fetchone()
    if row is None:
        return "another session"
    pid, user, application, client, since = row
    origin = f" from {client}" if client else ""
    return (f"process {pid} ({application or 'unnamed'}, role {user}{origin}, connected since "
            f"{since:%Y-%m-%d %H:%M:%S %Z})")


@contextmanager
def migration_lock(conn: psycopg.Connection[Any], wait_seconds: float, progress: Progress = _ignore) -> Iterator[None]:
    """Hold the database's migration lock (a session advisory lock), waiting up to ``wait_seconds`` for it."""
    import psycopg

    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row and row[0]:
            break
        if not announced:
            progress(MigrationEvent("waiting", detail=_lock_holder(conn)))
            announced = True
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"Another run is applying migrations to this database: {_lock_holder(conn)} holds the migration "
                f"lock, and it was not released within {wait_seconds:g} s. Let that run finish (or stop it), then "
                "run `invoke db.init` again. Nothing was applied.")
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    try:
        yield
    finally:
        # If the connection is gone, the server released the lock with the session.
        with suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


# --------------------------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class ServerError:
    """The parts of a PostgreSQL error that locate and explain it."""

    message: str
    sqlstate: str | None = None
    detail: str | None = None
    hint: str | None = None
    position: int | None = None  # 1-based character in the statement
    context: str | None = None

    @classmethod
    def from_psycopg(cls, error: psycopg.Error) -> ServerError:
        diag = error.diag
        position = diag.statement_position
        message = diag.message_primary or " ".join(str(error).split()) or type(error).__name__
        return cls(message, error.sqlstate, diag.message_detail, diag.message_hint,
                   int(position) if position and position.isdigit() else None, diag.context)


_INLINE_BLOCK_LINE = re.compile(r"inline_code_block line (\d+)")
_DO_BODY = re.compile(r"^\s*do\s+(?:language\s+\S+\s+)?(\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)", re.IGNORECASE)


def error_line(script: str, statement: Statement, error: ServerError) -> int:
    """The file line an error points at: its position, the line inside a DO block, or the statement's start."""
    if error.position is not None:
        return line_at(script, statement.offset + error.position - 1)
    block_line = _INLINE_BLOCK_LINE.search(error.context or "")
    body = _DO_BODY.match(statement.text)
    if block_line and body:
        # PL/pgSQL counts lines of the body, which starts right after the opening dollar quote.
        return line_at(script, statement.offset + body.end()) + int(block_line.group(1)) - 1
    return statement.line


def failure_message(migration: Migration, statement: Statement, error: ServerError, applied_before: int) -> str:
    """Where a migration failed (file and line), PostgreSQL's own words, and what state it left behind."""
    line = error_line(migration.text, statement, error)
    lines = migration.text.splitlines()
    source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    if len(source) > 120:
        source = source[:117] + "..."
    code = f" (SQLSTATE {error.sqlstate})" if error.sqlstate else ""
    message = f"Migration {display_path(migration.path)} failed at line {line}: {error.message}{code}."
    if source:
        message += f"\n    {line} | {source}\n"
    notes = [f"{label}: {' '.join(value.split())}." for label, value in
             (("Detail", error.detail), ("Hint", error.hint), ("Where", error.context)) if value]
    kept = (f"the {applied_before} file{'s' if applied_before != 1 else ''} applied before it in this run stay "
            "applied" if applied_before else "nothing else was applied in this run")
    notes.append(f"That file was rolled back as a whole and is not in the ledger; {kept}. Fix it and run "
                 "`invoke db.init` again.")
    return message + ("" if source else " ") + " ".join(notes)


def apply_migration(conn: psycopg.Connection[Any], migration: Migration, statements: Sequence[Statement], *,
                    applied_before: int = 0, lock_timeout: str = DEFAULT_STATEMENT_LOCK_TIMEOUT) -> int:
    """Run one file in one transaction and record it in the ledger; returns its duration in milliseconds."""
    import psycopg
    from psycopg import sql

    started = time.monotonic()
    failed: tuple[Statement, psycopg.Error] | None = None
    try:
        with conn.transaction():
            # A file that used SET ROLE or SET search_path without LOCAL must not leak into the next one.
            conn.execute("RESET ROLE")
            conn.execute("RESET search_path")
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))
            for statement in statements:
                try:
                    conn.execute(statement.text.encode("utf-8"), prepare=False)
                except psycopg.Error as error:
                    failed = (statement, error)
                    raise
            conn.execute("RESET ROLE")  # the ledger row is written as the role that runs db.init
            duration_ms = int((time.monotonic() - started) * 1000)
            conn.execute(sql.SQL("INSERT INTO {} (version, checksum, duration_ms) VALUES (%s, %s, %s)").format(
                _ledger_name()), (migration.version, migration.checksum, duration_ms))
    except psycopg.Error as error:
        if failed is not None:
            raise MigrationError(failure_message(migration, failed[0], ServerError.from_psycopg(failed[1]),
                                                 applied_before)) from None
        reason = " ".join(str(error).split())
        raise MigrationError(f"Migration {display_path(migration.path)} could not be committed: {reason}. "
                             "Run `invoke db.status` to see whether it was recorded, then `invoke db.init` "
                             "again.") from None
    return duration_ms


def _collect_warnings(conn: psycopg.Connection[Any], progress: Progress, version: Callable[[], str]) -> None:
    def on_notice(diagnostic: psycopg.errors.Diagnostic) -> None:
        if diagnostic.severity_nonlocalized == "WARNING":
            progress(MigrationEvent("warning", version(), detail=diagnostic.message_primary or ""))

    conn.add_notice_handler(on_notice)


@dataclass(frozen=True)
class MigrationResult:
    """What ``init_database`` did."""

    database: str  # masked URL
    applied: tuple[str, ...]
    already_applied: int
    passwords_set: tuple[str, ...]
    passwords_unchanged: tuple[str, ...]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"database": self.database, "applied": list(self.applied), "already_applied": self.already_applied,
                "passwords_set": list(self.passwords_set), "passwords_unchanged": list(self.passwords_unchanged),
                "seconds": round(self.seconds, 3)}


@contextmanager
def _server_errors(address: DatabaseAddress, doing: str) -> Iterator[None]:
    """Any PostgreSQL error outside a migration file (ledger, lock, passwords) as one clear paragraph."""
    import psycopg

    try:
        yield
    except psycopg.Error as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise TetherError(f"Could not {doing} on {address.masked_url()} as role {address.user}: {reason}. The "
                          "migrations run as an administrative role (the dev stack's superuser, or `postgres` on "
                          "Cloud SQL) that may create schemas and roles.") from None


def inspect_database(address: DatabaseAddress, *, sql_dir: Path | None = None) -> MigrationPlan:
    """Read where a database stands (applied, pending, drift) without changing anything."""
    migrations = load_migrations(sql_dir)
    # Worded for both callers: db.status, and db.init before it applies anything.
    with connect(address, "reading the migration ledger") as conn, \
            _server_errors(address, "read the migration ledger"):
        return plan_migrations(migrations, read_ledger(conn))


def init_database(address: DatabaseAddress, *, role_passwords: Mapping[str, str] | None = None,
                  sql_dir: Path | None = None, lock_wait: float = DEFAULT_LOCK_WAIT,
                  progress: Progress | None = None) -> MigrationResult:
    """Apply the pending migrations in order, each in its own transaction, then set the login roles' passwords.

    Holds the database's migration lock throughout, so concurrent runs apply each file once. Refuses
    (applying nothing) when an applied file changed. ``role_passwords`` overrides the environment
    (TETHER_<ROLE>_PASSWORD); a local database gets generated ones kept in .runtime/role-passwords.json.
    """
    from tether import roles

    report = progress or _ignore
    directory = sql_dir or paths.sql_dir()
    migrations = load_migrations(directory)
    started = time.monotonic()
    current = ""
    with connect(address, "applying migrations") as conn, _server_errors(address, "apply migrations"), \
            migration_lock(conn, lock_wait, report):
        _collect_warnings(conn, report, lambda: current)
        ensure_ledger(conn)
        plan = plan_migrations(migrations, read_ledger(conn))
        if plan.drift:
            raise DriftError(drift_message(plan.drift, address.masked_url(), directory))
        parsed = [(migration, parse_migration(migration)) for migration in plan.pending]
        applied: list[str] = []
        for migration, statements in parsed:
            current = migration.version
            report(MigrationEvent("applying", migration.version))
            duration_ms = apply_migration(conn, migration, statements, applied_before=len(applied))
            applied.append(migration.version)
            report(MigrationEvent("applied", migration.version, duration_ms))
        current = ""
        passwords_set, unchanged = roles.apply_role_passwords(conn, address, role_passwords)
    return MigrationResult(address.masked_url(), tuple(applied), len(plan.applied), passwords_set, unchanged,
                           time.monotonic() - started)
