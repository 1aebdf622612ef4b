"""The dev environment as a whole: choose a backend, bring it up, wait for health, stop it, report on it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.endpoints import DevEndpoints, dev_endpoints
from tether.errors import ConfigError, TetherError, ToolMissing
from tether.health import HealthResult, check_postgres, check_redis

BACKENDS = ("auto", "native", "docker")
Progress = Callable[[str], None]


@dataclass
class UpReport:
    backend: str
    actions: dict[str, str]
    health: list[HealthResult]
    steps: list[str] = field(default_factory=list)  # schema and env-file steps, in order
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return all(result.healthy for result in self.health)

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "actions": self.actions, "healthy": self.healthy,
                "services": [result.as_dict() for result in self.health], "steps": self.steps,
                "seconds": round(self.seconds, 3)}


def choose_backend(requested: str) -> str:
    """``auto`` means docker when a Docker engine and the Pulumi CLI both work, else native."""
    if requested not in BACKENDS:
        raise ConfigError(f"Unknown backend {requested!r}: use one of {', '.join(BACKENDS)}.")
    if requested != "auto":
        return requested
    from tether import pulumi_stack

    return "docker" if pulumi_stack.docker_available() and pulumi_stack.pulumi_available() else "native"


def check_all(endpoints: DevEndpoints, timeout: float = 3.0) -> list[HealthResult]:
    return [
        check_postgres("postgres-dev", endpoints.dev.address, timeout),
        check_postgres("postgres-test", endpoints.test.address, timeout),
        check_redis("redis", endpoints.redis.address, timeout),
    ]


def wait_healthy(endpoints: DevEndpoints, timeout: float = 60.0) -> list[HealthResult]:
    """Poll every service until all are healthy or ``timeout`` passes; returns the last results."""
    deadline = time.monotonic() + timeout
    while True:
        results = check_all(endpoints)
        if all(result.healthy for result in results) or time.monotonic() >= deadline:
            return results
        time.sleep(0.2)


def bring_up(backend: str = "auto", *, progress: Progress = lambda _m: None, init_schema: bool = True,
             write_env: bool = True, env_drivers: Sequence[str] | None = None) -> UpReport:
    """Start the dev stack with ``backend``, wait until healthy, apply the schema, write the env files.

    The whole of it holds the dev stack lock: a second ``up`` (or a ``down``, ``env``, ``target.*``) waits.
    """
    from tether.stack_lock import stack_lock

    with stack_lock("invoke up"):
        return _bring_up(backend, progress, init_schema, write_env, env_drivers)


def _bring_up(backend: str, progress: Progress, init_schema: bool, write_env: bool,
              env_drivers: Sequence[str] | None) -> UpReport:
    started = time.perf_counter()
    chosen = choose_backend(backend)
    if chosen == "docker":
        from tether import pulumi_stack

        progress("running `pulumi up` for the dev stack")
        pulumi_stack.up("dev")
        actions = {"postgres-dev": "deployed", "postgres-test": "deployed", "redis": "deployed"}
    else:
        from tether.native import stack as native_stack

        actions = native_stack.up(progress)
    endpoints = dev_endpoints()
    health = wait_healthy(endpoints)
    report = UpReport(chosen, actions, health)
    if not report.healthy:
        broken = ", ".join(f"{r.service} ({r.detail})" for r in health if not r.healthy)
        raise TetherError(f"The dev stack started but is not healthy: {broken}. See `invoke status` and the "
                          "server logs under .runtime/native/data/logs/.")
    if init_schema:
        report.steps.extend(_apply_schema(endpoints, progress))
    if write_env:
        report.steps.extend(_write_env_files(progress, env_drivers))
    report.seconds = time.perf_counter() - started
    return report


def _apply_schema(endpoints: DevEndpoints, progress: Progress) -> list[str]:
    from tether import migrations

    steps = []
    for name in ("dev", "test"):
        result = migrations.init_database(endpoints.postgres(name).address)
        applied = len(result.applied)
        if applied:
            progress(f"schema: applied {applied} migration(s) to {name}")
        steps.append(f"schema {name}: {applied} applied")
    return steps


def _write_env_files(progress: Progress, drivers: Sequence[str] | None) -> list[str]:
    from tether import envsync

    written = envsync.write_env_files(drivers)
    if written:
        progress(f"env files: wrote {', '.join(str(path.name) for path in written)}")
    return [f"env: {len(written)} file(s) written"]


def bring_down(backend: str = "auto", *, purge: bool = False, progress: Progress = lambda _m: None) -> dict[str, str]:
    """Stop the dev stack (and with ``purge`` delete its data), holding the dev stack lock."""
    from tether.stack_lock import stack_lock

    with stack_lock("invoke down"):
        return _bring_down(backend, purge, progress)


def _bring_down(backend: str, purge: bool, progress: Progress) -> dict[str, str]:
    chosen = choose_backend(backend)
    if chosen == "docker":
        return _docker_down(purge)
    from tether.native import stack as native_stack

    actions = native_stack.down(progress)
    if purge:
        removed = native_stack.purge()
        actions["data"] = f"deleted {removed}"
    return actions


def _docker_down(purge: bool) -> dict[str, str]:
    """Stop the containers (volumes, and so data, stay); purge destroys the whole stack, volumes included."""
    import subprocess

    from tether.native.stack import dev_stack_settings

    if purge:
        from tether import pulumi_stack

        pulumi_stack.destroy("dev")
        return {"dev stack": "destroyed (containers, network and volumes)"}
    settings = dev_stack_settings()
    names = [settings.dev.name, settings.test.name, settings.redis.name]
    try:
        result = subprocess.run(["docker", "stop", *names], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ToolMissing("docker", "install Docker Engine (https://docs.docker.com/engine/install/), or use "
                          "--backend native") from None
    if result.returncode != 0:
        reason = " ".join(result.stderr.split()).rstrip(".") or f"exit code {result.returncode}"
        # Docker's own message often asks about the daemon already; ask only when it does not.
        hint = "" if reason.endswith("?") else ". Is the Docker engine running (`docker info`)?"
        raise TetherError(f"`docker stop` failed: {reason}{hint}")
    return {name: "stopped" for name in names}
