"""The one function that knows where each database lives: dev, test, prod or a URL.

Dev and test addresses come from the dev stack's outputs: the native runner's state file when the
native backend runs, otherwise the Docker stack's Pulumi outputs. Both have the same shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.conninfo import DatabaseAddress, parse_database_url
from tether.errors import ConfigError
from tether.paths import runtime_dir
from tether.redis_client import RedisAddress

NAMED_DATABASES = ("dev", "test", "prod")
OUTPUT_KEYS = {"dev": "postgresDev", "test": "postgresTest"}


@dataclass(frozen=True)
class PostgresEndpoint:
    address: DatabaseAddress  # as seen from this machine (127.0.0.1 and the published port)
    internal_host: str  # as seen from inside the Docker network
    internal_port: int


@dataclass(frozen=True)
class RedisEndpoint:
    address: RedisAddress
    internal_host: str
    internal_port: int


@dataclass(frozen=True)
class DevEndpoints:
    backend: str
    dev: PostgresEndpoint
    test: PostgresEndpoint
    redis: RedisEndpoint

    def postgres(self, name: str) -> PostgresEndpoint:
        return self.dev if name == "dev" else self.test


def native_outputs_file() -> Path:
    return runtime_dir() / "native" / "outputs.json"


def write_native_outputs(outputs: dict[str, Any]) -> Path:
    """Persist the native stack's outputs (passwords included) with mode 0600, atomically."""
    path = native_outputs_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(outputs, handle, indent=2, sort_keys=True)
    os.replace(temporary, path)
    return path


def parse_outputs(outputs: dict[str, Any], source: str) -> DevEndpoints:
    """Build endpoints from stack outputs; a missing key is a clear error naming it."""

    def section(key: str) -> dict[str, Any]:
        value = outputs.get(key)
        if not isinstance(value, dict):
            raise ConfigError(f"The dev stack's outputs ({source}) have no `{key}`. Run `invoke up` to create "
                              "or refresh the dev stack, then try again.")
        return value

    def postgres(key: str) -> PostgresEndpoint:
        data = section(key)
        try:
            address = DatabaseAddress(str(data["host"]), int(data["port"]), str(data["database"]), str(data["user"]),
                                      data.get("password"))
            return PostgresEndpoint(address, str(data.get("internalHost", data["host"])),
                                    int(data.get("internalPort", 5432)))
        except KeyError as missing:
            raise ConfigError(f"The dev stack output `{key}` ({source}) lacks {missing}. Run `invoke up` to "
                              "refresh it.") from None

    redis = section("redis")
    return DevEndpoints(
        backend=str(outputs.get("backend", "docker")),
        dev=postgres("postgresDev"),
        test=postgres("postgresTest"),
        redis=RedisEndpoint(RedisAddress(str(redis["host"]), int(redis["port"]), redis.get("password")),
                            str(redis.get("internalHost", "redis")), int(redis.get("internalPort", 6379))),
    )


def dev_endpoints() -> DevEndpoints:
    """Where the dev stack's services are: native state first, then the Docker stack's Pulumi outputs."""
    path = native_outputs_file()
    if path.exists():
        try:
            outputs = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"The native dev stack state {path} is unreadable ({error}). Run `invoke up` to "
                              "rewrite it.") from None
        return parse_outputs(outputs, str(path))
    from tether import pulumi_stack

    if pulumi_stack.pulumi_available():
        return parse_outputs(pulumi_stack.stack_outputs("dev", show_secrets=True), "Pulumi stack dev")
    raise ConfigError("The dev stack has not been brought up on this machine: there is no native state "
                      f"({path}) and no Pulumi CLI to read the Docker stack's outputs. Run `invoke up` first.")


def resolve_database(spec: str) -> DatabaseAddress:
    """``dev``/``test`` from the dev stack, or any PostgreSQL URL. ``prod`` needs ``open_database``."""
    if spec in OUTPUT_KEYS:
        return dev_endpoints().postgres(spec).address
    if spec == "prod":
        raise ConfigError("`prod` is reached through the Cloud SQL proxy: use tether.endpoints.open_database.")
    if "://" in spec:
        return parse_database_url(spec)
    raise ConfigError(f"Unknown database {spec!r}: use dev, test, prod or a postgresql:// URL.")


@contextmanager
def open_database(spec: str, *, readonly: bool = False, admin: bool = False) -> Iterator[DatabaseAddress]:
    """Like ``resolve_database``, but ``prod`` starts (or reuses) the Cloud SQL proxy for the duration.

    For prod, ``readonly`` logs in as the read-only role and ``admin`` as the administrator (migrations).
    """
    if spec != "prod":
        yield resolve_database(spec)
        return
    from tether.production import production_database

    with production_database(readonly=readonly, admin=admin) as address:
        yield address
