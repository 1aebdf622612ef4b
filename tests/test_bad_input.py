"""Bad input through the real tasks: one clear paragraph, a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit

from tests.conftest import free_port
from tether.endpoints import parse_outputs
from tether.errors import ConfigError
from tether.redis_client import RedisAddress, RedisError, connect, ping
from tether.tasks import devstack

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-Redis-pw"  # a test value, checked never to be printed


def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


def valid_outputs(redis_port: int | None = None) -> dict[str, object]:
    def postgres(database: str) -> dict[str, object]:
        return {"host": "127.0.0.1", "port": closed_port(), "database": database, "user": "app",
                "password": "pw", "internalHost": "postgres", "internalPort": 5432}

    return {"backend": "native", "postgresDev": postgres("app_dev"), "postgresTest": postgres("test_db"),
            "redis": {"host": "127.0.0.1", "port": redis_port or closed_port(), "password": PASSWORD}}


def broken(change: Callable[[dict], object]) -> str:
    outputs = json.loads(json.dumps(valid_outputs()))
    return json.dumps(change(outputs))


def _set(outputs: dict, section: str, key: str, value: object) -> dict:
    outputs[section][key] = value
    return outputs


def _drop(outputs: dict, section: str) -> dict:
    del outputs[section]
    return outputs


@dataclass
class Case:
    """One bad input: the files of the project, the command line, and what the message must say."""

    argv: list[str]
    says: list[str]
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2  # ConfigError's exit code


OUTPUTS = ".runtime/native/outputs.json"
DEV_STACK = "stacks/dev/Pulumi.dev.yaml"
PROD_STACK = "stacks/prod/Pulumi.prod.yaml"

CASES = {
    # A corrupted native state file, read by every task that needs the dev stack's addresses.
    "outputs-list": Case(["health"], ["outputs.json", "a list", "invoke up"], {OUTPUTS: "[]"}),
    "outputs-string": Case(["health"], ["outputs.json", "a string", "invoke up"], {OUTPUTS: '"x"'}),
    "outputs-port-text": Case(["health"], ["postgresDev.port", "'abc'", "invoke up"],
                              {OUTPUTS: broken(lambda o: _set(o, "postgresDev", "port", "abc"))}),
    "outputs-port-range": Case(["health"], ["postgresTest.port", "70000", "invoke up"],
                               {OUTPUTS: broken(lambda o: _set(o, "postgresTest", "port", 70000))}),
    "outputs-redis-empty": Case(["health"], ["redis.host", "missing", "invoke up"],
                                {OUTPUTS: broken(lambda o: {**o, "redis": {}})}),
    "outputs-section-missing": Case(["health"], ["postgresTest", "missing", "invoke up"],
                                    {OUTPUTS: broken(lambda o: _drop(o, "postgresTest"))}),
    # A garbage dev stack file, read by status, up and down.
    "dev-stack-not-yaml": Case(["status"], [DEV_STACK, "not valid YAML", "line 2, column 1"],
                               {DEV_STACK: "config: [\n"}),
    "dev-stack-list": Case(["up", "--backend", "native"], [DEV_STACK, "a list"], {DEV_STACK: "- a\n- b\n"}),
    "dev-stack-version-text": Case(["down", "--backend", "native"], [DEV_STACK, "tether-dev:postgresVersion", "'x'"],
                                   {DEV_STACK: "config:\n  tether-dev:postgresVersion: x\n"}),
    "dev-stack-port-text": Case(["status"], [DEV_STACK, "tether-dev:devPort", "'abc'"],
                                {DEV_STACK: "config:\n  tether-dev:devPort: abc\n"}),
    "dev-stack-config-number": Case(["status"], [DEV_STACK, "`config:`"], {DEV_STACK: "config: 3\n"}),
    # The proxy's flags and their INVOKE_PROXY_* counterparts, checked before any proxy starts.
    "logs-lines-text": Case(["proxy.logs", "--lines", "abc"], ["--lines", "'abc'"]),
    "logs-lines-zero": Case(["proxy.logs", "--lines", "0"], ["--lines", "above 0"]),
    "start-timeout-negative": Case(["proxy.start", "--instance", "p:r:i", "--timeout", "-1"], ["--timeout", "'-1'"]),
    "start-timeout-zero": Case(["proxy.start", "--instance", "p:r:i", "--timeout", "0"], ["--timeout", "above 0"]),
    "start-timeout-nan": Case(["proxy.start", "--instance", "p:r:i", "--timeout", "nan"], ["--timeout", "'nan'"]),
    "start-port-range": Case(["proxy.start", "--instance", "p:r:i", "--port", "70000"], ["--port", "65535"]),
    "env-proxy-port": Case(["proxy.start", "--instance", "p:r:i"], ["proxy.port", "INVOKE_PROXY_PORT", "'abc'"],
                           env={"INVOKE_PROXY_PORT": "abc"}),
    "env-proxy-timeout": Case(["proxy.start", "--instance", "p:r:i"], ["proxy.timeout", "'-5'"],
                              env={"INVOKE_PROXY_TIMEOUT": "-5"}),
    "env-proxy-iam": Case(["proxy.start", "--instance", "p:r:i"], ["proxy.iam", "'perhaps'"],
                          env={"INVOKE_PROXY_IAM": "perhaps"}),
    "stop-grace-negative": Case(["proxy.stop", "--grace", "-1"], ["--grace", "'-1'"]),
    # Messages that used to read wrong.
    "preview-without-stack": Case(["preview"], ["No --stack given: use --stack dev or --stack prod."]),
}

# These read the prod stack file through tether.production.load_production_settings.
PROD_CASES = {
    "prod-stack-port-text": Case(["proxy.start", "--instance", "p:r:i"], [PROD_STACK, "tether-prod:proxyPort", "'abc'"],
                                 {PROD_STACK: "config:\n  tether-prod:proxyPort: abc\n"}),
    "prod-stack-not-yaml": Case(["db.dump", "--db", "prod"], [PROD_STACK, "not valid YAML"],
                                {PROD_STACK: "config: [\n"}),
    "prod-stack-list": Case(["proxy.start", "--instance", "p:r:i"], [PROD_STACK, "a list"],
                            {PROD_STACK: "- 1\n"}),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "stacks" / "dev").mkdir(parents=True)
    (root / "stacks" / "prod").mkdir(parents=True)
    return root


def run_invoke(root: Path, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("INVOKE_", "TETHER_")) and key != "CI"}
    environment.update(TETHER_PROJECT_ROOT=str(root), **(env or {}))
    return subprocess.run([sys.executable, "-m", "invoke", *argv], cwd=REPO, env=environment, capture_output=True,
                          text=True, timeout=60, check=False)


def assert_one_clear_paragraph(result: subprocess.CompletedProcess[str], says: list[str], code: int) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    message = result.stderr.strip()
    assert message and "\n\n" not in message and len(message.splitlines()) <= 3, message
    for fragment in says:
        assert fragment in message, (fragment, message)
    assert PASSWORD not in result.stderr + result.stdout


def _lay_out(root: Path, case: Case) -> None:
    for relative, text in case.files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _stand_in_proxy(root: Path) -> tuple[dict[str, str], Path]:
    """A proxy binary that only records that something ran it: nothing may, when a flag is wrong."""
    marker = root / "proxy-was-run"
    binary = root / "bin" / "cloud-sql-proxy"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text(f"#!/bin/sh\ntouch '{marker}'\nsleep 30\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return {"TETHER_PROXY_BINARY": str(binary)}, marker


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_paragraph_and_a_non_zero_exit(project: Path, case: Case) -> None:
    _lay_out(project, case)
    proxy_env, marker = _stand_in_proxy(project)
    result = run_invoke(project, case.argv, {**proxy_env, **case.env})
    assert_one_clear_paragraph(result, case.says, case.code)
    assert not marker.exists(), "a proxy was started despite the bad input"
    assert not (project / ".runtime" / "native" / "data").exists()  # nothing was created for the dev stack


@pytest.mark.parametrize("case", list(PROD_CASES.values()), ids=list(PROD_CASES))
def test_bad_prod_stack_file_is_one_paragraph(project: Path, case: Case) -> None:
    _lay_out(project, case)
    proxy_env, marker = _stand_in_proxy(project)
    result = run_invoke(project, case.argv, {**proxy_env, **case.env})
    assert_one_clear_paragraph(result, case.says, case.code)
    assert not marker.exists()


@pytest.mark.parametrize("text, says", [
    ("config:\n  tether-prod:proxyPort: abc\n", ["tether-prod:proxyPort", "'abc'"]),
    ("config:\n  tether-prod:proxyPort: 0\n", ["tether-prod:proxyPort", "65535"]),
    ("config: [\n", ["not valid YAML", "line 2"]),
    ("[1, 2]\n", ["a list"]),
    ("config: text\n", ["`config:`", "a string"]),
], ids=["port-text", "port-zero", "not-yaml", "list", "config-string"])
def test_prod_settings_name_the_file_and_the_key(tmp_path: Path, text: str, says: list[str]) -> None:
    from infra.prod.settings import load_prod_settings

    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as raised:
        load_prod_settings(path)
    message = str(raised.value)
    assert message.startswith(str(path)) and "Fix it" in message
    for fragment in says:
        assert fragment in message


def test_parse_outputs_never_leaks_a_password_it_cannot_read() -> None:
    outputs = valid_outputs()
    outputs["redis"]["password"] = ["s3cret-in-a-list"]  # type: ignore[index]
    with pytest.raises(ConfigError) as raised:
        parse_outputs(outputs, "outputs.json")
    assert "redis.password" in str(raised.value) and "s3cret-in-a-list" not in str(raised.value)


def test_db_init_connection_error_names_no_other_task(isolated_project: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.tasks import schema

    monkeypatch.setenv("TETHER_SQL_DIR", str(REPO / "sql"))
    with pytest.raises(Exit) as raised:
        schema.init(Context(), db=f"postgresql://app@127.0.0.1:{closed_port()}/app", yes=True)
    message = str(raised.value.message)
    assert raised.value.code != 0 and "Cannot connect" in message
    assert "db.status" not in message


def test_docker_stop_failure_does_not_repeat_itself(isolated_project: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # No Docker here: a stand-in CLI answers as docker does when its engine is down.
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                      "Is the docker daemon running?' >&2\nexit 1\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{docker.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(Exit) as raised:
        devstack.down(Context(), backend="docker")
    message = str(raised.value.message)
    assert "docker daemon running?" in message
    assert message.lower().count("running?") == 1 and "?." not in message


# --- Redis that accepts but misbehaves ------------------------------------------------------------

@pytest.fixture
def silent_redis() -> Iterator[socket.socket]:
    """A port that accepts connections (the kernel does, from the backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener
    listener.close()


def serve_once(reply: Callable[[socket.socket], None]) -> tuple[int, threading.Thread]:
    """A one-connection server that reads a command, then does ``reply`` to the client."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                reply(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def test_redis_that_never_answers_is_a_redis_error_and_the_socket_is_closed(silent_redis: socket.socket) -> None:
    port = silent_redis.getsockname()[1]
    address = RedisAddress("127.0.0.1", port, PASSWORD)
    with pytest.raises(RedisError) as raised, connect(address, timeout=0.3):
        pass
    message = str(raised.value)
    assert "did not answer within 0.3 s" in message and PASSWORD not in message
    conn, _ = silent_redis.accept()
    with conn:
        conn.settimeout(5)
        received = b""
        while chunk := conn.recv(4096):  # ends at EOF: the client closed its socket after AUTH failed
            received += chunk
    assert b"AUTH" in received


@pytest.mark.parametrize("reply, says", [
    (_reset, "Cannot reach Redis"),
    (lambda conn: conn.sendall(b":abc\r\n"), "is something other than Redis listening"),
    (lambda conn: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n"), "is something other than Redis listening"),
    (lambda conn: conn.sendall(b"$10\r\nabc"), "Cannot reach Redis"),
    (lambda conn: None, "Cannot reach Redis"),
], ids=["reset", "bad-integer", "not-redis", "short-bulk", "hang-up"])
def test_redis_that_misbehaves_after_connect_is_a_redis_error(reply: Callable[[socket.socket], None],
                                                              says: str) -> None:
    port, thread = serve_once(reply)
    with pytest.raises(RedisError, match=says):
        ping(RedisAddress("127.0.0.1", port), timeout=5)
    thread.join(5)


@pytest.mark.slow
def test_health_against_a_silent_redis_reports_it_unhealthy(project: Path, silent_redis: socket.socket) -> None:
    _lay_out(project, Case([], [], {OUTPUTS: json.dumps(valid_outputs(silent_redis.getsockname()[1]))}))
    result = run_invoke(project, ["health"])
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 1
    assert "FAIL redis" in result.stdout and "did not answer" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


# --- Typed flags: a bad value is one line and exit 1, for every task -------------------------------------------

def _typed_flags() -> list[tuple[str, str]]:
    """Every (task, flag) whose value invoke casts (from the type of its default): int, float...

    Read in a child process: invoke's ``get_arguments`` consumes each task's help as it builds the arguments,
    which would leave this process's tasks without their help texts.
    """
    probe = ("import json, tasks\n"
             "print(json.dumps([[name, '--' + argument.name.replace('_', '-')]"
             " for name in sorted(tasks.ns.task_names) for argument in tasks.ns[name].get_arguments()"
             " if argument.kind not in (str, bool, list)]))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return [(task, flag) for task, flag in json.loads(result.stdout)]


TYPED_FLAGS = _typed_flags()


def test_the_typed_flags_are_found() -> None:
    assert ("sync-prod", "--jobs") in TYPED_FLAGS  # the enumeration below really covers something


@pytest.mark.parametrize(("task", "flag"), TYPED_FLAGS, ids=[f"{task} {flag}" for task, flag in TYPED_FLAGS])
@pytest.mark.parametrize("value", ["abc", "1.5", ""], ids=["word", "fraction", "empty"])
def test_a_bad_value_for_a_typed_flag_is_one_line_never_a_traceback(project: Path, task: str, flag: str,
                                                                    value: str) -> None:
    result = run_invoke(project, [task, f"{flag}={value}"] if value else [task, flag, value])
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert flag in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


# --- A refused connection keeps libpq's reason ----------------------------------------------------------------

@pytest.mark.parametrize("argv", [["health"], ["target.local"]], ids=["health", "target.local"])
def test_a_refused_connection_says_connection_refused(project: Path, argv: list[str]) -> None:
    _lay_out(project, Case([], [], {OUTPUTS: json.dumps(valid_outputs())}))
    result = run_invoke(project, argv)
    assert "Traceback" not in result.stderr + result.stdout and result.returncode != 0
    assert "Connection refused" in result.stdout + result.stderr


def test_db_reset_against_a_stopped_server_says_connection_refused(project: Path) -> None:
    _lay_out(project, Case([], [], {OUTPUTS: json.dumps(valid_outputs())}))
    result = run_invoke(project, ["db.reset", "--yes"])
    assert "Traceback" not in result.stderr + result.stdout and result.returncode != 0
    assert "Connection refused" in result.stderr
