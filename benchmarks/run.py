"""Orchestrating the benchmark: two servers, the dataset, every method timed and verified, the results saved.

Run it with ``invoke bench`` (or ``python -m benchmarks.run`` from the repository root).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import dataset as ds
from benchmarks import servers
from benchmarks.competitors import (
    COMPETITORS,
    METHOD_KEYS,
    METHODS,
    SUBSET_ARGUMENTS,
    TETHER_METHODS,
    ClientPrograms,
    Method,
    Plan,
    anonymize_arguments,
    custom_dump_restore,
    db_reset_plan,
    directory_dump_restore,
    pgcopydb_clone,
    plain_dump_restore,
    run_plan,
    sync_prod_plan,
    task_help_plan,
)
from benchmarks.link import LinkRelay, LinkSpec, parse_link
from benchmarks.profile import ActivitySampler
from benchmarks.report import (
    FAILED,
    NOT_AVAILABLE,
    OK,
    SKIPPED,
    MethodResult,
    machine_facts,
    print_summary,
    summarize,
)
from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError, TetherError
from tether.native import postgres as native_pg
from tether.native.binaries import client_program
from tether.native.sysuser import service_user
from tether.paths import runtime_dir
from tether.secrets import mask_text

REPO_ROOT = Path(__file__).resolve().parent.parent  # where tasks.py is, so `invoke sync-prod` finds its tasks
# Another directory whose tasks.py registers sync-prod and db.reset (e.g. before the root tasks.py does).
TASKS_ROOT_ENV = "TETHER_BENCH_TASKS_ROOT"
SOURCE_DB = "shop"
COPY_DB = "shop_copy"  # the competitors' fresh target
LOCAL_DB = "shop_local"  # sync-prod's destination, the developer's local database
PG_MAJOR = 15
PAGE_CACHE_NOTE = ("both servers share this machine's OS page cache, which cannot be dropped between runs; "
                   "each run starts after a CHECKPOINT on both servers in a freshly emptied dest server")

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default progress callback: say nothing."""


@dataclass(frozen=True)
class BenchOptions:
    repeat: int = 3
    scale: float = 1.0
    methods: tuple[str, ...] = METHOD_KEYS
    keep_servers: bool = False
    jobs: int = 2
    profile: bool = False
    link: LinkSpec | None = None  # every method reads the source through this simulated link

    def validate(self) -> None:
        if self.repeat < 1:
            raise ConfigError(f"--repeat must be at least 1 (got {self.repeat}).")
        if not 0 < self.scale <= 20:
            raise ConfigError(f"--scale must be above 0 and at most 20 (got {self.scale}); 1 is the issue's size.")
        unknown = [key for key in self.methods if key not in METHOD_KEYS]
        if unknown or not self.methods:
            raise ConfigError(f"Unknown method(s) {', '.join(unknown) or '(none given)'}: choose from "
                              f"{', '.join(METHOD_KEYS)}, separated by commas.")


def parse_methods(text: str | None) -> tuple[str, ...]:
    """``"psql,pgcopydb"`` → the keys in table order; None or empty → every method."""
    if not text:
        return METHOD_KEYS
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(METHOD_KEYS))
    if unknown:
        raise ConfigError(f"Unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHOD_KEYS)}, "
                          "separated by commas.")
    return tuple(key for key in METHOD_KEYS if key in wanted)


def resolve_programs() -> ClientPrograms:
    pg_dump = client_program("pg_dump", PG_MAJOR)
    pg_config = pg_dump.parent / "pg_config"
    return ClientPrograms(
        pg_dump=str(pg_dump), pg_restore=str(client_program("pg_restore", PG_MAJOR)),
        psql=str(client_program("psql", PG_MAJOR)), pgcopydb=shutil.which("pgcopydb"),
        pg_config=str(pg_config) if pg_config.exists() else None,
    )


