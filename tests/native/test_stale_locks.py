"""A PostgreSQL server starts again after a crash, whatever its lock files name: judged as PostgreSQL would, and better.

PostgreSQL refuses to start while ``postmaster.pid`` or the socket's ``.s.PGSQL.PORT.lock`` names a pid that merely
exists; a dead pid it handles itself. These are the cases it does not: a pid reused by another program, another
cluster's live postmaster, and a killed postmaster that its parent has not reaped yet (a zombie).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import RunningPostgres, free_port, start_postgres, stop_postgres
from tether.native import postgres as native_pg

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stopped_cluster() -> Iterator[RunningPostgres]:
    """A cluster of its own, stopped cleanly, with the content its postmaster.pid had while it ran."""
    running = start_postgres()
    running.pid_text = running.server.pid_file.read_text()  # type: ignore[attr-defined]
    native_pg.stop(running.server)
    yield running
    stop_postgres(running)


def _plant_pid(running: RunningPostgres, pid: int) -> None:
    """postmaster.pid and the socket lock as the server left them, but naming ``pid``."""
    lines = running.pid_text.splitlines()  # type: ignore[attr-defined]
    lines[0] = str(pid)
    for lock in (running.server.pid_file, native_pg.socket_lock_file(running.server)):
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text("\n".join(lines) + "\n")
        if running.server.run_as:
            os.chown(lock, running.server.run_as.uid, running.server.run_as.gid)


def _answers(running: RunningPostgres) -> bool:
    with psycopg.connect(running.admin.conninfo(connect_timeout="5")) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def test_a_pid_file_naming_a_live_program_that_is_not_postgres_is_stale(stopped_cluster: RunningPostgres) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        _plant_pid(stopped_cluster, other.pid)
        assert native_pg.running_pid(stopped_cluster.server) is None
        native_pg.start(stopped_cluster.server)
        assert _answers(stopped_cluster)
        assert other.poll() is None  # the unrelated program was left alone
    finally:
        other.kill()
        other.wait()


def test_a_pid_file_naming_another_clusters_postmaster_is_stale(stopped_cluster: RunningPostgres,
                                                                pg_server: RunningPostgres) -> None:
    other_postmaster = native_pg.running_pid(pg_server.server)
    assert other_postmaster is not None
    _plant_pid(stopped_cluster, other_postmaster)
    assert native_pg.running_pid(stopped_cluster.server) is None
    native_pg.start(stopped_cluster.server)
    assert _answers(stopped_cluster) and _answers(pg_server)


# A process that adopts orphans (a subreaper) and does not reap them at once: the postmaster, killed with -9,
# stays a zombie exactly as under an init that is slow to reap, which is what broke `./dev up` after a crash.
ZOMBIE_SCRIPT = textwrap.dedent("""
    import ctypes, json, os, signal, sys, time
    from pathlib import Path
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    from tether.native import postgres as native_pg
    from tether.native.sysuser import ServiceUser
    spec = json.loads(sys.argv[1])
    user = ServiceUser(**spec.pop("run_as")) if spec["run_as"] else None
    spec.pop("run_as", None)
    server = native_pg.PostgresServer(**{k: Path(v) if k in ("datadir", "bindir", "socket_dir", "log_file") else v
                                         for k, v in spec.items()}, run_as=user)
    results = []
    native_pg.start(server)
    for attempt in range(3):
        pid = native_pg.running_pid(server)
        os.kill(pid, signal.SIGKILL)
        # Dying takes a moment, longer on a loaded machine: wait (up to 10 s) for it to be a zombie.
        deadline = time.monotonic() + 10
        while not (zombie := "State:\\tZ" in Path(f"/proc/{pid}/status").read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        native_pg.start(server)  # at once, with the old postmaster dead but not reaped
        results.append({"zombie": zombie, "restarted": native_pg.running_pid(server) is not None})
        os.waitpid(pid, 0)  # reap it now (we adopted it)
    native_pg.stop(server)
    print(json.dumps(results))
""")


def test_start_right_after_kill_9_of_an_unreaped_postmaster(stopped_cluster: RunningPostgres) -> None:
    import json
    from dataclasses import asdict

    server = stopped_cluster.server
    spec = {"datadir": str(server.datadir), "bindir": str(server.bindir), "port": server.port,
            "socket_dir": str(server.socket_dir), "log_file": str(server.log_file),
            "run_as": asdict(server.run_as) if server.run_as else None,
            "listen_address": server.listen_address, "settings": dict(server.settings)}
    result = subprocess.run([sys.executable, "-c", ZOMBIE_SCRIPT, json.dumps(spec)], cwd=REPO, capture_output=True,
                            text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    attempts = json.loads(result.stdout.splitlines()[-1])
    assert all(attempt["zombie"] for attempt in attempts), attempts  # the case under test really happened
    assert all(attempt["restarted"] for attempt in attempts), attempts


def test_the_port_on_the_command_line_wins_over_the_config_file(stopped_cluster: RunningPostgres,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A tether.conf naming another port (as a file half-written by a concurrent start would) cannot move it."""
    server = stopped_cluster.server
    wrong = free_port()
    rendered = native_pg.render_settings(server)
    monkeypatch.setattr(native_pg, "render_settings",
                        lambda _server: rendered.replace(f"port = {server.port}", f"port = {wrong}"))
    native_pg.start(server)
    assert _answers(stopped_cluster)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(stopped_cluster.admin.conninfo(port=str(wrong), connect_timeout="2"))
