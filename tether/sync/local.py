"""The local side: the scratch build, the snapshot kept for resets, the swap, and retiring replaced copies.

Names on the local server, for a working database ``dev``:
- ``dev`` is what the developer uses;
- ``dev__tether_snapshot`` is the last synced state: a template nobody connects to (ALLOW_CONNECTIONS
  false), with the sync's state as its comment; resets and incremental syncs copy it;
- ``dev__tether_spare`` is a ready copy of the snapshot, made in the background after each sync and reset and
  labelled with the snapshot contents it holds, so that the next reset is a rename instead of a copy;
- ``dev__tether_<purpose>_<pid>_<stamp>`` are scratch builds and retired copies (see tether.swap), dropped
  by the next run when their process is gone.

Copies use CREATE DATABASE's default strategy, WAL_LOG since PostgreSQL 15 (no checkpoint, no per-file
fsync, which FILE_COPY needs). Replaced databases are
dropped by a detached process once the command is done, because PostgreSQL 15's DROP DATABASE forces a
checkpoint, which would make the command wait for everything it just wrote to reach the disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tether.archive import Replay, Skipped, replay_tolerant, settings_for
from tether.conninfo import DatabaseAddress
from tether.errors import TetherError
from tether.paths import runtime_dir
from tether.redact import server_error
from tether.swap import MAX_IDENTIFIER, SCRATCH_MARK, scratch_name, terminate_sessions
from tether.sync.incremental import SyncState

SNAPSHOT_PURPOSE = "snapshot"
SPARE_PURPOSE = "spare"
REAPER_ENV = "TETHER_SYNC_REAPER"


def database_error(error: psycopg.Error, what: str) -> TetherError:
    """A server's error as one paragraph: what failed, PostgreSQL's message, and that nothing was replaced."""
    message = server_error(error)  # PostgreSQL's message without DETAIL or values
    hint = ""
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        hint = (" The source role needs SELECT on every table it copies; the local role needs CREATEDB (a "
                "superuser is simplest for a local server).")
    return TetherError(f"{what} failed: {message}.{hint} The local database was not replaced; run the command "
                       "again once this is fixed.")


def snapshot_name(target: str) -> str:
    """``<target>__tether_snapshot``: not a scratch name, so leftover cleanup never drops it."""
    name = f"{target}{SCRATCH_MARK}{SNAPSHOT_PURPOSE}"
    if len(name.encode()) > MAX_IDENTIFIER:
        raise TetherError(f"The database name {target!r} is too long to keep a synced snapshot beside it. Use a "
                          "local database name of at most 33 bytes.")
    return name


def spare_name(target: str) -> str:
    """``<target>__tether_spare``: shorter than the snapshot's name, so it fits wherever that one does."""
    snapshot_name(target)
    return f"{target}{SCRATCH_MARK}{SPARE_PURPOSE}"


_ADMIN_SESSIONS: dict[str, psycopg.Connection] = {}
_ADMIN_LOCK = threading.Lock()


def admin_session(admin: DatabaseAddress) -> psycopg.Connection:
    """One autocommit session on the local server's maintenance database, kept for the whole command.

    A sync or reset runs a dozen small statements there; connecting (and authenticating) once saves a
    noticeable part of a reset that takes about a second. ``close_admin_sessions`` ends them.
    """
    key = admin.conninfo()
    with _ADMIN_LOCK:
        conn = _ADMIN_SESSIONS.get(key)
        if conn is None or conn.closed or conn.broken:
            conn = _ADMIN_SESSIONS[key] = psycopg.connect(admin.conninfo(connect_timeout="15"), autocommit=True)
    return conn


@contextmanager
def admin_connect(admin: DatabaseAddress) -> Iterator[psycopg.Connection]:
    """``admin_session`` as a context manager (the session stays open afterwards)."""
    yield admin_session(admin)


def close_admin_sessions() -> None:
    with _ADMIN_LOCK:
        sessions = list(_ADMIN_SESSIONS.values())
        _ADMIN_SESSIONS.clear()
    for conn in sessions:
        conn.close()


def database_oid(admin: DatabaseAddress, name: str) -> int | None:
    with admin_connect(admin) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else None


def create_scratch(admin: DatabaseAddress, name: str, encoding: str) -> None:
    """An empty database from template0, in the source's encoding when the local locale allows it."""
    with admin_connect(admin) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
                sql.Identifier(name), sql.Literal(encoding)))
        except psycopg.errors.InvalidParameterValue:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def read_state(admin: DatabaseAddress, snapshot: str) -> SyncState | None:
    with admin_connect(admin) as conn:
        return _read_state(conn, snapshot)


