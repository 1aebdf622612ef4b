"""A sync from start to finish: checks, the snapshot, schema and rows, the snapshot kept for resets, the swap.

Order matters for safety: the destination's locality, the rules, the selection and the "same database"
check all pass before anything is written anywhere; the local database is only ever replaced by a
finished build, in one rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tether.archive import (
    LARGE_OBJECT_DATA_KINDS,
    ArchiveSql,
    Phases,
    Skipped,
    TocEntry,
    offline_env,
    parse_toc,
    pg_restore_list_argv,
    read_archive,
    replay_after_restore,
    run_program,
    split_attachments,
    write_list,
)
from tether.conninfo import DatabaseAddress
from tether.console import confirm
from tether.errors import CommandFailed, ConfigError, TetherError
from tether.native.binaries import client_program
from tether.swap import cleanup_leftovers, scratch_name, swap_names
from tether.sync import local as localdb
from tether.sync import lockshim
from tether.sync.anonymization import Anonymization
from tether.sync.anonymize import NO_RULES, RuleSet, default_rules_path, load_rules
from tether.sync.catalog import (
    Relation,
    SourceCatalog,
    catalog_fingerprint,
    large_object_fingerprint,
    read_catalog,
    smaller_as_text,
    table_sizes,
    with_sizes,
)
from tether.sync.copy import CopyResult, CopySettings, RowStreams, copy_between, copy_table
from tether.sync.incremental import (
    STATE_VERSION,
    Fingerprint,
    LocalRelation,
    SyncState,
    TableState,
    batched,
    catalog_rows,
    changed_tables,
    fingerprint_tables,
    local_relations,
    local_unchanged,
    now_iso,
    window_condition,
)
from tether.sync.indexes import EarlyScript, IndexBuilder, early_entries, early_script
from tether.sync.parallel import run_parallel
from tether.sync.plan import Selection, SyncPlan, TableCopy, build_plan, exclude_table_pattern
from tether.sync.progress import SyncProgress
from tether.sync.reset import reset_from_snapshot, retire
from tether.sync.review import NO_ANONYMIZE_WARNING, require_anonymization
from tether.sync.safety import LocalServer, check_distinct, check_extensions, check_local, inspect_local
from tether.sync.schema import (
    first_wave,
    local_env,
    pg_dump_argv,
    pg_restore_argv,
    restore_phases,
    source_env,
)
from tether.sync.sequences import apply_sequences, local_sequences, read_sequences, refresh_materialized_views
from tether.sync.snapshot import (
    JoinedSessions,
    SourceSnapshot,
    connect_local,
    connect_source,
    exported_snapshot,
    join_snapshot,
    joined_session,
    lock_tables,
)
from tether.sync.subset import SubsetResult, compute_subset
from tether.sync.subset_report import measure_local, subset_phase_line, subset_summary
from tether.sync.subset_spec import SubsetSpec
from tether.sync.summary import SyncSummary
from tether.workdirs import private_workdir

DROP_RETIRED = ("background", "now")
EARLY_TABLE_BYTES = 1024 * 1024  # tables this big are created first and filled while the others are created
PRESTREAM_RTT = 0.0  # rows start before the schema exists whatever the distance to the source (see _sync)
SLOW_ROUND_TRIP = 0.002  # seconds: beyond this the source is across a network, and round trips are worth hiding


def default_jobs() -> int:
    """Two workers, or one per CPU up to four: each worker keeps a source and a local server process busy."""
    return max(2, min(4, os.cpu_count() or 2))


@dataclass(frozen=True)
class SyncOptions:
    selection: Selection = field(default_factory=Selection)
    jobs: int = 2
    anonymize: bool = True
    rules_path: Path | None = None  # default: tether.sync.anonymize.default_rules_path()
    allow_remote_dest: bool = False
    yes: bool = False
    analyze: bool = False  # ANALYZE the copied tables (statistics then live in the snapshot, for resets too)
    full: bool = False  # ignore the last sync: copy every table again
    drop_retired: str = "background"  # or "now" (tests): when replaced local copies are dropped
    spare: bool = True  # keep a ready copy of the snapshot, so that db.reset is a rename (see tether.sync.local)
    # Keep the build as the snapshot for db.reset and incremental re-syncs. Without one, the build itself becomes
    # the local database: no second copy (about a quarter faster), but no reset and every sync copies everything.
    snapshot: bool = True
    large_objects: bool = True  # False: --exclude-large-objects
    subset: SubsetSpec | None = None  # --subset: a referentially complete slice instead of everything

    def digest(self, rules: RuleSet, key_identity: str) -> str:
        """What the copied rows depend on besides the source: a change means copying everything again."""
        data = {"selection": self.selection.as_dict(), "anonymize": self.anonymize,
                "large_objects": self.large_objects,
                "rules": rules.digest() if self.anonymize else None,
                "key": key_identity if self.anonymize else None, "version": STATE_VERSION}
        if self.subset is not None:
            data["subset"] = self.subset.digest()
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class _Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


@dataclass
class _Context:
    source: DatabaseAddress
    dest: DatabaseAddress
    options: SyncOptions
    progress: SyncProgress
    summary: SyncSummary
    phases: _Phases
    local: LocalServer
    catalog: SourceCatalog
    plan: SyncPlan
    anonymization: Anonymization
    options_digest: str
    work_dir: Path
    archive: Path | None = None
    schema_digest: str = ""
    catalog_digest: str = ""
    order: Phases | None = None  # the archive's entries in restore order
    archive_sql: ArchiveSql | None = None  # owners, privileges and the rest, replayed after pg_restore's part
    settings: list[str] = field(default_factory=list)  # the database's settings (tether.archive.database_settings)
    source_rtt: float = 0.0  # seconds per round trip to the source, measured in the plan phase
    data_started: float | None = None  # when the row streams started (perf_counter)
    archive_bytes: int = 0  # the size of pg_dump's archive: bytes from the source besides the rows
    held_locks: frozenset[tuple[str, str]] = frozenset()  # (schema, table) the snapshot session has locked
    review_pending: bool = False  # the personal-column review waits for the tables a re-sync will copy
    early_schema: _EarlySchemaDump | None = None  # the schema dump, when it started during the review

    @property
    def admin(self) -> DatabaseAddress:
        return self.local.maintenance

    @property
    def snapshot_db(self) -> str:
        return localdb.snapshot_name(self.dest.database)


def sync(source: DatabaseAddress, dest: DatabaseAddress, options: SyncOptions,
         progress: SyncProgress | None = None) -> SyncSummary:
    """Make ``dest`` an anonymized copy of ``source`` as of one snapshot; see the module doc for the order."""
    try:
        return _sync(source, dest, options, progress or SyncProgress(quiet=True))
    except psycopg.Error as error:
        raise localdb.database_error(error, "The sync") from None
    finally:
        localdb.close_admin_sessions()


def _sync(source: DatabaseAddress, dest: DatabaseAddress, options: SyncOptions, progress: SyncProgress) -> SyncSummary:
    started = time.perf_counter()
    check_local(dest, options.allow_remote_dest)
    if options.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, not {options.jobs}.")
    if options.drop_retired not in DROP_RETIRED:
        raise ConfigError(f"drop_retired must be one of {DROP_RETIRED}")
    rules = load_rules(options.rules_path or default_rules_path()) if options.anonymize else NO_RULES
    if options.anonymize:
        require_anonymization(rules)  # an empty rules file must not pass for an anonymized copy
    localdb.snapshot_name(dest.database)
    scratch_name(dest.database, "sync")  # a name too long for scratch copies fails here, before any work
    phases = _Phases()
    progress.phase(f"checking {source.masked_url()} and {dest.masked_url()}")
    local = inspect_local(dest)
    summary = SyncSummary(mode="full", source=source.masked_url(), dest=dest.masked_url(),
                          snapshot_database=localdb.snapshot_name(dest.database) if options.snapshot else None,
                          anonymized=options.anonymize,
                          jobs=options.jobs)
    previous = (None if options.full or not options.snapshot
                else localdb.read_state(local.maintenance, localdb.snapshot_name(dest.database)))
    # Exits in reverse: an early change detection ends, then its sessions close, then the snapshot.
    with private_workdir("sync") as work_dir, exported_snapshot(source) as snap, \
            _early_detection(source, snap) as early, _EarlySchemaDump() as early_schema:
        with phases("plan"):
            catalog = read_catalog(snap.conn)
            catalog_digest = catalog_fingerprint(snap.conn)
            if _may_detect_early(options, previous, catalog_digest):
                early.warm_up(options.jobs)  # while the rest of the plan runs
            check_distinct(catalog.server, local, dest)
            check_extensions(catalog.extensions, local)
            anonymization = (Anonymization.prepare(snap.conn, catalog, rules) if options.anonymize
                             else Anonymization.off())
            resolved = anonymization.resolved
            selection = anonymization.selection(options.selection, catalog)  # never the key's own table
            binary = catalog.server.major == local.major
            large_objects = _large_objects_wanted(options, rules, catalog)
            plan = build_plan(catalog, selection, resolved, binary_allowed=binary, large_objects=large_objects)
            held = [relation for relation in catalog.relations.values()
                    if relation.kind in ("r", "p") and relation.oid not in plan.excluded_oids]
            lock_tables(snap.conn, [relation.identifier for relation in held])
            with_sizes(catalog, table_sizes(snap.conn, [copy.relation.oid for copy in plan.copies]))
            options_digest = options.digest(rules, anonymization.key_identity)
            if early.sessions is not None and previous is not None and previous.options_digest == options_digest:
                # Same schema, same options: most likely nothing to copy, and the scan for changes decides. It
                # starts now, the tables locked, instead of after the rest of the plan, on the warm sessions.
                early.start(_detect_changes, source, dest, snap, previous,
                            [catalog.relations[copy.relation.oid] for copy in plan.copies], options.jobs, progress,
                            phases, early.sessions)
            else:
                early.release()
            source_rtt = _round_trip(snap.conn)
            # Across a network the bytes decide: the big tables go as text where that is smaller.
            big = [catalog.relations[copy.relation.oid] for copy in plan.copies if copy.binary]
            big = [relation for relation in big if relation.bytes >= EARLY_TABLE_BYTES]
            as_text = smaller_as_text(snap.conn, big) if binary and source_rtt >= SLOW_ROUND_TRIP else set()
            plan = build_plan(catalog, selection, resolved, binary_allowed=binary, large_objects=large_objects,
                              as_text=as_text)
            subset = _plan_subset(source, snap, catalog, plan, options, progress)
            if subset is not None:
                plan = subset.apply(plan)
            # Personal columns without a rule, or rules breaking constraints: stop here. A re-sync of the same schema
            # with the same rules reviews later, and only the tables it will copy (none, when nothing changed): a
            # new column changes the catalog, and rows that are not copied cannot leak.
            review_later = (options.anonymize and previous is not None and previous.catalog_digest == catalog_digest
                            and previous.options_digest == options_digest)
            context = _Context(source, dest, options, progress, summary, phases, local, catalog, plan, anonymization,
                               options_digest, Path(work_dir), catalog_digest=catalog_digest, source_rtt=source_rtt,
                               held_locks=frozenset((relation.schema, relation.name) for relation in held),
                               review_pending=review_later)
            # pg_dump reads catalogs, no rows, so it may overlap the review; not with large objects, whose contents
            # it brings too (they wait for the review, like rows). And not when no pg_dump is needed at all.
            if not plan.large_objects and (previous is None or previous.catalog_digest != catalog_digest):
                early_schema.start(context, snap)
                context.early_schema = early_schema
            if options.anonymize and not review_later:
                anonymization.enforce(snap.conn, source, snap.snapshot_id, catalog, plan)
        if not options.anonymize:
            confirm(NO_ANONYMIZE_WARNING, yes=options.yes)
        what = "an anonymized" if options.anonymize else "a NOT anonymized (real personal data!)"
        confirm(f"Replace the local database {dest.database!r} ({dest.masked_url()}) with {what} copy of "
                f"{source.masked_url()}?", yes=options.yes)
        if not options.anonymize:
            progress.phase("WARNING: anonymization is off; the local copy will hold real personal data")
        if anonymization.key is not None:
            summary.pseudonym_key = anonymization.key.mode
        _fill_plan_summary(context)
        if subset is not None:
            summary.subset = subset_summary(subset)
            progress.planned_rows = {copy.name: copy.expected_rows for copy in plan.copies
                                     if copy.expected_rows is not None}
            progress.phase(subset_phase_line(summary.subset))
        with phases("cleanup"):
            cleanup_leftovers(context.admin, dest.database)
        # A sync that will copy everything starts reading rows now, while pg_dump reads the schema (seconds of
        # round trips when production is far away); they are spooled until the local tables exist.
        streams = _start_streams(context, snap) if previous is None and context.source_rtt >= PRESTREAM_RTT else None
        with ThreadPoolExecutor(max_workers=1) as pool:
            # While pg_dump runs: a first sync creates its scratch database, a re-sync looks for changes
            # (wasted only when the schema turns out to have changed).
            scratch_ready = pool.submit(_create_scratch, context) if previous is None else None
            same_catalog = previous is not None and previous.catalog_digest == context.catalog_digest
            changes = early.changes or (pool.submit(_detect_changes, *_detection_arguments(context, snap, previous))
                                        if previous is not None and same_catalog else None)
            try:
                if previous is not None and same_catalog:
                    context.schema_digest = previous.schema_digest  # no catalog row changed: no pg_dump
                    context.settings = previous.database_settings
                else:
                    with phases("schema dump"):
                        _dump_schema(context, snap)
            except BaseException:
                if streams is not None:
                    streams.abort()
                if scratch_ready is not None:
                    _drop_quietly(context, [scratch_ready.result()])
                raise
            reason = _full_sync_reason(context, previous, snap)
            if reason is None:
                assert previous is not None
                if changes is None:  # the schema had to be compared first (a TRUNCATE, say, touches pg_class)
                    changes = pool.submit(_detect_changes, *_detection_arguments(context, snap, previous))
                _incremental(context, snap, previous, changes)
            else:
                if changes is not None:
                    changes.cancel()
                early.stop()  # a scan already running would only compete with the copy
                summary.notes.insert(0, f"full sync: {reason}")
                _full(context, snap, scratch_ready, streams)
    if summary.subset is not None:
        measure_local(summary.subset, dest)
    summary.seconds = time.perf_counter() - started
    summary.phases = phases.seconds
    return summary


def _review(context: _Context, snap: SourceSnapshot, names: set[str] | None = None) -> None:
    """The deferred personal-column review (see _sync), over the tables about to be copied; stops the sync."""
    if not context.review_pending:
        return
    context.review_pending = False
    plan = context.plan if names is None else replace(
        context.plan, copies=[copy for copy in context.plan.copies if copy.name in names])
    context.anonymization.enforce(snap.conn, context.source, snap.snapshot_id, context.catalog, plan)


def _round_trip(conn: psycopg.Connection) -> float:
    """The shortest of three round trips to the source: what a network adds to every query."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        conn.execute("SELECT 1")
        times.append(time.perf_counter() - started)
    return min(times)


