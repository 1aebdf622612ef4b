"""Tasks for copying production locally: sync-prod, and db.reset back to the last synced state."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from invoke import Context, task

from tether.console import console
from tether.tasks.boundary import config_value, domain_errors, print_json


def _patterns(values: Iterable[str] | None) -> tuple[str, ...]:
    """Repeated flags, each possibly a comma-separated list: ``--tables app.* --tables audit.x,audit.y``."""
    return tuple(part.strip() for value in values or () for part in value.split(",") if part.strip())


def _setting(c: Context, key: str, default: Any = None) -> Any:
    return config_value(c, "sync", key, None, default)


_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _enabled(c: Context, key: str, default: bool) -> bool:
    """A yes/no setting: true or false in invoke.yaml, or a word like those in an INVOKE_SYNC_* variable."""
    value = _setting(c, key, default)
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _YES + _NO:
        return word in _YES
    from tether.errors import ConfigError

    raise ConfigError(f"sync.{key} must be true or false, not {value!r}: fix it in invoke.yaml or the "
                      f"INVOKE_SYNC_{key.upper()} variable.")


@task(
    help={
        "source": "PostgreSQL URL to copy from (default: production through the Cloud SQL proxy, as readonly)",
        "dest": "local database to replace: dev, test or a URL (default: dev; config sync.dest)",
        "tables": "only these tables: glob on schema.table, repeatable or comma-separated (app.*)",
        "exclude": "leave these tables out entirely: glob, repeatable (*.audit_*)",
        "exclude_data": "create these tables but copy no rows: glob, repeatable (app.sessions)",
        "jobs": "parallel workers for rows and indexes (0 or unset: 2 to 4 by CPU count; config sync.jobs)",
        "no_anonymize": "copy personal data as it is (asks first: real customer data on this machine)",
        "rules": "anonymization rules file (default: anonymize.yaml at the project root; config sync.rules)",
        "full": "copy every table again, even if unchanged since the last sync",
        "analyze": "ANALYZE the copied tables, so the planner has statistics (costs about 15% more time)",
        "no_snapshot": "keep no snapshot: about a quarter faster, but no db.reset and no incremental re-sync "
                       "(config sync.snapshot)",
        "exclude_large_objects": "copy no large objects (config sync.large_objects: false); an anonymized sync "
                                 "otherwise needs `large_objects: keep|drop` in the rules when the source has some",
        "allow_remote_dest": "allow a destination that is not on this machine (it is replaced entirely)",
        "yes": "answer yes to the confirmation (required in CI)",
        "check_rules": "copy nothing: check the rules against the source and list personal-looking columns "
                       "without a rule (exit 1 if any; for CI on every migration)",
        "json": "print the summary as JSON on stdout",
        # --subset (docs/subset.md)
        "subset": "copy a referentially complete slice: schema.table:10% (a sample, the same rows for the same "
                  "seed), schema.table:1000 (rows) or schema.table:where=<SQL>; repeatable (default: the rules "
                  "file's subset: section)",
        "subset_children": "with a subset: also the rows of these tables that reference the selected ones (globs, "
                           "repeatable or comma-separated)",
        "subset_depth": "how many steps down --subset-children go (default 1)",
        "subset_seed": "the sample's seed (default: tether)",
        "subset_plan": "print the subset's plan (each table, how it is reached, its rows) and copy nothing",
        "no_subset": "copy everything even though the rules file has a subset: section",
    },
    iterable=["tables", "exclude", "exclude_data", "subset", "subset_children"],
)
@domain_errors
def sync_prod(c: Context, source: str | None = None, dest: str | None = None, tables: list[str] | None = None,
              exclude: list[str] | None = None, exclude_data: list[str] | None = None, jobs: int = 0,
              no_anonymize: bool = False, rules: str | None = None, full: bool = False, analyze: bool = False,
              no_snapshot: bool = False, exclude_large_objects: bool = False, allow_remote_dest: bool = False,
              yes: bool = False, check_rules: bool = False, json: bool = False, subset: list[str] | None = None,
              subset_children: list[str] | None = None, subset_depth: int | None = None,
              subset_seed: str | None = None, subset_plan: bool = False, no_subset: bool = False) -> None:
    """Copy production into the local database: consistent, anonymized, atomic, incremental.

    Honours sync.snapshot (default true): keep the synced state for db.reset and incremental re-syncs; and
    sync.spare (default true): afterwards, a spare copy of it is made in the background, so that db.reset is a
    rename. With a subset, sync.subset_whole_below (default 1MB): a table neither selected nor a child is copied
    whole when at most this big.
    """
    from tether.endpoints import open_database, resolve_database
    from tether.sync.engine import SyncOptions, default_jobs, sync
    from tether.sync.plan import Selection
    from tether.sync.progress import SyncProgress

    rules_file = rules or _setting(c, "rules")
    selection = Selection(_patterns(tables), _patterns(exclude), _patterns(exclude_data))
    if check_rules:
        _check_rules(source, Path(rules_file) if rules_file else None, selection, json)
        return
    subset_spec = _subset_spec(c, rules_file, subset, subset_children, subset_depth, subset_seed, no_subset)
    if subset_plan:
        _print_subset_plan(source, selection, subset_spec, json)
        return
    options = SyncOptions(
        selection=selection, subset=subset_spec,
        jobs=int(jobs or _setting(c, "jobs") or default_jobs()), anonymize=not no_anonymize,
        rules_path=Path(rules_file) if rules_file else None, allow_remote_dest=allow_remote_dest, yes=yes,
        analyze=analyze or _enabled(c, "analyze", False), full=full, spare=_enabled(c, "spare", True),
        snapshot=not no_snapshot and _enabled(c, "snapshot", True),
        large_objects=not exclude_large_objects and _enabled(c, "large_objects", True))
    local = resolve_database(dest or _setting(c, "dest", "dev"))
    with open_database(source or "prod", readonly=True) as remote:
        summary = sync(remote, local, options, SyncProgress())
    if json:
        print_json(summary.as_dict())
    else:
        for line in summary.lines():
            console().print(line, markup=False)


def _check_rules(source: str | None, rules: Path | None, selection: Any, as_json: bool) -> None:
    from tether.endpoints import open_database
    from tether.errors import TetherError
    from tether.sync.anonymization import check_rules

    with open_database(source or "prod", readonly=True) as remote:
        report = check_rules(remote, rules, selection)
    if as_json:
        print_json(report.as_dict())
    else:
        for line in report.lines():
            console().print(line, markup=False)
    if not report.ok:
        raise TetherError(f"--check-rules: {len(report.findings)} personal-looking column(s) without a rule and "
                          f"{len(report.problems)} problem(s) with the rules (listed above).")


def _subset_spec(c: Context, rules_file: str | None, specs: list[str] | None, children: list[str] | None,
                 depth: int | None, seed: str | None, off: bool) -> Any:
    """The subset from the flags, else the rules file's subset: section (tether.sync.subset_spec), or None."""
    from tether.sync.anonymize import default_rules_path
    from tether.sync.subset_spec import SubsetFlags, resolve_spec, split_list

    if depth is not None and not isinstance(depth, int):  # invoke passes a flag without a typed default as text
        try:
            depth = int(str(depth).strip())
        except ValueError:
            from tether.errors import ConfigError

            raise ConfigError(f"--subset-depth must be a whole number, not {depth!r}.") from None
    flags = SubsetFlags(tuple(specs or ()), split_list(children) if children else None, depth, seed,
                        _setting(c, "subset_whole_below"), off)
    return resolve_spec(flags, Path(rules_file) if rules_file else default_rules_path())


