"""Pure builders of pg_dump, pg_restore and psql command lines and their environment (nothing runs here).

The connection travels as a ``--dbname`` conninfo string without the password; the password and the
session options go in the environment (``PGPASSWORD``, ``PGOPTIONS``), so neither shows up in ``ps``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tether.conninfo import DatabaseAddress

DUMP_FORMATS = {"custom": "c", "directory": "d"}
READ_ONLY_OPTION = "-c default_transaction_read_only=on"
# Inherited variables that could silently point a program at another server or session; everything we
# need is set explicitly instead. PGPASSFILE stays: an address without a password may rely on it.
_OVERRIDDEN_ENV = frozenset({"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSERVICE",
                             "PGOPTIONS"})
# What a local restore leaves out by default: production's owners, grants, tablespaces, security labels,
# publications and subscriptions (a restored subscription would try to connect to its publisher).
LOCAL_RESTORE_SKIPS = ("--no-owner", "--no-privileges", "--no-tablespaces", "--no-security-labels",
                       "--no-publications", "--no-subscriptions")


@dataclass(frozen=True)
class DumpOptions:
    """What ``pg_dump`` should write; ``format`` is ``custom`` (one file) or ``directory`` (parallel)."""

    format: str = "custom"
    jobs: int = 1
    schema_only: bool = False
    data_only: bool = False
    exclude_table_data: tuple[str, ...] = field(default_factory=tuple)

    def problems(self) -> list[str]:
        """Why these options cannot work together (empty when they can)."""
        found: list[str] = []
        if self.format not in DUMP_FORMATS:
            found.append(f"--format must be one of {', '.join(DUMP_FORMATS)}, not {self.format!r}")
        if self.jobs < 1:
            found.append(f"--jobs must be at least 1, not {self.jobs}")
        elif self.jobs > 1 and self.format != "directory":
            found.append("--jobs above 1 needs --format directory (pg_dump writes in parallel only to a directory)")
        if self.schema_only and self.data_only:
            found.append("--schema-only and --data-only exclude each other")
        return found

    def as_dict(self) -> dict[str, object]:
        return {"format": self.format, "jobs": self.jobs, "schema_only": self.schema_only,
                "data_only": self.data_only, "exclude_table_data": list(self.exclude_table_data)}


def connection_argument(address: DatabaseAddress) -> str:
    """The ``--dbname`` value: a conninfo string with every parameter except the password and options."""
    from psycopg.conninfo import make_conninfo

    params: dict[str, str | int] = {"host": address.host, "port": address.port, "dbname": address.database,
                                    "user": address.user}
    params.update({key: value for key, value in address.options if key not in {"password", "options"}})
    return make_conninfo("", **params)


def session_options(address: DatabaseAddress, *, readonly: bool = False) -> str:
    """The ``PGOPTIONS`` value: the address's own ``options`` plus, for reads, a read-only default."""
    parts = [value for key, value in address.options if key == "options" and value]
    if readonly:
        parts.append(READ_ONLY_OPTION)
    return " ".join(parts)


def program_env(address: DatabaseAddress, *, readonly: bool = False,
                base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a libpq program: ``base`` (e.g. os.environ) minus stray PG* targets, plus ours."""
    env = {key: value for key, value in (base or {}).items() if key not in _OVERRIDDEN_ENV}
    env.update(address.libpq_env())
    options = session_options(address, readonly=readonly)
    if options:
        env["PGOPTIONS"] = options
    return env


def pg_dump_argv(program: Path | str, address: DatabaseAddress, options: DumpOptions,
                 output: Path | str | None = None) -> list[str]:
    """``pg_dump`` for ``address``; ``output=None`` writes a custom-format archive to stdout (for piping)."""
    if output is None and options.format == "directory":
        raise ValueError("a directory-format dump needs an output path")
    argv = [str(program), f"--dbname={connection_argument(address)}", f"--format={DUMP_FORMATS[options.format]}",
            "--no-password"]
    if output is not None:
        argv.append(f"--file={output}")
    if options.jobs > 1:
        argv.append(f"--jobs={options.jobs}")
    if options.schema_only:
        argv.append("--schema-only")
    if options.data_only:
        argv.append("--data-only")
    argv.extend(f"--exclude-table-data={pattern}" for pattern in options.exclude_table_data)
    return argv


def pg_restore_argv(program: Path | str, address: DatabaseAddress, archive: Path | str | None = None, *,
                    jobs: int = 1, skips: Sequence[str] = LOCAL_RESTORE_SKIPS,
                    exit_on_error: bool = True) -> list[str]:
    """``pg_restore`` into ``address``; ``archive=None`` reads a custom-format archive from stdin.

    ``--exit-on-error`` is on by default because without it pg_restore carries on past errors and
    exits 1 for "errors ignored on restore" and for real failures alike; a half-restored copy must
    never be taken for a good one.
    """
    argv = [str(program), f"--dbname={connection_argument(address)}", "--no-password", *skips]
    if exit_on_error:
        argv.append("--exit-on-error")
    if jobs > 1:
        if archive is None:
            raise ValueError("pg_restore --jobs needs an archive file, not stdin")
        argv.append(f"--jobs={jobs}")
    if archive is not None:
        argv.append(str(archive))
    return argv


def pg_restore_list_argv(program: Path | str, archive: Path | str) -> list[str]:
    """``pg_restore --list``: the archive's table of contents, without connecting anywhere."""
    return [str(program), "--list", str(archive)]


def psql_argv(program: Path | str, address: DatabaseAddress, *, file: Path | str | None = None,
              command: str | None = None) -> list[str]:
    """``psql`` that stops at the first error (without ON_ERROR_STOP psql exits 0 after failed statements)."""
    argv = [str(program), f"--dbname={connection_argument(address)}", "--no-password", "--no-psqlrc",
            "--quiet", "-v", "ON_ERROR_STOP=1"]
    if file is not None:
        argv.append(f"--file={file}")
    if command is not None:
        argv.append(f"--command={command}")
    return argv


def parse_program_version(output: str) -> tuple[str, int]:
    """``pg_dump (PostgreSQL) 15.18 (Debian ...)`` → (``15.18``, 15); ``10.23`` → 10; ``9.6.24`` → 9."""
    match = re.search(r"\b(\d+)(?:\.(\d+))?(?:\.(\d+))?", output)
    if not match:
        raise ValueError(f"no version number in {output!r}")
    return match.group(0), int(match.group(1))


def server_major(version_num: int | str) -> int:
    """``server_version_num`` → major: 150018 → 15, 90624 → 9 (pre-10 majors were two numbers; we keep the first)."""
    number = int(version_num)
    return number // 10000
