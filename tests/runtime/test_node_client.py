"""clients/node/tether-target.mjs with the real node: the Prisma helper, node-postgres, the guard, the types."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningPostgres
from tether.runtime.contract import PRODUCTION_GUARD, TargetState, render_state

from .conftest import (
    LOCAL_URL,
    NODE_MODULE,
    NODE_TYPES,
    PRODUCTION_URL,
    env_text,
    npm_directory,
    run_node,
    write_project,
)

NODE_TESTS = Path(__file__).parent / "node"
PRODUCTION = render_state(TargetState("production", "ana", "2025-01-01T00:00:00+00:00", PRODUCTION_GUARD))
LOCAL = render_state(TargetState("local", "ana", "2025-01-01T00:00:00+00:00"))


def node_env(root: Path, **extra: str) -> dict[str, str]:
    drop = {"TETHER_PROJECT_ROOT", "DATABASE_URL", "TEST_DATABASE_URL", "NODE_ENV"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "TETHER_ROOT": str(root), **extra}


def test_the_prisma_helper_keeps_one_client_per_url(node: str, tmp_path: Path) -> None:
    root = write_project(tmp_path, LOCAL)
    result = run_node(node, NODE_TESTS / "prisma_helper.mjs", str(NODE_MODULE),
                      str(root / ".runtime" / "db-target.json"), PRODUCTION, LOCAL, env=node_env(root))
    assert result["sameClientWhileUnchanged"] and result["newClientOnSwitch"]
    assert result["firstUrl"].startswith(LOCAL_URL + "?application_name=tether-app%3A")
    assert result["secondUrl"].startswith(PRODUCTION_URL + "?application_name=tether-app%3A")
    assert result["optionsKept"] == result["secondOptionsKept"] == ["warn"]
    # The old client is disconnected, but only after the grace that lets requests in flight finish.
    assert not result["oldDisconnectedAtOnce"]
    assert 250 <= result["oldDisconnectedAfterMs"] < 1000
    assert result["newStillConnected"] and result["clientsMade"] == 2
    assert result["disconnectedAtShutdown"]
    assert [url.split("?")[0] for url in result["adapterUrls"]] == [PRODUCTION_URL, LOCAL_URL]
    assert result["adapterOldDisconnected"]
    assert result["sameClientAfterReload"]


def test_node_postgres_finishes_in_flight_and_queued_queries_on_the_old_target(
        node: str, node_app_dir: Path, pg_server: RunningPostgres, tmp_path: Path) -> None:
    local, production = pg_server.create_database(), pg_server.create_database()
    try:
        root = write_project(tmp_path / "project", LOCAL, env_text(local.url(), production.url()))
        shutil.copy(NODE_TESTS / "pg_waiting.mjs", node_app_dir / "pg_waiting.mjs")
        result = run_node(node, node_app_dir / "pg_waiting.mjs", str(NODE_MODULE),
                          str(root / ".runtime" / "db-target.json"), PRODUCTION, env=node_env(root))
    finally:
        pg_server.drop_database(local.database)
        pg_server.drop_database(production.database)
    assert result["waitingBefore"] == 1
    assert result["oldQueries"] == [local.database, local.database]
    assert result["next"] == production.database
    assert result["oldPoolEnded"] and result["oldPoolClients"] == 0
    assert result["appName"].startswith("tether-app:")


@pytest.mark.parametrize("environment", [{"NODE_ENV": "test"},
                                         {"DATABASE_URL": "postgresql://t@h/app_test",
                                          "TEST_DATABASE_URL": "postgresql://t@h/app_test"}],
                         ids=["NODE_ENV=test", ".env.test loaded"])
def test_a_node_test_process_never_follows_production(node: str, tmp_path: Path,
                                                      environment: dict[str, str]) -> None:
    root = write_project(tmp_path, PRODUCTION)
    script = (f"import {{ activeTarget, databaseUrl }} from {json.dumps(NODE_MODULE.as_uri())};\n"
              "process.stdout.write(JSON.stringify([activeTarget(), databaseUrl()]));\n")
    result = subprocess.run([node, "--input-type=module", "-e", script], env=node_env(root, **environment),
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == ["local", LOCAL_URL]
    assert "never follows a switch to production" in result.stderr
    plain = subprocess.run([node, "--input-type=module", "-e", script], env=node_env(root),
                           capture_output=True, text=True, check=True)
    assert json.loads(plain.stdout) == ["production", PRODUCTION_URL]


def test_a_newer_format_is_refused_by_node(node: str, tmp_path: Path) -> None:
    root = write_project(tmp_path, json.dumps({"format": 2, "target": "production", "guard": PRODUCTION_GUARD}))
    script = (f"import {{ databaseUrl, TetherTargetError }} from {json.dumps(NODE_MODULE.as_uri())};\n"
              "try { databaseUrl(); } catch (error) {\n"
              "  const seen = [error instanceof TetherTargetError, error.name, error.message];\n"
              "  process.stdout.write(JSON.stringify(seen));\n"
              "}\n")
    result = subprocess.run([node, "--input-type=module", "-e", script], env=node_env(root), capture_output=True,
                            text=True, check=True)
    is_ours, name, message = json.loads(result.stdout)
    assert is_ours and name == "StateFormatTooNew" and "format 2, written by a newer tether" in message


@pytest.fixture(scope="session")
def typescript_dir() -> Iterator[Path]:
    with npm_directory("typescript@5") as directory:
        yield directory


GOOD_USAGE = """
import { activeTarget, databaseUrl, getPrismaClient, pgPool, TargetReader, TetherTargetError,
         type Target } from './tether-target.mjs';

