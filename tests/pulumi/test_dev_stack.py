"""The Docker dev stack's Pulumi program under Pulumi's mocks: what it declares, for which config, what it exports."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from tests.conftest import free_port


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo every resource's inputs as its state, fill the few computed outputs, and remember it all."""

    def __init__(self) -> None:
        self.resources: dict[str, pulumi.runtime.MockResourceArgs] = {}  # by logical name

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)  # camelCase, as the engine would hand it back
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = mock_password(args.name)
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = image_id(args.name)
        self.resources[args.name] = args
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


def mock_password(resource_name: str) -> str:
    return f"pw{resource_name.replace('-', '')}"


def image_id(resource_name: str) -> str:
    return f"sha256:{resource_name}"


MOCKS = RecordingMocks()
MONITOR = MockMonitor(MOCKS)  # keeps each resource's URN, which shows its parents' types
PROJECT = "tether-dev"


def use_mocks() -> None:
    pulumi.runtime.set_mocks(MOCKS, project=PROJECT, stack="dev", preview=False, monitor=MONITOR)


# Before the program's modules are imported, as Pulumi's testing guide asks.
use_mocks()

from infra.dev.postgres import readiness_test  # noqa: E402
from infra.dev.redis import PASSWORD_FILE, health_test, server_command  # noqa: E402
from infra.dev.settings import DEFAULTS, DevSettings, dev_settings  # noqa: E402
from infra.dev.stack import DevStack, build_dev_stack  # noqa: E402
from tether.endpoints import parse_outputs  # noqa: E402
from tether.redis_client import RedisAddress, connect  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STACK_DIR = ROOT / "stacks" / "dev"


def settings_from(values: dict[str, Any]) -> DevSettings:
    """Settings as the program would build them from a stack config holding ``values``."""
    return dev_settings(lambda key: values.get(key))


DEFAULT = settings_from({})

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
IMAGE = "docker:index/remoteImage:RemoteImage"
PASSWORD = "random:index/randomPassword:RandomPassword"


@pytest.fixture(autouse=True)
def dev_mocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingMocks]:
    # Again per test: another test module may have installed its own mocks and project since import.
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    use_mocks()
    MOCKS.resources.clear()
    MONITOR.resources.clear()
    yield MOCKS
    MOCKS.resources.clear()
    MONITOR.resources.clear()


@dataclass
class Declared:
    """What the program registered, as the Pulumi engine would have received it."""

    resources: dict[str, pulumi.runtime.MockResourceArgs]

    def of_type(self, typ: str) -> dict[str, dict[str, Any]]:
        """Inputs by Docker-side name (the `name` input) of each resource of one type."""
        return {args.inputs["name"]: args.inputs for args in self.resources.values() if args.typ == typ}

    def container(self, name: str) -> dict[str, Any]:
        return self.of_type(CONTAINER)[name]

    def env(self, name: str) -> dict[str, str]:
        return dict(item.split("=", 1) for item in unwrap_secret(self.container(name)["envs"]))


def is_secret_input(value: Any) -> bool:
    """Whether an input reached the engine marked secret (the mock monitor passes the marker through)."""
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unwrap_secret(value: Any) -> Any:
    return value["value"] if is_secret_input(value) else value


def settle(stack: DevStack) -> pulumi.Output[Declared]:
    """Wait until every resource of the stack is registered, then snapshot the mock's records."""
    components = (stack.postgres_dev, stack.postgres_test, stack.redis)
    resources = [stack.network.network, stack.postgres_image, stack.redis_image,
                 *(r for c in components for r in (c.container, c.volume))]
    return pulumi.Output.all(*[r.urn for r in resources]).apply(
        lambda _: Declared(dict(MOCKS.resources)))


def declare(settings: DevSettings) -> pulumi.Output[Declared]:
    return settle(build_dev_stack(settings))


# --- what the default program declares ----------------------------------------------------------------

