"""Fault injection: kill -9 the task, or the server it talks to, at many points of each command that changes state.

After each kill, the next run of the same command must succeed (after a server kill, `invoke up` first brings the
server back: that is the documented way on, and it must heal the crash by itself), and nothing may be lost: the
database is as it was before the command, or as the command makes it, never something else. Nothing else is
run: no manual clean-up. The figures (kill points, recoveries, losses) are printed, and written as JSON to
``$TETHER_FAULT_REPORT`` when set; ``TETHER_FAULT_POINTS`` sets the kill points per command and kind (3 here).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.native.cli_project import REPO

from .conftest import FaultProject, Outcome, database_fingerprint, kill_group, kill_points, measure

pytestmark = pytest.mark.slow

KINDS = ("task", "server")
SENTINEL_ROWS = 60_000  # enough rows that a dump, a restore and a sync take a while to kill inside


@dataclass
class Scenario:
    """One command: how to set up its starting state, and how to read the state that matters."""

    name: str
    argv: tuple[str, ...]
    prepare: Callable[[], None]
    state: Callable[[], str]
    # Intermediate states that are whole and consistent (some env files written, some migrations applied).
    acceptable: Callable[[str], bool] = lambda _state: False


def classify(state: str, before: str, after: str, scenario: Scenario) -> str:
    if state == after:
        return "after"
    if state == before:
        return "before"
    return "consistent" if scenario.acceptable(state) else "other"


def difference(found: str, expected: str) -> str:
    """The parts of two fingerprints that differ: what is there that should not be, and what is missing."""
    extra = sorted(set(found.split("|")) - set(expected.split("|")))
    missing = sorted(set(expected.split("|")) - set(found.split("|")))
    return f"has {' '.join(extra)[:600] or 'nothing extra'}; lacks {' '.join(missing)[:600] or 'nothing'}"


def sweep(project: FaultProject, scenario: Scenario, kind: str) -> list[Outcome]:
    """Measure one clean run, then kill at each point of it, then run the command again and judge the state."""
    scenario.prepare()
    duration = measure(project, scenario.argv)
    after = scenario.state()
    outcomes = []
    for delay in kill_points(duration):
        scenario.prepare()
        before = scenario.state()
        process = project.start(*scenario.argv)
        time.sleep(delay)
        still_running = process.poll() is None
        if kind == "task":
            kill_group(process)
        else:
            postmaster = project.postmaster()
            if postmaster is not None:
                os.kill(postmaster, signal.SIGKILL)
            process.communicate(timeout=300)
            healed = project.invoke("up", "--backend", "native", "--json")  # the server comes back by itself
            assert healed.returncode == 0, f"`up` did not heal a killed server: {healed.stderr[-3000:]}"
        detail = ""
        try:
            found = scenario.state()
            after_kill = classify(found, before, after, scenario)
        except psycopg.Error as error:
            after_kill = "other"
            detail = f"state unreadable after the kill: {error}"
        else:
            if after_kill == "other":
                detail = (f"after the kill, not the state before ({difference(found, before)}) nor after "
                          f"({difference(found, after)});")
        rerun = project.invoke(*scenario.argv)
        recovered = rerun.returncode == 0
        final = scenario.state() if recovered else ""
        after_rerun = classify(final, before, after, scenario) if recovered else "failed"
        if recovered and after_rerun != "after":
            detail += f" after the rerun, differs from a clean run: {difference(final, after)}"
        if not recovered:
            detail += f" rerun failed: {rerun.stderr[-1500:]}"
        outcomes.append(Outcome(scenario.name, kind, round(delay, 3), still_running, after_kill, recovered,
                                after_rerun, detail.strip()))
    project.outcomes.extend(outcomes)
    return outcomes


def judge(outcomes: list[Outcome]) -> None:
    tried = len(outcomes)
    recovered = sum(outcome.recovered for outcome in outcomes)
    lost = [outcome for outcome in outcomes if outcome.lost]
    print(f"\n{outcomes[0].command} ({outcomes[0].kind} killed): {tried} kill points, {recovered} recoveries, "
          f"{len(lost)} losses; states after the kill: {sorted({o.state_after_kill for o in outcomes})}")
    assert not lost, json.dumps([outcome.__dict__ for outcome in lost], indent=1)
    assert any(outcome.killed_before_end for outcome in outcomes), "no kill landed while the command ran"


# --- the data the scenarios work on ---------------------------------------------------------------------------

def execute(project: FaultProject, statement: sql.Composable | str, database: str | None = None) -> None:
    with psycopg.connect(project.address(database=database).conninfo(), autocommit=True) as conn:
        conn.execute(statement)


def fill_sentinel(project: FaultProject, label: str) -> None:
    execute(project, "CREATE SCHEMA IF NOT EXISTS keep")
    execute(project, "DROP TABLE IF EXISTS keep.sentinel")
    execute(project, sql.SQL("CREATE TABLE keep.sentinel AS SELECT g AS id, {} || g AS v FROM generate_series(1, {}) g")
            .format(sql.Literal(label), sql.Literal(SENTINEL_ROWS)))


def dev_state(project: FaultProject) -> Callable[[], str]:
    return lambda: database_fingerprint(project.address())


# --- up, env, db.init ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_up(fault_project: FaultProject, kind: str) -> None:
    project = fault_project
    fill_sentinel(project, "up-")

    def stopped() -> None:
        project.must("down", "--backend", "native")

    def state() -> str:
        # `up` changes no data: the state is the data, read once the stack is up again.
        if project.postmaster() is None:
            project.must("up", "--backend", "native", "--json")
        return database_fingerprint(project.address())

    judge(sweep(project, Scenario("up", ("up", "--backend", "native", "--json"), stopped, state), kind))


ENV_FILES = (".env.local", ".env.test", ".env.production", ".env")


def test_env(fault_project: FaultProject) -> None:
    project = fault_project

    def remove_files() -> None:
        for name in ENV_FILES:
            (project.root / name).unlink(missing_ok=True)

    def state() -> str:
        report = json.loads(project.invoke("env", "--check", "--json").stdout)
        return ",".join(sorted(f"{item['name']}={item['status']}" for item in report["files"]))

    def whole(state: str) -> bool:  # some files written, the others not yet: each file whole
        return all(part.split("=")[1] in {"ok", "missing"} for part in state.split(","))

    judge(sweep(project, Scenario("env", ("env",), remove_files, state, whole), "task"))


@pytest.mark.parametrize("kind", KINDS)
def test_db_init(fault_project: FaultProject, kind: str) -> None:
    project = fault_project
    name = f"faults_init_{kind}"
    target = project.address(database=name)
    project.env["INVOKE_TETHER_DB"] = target.url()  # the URL through config, not on a command line
    try:
        def fresh_database() -> None:
            execute(project, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            execute(project, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

        def state() -> str:
            status = project.invoke("db.status", "--json")
            if status.returncode != 0:
                return f"status failed: {status.stderr[-300:]}"
            plan = json.loads(status.stdout)
            return f"applied={len(plan['applied'])} pending={len(plan['pending'])} drift={len(plan['drift'])} " \
                   f"tables={database_fingerprint(target, content=False)}"

        # Each migration is one transaction: k of n applied is whole. Tables are compared by rows, not content:
        # migrations seed rows with now() and random ids.
        def consistent(state: str) -> bool:
            return state.startswith("applied=") and " drift=0 " in state

        judge(sweep(project, Scenario("db.init", ("db.init", "--yes", "--json"), fresh_database, state, consistent),
                    kind))
    finally:
        project.env.pop("INVOKE_TETHER_DB", None)


# --- db.restore, sync-prod, db.reset -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dump_file(fault_project: FaultProject) -> Path:
    fill_sentinel(fault_project, "dumped-")
    fault_project.must("db.dump")
    dumps = sorted((fault_project.root / "dumps").glob("*.dump")) or sorted(
        path for path in (fault_project.root / "dumps").iterdir() if not path.name.endswith((".json", ".partial")))
    assert dumps, list((fault_project.root / "dumps").iterdir())
    return dumps[-1]


@pytest.mark.parametrize("kind", KINDS)
def test_db_restore(fault_project: FaultProject, dump_file: Path, kind: str) -> None:
    project = fault_project
    counter = iter(range(10_000))

    def live_content() -> None:
        fill_sentinel(project, f"live-{next(counter)}-")

    judge(sweep(project, Scenario("db.restore", ("db.restore", "--file", str(dump_file), "--yes"), live_content,
                                  dev_state(project)), kind))


SOURCE_DATABASE = "faults_source"


@pytest.fixture(scope="module")
def sync_source(fault_project: FaultProject) -> tuple[str, Path]:
    """A 'production' database on the test server: the app's schema (as production has it) and a table of rows.

    The rules are the shipped anonymize.yaml plus one for the extra table: production's schema is the app's, so
    the `up` that heals a killed server finds no migration to apply to the synced copy.
    """
    project = fault_project
    admin = project.address("postgresTest")
    source = admin.with_database(SOURCE_DATABASE)
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(SOURCE_DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SOURCE_DATABASE)))
    project.env["INVOKE_TETHER_DB"] = source.url()
    try:
        project.must("db.init", "--yes")
    finally:
        project.env.pop("INVOKE_TETHER_DB")
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA shop")
        conn.execute("CREATE TABLE shop.items (id integer PRIMARY KEY, sku text NOT NULL, note text, qty integer)")
        conn.execute("INSERT INTO shop.items SELECT g, 'sku-' || g, 'internal note ' || g, g %% 97"
                     " FROM generate_series(1, %s) g", (SENTINEL_ROWS,))
        conn.execute("CREATE INDEX items_sku_idx ON shop.items (sku)")
    rules = project.root / "faults-rules.yaml"
    rules.write_text((REPO / "anonymize.yaml").read_text().rstrip("\n") + "\n"
                     "  shop.items:\n    note: {fixed: \"note removed\"}\n    sku: keep\n    qty: keep\n")
    return source.url(), rules


def sync_argv(source: str, rules: Path) -> tuple[str, ...]:
    return ("sync-prod", "--source", source, "--dest", "dev", "--rules", str(rules), "--full", "--yes")


@pytest.mark.parametrize("kind", KINDS)
def test_sync_prod(fault_project: FaultProject, sync_source: tuple[str, Path], kind: str) -> None:
    project = fault_project
    counter = iter(range(10_000))

    def local_edit() -> None:
        execute(project, "CREATE SCHEMA IF NOT EXISTS keep")
        execute(project, "CREATE TABLE IF NOT EXISTS keep.local_edits (n integer)")
        execute(project, sql.SQL("INSERT INTO keep.local_edits VALUES ({})").format(sql.Literal(next(counter))))

    judge(sweep(project, Scenario("sync-prod", sync_argv(*sync_source), local_edit, dev_state(project)), kind))


@pytest.mark.parametrize("kind", KINDS)
def test_db_reset(fault_project: FaultProject, sync_source: tuple[str, Path], kind: str) -> None:
    project = fault_project
    project.must(*sync_argv(*sync_source))
    counter = iter(range(10_000))

    def local_edit() -> None:
        execute(project, sql.SQL("UPDATE shop.items SET qty = {} WHERE id <= 100").format(sql.Literal(next(counter))))

    judge(sweep(project, Scenario("db.reset", ("db.reset", "--yes"), local_edit, dev_state(project)), kind))
