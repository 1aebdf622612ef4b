"""A hot standby of a test server, streaming from it: a real read replica, where no session can write."""

from __future__ import annotations

import os
import subprocess
import time

from tests.conftest import RunningPostgres, _scratch_dir, free_port
from tether.conninfo import DatabaseAddress
from tether.native import postgres as native_pg
from tether.native.sysuser import make_private_dir, popen_kwargs

from .conftest import execute


def start_standby(primary: RunningPostgres, timeout: float = 60) -> RunningPostgres:
    """pg_basebackup of ``primary`` (as its server user), started as a standby; returns once it has replayed
    everything the primary had written when it was made. The caller stops it (tests.conftest.stop_postgres)."""
    server = primary.server
    base = _scratch_dir("tether-standby-", server.run_as)
    datadir = base / "data"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": primary.admin.password or ""}
    if server.run_as:
        env["HOME"] = server.run_as.home if os.path.isdir(server.run_as.home) else "/"
    subprocess.run([server.program("pg_basebackup"), "-D", str(datadir), "-R", "-X", "stream", "-c", "fast",
                    "-h", "127.0.0.1", "-p", str(server.port), "-U", primary.admin.user], env=env, check=True,
                   capture_output=True, cwd="/", **popen_kwargs(server.run_as))
    make_private_dir(datadir, server.run_as)
    standby = native_pg.PostgresServer(datadir=datadir, bindir=server.bindir, port=free_port(),
                                       socket_dir=base / "sock", log_file=base / "postgres.log",
                                       run_as=server.run_as, settings={**server.settings, "hot_standby": "on"})
    native_pg.start(standby)
    running = RunningPostgres(standby, DatabaseAddress("127.0.0.1", standby.port, "postgres", primary.admin.user,
                                                       primary.admin.password))
    target = execute(primary.admin, "SELECT pg_current_wal_lsn()::text")[0][0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if execute(running.admin, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))[0][0]:
            return running
        time.sleep(0.1)
    raise AssertionError(f"the standby did not replay up to {target} within {timeout} s")

