"""Whether a process is still there: the one check behind stale pid files and leftover scratch names."""

from __future__ import annotations

import os
from pathlib import Path


def pid_exists(pid: int) -> bool:
    """True while ``pid`` names a process (one owned by another user counts: it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_runs(pid: int, name: str) -> bool:
    """True if ``pid`` is a live (not zombie) process whose command line mentions ``name``.

    A pid file can outlive its server and the pid be reused, so the name is checked too. When /proc
    cannot be read (not Linux, or no permission) the pid's existence is all we can know.
    """
    if not pid_exists(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False  # it exited between the two looks
    except OSError:
        return True
    if "State:\tZ" in status:
        return False
    return name in os.path.basename(cmdline) or name in cmdline
