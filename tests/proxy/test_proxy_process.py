"""The proxy as a process, played by the stand-in: start, a real query through it, status, stop, failures."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import psycopg
import pytest
from invoke import Context
from invoke.exceptions import Exit

from tests.conftest import free_port
from tether.errors import ToolMissing
from tether.proxy import (
    ProxyStartFailed,
    find_proxy_binary,
    process_alive,
    proxy_files,
    proxy_logs,
    proxy_running,
    proxy_status,
    start_proxy,
    stop_proxy,
)
from tether.tasks import proxy as proxy_tasks

from .conftest import proxy_processes, state_files_exist

INSTANCE = "my-project:europe-west1:app-postgres-prod"


def query_through(port: int, admin) -> str:
    address = admin.with_database("postgres")
    with psycopg.connect(address.conninfo(host="127.0.0.1", port=str(port), sslmode="disable")) as conn:
        return str(conn.execute("SELECT 'through the proxy: ' || current_user").fetchone()[0])


def test_start_query_status_stop(fake_proxy, pg_server):
    port = free_port()
    started = start_proxy(INSTANCE, port, timeout=10)
    assert started.running and started.ready and not started.already_running
    assert (started.instance, started.address, started.port, started.major) == (INSTANCE, "127.0.0.1", port, 2)
    assert proxy_files().pid_file.read_text().strip() == str(started.pid)

    assert query_through(port, pg_server.admin) == "through the proxy: postgres"

    status = proxy_status()
    assert (status.running, status.ready, status.pid, status.instance, status.port) == (True, True, started.pid,
                                                                                        INSTANCE, port)
    assert status.uptime_seconds is not None and status.uptime_seconds >= 0
    assert "ready for new connections" in proxy_logs(20)

    stopped = stop_proxy()
    assert stopped.was_running and not stopped.forced and stopped.pid == started.pid
    assert not process_alive(started.pid)
    assert not state_files_exist()
    assert not proxy_status().running
    assert "SIGTERM signal received" in proxy_logs(5)


def test_second_start_reuses_the_running_proxy(fake_proxy):
    port = free_port()
    first = start_proxy(INSTANCE, port, timeout=10)
    again = start_proxy(INSTANCE, port, timeout=10)
    assert again.already_running and again.pid == first.pid
    assert "Already running" in run_task(proxy_tasks.start, port=str(port), instance=INSTANCE)


def test_another_instance_while_one_runs_is_refused(fake_proxy):
    port = free_port()
    first = start_proxy(INSTANCE, port, timeout=10)
    with pytest.raises(ProxyStartFailed, match=r"already runs for my-project:europe-west1:app-postgres-prod") as info:
        start_proxy("my-project:europe-west1:other", free_port(), timeout=10)
    assert info.value.reason == "other-proxy"
    assert process_alive(first.pid)


def test_stale_pid_file_is_cleaned(fake_proxy):
    dead = subprocess.Popen(["true"])
    dead.wait()
    files = proxy_files()
    files.pid_file.write_text(f"{dead.pid}\n")
    files.state_file.write_text(json.dumps({
        "pid": dead.pid, "instance": INSTANCE, "address": "127.0.0.1", "port": 5434, "binary": "/x/cloud-sql-proxy",
        "major": 2, "started_at": 0.0, "start_ticks": 1, "argv": ["/x/cloud-sql-proxy", INSTANCE],
    }))
    status = proxy_status()
    assert not status.running and status.stale_cleaned and status.pid == dead.pid
    assert not state_files_exist()

    files.state_file.write_text("{ not json")
    files.pid_file.write_text("123\n")
    stopped = stop_proxy()
    assert not stopped.was_running and stopped.stale_cleaned
    assert not state_files_exist()

    # A recorded pid that now belongs to another process (the test runner itself) is not ours to signal.
    files.state_file.write_text(json.dumps({
        "pid": os.getpid(), "instance": INSTANCE, "address": "127.0.0.1", "port": 5434, "binary": "/x",
        "major": 2, "started_at": 0.0, "start_ticks": 1, "argv": ["/x"],
    }))
    assert stop_proxy().stale_cleaned
    assert process_alive(os.getpid())


def test_port_taken_names_the_port_and_the_process(fake_proxy):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ProxyStartFailed) as info:
            start_proxy(INSTANCE, port, timeout=10)
    assert info.value.reason == "port-in-use"
    assert f"Port {port} on 127.0.0.1 is already in use by " in info.value.message
    assert f"(pid {os.getpid()})" in info.value.message
    assert "--port" in info.value.message
    assert not state_files_exist()


def test_readiness_timeout_kills_the_proxy_and_its_children(fake_proxy):
    fake_proxy.mode("never-ready")
    port = free_port()
    # 5 s: the stand-in is a Python program; on a loaded machine starting it (and its helper, whose pid it logs)
    # took more than 2 s, and the message then had no helper pid to check.
    with pytest.raises(ProxyStartFailed, match=r"was not ready within 5 s") as info:
        start_proxy(INSTANCE, port, timeout=5)
    assert info.value.reason == "timeout"
    helper = re.search(r"helper pid (\d+)", info.value.message)
    assert helper, info.value.message
    assert not process_alive(int(helper.group(1)))
    assert proxy_processes(f"--port {port}") == []
    assert not state_files_exist()


def test_no_credentials_fails_fast_with_the_proxys_own_words(fake_proxy):
    fake_proxy.mode("no-credentials")
    port = free_port()
    with pytest.raises(ProxyStartFailed) as info:
        start_proxy(INSTANCE, port, timeout=10)
    message = info.value.message
    assert info.value.reason == "no-credentials"
    assert "exited with code 1 before it was ready" in message
    assert "gcloud auth application-default login" in message
    assert "could not find default credentials" in message  # the proxy's own log line
    assert proxy_processes(f"--port {port}") == []
    assert not state_files_exist()


def test_instance_not_found_is_caught_by_the_test_connection(fake_proxy):
    fake_proxy.mode("dial-fail")
    port = free_port()
    with pytest.raises(ProxyStartFailed, match="a test connection through it") as info:
        start_proxy(INSTANCE, port, timeout=10)
    assert info.value.reason == "not-found"
    assert "instanceDoesNotExist" in info.value.message
    assert "gcloud sql instances list" in info.value.message
    assert proxy_processes(f"--port {port}") == []


def test_stop_kills_a_proxy_that_ignores_sigterm(fake_proxy):
    fake_proxy.mode("ignore-term")
    started = start_proxy(INSTANCE, free_port(), timeout=10)
    stopped = stop_proxy(grace=0.3)
    assert stopped.was_running and stopped.forced
    assert not process_alive(started.pid)


def test_health_endpoint_counts_as_ready(fake_proxy, pg_server):
    fake_proxy.mode("quiet")  # never logs the ready line
    port = free_port()
    started = start_proxy(INSTANCE, port, health_port=free_port(), timeout=10)
    assert started.ready
    assert query_through(port, pg_server.admin).startswith("through the proxy")


def test_context_manager_starts_and_stops_or_reuses(fake_proxy, pg_server):
    port = free_port()
    with proxy_running(INSTANCE, port, timeout=10) as own:
        assert not own.already_running
        assert query_through(port, pg_server.admin)
    assert not process_alive(own.pid) and not proxy_status().running

    running = start_proxy(INSTANCE, port, timeout=10)
    with proxy_running(INSTANCE, port, timeout=10) as reused:
        assert reused.already_running and reused.pid == running.pid
    assert process_alive(running.pid) and proxy_status().running


def test_the_proxy_sees_no_password(fake_proxy, monkeypatch):
    secret = "Zq9-never-anywhere-Zq9"
    monkeypatch.setenv("TETHER_PROD_PASSWORD", secret)
    monkeypatch.setenv("PGPASSWORD", secret)
    started = start_proxy(INSTANCE, free_port(), timeout=10)
    proc = Path(f"/proc/{started.pid}")
    assert secret.encode() not in (proc / "cmdline").read_bytes()
    assert secret.encode() not in (proc / "environ").read_bytes()
    assert secret not in json.dumps(proxy_status().to_dict())


def test_missing_binary_says_how_to_install(isolated_project, tmp_path, monkeypatch):
    monkeypatch.delenv("TETHER_PROXY_BINARY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # neither cloud-sql-proxy nor cloud_sql_proxy
    with pytest.raises(ToolMissing, match=r"apt-get install cloudsql-proxy") as info:
        start_proxy(INSTANCE, free_port())
    assert "cloud-sql-proxy" in info.value.message
    monkeypatch.setenv("TETHER_PROXY_BINARY", str(tmp_path / "nope"))
    with pytest.raises(ToolMissing, match="TETHER_PROXY_BINARY"):
        find_proxy_binary()


def run_task(task, **kwargs) -> str:
    from tether.console import console

    console.cache_clear()
    with console().capture() as captured:
        task(Context(), **kwargs)
    return captured.get()


def test_tasks_start_status_logs_stop(fake_proxy, capsys):
    port = free_port()
    assert "Started." in run_task(proxy_tasks.start, port=str(port), instance=INSTANCE, timeout="10")
    proxy_tasks.status(Context(), json=True)
    document = json.loads(capsys.readouterr().out)
    assert (document["running"], document["ready"], document["port"], document["instance"]) == (True, True, port,
                                                                                               INSTANCE)
    assert "ready for new connections" in run_task(proxy_tasks.logs, lines=5)
    assert "was stopped" in run_task(proxy_tasks.stop)
    assert "not running" in run_task(proxy_tasks.status)


def test_task_turns_a_failure_into_one_message(fake_proxy):
    fake_proxy.mode("no-credentials")
    with pytest.raises(Exit) as info:
        proxy_tasks.start(Context(), port=str(free_port()), instance=INSTANCE, timeout="10")
    assert info.value.code == 1
    assert "gcloud auth application-default login" in str(info.value.message)
    with pytest.raises(Exit, match="PROJECT:REGION:INSTANCE"):
        proxy_tasks.start(Context(), port=str(free_port()), instance="not-a-connection-name")


def test_stopping_waits_until_no_process_of_the_group_is_left(monkeypatch):
    """SIGKILL is delivered, not done: on a busy machine a child still ran when the stop returned (seen in CI)."""
    from tether import proxy

    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        assert proxy._group_has_live_members(leader.pid)
        # The group seen as still alive for a few polls after the leader is gone: the stop must keep waiting.
        polls: list[bool] = []
        real = proxy._group_has_live_members

        def lingering(pgid):
            polls.append(True)
            return len(polls) <= 3 or real(pgid)

        monkeypatch.setattr(proxy, "_group_has_live_members", lingering)
        monkeypatch.setattr(proxy, "_POLL", 0.01)
        proxy._terminate(leader.pid, None, grace=0.5)
        assert len(polls) >= 4
        assert not real(leader.pid)
    finally:
        leader.kill()
        leader.wait()