def _version_line(argv: Sequence[str]) -> str | None:
    """The first line a program prints on stdout for ``--version``."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[0] if lines else None


@dataclass
class Bench:
    """The running benchmark: its directory, servers, programs and the source's fingerprint."""

    base: Path
    source: servers.BenchServer
    dest: servers.BenchServer
    passfile: Path
    programs: ClientPrograms
    expected: ds.Fingerprint | None = None
    profile: bool = False
    last_profile: dict[str, Any] | None = None
    expect_anonymized: bool = False
    link: LinkRelay | None = None
    last_link_bytes: int | None = None

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.source.admin.password, self.dest.admin.password)

    def source_address(self, database: str) -> DatabaseAddress:
        """The source database as every method reaches it: through the simulated link, when there is one."""
        address = self.source.admin.with_database(database)
        return replace(address, host="127.0.0.1", port=self.link.port) if self.link else address

    def run(self, plan: Plan, name: str, profiled: bool = True) -> tuple[float, str]:
        self.last_profile = None
        if self.link:
            self.link.reset_counters()
        try:
            return self._run(plan, name, profiled)
        finally:
            self.last_link_bytes = (self.link.bytes_down + self.link.bytes_up) if self.link else None

    def _run(self, plan: Plan, name: str, profiled: bool) -> tuple[float, str]:
        if not (self.profile and profiled):
            outcome = run_plan(plan, self.base / "logs" / name, self.secrets)
            return outcome.seconds, outcome.stdout
        postmasters = {running.name: pid for running in (self.source, self.dest)
                       if (pid := native_pg.running_pid(running.server)) is not None}
        with ActivitySampler({"source": self.source.admin, "dest": self.dest.admin}, postmasters) as sampler:
            outcome = run_plan(plan, self.base / "logs" / name, self.secrets)
        self.last_profile = sampler.report()
        return outcome.seconds, outcome.stdout

    def verify(self, database: str, kind: str) -> list[str]:
        assert self.expected is not None
        address = self.dest.admin.with_database(database)
        problems = ds.compare_fingerprints(self.expected, ds.fingerprint(address))
        if kind == "tether" and self.expect_anonymized and not problems:
            # The default includes anonymization: a sync that skipped it would be faster and wrong.
            raw = ds.raw_emails(address)
            if raw:
                problems.append(f"{raw:,} e-mails in app.customers were copied without anonymization")
        return problems

    def before_run(self, create: str | None) -> None:
        # Short: what could linger here was already waited out by settle() after the run that left it.
        servers.wait_until_quiet(self.dest.admin, settle=0.2)
        servers.reset_server(self.dest.admin, create=create)
        servers.checkpoint(self.source.admin)

    def settle(self, result: MethodResult) -> None:
        """Wait out background work a command left behind (not timed, but reported)."""
        waited = servers.wait_until_quiet(self.dest.admin)
        result.details.setdefault("background_seconds", []).append(round(waited, 2))
        servers.checkpoint(self.dest.admin)


