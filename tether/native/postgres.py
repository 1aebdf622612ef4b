"""One local PostgreSQL server as a process: create its cluster, start, stop and inspect it.

Used by the native dev stack and by the test fixtures, so both run servers the same way.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import CommandFailed, TetherError
from tether.native.files import atomic_write
from tether.native.sysuser import ServiceUser, popen_kwargs
from tether.processes import processes_in, serves_directory

SETTINGS_FILE = "tether.conf"


@dataclass(frozen=True)
class PostgresServer:
    """Where a local server's files are and how it listens."""

    datadir: Path
    bindir: Path
    port: int
    socket_dir: Path
    log_file: Path
    run_as: ServiceUser | None = None
    listen_address: str = "127.0.0.1"
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.datadir / "postmaster.pid"

    def program(self, name: str) -> str:
        return str(self.bindir / name)


def _run(server: PostgresServer, argv: list[str], what: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    if server.run_as:
        # The server user's own home, or the filesystem root when it has none (a --no-create-home account).
        env["HOME"] = server.run_as.home if os.path.isdir(server.run_as.home) else "/"
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False,
                            cwd="/", **popen_kwargs(server.run_as))
    if result.returncode != 0:
        raise CommandFailed(what, result.returncode, result.stderr + result.stdout)
    return result


def cluster_major(datadir: Path) -> int | None:
    """The major version recorded in ``PG_VERSION``, or None when there is no cluster."""
    version_file = datadir / "PG_VERSION"
    if not version_file.exists():
        return None
    return int(version_file.read_text().strip().split(".")[0])


def check_cluster_version(datadir: Path, major: int) -> None:
    """Refuse a data directory made by another major version; it is left exactly as it is."""
    found = cluster_major(datadir)
    if found is not None and found != major:
        raise TetherError(
            f"The data directory {datadir} was created by PostgreSQL {found}, but this stack runs PostgreSQL "
            f"{major}. A server cannot open another major version's files, so nothing was started and the data "
            f"is untouched. Either set postgresVersion: {found} in stacks/dev/Pulumi.dev.yaml, or dump the data "
            f"with PostgreSQL {found} and remove the directory (`invoke down --purge`) before `invoke up`."
        )


def render_settings(server: PostgresServer) -> str:
    """The settings we own, written to ``tether.conf`` and included from ``postgresql.conf``."""
    values = {
        "port": str(server.port),
        "listen_addresses": f"'{server.listen_address}'",
        "unix_socket_directories": f"'{server.socket_dir}'",
        **server.settings,
    }
    return "".join(f"{key} = {value}\n" for key, value in values.items())


def write_settings(server: PostgresServer) -> None:
    """Write ``tether.conf`` and the include line in ``postgresql.conf``, each replaced atomically."""
    atomic_write(server.datadir / SETTINGS_FILE, render_settings(server), mode=0o600, owner=server.run_as)
    conf = server.datadir / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'\n"
    text = conf.read_text()
    if include not in text:
        atomic_write(conf, text + "\n# Managed by tether: port, sockets and local settings\n" + include,
                     mode=0o600, owner=server.run_as)


def server_options(server: PostgresServer) -> str:
    """``pg_ctl -o``: port, address and socket directory on the postmaster's command line as well.

    The command line wins over the config files, so the server listens where we say even if a file is changed
    while it starts. pg_ctl hands this string to /bin/sh, hence the shell quoting.
    """
    return " ".join(["-p", str(server.port), "-h", shlex.quote(server.listen_address),
                     "-k", shlex.quote(str(server.socket_dir))])


