"""Every timed method as a plan of commands (pure builders), and the one runner that times a plan.

Passwords never reach argv: the dump tools get ``PGPASSWORD`` for their side, pgcopydb gets its two URLs in
``PGCOPYDB_SOURCE_PGURI``/``PGCOPYDB_TARGET_PGURI``, and ``invoke sync-prod`` gets password-less URLs plus a
0600 ``PGPASSFILE`` (one process talks to both servers, so one PGPASSWORD cannot serve).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tether.conninfo import DatabaseAddress
from tether.errors import CommandFailed, TetherError
from tether.secrets import mask_text

# Variables that would steer a child's libpq (or pgcopydb) somewhere we did not choose.
_STEERING_PREFIXES = ("PG", "PGCOPYDB_")
DEFAULT_TIMEOUT = 3600.0
# Killed by SIGPIPE directly, or a shell reporting that its child was.
_SIGPIPE_CODES = (-signal.SIGPIPE, 128 + signal.SIGPIPE)


@dataclass(frozen=True)
class Method:
    """One row of the results table."""

    key: str
    label: str
    kind: str  # "competitor" or "tether"


COMPETITORS = (
    Method("psql", "pg_dump | psql", "competitor"),
    Method("pg_restore", "pg_dump -Fc | pg_restore", "competitor"),
    Method("pg_restore_j2", "pg_dump -Fd -j2 + pg_restore -j2", "competitor"),
    Method("pgcopydb", "pgcopydb clone", "competitor"),
)
TETHER_METHODS = (
    Method("sync_full", "sync-prod (full)", "tether"),
    Method("sync_again", "sync-prod (re-sync)", "tether"),
    Method("reset", "db.reset", "tether"),
    # No target: what a sync costs without the snapshot db.reset needs (a user's choice, not the default).
    Method("sync_no_snapshot", "sync-prod (full, --no-snapshot)", "tether"),
    # Issue 19: 5 % of the customers and what they made, every foreign key holding (see SUBSET_ARGUMENTS).
    Method("sync_subset", "sync-prod (5% subset)", "tether"),
)
SUBSET_SHARE = 0.05
# The largest tables all hang off app.customers: its 5 % sample and their rows in them (two steps down: orders,
# then their items and payments); products, addresses and the lookups they reference come along.
SUBSET_ARGUMENTS = ("--subset", "app.customers:5%", "--subset-children",
                    "app.orders,app.order_items,app.payments,app.addresses,app.documents,app.reviews,audit.events,"
                    "audit.logins", "--subset-depth", "2")
METHODS = COMPETITORS + TETHER_METHODS
METHOD_KEYS = tuple(method.key for method in METHODS)


def method_by_key(key: str) -> Method:
    for method in METHODS:
        if method.key == key:
            return method
    raise KeyError(key)


@dataclass(frozen=True)
class Command:
    """One process: argv, the variables added to a scrubbed environment, and where it runs."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None


# A pipeline's commands run together, each one's stdout feeding the next one's stdin.
Pipeline = tuple[Command, ...]


@dataclass(frozen=True)
class Plan:
    """What one timed run executes: pipelines one after another; the clock covers all of them."""

    label: str
    pipelines: tuple[Pipeline, ...]


@dataclass(frozen=True)
class ClientPrograms:
    pg_dump: str
    pg_restore: str
    psql: str
    pgcopydb: str | None = None
    pg_config: str | None = None


