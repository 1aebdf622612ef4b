"""The structure of the copy: one pg_dump of the schema in the snapshot, restored before and after the data.

Pre-data (types, tables, functions, views) goes in as one transaction before the rows; post-data
(indexes, constraints, foreign keys, triggers, policies) goes in after them with ``pg_restore --jobs``,
which builds indexes in parallel and each constraint after the index it needs. Privileges, default
privileges and policies name roles, which the local server may lack: they are replayed one by one and
those naming a missing role are skipped and reported instead of failing the sync.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from tether.conninfo import DatabaseAddress
from tether.errors import CommandFailed, TetherError
from tether.pgtools import connection_argument, program_env
from tether.sync.redact import redact
from tether.sync.snapshot import LOCAL_SETTINGS, SOURCE_SETTINGS, session_options

# What a local copy leaves out: tablespaces, security labels, and publications and subscriptions (a
# restored subscription would try to connect to its publisher).
DUMP_SKIPS = ("--no-tablespaces", "--no-security-labels", "--no-publications", "--no-subscriptions")
RESTORE_SKIPS = ("--no-owner", "--no-privileges", "--no-tablespaces", "--no-security-labels",
                 "--no-publications", "--no-subscriptions")
TOLERANT_KINDS = ("DEFAULT ACL", "ACL", "POLICY", "EVENT TRIGGER")
PG_CLASS = 1259  # pg_class's oid: the catalog of tables, views, sequences and indexes
_TOC_LINE = re.compile(r"^(?P<id>\d+); (?P<catalog>\d+) (?P<oid>\d+) (?P<rest>.*)$")
_ENTRY_HEADER = re.compile(r"^--\n-- (?:Data for )?Name: [^\n]*; Type: (?P<kind>[^;\n]*); Schema: [^\n]*\n--\n",
                           re.MULTILINE)
# "role ... does not exist", and "must be owner of extension ..." (a local user who is not a superuser)
TOLERATED_ERRORS = {"42704": "missing role", "42501": "not allowed locally"}


@dataclass(frozen=True)
class TocEntry:
    line: str
    catalog: int
    oid: int
    rest: str  # "TYPE schema name owner"
    dump_id: int = 0
    depends_on: tuple[int, ...] = ()  # dump ids (from ``pg_restore --list --verbose``)

    def kind(self) -> str:
        for kind in ("FK CONSTRAINT", *TOLERANT_KINDS, "COMMENT"):
            if self.rest.startswith(kind + " "):
                return kind
        return self.rest.split(" ", 1)[0]

    @property
    def tolerant(self) -> bool:
        """Entries that may name roles missing locally, or need a superuser or an extension's owner to apply."""
        kind = self.kind()
        return kind in TOLERANT_KINDS or (kind == "COMMENT" and self.rest.startswith("COMMENT - EXTENSION "))


def pg_dump_argv(program: Path | str, source: DatabaseAddress, snapshot_id: str, archive: Path | str,
                 exclude_patterns: Sequence[str] = ()) -> list[str]:
    """One schema-only custom archive of the source, read in the sync's snapshot."""
    return [str(program), f"--dbname={connection_argument(source)}", "--no-password", "--format=custom",
            "--schema-only", f"--snapshot={snapshot_id}", "--compress=0", "--lock-wait-timeout=60000",
            *DUMP_SKIPS, *(f"--exclude-table={pattern}" for pattern in exclude_patterns), f"--file={archive}"]


def pg_restore_argv(program: Path | str, dest: DatabaseAddress, archive: Path | str, *, section: str,
                    list_file: Path | str, jobs: int = 1) -> list[str]:
    """``pg_restore`` of one section of the archive, limited to the entries in ``list_file``."""
    argv = [str(program), f"--dbname={connection_argument(dest)}", "--no-password", *RESTORE_SKIPS,
            "--exit-on-error", f"--section={section}", f"--use-list={list_file}"]
    argv.append(f"--jobs={jobs}" if jobs > 1 else "--single-transaction")
    return [*argv, str(archive)]


def pg_restore_script_argv(program: Path | str, archive: Path | str, list_file: Path | str | None = None) -> list[str]:
    """The archive (or the entries in ``list_file``) as an SQL script on stdout, connecting nowhere."""
    argv = [str(program), "--file=-", "--no-owner", "--no-tablespaces"]
    if list_file is not None:
        argv.append(f"--use-list={list_file}")
    return [*argv, str(archive)]


def pg_restore_list_argv(program: Path | str, archive: Path | str) -> list[str]:
    """The archive's table of contents with each entry's dependencies (``--verbose``)."""
    return [str(program), "--list", "--verbose", str(archive)]


def source_env(source: DatabaseAddress) -> dict[str, str]:
    env = program_env(source, readonly=True, base=os.environ)
    env["PGOPTIONS"] = session_options(source, SOURCE_SETTINGS)
    return env


_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|REDISCLI_AUTH", re.IGNORECASE)


def offline_env() -> dict[str, str]:
    """The environment for pg_restore runs that read an archive and connect nowhere: no secrets, no PG* target."""
    return {key: value for key, value in os.environ.items()
            if not _SECRET_NAME.search(key) and not (key.startswith("PG") and key != "PGPASSFILE")}