def _database_comment(conn: psycopg.Connection, name: str) -> tuple[bool, str | None]:
    """Whether ``name`` exists, and its comment."""
    row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                       (name,)).fetchone()
    return (True, row[0]) if row else (False, None)


def _read_state(conn: psycopg.Connection, snapshot: str) -> SyncState | None:
    return SyncState.from_json(_database_comment(conn, snapshot)[1])


def write_state(conn: psycopg.Connection, database: str, state: SyncState) -> None:
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(database),
                                                               sql.Literal(state.to_json())))


def write_state_unless_replaced(admin: DatabaseAddress, snapshot: str, state: SyncState, expected_content: str) -> bool:
    """Write ``state`` unless the snapshot's contents changed since it was read (a sync landed meanwhile).

    That sync's state then stands: it describes what the snapshot holds. Returns whether ``state`` was written.
    """
    with admin_connect(admin) as conn, conn.transaction():
        now = _read_state(conn, snapshot)
        if now is None or now.content_id != expected_content:
            return False
        write_state(conn, snapshot, state)
    return True


def local_horizon(conn: psycopg.Connection) -> int:
    """The next transaction id: every row of a copy made after this has an older ``xmin``."""
    row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def install_snapshot(admin: DatabaseAddress, built: str, target: str, state: SyncState,
                     attempts: int = 20) -> list[str]:
    """Make the finished build the snapshot of ``target``; returns the retired previous snapshot, if any."""
    snapshot = snapshot_name(target)

    def install(conn: psycopg.Connection) -> list[str]:
        terminate_sessions(conn, built)
        with conn.transaction():
            write_state(conn, built, state)
            retired = _rename_snapshot_aside(conn, target)
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(built),
                                                                          sql.Identifier(snapshot)))
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(snapshot)))
        return retired

    return _while_snapshot_in_use(admin, target, "replace", install, attempts)


def retire_snapshot(admin: DatabaseAddress, target: str, attempts: int = 20) -> list[str]:
    """Rename ``target``'s snapshot aside, to be dropped: a sync that keeps none must not leave an older one.

    Returns the retired name (empty when there was no snapshot). If the caller dies before dropping it, the
    next run's clean-up does.
    """
    return _while_snapshot_in_use(admin, target, "retire", lambda conn: _rename_snapshot_aside(conn, target),
                                  attempts)


def _rename_snapshot_aside(conn: psycopg.Connection, target: str) -> list[str]:
    """Give ``target``'s snapshot a scratch "old" name (in the caller's transaction, if any); [that name] or []."""
    snapshot = snapshot_name(target)
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (snapshot,)).fetchone():
        return []
    old = scratch_name(target, "old")
    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(snapshot), sql.Identifier(old)))
    return [old]


def _while_snapshot_in_use(admin: DatabaseAddress, target: str, verb: str,
                           action: Callable[[psycopg.Connection], list[str]], attempts: int) -> list[str]:
    """Run ``action`` on an admin session, again while the snapshot is in use (a db.reset copying it)."""
    with admin_connect(admin) as conn:
        for attempt in range(attempts):
            try:
                return action(conn)
            except psycopg.errors.ObjectInUse:
                time.sleep(0.05 * (attempt + 1))  # a db.reset is copying the snapshot: wait for it
    raise TetherError(f"Could not {verb} the snapshot {snapshot_name(target)!r}: it stays in use (is a db.reset "
                      f"running?). Run the sync again; {target!r} is unchanged.")


def apply_database_settings(admin: DatabaseAddress, name: str, templates: list[str]) -> list[Skipped]:
    """Give the database ``name`` the source database's settings; those the local server refuses (a role or a
    parameter it lacks) are skipped and returned. Only working databases get them: the sync's own sessions on
    the snapshot and the spare must not run under, say, ``default_transaction_read_only``."""
    if not templates:
        return []
    with admin_connect(admin) as conn:
        return replay_tolerant(conn, Replay().extend("SETTING", settings_for(templates, name)))


def allow_connections(admin: DatabaseAddress, name: str, allowed: bool) -> None:
    with admin_connect(admin) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allowed else "false")))


def copy_database(admin: DatabaseAddress, template: str, name: str) -> int:
    """``CREATE DATABASE name TEMPLATE template``; returns the local transaction horizon taken just before."""
    with admin_connect(admin) as conn:
        return _copy_database(conn, template, name)