def _short(error: TetherError) -> str:
    """One line for the table: the error's first line and, for a failed command, its last line of output."""
    lines = [line.strip() for line in (error.message or str(error)).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
    return text[:300]


def _record_failure(result: MethodResult, error: TetherError, bench: Bench) -> None:
    result.fail(_short(error))
    result.details["error"] = mask_text(error.message, bench.secrets)


def _competitor_plan(method: Method, bench: Bench, run_dir: Path, jobs: int) -> Plan:
    source = bench.source_address(SOURCE_DB)
    dest = bench.dest.admin.with_database(COPY_DB)
    if method.key == "psql":
        return plain_dump_restore(bench.programs, source, dest)
    if method.key == "pg_restore":
        return custom_dump_restore(bench.programs, source, dest)
    if method.key == "pg_restore_j2":
        return directory_dump_restore(bench.programs, source, dest, run_dir / "dump", jobs)
    if method.key == "pgcopydb":
        return pgcopydb_clone(bench.programs, source, dest, run_dir / "pgcopydb", jobs)
    raise KeyError(method.key)


def _run_competitor(bench: Bench, result: MethodResult, round_number: int, jobs: int, progress: Progress) -> None:
    run_dir = bench.base / "runs" / f"{result.method.key}-{round_number}"
    run_dir.mkdir(parents=True)
    bench.before_run(create=COPY_DB)
    try:
        seconds, _ = bench.run(_competitor_plan(result.method, bench, run_dir, jobs),
                               f"{result.method.key}-{round_number}")
    except TetherError as error:
        _record_failure(result, error, bench)
        progress(f"{result.method.label}: FAILED ({result.reason})")
        return
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    _finish_run(bench, result, seconds, COPY_DB, progress)


def _finish_run(bench: Bench, result: MethodResult, seconds: float, database: str, progress: Progress) -> None:
    if result.method.kind == "tether":
        bench.settle(result)
    result.seconds.append(seconds)
    if bench.last_link_bytes is not None:
        result.details.setdefault("link_bytes", []).append(bench.last_link_bytes)
    if bench.last_profile:
        result.details["profile"] = bench.last_profile
    problems = (result.details.pop("subset_problems") if "subset_problems" in result.details
                else bench.verify(database, result.method.kind))
    for problem in problems:
        if problem not in result.problems:
            result.problems.append(problem)
    mark = "complete" if not problems else "INCOMPLETE: " + "; ".join(problems)
    progress(f"{result.method.label}: {seconds:.2f} s, {mark}")


@dataclass(frozen=True)
class SyncAvailability:
    sync: str | None  # None when available, else the reason
    reset: str | None
    anonymize_args: tuple[str, ...] = ()
    anonymize_note: str = ""
    no_snapshot: str | None = None  # None when sync-prod has --no-snapshot, else the reason


def tasks_root() -> Path:
    """Where ``invoke`` runs for sync-prod and db.reset: the repository, unless TETHER_BENCH_TASKS_ROOT says."""
    override = os.environ.get(TASKS_ROOT_ENV)
    return Path(override).resolve() if override else REPO_ROOT


def probe_sync(bench: Bench, rules_file: Path) -> SyncAvailability:
    """Whether ``invoke sync-prod`` and ``invoke db.reset`` exist here, and how to give sync-prod our rules."""
    root = tasks_root()
    if not (root / "tasks.py").exists():
        reason = f"no tasks.py in {root}"
        return SyncAvailability(reason, reason)
    try:
        _, sync_help = bench.run(task_help_plan("sync-prod", root), "probe-sync-prod", profiled=False)
    except TetherError as error:
        reason = "tasks.py does not register a sync-prod task yet"
        if "No idea what" not in error.message:
            reason = f"`invoke --help sync-prod` failed: {_short(error)}"
        return SyncAvailability(reason, reason)
    try:
        bench.run(task_help_plan("db.reset", root), "probe-db-reset", profiled=False)
        reset_reason = None
    except TetherError:
        reset_reason = "tasks.py does not register a db.reset task yet"
    args, note = anonymize_arguments(sync_help, rules_file)
    no_snapshot = None if "--no-snapshot" in sync_help else "this sync-prod has no --no-snapshot"
    return SyncAvailability(None, reset_reason, args, note, no_snapshot)


def _sync_details(stdout: str) -> dict[str, Any]:
    """sync-prod's --json summary for the report: scalars and short lists (phases) as they are, long ones counted."""
    try:
        data = json.loads(stdout[stdout.index("{"):])
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: (len(value) if isinstance(value, list | dict) and len(value) > 20 else value)
            for key, value in data.items()}


def benchmark_rules_text() -> str:
    """Anonymization rules for the benchmark's personal columns, in sync-prod's format (see anonymize.yaml).

    The shipped rules name the sample schema, and a rule naming a missing table is an error by design, so
    the benchmark brings its own; anonymizing costs source CPU, which a fair comparison must include.
    """
    return (
        "# Personal columns of the benchmark dataset (benchmarks/dataset.py).\n"
        "tables:\n"
        "  app.customers:\n"
        "    email: fake_email\n"
        "    full_name: fake_name\n"
        "    phone: {mask: partial}\n"
        "    birth_date: {random_date: {from: 1950-01-01, to: 2005-12-31}}\n"
        "    notes: null\n"
        "  app.addresses:\n"
        "    line1: {fixed: '1 Example Street'}\n"
        "    line2: null\n"
        "    postal_code: {mask: partial}\n"
        "    city: {fixed: 'Lyon'}\n"
        "  app.payments:\n"
        "    card_last4: {fixed: '0000'}\n"
        "    provider_ref: hash\n"
        "  audit.logins:\n"
        "    ip: {fixed: '192.0.2.1'}\n"
        "  audit.events:\n"
        "    ip: null\n"
    )