def _plan_subset(source: DatabaseAddress, snap: SourceSnapshot, catalog: SourceCatalog, plan: SyncPlan,
                 options: SyncOptions, progress: SyncProgress) -> SubsetResult | None:
    """The subset's rows (tether.sync.subset), computed in the snapshot after the tables are locked."""
    if options.subset is None:
        return None
    return compute_subset(snap.conn, catalog, plan, options.subset, progress.phase,
                          lambda: joined_session(source, snap.snapshot_id), options.jobs)


def _large_objects_wanted(options: SyncOptions, rules: RuleSet, catalog: SourceCatalog) -> bool:
    """Whether to copy the source's large objects: yes, unless excluded; an anonymized sync needs the rules to say."""
    if not options.large_objects or not catalog.large_objects:
        return False
    if not options.anonymize or rules.large_objects == "keep":
        return True
    if rules.large_objects == "drop":
        return False
    raise ConfigError(f"The source holds {catalog.large_objects} large objects: opaque bytes (documents, images) that "
                      f"no column rule can look into, so they may hold personal data. Say what to do with them in "
                      f"{rules.origin}: `large_objects: drop` leaves them out, `large_objects: keep` copies them as "
                      "they are (you reviewed them); or pass --exclude-large-objects. Nothing was copied.")


