"""PostgreSQL dumps with manifests, and restores that swap a verified copy in only once it is complete.

A dump is written under a hidden temporary name and renamed into ``dumps/`` when pg_dump succeeded;
its manifest (versions, size, sha256, row estimates) is written last. A restore checks the manifest,
builds a scratch database beside the target and swaps it in (``tether.swap``), so a failed or killed
restore leaves the target exactly as it was.

Assumption for restores: the target's user may create databases and rename the target, and connects
to the ``postgres`` database for that (true for the local dev servers, whose user owns everything).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tether import archive as archive_toc
from tether import dump_manifest as manifests
from tether import pgtools, swap
from tether.conninfo import DatabaseAddress, libpq_reason
from tether.console import confirm
from tether.dump_manifest import DumpIntegrityError
from tether.errors import CommandFailed, ConfigError, TetherError, ToolMissing
from tether.native import binaries
from tether.native.binaries import client_install_hint, client_program
from tether.paths import dumps_dir
from tether.secrets import mask_text
from tether.workdirs import private_workdir

ProgressCallback = Callable[[int], None]
"""Called now and then with the bytes written so far (dump file size, or the restored database's size)."""

EXTENSIONS = {"custom": ".dump", "directory": ".dir"}
POLL_SECONDS = 0.2
_USER_RELATIONS = """
    SELECT n.nspname, c.relname, c.reltuples::bigint
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm')
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY 1, 2
"""


@dataclass(frozen=True)
class ServerInfo:
    version: str
    version_num: int
    row_estimates: dict[str, int | None]

    @property
    def major(self) -> int:
        return pgtools.server_major(self.version_num)


@dataclass(frozen=True)
class DumpResult:
    path: Path
    manifest: dict[str, Any]
    pruned: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "pruned": self.pruned, **self.manifest}


@dataclass(frozen=True)
class RestoreResult:
    archive: Path
    database: str
    target: str  # masked URL
    duration_seconds: float
    tables: int
    disconnected_sessions: int
    cleaned_leftovers: list[str]
    skipped: list[str] = field(default_factory=list)  # privileges, owners, labels the local server refused
    settings_skipped: list[str] = field(default_factory=list)  # database settings it refused

    def summary(self) -> dict[str, Any]:
        return {"archive": str(self.archive), "database": self.database, "target": self.target,
                "duration_seconds": self.duration_seconds, "tables": self.tables,
                "disconnected_sessions": self.disconnected_sessions, "cleaned_leftovers": self.cleaned_leftovers,
                "skipped": self.skipped, "settings_skipped": self.settings_skipped}


@dataclass(frozen=True)
class DumpListing:
    name: str
    kind: str
    database: str | None
    format: str | None
    size_bytes: int
    created: str | None
    verified: bool
    problem: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "database": self.database, "format": self.format,
                "size_bytes": self.size_bytes, "created": self.created, "verified": self.verified,
                "problem": self.problem}


# --- running programs -----------------------------------------------------------------------------------


def _child_setup(parent: int) -> Callable[[], None]:
    """For ``preexec_fn``: the child's files are private, and the child dies with us.

    Dumps hold production data, so they are 0600 from their first byte; and a killed run must stop
    writing at once rather than leave pg_dump or pg_restore running on its own.
    """

    def arrange() -> None:
        os.umask(0o077)
        if sys.platform.startswith("linux"):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
            if os.getppid() != parent:  # we died between fork and prctl: nobody is left to wait for it
                os._exit(1)

    return arrange


