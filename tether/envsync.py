"""`invoke env`: every env file written (or checked) for the active database target, under the dev stack lock.

Above both ``envfiles`` (what the files hold) and ``target`` (which database ``.env`` points at), so neither of
those imports the other's caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tether import target as active
from tether.envfiles import DEFAULT_DRIVERS, EnvReport, env_report, load_sources
from tether.stack_lock import stack_lock


def sync_env_files(drivers: Sequence[str] | None = None, *, check: bool = False,
                   root: Path | None = None) -> EnvReport:
    """Write (or with ``check`` only compare) every env file for the active target."""
    chosen = DEFAULT_DRIVERS if drivers is None else tuple(drivers)
    if check:
        return env_report(load_sources(), active.read_target().target, chosen, check=True, root=root)
    with stack_lock("invoke env"), active.target_lock():
        # Read inside the lock: a concurrent `target.*` or `up` may have just changed what the files hold.
        return env_report(load_sources(), active.read_target().target, chosen, check=False, root=root)


def write_env_files(drivers: Sequence[str] | None = None) -> list[Path]:
    """Write the env files (for ``invoke up``); returns the paths that changed."""
    return sync_env_files(drivers).written()