def _fill_plan_summary(context: _Context) -> None:
    plan, summary, catalog = context.plan, context.summary, context.catalog
    if catalog.publications and context.local.wal_level != "logical":
        summary.notes.append(f"{catalog.publications} publications created as pg_dump | psql would, inert here: the "
                             f"local server's wal_level is {context.local.wal_level}, not logical")
    if catalog.subscriptions:
        summary.notes.append(f"subscriptions not copied ({', '.join(catalog.subscriptions)}): a copy would hold the "
                             "publisher's connection string and try to connect to it")
    if catalog.tablespaces:
        summary.notes.append(f"tablespaces not kept ({', '.join(catalog.tablespaces)}): everything is in the local "
                             "server's default tablespace")
    summary.tables = len(plan.copies)
    summary.tables_schema_only = len(plan.schema_only)
    summary.tables_excluded = len(plan.excluded)
    summary.rules_applied = [rule.as_dict() for rule in plan.rules_applied]
    summary.notes.extend(plan.notes)


def _programs(context: _Context) -> tuple[Path, Path]:
    major = context.catalog.server.major
    return client_program("pg_dump", min_major=major), client_program("pg_restore", min_major=major)


@dataclass(frozen=True)
class _SchemaRead:
    """pg_dump's archive of the source schema, read back: what ``_dump_schema`` puts into the context."""

    archive: Path
    order: Phases
    archive_sql: ArchiveSql
    locks_answered: int | None  # pg_dump's table locks the lock shim answered locally (None: no shim)


def _read_schema(context: _Context, snapshot_id: str, password: str | None,
                 on_start: Callable[[Any], None] | None = None) -> _SchemaRead:
    """pg_dump of the source (all but table rows) in the snapshot, and its restore order and SQL.

    Uses no session of the sync's own, so that it can run while the plan's review still uses them.
    """
    pg_dump, pg_restore = _programs(context)
    archive = context.work_dir / "schema.dump"
    patterns = [exclude_table_pattern(relation) for relation in context.plan.excluded]
    with _pg_dump_source(context, password) as (through, shim):
        run_program(pg_dump_argv(pg_dump, through, snapshot_id, archive, patterns,
                                 large_objects=context.plan.large_objects),
                    source_env(through), "pg_dump of the source schema",
                    "The source role needs SELECT on every table it copies (the readonly role has it).",
                    on_start=on_start)
    toc = parse_toc(run_program(pg_restore_list_argv(pg_restore, archive), offline_env(), "pg_restore --list"))
    order = restore_phases(toc.entries, context.plan.skipped_foreign_keys)
    archive_sql = read_archive(pg_restore, archive, toc, order, context.work_dir)
    return _SchemaRead(archive, order, archive_sql, shim.answered if shim is not None else None)


class _EarlySchemaDump:
    """The schema dump, started while the plan's review still runs, and stopped if the sync stops before using it.

    pg_dump reads no rows, only catalogs, so nothing personal moves before the review has passed; what it
    saves is its own duration (most of a second on a fast link; its round trips overlap the review's).
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[_SchemaRead] | None = None
        self._process: Any = None
        self._stopping = False
        self._lock = threading.Lock()

    def start(self, context: _Context, snap: SourceSnapshot) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="schema-dump")
        self._future = self._pool.submit(_read_schema, context, snap.snapshot_id, snap.conn.info.password,
                                         self._started)

    def _started(self, process: Any) -> None:
        with self._lock:
            self._process = process
            if self._stopping:
                process.kill()

    def take(self) -> _SchemaRead | None:
        """The dump's result (its error, if it failed); None if it was never started or was taken already."""
        future, self._future = self._future, None
        return future.result() if future is not None else None

    def __enter__(self) -> _EarlySchemaDump:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._stopping = True
            if self._future is not None and self._process is not None and self._process.poll() is None:
                self._process.kill()
        if self._future is not None:
            with contextlib.suppress(Exception):
                self._future.result()  # waited for: the work directory it writes in goes away next
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _dump_schema(context: _Context, snap: SourceSnapshot) -> None:
    """One pg_dump of the source (all but table rows) in the snapshot; its script's hash says whether the schema
    changed, and it names each object's owner and the database's settings. Taken from the early dump if one ran."""
    early = context.early_schema.take() if context.early_schema is not None else None
    read = early or _read_schema(context, snap.snapshot_id, snap.conn.info.password)
    if read.locks_answered is not None:
        context.summary.notes.append(f"pg_dump's {read.locks_answered} table locks were already held by the sync's "
                                     "snapshot session: answered on this machine, not across the network")
    context.archive_bytes = read.archive.stat().st_size
    context.archive, context.order, context.archive_sql = read.archive, read.order, read.archive_sql
    # Large objects' contents are data pg_dump wrote, but not part of the script: they count as schema here, so
    # a change means a full sync (their metadata is in the script already).
    contents = large_object_fingerprint(snap.conn) if context.plan.large_objects else ""
    context.settings, context.schema_digest = read.archive_sql.settings, read.archive_sql.digest + contents


@contextmanager
def _pg_dump_source(context: _Context, password: str | None) -> Iterator[
        tuple[DatabaseAddress, lockshim.LockShim | None]]:
    """Where pg_dump reads the source: through the lock shim when the source is across a network (see
    tether.sync.lockshim), else directly."""
    if context.source_rtt < SLOW_ROUND_TRIP or not lockshim.usable(context.source):
        yield context.source, None
        return
    with lockshim.LockShim(context.source, context.held_locks) as shim:
        yield lockshim.shim_address(context.source, shim.port, password), shim


def _full_sync_reason(context: _Context, previous: SyncState | None, snap: SourceSnapshot) -> str | None:
    """Why this sync must copy everything (None: it may reuse what the last sync left)."""
    server = context.catalog.server
    if context.options.full:
        return "--full was given"
    if not context.options.snapshot:
        return "no snapshot is kept (--no-snapshot), and only a snapshot lets a sync copy just what changed"
    if previous is None:
        return "no earlier sync into this database"
    if (previous.source_system or previous.source_start, previous.source_database_oid) != (
            server.system_identifier or server.start_time, server.database_oid):
        return "the source is another database than last time"
    if previous.schema_digest != context.schema_digest:
        return "the source schema changed"
    if previous.options_digest != context.options_digest:
        return "the table selection, the subset or the anonymization rules changed"
    if window_condition(snap.xids, previous.horizon) is None:
        return "too many transactions ran on the source since the last sync"
    emptied = _unlogged_tables_emptied(context, previous)
    if emptied:
        return (f"the local server emptied unlogged tables of the snapshot ({', '.join(emptied[:3])}), as "
                "PostgreSQL does after a crash")
    return None


