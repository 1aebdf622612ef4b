"""Tasks for PostgreSQL dumps (collection ``db``): dump, restore and list them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from invoke import Context, task

from tether.console import console
from tether.errors import ConfigError, Refused
from tether.tasks.boundary import config_value, domain_errors, print_json

# tether.dumps and tether.pgtools load psycopg: imported inside the tasks so `invoke --list` stays fast.

CONFIG_SECTION = "dumps"


def configured(c: Context, key: str, value: Any, default: Any) -> Any:
    """A flag's value, else ``c.config.dumps.<key>``, else ``default``."""
    return config_value(c, CONFIG_SECTION, key, value, default)


def as_count(value: Any, flag: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} takes a whole number, not {value!r}.") from None


@contextmanager
def byte_progress(description: str) -> Iterator[Callable[[int], None]]:
    """A spinner with bytes so far and elapsed time, on stderr so ``--json`` output stays clean."""
    from rich.console import Console
    from rich.progress import FileSizeColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    stderr = Console(stderr=True)
    if not stderr.is_terminal:
        yield lambda done: None  # logs and pipelines get the summary only
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), FileSizeColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True) as progress:
        task_id = progress.add_task(description, total=None)
        yield lambda done: progress.update(task_id, completed=done)


def human_size(size: int) -> str:
    from rich.filesize import decimal

    return str(decimal(size))


@task(
    iterable=["exclude_table_data"],
    help={
        "db": "dev, test, prod or a postgresql:// URL (default: config dumps.db, else dev)",
        "format": "custom (one file, default) or directory (needed for --jobs above 1); config dumps.format",
        "jobs": "parallel pg_dump workers, directory format only (default 1; config dumps.jobs)",
        "schema-only": "dump the schema without any rows",
        "data-only": "dump the rows without the schema (such a dump cannot be restored by db.restore)",
        "exclude-table-data": "keep this table's definition but not its rows (pg_dump pattern; repeatable)",
        "keep": "afterwards keep only the N newest dumps of this database (config dumps.keep)",
        "json": "print the manifest as JSON instead of a summary",
    },
)
@domain_errors
def dump(c: Context, db: str | None = None, format_: str | None = None, jobs: str | None = None,
         schema_only: bool = False, data_only: bool = False, exclude_table_data: list[str] | None = None,
         keep: str | None = None, json_: bool = False) -> None:
    """Dump a database into dumps/ with a checksummed manifest (read-only; never writes to the database)."""
    from tether import dumps as dump_ops
    from tether.endpoints import open_database
    from tether.pgtools import DumpOptions

    spec = str(configured(c, "db", db, "dev"))
    options = DumpOptions(format=str(configured(c, "format", format_, "custom")),
                          jobs=as_count(configured(c, "jobs", jobs, 1), "--jobs"),
                          schema_only=schema_only, data_only=data_only,
                          exclude_table_data=tuple(exclude_table_data or ()))
    keep_value = configured(c, "keep", keep, None)
    keep_count = None if keep_value is None else as_count(keep_value, "--keep")
    problems = options.problems()
    if keep_count is not None and keep_count < 1:
        problems.append("--keep must be 1 or more")
    if problems:  # before opening anything: for prod that would start the proxy
        raise ConfigError("Cannot dump with these options: " + "; ".join(problems) + ".")
    with open_database(spec, readonly=True) as address:
        label = dump_ops.dump_label(spec, address)
        with byte_progress(f"pg_dump {label}") as on_progress:
            result = dump_ops.dump_database(address, label, options, keep=keep_count, on_progress=on_progress)
    if json_:
        print_json(result.summary())
        return
    manifest = result.manifest
    estimates = list(manifest["row_estimates"].values())
    known = [value for value in estimates if value is not None]
    unanalyzed = f"; {len(estimates) - len(known)} never analyzed" if len(known) < len(estimates) else ""
    out = console()
    out.print(f"Dumped {label} ({manifest['source']}, PostgreSQL {manifest['server_version']}) with "
              f"pg_dump {manifest['pg_dump_version']} in {manifest['duration_seconds']:.1f}s.")
    out.print(f"  {result.path} — {manifest['format']}, {human_size(manifest['size_bytes'])}, "
              f"sha256 {manifest['sha256'][:16]}…")
    out.print(f"  {len(estimates)} tables, about {sum(known):,} rows (planner estimates{unanalyzed}).")
    if result.pruned:
        out.print(f"  Pruned {len(result.pruned)} older dump(s): {', '.join(result.pruned)}")