def _copy_database(conn: psycopg.Connection, template: str, name: str, attempts: int = 20) -> int:
    _compress_wal(conn)
    horizon = local_horizon(conn)
    for attempt in range(attempts):
        try:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)))
            return horizon
        except psycopg.errors.ObjectInUse:
            # A sync is updating the snapshot right now (or someone connected to it): wait a moment.
            time.sleep(0.05 * (attempt + 1))
    raise TetherError(f"Could not copy {template!r}: another session is using it (is a sync running?). Try again "
                      "when it has finished.")


@dataclass(frozen=True)
class SpareLabel:
    """What a spare copy holds: the snapshot contents it was copied from, and the local horizon then."""

    content_id: str
    horizon: int

    def to_json(self) -> str:
        return json.dumps({"content_id": self.content_id, "horizon": self.horizon})

    @classmethod
    def from_comment(cls, text: str | None) -> SpareLabel:
        try:
            data = json.loads(text or "")
            return cls(str(data["content_id"]), int(data["horizon"]))
        except (ValueError, KeyError, TypeError):
            return cls("", 0)  # not ours, or damaged: matches no snapshot


def _spare_label(conn: psycopg.Connection, spare: str) -> SpareLabel | None:
    exists, comment = _database_comment(conn, spare)
    return SpareLabel.from_comment(comment) if exists else None


# After the spare is made, the disk must still hold this many more copies: the next sync builds a new one.
SPARE_HEADROOM_COPIES = 2


def _short_of_room(conn: psycopg.Connection, snapshot: str) -> str | None:
    """Why the server's disk cannot take a spare and still a sync's build, or None (also when it cannot tell)."""
    try:
        size, data_directory = conn.execute("SELECT pg_database_size(%s), current_setting('data_directory')",
                                            (snapshot,)).fetchone() or (0, None)
    except psycopg.Error:
        return None  # not a superuser: the spare is made; PostgreSQL reports a full disk clearly enough
    if not data_directory or not os.path.isdir(data_directory):
        return None  # the server's files are not on this machine's file system (a container, say)
    free = shutil.disk_usage(data_directory).free
    needed = (1 + SPARE_HEADROOM_COPIES) * int(size)
    if free >= needed:
        return None
    return (f"{free / 1e9:.1f} GB free on the server's disk, {needed / 1e9:.1f} GB wanted (the spare and room for "
            "two more copies); resets copy the snapshot instead")


class _SnapshotMoved(Exception):
    """The copy no longer matches what the spare must hold (the text says why)."""


def make_spare(conn: psycopg.Connection, target: str) -> str:
    """Copy the snapshot of ``target`` to its spare name, unless the spare already holds it; says what it did.

    The copy is labelled with the snapshot's content id and kept only if the snapshot still has that id
    once the copy is done (a sync may replace or update the snapshot meanwhile), so a spare never holds
    anything but the contents its label names. ``conn`` is an autocommit session on the maintenance database.
    """
    snapshot, spare = snapshot_name(target), spare_name(target)
    state = _read_state(conn, snapshot)
    if state is None or not state.content_id:
        return "no snapshot (with a content id) to copy"
    label = _spare_label(conn, spare)
    if label is not None and label.content_id == state.content_id:
        return "the spare is current"
    if label is not None:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(spare)))
    short = _short_of_room(conn, snapshot)
    if short:
        return f"skipped: {short}"
    work = scratch_name(target, SPARE_PURPOSE)
    try:
        try:
            # One try (PostgreSQL waits up to 5 s for other sessions to leave): a sync using the snapshot makes
            # the next spare itself when it is done.
            horizon = _copy_database(conn, snapshot, work, attempts=1)
        except TetherError:
            raise _SnapshotMoved("skipped: the snapshot is in use (a running sync makes the next spare)") from None
        with conn.transaction():
            now = _read_state(conn, snapshot)
            if now is None or now.content_id != state.content_id:
                raise _SnapshotMoved("discarded the copy: the snapshot changed while it was copied")
            if _spare_label(conn, spare) is not None:
                raise _SnapshotMoved("discarded the copy: another spare was made meanwhile")
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(work), sql.Literal(SpareLabel(state.content_id, horizon).to_json())))
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(work)))
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(work),
                                                                          sql.Identifier(spare)))
    except BaseException as error:
        with contextlib.suppress(psycopg.Error):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(work)))
        if isinstance(error, _SnapshotMoved):
            return str(error)
        raise
    return "made"


