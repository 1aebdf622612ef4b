"""The shape of the dev stack, read from its config by both backends (Docker via Pulumi, and native).

Pure: no Pulumi import. The Pulumi program passes ``pulumi.Config().get``; the native runner passes a
lookup into ``stacks/dev/Pulumi.dev.yaml``. Defaults live here and only here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.stackfile import read_config, with_fix_hint

PROJECT_NAME = "tether-dev"
STACK_NAME = "dev"

Lookup = Callable[[str], Any]


@dataclass(frozen=True)
class PostgresService:
    """One PostgreSQL server of the dev stack."""

    name: str  # container name and in-network host name
    host_port: int
    database: str
    user: str
    internal_port: int = 5432

    @property
    def volume(self) -> str:
        return f"{self.name}-data"


@dataclass(frozen=True)
class RedisService:
    name: str
    host_port: int
    internal_port: int = 6379
    appendonly: bool = True

    @property
    def volume(self) -> str:
        return f"{self.name}-data"


@dataclass(frozen=True)
class DevSettings:
    """Everything both backends need to build the same dev stack."""

    postgres_version: int
    postgres_image: str
    redis_image: str
    network: str
    bind_address: str
    dev: PostgresService
    test: PostgresService
    redis: RedisService

    @property
    def postgres_services(self) -> tuple[PostgresService, PostgresService]:
        return (self.dev, self.test)


DEFAULTS: Mapping[str, Any] = {
    "postgresVersion": 15,
    "postgresImage": "",  # empty: postgres:<postgresVersion>-alpine
    "redisImage": "redis:7-alpine",
    "network": "tether-dev",
    "bindAddress": "127.0.0.1",
    "devPort": 5435,
    "devDatabase": "app_dev",
    "devUser": "app",
    "testPort": 5433,
    "testDatabase": "test_db",
    "testUser": "test_user",
    "redisPort": 6379,
}


def _value(lookup: Lookup, key: str) -> Any:
    value = lookup(key)
    return DEFAULTS[key] if value is None or value == "" else value


def _number(lookup: Lookup, key: str, expected: str) -> int:
    raw = _value(lookup, key)
    if not isinstance(raw, bool):  # YAML's `yes` is not a number, though Python would count it as 1
        try:
            return int(float(raw))  # Pulumi config may hand numbers over as strings or floats
        except (TypeError, ValueError, OverflowError):
            pass
    raise ValueError(f"config key {PROJECT_NAME}:{key} must be {expected}, got {raw!r}")


def _port(lookup: Lookup, key: str) -> int:
    port = _number(lookup, key, "a port number")
    if not 1 <= port <= 65535:
        raise ValueError(f"config key {PROJECT_NAME}:{key} must be between 1 and 65535, got {port}")
    return port


def dev_settings(lookup: Lookup) -> DevSettings:
    """Build the stack shape from a config lookup (missing keys take ``DEFAULTS``)."""
    version = _number(lookup, "postgresVersion", "a PostgreSQL major version such as 15")
    if version < 12:
        raise ValueError(f"config key {PROJECT_NAME}:postgresVersion must be 12 or newer, got {version}")
    bind_address = str(_value(lookup, "bindAddress"))
    if bind_address not in {"127.0.0.1", "::1", "localhost"}:
        raise ValueError(f"config key {PROJECT_NAME}:bindAddress must be a loopback address, got {bind_address!r}: "
                         "the dev stack's ports are never published beyond this machine")
    settings = DevSettings(
        postgres_version=version,
        postgres_image=str(_value(lookup, "postgresImage")) or f"postgres:{version}-alpine",
        redis_image=str(_value(lookup, "redisImage")),
        network=str(_value(lookup, "network")),
        bind_address=bind_address,
        dev=PostgresService("postgres-dev", _port(lookup, "devPort"),
                            str(_value(lookup, "devDatabase")), str(_value(lookup, "devUser"))),
        test=PostgresService("postgres-test", _port(lookup, "testPort"),
                             str(_value(lookup, "testDatabase")), str(_value(lookup, "testUser"))),
        redis=RedisService("redis", _port(lookup, "redisPort")),
    )
    ports = [settings.dev.host_port, settings.test.host_port, settings.redis.host_port]
    if len(set(ports)) != len(ports):
        raise ValueError(f"the dev stack's host ports must differ, got devPort/testPort/redisPort = {ports}")
    return settings


def read_stack_file(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a Pulumi stack file with the project prefix stripped from keys.

    A file that is not YAML, or not shaped like a stack file, is a ``ValueError`` naming the file.
    """
    prefix = f"{PROJECT_NAME}:"
    values: dict[str, Any] = {}
    for key, value in read_config(path, PROJECT_NAME).items():
        if isinstance(key, str) and key.startswith(prefix):
            # A `secure:` value is encrypted by Pulumi and means nothing outside it.
            values[key[len(prefix):]] = None if isinstance(value, dict) else value
    return values


def load_dev_settings(path: Path) -> DevSettings:
    """The dev stack shape as ``stacks/dev/Pulumi.dev.yaml`` declares it.

    Any problem is a ``ValueError`` whose message names the file and the key and says what to do, so
    a caller can pass it on as it is.
    """
    try:
        values = read_stack_file(path) if path.exists() else {}
        return dev_settings(values.get)
    except ValueError as error:
        raise with_fix_hint(path, error, "stacks/dev/Pulumi.yaml") from None
