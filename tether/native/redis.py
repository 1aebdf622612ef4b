"""One local Redis server as a process, with a password and an append-only file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from tether.errors import TetherError
from tether.native.files import atomic_write
from tether.native.postgres import tail_of
from tether.native.sysuser import ServiceUser, popen_kwargs
from tether.processes import serves_directory
from tether.redis_client import RedisAddress, RedisError, ping


@dataclass(frozen=True)
class RedisServer:
    datadir: Path
    server_program: Path
    port: int
    password: str
    log_file: Path
    run_as: ServiceUser | None = None
    bind_address: str = "127.0.0.1"
    appendonly: bool = True

    @property
    def config_file(self) -> Path:
        return self.datadir / "redis.conf"

    @property
    def pid_file(self) -> Path:
        return self.datadir / "redis.pid"

    @property
    def address(self) -> RedisAddress:
        return RedisAddress(self.bind_address, self.port, self.password)


def conf_string(value: str) -> str:
    """``value`` as one redis.conf argument: double quotes with every byte as ``\\xHH``.

    redis.conf splits lines the way redis-cli does (``sdssplitargs``): inside double quotes ``\\xHH`` is one byte,
    so any password (quotes of both kinds, backslashes, spaces, ``#``, unicode) reads back exactly.
    """
    return '"' + "".join(f"\\x{byte:02x}" for byte in value.encode()) + '"'


def render_config(server: RedisServer) -> str:
    """redis.conf: the password lives here (mode 0600), never on the command line where ps shows it."""
    return "\n".join([
        f"bind {server.bind_address}",
        "protected-mode yes",
        f"port {server.port}",
        "daemonize yes",
        f"pidfile {conf_string(str(server.pid_file))}",
        f"logfile {conf_string(str(server.log_file))}",
        f"dir {conf_string(str(server.datadir))}",
        f"appendonly {'yes' if server.appendonly else 'no'}",
        "appendfsync everysec",
        "save 900 1 300 10 60 10000",
        "dbfilename dump.rdb",
        f"requirepass {conf_string(server.password)}",
        "",
    ])


def write_config(server: RedisServer) -> None:
    """Replace redis.conf atomically (0600), so a concurrent start never reads half a file."""
    atomic_write(server.config_file, render_config(server), mode=0o600, owner=server.run_as)


def start_argv(server: RedisServer) -> list[str]:
    """The server's command line: its config file, then the port and address again (never the password).

    Arguments after the file override it, so even a config file changed under our feet cannot move the server.
    """
    return [str(server.server_program), str(server.config_file), "--port", str(server.port),
            "--bind", server.bind_address]


def running_pid(server: RedisServer) -> int | None:
    try:
        pid = int(server.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if serves_directory(pid, "redis", server.datadir) else None


def start(server: RedisServer, timeout: float = 20) -> None:
    """Start Redis and return once it answers an authenticated PING."""
    if server.pid_file.exists() and running_pid(server) is None:
        server.pid_file.unlink()
    write_config(server)
    if server.run_as:
        if not server.log_file.exists() and os.access(server.log_file.parent, os.W_OK):
            server.log_file.touch()
        if server.log_file.exists():
            os.chown(server.log_file, server.run_as.uid, server.run_as.gid)
    result = subprocess.run(start_argv(server), capture_output=True, text=True,
                            cwd=str(server.datadir), check=False, **popen_kwargs(server.run_as))
    if result.returncode != 0:
        raise TetherError(f"Redis on port {server.port} did not start (exit {result.returncode}): "
                          f"{result.stderr.strip() or tail_of(server.log_file)}")
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            ping(server.address, timeout=1)
            return
        except RedisError as error:
            last_error = str(error)
            time.sleep(0.05)
    raise TetherError(f"Redis on port {server.port} did not answer within {timeout:.0f}s ({last_error}). "
                      f"Its log {server.log_file} ends with:\n{tail_of(server.log_file)}")


def stop(server: RedisServer, timeout: float = 20) -> bool:
    """SIGTERM (Redis flushes its AOF and exits), then SIGKILL after ``timeout``; returns once the process is gone.

    The process, not its pid file: Redis deletes the pid file before it closes its sockets and exits, so a stop
    that returned on the file could leave the port bound for the next start.
    """
    pid = running_pid(server)
    if pid is None:
        server.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    if not _exits_within(server, pid, timeout):
        with suppress(ProcessLookupError):  # it exited just now
            os.kill(pid, signal.SIGKILL)
        _exits_within(server, pid, 10)
    server.pid_file.unlink(missing_ok=True)
    return True


def _exits_within(server: RedisServer, pid: int, seconds: float) -> bool:
    """Wait until ``pid`` no longer serves the server's directory; a zombie counts as gone (it closed everything)."""
    deadline = time.monotonic() + seconds
    while serves_directory(pid, "redis", server.datadir):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