def make_spare_logged(conn: psycopg.Connection, target: str) -> None:
    """``make_spare``, its outcome or failure written to the reaper's log: nobody waits for it to report."""
    try:
        _log(f"spare of {target}: {make_spare(conn, target)}")
    except (psycopg.Error, TetherError) as error:
        message = error.message if isinstance(error, TetherError) else " ".join(str(error).split())
        _log(f"could not make the spare copy of {target}'s snapshot: {message}")


def _log(line: str) -> None:
    path = runtime_dir() / "sync" / "reaper.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def take_spare(admin: DatabaseAddress, target: str, state: SyncState,
               holding: str | None = None) -> tuple[str, int] | None:
    """Claim the spare if it holds ``holding`` (default: ``state``'s contents) while the snapshot holds ``state``'s.

    Returns (the spare's new scratch name, its horizon), or None. A reset claims a spare of the snapshot as it
    is; an incremental sync, one of the snapshot it has just updated (the spare then gets the changed tables).
    """
    wanted = state.content_id if holding is None else holding
    if not state.content_id or not wanted:
        return None
    spare, work = spare_name(target), scratch_name(target, "reset")
    with admin_connect(admin) as conn:
        try:
            with conn.transaction():
                label = _spare_label(conn, spare)
                current = _read_state(conn, snapshot_name(target))  # not the one read before the prompt
                if label is None or current is None or (label.content_id, current.content_id) != (
                        wanted, state.content_id):
                    return None
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(spare),
                                                                              sql.Identifier(work)))
                conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(work)))
        except (psycopg.errors.ObjectInUse, psycopg.errors.InvalidCatalogName):
            return None  # being made, or taken by another reset right now: copy the snapshot instead
    return work, label.horizon


def has_spare(admin: DatabaseAddress, target: str, state: SyncState | None = None) -> bool:
    """Whether ``target`` has a spare (holding ``state``'s snapshot, if given)."""
    with admin_connect(admin) as conn:
        label = _spare_label(conn, spare_name(target))
    return label is not None and (state is None or label.content_id == state.content_id)


def _compress_wal(conn: psycopg.Connection) -> None:
    """A database copy writes every page to the WAL; lz4 (superusers only) cuts that by half or more."""
    for method in ("lz4", "on"):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET wal_compression = {}").format(sql.Literal(method)))
            return
        except psycopg.Error:
            continue


def drop_now(admin: DatabaseAddress, names: list[str]) -> None:
    with admin_connect(admin) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drop_in_background(admin: DatabaseAddress, names: list[str], spare_for: str | None = None) -> None:
    """Drop ``names``, then make ``spare_for``'s spare, from a detached process (log: .runtime/sync/reaper.log)."""
    if not names and not spare_for:
        return
    log = runtime_dir() / "sync" / "reaper.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # The detached process needs only the conninfo (password included, if any) and a passfile, if any.
    env = {key: value for key, value in os.environ.items()
           if key in ("PATH", "HOME", "LANG", "LC_ALL", "PGPASSFILE", "TETHER_PROJECT_ROOT", "TETHER_RUNTIME_DIR",
                      "PYTHONPATH", "VIRTUAL_ENV")}
    env[REAPER_ENV] = json.dumps({"conninfo": admin.conninfo(connect_timeout="15"), "names": names,
                                  "spare_for": spare_for})
    with open(log, "a") as handle:
        subprocess.Popen([sys.executable, "-m", "tether.sync.local"], env=env, stdin=subprocess.DEVNULL,
                         stdout=handle, stderr=handle, start_new_session=True, cwd=str(Path.cwd()))


def _reap() -> int:
    """Entry point of the detached process: drop the databases named in $TETHER_SYNC_REAPER, make the spare."""
    job = json.loads(os.environ.pop(REAPER_ENV, "{}") or "{}")
    failures = 0
    for name in job.get("names", []):
        try:
            with psycopg.connect(job["conninfo"], autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.Error as error:
            failures += 1
            _log(f"could not drop {name}: {' '.join(str(error).split())}")
    # Dropped first: the disk (and, on some machines, the memory) the old copies held goes to the spare.
    if job.get("spare_for"):
        try:
            with psycopg.connect(job["conninfo"], autocommit=True) as conn:
                make_spare_logged(conn, job["spare_for"])
        except psycopg.Error as error:
            failures += 1
            _log(f"could not make the spare copy of {job['spare_for']}'s snapshot: {' '.join(str(error).split())}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_reap())