def _unlogged_tables_emptied(context: _Context, previous: SyncState) -> list[str]:
    """Unlogged tables whose rows the snapshot should hold but does not (counted: they are usually small)."""
    names = {copy.name for copy in context.plan.copies
             if copy.relation.persistence == "u" and previous.local_rows.get(copy.name)}
    if not names:
        return []
    with _snapshot_session(context) as conn:
        counted = _count_rows(conn, local_relations(conn), lambda name: name in names)
    return sorted(name for name in names if counted.get(name) != previous.local_rows[name])


@contextmanager
def _snapshot_session(context: _Context) -> Iterator[psycopg.Connection]:
    """A session on the snapshot, which admits connections only while the sync holds one."""
    localdb.allow_connections(context.admin, context.snapshot_db, True)
    try:
        with connect_local(context.dest.with_database(context.snapshot_db)) as conn:
            yield conn
    finally:
        localdb.allow_connections(context.admin, context.snapshot_db, False)


def _analyze(conn: psycopg.Connection, relations: list[Relation]) -> None:
    for relation in relations:
        conn.execute(sql.SQL("ANALYZE {}").format(relation.identifier))


def _scratch_address(context: _Context, name: str) -> DatabaseAddress:
    return context.dest.with_database(name)


def _full(context: _Context, snap: SourceSnapshot, scratch_ready: Future[str] | None = None,
          streams: RowStreams | None = None) -> None:
    """Build a new copy from nothing: pre-data, rows (indexes built as tables arrive), post-data; install it."""
    progress, phases, plan = context.progress, context.phases, context.plan
    _, pg_restore = _programs(context)
    try:
        _review(context, snap)
        if context.archive is None:  # the schema was known unchanged, but this sync must build it anyway
            with phases("schema dump"):
                _dump_schema(context, snap)
        assert context.archive is not None
        scratch = scratch_ready.result() if scratch_ready else _create_scratch(context)
    except BaseException:
        if streams is not None:
            streams.abort()
        raise
    streams = streams or _start_streams(context, snap)
    scratch_address = _scratch_address(context, scratch)
    builder: IndexBuilder | None = None
    second_wave: Future[bool] | None = None
    # The leak scan's source side is taken while the rows travel: after the copy, it then needs no round trip.
    sampler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-leak-sample")
    leak_samples = sampler.submit(context.anonymization.sample_for_leaks, context.source, snap.snapshot_id,
                                  [copy.relation for copy in plan.copies])
    sampler.shutdown(wait=False)
    assert context.order is not None
    main = context.order.main
    try:
        with phases("pre-data"):
            progress.phase(f"creating the schema in {scratch}")
            groups = early_entries(main, context.catalog, plan.excluded_oids)
            with ThreadPoolExecutor(max_workers=1) as scripts:  # the SQL we run ourselves, while the schema goes in
                early_ready = scripts.submit(early_script, pg_restore, context.archive, groups, context.work_dir)
                early_tables = {copy.relation.oid for copy in plan.copies
                                if copy.relation.bytes >= EARLY_TABLE_BYTES}
                wave = first_wave(main, early_tables) if early_tables else set()
                if wave and not _restore_pre_data(context, scratch_address,
                                                  [entry for entry in main if entry.dump_id in wave], "first"):
                    wave = set()  # the first wave did not stand on its own: create everything in one go
                rest = [entry for entry in main if entry.dump_id not in wave]
                if not wave:
                    _restore_pre_data(context, scratch_address, rest, "all", must=True)
                script = early_ready.result()
            if script is None:  # the script did not line up with the list: let pg_restore build them all
                script, groups = EarlyScript("", {}), {}
            early = {id(entry) for entries in groups.values() for entry in entries}
            post = [entry for entry in main if id(entry) not in early]
            parallel_post, serial_post = split_attachments(post)
            post_list = write_list(context.work_dir / "post.list", parallel_post)
            serial_list = write_list(context.work_dir / "post-serial.list", serial_post)
        builder = IndexBuilder(scratch_address, script, context.options.jobs)
        builder.start()
        index_builder = builder

        def schema_only_ready(_: object = None) -> None:
            for relation in plan.schema_only:
                index_builder.table_ready(relation.oid)

        waiter: Callable[[TableCopy], None] | None = None
        if wave:
            # The other tables (hundreds of small ones: one fsync each) are created while the big ones fill.
            progress.phase(f"creating the other {len(plan.copies) - len(early_tables)} tables while copying")
            creator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-pre-data")
            second_wave = creator.submit(_restore_pre_data, context, scratch_address, rest, "second", True)
            creator.shutdown(wait=False)
            second_wave.add_done_callback(lambda done: None if done.exception() else schema_only_ready())

            def waiter(copy: TableCopy) -> None:
                if copy.relation.oid not in early_tables:
                    assert second_wave is not None
                    second_wave.result()
        else:
            schema_only_ready()
        # An index may need something from the second wave (an operator class from an extension, say).
        after_second = {oid for oid, entries in groups.items()
                        if wave and any(not set(entry.depends_on) <= wave for entry in entries)}

        def committed(copy: TableCopy) -> None:
            sampling_failed = leak_samples.exception() if leak_samples.done() else None
            if sampling_failed is not None:
                raise sampling_failed  # now, not after the whole copy
            oid, size = copy.relation.oid, copy.relation.bytes
            if oid in after_second and second_wave is not None:
                second_wave.add_done_callback(lambda done: None if done.exception()
                                              else index_builder.table_ready(oid, size))
            else:
                index_builder.table_ready(oid, size)

        results = _copy(context, streams, scratch_address, wait_for=waiter, on_committed=committed)
        if second_wave is not None:
            second_wave.result()
        _restore_large_objects(context, scratch_address, main)
        with phases("leak scan"), connect_local(scratch_address) as conn, conn.transaction():
            context.summary.leak_scan = context.anonymization.scan_for_leaks(
                context.source, snap.snapshot_id, conn, [copy.relation for copy in plan.copies],
                leak_samples.result()).as_dict()
        sequences = _read_sequences(context, snap)
        fingerprints = _fingerprints(context, snap, None, [copy.relation for copy in plan.copies])
        snap.conn.close()  # the source is no longer needed: release its snapshot now
        with phases("indexes"):
            progress.phase("finishing indexes")
            builder.finish()
        with phases("post-data"):
            progress.phase(f"foreign keys, triggers, policies ({context.options.jobs} jobs)")
            run_program(pg_restore_argv(pg_restore, scratch_address, context.archive, section="post-data",
                                        list_file=post_list, jobs=context.options.jobs),
                        local_env(scratch_address), "pg_restore of constraints and triggers (post-data)")
            if serial_post:
                run_program(pg_restore_argv(pg_restore, scratch_address, context.archive, section="post-data",
                                            list_file=serial_list, jobs=1),
                            local_env(scratch_address), "pg_restore of partition index attachments (post-data)")
        _finish_local(context, scratch_address, sequences, plan.copies)
        local_rows, relations = _verify(context, scratch_address, results)
        tables = {name: TableState(result.rows, context.catalog.by_name()[name].relfilenode,
                                   fingerprints[name][0], fingerprints[name][1])
                  for name, result in results.items()}
        with connect_local(scratch_address) as conn:
            catalogs = {name: rows for name, (rows, _) in catalog_rows(conn, None).items()}
        state = _new_state(context, snap, tables, sequences, local_rows,
                           {name: relation.relfilenode for name, relation in relations.items()}, catalogs)
        context.summary.tables_copied = len(results)
        context.summary.rows_copied = sum(result.rows for result in results.values())
        context.summary.bytes_copied = sum(result.bytes for result in results.values())
        _install(context, scratch, state)
    except BaseException:
        streams.abort()
        with contextlib.suppress(BaseException):
            leak_samples.result()  # reads in the snapshot: done before the snapshot closes
        if second_wave is not None:
            with contextlib.suppress(BaseException):
                second_wave.result()
        if builder is not None:
            builder.abort()
        _drop_quietly(context, [scratch])
        raise


