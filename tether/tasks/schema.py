"""Tasks for the schema: db.init applies the migrations in sql/, db.status shows where a database stands."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from invoke import Context, task

from tether.console import confirm, console, interactive
from tether.tasks.boundary import config_value, domain_errors, print_json

# tether.endpoints, tether.migrations and tether.roles are imported when a task runs, so every `invoke`
# command starts faster.
if TYPE_CHECKING:
    from tether.conninfo import DatabaseAddress
    from tether.migrations import MigrationEvent, MigrationPlan

DB_HELP = "dev, test, prod or a postgresql:// URL (default: config tether.db, else dev)"


def database_spec(c: Context, db: str | None) -> str:
    """The --db flag, else the config value ``tether.db``, else ``dev``."""
    return str(config_value(c, "tether", "db", db or None, "dev"))


@contextmanager
def _opened(spec: str, address: DatabaseAddress | None, *, readonly: bool = False,
            admin: bool = False) -> Iterator[DatabaseAddress]:
    from tether.endpoints import open_database

    # Only prod needs opening (the Cloud SQL proxy); every other spec was resolved without connecting.
    # Migrations on prod log in as the administrator (TETHER_PROD_ADMIN_*), never as the application role.
    opener = open_database(spec, readonly=readonly, admin=admin) if address is None else nullcontext(address)
    with opener as opened:
        yield opened


def _describe(spec: str, address: DatabaseAddress | None) -> str:
    return "prod (through the Cloud SQL proxy)" if address is None else address.masked_url()


def _print_plan(plan: MigrationPlan, database: str, *, list_pending: bool) -> None:
    out = console()
    out.print(f"Database: {database}")
    out.print(f"Applied: {len(plan.applied)} file(s); pending: {len(plan.pending)}")
    if list_pending:
        for migration in plan.pending:
            out.print(f"  pending  {migration.version}  sha256 {migration.checksum[:12]}")


def _show_progress(event: MigrationEvent) -> None:
    out = console()
    if event.kind == "waiting":
        out.print(f"Waiting for the migration lock: held by {event.detail}")
    elif event.kind == "applied":
        out.print(f"  applied  {event.version}  ({event.duration_ms} ms)")
    elif event.kind == "warning":
        out.print(f"  warning  {event.version}: {event.detail}")


@task(help={
    "db": DB_HELP,
    "dry-run": "print the pending files and apply nothing",
    "yes": "answer yes to the confirmation a non-local database (or prod) asks for; required in CI",
    "json": "print the result as JSON (for CI)",
})
@domain_errors
def init(c: Context, db: str | None = None, dry_run: bool = False, yes: bool = False, json: bool = False) -> None:
    """Apply the pending migrations in sql/ and set the app roles' passwords (honours tether.db)."""
    from tether.endpoints import resolve_database
    from tether.migrations import DriftError, drift_message, init_database, inspect_database, parse_migration
    from tether.paths import sql_dir
    from tether.roles import LOGIN_ROLES, password_env_var

    spec = database_spec(c, db)
    address = None if spec == "prod" else resolve_database(spec)
    guarded = address is None or not address.is_local
    target = _describe(spec, address)
    if guarded and not dry_run and not yes and not interactive():
        # Refuse before connecting (or starting the proxy): nobody could answer the question anyway.
        confirm(f"Apply the pending migrations in sql/ to {target}?", yes=False)
    with _opened(spec, address, admin=True) as opened:
        plan = inspect_database(opened)
        database = opened.masked_url()
        if plan.drift:
            raise DriftError(drift_message(plan.drift, database, sql_dir()))
        for migration in plan.pending:
            parse_migration(migration)  # a file that cannot be split fails now, before anything is applied
        if dry_run:
            if json:
                print_json({**plan.as_dict(database), "dry_run": True})
            else:
                _print_plan(plan, database, list_pending=True)
                console().print("Dry run: nothing was applied.")
            return
        if not json:
            # Where a confirmation follows, the person answering sees exactly what will run.
            _print_plan(plan, database, list_pending=guarded)
        env_passwords = [role for role in LOGIN_ROLES if os.environ.get(password_env_var(role))]
        if guarded and (plan.pending or env_passwords):
            what = f"{len(plan.pending)} migration(s)" + (" and role passwords" if env_passwords else "")
            confirm(f"Apply {what} to {target}?", yes=yes)
        result = init_database(opened, progress=None if json else _show_progress)
    if json:
        print_json({**result.as_dict(), "dry_run": False})
        return
    summary = (f"Applied {len(result.applied)} migration(s) in {result.seconds:.1f} s"
               if result.applied else "Nothing to apply: the database is up to date")
    passwords = f"; passwords set for {', '.join(result.passwords_set)}" if result.passwords_set else ""
    console().print(summary + passwords + ".")
    if result.passwords_unchanged:
        console().print("Passwords left as they were (set " + ", ".join(
            password_env_var(role) for role in result.passwords_unchanged) + " to set them): "
            + ", ".join(result.passwords_unchanged) + ".")


@task(help={"db": DB_HELP, "json": "print applied[], pending[] and drift[] as JSON (for CI)"})
@domain_errors
def status(c: Context, db: str | None = None, json: bool = False) -> None:
    """Show the applied and pending migrations of a database and flag drift (exit 4 on drift)."""
    from tether.endpoints import resolve_database
    from tether.migrations import DriftError, drift_message, inspect_database
    from tether.paths import sql_dir

    spec = database_spec(c, db)
    address = None if spec == "prod" else resolve_database(spec)
    with _opened(spec, address, readonly=True) as opened:
        plan = inspect_database(opened)
        database = opened.masked_url()
    if json:
        print_json(plan.as_dict(database))
    else:
        _print_status(plan, database)
    if plan.drift:
        raise DriftError(drift_message(plan.drift, database, sql_dir()))


def _print_status(plan: MigrationPlan, database: str) -> None:
    from rich import box
    from rich.table import Table

    drifted = {entry.version: entry.kind for entry in plan.drift}
    table = Table(title=f"Migrations of {database}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    longest = max([len(entry.version) for entry in plan.applied] + [len(m.version) for m in plan.pending] + [7])
    table.add_column("version", no_wrap=True, min_width=longest)
    for column in ("state", "applied at", "by", "ms"):
        table.add_column(column, no_wrap=True)
    rows: list[tuple[str, ...]] = []
    for entry in plan.applied:
        rows.append((entry.version, drifted.get(entry.version, "applied"),
                     f"{entry.applied_at:%Y-%m-%d %H:%M %Z}", entry.applied_by, str(entry.duration_ms)))
    rows.extend((migration.version, "pending", "", "", "") for migration in plan.pending)
    for row in sorted(rows):
        table.add_row(*row)
    console().print(table)
    summary: dict[str, Any] = {"applied": len(plan.applied), "pending": len(plan.pending), "drift": len(plan.drift)}
    console().print(", ".join(f"{key}: {value}" for key, value in summary.items()))
