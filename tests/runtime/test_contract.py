"""The contract, case by case, through both readers: tether.runtime (Python) and tether-target.mjs (real node).

The same table (cases.json) goes through each, so the two readers cannot drift apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.runtime import TargetError, TargetReader
from tether.runtime.contract import (
    PRODUCTION_GUARD,
    STATE_FORMAT,
    TargetState,
    application_name,
    find_root,
    parse_application_name,
    parse_dotenv,
    parse_state,
    render_state,
    with_driver,
)

from .conftest import CASES, LOCAL_URL, NODE_MODULE, PRODUCTION_URL, env_text, run_node, write_project

DOTENV = CASES["dotenv"]
STATES = CASES["states"]
EXPECTED_URL = {"local": LOCAL_URL, "production": PRODUCTION_URL}


def python_outcome(root: Path, environ: dict[str, str]) -> dict[str, Any]:
    try:
        active = TargetReader(root, environ).resolve()
    except TargetError as error:
        return {"error": type(error).__name__, "message": error.message}
    return {"target": active.target, "url": active.url, "held_back": active.held_back is not None}


def expected(case: dict[str, Any]) -> dict[str, Any]:
    want = dict(case["expect"])
    if "target" in want:
        want["url"] = EXPECTED_URL[want["target"]]
    return want


def without_message(outcome: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in outcome.items() if key != "message"}


@pytest.mark.parametrize("case", DOTENV, ids=[case["name"] for case in DOTENV])
def test_dotenv_python(case: dict[str, Any]) -> None:
    assert parse_dotenv(case["text"]) == case["expect"]


@pytest.mark.parametrize("case", STATES, ids=[case["name"] for case in STATES])
def test_state_python(case: dict[str, Any], tmp_path: Path) -> None:
    root = write_project(tmp_path, case["state"])
    outcome = python_outcome(root, case["env"])
    assert without_message(outcome) == expected(case)
    if "error" in outcome:
        assert str(root / ".runtime" / "db-target.json") in outcome["message"]
        assert "invoke target" in outcome["message"] or "Update tether" in outcome["message"]


def test_node_reads_every_case_like_python(node: str, tmp_path: Path) -> None:
    roots = [write_project(tmp_path / f"case{index}", case["state"]) for index, case in enumerate(STATES)]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"dotenv": [case["text"] for case in DOTENV],
                                    "states": [{"root": str(root), "env": case["env"]}
                                               for root, case in zip(roots, STATES, strict=True)]}))
    result = run_node(node, Path(__file__).parent / "node" / "run_cases.mjs", str(NODE_MODULE), str(manifest))
    assert result["dotenv"] == [case["expect"] for case in DOTENV]
    node_outcomes = result["states"]
    for case, root, outcome in zip(STATES, roots, node_outcomes, strict=True):
        assert without_message(outcome) == expected(case), case["name"]
        # Same error, same words: an app developer reads one message whichever language the app is in.
        python = python_outcome(root, case["env"])
        assert outcome.get("message") == python.get("message"), case["name"]


def test_the_format_refusal_names_both_versions(tmp_path: Path) -> None:
    root = write_project(tmp_path, json.dumps({"format": STATE_FORMAT + 1, "target": "production",
                                               "guard": PRODUCTION_GUARD}))
    with pytest.raises(TargetError) as refused:
        TargetReader(root, {}).resolve()
    assert type(refused.value).__name__ == "StateFormatTooNew"
    assert f"format {STATE_FORMAT + 1}" in refused.value.message
    assert f"format {STATE_FORMAT} at most" in refused.value.message


def test_render_and_parse_round_trip() -> None:
    for state in (TargetState("local", "ana", "2025-01-01T00:00:00+00:00"),
                  TargetState("production", "ana", "2025-01-01T00:00:00+00:00", PRODUCTION_GUARD)):
        text = render_state(state)
        assert json.loads(text)["format"] == STATE_FORMAT
        assert parse_state(text, "x") == state


@pytest.mark.parametrize(("driver", "url"), [
    (None, "postgresql://u:p%40@h:1/d?sslmode=require"),
    ("psycopg", "postgresql+psycopg://u:p%40@h:1/d?sslmode=require"),
    ("asyncpg", "postgresql+asyncpg://u:p%40@h:1/d?sslmode=require"),
], ids=["plain", "psycopg", "asyncpg"])
def test_with_driver(driver: str | None, url: str) -> None:
    assert with_driver("postgresql://u:p%40@h:1/d?sslmode=require", driver) == url


def test_application_names() -> None:
    assert application_name(4242) == "tether-app:4242"
    assert parse_application_name("tether-app:4242") == 4242
    for other in (None, "", "psql", "tether-app:", "tether-app:12x", "tether-target-show"):
        assert parse_application_name(other) is None


# ---------------------------------------------------------------------------------------------------------
# Finding the project root


def test_root_from_tether_root_then_tether_project_root(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    cwd = tmp_path
    assert find_root({"TETHER_ROOT": str(first), "TETHER_PROJECT_ROOT": str(second)}, cwd) == first
    assert find_root({"TETHER_PROJECT_ROOT": str(second)}, cwd) == second
    with pytest.raises(TargetError, match=r"TETHER_ROOT=.*is not a directory"):
        find_root({"TETHER_ROOT": str(tmp_path / "missing")}, cwd)


def test_root_by_walking_up_past_an_apps_own_env(tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", None)
    web = project / "apps" / "web"
    web.mkdir(parents=True)
    (web / ".env").write_text("NEXT_PUBLIC_X=1\n")  # the app's own .env, not tether's: keep walking
    assert find_root({}, web) == project
    (project / ".env").unlink()
    (project / ".runtime" / "db-target.json").write_text(render_state(TargetState("local")))
    assert find_root({}, web) == project  # the state file alone marks the root too
    with pytest.raises(TargetError, match="set TETHER_ROOT"):
        find_root({}, tmp_path)


def test_node_finds_the_same_root(node: str, tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", None)
    web = project / "apps" / "web"
    web.mkdir(parents=True)
    (web / ".env").write_text("NEXT_PUBLIC_X=1\n")
    script = (f"import {{ findRoot, databaseUrl, activeTarget }} from {json.dumps(NODE_MODULE.as_uri())};\n"
              "process.stdout.write(JSON.stringify([findRoot(), databaseUrl(), activeTarget()]));\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TETHER_")}
    result = subprocess.run([node, "--input-type=module", "-e", script], cwd=web, env=env, capture_output=True,
                            text=True, check=True)
    assert json.loads(result.stdout) == [str(project), LOCAL_URL, "local"]


def test_the_default_reader_walks_up_from_the_working_directory(tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", None, env_text())
    web = project / "web"
    web.mkdir()
    script = "from tether.runtime import database_url, active_target; print(active_target(), database_url())"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TETHER_")}
    result = subprocess.run([sys.executable, "-c", script], cwd=web, env=env, capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["local", LOCAL_URL]
