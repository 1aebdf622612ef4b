"""Who is listening on a TCP port: so a taken port is reported with its owner instead of a hang."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


@dataclass(frozen=True)
class PortOwner:
    pid: int
    name: str
    directory: str | None  # its working directory: a PostgreSQL or Redis server runs in its data directory

    def describe(self) -> str:
        where = f", running in {self.directory}" if self.directory else ""
        return f"{self.name} (pid {self.pid}{where})"


def port_owner(port: int) -> PortOwner | None:
    """The process listening on ``port``, when /proc lets us see it (None: nobody, or hidden from this user)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                if os.readlink(f"{fd_dir}/{fd}") in targets:
                    return PortOwner(int(pid), Path(f"/proc/{pid}/comm").read_text().strip(), _directory(pid))
        except OSError:
            continue
    return None


def _directory(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