def _restore_pre_data(context: _Context, target: DatabaseAddress, entries: list[TocEntry], wave: str,
                      must: bool = False) -> bool:
    """``pg_restore --section=pre-data`` of ``entries`` in one transaction; False if it failed and may."""
    _, pg_restore = _programs(context)
    assert context.archive is not None
    try:
        run_program(pg_restore_argv(pg_restore, target, context.archive, section="pre-data",
                                    list_file=write_list(context.work_dir / f"pre-{wave}.list", entries)),
                    local_env(target), f"pg_restore of the schema (pre-data, {wave})")
    except CommandFailed:
        if must:
            raise
        context.summary.notes.append("the big tables' part of the schema could not be created on its own; "
                                     "created the whole schema first instead")
        return False
    return True


def _create_scratch(context: _Context) -> str:
    scratch = scratch_name(context.dest.database, "sync")
    localdb.create_scratch(context.admin, scratch, context.catalog.server.encoding)
    return scratch


@dataclass(frozen=True)
class _Changes:
    fingerprints: dict[str, Fingerprint]
    unchanged_locally: bool
    local_reason: str


def _may_detect_early(options: SyncOptions, previous: SyncState | None, catalog_digest: str) -> bool:
    """Whether this sync may scan for changes before its plan is done: a re-sync of everything whose schema is the
    last sync's, never before a prompt (the user has not agreed to anything yet)."""
    return (options.yes and not options.full and options.snapshot and options.subset is None
            and previous is not None and previous.catalog_digest == catalog_digest)


class _EarlyDetection:
    """A re-sync's scan for changes, started during the plan on sessions opened while the catalog was read."""

    def __init__(self, source: DatabaseAddress, snap: SourceSnapshot) -> None:
        self.source, self.snap = source, snap
        self.sessions: JoinedSessions | None = None
        self.changes: Future[_Changes] | None = None
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-detect")

    def warm_up(self, count: int) -> None:
        self.sessions = JoinedSessions(self.source, self.snap.snapshot_id, count)

    def start(self, function: Callable[..., _Changes], *arguments: Any) -> None:
        self.changes = self._runner.submit(function, *arguments)

    def release(self) -> None:
        """Not needed after all: close the warm sessions now (each holds production's snapshot open)."""
        if self.sessions is not None:
            self.sessions.release()

    def stop(self) -> None:
        """Its result will not be used: cancel its queries rather than let the scan run to the end."""
        if self.sessions is not None:
            self.sessions.cancel_taken()

    def close(self, failed: bool) -> None:
        if failed:
            self.stop()
        self._runner.shutdown(wait=True)  # its sessions are in use until it ends
        if self.sessions is not None:
            self.sessions.close()


@contextmanager
def _early_detection(source: DatabaseAddress, snap: SourceSnapshot) -> Iterator[_EarlyDetection]:
    early = _EarlyDetection(source, snap)
    failed = True
    try:
        yield early
        failed = False
    finally:
        early.close(failed)


def _detection_arguments(context: _Context, snap: SourceSnapshot,
                         previous: SyncState) -> tuple[Any, ...]:
    return (context.source, context.dest, snap, previous, [copy.relation for copy in context.plan.copies],
            context.options.jobs, context.progress, context.phases)


def _detect_changes(source: DatabaseAddress, dest: DatabaseAddress, snap: SourceSnapshot, previous: SyncState,
                    relations: list[Relation], jobs: int, progress: SyncProgress, phases: _Phases,
                    sessions: JoinedSessions | None = None) -> _Changes:
    """Fingerprint every source table in the snapshot while checking whether the local copy was touched."""
    progress.phase(f"looking for changes since {previous.synced_at} ({len(relations)} tables)")
    with phases("change detection"), ThreadPoolExecutor(max_workers=1) as pool:
        local_check = pool.submit(local_unchanged, dest, previous, jobs)
        fingerprints = fingerprint_tables(source, snap.snapshot_id, snap.xids, previous.horizon, relations, jobs,
                                          sessions)
        unchanged_locally, local_reason = _local_result(local_check)
    return _Changes(fingerprints, unchanged_locally, local_reason)


def _incremental(context: _Context, snap: SourceSnapshot, previous: SyncState, detection: Future[_Changes]) -> None:
    """Copy only the tables that changed, or nothing at all."""
    progress, phases, plan, summary = context.progress, context.phases, context.plan, context.summary
    relations = [copy.relation for copy in plan.copies]
    with phases("waiting for change detection"):
        changes = detection.result()
    fingerprints, unchanged_locally, local_reason = (changes.fingerprints, changes.unchanged_locally,
                                                     changes.local_reason)
    # A key made for this sync cannot extend the last sync's pseudonyms: their tables are copied again too.
    changed = context.anonymization.recopied(
        changed_tables(previous, relations, fingerprints, plan.subset_selections or None), relations)
    configuration = [copy.name for copy in plan.copies if copy.appends and copy.name in set(changed)]
    if configuration:
        summary.notes.insert(0, f"full sync: extension configuration tables changed ({', '.join(configuration)}); "
                                "their rows are added to the extension's own, which only a new build can redo")
        _full(context, snap)
        return
    if changed and not context.local.superuser:
        summary.notes.insert(0, "full sync: copying only changed tables needs a superuser on the local server")
        _full(context, snap)
        return
    if changed:
        _review(context, snap, set(changed))
    sequences = _read_sequences(context, snap)
    subset_rows = {copy.name: copy.expected_rows for copy in plan.copies if copy.expected_rows is not None}
    tables = {relation.qualified: TableState(subset_rows.get(relation.qualified,
                                                             fingerprints[relation.qualified].rows),
                                             relation.relfilenode,
                                             fingerprints[relation.qualified].window_rows,
                                             fingerprints[relation.qualified].window_hash)
              for relation in relations}
    summary.changed_tables = changed
    summary.tables_carried_over = len(relations) - len(changed)
    if not changed:
        summary.mode = "unchanged"
        snap.conn.close()
        _keep(context, snap, previous, tables, sequences, unchanged_locally, local_reason)
        return
    summary.mode = "incremental"
    progress.phase(f"{len(changed)} of {len(relations)} tables changed: copying them into the snapshot")
    copies = [copy for copy in plan.copies if copy.name in set(changed)]
    state = _update_snapshot(context, snap, previous, copies, sequences, tables)
    # The spare still holds the previous snapshot: it needs only the changed tables, not a whole copy. (Claimed
    # only now: until the snapshot is updated, a db.reset may still want it.)
    claimed = (localdb.take_spare(context.admin, context.dest.database, state, holding=previous.content_id)
               if context.options.spare else None)
    if claimed and _install_updated_spare(context, claimed[0], copies, state):
        return
    _install_working_copy(context, state, [])