@task(
    help={
        "file": "the dump: a path, or a name from `invoke db.dumps`",
        "db": "dev, test or a postgresql:// URL to replace (default: config dumps.restore_db, else dev)",
        "jobs": "parallel pg_restore workers (default 1; config dumps.jobs)",
        "yes": "answer yes to the confirmation a non-local target needs (required in CI)",
        "json": "print the result as JSON",
    },
)
@domain_errors
def restore(c: Context, file: str, db: str | None = None, jobs: str | None = None, yes: bool = False,
            json_: bool = False) -> None:
    """Restore a verified dump: build a scratch copy, then swap it in for the database."""
    from tether import dumps as dump_ops
    from tether.endpoints import resolve_database

    spec = str(configured(c, "restore_db", db, "dev"))
    if spec == "prod":
        raise Refused("db.restore never writes to production. Restore into dev, test or a local URL; changes to "
                      "production go through migrations.")
    target = resolve_database(spec)
    with byte_progress(f"pg_restore into {target.database}") as on_progress:
        result = dump_ops.restore_dump(file, target, jobs=as_count(configured(c, "jobs", jobs, 1), "--jobs"),
                                       yes=yes, on_progress=on_progress)
    if json_:
        print_json(result.summary())
        return
    out = console()
    out.print(f"Restored {result.archive.name} into {result.target} in {result.duration_seconds:.1f}s "
              f"({result.tables} tables; the previous {result.database!r} was replaced in one step).")
    if result.disconnected_sessions:
        out.print(f"  Disconnected {result.disconnected_sessions} session(s) that were using the old database.")
    if result.cleaned_leftovers:
        out.print(f"  Cleaned up after an interrupted earlier run: {', '.join(result.cleaned_leftovers)}")
    if result.skipped:
        out.print(f"  Skipped {len(result.skipped)} owner, privilege, policy or label statements this server refused, "
                  "mostly naming roles it lacks (the objects stay with you; --json lists them):", markup=False)
        for item in result.skipped[:5]:
            out.print(f"    {item}", markup=False)
        if len(result.skipped) > 5:
            out.print(f"    … and {len(result.skipped) - 5} more", markup=False)
    if result.settings_skipped:
        out.print(f"  Skipped {len(result.settings_skipped)} database settings this server refused (--json lists "
                  "them).", markup=False)


@task(help={"json": "print the list as JSON"})
@domain_errors
def dumps(c: Context, json_: bool = False) -> None:
    """List dumps and Redis snapshots in dumps/, each checked against its manifest."""
    from tether import dumps as dump_ops

    listings = dump_ops.list_dumps()
    if json_:
        print_json([listing.as_dict() for listing in listings])
        return
    out = console()
    if not listings:
        out.print("No dumps yet: make one with `invoke db.dump`.")
        return
    header = ("name", "db", "format", "size", "created (UTC)", "ok")
    rows = [header] + [
        (listing.name, listing.database or "?", listing.format or "?", human_size(listing.size_bytes),
         (listing.created or "?")[:16].replace("T", " "), "yes" if listing.verified else "NO")
        for listing in listings]
    # Plain aligned columns: a rich table squeezes file names to 80 columns in logs and pipes.
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    for row in rows:
        out.print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
                  markup=False, highlight=False)
    for listing in listings:
        if listing.problem:
            out.print(f"{listing.name}: {listing.problem}")
