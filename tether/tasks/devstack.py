"""Tasks for the dev environment: up, down, status, health, psql."""

from __future__ import annotations

from invoke import Context, task

from tether.tasks.boundary import config_value, domain_errors, print_json

# tether.devenv, tether.endpoints and rich are imported when a task runs, so every `invoke` command starts faster.


def _backend(c: Context, backend: str | None) -> str:
    return str(config_value(c, "dev", "backend", backend or None, "auto"))


@task(help={
    "backend": "auto (default: docker when a Docker engine and the Pulumi CLI work, else native), native or docker;"
               " config key dev.backend",
    "json": "print the result as JSON (for CI) instead of a table",
})
@domain_errors
def up(c: Context, backend: str | None = None, json: bool = False) -> None:
    """Bring the dev environment up: PostgreSQL dev and test databases and Redis, healthy and migrated."""
    from tether.console import console
    from tether.devenv import bring_up
    from tether.tasks.env import configured_drivers

    out = console()
    report = bring_up(_backend(c, backend), progress=(lambda m: None) if json else (lambda m: out.print(f"· {m}")),
                      env_drivers=configured_drivers(c))
    if json:
        print_json(report.as_dict())
        return
    from rich.table import Table

    table = Table(title=f"dev stack ({report.backend}) ready in {report.seconds:.2f}s")
    table.add_column("service", no_wrap=True)
    table.add_column("url", overflow="fold")
    table.add_column("state", no_wrap=True)
    for result in report.health:
        state = report.actions.get(result.service, "")
        table.add_row(result.service, result.url, f"{state}, healthy" if result.healthy else f"{state}, UNHEALTHY")
    out.print(table)
    for step in report.steps:
        out.print(f"· {step}")


@task(help={
    "backend": "auto, native or docker (config key dev.backend)",
    "purge": "also delete the data (asks first; refused in CI without --yes)",
    "yes": "answer yes to the purge confirmation",
})
@domain_errors
def down(c: Context, backend: str | None = None, purge: bool = False, yes: bool = False) -> None:
    """Stop the dev environment (data is kept unless --purge)."""
    from tether.console import confirm, console
    from tether.devenv import bring_down

    if purge:
        confirm("Delete all data of the dev stack (postgres-dev, postgres-test, redis)?", yes=yes)
    out = console()
    actions = bring_down(_backend(c, backend), purge=purge, progress=lambda m: out.print(f"· {m}"))
    for service, action in actions.items():
        out.print(f"{service}: {action}")


@task(help={"json": "print the status as JSON"})
@domain_errors
def status(c: Context, json: bool = False) -> None:
    """Show each dev service: backend, port, pid, health and data size."""
    from tether.console import console
    from tether.devenv import check_all
    from tether.endpoints import dev_endpoints
    from tether.native.stack import status as native_status

    states = native_status()
    try:
        endpoints = dev_endpoints()
        health = {result.service: result for result in check_all(endpoints, timeout=1.0)}
        backend = endpoints.backend
    except Exception:  # no state yet: report every service as down rather than failing the status view
        health, backend = {}, "native"
    rows = []
    for state in states:
        result = health.get(state.service)
        rows.append({**state.as_dict(), "backend": backend, "healthy": bool(result and result.healthy),
                     "version": result.version if result else None})
    if json:
        print_json({"backend": backend, "services": rows})
        return
    from rich.table import Table

    table = Table(title=f"dev stack ({backend})")
    for column in ("service", "port", "pid", "running", "health", "data"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["service"], str(row["port"]), str(row["pid"] or "-"), "yes" if row["running"] else "no",
                      "healthy" if row["healthy"] else "unhealthy", f"{row['data_bytes'] / 1e6:.1f} MB")
    console().print(table)


@task(help={"json": "print the results as JSON (for CI)"})
@domain_errors
def health(c: Context, json: bool = False) -> None:
    """Check every dev service for real (SELECT 1, Redis PING with auth); exit 1 if any is unhealthy."""
    from invoke.exceptions import Exit

    from tether.console import console
    from tether.devenv import check_all
    from tether.endpoints import dev_endpoints

    results = check_all(dev_endpoints())
    healthy = all(result.healthy for result in results)
    if json:
        print_json({"healthy": healthy, "services": [result.as_dict() for result in results]})
    else:
        for result in results:
            mark = "ok  " if result.healthy else "FAIL"
            version = f" {result.kind} {result.version}" if result.version else ""
            console().print(f"{mark} {result.service:<14} {result.url}{version} "
                            f"({result.latency_ms} ms) {result.detail}")
    if not healthy:
        raise Exit(code=1)


@task(help={"db": "dev, test or a postgresql:// URL (default: config tether.db, else dev)"})
@domain_errors
def psql(c: Context, db: str | None = None) -> None:
    """Open psql on a database; the password travels in the environment, never on the command line."""
    import os
    import subprocess

    from tether.endpoints import resolve_database
    from tether.errors import ConfigError
    from tether.native.binaries import client_program
    from tether.pgtools import program_env, psql_interactive_argv

    spec = str(config_value(c, "tether", "db", db, "dev"))
    if spec == "prod":
        raise ConfigError("psql --db prod is not supported: start the proxy (`invoke proxy.start`) and use "
                          "DATABASE_URL_PRODUCTION from .env.production, after exporting its password.")
    address = resolve_database(spec)
    argv = psql_interactive_argv(client_program("psql"), address)
    raise SystemExit(subprocess.run(argv, env=program_env(address, base=os.environ), check=False).returncode)
