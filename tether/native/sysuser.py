"""Running servers as an unprivileged user: PostgreSQL refuses root, and CI runs as root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import TetherError

# Debian's postgresql package creates `postgres`; without it we create our own system user.
PREFERRED_USERS = ("postgres", "tether")


@dataclass(frozen=True)
class ServiceUser:
    """The account servers run as when we are root."""

    name: str
    uid: int
    gid: int
    home: str

    def popen_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make ``subprocess`` drop to this user (no sudo or su needed)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _lookup(name: str) -> ServiceUser | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def service_user() -> ServiceUser | None:
    """None when we are not root (servers run as ourselves); otherwise the unprivileged account to use."""
    if os.geteuid() != 0:
        return None
    for name in PREFERRED_USERS:
        found = _lookup(name)
        if found:
            return found
    useradd = shutil.which("useradd")
    if not useradd:
        raise TetherError("PostgreSQL refuses to run as root and there is no `postgres` user to run it as, "
                          "nor `useradd` to create one. Create an unprivileged user named `tether`, or run as a "
                          "normal user.")
    subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tether"],
                   check=True, capture_output=True)
    created = _lookup("tether")
    assert created is not None
    return created


def popen_kwargs(user: ServiceUser | None) -> dict[str, Any]:
    return user.popen_kwargs() if user else {}


def make_private_dir(path: Path, user: ServiceUser | None, mode: int = 0o700) -> Path:
    """Create ``path`` (and parents) owned by ``user`` with ``mode``; parents stay traversable."""
    path.mkdir(parents=True, exist_ok=True)
    if user:
        os.chown(path, user.uid, user.gid)
    path.chmod(mode)
    return path


def chown_tree(path: Path, user: ServiceUser | None) -> None:
    if not user:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.uid, user.gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)