def run_with_progress(argv: Sequence[str], env: dict[str, str], what: str, *, hint: str = "",
                      poll: Callable[[], int] | None = None, on_progress: ProgressCallback | None = None,
                      secrets: Sequence[str | None] = (), advice: Callable[[str], str] | None = None) -> None:
    """Run ``argv`` to completion, reporting ``poll()`` every so often; a non-zero exit is ``CommandFailed``
    (``advice`` turns the program's error output into a sentence for the user, put before ``hint``)."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=stderr, preexec_fn=_child_setup(os.getpid()))
        try:
            while True:
                try:
                    returncode = process.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if poll is not None and on_progress is not None:
                        on_progress(poll())
        except BaseException:
            process.kill()
            process.wait()
            raise
        stderr.seek(0)
        errors = stderr.read().decode("utf-8", "replace")
    if returncode != 0:
        told = advice(errors) if advice is not None else ""
        raise CommandFailed(what, returncode, mask_text(errors, secrets), " ".join(filter(None, (told, hint))))


def dump_advice(errors: str) -> str:
    """What to do about a pg_dump failure whose cause a user may not recognise from pg_dump's own words."""
    if "row-level security" in errors:
        return ("The role is subject to row-level security on that table, so it cannot read every row, and a dump "
                "of only the rows it may see would be an incomplete backup (pg_dump refuses rather than make one). "
                "Dump as the table's owner, a superuser, or a role with BYPASSRLS.")
    if "permission denied" in errors:
        return ("The role cannot read everything in the database. Dump as a role that can (the database owner, or "
                "one granted SELECT on every table and sequence, e.g. a member of pg_read_all_data).")
    return ""


def _program_version(program: Path) -> tuple[str, int]:
    result = subprocess.run([str(program), "--version"], capture_output=True, text=True, check=False)
    try:
        return pgtools.parse_program_version(result.stdout)
    except ValueError:
        raise ToolMissing(program.name, f"{program} did not report a version; reinstall it") from None


# --- dumping --------------------------------------------------------------------------------------------


def _connect(address: DatabaseAddress, *, readonly: bool = False) -> psycopg.Connection:
    extra = {"connect_timeout": "10"}
    options = pgtools.session_options(address, readonly=readonly)
    if options:
        extra["options"] = options
    try:
        return psycopg.connect(address.conninfo(**extra), autocommit=True)
    except psycopg.OperationalError as error:
        raise TetherError(f"Cannot connect to {address.masked_url()}: "
                          f"{libpq_reason(error, address.password)} Check that the server runs "
                          "(`invoke status` for the dev stack) and that the address is right.") from None


def server_info(address: DatabaseAddress) -> ServerInfo:
    """The server's version and each user table's row estimate, read in a read-only session."""
    with _connect(address, readonly=True) as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        version_num = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        rows = conn.execute(_USER_RELATIONS).fetchall()
    # reltuples is -1 for a table never vacuumed or analyzed (PostgreSQL 14+): no estimate, not zero rows.
    # Tables no dump carries (the anonymization key) are not expected back either.
    estimates = {f"{schema}.{table}": (int(tuples) if tuples >= 0 else None) for schema, table, tuples in rows
                 if f"{schema}.{table}" not in pgtools.NEVER_DUMPED}
    return ServerInfo(version, version_num, estimates)


def pg_dump_for(server: ServerInfo, address: DatabaseAddress) -> Path:
    """A pg_dump at least as new as the server: an older one aborts with "server version mismatch"."""
    try:
        return client_program("pg_dump", min_major=server.major)
    except ToolMissing:
        raise ToolMissing(
            f"pg_dump {server.major} or newer",
            f"{address.masked_url()} runs PostgreSQL {server.version}, and pg_dump refuses to dump a server newer "
            f"than itself (\"server version mismatch\"); no pg_dump of major version {server.major} or newer was "
            f"found in {binaries.POSTGRES_LIB}/*/bin, pg_config --bindir or PATH. To fix it, "
            f"{client_install_hint(server.major)}.") from None


def dump_label(spec: str, address: DatabaseAddress) -> str:
    """The name dumps of ``spec`` are filed under: ``dev``, ``test``, ``prod``, or a URL's database name."""
    return manifests.safe_label(spec if "://" not in spec else address.database)