def init_cluster(server: PostgresServer, superuser: str, password: str) -> None:
    """``initdb`` a new cluster with scram-sha-256 authentication for ``superuser``.

    The password goes through a 0600 file that only the server's user can read, never argv.
    """
    with tempfile.NamedTemporaryFile("w", delete=False, dir=server.datadir.parent, prefix=".pw-") as pwfile:
        pwfile.write(password + "\n")
    try:
        os.chmod(pwfile.name, 0o600)
        if server.run_as:
            os.chown(pwfile.name, server.run_as.uid, server.run_as.gid)
        _run(server, [
            server.program("initdb"), "-D", str(server.datadir), "-U", superuser, f"--pwfile={pwfile.name}",
            "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        ], f"initdb of {server.datadir}")
    finally:
        os.unlink(pwfile.name)
    write_settings(server)


def recorded_pid(lock_file: Path) -> int | None:
    """The pid on the first line of a PostgreSQL lock file (postmaster.pid, .s.PGSQL.PORT.lock)."""
    try:
        return int(lock_file.read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None


def running_pid(server: PostgresServer) -> int | None:
    """The postmaster's pid if it is alive and serves this data directory.

    A pid file left by a crash, naming a pid now reused by another program (or by another cluster's postmaster),
    or naming a killed postmaster not yet reaped, counts as not running.
    """
    pid = recorded_pid(server.pid_file)
    if pid is None or not serves_directory(pid, "postgres", server.datadir):
        return None
    return pid


def socket_lock_file(server: PostgresServer) -> Path:
    return server.socket_dir / f".s.PGSQL.{server.port}.lock"


def remove_stale_pid_file(server: PostgresServer) -> bool:
    """Delete a pid file whose process no longer serves this data directory; True when one was removed."""
    if server.pid_file.exists() and running_pid(server) is None:
        server.pid_file.unlink(missing_ok=True)
        return True
    return False


def clear_stale_locks(server: PostgresServer, timeout: float = 15) -> None:
    """Make way for a start after a crash, judging lock files the way PostgreSQL does, and a little better.

    Old server processes still working in the data directory (the children of a killed postmaster, which exit
    once they notice) keep the shared memory in use: wait for them, up to ``timeout``. Then a postmaster.pid or
    socket lock file whose pid is not a live server of this directory is removed; PostgreSQL would refuse to
    start over one whose pid merely exists (a zombie, or a pid reused by another program).
    """
    if running_pid(server) is not None:
        return
    deadline = time.monotonic() + timeout
    leftovers = processes_in(server.datadir, "postgres")
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.05)
        leftovers = processes_in(server.datadir, "postgres")
    if leftovers:
        pids = " ".join(str(pid) for pid in leftovers)
        raise TetherError(f"Old PostgreSQL processes (pid {pids}) still run in {server.datadir} {timeout:g} s after "
                          f"their server stopped, so a new server cannot start there. Stop them (`kill -INT "
                          f"{pids}`, or `kill -9` if they do not exit), then run the command again.")
    remove_stale_pid_file(server)
    lock = socket_lock_file(server)
    pid = recorded_pid(lock)
    if lock.exists() and (pid is None or not serves_directory(pid, "postgres", server.datadir)):
        lock.unlink(missing_ok=True)


def start(server: PostgresServer, timeout: float = 60) -> None:
    """Start the server and return once it accepts connections."""
    clear_stale_locks(server)
    write_settings(server)
    server.socket_dir.mkdir(parents=True, exist_ok=True)
    if server.run_as:
        os.chown(server.socket_dir, server.run_as.uid, server.run_as.gid)
        if server.log_file.exists():
            os.chown(server.log_file, server.run_as.uid, server.run_as.gid)
        elif os.access(server.log_file.parent, os.W_OK):
            server.log_file.touch()
            os.chown(server.log_file, server.run_as.uid, server.run_as.gid)
    try:
        _run(server, [server.program("pg_ctl"), "start", "-w", "-t", str(int(timeout)), "-D", str(server.datadir),
                      "-l", str(server.log_file), "-o", server_options(server)],
             f"starting PostgreSQL on port {server.port}", timeout=timeout + 10)
    except CommandFailed as error:
        log_tail = tail_of(server.log_file)
        raise TetherError(f"PostgreSQL on port {server.port} did not start (pg_ctl exit {error.returncode}). "
                          f"Its log {server.log_file} ends with:\n{log_tail}") from None


def stop(server: PostgresServer, timeout: float = 30) -> bool:
    """Fast shutdown, then immediate if it does not finish in ``timeout``; False if it was not running."""
    if running_pid(server) is None:
        remove_stale_pid_file(server)
        return False
    try:
        _run(server, [server.program("pg_ctl"), "stop", "-w", "-m", "fast", "-t", str(int(timeout)),
                      "-D", str(server.datadir)], "stopping PostgreSQL", timeout=timeout + 10)
    except (CommandFailed, subprocess.TimeoutExpired):
        pid = running_pid(server)
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
            deadline = time.monotonic() + 10
            while running_pid(server) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
    return True


def tail_of(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