class Pool {
  waitingCount = 0;
  constructor(readonly options: { connectionString: string; max?: number }) {}
  query(text: string): Promise<{ rows: unknown[] }> { return Promise.resolve({ rows: [text] }); }
  connect(): Promise<unknown> { return Promise.resolve(null); }
  end(): Promise<void> { return Promise.resolve(); }
}
class PrismaClient {
  constructor(readonly options?: { datasources?: { db?: { url?: string } }; log?: string[] }) {}
  user = { findMany: (): Promise<string[]> => Promise.resolve([]) };
  $disconnect(): Promise<void> { return Promise.resolve(); }
}

const target: Target = activeTarget();
const url: string = databaseUrl();
const db = pgPool(Pool, { max: 4 });
const rows: Promise<{ rows: unknown[] }> = db.query('SELECT 1');
const prisma = getPrismaClient(PrismaClient, { graceMs: 1000, log: ['warn'] });
const users: Promise<string[]> = prisma.user.findMany();
const reader = new TargetReader({ root: '/srv/app' });
try { reader.resolve().heldBack; } catch (error) { if (error instanceof TetherTargetError) { error.name; } }
export { target, url, rows, users };
"""

BAD_USAGE = """
import { activeTarget } from './tether-target.mjs';
const wrong: number = activeTarget();
export { wrong };
"""


def type_check(typescript_dir: Path, work: Path, source: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(NODE_MODULE, work / NODE_MODULE.name)
    shutil.copy(NODE_TYPES, work / NODE_TYPES.name)
    (work / "usage.mts").write_text(source)
    tsc = typescript_dir / "node_modules" / "typescript" / "bin" / "tsc"
    return subprocess.run(["node", str(tsc), "--noEmit", "--strict", "--module", "nodenext", "--moduleResolution",
                           "nodenext", "--target", "es2022", str(work / "usage.mts")],
                          capture_output=True, text=True, check=False)


def test_the_type_declarations_describe_the_module(typescript_dir: Path, tmp_path: Path) -> None:
    good = type_check(typescript_dir, tmp_path, GOOD_USAGE)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = type_check(typescript_dir, tmp_path, BAD_USAGE)
    assert bad.returncode != 0 and "not assignable to type 'number'" in bad.stdout


def test_node_holds_its_answer_between_the_state_and_env_writes(node: str, tmp_path: Path) -> None:
    local_env = env_text().replace("# >>> tether managed block >>>\n",
                                   "# >>> tether managed block >>>\nTETHER_DB_TARGET='local'\n")
    root = write_project(tmp_path, LOCAL, local_env.replace(PRODUCTION_URL, "postgresql://app:@127.0.0.1:5434/app"))
    production_env = local_env.replace("TETHER_DB_TARGET='local'", "TETHER_DB_TARGET='production'")
    script = f"""
import {{ renameSync, writeFileSync }} from 'node:fs';
import {{ TargetReader }} from {json.dumps(NODE_MODULE.as_uri())};
const root = {json.dumps(str(root))};
const replace = (name, text) => {{ writeFileSync(root + '/.tmp', text); renameSync(root + '/.tmp', root + name); }};
const reader = new TargetReader({{ root, env: {{}} }});
const seen = [reader.databaseUrl()];
replace('/.runtime/db-target.json', {json.dumps(PRODUCTION)});
seen.push(reader.databaseUrl(), reader.databaseUrl());
replace('/.env', {json.dumps(production_env)});
seen.push(reader.databaseUrl());
process.stdout.write(JSON.stringify(seen));
"""
    result = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [LOCAL_URL, LOCAL_URL, LOCAL_URL, PRODUCTION_URL]
