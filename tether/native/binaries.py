"""Finding PostgreSQL and Redis programs, and saying exactly what to install when they are missing."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from tether.errors import ToolMissing

POSTGRES_LIB = Path(os.environ.get("TETHER_POSTGRES_LIB", "/usr/lib/postgresql"))
_SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")


def postgres_install_hint(major: int) -> str:
    return (f"install the PostgreSQL {major} server (on Debian/Ubuntu: `sudo apt-get install -y postgresql-{major}`, "
            f"or `sudo apt-get install -y postgresql` for the distribution's default major version), "
            "or put its bin directory on PATH")


def client_install_hint(major: int) -> str:
    return (f"install PostgreSQL {major} client programs or newer (on Debian/Ubuntu: "
            f"`sudo apt-get install -y postgresql-client-{major}`; for a newer major than your distribution "
            "ships, add the PGDG apt repository first: https://wiki.postgresql.org/wiki/Apt)")


def _has_programs(directory: Path, programs: tuple[str, ...]) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in programs)


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    return Path(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else None


def program_major(program: Path) -> int:
    """The major version a PostgreSQL program reports (``pg_dump --version`` → 15).

    Remembered per file (path, size, modification time): ``client_program`` asks every candidate on the
    machine, and a command may look several programs up.
    """
    stat = program.stat()
    return _reported_major(str(program), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _reported_major(program: str, _size: int, _mtime_ns: int) -> int:
    result = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)(?:\.(\d+))?", result.stdout)
    if result.returncode != 0 or not match:
        raise ToolMissing(Path(program).name, f"{program} did not report a version; reinstall it")
    return int(match.group(1))


def _versioned_bindirs() -> list[Path]:
    """``/usr/lib/postgresql/<major>/bin`` directories (Debian's layout), newest major first."""
    if not POSTGRES_LIB.is_dir():
        return []
    versioned = [p for p in POSTGRES_LIB.iterdir() if p.name.isdigit() and (p / "bin").is_dir()]
    return [p / "bin" for p in sorted(versioned, key=lambda p: int(p.name), reverse=True)]


def _candidate_bindirs() -> list[Path]:
    """Every PostgreSQL bin directory on this machine, newest major first, then pg_config's and PATH's."""
    found = _versioned_bindirs()
    # pg_config is asked only where there is no Debian layout: there it names one of those directories anyway,
    # and running it costs a process start on every command.
    bindir = None if found else _pg_config_bindir()
    if bindir:
        found.append(bindir)
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            found.append(Path(entry))
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def server_bindir(major: int) -> Path:
    """The bin directory of the PostgreSQL ``major`` server (initdb, pg_ctl, postgres)."""
    preferred = POSTGRES_LIB / str(major) / "bin"
    if _has_programs(preferred, _SERVER_PROGRAMS):
        return preferred
    candidates = _candidate_bindirs()
    if _versioned_bindirs():  # pg_config was not asked above; a server built from source may be known only to it
        candidates += [bindir] if (bindir := _pg_config_bindir()) else []
    for candidate in candidates:
        if _has_programs(candidate, _SERVER_PROGRAMS) and program_major(candidate / "postgres") == major:
            return candidate
    raise ToolMissing(f"PostgreSQL {major} server (initdb, pg_ctl, postgres)", postgres_install_hint(major))


def _is_debian_wrapper(program: Path) -> bool:
    """``/usr/bin/pg_dump`` on Debian: a link to pg_wrapper, which runs one of the versioned programs."""
    return program.is_symlink() and program.resolve().name == "pg_wrapper"


def client_program(name: str, min_major: int = 0) -> Path:
    """The newest ``name`` (pg_dump, pg_restore, psql, ...) whose major is at least ``min_major``.

    A program in ``/usr/lib/postgresql/<major>/bin`` is taken at its directory's word; any other is asked
    for its version (each ``--version`` is a process start, and a sync looks up several programs).
    """
    best: tuple[int, Path] | None = None
    versioned = {directory: int(directory.parent.name) for directory in _versioned_bindirs()}
    for candidate in _candidate_bindirs():
        program = candidate / name
        if not os.access(program, os.X_OK) or (versioned and _is_debian_wrapper(program)):
            continue
        try:
            major = versioned[candidate] if candidate in versioned else program_major(program)
        except ToolMissing:
            continue
        if major >= min_major and (best is None or major > best[0]):
            best = (major, program)
    if best is None:
        wanted = f"{name} {min_major} or newer" if min_major else name
        raise ToolMissing(wanted, client_install_hint(max(min_major, 15)))
    return best[1]


def redis_programs() -> tuple[Path, Path]:
    """``redis-server`` and ``redis-cli``."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        raise ToolMissing("redis-server", "install Redis (on Debian/Ubuntu: `sudo apt-get install -y redis-server`)")
    return Path(server), Path(cli)