def _install_updated_spare(context: _Context, work: str, copies: list[TableCopy], state: SyncState) -> bool:
    """Bring the claimed spare up to the new snapshot and swap it in; False (and dropped) if that failed."""
    progress, phases, summary = context.progress, context.phases, context.summary
    dest = context.dest.database
    progress.phase(f"copying the {len(copies)} changed tables into the spare copy, to become {dest!r}")
    try:
        with phases("working copy"):
            horizon, relfilenodes = _refresh_copy(context, work, copies, state)
            _apply_settings(context, work, state.database_settings)
        with phases("swap"):
            summary.sessions_disconnected, old = swap_names(context.admin, work, dest)
    except (psycopg.Error, TetherError) as error:
        _drop_quietly(context, [work])
        reason = error.message if isinstance(error, TetherError) else " ".join(str(error).split())
        summary.notes.append(f"the spare copy could not be brought up to date ({reason}); copied the snapshot")
        return False
    except BaseException:
        _drop_quietly(context, [work])
        raise
    summary.notes.append(f"{dest!r} is the spare copy with the {len(copies)} changed tables copied in (no copy of "
                         "the whole snapshot)")
    _installed(context, state, relfilenodes, horizon, [old] if old else [])
    return True


def _refresh_copy(context: _Context, work: str, copies: list[TableCopy], state: SyncState) -> tuple[
        int, dict[str, int]]:
    """Give a copy of the previous snapshot the new snapshot's rows, in one transaction: (horizon, relfilenodes)."""
    views = _populated_views(context)
    with connect_local(context.dest.with_database(work)) as conn, _snapshot_session(context) as snapshot:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            restore_triggers = _quiet_triggers(conn, copies)
            _clear_tables(context, conn, copies)
            for copy in copies:
                rows = copy_between(snapshot, conn, copy.relation)
                if rows != state.local_rows.get(copy.name):
                    raise TetherError(f"{copy.name} has {rows} rows in the spare copy but "
                                      f"{state.local_rows.get(copy.name)} in the snapshot")
            for statement in restore_triggers:
                conn.execute(statement)
            if views:
                refresh_materialized_views(conn, views)
            apply_sequences(conn, state.sequences, local_sequences(conn))
            if context.options.analyze:
                _analyze(conn, [copy.relation for copy in copies] + views)
        horizon = localdb.local_horizon(conn)
        relfilenodes = {name: relation.relfilenode for name, relation in local_relations(conn).items()}
    return horizon, relfilenodes


def _update_snapshot(context: _Context, snap: SourceSnapshot, previous: SyncState, copies: list[TableCopy],
                     sequences: dict[str, list[Any]], tables: dict[str, TableState]) -> SyncState:
    """Copy the changed tables into the snapshot database itself, in one local transaction.

    The snapshot is private to the sync, and one transaction keeps it atomic: if anything fails (or the
    process is killed), it rolls back and the snapshot is exactly the last synced state. Only the working
    database is then made again from it (one database copy instead of two).
    """
    phases, summary = context.phases, context.summary
    settings = CopySettings(jobs=1, source_settings=context.anonymization.session_settings, freeze=False)
    views = _populated_views(context)
    with _snapshot_session(context) as conn, connect_source(context.source,
                                                            context.anonymization.session_settings) as src:
        join_snapshot(src, snap.snapshot_id)
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            restore_triggers = _quiet_triggers(conn, copies)
            with phases("clear changed"):
                _clear_tables(context, conn, copies)
            results: dict[str, CopyResult] = {}
            with phases("data"):
                context.progress.start_tables(len(copies))
                try:
                    for copy in copies:
                        results[copy.name] = copy_table(src, conn, copy, settings, context.progress.advance_table)
                        context.progress.finish_table(copy.name, results[copy.name].rows,
                                                      results[copy.name].bytes)
                finally:
                    context.progress.stop_tables()
            for statement in restore_triggers:
                conn.execute(statement)
            src.execute("ROLLBACK")
            with phases("leak scan"):
                summary.leak_scan = context.anonymization.scan_for_leaks(
                    context.source, snap.snapshot_id, conn, [copy.relation for copy in copies]).as_dict()
            if views:
                with phases("materialized views"):
                    summary.materialized_views_refreshed = len(refresh_materialized_views(conn, views))
            with phases("sequences"):
                apply_sequences(conn, sequences, local_sequences(conn))
            if context.options.analyze:
                with phases("analyze"):
                    _analyze(conn, [copy.relation for copy in copies] + views)
            relations = local_relations(conn)
            with phases("verify"):
                counted = _count_rows(conn, relations, lambda name: name in results or name not in
                                      previous.local_rows or name in {view.qualified for view in views})
            local_rows = _check_counts(context, relations, counted, results, previous)
            relfilenodes = {name: relation.relfilenode for name, relation in relations.items()}
            catalogs = {name: rows for name, (rows, _) in catalog_rows(conn, None).items()}
            state = _new_state(context, snap, tables, sequences, local_rows, relfilenodes, catalogs)
            # In the same transaction as the rows: the snapshot never holds contents its state (and the
            # content id a spare copy is labelled with) does not describe, even for an instant.
            localdb.write_state(conn, context.snapshot_db, state)
    summary.tables_copied = len(results)
    summary.rows_copied = sum(result.rows for result in results.values())
    summary.bytes_copied = sum(result.bytes for result in results.values())
    return state


def _local_result(future: Any) -> tuple[bool, str]:
    try:
        return future.result()
    except psycopg.OperationalError:
        return False, "the local database does not exist"
    except TetherError as error:
        return False, error.message


def _keep(context: _Context, snap: SourceSnapshot, previous: SyncState, tables: dict[str, TableState],
          sequences: dict[str, list[Any]], unchanged_locally: bool, reason: str) -> None:
    """Nothing changed on the source: keep the local database if it is untouched, else reset it."""
    summary, phases = context.summary, context.phases
    state = replace(previous, synced_at=now_iso(), horizon=snap.xids.xmin, xmax=snap.xids.xmax, tables=tables,
                    sequences=sequences,
                    sequences_in_snapshot=previous.sequences_in_snapshot and sequences == previous.sequences,
                    # Same contents, so an id may be given to a snapshot from before content ids existed.
                    content_id=previous.content_id or uuid.uuid4().hex)
    if unchanged_locally:
        context.progress.phase("nothing changed on the source or locally: the local database is kept")
        with phases("sequences"), connect_local(context.dest) as conn:
            apply_sequences(conn, sequences, local_sequences(conn))
        with localdb.admin_connect(context.admin) as conn:
            localdb.write_state(conn, context.snapshot_db, state)
        target, wanted = context.dest.database, context.options.spare
        if localdb.has_spare(context.admin, target, state if wanted else None) != wanted:
            retire(context.admin, [], context.options.drop_retired, target, wanted)  # make it, or drop it
    else:
        context.progress.phase(f"nothing changed on the source; the local database did ({reason}): resetting it")
        summary.notes.append(f"local database replaced from the snapshot: {reason}")
        with phases("reset"):
            summary.sessions_disconnected, _, _ = reset_from_snapshot(context.admin, context.dest, state,
                                                                             context.options.drop_retired,
                                                                             context.options.spare)
    summary.rows = sum(table.rows for table in tables.values())
    summary.row_counts = {name: table.rows for name, table in tables.items()}
    summary.verified = True
    summary.sequences_set = len(sequences)


