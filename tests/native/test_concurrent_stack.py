"""One dev stack, whatever runs at the same time: concurrent `up`, `down` and `env` through the real invoke CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.native.cli_project import REPO, CliProject, cli_project_files
from tether.processes import processes_in
from tether.stack_lock import StackBusy, read_holder, stack_lock

SERVICES = ("postgres-dev", "postgres-test", "redis")


@pytest.fixture
def project() -> Iterator[CliProject]:
    project = CliProject(*cli_project_files("tether-concurrent"))
    yield project
    project.remove()


def listening_ports_by_pid() -> dict[int, set[int]]:
    """Every listening TCP port on this machine, by the pid that owns it (from `ss`)."""
    result = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True)
    owners: dict[int, set[int]] = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        port = int(fields[3].rsplit(":", 1)[1])
        for chunk in line.split("pid=")[1:]:
            owners.setdefault(int(chunk.split(",")[0]), set()).add(port)
    return owners


def server_ports(project: CliProject) -> dict[str, set[int]]:
    """For each service, the ports its processes (found by their working directory) listen on."""
    data_root = Path(project.env["TETHER_NATIVE_DATA"])
    listening = listening_ports_by_pid()
    found = {}
    for service in SERVICES:
        pids = processes_in(data_root / service, "redis" if service == "redis" else "postgres")
        found[service] = set().union(*(listening.get(pid, set()) for pid in pids)) if pids else set()
    return found


def assert_one_healthy_stack(project: CliProject) -> None:
    ports = server_ports(project)
    assert ports == {"postgres-dev": {project.ports["dev"]}, "postgres-test": {project.ports["test"]},
                     "redis": {project.ports["redis"]}}, ports
    health = project.invoke("health", "--json")
    report = json.loads(health.stdout)
    assert health.returncode == 0 and report["healthy"], health.stdout + health.stderr


def test_concurrent_up_down_and_env_leave_one_stack_on_its_own_ports(project: CliProject) -> None:
    first = project.invoke("up", "--backend", "native", "--json")
    assert first.returncode == 0, first.stderr
    generator = random.Random(16)
    commands = [("up", "--backend", "native", "--json"), ("down", "--backend", "native"), ("env",)]
    rounds, waited = 4, 0
    for _ in range(rounds):
        batch = [generator.choice(commands) for _ in range(3)]
        running = [(command, project.start(*command)) for command in batch]
        for command, process in running:
            _out, err = process.communicate(timeout=300)
            assert "Traceback" not in err, err
            assert process.returncode == 0, (command, process.returncode, err[-2000:])
            waited += "waiting for another" in err
        # Whatever the order was, one `up` afterwards brings exactly one healthy stack on the configured ports.
        again = project.invoke("up", "--backend", "native", "--json")
        assert again.returncode == 0, again.stderr
        assert_one_healthy_stack(project)
    assert waited > 0  # the commands did meet each other (and said whom they waited for)


def test_a_second_up_waits_naming_the_first_and_times_out_clearly(isolated_project: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom tether.stack_lock import stack_lock\n"
         "with stack_lock('invoke up'):\n    print('held', flush=True)\n    time.sleep(60)\n"],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "TETHER_PROJECT_ROOT": str(isolated_project)})
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert read_holder(isolated_project / ".runtime" / "stack.lock").pid == holder.pid
        started = time.monotonic()
        with pytest.raises(StackBusy) as busy, stack_lock("invoke env", timeout=0.5):
            pass
        assert time.monotonic() - started >= 0.5
        message = busy.value.message
        assert f"`invoke up` (pid {holder.pid})" in message and f"kill {holder.pid}" in message
        assert f"waiting for another `invoke up` (pid {holder.pid})" in capsys.readouterr().err
        holder.kill()  # kill -9: the kernel releases the lock with the process
        holder.wait()
        with stack_lock("invoke env", timeout=5):
            assert read_holder(isolated_project / ".runtime" / "stack.lock").pid == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_reentrant_within_one_command(isolated_project: Path) -> None:
    with stack_lock("invoke up", timeout=0.2), stack_lock("invoke env", timeout=0.2):
        assert read_holder(isolated_project / ".runtime" / "stack.lock").command == "invoke up"


def test_a_bad_lock_timeout_is_a_clear_error(isolated_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_LOCK_TIMEOUT", "soon")
    with pytest.raises(Exception, match="TETHER_LOCK_TIMEOUT must be a number"), stack_lock("invoke up"):
        pass