def dump_database(address: DatabaseAddress, label: str, options: pgtools.DumpOptions | None = None, *,
                  keep: int | None = None, on_progress: ProgressCallback | None = None,
                  directory: Path | None = None) -> DumpResult:
    """Dump ``address`` into ``dumps/<label>-<UTC stamp>.<ext>`` with a manifest; never writes to the database.

    The session is read-only (``default_transaction_read_only``), which is what makes dumping
    production safe. ``keep`` prunes older dumps of ``label`` afterwards.
    """
    options = options or pgtools.DumpOptions()
    problems = options.problems()
    if keep is not None and keep < 1:
        problems.append(f"--keep must be at least 1 (the dump just made is always kept), not {keep}")
    if problems:
        raise ConfigError("Cannot dump with these options: " + "; ".join(problems) + ".")
    directory = directory or dumps_dir()
    manifests.clean_partials(directory)
    created = datetime.now(UTC)
    started = time.monotonic()
    server = server_info(address)
    program = pg_dump_for(server, address)
    program_version, _ = _program_version(program)
    final = manifests.unique_artifact(directory, label, created, EXTENSIONS[options.format])
    partial = manifests.partial_path(final)
    argv = pgtools.pg_dump_argv(program, address, options, partial)
    env = pgtools.program_env(address, readonly=True, base=os.environ)
    try:
        run_with_progress(argv, env, f"pg_dump of {address.masked_url()}", poll=lambda: manifests.size_of(partial),
                          on_progress=on_progress, secrets=[address.password],
                          hint="Nothing was written to dumps/; the database was only read.", advice=dump_advice)
        manifests.restrict(partial)
        size = manifests.size_of(partial)
        checksum = manifests.sha256_of(partial)
        os.replace(partial, final)
    except BaseException:
        manifests.remove_artifact(partial)
        raise
    manifest = {
        "kind": "postgres",
        "database": label,
        "source": address.masked_url(),
        "created": manifests.utc_iso(created),
        "duration_seconds": round(time.monotonic() - started, 3),
        "format": options.format,
        "size_bytes": size,
        "sha256": checksum,
        "server_version": server.version,
        "server_version_num": server.version_num,
        "pg_dump": str(program),
        "pg_dump_version": program_version,
        "options": options.as_dict(),
        "row_estimates": server.row_estimates,
    }
    manifest = manifests.write_manifest(final, manifest)
    pruned = prune_dumps(label, keep, directory) if keep else []
    return DumpResult(final, manifest, pruned)


# --- verifying, listing, pruning ------------------------------------------------------------------------


def resolve_dump_path(name: str | Path) -> Path:
    """``name`` as given, or as a file in ``dumps/``; a missing one is a clear error."""
    path = Path(name)
    if path.exists():
        return path.resolve()
    in_dumps = dumps_dir() / path.name
    if in_dumps.exists():
        return in_dumps
    raise ConfigError(f"There is no dump {str(name)!r} (looked in the current directory and in {dumps_dir()}). "
                      "List the dumps with `invoke db.dumps`.")


def verify_dump(path: Path) -> dict[str, Any]:
    """Check a dump against its manifest (size and sha256); returns the manifest or raises ``DumpIntegrityError``."""
    return manifests.verify(path)


def _artifacts(directory: Path) -> list[Path]:
    """Dumps and snapshots in ``directory``: everything that is neither a manifest nor a partial."""
    return sorted(entry for entry in directory.iterdir()
                  if not entry.name.startswith(".") and not entry.name.endswith(manifests.MANIFEST_SUFFIX))


def list_dumps(directory: Path | None = None, *, verify: bool = True) -> list[DumpListing]:
    """Every dump and snapshot in ``dumps/``, newest first, checked against its manifest when ``verify``."""
    directory = directory or dumps_dir()
    listings: list[DumpListing] = []
    for artifact in _artifacts(directory):
        manifest: dict[str, Any] = {}
        problem: str | None = None
        try:
            manifest = manifests.verify(artifact) if verify else manifests.read_manifest(artifact)
        except DumpIntegrityError as error:
            problem = error.message
            try:
                manifest = manifests.read_manifest(artifact)
            except DumpIntegrityError:
                manifest = {}
        created = manifest.get("created")
        if not created:
            created = manifests.utc_iso(datetime.fromtimestamp(artifact.stat().st_mtime, UTC))
        listings.append(DumpListing(
            name=artifact.name, kind=str(manifest.get("kind", "unknown")), database=manifest.get("database"),
            format=manifest.get("format"), size_bytes=manifests.size_of(artifact), created=created,
            verified=verify and problem is None, problem=problem))
    listings.sort(key=lambda listing: (listing.created or "", listing.name), reverse=True)
    return listings