def _run_tether_round(bench: Bench, results: dict[str, MethodResult], availability: SyncAvailability,
                      rules_file: Path, round_number: int, progress: Progress) -> None:
    source = bench.source_address(SOURCE_DB)
    local = bench.dest.admin.with_database(LOCAL_DB)
    # A fresh runtime directory per round: whatever sync-prod remembers between runs, the round's first sync
    # starts from nothing, and its re-sync and reset see what that sync left.
    state = bench.base / "tether-state" / f"round-{round_number}"
    env = _state_env(state)
    sync_plan = sync_prod_plan(source, local, bench.passfile, tasks_root(), availability.anonymize_args, env)
    full, again, reset = results.get("sync_full"), results.get("sync_again"), results.get("reset")
    lean = results.get("sync_no_snapshot")
    subset = results.get("sync_subset")

    if lean and lean.status == OK:
        bench.before_run(create=LOCAL_DB)
        lean_plan = sync_prod_plan(source, local, bench.passfile, tasks_root(),
                                   (*availability.anonymize_args, "--no-snapshot"),
                                   _state_env(state.with_name(f"{state.name}-no-snapshot")))
        _run_tether(bench, lean, lean_plan, f"sync-no-snapshot-{round_number}", progress)

    if subset and subset.status == OK:
        bench.before_run(create=LOCAL_DB)
        subset_plan = sync_prod_plan(source, local, bench.passfile, tasks_root(),
                                     (*availability.anonymize_args, *SUBSET_ARGUMENTS),
                                     _state_env(state.with_name(f"{state.name}-subset")))
        _run_tether(bench, subset, subset_plan, f"sync-subset-{round_number}", progress)

    if full and full.status not in (FAILED, NOT_AVAILABLE):
        bench.before_run(create=LOCAL_DB)
        _run_tether(bench, full, sync_plan, f"sync-full-{round_number}", progress)
    if not full or full.status != OK:
        for dependent in (again, reset):
            if dependent and dependent.status == OK:
                why = f" (it failed: {full.reason})" if full and full.reason else ""
                dependent.status, dependent.reason = SKIPPED, f"needs a successful full sync{why}"
        return
    if again and again.status == OK:
        servers.checkpoint(bench.dest.admin)
        _run_tether(bench, again, sync_plan, f"sync-again-{round_number}", progress)
    if reset and reset.status == OK:
        _break_local_data(local)
        servers.checkpoint(bench.dest.admin)
        _run_tether(bench, reset, db_reset_plan(local, bench.passfile, tasks_root(), env), f"reset-{round_number}",
                    progress, sync_summary=False)


def _state_env(state: Path) -> dict[str, str]:
    """Where a tether command keeps what it remembers between runs: its own directory, not the repository's."""
    return {"TETHER_RUNTIME_DIR": str(state / "runtime"), "TETHER_DUMPS_DIR": str(state / "dumps")}


def _run_tether(bench: Bench, result: MethodResult, plan: Plan, name: str, progress: Progress,
                sync_summary: bool = True) -> None:
    """One timed tether command into the local database; a sync's --json summary is kept with the result."""
    try:
        seconds, stdout = bench.run(plan, name)
        if sync_summary:
            result.details["summary"] = _sync_details(stdout)
        if result.method.key == "sync_subset":
            _record_subset(bench, result, stdout)
        _finish_run(bench, result, seconds, LOCAL_DB, progress)
    except TetherError as error:
        _record_failure(result, error, bench)
        progress(f"{result.method.label}: FAILED ({result.reason})")