def _drop_quietly(context: _Context, names: list[str]) -> None:
    with contextlib.suppress(psycopg.Error):  # if it fails, the next run's cleanup drops it
        localdb.drop_now(context.admin, names)


def _start_streams(context: _Context, snap: SourceSnapshot) -> RowStreams:
    """The copy workers, reading rows from the snapshot at once (see tether.sync.copy.RowStreams)."""
    copies = context.plan.copies
    progress = context.progress
    slow_link = context.source_rtt >= SLOW_ROUND_TRIP
    progress.phase(f"copying {len(copies)} tables ({context.options.jobs} workers"
                   f"{', anonymized on the source' if context.options.anonymize else ''}"
                   f"{f'; {context.source_rtt * 1000:.0f} ms round trips to the source' if slow_link else ''})")
    settings = CopySettings(jobs=context.options.jobs, source_settings=context.anonymization.session_settings,
                            small_first=slow_link)
    progress.start_tables(len(copies))
    context.data_started = time.perf_counter()
    return RowStreams(context.source, snap.snapshot_id, copies, settings, progress,
                      context.work_dir / "spool").start()


def _copy(context: _Context, streams: RowStreams, target: DatabaseAddress, *,
          on_committed: Callable[[TableCopy], None] | None = None,
          wait_for: Callable[[TableCopy], None] | None = None) -> dict[str, CopyResult]:
    """The rows of every table, into ``target`` (tables spooled so far are poured in as they are created)."""
    streams.attach(target, wait_for, on_committed)
    with context.phases("data"):
        try:
            results = streams.finish()
        finally:
            context.progress.stop_tables()
    elapsed = time.perf_counter() - (context.data_started or time.perf_counter())
    received = sum(result.bytes for result in results.values()) + context.archive_bytes
    context.summary.source_bytes = received
    context.summary.source_seconds = round(elapsed, 3)
    context.summary.source_mbit_per_second = round(received * 8 / elapsed / 1e6, 1) if elapsed > 0 else 0.0
    context.summary.tables_spooled = streams.spooled_tables
    context.progress.phase(f"received {received / 1e6:,.1f} MB from the source in {elapsed:.1f} s "
                           f"({context.summary.source_mbit_per_second:,.0f} Mbit/s)"
                           + (f"; {streams.spooled_tables} tables read while the schema was still being dumped"
                              if streams.spooled_tables else ""))
    return results


def _read_sequences(context: _Context, snap: SourceSnapshot) -> dict[str, list[Any]]:
    with context.phases("sequences"):
        values, notes = read_sequences(snap.conn, context.catalog.sequences, context.catalog.relations,
                                       context.plan.excluded_oids)
    context.summary.notes.extend(notes)
    context.summary.sequences_set = len(values)
    return values


def _fingerprints(context: _Context, snap: SourceSnapshot, previous_horizon: int | None,
                  relations: list[Relation]) -> dict[str, tuple[int, str]]:
    """Each table's rows written at or after the snapshot's horizon; none when nothing was running then."""
    if snap.xids.xmin == snap.xids.xmax:
        return {relation.qualified: (0, "0") for relation in relations}
    with context.phases("fingerprints"):
        found = fingerprint_tables(context.source, snap.snapshot_id, snap.xids, previous_horizon, relations,
                                   context.options.jobs)
    return {name: (value.window_rows, value.window_hash) for name, value in found.items()}


def _quiet_triggers(conn: psycopg.Connection, copies: list[TableCopy]) -> list[sql.Composed]:
    """Disable the user triggers that would fire while ``copies`` are refilled, in the caller's transaction.

    Refills run as ``session_replication_role = replica``, which silences ordinary triggers and foreign key
    checks, but triggers enabled REPLICA or ALWAYS still fire, and would change the rows being copied (a full
    sync creates triggers only after the rows). Returns the statements that enable them again as they were.
    """
    if not copies:
        return []
    rows = conn.execute("""
        SELECT n.nspname, c.relname, t.tgname, t.tgenabled
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND t.tgenabled IN ('R', 'A')
          AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))""",
                        ([copy.relation.schema for copy in copies], [copy.relation.name for copy in copies])).fetchall()
    restore = []
    for schema, table, trigger, enabled in rows:
        target = sql.Identifier(schema, table)
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(target, sql.Identifier(trigger)))
        restore.append(sql.SQL("ALTER TABLE {} ENABLE {} TRIGGER {}").format(
            target, sql.SQL("ALWAYS" if enabled == "A" else "REPLICA"), sql.Identifier(trigger)))
    return restore


def _clear_tables(context: _Context, conn: psycopg.Connection, copies: list[TableCopy]) -> None:
    """Empty the changed tables: TRUNCATE where no kept table refers to them, DELETE (triggers off) elsewhere."""
    changed = {copy.relation.oid for copy in copies}
    truncatable = set(changed)
    while True:
        referenced = {key.references for key in context.catalog.foreign_keys
                      if key.references in truncatable and key.table not in truncatable}
        if not referenced:
            break
        truncatable -= referenced
    relations = [copy.relation for copy in copies]
    truncated = [relation.identifier for relation in relations if relation.oid in truncatable]
    if truncated:
        conn.execute(sql.SQL("TRUNCATE ONLY {}").format(sql.SQL(", ").join(truncated)))
    for relation in relations:
        if relation.oid not in truncatable:
            conn.execute(sql.SQL("DELETE FROM ONLY {}").format(relation.identifier))


def _populated_views(context: _Context) -> list[Relation]:
    return [relation for relation in context.catalog.relations.values()
            if relation.kind == "m" and relation.populated and relation.oid not in context.plan.excluded_oids]


def _restore_large_objects(context: _Context, target: DatabaseAddress, main: list[TocEntry]) -> None:
    """The large objects' contents (created empty with the schema), from the archive pg_dump wrote."""
    contents = [entry for entry in main if entry.kind() in LARGE_OBJECT_DATA_KINDS]
    if not contents:
        return
    _, pg_restore = _programs(context)
    assert context.archive is not None
    with context.phases("large objects"):
        context.progress.phase("large objects")
        run_program(pg_restore_argv(pg_restore, target, context.archive, section="data",
                                    list_file=write_list(context.work_dir / "large-objects.list", contents)),
                    local_env(target), "pg_restore of the large objects")


def _finish_local(context: _Context, target: DatabaseAddress, sequences: dict[str, list[Any]],
                  copies: list[TableCopy]) -> None:
    """Sequences, owners and privileges, materialized views, event triggers, statistics.

    In ``pg_dump | psql``'s order: materialized views are computed once their owners and privileges are in
    place (a refresh runs as the view's owner), and event triggers come last so that none fires meanwhile.
    """
    phases, summary = context.phases, context.summary
    views = _populated_views(context)
    assert context.archive_sql is not None
    with connect_local(target) as conn:
        with phases("sequences"):
            apply_sequences(conn, sequences, local_sequences(conn))

        def refresh() -> None:
            if views and copies:
                with phases("materialized views"):
                    failed: list[str] = []
                    summary.materialized_views_refreshed = len(refresh_materialized_views(conn, views, failed))
                    summary.notes.extend(f"materialized view {failure}: left unpopulated, as pg_dump | psql would"
                                         for failure in failed)

        with phases("privileges"):
            _record_skipped(summary, replay_after_restore(conn, context.archive_sql, refresh))
    if context.options.analyze and copies:
        context.progress.phase("collecting statistics (ANALYZE)")
        targets = [copy.relation for copy in copies] + (views if copies else [])
        with phases("analyze"):
            run_parallel(((relation.qualified, relation) for relation in targets),
                         lambda: connect_local(target),
                         lambda conn, relation: _analyze(conn, [relation]),
                         context.options.jobs)