def child_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` without any PG* variable (ours or the caller's), plus ``extra``."""
    env = {key: value for key, value in base.items() if not key.startswith(_STEERING_PREFIXES)}
    env.update(extra)
    return env


def _dump_options() -> tuple[str, ...]:
    # Same user on both sides; ownership and grants would only add noise to the comparison.
    return ("--no-owner", "--no-privileges")


def plain_dump_restore(programs: ClientPrograms, source: DatabaseAddress, dest: DatabaseAddress) -> Plan:
    """``pg_dump | psql``: the plain SQL script streamed into psql (stopping at the first error)."""
    dump = Command((programs.pg_dump, "--format=plain", *_dump_options()), source.libpq_env())
    restore = Command((programs.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", os.devnull), dest.libpq_env())
    return Plan("pg_dump | psql", ((dump, restore),))


def custom_dump_restore(programs: ClientPrograms, source: DatabaseAddress, dest: DatabaseAddress) -> Plan:
    """``pg_dump -Fc | pg_restore``: the custom format through a pipe (so pg_restore runs one job)."""
    dump = Command((programs.pg_dump, "--format=custom", *_dump_options()), source.libpq_env())
    restore = Command((programs.pg_restore, "--exit-on-error", *_dump_options(), "--dbname", dest.database),
                      dest.libpq_env())
    return Plan("pg_dump -Fc | pg_restore", ((dump, restore),))


def directory_dump_restore(programs: ClientPrograms, source: DatabaseAddress, dest: DatabaseAddress,
                           dump_dir: Path, jobs: int = 2) -> Plan:
    """``pg_dump -Fd -jN`` into a directory, then ``pg_restore -jN`` from it (both timed)."""
    dump = Command((programs.pg_dump, "--format=directory", f"--jobs={jobs}", *_dump_options(),
                    "--file", str(dump_dir)), source.libpq_env())
    restore = Command((programs.pg_restore, "--exit-on-error", f"--jobs={jobs}", *_dump_options(),
                       "--dbname", dest.database, str(dump_dir)), dest.libpq_env())
    return Plan(f"pg_dump -Fd -j{jobs} + pg_restore -j{jobs}", ((dump,), (restore,)))


def pgcopydb_clone(programs: ClientPrograms, source: DatabaseAddress, dest: DatabaseAddress,
                   work_dir: Path, jobs: int = 2) -> Plan:
    """``pgcopydb clone`` with N table jobs and N index jobs; its URLs (with passwords) travel in env."""
    if not programs.pgcopydb:
        raise TetherError("pgcopydb is not installed: on Debian/Ubuntu `sudo apt-get install -y pgcopydb`.")
    env = {"PGCOPYDB_SOURCE_PGURI": source.url(), "PGCOPYDB_TARGET_PGURI": dest.url()}
    if programs.pg_config:
        # Makes pgcopydb run the same pg_dump/pg_restore major as the other competitors.
        env["PG_CONFIG"] = programs.pg_config
    argv = (programs.pgcopydb, "clone", "--table-jobs", str(jobs), "--index-jobs", str(jobs),
            "--dir", str(work_dir), "--no-owner", "--no-acl")
    return Plan("pgcopydb clone", ((Command(argv, env),),))


def invoke_prefix() -> tuple[str, ...]:
    """Run invoke from the same interpreter (so the same virtualenv and tether) as this process."""
    return (sys.executable, "-m", "invoke")


def sync_prod_plan(source: DatabaseAddress, dest: DatabaseAddress, passfile: Path, repo_root: Path,
                   extra_args: Sequence[str] = (), extra_env: Mapping[str, str] | None = None) -> Plan:
    """``invoke sync-prod --source URL --dest URL --yes --json`` with password-less URLs and a PGPASSFILE."""
    argv = (*invoke_prefix(), "sync-prod", "--source", source.with_credentials(source.user, None).url(),
            "--dest", dest.with_credentials(dest.user, None).url(), "--yes", "--json", *extra_args)
    env = {"PGPASSFILE": str(passfile), **(extra_env or {})}
    return Plan("invoke sync-prod", ((Command(argv, env, str(repo_root)),),))


def db_reset_plan(dest: DatabaseAddress, passfile: Path, repo_root: Path,
                  extra_env: Mapping[str, str] | None = None) -> Plan:
    """``invoke db.reset --db URL --yes`` with a password-less URL and a PGPASSFILE."""
    argv = (*invoke_prefix(), "db.reset", "--db", dest.with_credentials(dest.user, None).url(), "--yes")
    env = {"PGPASSFILE": str(passfile), **(extra_env or {})}
    return Plan("invoke db.reset", ((Command(argv, env, str(repo_root)),),))


def task_help_plan(task_name: str, repo_root: Path) -> Plan:
    """``invoke --help TASK``: exits non-zero when the task is not registered."""
    return Plan(f"invoke --help {task_name}",
                ((Command((*invoke_prefix(), "--help", task_name), {}, str(repo_root)),),))


def anonymize_arguments(sync_help: str, rules_file: Path) -> tuple[tuple[str, ...], str]:
    """How to point sync-prod at the benchmark's rules, judged from its ``--help`` text; and a note saying so.

    The shipped rules name the sample schema, and a rule naming a missing table is an error by design, so the
    benchmark needs its own rules file; without an option for one, anonymization is turned off (and said).
    """
    for flag in ("--anonymize-config", "--anonymize-rules", "--rules", "--anonymization", "--anonymize-file"):
        if re.search(rf"{re.escape(flag)}[=\s]", sync_help):
            return (flag, str(rules_file)), f"anonymized with the benchmark's rules ({flag})"
    if "--no-anonymize" in sync_help:
        return ("--no-anonymize",), "anonymization OFF: sync-prod has no option to name a rules file"
    return (), "anonymization as sync-prod does by default"


@dataclass(frozen=True)
class RunOutcome:
    seconds: float
    stdout: str  # of the last command of the last pipeline


def run_plan(plan: Plan, log_dir: Path, secrets: Sequence[str | None] = (),
             timeout: float = DEFAULT_TIMEOUT) -> RunOutcome:
    """Run ``plan`` and time it end to end; a failed command raises ``CommandFailed`` with masked stderr."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stdout = ""
    for number, pipeline in enumerate(plan.pipelines):
        stdout = _run_pipeline(plan.label, pipeline, log_dir / f"step{number}", secrets, started + timeout)
    return RunOutcome(time.perf_counter() - started, stdout)


def _run_pipeline(label: str, pipeline: Pipeline, log_prefix: Path, secrets: Sequence[str | None],
                  deadline: float) -> str:
    processes: list[subprocess.Popen[bytes]] = []
    stderr_paths: list[Path] = []
    # The last command's stdout goes to a file, not a pipe we would have to drain while waiting.
    with tempfile.TemporaryFile() as last_stdout:
        try:
            previous: subprocess.Popen[bytes] | None = None
            for index, command in enumerate(pipeline):
                stderr_path = log_prefix.with_name(f"{log_prefix.name}-{index}-{Path(command.argv[0]).name}.log")
                stderr_paths.append(stderr_path)
                is_last = index == len(pipeline) - 1
                with open(stderr_path, "wb") as stderr_file:
                    process = subprocess.Popen(
                        command.argv, cwd=command.cwd,
                        env=child_environment(os.environ, command.env),
                        stdin=previous.stdout if previous else subprocess.DEVNULL,
                        stdout=last_stdout if is_last else subprocess.PIPE, stderr=stderr_file,
                    )
                if previous and previous.stdout:
                    previous.stdout.close()  # so the writer gets SIGPIPE if the reader dies
                processes.append(process)
                previous = process
            for process in processes:
                process.wait(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            for process in processes:
                process.kill()
                process.wait()
            raise TetherError(f"{label} did not finish within the benchmark's time limit; its logs are in "
                              f"{log_prefix.parent}.") from None
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        last_stdout.seek(0)
        output = last_stdout.read().decode("utf-8", "replace")
    failures = [(index, process.returncode) for index, process in enumerate(processes) if process.returncode != 0]
    if failures:
        # A writer killed by SIGPIPE only says its reader died first: report the reader.
        real = [failure for failure in failures if failure[1] not in _SIGPIPE_CODES] or failures
        index, code = real[0]
        stderr = stderr_paths[index].read_text(errors="replace")
        name = Path(pipeline[index].argv[0]).name
        raise CommandFailed(f"{label} ({name})", code, mask_text(stderr + "\n" + output, secrets))
    return output