def prune_dumps(label: str, keep: int, directory: Path | None = None) -> list[str]:
    """Delete all but the ``keep`` newest PostgreSQL dumps of ``label`` (by manifest); returns their names."""
    if keep < 1:
        raise ConfigError(f"--keep must be at least 1, not {keep}.")
    directory = directory or dumps_dir()
    mine: list[tuple[str, str, Path]] = []
    for artifact in _artifacts(directory):
        try:
            manifest = manifests.read_manifest(artifact)
        except DumpIntegrityError:
            continue  # not ours to judge: never delete what we cannot identify
        if manifest.get("kind") == "postgres" and manifest.get("database") == label:
            mine.append((str(manifest.get("created", "")), artifact.name, artifact))
    mine.sort(reverse=True)
    pruned: list[str] = []
    for _, name, artifact in mine[keep:]:
        # The manifest goes first: an artifact without one is never used, a manifest without one would be.
        manifests.manifest_path(artifact).unlink(missing_ok=True)
        manifests.remove_artifact(artifact)
        pruned.append(name)
    return pruned


# --- restoring ------------------------------------------------------------------------------------------


def _create_scratch(admin: DatabaseAddress, scratch: str, target: str) -> None:
    """Create ``scratch`` from template0, with the old target's encoding and locale when there is one."""
    with _connect(admin) as conn:
        row = conn.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = %s",
            (target,)).fetchone()
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch))
        if row:
            statement = sql.SQL("{} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                statement, sql.Literal(row[0]), sql.Literal(row[1]), sql.Literal(row[2]))
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            raise TetherError(
                f"{admin.user!r} may not create databases on {admin.host}:{admin.port}, which a restore needs (it "
                "builds a copy beside the target and swaps it in). Restore as the database's owner with CREATEDB, "
                "or as a superuser.") from None


def _missing_relations(scratch: DatabaseAddress, expected: Sequence[str]) -> list[str]:
    with _connect(scratch) as conn:
        present = {f"{schema}.{table}" for schema, table, _ in conn.execute(_USER_RELATIONS).fetchall()}
    return [name for name in expected if name not in present]


def _database_size(conn: psycopg.Connection, name: str) -> int:
    try:
        row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
    except psycopg.Error:
        return 0  # progress is cosmetic; never fail a restore over it
    return int(row[0]) if row and row[0] is not None else 0


def restore_dump(archive: str | Path, target: DatabaseAddress, *, jobs: int = 1, yes: bool = False,
                 on_progress: ProgressCallback | None = None) -> RestoreResult:
    """Restore a verified dump into ``target`` by building a scratch copy and swapping it in.

    pg_restore applies everything but owners, privileges, policies, security labels, publications and event
    triggers, with ``--exit-on-error``: any error fails the restore and the target is untouched. Those are then
    replayed in dependency order (``tether.archive``), skipping and listing what names a role the local server
    lacks; every REVOKE applies, so nothing ends up more open than where the dump was made. The database's
    own settings (``ALTER DATABASE ... SET``) follow. A non-local target is confirmed first (refused under CI
    without ``yes``) before anything connects to it.
    """
    started = time.monotonic()
    path = resolve_dump_path(archive)
    manifest = verify_dump(path)
    if manifest.get("kind") != "postgres":
        raise ConfigError(f"{path.name} is a {manifest.get('kind', 'unknown')} snapshot, not a PostgreSQL dump.")
    if manifest.get("options", {}).get("data_only"):
        raise ConfigError(
            f"{path.name} was made with --data-only: it has no tables to put the rows in, and a restore builds a "
            "fresh database. Restore a full dump instead (or load this one yourself with pg_restore --data-only "
            "into a database that has the schema).")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, not {jobs}.")
    if not target.is_local:
        confirm(f"Replace the database {target.database!r} on {target.host}:{target.port} (not this machine) with "
                f"the dump {path.name}?", yes=yes)
    _, dump_major = pgtools.parse_program_version(str(manifest.get("pg_dump_version", "0")))
    program = client_program("pg_restore", min_major=dump_major)
    admin = target.with_database("postgres")
    with _connect(admin):
        pass  # an unreachable server is one clear message here, not a traceback from deeper down
    cleaned = swap.cleanup_leftovers(admin, target.database)
    scratch_db = swap.scratch_name(target.database, "restore")
    scratch = target.with_database(scratch_db)
    unchanged = f"{target.database!r} is unchanged."
    with private_workdir("restore") as work:
        listing = archive_toc.run_program(archive_toc.pg_restore_list_argv(program, path), archive_toc.offline_env(),
                                          f"pg_restore --list {path.name}")
        toc = archive_toc.parse_toc(listing)
        order = archive_toc.phases(toc.entries)
        parallel, serial = archive_toc.split_attachments(order.main) if jobs > 1 else (order.main, [])
        main_list = archive_toc.write_list(Path(work) / "main.list", parallel)
        serial_list = archive_toc.write_list(Path(work) / "serial.list", serial)
        later = archive_toc.read_archive(program, path, toc, order, Path(work))
        _create_scratch(admin, scratch_db, target.database)
        try:
            with _connect(admin) as progress_conn:
                run_with_progress(
                    pgtools.pg_restore_argv(program, scratch, path, jobs=jobs, use_list=main_list),
                    pgtools.program_env(scratch, base=os.environ),
                    f"pg_restore of {path.name}",
                    poll=lambda: _database_size(progress_conn, scratch_db), on_progress=on_progress,
                    secrets=[target.password],
                    hint=f"{unchanged} If the error names an extension or a library that exists only where the dump "
                         "was made, install it locally and run the restore again.")
                if serial:
                    run_with_progress(pgtools.pg_restore_argv(program, scratch, path, use_list=serial_list),
                                      pgtools.program_env(scratch, base=os.environ),
                                      f"pg_restore of {path.name} (partition index attachments)",
                                      secrets=[target.password], hint=unchanged)
            with _connect(scratch) as conn:
                skipped = archive_toc.replay_after_restore(conn, later)
            with _connect(admin) as conn:
                settings_skipped = archive_toc.replay_tolerant(
                    conn, archive_toc.Replay().extend("SETTING", archive_toc.settings_for(later.settings, scratch_db)))
            expected = list(manifest.get("row_estimates", {}))
            missing = _missing_relations(scratch, expected)
            if missing:
                raise TetherError(
                    f"pg_restore finished but {len(missing)} table(s) of the dump are missing from the restored copy "
                    f"({', '.join(missing[:5])}{'…' if len(missing) > 5 else ''}). {unchanged}")
        except TetherError as error:
            with contextlib.suppress(psycopg.Error):  # if it fails, the next run's cleanup_leftovers drops it
                swap.drop_database(admin, scratch_db)
            if unchanged not in error.message:
                error.message = f"{error.message} {unchanged}"
            raise
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                swap.drop_database(admin, scratch_db)
            raise
    disconnected = swap.swap_in(admin, scratch_db, target.database)
    return RestoreResult(
        archive=path, database=target.database, target=target.masked_url(),
        duration_seconds=round(time.monotonic() - started, 3), tables=len(expected),
        disconnected_sessions=disconnected, cleaned_leftovers=cleaned,
        skipped=[str(item) for item in skipped], settings_skipped=[str(item) for item in settings_skipped])
