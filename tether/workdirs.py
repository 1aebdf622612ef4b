"""Private scratch directories for commands that hold production's schema or rows on disk for a while.

A sync keeps pg_dump's archive and spooled rows, a restore its lists, in a directory of the project's runtime
directory (``.runtime/work/<kind>-<pid>-<stamp>``, mode 0700), not in /tmp: a ``kill -9`` cannot run clean-up
code, so the next command of any kind removes the directories whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from tether.paths import runtime_dir
from tether.processes import pid_exists

_NAME = re.compile(r"^(?P<kind>[a-z]+)-(?P<pid>\d+)-(?P<stamp>\d+)$")


def work_root() -> Path:
    return runtime_dir() / "work"


def clean_stale(root: Path | None = None) -> list[str]:
    """Remove the work directories of processes that no longer exist; returns their names."""
    root = root or work_root()
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match and int(match["pid"]) != os.getpid() and not pid_exists(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


@contextlib.contextmanager
def private_workdir(kind: str) -> Iterator[Path]:
    """A fresh 0700 directory for this command, removed when it ends (or by the next command if it is killed)."""
    root = work_root()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    clean_stale(root)
    path = root / f"{kind}-{os.getpid()}-{time.time_ns()}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