@pulumi.runtime.test
def test_declares_exactly_the_dev_stack_resources() -> pulumi.Output[None]:
    def check(declared: Declared) -> None:
        assert sorted(declared.of_type(CONTAINER)) == ["postgres-dev", "postgres-test", "redis"]
        assert sorted(declared.of_type(VOLUME)) == ["postgres-dev-data", "postgres-test-data", "redis-data"]
        assert list(declared.of_type(NETWORK)) == ["tether-dev"]
        assert sorted(declared.of_type(IMAGE)) == ["postgres:15-alpine", "redis:7-alpine"]
        passwords = [args.inputs for args in declared.resources.values() if args.typ == PASSWORD]
        assert len(passwords) == 3
        for inputs in passwords:
            assert inputs["special"] is False  # the password must survive URLs unescaped
            assert inputs["length"] >= 24

    return declare(DEFAULT).apply(check)


@pulumi.runtime.test
def test_containers_run_the_pulled_images() -> pulumi.Output[None]:
    def check(declared: Declared) -> None:
        images = declared.of_type(IMAGE)
        assert all(inputs["keepLocally"] is True for inputs in images.values())
        assert declared.container("postgres-dev")["image"] == image_id("tether-postgres-image")
        assert declared.container("postgres-test")["image"] == image_id("tether-postgres-image")
        assert declared.container("redis")["image"] == image_id("tether-redis-image")

    return declare(DEFAULT).apply(check)


@pulumi.runtime.test
def test_ports_are_published_on_loopback_only() -> pulumi.Output[None]:
    expected = {"postgres-dev": (5435, 5432), "postgres-test": (5433, 5432), "redis": (6379, 6379)}

    def check(declared: Declared) -> None:
        for name, (external, internal) in expected.items():
            assert declared.container(name)["ports"] == [
                {"internal": internal, "external": external, "ip": "127.0.0.1", "protocol": "tcp"}]

    return declare(DEFAULT).apply(check)


@pulumi.runtime.test
def test_containers_join_the_private_network_under_their_service_names() -> pulumi.Output[None]:
    def check(declared: Declared) -> None:
        assert declared.of_type(NETWORK)["tether-dev"]["driver"] == "bridge"
        for name in ("postgres-dev", "postgres-test", "redis"):
            container = declared.container(name)
            assert container["networksAdvanced"] == [{"name": "tether-dev", "aliases": [name]}]
            assert "networkMode" not in container  # not the default bridge or the host network

    return declare(DEFAULT).apply(check)


@pulumi.runtime.test
def test_data_lives_on_named_volumes() -> pulumi.Output[None]:
    def check(declared: Declared) -> None:
        assert declared.container("postgres-dev")["volumes"] == [
            {"volumeName": "postgres-dev-data", "containerPath": "/var/lib/postgresql/data"}]
        assert declared.container("postgres-test")["volumes"] == [
            {"volumeName": "postgres-test-data", "containerPath": "/var/lib/postgresql/data"}]
        assert declared.container("redis")["volumes"] == [{"volumeName": "redis-data", "containerPath": "/data"}]

    return declare(DEFAULT).apply(check)


@pulumi.runtime.test
def test_postgres_servers_have_their_database_user_and_generated_password() -> pulumi.Output[None]:
    def check(declared: Declared) -> None:
        assert declared.env("postgres-dev") == {
            "POSTGRES_DB": "app_dev", "POSTGRES_USER": "app",
            "POSTGRES_PASSWORD": mock_password("tether-postgres-dev-password")}
        assert declared.env("postgres-test") == {
            "POSTGRES_DB": "test_db", "POSTGRES_USER": "test_user",
            "POSTGRES_PASSWORD": mock_password("tether-postgres-test-password")}
        assert mock_password("tether-postgres-dev-password") != mock_password("tether-postgres-test-password")
        assert is_secret_input(declared.container("postgres-dev")["envs"])
        assert is_secret_input(declared.container("postgres-test")["envs"])

    return declare(DEFAULT).apply(check)


