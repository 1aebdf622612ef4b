"""Tasks for the app's environment files (`env`) and the active database target (`target`, `target.*`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from invoke import Context, task

from tether.console import console
from tether.errors import TetherError
from tether.tasks.boundary import domain_errors, print_json

# tether.envfiles and tether.target are imported when a task runs, so every `invoke` command starts faster.
if TYPE_CHECKING:
    from tether.envfiles import EnvReport
    from tether.runtime.sessions import ConnectedApps
    from tether.target import SwitchResult

DRIVERS_HELP = ("comma-separated driver variants, e.g. asyncpg,psycopg (default: config env.drivers, else "
                "asyncpg,psycopg; an empty string writes none)")


class EnvFilesOutOfDate(TetherError):
    """``invoke env --check`` found files missing, stale, damaged or not mode 0600."""


def configured_drivers(c: Context, drivers: str | None = None) -> tuple[str, ...]:
    """The driver variants: the flag, else ``env.drivers`` in the invoke config, else the defaults."""
    from tether import envfiles

    if drivers is not None:
        return envfiles.parse_drivers(drivers)
    section: Any = c.config.get("env") or {}
    return envfiles.parse_drivers(section.get("drivers"))


def print_env_report(report: EnvReport) -> None:
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False)
    for item in report.files:
        table.add_row(item.name, item.status, str(item.path))
    out = console()
    out.print(table)
    for warning in report.warnings:
        out.print(f"warning: {warning}")
    for note in report.notes:
        out.print(f"note: {note}")
    if not report.check:
        out.print(f"Active database target: {report.target} (`invoke target` to show or switch it).")


@task(help={"check": "write nothing; exit non-zero naming every file that is missing or stale (for CI)",
            "json": "print the result as JSON",
            "drivers": DRIVERS_HELP})
@domain_errors
def env(c: Context, check: bool = False, json: bool = False, drivers: str | None = None) -> None:
    """Write .env.local, .env.test, .env.production and .env (active target) from the stacks (config: env.drivers)."""
    from tether import envsync

    report = envsync.sync_env_files(configured_drivers(c, drivers), check=check)
    if json:
        print_json(report.as_dict())
    else:
        print_env_report(report)
    if not report.ok:
        names = ", ".join(f"{item.name} ({item.status})" for item in report.problems)
        raise EnvFilesOutOfDate(f"Environment files out of date: {names}. Run `invoke env` to rewrite them.")


@task(help={"json": "print the target as JSON"})
@domain_errors
def show_target(c: Context, json: bool = False) -> None:
    """Show the active database target (local or production) and what .env points at."""
    from tether import target
    from tether.runtime.sessions import connected_apps

    view = target.describe_target()
    apps = connected_apps(view.env_path) if view.database_url else None
    if json:
        print_json({**view.as_dict(), **(apps.as_dict() if apps else {"apps": [], "unreachable": {}})})
        return
    out = console()
    who = f", set by {view.state.user} at {view.state.when}" if view.state.when else " (default; never switched)"
    out.print(f"Active database target: {view.state.target}{who}")
    out.print(f"{view.env_path.name}: DATABASE_URL = {view.database_url or '(not written yet)'}")
    if not view.in_sync:
        out.print(f"warning: {view.env_path.name} points at {view.env_target or 'nothing'}, not "
                  f"{view.state.target}: run `invoke env` to rewrite it.")
    if apps is not None:
        print_connected_apps(apps, view.state.target)


def print_connected_apps(apps: ConnectedApps, active: str) -> None:
    """The app processes connected through tether.runtime's helpers (``tether-app:<pid>``), per target."""
    from rich.markup import escape

    out = console()
    if not apps.apps:
        out.print("No app is connected through tether's helpers (application_name tether-app:<pid>).")
    else:
        out.print("Apps connected through tether's helpers (pg_stat_activity):")
    for app in apps.apps:
        busy = f", {app.busy} busy" if app.busy else ""
        late = "  (not yet moved: its idle connections close at its next query)" if app.target != active else ""
        command = f"  {escape(app.command)}" if app.command else ""
        out.print(f"  {app.target:<10} pid {app.pid:<7} {app.connections} connection"
                  f"{'s' if app.connections != 1 else ''}{busy}{command}{late}")
    for name, reason in apps.unreachable.items():
        out.print(f"  {name}: not asked ({escape(reason)})")


def print_switch(result: SwitchResult, json: bool) -> None:
    if json:
        print_json(result.as_dict())
        return
    console().print(f"Database target: {result.previous.target} → {result.current.target}. .env's DATABASE_URL "
                    f"is now {result.database_url}. Nothing was restarted: apps using tether.runtime or "
                    "tether-target.mjs follow at their next query; others keep the value they loaded until they "
                    "restart.")


@task(help={"json": "print the switch as JSON"})
@domain_errors
def use_local(c: Context, json: bool = False) -> None:
    """Point .env at the local dev database, after it answers SELECT 1 (config: env.drivers)."""
    from tether import target
    from tether.stack_lock import stack_lock

    with stack_lock("invoke target.local"):
        print_switch(target.switch_target("local", drivers=configured_drivers(c)), json)


@task(help={"yes": "switch without asking (required in CI)", "json": "print the switch as JSON"})
@domain_errors
def use_production(c: Context, yes: bool = False, json: bool = False) -> None:
    """Point .env at the production database through the proxy, after asking and a SELECT 1."""
    from tether import target
    from tether.console import confirm
    from tether.stack_lock import stack_lock

    # Asked before the lock is taken, so a question never keeps the other commands waiting.
    confirm("Point the application's .env at the PRODUCTION database?", yes=yes)
    with stack_lock("invoke target.production"):
        print_switch(target.switch_target("production", yes=True, drivers=configured_drivers(c)), json)
