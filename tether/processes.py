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


def process_directory(pid: int) -> Path | None:
    """The working directory of a live process, or None when it is gone, a zombie or not ours to read."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _directory_hidden(pid: int) -> bool:
    """True when ``pid`` is there but /proc will not show its working directory (another user's process)."""
    try:
        os.readlink(f"/proc/{pid}/cwd")
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def serves_directory(pid: int, name: str, directory: Path) -> bool:
    """True if ``pid`` is a live ``name`` process working in ``directory``: the server that owns that directory.

    PostgreSQL's postmaster and its backends run in their data directory, and Redis in its ``dir``, so a pid file
    naming a live process elsewhere (a reused pid, another cluster's postmaster) is stale. PostgreSQL itself only
    asks whether the pid exists, which is why a reused pid, or a killed postmaster its parent has not reaped yet,
    stops it from starting. When /proc does not show the directory (not Linux, another user's process without
    root), the name is all we can check.
    """
    if not process_runs(pid, name):
        return False
    cwd = process_directory(pid)
    if cwd is None:
        return _directory_hidden(pid)
    return cwd == directory.resolve()


def processes_in(directory: Path, name: str) -> list[int]:
    """Every live ``name`` process working in ``directory`` (a server's postmaster and children, say)."""
    target = directory.resolve()
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if process_directory(pid) == target and process_runs(pid, name):
            found.append(pid)
    return sorted(found)
