"""Private work directories: 0700, removed at the end, and a killed command's left for the next one to remove."""

from __future__ import annotations

import os
import subprocess
import sys

from tether.workdirs import clean_stale, private_workdir, work_root


def test_a_work_directory_is_private_and_removed(isolated_project):
    with private_workdir("sync") as path:
        assert path.parent == work_root() and path.stat().st_mode & 0o777 == 0o700
        (path / "schema.dump").write_bytes(b"production's schema")
    assert not path.exists()


def test_a_dead_commands_directory_goes_a_live_ones_stays(isolated_project):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    root = work_root()
    root.mkdir(parents=True)
    gone = root / f"sync-{dead.stdout.strip()}-1"
    alive = root / f"restore-{os.getppid()}-2"
    unrelated = root / "notes"
    for path in (gone, alive, unrelated):
        path.mkdir()
    with private_workdir("sync"):
        assert not gone.exists() and alive.exists() and unrelated.exists()
    assert clean_stale() == []