def _record_subset(bench: Bench, result: MethodResult, stdout: str) -> None:
    """A subset copy is checked against its own plan: every foreign key by anti-join, each table's rows against the
    plan's, no raw e-mail; its size as a fraction of the source's table bytes goes with the result."""
    from benchmarks.subset_check import count_problems, foreign_key_problems

    try:
        subset = json.loads(stdout[stdout.index("{"):])["subset"]
    except (ValueError, KeyError, TypeError):
        result.details["subset_problems"] = ["sync-prod printed no subset summary"]
        return
    local = bench.dest.admin.with_database(LOCAL_DB)
    problems = foreign_key_problems(local) + count_problems(local, subset)
    if bench.expect_anonymized and ds.raw_emails(local):
        problems.append("e-mails in app.customers were copied without anonymization")
    result.details["subset_problems"] = problems
    result.details.get("summary", {}).pop("subset", None)  # its 300 table lines: the totals below instead
    sampled = [table for table in subset["tables"] if table["reached"] != "whole"]
    result.details["size_fraction"] = subset["fraction"]
    result.details["subset"] = {
        "rows": subset["rows"], "bytes": subset["bytes"], "source_bytes": subset["source_bytes"],
        "fraction": subset["fraction"], "plan_seconds": subset["plan_seconds"], "queries": subset["queries"],
        "tables_whole": len(subset["whole_tables"]), "tables_empty": len(subset["empty_tables"]),
        "whole_bytes": sum(table["bytes"] or 0 for table in subset["tables"] if table["reached"] == "whole"),
        # Without the small tables copied whole: the share of the sampled (and referenced) tables.
        "sampled_fraction": round(sum(table["bytes"] or 0 for table in sampled)
                                  / max(1, sum(table["source_bytes"] for table in sampled)), 4),
    }


def _break_local_data(local: DatabaseAddress) -> None:
    """What a developer does before a reset: empty a table and drop another, so the reset has work to undo."""
    with psycopg.connect(local.conninfo(), autocommit=True) as conn:
        conn.execute("TRUNCATE app.reviews")
        conn.execute("DROP TABLE IF EXISTS ref.order_statuses CASCADE")


def run_benchmark(options: BenchOptions, progress: Progress = _quiet) -> dict[str, Any]:
    """Run every selected method ``repeat`` times on the same data; return (and save) the summary."""
    options.validate()
    programs = resolve_programs()
    user = service_user()
    base = servers.scratch_dir("tether-bench-", user)
    started: list[servers.BenchServer] = []
    link: LinkRelay | None = None
    keep = False
    try:
        progress("starting two PostgreSQL servers with default settings")
        source = servers.start_server("source", base, PG_MAJOR)
        started.append(source)
        dest = servers.start_server("dest", base, PG_MAJOR)
        started.append(dest)
        if options.link:
            link = LinkRelay(options.link, "127.0.0.1", source.admin.port)
            link.start()
            progress(f"every method reads the source through a simulated link: {options.link.describe()}")
        via_link = replace(source.admin, port=link.port) if link else source.admin
        passfile = servers.write_passfile(base / "pgpass", [source.admin, dest.admin, *([via_link] if link else [])])
        bench = Bench(base, source, dest, passfile, programs, profile=options.profile, link=link)

        servers.reset_server(source.admin, create=SOURCE_DB)
        shape = ds.DatasetShape.for_scale(options.scale)
        progress(f"building the dataset at scale {options.scale:g} ({shape.table_count} tables, "
                 f"{shape.row_count:,} rows)")
        built = ds.build_dataset(source.admin.with_database(SOURCE_DB), shape, progress)
        bench.expected = ds.fingerprint(source.admin.with_database(SOURCE_DB))
        progress(f"dataset ready: {built.size_bytes / 1e6:.0f} MB in {built.seconds:.1f} s")

        selected = set(options.methods)
        if selected & {"sync_again", "reset"}:
            selected.add("sync_full")  # they need a sync first; it is timed but shown only if asked for
        results = {method.key: MethodResult(method) for method in METHODS if method.key in selected}
        if "pgcopydb" in results and not programs.pgcopydb:
            results["pgcopydb"].status = NOT_AVAILABLE
            results["pgcopydb"].reason = "pgcopydb is not installed (apt-get install pgcopydb)"
        rules_file = base / "anonymize.yaml"
        rules_file.write_text(benchmark_rules_text())
        availability = SyncAvailability(None, None)
        if any(m.key in results for m in TETHER_METHODS):
            availability = probe_sync(bench, rules_file)
            bench.expect_anonymized = bool(availability.anonymize_args) and \
                availability.anonymize_args[0] != "--no-anonymize"
            _apply_availability(results, availability)
            if availability.sync is None:
                progress(f"sync-prod: {availability.anonymize_note}")
            else:
                progress(f"sync-prod: not available ({availability.sync})")

        for round_number in range(1, options.repeat + 1):
            progress(f"round {round_number} of {options.repeat}")
            for method in COMPETITORS:
                result = results.get(method.key)
                if result and result.status == OK:
                    _run_competitor(bench, result, round_number, options.jobs, progress)
            _run_tether_round(bench, results, availability, rules_file, round_number, progress)

        summary = summarize(
            [results[key] for key in options.methods],
            machine_facts(servers.server_version(source.admin), _version_line([programs.pg_dump, "--version"]) or "",
                          _version_line([programs.pgcopydb, "--version"]) if programs.pgcopydb else None),
            {"scale": options.scale, "schemas": len(ds.SCHEMAS), "tables": len(bench.expected.rows),
             "rows": bench.expected.total_rows, "size_mb": round(built.size_bytes / 1e6),
             "build_seconds": round(built.seconds, 1)},
            {"repeat": options.repeat, "jobs": options.jobs, "note": PAGE_CACHE_NOTE,
             "anonymization": availability.anonymize_note or None,
             "link": options.link.as_dict() if options.link else None},
        )
        if options.keep_servers:
            keep = True
            summary["servers"] = _kept_servers(bench)
        save_summary(summary)
        return summary
    finally:
        if link is not None:
            link.stop()
        if not keep:
            for running in started:
                servers.stop_server(running)
            shutil.rmtree(base, ignore_errors=True)


