"""A native dev stack on free ports, driven through the real invoke CLI, for the fault-injection tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.native.cli_project import CliProject, cli_project_files
from tether.conninfo import DatabaseAddress
from tether.native.postgres import recorded_pid
from tether.processes import serves_directory

# Kill points per command and kind of kill; TETHER_FAULT_POINTS raises it for a thorough run.
POINTS = int(os.environ.get("TETHER_FAULT_POINTS", "3"))


@dataclass
class Outcome:
    """One kill point: what was killed when, and what the next runs found."""

    command: str
    kind: str  # task | server
    delay: float
    killed_before_end: bool
    state_after_kill: str  # before | after | other
    recovered: bool
    state_after_rerun: str
    detail: str = ""

    @property
    def lost(self) -> bool:
        return self.state_after_kill == "other" or self.state_after_rerun != "after"


@dataclass
class FaultProject(CliProject):
    outcomes: list[Outcome] = field(default_factory=list)

    def outputs(self) -> dict[str, Any]:
        return dict(json.loads((self.root / ".runtime" / "native" / "outputs.json").read_text()))

    def address(self, which: str = "postgresDev", database: str | None = None) -> DatabaseAddress:
        service = self.outputs()[which]
        address = DatabaseAddress(service["host"], service["port"], service["database"], service["user"],
                                  service["password"])
        return address.with_database(database) if database else address

    def postmaster(self, service: str = "postgres-dev") -> int | None:
        """The live postmaster of ``service``, as its postmaster.pid names it (not the lowest pid in its directory:
        once pids wrap around, a backend can have a lower one)."""
        datadir = self.data / "native" / service
        pid = recorded_pid(datadir / "postmaster.pid")
        return pid if pid is not None and serves_directory(pid, "postgres", datadir) else None


def database_fingerprint(address: DatabaseAddress, *, content: bool = True) -> str:
    """Every user table's name, row count and (with ``content``) content digest: equal fingerprints, equal data."""
    with psycopg.connect(address.conninfo(connect_timeout="10"), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2").fetchall()
        parts = []
        for schema, table in tables:
            digest = sql.SQL("md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))" if content else "''")
            row = conn.execute(sql.SQL("SELECT count(*), {} FROM {} AS t").format(
                digest, sql.Identifier(schema, table))).fetchone()
            parts.append(f"{schema}.{table}:{row[0]}:{row[1]}" if row else f"{schema}.{table}")
    return "|".join(parts)


def kill_group(process: subprocess.Popen[str]) -> None:
    with suppress(ProcessLookupError):  # it finished just before
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)


def measure(project: FaultProject, argv: tuple[str, ...]) -> float:
    started = time.monotonic()
    project.must(*argv)
    return time.monotonic() - started


def kill_points(duration: float) -> list[float]:
    """Delays spread over the command's run, from its first tenth of a second to its last moments."""
    return [duration * (index + 0.5) / POINTS for index in range(POINTS)]


@pytest.fixture(scope="package")
def fault_project() -> Iterator[FaultProject]:
    project = FaultProject(*cli_project_files("tether-faults", TETHER_LOCK_TIMEOUT="120"))
    project.must("up", "--backend", "native", "--json")
    yield project
    report = os.environ.get("TETHER_FAULT_REPORT")
    if report:
        Path(report).write_text(json.dumps([outcome.__dict__ for outcome in project.outcomes], indent=1))
    project.remove()
