"""Real health checks: a PostgreSQL query and an authenticated Redis PING, for either backend."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from tether.conninfo import DatabaseAddress, libpq_reason
from tether.redis_client import RedisAddress, RedisError, connect
from tether.secrets import mask_text


@dataclass(frozen=True)
class HealthResult:
    service: str
    kind: str  # postgres | redis
    url: str  # password masked
    healthy: bool
    version: str | None
    latency_ms: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_postgres(service: str, address: DatabaseAddress, timeout: float = 3.0) -> HealthResult:
    import psycopg

    started = time.perf_counter()
    try:
        with psycopg.connect(address.conninfo(connect_timeout=str(max(1, int(timeout)))), autocommit=True) as conn:
            row = conn.execute("SELECT 1, current_setting('server_version')").fetchone()
        healthy, version, detail = bool(row and row[0] == 1), str(row[1]) if row else None, "SELECT 1 ok"
    except psycopg.Error as error:
        healthy, version = False, None
        detail = libpq_reason(error, address.password)
    return HealthResult(service, "postgres", address.masked_url(), healthy, version,
                        round((time.perf_counter() - started) * 1000, 1), detail)


def check_redis(service: str, address: RedisAddress, timeout: float = 3.0) -> HealthResult:
    started = time.perf_counter()
    try:
        with connect(address, timeout) as client:
            answer = "PONG" if client.ping() else "no PONG"
            found = client.info("server").get("redis_version")
        version = None if found is None else str(found)
        healthy, detail = answer == "PONG", f"PING → {answer}"
    except RedisError as error:
        healthy, version, detail = False, None, mask_text(str(error), [address.password])
    return HealthResult(service, "redis", address.masked_url(), healthy, version,
                        round((time.perf_counter() - started) * 1000, 1), detail)