@pulumi.runtime.test
def test_health_checks_restart_policy_and_wait_for_healthy() -> pulumi.Output[None]:
    def check(declared: Declared) -> None:
        assert declared.container("postgres-dev")["healthcheck"]["tests"] == [
            "CMD", "pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "app", "-d", "app_dev"]
        assert declared.container("postgres-test")["healthcheck"]["tests"] == [
            "CMD", "pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "test_user", "-d", "test_db"]
        assert declared.container("redis")["healthcheck"]["tests"] == [
            "CMD-SHELL", f'REDISCLI_AUTH="$(cat {PASSWORD_FILE})" redis-cli ping | grep -q PONG']
        for name in ("postgres-dev", "postgres-test", "redis"):
            container = declared.container(name)
            assert container["healthcheck"]["retries"] > 0
            assert container["healthcheck"]["interval"].endswith("s")
            assert container["restart"] == "unless-stopped"
            assert container["wait"] is True
            assert container["waitTimeout"] >= 60

    return declare(DEFAULT).apply(check)


@pulumi.runtime.test
def test_redis_requires_its_password_without_showing_it_in_the_command() -> pulumi.Output[None]:
    password = mock_password("tether-redis-password")

    def check(declared: Declared) -> None:
        redis = declared.container("redis")
        # `docker inspect` prints Config.Env with its values: the password must not be there at all.
        assert "envs" not in redis
        assert is_secret_input(redis["uploads"])  # the state keeps the file's content encrypted
        (upload,) = unwrap_secret(redis["uploads"])
        assert upload == {"file": PASSWORD_FILE, "content": password,
                          "permissions": "0400"}  # root only: the shell and the health check run as root
        command = redis["command"]
        assert command[:2] == ["sh", "-c"]
        assert "redis-server - --appendonly yes" in command[2]
        assert f'requirepass "$(cat {PASSWORD_FILE})"' in command[2]
        assert "exec docker-entrypoint.sh" in command[2]  # keeps the image's switch from root to `redis`
        assert "entrypoints" not in redis
        inspected = json.dumps({key: value for key, value in redis.items() if key != "uploads"})
        assert password not in inspected

    return declare(DEFAULT).apply(check)


@pulumi.runtime.test
def test_resources_sit_in_components_with_tether_type_tokens() -> pulumi.Output[None]:
    def check(declared: Declared) -> None:
        # The mock monitor's URNs name the direct parent's type only (the engine's name the whole chain).
        urns = {urn.split("::", 2)[2] for urn in MONITOR.get_registered_resources()}
        stack, postgres, redis = "tether:dev:Stack", "tether:dev:Postgres", "tether:dev:Redis"
        assert urns == {
            f"pulumi:pulumi:Stack${stack}::tether",
            f"{stack}$tether:dev:Network::tether-network",
            f"tether:dev:Network${NETWORK}::tether-network-bridge",
            f"{stack}${IMAGE}::tether-postgres-image",
            f"{stack}${IMAGE}::tether-redis-image",
            *(f"{stack}${postgres}::tether-{name}" for name in ("postgres-dev", "postgres-test")),
            *(f"{postgres}${typ}::tether-{name}-{suffix}"
              for name in ("postgres-dev", "postgres-test")
              for typ, suffix in ((PASSWORD, "password"), (VOLUME, "data"), (CONTAINER, "container"))),
            f"{stack}${redis}::tether-redis",
            *(f"{redis}${typ}::tether-redis-{suffix}"
              for typ, suffix in ((PASSWORD, "password"), (VOLUME, "data"), (CONTAINER, "container"))),
        }

    return declare(DEFAULT).apply(check)


# --- outputs ------------------------------------------------------------------------------------------

@pulumi.runtime.test
async def test_outputs_have_the_shape_the_tasks_read() -> None:
    stack = build_dev_stack(DEFAULT)
    outputs = stack.stack_outputs()
    resolved = {key: await pulumi.Output.from_input(value).future() for key, value in outputs.items()}
    assert resolved == {
        "postgresDev": {"host": "127.0.0.1", "port": 5435, "database": "app_dev", "user": "app",
                        "password": mock_password("tether-postgres-dev-password"),
                        "internalHost": "postgres-dev", "internalPort": 5432},
        "postgresTest": {"host": "127.0.0.1", "port": 5433, "database": "test_db", "user": "test_user",
                         "password": mock_password("tether-postgres-test-password"),
                         "internalHost": "postgres-test", "internalPort": 5432},
        "redis": {"host": "127.0.0.1", "port": 6379, "password": mock_password("tether-redis-password"),
                  "internalHost": "redis", "internalPort": 6379},
        "backend": "docker",
    }
    endpoints = parse_outputs(resolved, "mocked stack")
    assert endpoints.dev.address.port == 5435
    assert endpoints.test.address.database == "test_db"
    assert endpoints.redis.address == RedisAddress("127.0.0.1", 6379, mock_password("tether-redis-password"))


@pulumi.runtime.test
async def test_passwords_are_secret_and_nothing_else_is() -> None:
    stack = build_dev_stack(DEFAULT)
    outputs = stack.stack_outputs()
    for key in ("postgresDev", "postgresTest", "redis"):
        for field, value in outputs[key].items():
            assert await pulumi.Output.from_input(value).is_secret() == (field == "password"), (key, field)
    for component in (stack.postgres_dev, stack.postgres_test):
        # The engine records the container's env (which holds the password) as a secret in the state.
        assert await component.container.envs.is_secret()
    # Redis's password is in the uploaded file, which the state keeps as a secret.
    assert await stack.redis.container.uploads.is_secret()


# --- config changes the program -----------------------------------------------------------------------

@pulumi.runtime.test
def test_config_changes_ports_version_and_database() -> pulumi.Output[None]:
    settings = settings_from({"devPort": "6000", "testPort": 6001, "redisPort": "6380", "postgresVersion": "16",
                              "devDatabase": "shop_dev", "devUser": "shop", "network": "shopnet"})

    def check(declared: Declared) -> None:
        assert sorted(declared.of_type(IMAGE)) == ["postgres:16-alpine", "redis:7-alpine"]
        assert list(declared.of_type(NETWORK)) == ["shopnet"]
        dev = declared.container("postgres-dev")
        assert dev["ports"][0]["external"] == 6000
        assert declared.container("postgres-test")["ports"][0]["external"] == 6001
        assert declared.container("redis")["ports"][0]["external"] == 6380
        assert declared.env("postgres-dev")["POSTGRES_DB"] == "shop_dev"
        assert declared.env("postgres-dev")["POSTGRES_USER"] == "shop"
        assert dev["healthcheck"]["tests"][-4:] == ["-U", "shop", "-d", "shop_dev"]
        assert dev["networksAdvanced"][0]["name"] == "shopnet"
        assert declared.env("postgres-test")["POSTGRES_DB"] == "test_db"  # untouched keys keep their defaults

    return declare(settings).apply(check)


@pulumi.runtime.test
def test_postgres_18_mounts_its_volume_where_that_image_keeps_data() -> pulumi.Output[None]:
    settings = settings_from({"postgresVersion": 18, "bindAddress": "localhost",
                              "postgresImage": "postgis/postgis:18-3.5-alpine"})

    def check(declared: Declared) -> None:
        assert sorted(declared.of_type(IMAGE)) == ["postgis/postgis:18-3.5-alpine", "redis:7-alpine"]
        assert declared.container("postgres-dev")["volumes"][0]["containerPath"] == "/var/lib/postgresql"
        # Docker needs an IP to bind: `localhost` publishes on 127.0.0.1.
        assert {declared.container(name)["ports"][0]["ip"] for name in ("postgres-dev", "redis")} == {"127.0.0.1"}

    return declare(settings).apply(check)


@pulumi.runtime.test
def test_the_program_reads_its_config_and_exports_the_outputs(monkeypatch: pytest.MonkeyPatch) -> pulumi.Output[None]:
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({f"{PROJECT}:devPort": "7435", f"{PROJECT}:postgresVersion": "17",
                                                    f"{PROJECT}:testDatabase": "ci_test"}))
    program = runpy.run_path(str(STACK_DIR / "__main__.py"))
    exported = pulumi.runtime.settings.get_root_resource().outputs  # type: ignore[union-attr]

    def check(declared: Declared) -> None:
        assert declared.container("postgres-dev")["ports"][0]["external"] == 7435
        assert declared.env("postgres-test")["POSTGRES_DB"] == "ci_test"
        assert sorted(declared.of_type(IMAGE)) == ["postgres:17-alpine", "redis:7-alpine"]
        assert set(exported) >= {"postgresDev", "postgresTest", "redis", "backend"}
        assert exported["backend"] == "docker"
        assert exported["postgresDev"]["port"] == 7435
        assert exported["postgresTest"]["database"] == "ci_test"

    return settle(program["stack"]).apply(check)


def test_the_program_turns_bad_config_into_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({f"{PROJECT}:devPort": "70000"}))
    with pytest.raises(pulumi.RunError, match=r"tether-dev:devPort must be between 1 and 65535.*config set"):
        runpy.run_path(str(STACK_DIR / "__main__.py"))