def local_env(dest: DatabaseAddress) -> dict[str, str]:
    env = program_env(dest, base=os.environ)
    env["PGOPTIONS"] = session_options(dest, LOCAL_SETTINGS)
    return env


def run_program(argv: list[str], env: dict[str, str], what: str, hint: str = "") -> str:
    """Run a client program; a failure is a CommandFailed carrying the tail of its stderr."""
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CommandFailed(what, result.returncode, redact(result.stderr), hint)  # no row's values in a message
    return result.stdout


def parse_toc(listing: str) -> list[TocEntry]:
    """Entries of ``pg_restore --list`` (with ``--verbose``, each with the dump ids it depends on)."""
    entries: list[TocEntry] = []
    for line in listing.splitlines():
        match = _TOC_LINE.match(line)
        if match:
            entries.append(TocEntry(line, int(match["catalog"]), int(match["oid"]), match["rest"], int(match["id"])))
        elif line.startswith(";\tdepends on:") and entries:
            depends = tuple(int(part) for part in line.split(":", 1)[1].split())
            entries[-1] = replace(entries[-1], depends_on=entries[-1].depends_on + depends)
    return entries


def first_wave(entries: Sequence[TocEntry], tables: set[int]) -> set[int]:
    """Dump ids to restore first so that ``tables`` (relation oids) can be filled while the rest is created.

    That is each table's entry and everything it depends on, then, until nothing changes, every entry
    that depends on one of those tables (or on an entry added so) and on nothing outside the set:
    sequences, defaults and comments of those tables, views on them alone. Everything else comes in the
    second wave, in archive order.
    """
    by_id = {entry.dump_id: entry for entry in entries}
    anchors = {entry.dump_id for entry in entries if entry.catalog == PG_CLASS and entry.oid in tables
               and entry.kind() == "TABLE"}
    wave = set(anchors)
    pending = list(wave)
    while pending:
        for dependency in by_id[pending.pop()].depends_on:
            if dependency in by_id and dependency not in wave:
                wave.add(dependency)
                pending.append(dependency)
    changed = True
    while changed:
        changed = False
        for entry in entries:
            depends = set(entry.depends_on)
            if entry.dump_id not in wave and not entry.tolerant and depends & anchors and depends <= wave:
                wave.add(entry.dump_id)
                anchors.add(entry.dump_id)
                changed = True
    return wave


def split_toc(entries: Iterable[TocEntry], skipped_constraints: set[int]) -> tuple[list[TocEntry], list[TocEntry]]:
    """(entries pg_restore applies, entries replayed one by one); foreign keys to excluded tables are dropped."""
    main: list[TocEntry] = []
    tolerant: list[TocEntry] = []
    for entry in entries:
        if entry.kind() == "FK CONSTRAINT" and entry.oid in skipped_constraints:
            continue
        (tolerant if entry.tolerant else main).append(entry)
    return main, tolerant


def write_list(path: Path, entries: Iterable[TocEntry]) -> Path:
    path.write_text("".join(entry.line + "\n" for entry in entries))
    return path


def sql_only(script: str) -> str:
    """The script without psql meta-commands: recent pg_dump releases wrap it in ``\\restrict KEY`` lines."""
    return "\n".join(line for line in script.splitlines() if not line.startswith("\\"))


def schema_digest(script: str) -> str:
    """A fingerprint of the schema script, ignoring lines that name program versions or carry random keys."""
    kept = [line for line in sql_only(script).splitlines() if line.strip() and not line.startswith("-- Dumped ")]
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()


def split_script(script: str) -> tuple[str, list[tuple[str, str]]]:
    """(prologue of SET commands, [(entry type, its SQL)]) from a pg_restore script."""
    matches = list(_ENTRY_HEADER.finditer(script))
    if not matches:
        return script, []
    prologue = script[:matches[0].start()]
    chunks = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(script)
        body = script[match.end():end].strip()
        if body:
            chunks.append((match["kind"], body))
    return prologue, chunks


def statements_of(kind: str, body: str) -> list[str]:
    """ACL entries are one GRANT/REVOKE per line; anything else is replayed as a whole."""
    lines = [line for line in body.splitlines() if line.strip() and not line.startswith("--")]
    if kind in ("ACL", "DEFAULT ACL") and all(line.rstrip().endswith(";") for line in lines):
        return lines
    return [body]


def replay_tolerant(conn: psycopg.Connection, script: str) -> list[str]:
    """Apply privileges and policies; statements naming a role the local server lacks are skipped and returned."""
    prologue, chunks = split_script(sql_only(script))
    skipped: list[str] = []
    if not chunks:
        return skipped
    with conn.transaction():
        conn.execute(prologue)
        try:
            with conn.transaction():
                conn.execute("\n".join(body for _, body in chunks))
            return skipped
        except (psycopg.errors.UndefinedObject, psycopg.errors.InsufficientPrivilege):
            pass  # some role is missing: replay one statement at a time to keep all the others
        for kind, body in chunks:
            for statement in statements_of(kind, body):
                try:
                    with conn.transaction():
                        conn.execute(statement)
                except psycopg.Error as error:
                    if error.sqlstate not in TOLERATED_ERRORS:
                        raise TetherError(f"Could not apply {kind.lower()} `{_one_line(statement)}` locally: "
                                          f"{_one_line(str(error))}") from None
                    skipped.append(f"{_one_line(statement)} ({_one_line(str(error))})")
    return skipped


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"