def _apply_availability(results: dict[str, MethodResult], availability: SyncAvailability) -> None:
    for key in ("sync_full", "sync_again", "sync_no_snapshot", "sync_subset"):
        if key in results and availability.sync:
            results[key].status, results[key].reason = NOT_AVAILABLE, availability.sync
    if "sync_no_snapshot" in results and not availability.sync and availability.no_snapshot:
        results["sync_no_snapshot"].status = NOT_AVAILABLE
        results["sync_no_snapshot"].reason = availability.no_snapshot
    if "reset" in results and (availability.sync or availability.reset):
        results["reset"].status = NOT_AVAILABLE
        results["reset"].reason = availability.reset or f"needs sync-prod: {availability.sync}"


def _kept_servers(bench: Bench) -> dict[str, Any]:
    """Where the kept servers are; their passwords stay in the 0600 passfile, not in the output."""
    kept: dict[str, Any] = {"passfile": str(bench.passfile)}
    for running in (bench.source, bench.dest):
        kept[running.name] = {
            "url": running.admin.with_credentials(running.admin.user, None).url(),
            "datadir": str(running.server.datadir),
            "stop": f"{running.server.program('pg_ctl')} stop -D {running.server.datadir}"
                    + (f"  (as user {running.server.run_as.name})" if running.server.run_as else ""),
        }
    return kept


def last_result_path() -> Path:
    return runtime_dir() / "bench" / "last.json"


def save_summary(summary: dict[str, Any]) -> Path:
    path = last_result_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.run``: the same as ``invoke bench`` for when invoke is not at hand."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--methods", default=None, help=f"comma-separated subset of {', '.join(METHOD_KEYS)}")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-servers", action="store_true")
    parser.add_argument("--profile", action="store_true", help="sample pg_stat_activity and CPU during each run")
    parser.add_argument("--link", default=None, help="simulate a link to the source: RTTms,RATEmbit (20ms,100mbit)")
    args = parser.parse_args(argv)
    try:
        options = BenchOptions(args.repeat, args.scale, parse_methods(args.methods), args.keep_servers,
                               profile=args.profile, link=parse_link(args.link) if args.link else None)
        summary = run_benchmark(options, progress=lambda m: print(m, file=sys.stderr, flush=True))
    except TetherError as error:
        print(mask_text(error.message), file=sys.stderr)
        return error.exit_code
    print_summary(summary, as_json=args.json)
    return 0 if summary["all_verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