def _record_skipped(summary: SyncSummary, skipped: list[Skipped]) -> None:
    """What the local server refused, in the summary: owners it lacks, privileges and the rest it skipped."""
    for item in skipped:
        if item.statement.startswith("ALTER ") and " OWNER TO " in item.statement:
            summary.owners_mapped.append(str(item))
        else:
            summary.skipped_privileges.append(str(item))


def _count_rows(conn: psycopg.Connection, relations: dict[str, LocalRelation],
                wanted: Callable[[str], bool]) -> dict[str, int]:
    queries = batched((name, sql.SQL("SELECT {}, count(*) FROM ONLY {}").format(sql.Literal(name),
                                                                                relation.identifier), relation.bytes)
                      for name, relation in relations.items() if wanted(name))
    return {name: int(count) for _, query in queries for name, count in conn.execute(query).fetchall()}


def _verify(context: _Context, target: DatabaseAddress, results: dict[str, CopyResult]) -> tuple[
        dict[str, int], dict[str, LocalRelation]]:
    """Count the rows of every local table and materialized view, in parallel, and compare with the source."""
    with connect_local(target) as conn:
        relations = local_relations(conn)
    queries = batched((name, sql.SQL("SELECT {}, count(*) FROM ONLY {}").format(sql.Literal(name),
                                                                                relation.identifier), relation.bytes)
                      for name, relation in relations.items())
    with context.phases("verify"):
        batches = run_parallel(queries, lambda: connect_local(target),
                               lambda conn, query: conn.execute(query).fetchall(), context.options.jobs)
    counted = {name: int(count) for rows in batches.values() for name, count in rows}
    return _check_counts(context, relations, counted, results, None), relations


def _check_counts(context: _Context, relations: dict[str, LocalRelation], counted: dict[str, int],
                  results: dict[str, CopyResult], previous: SyncState | None) -> dict[str, int]:
    """Every table's local row count must equal the source snapshot's; returns the local counts."""
    summary = context.summary
    local_rows = {name: counted[name] if name in counted else (previous.local_rows[name] if previous else 0)
                  for name in relations}
    expected = {copy.name: (results[copy.name].rows + results[copy.name].base_rows if copy.name in results
                            else previous.local_rows.get(copy.name, 0) if previous and copy.appends
                            else previous.tables[copy.name].rows if previous else 0)
                for copy in context.plan.copies}
    wrong = [f"{name}: {expected[name]} in the source snapshot, {local_rows.get(name)} locally"
             for name in expected if local_rows.get(name) != expected[name]]
    # A subset's plan named each table's rows: the copy must hold exactly those.
    wrong += [f"{copy.name}: {copy.expected_rows} in the subset's plan, {local_rows.get(copy.name)} locally"
              for copy in context.plan.copies
              if copy.expected_rows is not None and local_rows.get(copy.name) != copy.expected_rows]
    empty = [relation.qualified for relation in context.plan.schema_only
             if relation.kind == "r" and local_rows.get(relation.qualified, 0) != 0]
    if wrong or empty:
        raise TetherError("The copy does not match the source snapshot (" + "; ".join(wrong + empty) + "). The "
                          "local database was not replaced.")
    summary.verified = True
    summary.row_counts = dict(sorted(expected.items()))
    summary.rows = sum(expected.values())
    return local_rows


def _new_state(context: _Context, snap: SourceSnapshot, tables: dict[str, TableState],
               sequences: dict[str, list[Any]], local_rows: dict[str, int], relfilenodes: dict[str, int],
               catalogs: dict[str, int]) -> SyncState:
    server = context.catalog.server
    return SyncState(source_system=server.system_identifier, source_start=server.start_time,
                     source_database_oid=server.database_oid, source_database=server.database,
                     source_url=context.source.masked_url(), synced_at=now_iso(), horizon=snap.xids.xmin,
                     xmax=snap.xids.xmax, schema_digest=context.schema_digest,
                     options_digest=context.options_digest, catalog_digest=context.catalog_digest,
                     tables=tables, sequences=sequences, local_relfilenodes=relfilenodes,
                     snapshot_relfilenodes=relfilenodes, local_rows=local_rows, local_catalog_rows=catalogs,
                     content_id=uuid.uuid4().hex, database_settings=context.settings,
                     subset_selections=context.plan.subset_selections)


def _install(context: _Context, built: str, state: SyncState) -> None:
    """The build becomes the snapshot; a copy of it becomes the working database, swapped in by renaming."""
    if not context.options.snapshot:
        _install_without_snapshot(context, built)
        return
    with context.phases("snapshot"):
        context.progress.phase(f"keeping the result as {context.snapshot_db} (for db.reset)")
        retired = localdb.install_snapshot(context.admin, built, context.dest.database, state)
    _install_working_copy(context, state, retired)


def _install_without_snapshot(context: _Context, built: str) -> None:
    """The build itself becomes the working database; an older snapshot and its spare are retired first."""
    summary, dest = context.summary, context.dest.database
    with context.phases("swap"):
        # First: a snapshot left from an earlier sync must not outlive the database it describes (a re-sync
        # would take the new database for a changed one and reset it to the old data).
        retired = localdb.retire_snapshot(context.admin, dest)
        _apply_settings(context, built, context.settings)
        summary.sessions_disconnected, old = swap_names(context.admin, built, dest)
    summary.notes.append("no snapshot kept (--no-snapshot): db.reset needs a sync that keeps one")
    if summary.sessions_disconnected:
        context.progress.phase(f"disconnected {summary.sessions_disconnected} session(s) from {dest!r}")
    retire(context.admin, [*retired, old] if old else retired, context.options.drop_retired, dest, False)


def _install_working_copy(context: _Context, state: SyncState, retired: list[str]) -> None:
    """Copy the snapshot to a scratch name and swap it in for the working database (sessions are told)."""
    progress, phases, summary = context.progress, context.phases, context.summary
    dest = context.dest.database
    work = scratch_name(dest, "sync")
    progress.phase(f"copying the snapshot to {dest!r}")
    try:
        with phases("working copy"):
            horizon = localdb.copy_database(context.admin, context.snapshot_db, work)
            _apply_settings(context, work, state.database_settings)
        with phases("swap"):
            summary.sessions_disconnected, old = swap_names(context.admin, work, dest)
    except BaseException:
        _drop_quietly(context, [work])
        raise
    _installed(context, state, state.snapshot_files(), horizon, [*retired, old] if old else retired)


def _apply_settings(context: _Context, database: str, templates: list[str]) -> None:
    """The source database's settings on a database about to become the working one (see apply_database_settings)."""
    skipped = localdb.apply_database_settings(context.admin, database, templates)
    context.summary.settings_skipped.extend(str(item) for item in skipped)


def _installed(context: _Context, state: SyncState, relfilenodes: dict[str, int], horizon: int,
               retired: list[str]) -> None:
    """Record the new working database in the snapshot's state, then retire what it replaced."""
    dest, summary = context.dest.database, context.summary
    state.local_relfilenodes = relfilenodes
    state.dest_oid = localdb.database_oid(context.admin, dest)
    state.dest_horizon = horizon
    with localdb.admin_connect(context.admin) as conn:
        localdb.write_state(conn, context.snapshot_db, state)
    if summary.sessions_disconnected:
        context.progress.phase(f"disconnected {summary.sessions_disconnected} session(s) from {dest!r}")
    retire(context.admin, retired, context.options.drop_retired, dest, context.options.spare)