# --- the project file documents the config --------------------------------------------------------------

PULUMI_TYPES = {"integer": int, "string": str, "boolean": bool}


def test_project_file_runs_python_from_the_repository_virtualenv() -> None:
    project = yaml.safe_load((STACK_DIR / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT
    assert project["description"]
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "uv", "virtualenv": "../../.venv"}}


def test_project_file_documents_every_setting_with_its_default() -> None:
    config = yaml.safe_load((STACK_DIR / "Pulumi.yaml").read_text())["config"]
    assert set(config) == set(DEFAULTS)
    for key, schema in config.items():
        # Pulumi's rule: a typed schema needs a key of this project (no namespace, or `tether-dev:`).
        assert ":" not in key
        assert set(schema) == {"type", "default", "description"}, key
        assert isinstance(schema["default"], PULUMI_TYPES[schema["type"]]), key
        assert schema["default"] == DEFAULTS[key], key
        assert schema["description"].strip(), key


def test_stack_file_sets_only_known_keys_and_no_password() -> None:
    text = (STACK_DIR / "Pulumi.dev.yaml").read_text()
    config = yaml.safe_load(text)["config"]
    assert {key.removeprefix(f"{PROJECT}:") for key in config} <= set(DEFAULTS)
    assert settings_from({k.removeprefix(f"{PROJECT}:"): v for k, v in config.items()}) == DEFAULT
    for path in STACK_DIR.iterdir():
        if path.is_file():
            assert "secure:" not in path.read_text() and "password:" not in path.read_text().lower(), path


