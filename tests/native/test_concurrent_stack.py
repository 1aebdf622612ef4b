"""One dev stack, whatever runs at the same time: concurrent `up`, `down` and `env` through the real invoke CLI."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tether.processes import processes_in
from tether.stack_lock import StackBusy, read_holder, stack_lock

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("postgres-dev", "postgres-test", "redis")


@dataclass
class Project:
    root: Path
    data: Path
    ports: dict[str, int]
    env: dict[str, str]

    def invoke(self, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "invoke", *argv], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def start(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "invoke", *argv], cwd=REPO, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def project() -> Iterator[Project]:
    root = Path(tempfile.mkdtemp(prefix="tether-concurrent-"))
    data = Path(tempfile.mkdtemp(prefix="tether-concurrent-data-"))
    data.chmod(0o755)
    ports = {"dev": free_port(), "test": free_port(), "redis": free_port()}
    (root / "stacks" / "dev").mkdir(parents=True)
    (root / "stacks" / "dev" / "Pulumi.dev.yaml").write_text(
        "config:\n"
        f"  tether-dev:devPort: {ports['dev']}\n  tether-dev:testPort: {ports['test']}\n"
        f"  tether-dev:redisPort: {ports['redis']}\n")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("INVOKE_", "TETHER_")) and key != "CI"}
    env.update(TETHER_PROJECT_ROOT=str(root), TETHER_NATIVE_DATA=str(data / "native"), TETHER_SQL_DIR=str(REPO / "sql"))
    project = Project(root, data, ports, env)
    yield project
    project.invoke("down", "--backend", "native")
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)


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


def server_ports(project: Project) -> dict[str, set[int]]:
    """For each service, the ports its processes (found by their working directory) listen on."""
    data_root = Path(project.env["TETHER_NATIVE_DATA"])
    listening = listening_ports_by_pid()
    found = {}
    for service in SERVICES:
        pids = processes_in(data_root / service, "redis" if service == "redis" else "postgres")
        found[service] = set().union(*(listening.get(pid, set()) for pid in pids)) if pids else set()
    return found


def assert_one_healthy_stack(project: Project) -> None:
    ports = server_ports(project)
    assert ports == {"postgres-dev": {project.ports["dev"]}, "postgres-test": {project.ports["test"]},
                     "redis": {project.ports["redis"]}}, ports
    health = project.invoke("health", "--json")
    report = json.loads(health.stdout)
    assert health.returncode == 0 and report["healthy"], health.stdout + health.stderr


def test_concurrent_up_down_and_env_leave_one_stack_on_its_own_ports(project: Project) -> None:
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
