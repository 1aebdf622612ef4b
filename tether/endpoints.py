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


def _broken(source: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"The dev stack output `{key}` ({source}) {problem}. `invoke up` rewrites the dev stack's "
                       "outputs: run it, then try again.")


def _section(outputs: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = outputs.get(key)
    if value is None:
        raise _broken(source, key, "is missing")
    if not isinstance(value, dict):
        raise _broken(source, key, f"is {_kind(value)}, not an object")
    return value


def _text(data: dict[str, Any], section: str, key: str, source: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        raise _broken(source, f"{section}.{key}", "is missing")
    if not isinstance(value, str) or not value:
        raise _broken(source, f"{section}.{key}", f"is {_kind(value)}, not a non-empty string")
    return value


def _password(data: dict[str, Any], section: str, source: str) -> str | None:
    value = data.get("password")
    if value is not None and not isinstance(value, str):
        raise _broken(source, f"{section}.password", f"is {_kind(value)}, not a string")
    return value


def _port(data: dict[str, Any], section: str, key: str, source: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if value is None:
        raise _broken(source, f"{section}.{key}", "is missing")
    # JSON has integers; a string of digits is accepted too, as Pulumi may hand numbers over as text.
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    port = int(text) if text.isdigit() else 0
    if not 1 <= port <= 65535:
        shown = repr(value) if isinstance(value, int | str) else _kind(value)
        raise _broken(source, f"{section}.{key}", f"is {shown}, not a port number from 1 to 65535")
    return port


def _kind(value: object) -> str:
    """How a JSON value looks, for messages (never the value itself: it may be a password)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def parse_outputs(outputs: object, source: str) -> DevEndpoints:
    """Build endpoints from stack outputs; a missing or malformed key is a ConfigError naming it."""
    if not isinstance(outputs, dict):
        raise ConfigError(f"The dev stack's outputs ({source}) are {_kind(outputs)}, not an object of outputs. "
                          "`invoke up` rewrites them: run it, then try again.")

    def postgres(key: str) -> PostgresEndpoint:
        data = _section(outputs, key, source)
        host = _text(data, key, "host", source)
        address = DatabaseAddress(host, _port(data, key, "port", source), _text(data, key, "database", source),
                                  _text(data, key, "user", source), _password(data, key, source))
        return PostgresEndpoint(address, _text(data, key, "internalHost", source, host),
                                _port(data, key, "internalPort", source, 5432))

    redis = _section(outputs, "redis", source)
    backend = outputs.get("backend", "docker")
    return DevEndpoints(
        backend=backend if isinstance(backend, str) and backend else "docker",
        dev=postgres("postgresDev"),
        test=postgres("postgresTest"),
        redis=RedisEndpoint(
            RedisAddress(_text(redis, "redis", "host", source), _port(redis, "redis", "port", source),
                         _password(redis, "redis", source)),
            _text(redis, "redis", "internalHost", source, "redis"),
            _port(redis, "redis", "internalPort", source, 6379)),
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
