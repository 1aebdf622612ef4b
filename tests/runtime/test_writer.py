"""What `invoke target.*` writes is what both readers read: format, production marker, mode, atomicity."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tether import target
from tether.errors import ConfigError
from tether.runtime import PRODUCTION_GUARD, STATE_FORMAT, TargetReader
from tether.runtime.contract import parse_dotenv

from .conftest import NODE_MODULE, EnvProject


def reader_for(project: EnvProject) -> TargetReader:
    return TargetReader(project.root, {})


def test_switches_write_the_format_and_the_production_marker(env_project: EnvProject) -> None:
    from tether.envsync import sync_env_files

    sync_env_files()
    follower = reader_for(env_project)
    assert follower.active_target() == "local"
    target.switch_target("production", yes=True)
    state_path = env_project.root / ".runtime" / "db-target.json"
    state = json.loads(state_path.read_text())
    assert state["format"] == STATE_FORMAT and state["target"] == "production"
    assert state["guard"] == PRODUCTION_GUARD
    assert state_path.stat().st_mode & 0o777 == 0o600
    assert not list(state_path.parent.glob(".*.tmp"))
    env_values = parse_dotenv((env_project.root / ".env").read_text())
    assert follower.active_target() == "production"
    assert follower.database_url() == env_values["DATABASE_URL_PRODUCTION"] == env_values["DATABASE_URL"]

    target.switch_target("local")
    state = json.loads(state_path.read_text())
    assert (state["target"], state["guard"]) == ("local", None)
    assert follower.database_url() == env_values["DATABASE_URL_LOCAL"]


def test_the_state_is_replaced_not_rewritten(env_project: EnvProject) -> None:
    """A reader holding the old file open keeps reading a whole old file: the new one is a new inode."""
    from tether.envsync import sync_env_files

    sync_env_files()
    target.switch_target("local")
    state_path = env_project.root / ".runtime" / "db-target.json"
    with state_path.open() as old:
        inode = os.fstat(old.fileno()).st_ino
        target.switch_target("production", yes=True)
        assert state_path.stat().st_ino != inode
        assert json.loads(old.read())["target"] == "local"


def test_node_reads_what_tether_wrote(env_project: EnvProject, node: str) -> None:
    from tether.envsync import sync_env_files

    sync_env_files()
    target.switch_target("production", yes=True)
    script = (f"import {{ activeTarget, databaseUrl, defaultReader }} from {json.dumps(NODE_MODULE.as_uri())};\n"
              "const state = defaultReader().resolve().state;\n"
              "process.stdout.write(JSON.stringify([activeTarget(), databaseUrl(), state]));\n")
    env = {**os.environ, "TETHER_ROOT": str(env_project.root)}
    result = subprocess.run([node, "--input-type=module", "-e", script], env=env, capture_output=True, text=True,
                            check=True)
    active, url, state = json.loads(result.stdout)
    assert (active, state["guard"], state["format"]) == ("production", PRODUCTION_GUARD, STATE_FORMAT)
    assert url == parse_dotenv((env_project.root / ".env").read_text())["DATABASE_URL_PRODUCTION"]


def test_tether_itself_refuses_a_newer_format(env_project: EnvProject) -> None:
    path: Path = target.target_file()
    path.write_text(json.dumps({"format": STATE_FORMAT + 1, "target": "local"}))
    with pytest.raises(ConfigError, match=f"format {STATE_FORMAT + 1}, written by a newer tether"):
        target.read_target()
    assert target.read_target(strict=False).target == "unknown"
