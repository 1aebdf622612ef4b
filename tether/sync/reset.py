"""``db.reset``: the local database back to the last synced state, by copying the snapshot the sync kept."""

from __future__ import annotations

import time

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
          drop_retired: str = "background") -> ResetSummary:
    """Replace ``dest`` with a copy of the state its last sync kept (local changes are lost: asks first)."""
    try:
        return _reset(dest, yes, allow_remote_dest, drop_retired)
    except psycopg.Error as error:
        raise localdb.database_error(error, "The reset") from None
    finally:
        localdb.close_admin_sessions()


def _reset(dest: DatabaseAddress, yes: bool, allow_remote_dest: bool, drop_retired: str) -> ResetSummary:
    started = time.perf_counter()
    check_local(dest, allow_remote_dest)
    local = inspect_local(dest)
    snapshot = localdb.snapshot_name(dest.database)
    state = localdb.read_state(local.maintenance, snapshot)
    if state is None:
        raise TetherError(f"There is no synced state to reset {dest.database!r} to: {snapshot!r} does not exist on "
                          f"{dest.masked_url()} (or was made by another version of tether). Run "
                          "`invoke sync-prod` first; it keeps that snapshot for db.reset.")
    confirm(f"Reset the local database {dest.database!r} to the sync of {state.synced_at}? Changes made to it "
            "since are lost.", yes=yes)
    cleanup_leftovers(local.maintenance, dest.database)
    disconnected, _ = reset_from_snapshot(local.maintenance, dest, state, drop_retired)
    return ResetSummary(dest=dest.masked_url(), snapshot_database=snapshot, synced_at=state.synced_at,
                        seconds=time.perf_counter() - started, sessions_disconnected=disconnected)


def reset_from_snapshot(admin: DatabaseAddress, dest: DatabaseAddress, state: SyncState,
                        drop_retired: str) -> tuple[int, list[str]]:
    """Replace ``dest`` by a fresh copy of its snapshot, sequences as last synced; returns (disconnected, retired)."""
    snapshot = localdb.snapshot_name(dest.database)
    work = scratch_name(dest.database, "reset")
    try:
        horizon = localdb.copy_database(admin, snapshot, work)
        if not state.sequences_in_snapshot:
            with connect_local(dest.with_database(work)) as conn:
                apply_sequences(conn, state.sequences, local_sequences(conn))
        disconnected, old = swap_names(admin, work, dest.database)
    except BaseException:
        localdb.drop_now(admin, [work])
        raise
    retired = [old] if old else []
    state.dest_oid = localdb.database_oid(admin, dest.database)
    state.dest_horizon = horizon
    with localdb.admin_connect(admin) as conn:
        localdb.write_state(conn, snapshot, state)
    retire(admin, retired, drop_retired)
    return disconnected, retired


def retire(admin: DatabaseAddress, names: list[str], how: str) -> None:
    """Drop replaced copies now (tests) or from a detached process (the default; see tether.sync.local)."""
    if how == "now":
        localdb.drop_now(admin, names)
    else:
        localdb.drop_in_background(admin, names)