# --- the Redis command and health check, run for real (no Docker: the image's entrypoint is stubbed) ---------

def test_redis_command_and_health_check_work_against_a_real_redis(tmp_path: Path) -> None:
    redis_cli = shutil.which("redis-cli")
    assert shutil.which("redis-server") and redis_cli, "redis-server and redis-cli must be installed for this test"
    port, password = free_port(), "Sup3rSecretRedisPw"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Stand-ins for what the image provides: its entrypoint (minus the switch to user `redis`) and redis-cli
    # on the container's port; the test appends a port and a directory of its own.
    (bin_dir / "docker-entrypoint.sh").write_text(
        f'#!/bin/sh\nexec "$@" --port {port} --bind 127.0.0.1 --dir {tmp_path} --save ""\n')
    (bin_dir / "redis-cli").write_text(f'#!/bin/sh\nexec {redis_cli} -p {port} "$@"\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    password_file = tmp_path / "redis-password"
    password_file.write_text(password)
    password_file.chmod(0o400)
    # No password in the environment: the command and the health check read the file, as in the container.
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def healthy(auth: str) -> bool:
        auth_file = tmp_path / "auth"
        auth_file.write_text(auth)
        check = subprocess.run(["sh", "-c", health_test(str(auth_file))[1]], env=env, capture_output=True,
                               check=False)
        return check.returncode == 0

    server = subprocess.Popen(server_command(DEFAULT.redis, str(password_file)), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10  # a readiness wait, not an assertion on speed
        while not healthy(password):
            assert server.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis never became healthy"
            time.sleep(0.05)
        assert not healthy("wrong-password")
        assert not healthy("")
        with connect(RedisAddress("127.0.0.1", port, password)) as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        # `exec` all the way down: the container's main process is redis-server, and no argv holds the password.
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert b"redis-server" in cmdline and password.encode() not in cmdline
        assert password.encode() not in Path(f"/proc/{server.pid}/environ").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_postgres_health_check_names_the_configured_user_and_database() -> None:
    settings = settings_from({"testUser": "ci", "testDatabase": "ci_db"})
    assert readiness_test(settings.test) == ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "ci",
                                             "-d", "ci_db"]