def _print_subset_plan(source: str | None, selection: Any, spec: Any, as_json: bool) -> None:
    from tether.endpoints import open_database
    from tether.errors import ConfigError
    from tether.sync.progress import SyncProgress
    from tether.sync.subset_preview import preview
    from tether.sync.subset_report import plan_lines

    if spec is None:
        raise ConfigError("--subset-plan shows a subset's plan: give --subset schema.table:10% (or a subset: "
                          "section in the rules file).")
    with open_database(source or "prod", readonly=True) as remote:
        summary = preview(remote, selection, spec, SyncProgress().phase)
        where = remote.masked_url()
    if as_json:
        print_json(summary)
    else:
        for line in plan_lines(summary, where):
            console().print(line, markup=False)


@task(
    help={
        "db": "local database to reset: dev, test or a URL (default: dev; config sync.dest)",
        "allow_remote_dest": "allow a database that is not on this machine (one synced with --allow-remote-dest)",
        "yes": "answer yes to the confirmation (required in CI)",
        "json": "print the result as JSON on stdout",
    },
)
@domain_errors
def reset(c: Context, db: str | None = None, allow_remote_dest: bool = False, yes: bool = False,
          json: bool = False) -> None:
    """Return the local database to the last synced state in a second (a ready copy, no download).

    Honours sync.spare (default true): keep a spare copy of the synced state so that a reset is a rename.
    """
    from tether.endpoints import resolve_database
    from tether.sync.reset import reset as reset_database

    summary = reset_database(resolve_database(db or _setting(c, "dest", "dev")), yes=yes,
                             allow_remote_dest=allow_remote_dest, spare=_enabled(c, "spare", True))
    if json:
        print_json(summary.as_dict())
    else:
        for line in summary.lines():
            console().print(line, markup=False)
