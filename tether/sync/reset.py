"""``db.reset``: the local database back to the last synced state, from the snapshot the sync kept.

The snapshot's spare copy, when it is there and current, is renamed in (a fraction of a second); otherwise
the snapshot is copied (``CREATE DATABASE ... TEMPLATE``, about a second per 250 MB). Either way a new spare
is made in the background afterwards, for the next reset.
"""

from __future__ import annotations

import time
import uuid

import psycopg

from tether.conninfo import DatabaseAddress
from tether.console import confirm
from tether.errors import TetherError
from tether.swap import cleanup_leftovers, scratch_name, swap_names
from tether.sync import local as localdb
from tether.sync.incremental import SyncState
from tether.sync.safety import check_local, inspect_local
from tether.sync.sequences import apply_sequences, local_sequences
from tether.sync.snapshot import connect_local
from tether.sync.summary import ResetSummary


def reset(dest: DatabaseAddress, *, yes: bool = False, allow_remote_dest: bool = False,
          drop_retired: str = "background", spare: bool = True) -> ResetSummary:
    """Replace ``dest`` with a copy of the state its last sync kept (local changes are lost: asks first).

    ``spare``: keep a ready copy of the snapshot for the next reset (one more copy's worth of disk).
    """
    try:
        return _reset(dest, yes, allow_remote_dest, drop_retired, spare)
    except psycopg.Error as error:
        raise localdb.database_error(error, "The reset") from None
    finally:
        localdb.close_admin_sessions()


def _reset(dest: DatabaseAddress, yes: bool, allow_remote_dest: bool, drop_retired: str,
           spare: bool) -> ResetSummary:
    started = time.perf_counter()
    check_local(dest, allow_remote_dest)
    local = inspect_local(dest)
    snapshot = localdb.snapshot_name(dest.database)
    state = localdb.read_state(local.maintenance, snapshot)
    if state is None:
        raise TetherError(f"There is no synced state to reset {dest.database!r} to: {snapshot!r} does not exist on "
                          f"{dest.masked_url()} (or was made by another version of tether). Run "
                          "`invoke sync-prod` first (without --no-snapshot); it keeps that snapshot for db.reset.")
    confirm(f"Reset the local database {dest.database!r} to the sync of {state.synced_at}? Changes made to it "
            "since are lost.", yes=yes)
    cleanup_leftovers(local.maintenance, dest.database)
    state = localdb.read_state(local.maintenance, snapshot) or state  # a sync may have landed during the prompt
    disconnected, _, from_spare = reset_from_snapshot(local.maintenance, dest, state, drop_retired, spare)
    return ResetSummary(dest=dest.masked_url(), snapshot_database=snapshot, synced_at=state.synced_at,
                        seconds=time.perf_counter() - started, sessions_disconnected=disconnected,
                        from_spare=from_spare)


def reset_from_snapshot(admin: DatabaseAddress, dest: DatabaseAddress, state: SyncState, drop_retired: str,
                        spare: bool = True) -> tuple[int, list[str], bool]:
    """Replace ``dest`` by a fresh copy of its snapshot, sequences as last synced.

    Returns (sessions disconnected, retired databases, whether the spare was used).
    """
    snapshot = localdb.snapshot_name(dest.database)
    started_from = state.content_id
    taken = localdb.take_spare(admin, dest.database, state) if spare else None
    work = taken[0] if taken else scratch_name(dest.database, "reset")
    try:
        horizon = taken[1] if taken else localdb.copy_database(admin, snapshot, work)
        if not state.sequences_in_snapshot:
            with connect_local(dest.with_database(work)) as conn:
                apply_sequences(conn, state.sequences, local_sequences(conn))
        localdb.apply_database_settings(admin, work, state.database_settings)
        disconnected, old = swap_names(admin, work, dest.database)
    except BaseException:
        localdb.drop_now(admin, [work])
        raise
    retired = [old] if old else []
    state.local_relfilenodes = state.snapshot_files()
    state.dest_oid = localdb.database_oid(admin, dest.database)
    state.dest_horizon = horizon
    # Same contents, so a snapshot from before content ids existed may be given one (and then a spare).
    state.content_id = state.content_id or uuid.uuid4().hex
    localdb.write_state_unless_replaced(admin, snapshot, state, started_from)
    retire(admin, retired, drop_retired, dest.database, spare)
    return disconnected, retired, taken is not None


def retire(admin: DatabaseAddress, names: list[str], how: str, target: str, spare: bool) -> None:
    """Drop replaced copies, then make ``target``'s spare (or drop it, when spares are off).

    Now (tests) or from a detached process (the default; see tether.sync.local), so the command does not
    wait for PostgreSQL 15's checkpoint on DROP DATABASE or for the copy.
    """
    if not spare and localdb.has_spare(admin, target):
        names = [*names, localdb.spare_name(target)]
    if how == "now":
        localdb.drop_now(admin, names)
        if spare:
            localdb.make_spare_logged(localdb.admin_session(admin), target)
    else:
        localdb.drop_in_background(admin, names, target if spare else None)
