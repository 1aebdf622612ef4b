"""Pure builders of pg_dump, pg_restore and psql command lines and their environment (nothing runs here).

The connection travels as a ``--dbname`` conninfo string holding only non-secret options from an
allow-list; the password and the session options go in the environment (``PGPASSWORD``, ``PGOPTIONS``),
so neither shows up in ``ps``, and inherited passwords are not passed on to the child.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError

DUMP_FORMATS = {"custom": "c", "directory": "d"}
READ_ONLY_OPTION = "-c default_transaction_read_only=on"
# Inherited variables that could silently point a program at another server, service or session;
# everything we need is set explicitly instead. PGPASSFILE stays: an address without a password may rely on it.
_OVERRIDDEN_ENV = frozenset({"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSERVICE",
                             "PGSERVICEFILE", "PGOPTIONS"})
# Inherited secrets a libpq program has no use for (TETHER_PROD_PASSWORD, POSTGRES_PASSWORD, REDISCLI_AUTH...):
# a child should hold only the one password we hand it.
_INHERITED_SECRET = re.compile(r"PASSWORD|PASSWD|REDISCLI_AUTH", re.IGNORECASE)
# Connection options that are safe to show in argv (ps, /proc/*/cmdline): none of them is a secret,
# and none of them sends the connection to another server than the host and port we checked.
ARGV_OPTIONS = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir", "sslsni", "sslcompression",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "requirepeer", "require_auth", "sslcertmode",
    "connect_timeout", "application_name", "fallback_application_name", "target_session_attrs", "gssencmode",
    "channel_binding", "krbsrvname", "gsslib", "client_encoding", "keepalives", "keepalives_idle",
    "keepalives_interval", "keepalives_count", "tcp_user_timeout",
})
# Options that travel in the environment instead: the password is secret, and the session options
# are merged with ours into PGOPTIONS.
ENV_OPTIONS = {"password": "PGPASSWORD", "passfile": "PGPASSFILE", "options": "PGOPTIONS"}
# What pg_restore itself leaves out of a local restore: owners and privileges (tether.archive replays them,
# skipping roles the local server lacks), tablespaces, and subscriptions (a restored subscription holds its
# publisher's connection string and would try to connect to it).
LOCAL_RESTORE_SKIPS = ("--no-owner", "--no-privileges", "--no-tablespaces", "--no-subscriptions")


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


def _checked_options(address: DatabaseAddress) -> tuple[tuple[str, str], ...]:
    """The address's options, refusing any that could neither go in argv nor in the environment."""
    for key, _ in address.options:
        if key == "sslpassword":
            raise ConfigError(
                "The database address sets sslpassword (the passphrase of an encrypted client key). libpq has no "
                "environment variable for it, and a command line is visible to every user of the machine, so "
                "pg_dump, pg_restore and psql cannot be given it safely. Use a client key without a passphrase, "
                "readable only by you (chmod 600), and drop sslpassword from the URL."
            )
        if key not in ARGV_OPTIONS and key not in ENV_OPTIONS:
            raise ConfigError(
                f"The database address sets the connection option {key!r}, which tether does not pass to "
                f"pg_dump, pg_restore or psql. Remove it from the URL; the options passed on are: "
                f"{', '.join(sorted(ARGV_OPTIONS | ENV_OPTIONS.keys()))}."
            )
    return address.options


def connection_argument(address: DatabaseAddress) -> str:
    """The ``--dbname`` value: a conninfo string with the target and the harmless options only.

    Only options in ``ARGV_OPTIONS`` appear; the password and session options go in the environment
    (``program_env``), and any other option is refused with a ConfigError.
    """
    from psycopg.conninfo import make_conninfo

    params: dict[str, str | int] = {"host": address.host, "port": address.port, "dbname": address.database,
                                    "user": address.user}
    params.update({key: value for key, value in _checked_options(address) if key in ARGV_OPTIONS})
    return make_conninfo("", **params)


def session_options(address: DatabaseAddress, *, readonly: bool = False) -> str:
    """The ``PGOPTIONS`` value: the address's own ``options`` plus, for reads, a read-only default."""
    parts = [value for key, value in address.options if key == "options" and value]
    if readonly:
        parts.append(READ_ONLY_OPTION)
    return " ".join(parts)


def program_env(address: DatabaseAddress, *, readonly: bool = False,
                base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a libpq program: ``base`` (e.g. os.environ) minus stray PG* targets and every
    inherited password, plus ours (the only password in it is the address's own ``PGPASSWORD``)."""
    options = _checked_options(address)
    env = {key: value for key, value in (base or {}).items()
           if key not in _OVERRIDDEN_ENV and not _INHERITED_SECRET.search(key)}
    env.update(address.libpq_env())
    for key, value in options:
        # The address's own password field wins over a ?password= option; a passfile wins over the inherited one.
        if key == "passfile" or (key == "password" and address.password is None):
            env[ENV_OPTIONS[key]] = value
    pgoptions = session_options(address, readonly=readonly)
    if pgoptions:
        env["PGOPTIONS"] = pgoptions
    return env


def pg_dump_argv(program: Path | str, address: DatabaseAddress, options: DumpOptions,
                 output: Path | str | None = None) -> list[str]:
    """``pg_dump`` for ``address``; ``output=None`` writes a custom-format archive to stdout (for piping)."""
    if output is None and options.format == "directory":
        raise ValueError("a directory-format dump needs an output path")
    # --create: an archive then also holds the database's own settings, which db.restore gives the restored copy.
    argv = [str(program), f"--dbname={connection_argument(address)}", f"--format={DUMP_FORMATS[options.format]}",
            "--no-password", "--create"]
    if output is not None:
        argv.append(f"--file={output}")
    if options.jobs > 1:
        argv.append(f"--jobs={options.jobs}")
    if options.schema_only:
        argv.append("--schema-only")
    if options.data_only:
        argv.append("--data-only")
    argv.extend(f"--exclude-table-data={pattern}" for pattern in options.exclude_table_data)
    # The anonymization key (sql/0010): readable by its owner only, so pg_dump as readonly could not even lock
    # it; and a dump must never carry it.
    argv.extend(f"--exclude-table={table}" for table in NEVER_DUMPED)
    return argv


NEVER_DUMPED = ("tether_anon.key",)


def pg_restore_argv(program: Path | str, address: DatabaseAddress, archive: Path | str | None = None, *,
                    jobs: int = 1, skips: Sequence[str] = LOCAL_RESTORE_SKIPS,
                    exit_on_error: bool = True, use_list: Path | str | None = None) -> list[str]:
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
    if use_list is not None:
        argv.append(f"--use-list={use_list}")
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


def psql_interactive_argv(program: Path | str, address: DatabaseAddress) -> list[str]:
    """``psql`` for a person at a terminal: only the connection, so the user's ``~/.psqlrc``, prompt and
    error handling apply as usual; run it with ``program_env`` so the password stays out of argv."""
    return [str(program), f"--dbname={connection_argument(address)}"]


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
